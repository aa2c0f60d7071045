//! [`NatsTransport`]: [`RemoteTransport`] over NATS.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use async_nats::client::RequestErrorKind;
use async_nats::{Client, ConnectOptions, Event, HeaderMap, Message, Subscriber};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use wasm_core::{
    Codec, ComponentId, DeliveryLoss, LocalComponent, MessagingError, RemoteEnvelope, RemoteInbound, RemoteKind,
    RemoteNodeStats, RemoteOutcome, RemoteTransport, RemoteUndelivered, RequestError, SendError,
};

use crate::config::{ClusterAuth, ClusterConfig};
use crate::directory::{Announcement, Directory, local_accepts};
use crate::error::ClusterError;
use crate::flow::{self, Ack, Inbound, Kind, NoCredit, Outbound, Sent, Undelivered};
use crate::stats::{ClusterStats, Counters};
use crate::wire::{self, Malformed, Subjects};

/// How long `start` waits for its round trip to the broker.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the flow task sends the acknowledgements due, credit updates
/// and repeats, and ends envelopes whose acknowledgement timed out: an
/// acknowledgement is delayed at most this long.
const FLOW_TICK: Duration = Duration::from_millis(10);

/// The NATS transport of one host: implements [`RemoteTransport`] for its
/// router and hands what other hosts send to its [`RemoteInbound`].
///
/// Lifecycle: [`NatsTransport::connect`], give the `Arc` to the router (as
/// `Arc<dyn RemoteTransport>`), [`NatsTransport::start`] with a `Weak` of
/// the router (no cycle: the router owns the transport), and
/// [`NatsTransport::shutdown`] at the end. Dropping the last `Arc` without
/// `shutdown` stops the tasks at once; the others then forget this node
/// after 3 heartbeats.
///
/// The sending methods never block and never await: they encode and hand
/// the message straight to the NATS client's command channel when it has
/// room and nothing of this host's waits ahead of it, else push it onto a
/// bounded queue that a publisher task drains into the client.
/// The client reconnects by itself, forever; what is published while the
/// broker is away waits in the client's and this queue's buffers, and the
/// queue refuses with `queue-full` once it is full.
pub struct NatsTransport {
    shared: Arc<Shared>,
    /// The outgoing queue's receiving end, until `start` hands it to the
    /// publisher task.
    outgoing: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    /// The tasks `start` spawned.
    tasks: Mutex<Tasks>,
}

/// The tasks of a started transport.
#[derive(Default)]
struct Tasks {
    /// Drains the outgoing queue; awaited by `shutdown`.
    publisher: Option<JoinHandle<()>>,
    /// The heartbeat and the hello answers: stopped first by `shutdown`.
    announcing: Vec<JoinHandle<()>>,
    /// Envelopes, outcomes, announcements: they end when the connection
    /// is drained.
    receiving: Vec<JoinHandle<()>>,
}

/// What the tasks and the sending methods share.
struct Shared {
    node: String,
    heartbeat: Duration,
    subjects: Subjects,
    client: Client,
    outgoing: mpsc::Sender<Outgoing>,
    /// Set by `shutdown`: sends are refused, the publisher drains and ends.
    closing: watch::Sender<bool>,
    closed: AtomicBool,
    directory: Directory,
    /// This host's components, as last announced.
    local: Mutex<Vec<LocalComponent>>,
    counters: Counters,
    /// The host, once `start` is given it: the flow task reports
    /// undelivered envelopes to it, announcements ask it for credits.
    inbound: OnceLock<Weak<dyn RemoteInbound>>,
    /// Sequence numbers, outstanding envelopes and credits, per receiving
    /// node. Locked by `send` around numbering and queueing, so that the
    /// queue's order is the numbers' order.
    outbound: Mutex<Outbound>,
    /// What each sending session sent here, for the acknowledgements.
    inbound_flow: Mutex<Inbound>,
    ack_timeout: Duration,
    /// Envelopes in the outgoing queue or being published by the publisher
    /// task: while there are any, `send` queues behind them (an envelope
    /// handed to the client directly would overtake them, and the receiving
    /// host would see a gap in the sequence).
    queued_envelopes: AtomicUsize,
}

/// One item of the outgoing queue.
enum Outgoing {
    /// An envelope, encoded, and its node and sequence number.
    Envelope { subject: String, headers: HeaderMap, body: Bytes, node: String, seq: u64 },
    /// An outcome, encoded.
    Outcome { subject: String, headers: HeaderMap, body: Bytes },
    /// This host's directory entry, as it is when published.
    Announce,
}

impl NatsTransport {
    /// Connects to the broker as `config.node`. Nothing is subscribed or
    /// sent until [`NatsTransport::start`].
    ///
    /// The client reconnects by itself after the first connection, without
    /// limit (exponential backoff up to 4 s between attempts).
    ///
    /// # Errors
    /// [`ClusterError::InvalidConfig`] for an unusable `config`,
    /// [`ClusterError::Credentials`] when the creds file cannot be read,
    /// [`ClusterError::Connect`] when the first connection fails (broker
    /// unreachable, authorization or TLS refused).
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled connect leaves nothing behind.
    pub async fn connect(config: ClusterConfig) -> Result<Arc<Self>, ClusterError> {
        config.validate()?;
        let mut options = match &config.auth {
            ClusterAuth::None => ConnectOptions::new(),
            ClusterAuth::Token(token) => ConnectOptions::with_token(token.clone()),
            ClusterAuth::UserPassword { user, password } => {
                ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            ClusterAuth::CredsFile(path) => ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|source| ClusterError::Credentials { path: path.clone(), source })?,
        };
        if let Some(tls) = &config.tls {
            if let Some(ca) = &tls.ca_file {
                options = options.add_root_certificates(ca.clone());
            }
            if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
                options = options.add_client_certificate(cert.clone(), key.clone());
            }
            options = options.require_tls(tls.require);
        }
        let node = config.node.clone();
        let options = options
            .name(format!("airssys-{}", config.node))
            // A host never needs what it publishes itself.
            .no_echo()
            .client_capacity(config.client_capacity)
            .max_reconnects(None)
            .event_callback(move |event| {
                let node = node.clone();
                async move { log_event(&node, &event) }
            });
        let urls: Vec<&str> = config.url.split(',').map(str::trim).collect();
        let client = options
            .connect(urls)
            .await
            .map_err(|source| ClusterError::Connect { url: config.url.clone(), source: Box::new(source) })?;

        let (outgoing, receiver) = mpsc::channel(config.outgoing_queue);
        let shared = Arc::new(Shared {
            subjects: Subjects::new(&config.prefix, &config.node),
            node: config.node,
            heartbeat: config.heartbeat,
            client,
            outgoing,
            closing: watch::Sender::new(false),
            closed: AtomicBool::new(false),
            directory: Directory::default(),
            local: Mutex::new(Vec::new()),
            counters: Counters::default(),
            inbound: OnceLock::new(),
            outbound: Mutex::new(Outbound::new(session_id())),
            inbound_flow: Mutex::new(Inbound::default()),
            ack_timeout: config.ack_timeout,
            queued_envelopes: AtomicUsize::new(0),
        });
        Ok(Arc::new(Self { shared, outgoing: Mutex::new(Some(receiver)), tasks: Mutex::new(Tasks::default()) }))
    }

    /// Subscribes to this host's subjects, starts the publisher, the
    /// heartbeat and the receiving tasks on the current tokio runtime, asks
    /// the other hosts to announce themselves, and makes a round trip to the
    /// broker, so that when it returns the broker routes this host's
    /// subjects here.
    ///
    /// `inbound` (the router) receives envelopes and outcomes; once it is
    /// gone, envelopes are refused (a request with `delivery-failed`) and
    /// outcomes dropped.
    ///
    /// # Errors
    /// [`ClusterError::AlreadyStarted`] on a second call;
    /// [`ClusterError::Subscribe`] when a subscription fails (then nothing
    /// is started and `start` may be called again); [`ClusterError::Connection`]
    /// when the final round trip fails (the tasks run anyway).
    ///
    /// # Cancel safety
    /// Cancelled before its subscriptions are made, nothing is started and
    /// `start` may be called again; cancelled after, the tasks run and only
    /// the first hello and round trip may be missing (heartbeats announce anyway).
    pub async fn start(&self, inbound: Weak<dyn RemoteInbound>) -> Result<(), ClusterError> {
        let taken = Taken::new(&self.outgoing).ok_or(ClusterError::AlreadyStarted)?;
        let shared = &self.shared;
        let subjects = &shared.subjects;
        let envelopes = shared.subscribe(&subjects.envelopes).await?;
        let outcomes = shared.subscribe(&subjects.outcomes).await?;
        let directory = shared.subscribe(&subjects.directory).await?;
        let hello = shared.subscribe(&subjects.hello).await?;

        let receiver = taken.into_inner().ok_or(ClusterError::AlreadyStarted)?;
        let _ = shared.inbound.set(inbound.clone());
        *lock(&self.tasks) = Tasks {
            publisher: Some(tokio::spawn(Arc::clone(shared).publish_loop(receiver))),
            announcing: vec![
                tokio::spawn(Arc::clone(shared).hello_loop(hello)),
                tokio::spawn(Arc::clone(shared).heartbeat_loop()),
                tokio::spawn(Arc::clone(shared).flow_loop()),
            ],
            receiving: vec![
                tokio::spawn(Arc::clone(shared).envelope_loop(envelopes, inbound.clone())),
                tokio::spawn(Arc::clone(shared).outcome_loop(outcomes, inbound)),
                tokio::spawn(Arc::clone(shared).directory_loop(directory)),
            ],
        };

        let greeting = Bytes::from(shared.node.clone());
        if let Err(error) = shared.client.publish(subjects.hello.clone(), greeting).await {
            tracing::warn!(node = %shared.node, %error, "cannot ask the other hosts to announce");
        }
        shared.round_trip().await
    }

    /// Leaves the lattice: refuses further sends, publishes an empty
    /// announcement (the other hosts forget this node at once), publishes
    /// what is still queued, flushes, and closes the connection (draining
    /// the subscriptions). Calling it again does nothing more.
    ///
    /// # Errors
    /// [`ClusterError::Connection`] when the final flush or close fails (what
    /// was queued may be lost).
    ///
    /// # Cancel safety
    /// Not cancel safe: cancelled midway, the transport refuses sends but
    /// may keep its tasks until dropped; queued envelopes may be lost.
    pub async fn shutdown(&self) -> Result<(), ClusterError> {
        let shared = &self.shared;
        if shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        shared.closing.send_replace(true);
        // No more heartbeats or hello answers; the receiving tasks end when
        // the connection is drained below.
        let publisher = {
            let mut tasks = lock(&self.tasks);
            tasks.announcing.drain(..).for_each(|task| task.abort());
            tasks.publisher.take()
        };
        lock(&shared.local).clear();
        shared.publish_announcement().await;
        if let Some(publisher) = publisher {
            // The publisher ends after the queue is empty; it never panics.
            let _ = publisher.await;
        }
        let flushed = shared.client.flush().await.map_err(|e| ClusterError::Connection(Box::new(e)));
        let drained = shared.client.drain().await.map_err(|e| ClusterError::Connection(Box::new(e)));
        flushed.and(drained)
    }

    /// The traffic with each other node, sorted by node (see
    /// [`RemoteTransport::node_stats`]).
    #[must_use]
    pub fn node_stats(&self) -> Vec<RemoteNodeStats> {
        self.shared.node_stats()
    }

    /// The counters since [`NatsTransport::connect`].
    #[must_use]
    pub fn stats(&self) -> ClusterStats {
        let shared = &self.shared;
        let connects = shared.client.statistics().connects.load(Ordering::Relaxed);
        shared.counters.snapshot(connects.saturating_sub(1), shared.directory.live_nodes(Instant::now()))
    }
}

impl RemoteTransport for NatsTransport {
    fn node(&self) -> &str {
        &self.shared.node
    }

    /// From the directory; this host's own node answers from its own
    /// announced list.
    fn accepts(&self, target: &ComponentId, codec: Codec) -> Option<bool> {
        let shared = &self.shared;
        if target.node() == Some(shared.node.as_str()) {
            return local_accepts(&lock(&shared.local), target.name(), codec);
        }
        shared.directory.accepts(target, codec, Instant::now())
    }

    /// Numbers the envelope in this host's sequence to the target's node
    /// and counts it against the target's credit (see the crate docs); it
    /// then ends acknowledged or undelivered, reported to the host.
    ///
    /// # Errors
    /// [`MessagingError::QueueFull`] when the target's credit is used up
    /// (counted in its node's `credit_refusals`) or the outgoing queue is
    /// full; [`MessagingError::DeliveryFailed`] after `shutdown`;
    /// [`MessagingError::InvalidMessage`] when the target names no node or
    /// the envelope is larger than the broker's `max_payload` (1 MiB by
    /// default, headers included).
    fn send(&self, envelope: RemoteEnvelope) -> Result<(), SendError<Vec<u8>>> {
        let shared = &self.shared;
        let closed = || MessagingError::DeliveryFailed("the cluster transport is shut down".to_owned());
        if shared.closed.load(Ordering::Acquire) {
            return Err(SendError::new(closed(), envelope.payload));
        }
        let Some(node) = envelope.target.node() else {
            let error = MessagingError::InvalidMessage(format!("target {} names no node", envelope.target));
            return Err(SendError::new(error, envelope.payload));
        };
        let subject = shared.subjects.envelope(node, envelope.target.name());
        let line = wire::envelope_line(&envelope);
        // With the largest sequence part, so the check holds for any number
        // given below.
        let size = wire::envelope_header_bytes_max(&line, envelope.kind) + envelope.payload.len();
        let max = shared.client.max_payload();
        if size > max {
            let error = MessagingError::InvalidMessage(format!(
                "an envelope of {size} bytes exceeds the broker's max_payload of {max} bytes"
            ));
            return Err(SendError::new(error, envelope.payload));
        }
        let kind = match envelope.kind {
            RemoteKind::Message => Kind::Message,
            RemoteKind::Request { id, .. } => Kind::Request { id, trace: envelope.trace },
        };
        // Read from the directory only before the target's first grant.
        let announced = || shared.directory.credit(&envelope.target).unwrap_or(flow::DEFAULT_CREDIT);
        let mut outbound = lock(&shared.outbound);
        let seq = match outbound.reserve(node, &envelope.target, &envelope.sender, kind, announced, Instant::now()) {
            Ok(seq) => seq,
            Err(NoCredit { credit }) => {
                tracing::debug!(target = %envelope.target, credit, "no credit left: queue-full");
                return Err(SendError::new(MessagingError::QueueFull, envelope.payload));
            }
        };
        let headers = || wire::envelope_headers(&line, envelope.kind, outbound.session(), seq, &envelope.trace);
        let body = Bytes::from(envelope.payload);
        // Straight into the client's channel when nothing of ours is ahead
        // of it and the channel has room (no hop through the publisher
        // task); else through the queue.
        if shared.queued_envelopes.load(Ordering::Acquire) == 0 {
            match shared.client.publish_with_headers(subject.clone(), headers(), body.clone()).now_or_never() {
                Some(Ok(())) => {
                    Counters::bump(&shared.counters.sent);
                    return Ok(());
                }
                Some(Err(error)) => {
                    outbound.unreserve(node, seq);
                    Counters::bump(&shared.counters.publish_failed);
                    let error = MessagingError::DeliveryFailed(format!("cannot publish: {error}"));
                    return Err(SendError::new(error, Vec::from(body)));
                }
                // The client's channel is full: the dropped future sent nothing.
                None => {}
            }
        }
        let item = Outgoing::Envelope { subject, headers: headers(), body, node: node.to_owned(), seq };
        // The body comes back out of a refused item without a copy (the
        // `Bytes` is the only owner of the vector).
        let refused = |item: Outgoing| match item {
            Outgoing::Envelope { body, .. } => Vec::from(body),
            _ => unreachable!("try_send hands back the envelope it was given"),
        };
        // Queued under the lock: the queue's order is the numbers' order.
        match shared.outgoing.try_send(item) {
            Ok(()) => {
                shared.queued_envelopes.fetch_add(1, Ordering::AcqRel);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(item)) => {
                outbound.unreserve(node, seq);
                Counters::bump(&shared.counters.dropped_queue_full);
                Err(SendError::new(MessagingError::QueueFull, refused(item)))
            }
            Err(mpsc::error::TrySendError::Closed(item)) => {
                outbound.unreserve(node, seq);
                Err(SendError::new(closed(), refused(item)))
            }
        }
    }

    /// Queued like an envelope; dropped (and counted in
    /// `dropped_queue_full`) when the queue is full, dropped after
    /// `shutdown`.
    fn respond(&self, outcome: RemoteOutcome) {
        self.shared.respond(outcome);
    }

    /// Publishes at once (through the outgoing queue; when it is full, the
    /// next heartbeat publishes the list).
    fn announce(&self, components: Vec<LocalComponent>) {
        let shared = &self.shared;
        *lock(&shared.local) = components;
        if !shared.closed.load(Ordering::Acquire) && shared.outgoing.try_send(Outgoing::Announce).is_err() {
            tracing::debug!(node = %shared.node, "outgoing queue full: the next heartbeat announces");
        }
    }

    fn node_stats(&self) -> Vec<RemoteNodeStats> {
        self.shared.node_stats()
    }
}

impl Shared {
    async fn subscribe(&self, subject: &str) -> Result<Subscriber, ClusterError> {
        self.client
            .subscribe(subject.to_owned())
            .await
            .map_err(|source| ClusterError::Subscribe { subject: subject.to_owned(), source: Box::new(source) })
    }

    /// Returns once the broker has processed what this connection sent
    /// before (subscriptions above all). A flush only empties the socket's
    /// buffer, so this is a request to a subject no host answers: the
    /// broker's "no responders" reply comes after everything sent before.
    async fn round_trip(&self) -> Result<(), ClusterError> {
        let request = async_nats::Request::new().timeout(Some(ROUND_TRIP_TIMEOUT));
        match self.client.send_request(self.subjects.sync.clone(), request).await {
            Ok(_) => Ok(()),
            // Answered by the broker (or, with a foreign subscriber on the
            // subject, a timeout: the broker had the request all the same).
            Err(e) if matches!(e.kind(), RequestErrorKind::NoResponders | RequestErrorKind::TimedOut) => Ok(()),
            Err(e) => Err(ClusterError::Connection(Box::new(e))),
        }
    }

    fn respond(&self, outcome: RemoteOutcome) {
        if self.closed.load(Ordering::Acquire) {
            tracing::debug!(id = %outcome.id, "cluster transport shut down: outcome dropped");
            return;
        }
        let Some(node) = outcome.requester.node() else {
            tracing::warn!(requester = %outcome.requester, "outcome for a requester without a node dropped");
            return;
        };
        let subject = self.subjects.outcome(node);
        let (headers, body) = wire::encode_outcome(&outcome);
        // Outcomes keep no order among themselves: straight into the
        // client's channel when it has room.
        match self.client.publish_with_headers(subject.clone(), headers, body).now_or_never() {
            Some(Ok(())) => return Counters::bump(&self.counters.outcomes_sent),
            Some(Err(error)) => {
                Counters::bump(&self.counters.publish_failed);
                return tracing::warn!(node = %self.node, %error, id = %outcome.id, "cannot publish an outcome");
            }
            None => {}
        }
        let (headers, body) = wire::encode_outcome(&outcome);
        if let Err(error) = self.outgoing.try_send(Outgoing::Outcome { subject, headers, body }) {
            if matches!(error, mpsc::error::TrySendError::Full(_)) {
                Counters::bump(&self.counters.dropped_queue_full);
            }
            tracing::warn!(id = %outcome.id, requester = %outcome.requester, "outgoing queue full: outcome dropped");
        }
    }

    /// Drains the outgoing queue into the client until `shutdown`, then
    /// publishes what is left and ends.
    async fn publish_loop(self: Arc<Self>, mut receiver: mpsc::Receiver<Outgoing>) {
        let mut closing = self.closing.subscribe();
        loop {
            tokio::select! {
                biased;
                item = receiver.recv() => match item {
                    Some(item) => self.publish(item).await,
                    None => return,
                },
                // (The guard `wait_for` returns is not `Send`: drop it here.)
                () = async { drop(closing.wait_for(|closing| *closing).await) } => break,
            }
        }
        receiver.close();
        while let Some(item) = receiver.recv().await {
            self.publish(item).await;
        }
    }

    async fn publish(&self, item: Outgoing) {
        let (subject, headers, body, counter, sequenced) = match item {
            Outgoing::Envelope { subject, headers, body, node, seq } => {
                (subject, headers, body, &self.counters.sent, Some((node, seq)))
            }
            Outgoing::Outcome { subject, headers, body } => {
                (subject, headers, body, &self.counters.outcomes_sent, None)
            }
            Outgoing::Announce => return self.publish_announcement().await,
        };
        let published = self.client.publish_with_headers(subject, headers, body).await;
        if sequenced.is_some() {
            // In the client's channel (or failed): a direct send may follow.
            self.queued_envelopes.fetch_sub(1, Ordering::AcqRel);
        }
        match published {
            Ok(()) => Counters::bump(counter),
            Err(error) => {
                Counters::bump(&self.counters.publish_failed);
                tracing::warn!(node = %self.node, %error, "cannot publish");
                if let Some((node, seq)) = sequenced {
                    let ended = lock(&self.outbound).publish_failed(&node, seq, &error.to_string());
                    self.report(ended);
                }
            }
        }
    }

    /// Reports envelopes that ended undelivered to the host: a message as
    /// a dead letter, a request as its `delivery-failed` outcome (a request
    /// the other host refused was answered by that host already).
    fn report(&self, ended: impl IntoIterator<Item = Undelivered>) {
        let inbound = self.host();
        for Undelivered { sent, target, loss, reason } in ended {
            tracing::debug!(node = %self.node, %target, %loss, %reason, "undelivered");
            let Some(inbound) = &inbound else { continue };
            match sent {
                Sent::Message { sender } => inbound.undelivered(RemoteUndelivered { sender, target, loss, reason }),
                Sent::Request { .. } if loss == DeliveryLoss::Refused => {}
                Sent::Request { requester, id, trace } => inbound.complete(RemoteOutcome {
                    requester,
                    id,
                    outcome: Err(RequestError::DeliveryFailed(format!("{loss}: {reason}"))),
                    trace: trace.child(),
                }),
            }
        }
    }

    /// The outbound counts with the inbound ones, per node.
    fn node_stats(&self) -> Vec<RemoteNodeStats> {
        let mut nodes: BTreeMap<String, RemoteNodeStats> =
            lock(&self.outbound).stats().map(|s| (s.node.clone(), s.clone())).collect();
        for (node, (received, refused)) in lock(&self.inbound_flow).received() {
            let entry = nodes.entry(node.clone()).or_insert_with(|| RemoteNodeStats::new(node));
            entry.received = received;
            entry.refused_here = refused;
        }
        nodes.into_values().collect()
    }

    /// Publishes `acks`, each to its sender's outcome subject.
    async fn publish_acks(&self, acks: Vec<(String, Ack)>) {
        for (node, ack) in acks {
            let subject = self.subjects.outcome(&node);
            match self.client.publish_with_headers(subject, wire::ack_headers(), ack.to_json().into()).await {
                Ok(()) => Counters::bump(&self.counters.acks_sent),
                Err(error) => {
                    tracing::warn!(node = %self.node, to = %node, %error, "cannot publish an acknowledgement")
                }
            }
        }
    }

    /// The host `start` was given, while it lives.
    fn host(&self) -> Option<Arc<dyn RemoteInbound>> {
        self.inbound.get().and_then(Weak::upgrade)
    }

    /// The acknowledgements due now, with their credits.
    async fn flush_acks(&self) {
        let host = self.host();
        let acks = lock(&self.inbound_flow).take_acks(&self.node, Instant::now(), |name| free_slots(&host, name));
        self.publish_acks(acks).await;
    }

    /// Every [`FLOW_TICK`]: the acknowledgements due, credit updates and
    /// repeats, and the envelopes whose acknowledgement timed out.
    async fn flow_loop(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(FLOW_TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let now = Instant::now();
            let host = self.host();
            let free = |name: &str| free_slots(&host, name);
            let acks = {
                let mut flow = lock(&self.inbound_flow);
                let mut acks = flow.take_acks(&self.node, now, free);
                acks.extend(flow.tick(&self.node, now, free));
                acks
            };
            drop(host);
            self.publish_acks(acks).await;
            let expired = lock(&self.outbound).expire(now, self.ack_timeout);
            self.report(expired);
        }
    }

    /// `node` left the lattice: what is outstanding to it ends.
    fn node_left(&self, node: &str) {
        let ended = lock(&self.outbound).node_left(node);
        self.report(ended);
    }

    /// Publishes this host's list as it is now, each component with its
    /// free slots divided among the live hosts as the credit each starts
    /// with.
    async fn publish_announcement(&self) {
        let host = self.host();
        let hosts = self.directory.live_nodes(Instant::now()).max(1) as u64;
        let credit = |name: &str| free_slots(&host, name).map(|free| free / hosts);
        let body = Announcement::new(&self.node, self.heartbeat, &lock(&self.local), credit).to_json();
        drop(host);
        if let Err(error) = self.client.publish(self.subjects.directory.clone(), body.into()).await {
            tracing::warn!(node = %self.node, %error, "cannot publish the directory announcement");
        }
    }

    /// Publishes this host's list unless it is empty (an empty list was
    /// announced once already, when it became empty).
    async fn republish(&self) {
        if !lock(&self.local).is_empty() {
            self.publish_announcement().await;
        }
    }

    /// Hands envelopes to the host, and acknowledges them after
    /// [`flow::ACK_EVERY`] of one session; the flow task acknowledges the
    /// rest on its next tick (a delayed acknowledgement, as TCP's: one
    /// acknowledgement covers what came in one tick, and none competes with
    /// a response on its way back).
    async fn envelope_loop(self: Arc<Self>, mut subscriber: Subscriber, inbound: Weak<dyn RemoteInbound>) {
        while let Some(message) = subscriber.next().await {
            if self.on_envelope(&message, &inbound) {
                self.flush_acks().await;
            }
        }
    }

    /// Hands one envelope to the host; returns whether acknowledgements
    /// are due.
    fn on_envelope(&self, message: &Message, inbound: &Weak<dyn RemoteInbound>) -> bool {
        let (envelope, (session, seq)) = match wire::decode_envelope(message.headers.as_ref(), &message.payload) {
            Ok(decoded) => decoded,
            Err(Malformed(reason)) => {
                Counters::bump(&self.counters.dropped_malformed);
                tracing::warn!(node = %self.node, subject = %message.subject, %reason, "malformed envelope dropped");
                return false;
            }
        };
        if envelope.target.node() != Some(self.node.as_str()) {
            Counters::bump(&self.counters.dropped_wrong_node);
            tracing::warn!(node = %self.node, subject = %message.subject, target = %envelope.target,
                "envelope for another node dropped");
            return false;
        }
        Counters::bump(&self.counters.received);
        // Recorded as queued before it is handed over (no copy of the ids),
        // marked refused after if it is.
        let node = envelope.sender.node().unwrap_or_default();
        let due = lock(&self.inbound_flow).record(node, session, seq, envelope.target.name(), Instant::now());
        let request = match envelope.kind {
            RemoteKind::Request { id, .. } => Some((envelope.sender.clone(), id, envelope.trace)),
            RemoteKind::Message => None,
        };
        let delivered = match inbound.upgrade() {
            Some(inbound) => inbound.deliver(envelope),
            None => Err(MessagingError::DeliveryFailed("the host is shutting down".to_owned())),
        };
        if let Err(error) = delivered {
            tracing::debug!(node = %self.node, %error, "envelope refused by this host");
            // A refused request is answered now, so its requester does not
            // wait for its timeout.
            if let Some((requester, id, trace)) = request {
                let outcome = Err(RequestError::DeliveryFailed(error.to_string()));
                self.respond(RemoteOutcome { requester, id, outcome, trace: trace.child() });
            }
            lock(&self.inbound_flow).refuse(session, seq, error.to_string());
        }
        due
    }

    async fn outcome_loop(self: Arc<Self>, mut subscriber: Subscriber, inbound: Weak<dyn RemoteInbound>) {
        while let Some(message) = subscriber.next().await {
            if wire::is_ack(message.headers.as_ref()) {
                match Ack::from_json(&message.payload) {
                    Ok(ack) => {
                        Counters::bump(&self.counters.acks_received);
                        let ended = lock(&self.outbound).on_ack(&ack);
                        self.report(ended);
                    }
                    Err(Malformed(reason)) => {
                        Counters::bump(&self.counters.dropped_malformed);
                        tracing::warn!(node = %self.node, %reason, "malformed acknowledgement dropped");
                    }
                }
                continue;
            }
            let outcome = match wire::decode_outcome(message.headers.as_ref(), &message.payload) {
                Ok(outcome) => outcome,
                Err(Malformed(reason)) => {
                    Counters::bump(&self.counters.dropped_malformed);
                    tracing::warn!(node = %self.node, %reason, "malformed outcome dropped");
                    continue;
                }
            };
            if outcome.requester.node() != Some(self.node.as_str()) {
                Counters::bump(&self.counters.dropped_wrong_node);
                tracing::warn!(node = %self.node, requester = %outcome.requester, "outcome for another node dropped");
                continue;
            }
            Counters::bump(&self.counters.outcomes_received);
            match inbound.upgrade() {
                Some(inbound) => inbound.complete(outcome),
                None => tracing::debug!(id = %outcome.id, "the host is shutting down: outcome dropped"),
            }
        }
    }

    async fn directory_loop(self: Arc<Self>, mut subscriber: Subscriber) {
        while let Some(message) = subscriber.next().await {
            match Announcement::from_json(&message.payload) {
                Ok(announcement) if announcement.node == self.node => {}
                Ok(announcement) => {
                    let node = announcement.node.clone();
                    if self.directory.apply(announcement, self.heartbeat, Instant::now()) {
                        self.node_left(&node);
                    }
                }
                Err(Malformed(reason)) => {
                    Counters::bump(&self.counters.dropped_malformed);
                    tracing::warn!(node = %self.node, %reason, "malformed announcement dropped");
                }
            }
        }
    }

    async fn hello_loop(self: Arc<Self>, mut subscriber: Subscriber) {
        while let Some(message) = subscriber.next().await {
            if message.payload != self.node.as_bytes() {
                self.republish().await;
            }
        }
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(self.heartbeat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            self.republish().await;
            for node in self.directory.prune(Instant::now()) {
                self.node_left(&node);
            }
        }
    }
}

impl Drop for NatsTransport {
    /// Stops every task at once (no goodbye: see [`NatsTransport::shutdown`]).
    fn drop(&mut self) {
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for task in tasks.announcing.into_iter().chain(tasks.receiving).chain(tasks.publisher) {
            task.abort();
        }
    }
}

impl std::fmt::Debug for NatsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTransport")
            .field("node", &self.shared.node)
            .field("subjects", &self.shared.subjects)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// The outgoing receiver, taken out of its slot and put back on drop unless
/// [`Taken::into_inner`] consumed it (so a failed or cancelled `start` can
/// be retried).
struct Taken<'a> {
    slot: &'a Mutex<Option<mpsc::Receiver<Outgoing>>>,
    receiver: Option<mpsc::Receiver<Outgoing>>,
}

impl<'a> Taken<'a> {
    fn new(slot: &'a Mutex<Option<mpsc::Receiver<Outgoing>>>) -> Option<Self> {
        let receiver = lock(slot).take()?;
        Some(Self { slot, receiver: Some(receiver) })
    }

    fn into_inner(mut self) -> Option<mpsc::Receiver<Outgoing>> {
        self.receiver.take()
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if let Some(receiver) = self.receiver.take() {
            *lock(self.slot) = Some(receiver);
        }
    }
}

/// Component `name`'s free mailbox slots on `host` (none when the host is
/// gone or runs no such component).
fn free_slots(host: &Option<Arc<dyn RemoteInbound>>, name: &str) -> Option<u64> {
    host.as_ref().and_then(|host| host.free_slots(name))
}

/// Locks `mutex`, a poisoned one too (every critical section here leaves
/// its data consistent).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A random session number: 64 bits from the OS's hasher keys (std's
/// `RandomState` seeds each map from the OS's randomness), mixed with the
/// time, so two runs of one host never share a session.
fn session_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.finish()
}

fn log_event(node: &str, event: &Event) {
    match event {
        Event::Connected => tracing::info!(node, "connected to NATS"),
        Event::Disconnected => tracing::warn!(node, "disconnected from NATS; reconnecting"),
        Event::Closed => tracing::info!(node, "NATS connection closed"),
        other => tracing::warn!(node, event = %other, "NATS event"),
    }
}
