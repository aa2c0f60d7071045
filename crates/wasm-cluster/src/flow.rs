//! Acknowledgements and credit-based flow control between hosts: pure state,
//! no I/O (the transport publishes what these return).
//!
//! # The protocol
//! Each transport picks a random 64-bit *session* when it connects and
//! numbers the envelopes it sends to each other node `1, 2, 3, ...` (one
//! sequence per receiving node). NATS delivers one connection's messages to
//! a subscriber in the order they were published, so the receiving host
//! sees each sender's sequence in order; a gap means envelopes were lost on
//! the way (a broker restart drops what it had not forwarded).
//!
//! The receiving host answers with *cumulative acknowledgements*
//! ([`Ack`]): "of your session `S`, I have processed every sequence number
//! in `from..=upto`; these were refused (`nacks`, with the reason), these
//! never came (`lost`), the rest are queued in their mailboxes". It
//! acknowledges when its inbound stream pauses, and at least every
//! [`ACK_EVERY`] envelopes under continuous load, and repeats each range once
//! after [`ACK_REPEAT`], so that one lost acknowledgement does not turn
//! delivered envelopes into `ack-timeout` dead letters.
//!
//! Each acknowledgement also carries *credits*, one per component it
//! touched: the component's free mailbox slots, divided among the sessions
//! that send to it. As in TCP's window (RFC 9293, section 3.8.6), a credit
//! counts from `upto`: the sender may have `credit` envelopes to that
//! component outstanding past `upto`, so its own count of outstanding
//! envelopes makes the credit exact without a second round trip. When a
//! component's free slots grow (its actor drained the mailbox), the
//! receiving host sends a credit update on its next tick (the credit is
//! "replenished as slots are taken"). Before the first acknowledgement the
//! sender uses the credit the component announced in the directory.
//!
//! A sender refuses a send with `queue-full` when the target's credit is
//! used up, at send time, before anything crosses. The credit is advisory
//! for the receiver: local senders compete for the same slots, so a full
//! mailbox still refuses (a negative acknowledgement).
//!
//! Every envelope a sender numbered ends in exactly one of: acknowledged
//! (delivered), or undelivered with a [`DeliveryLoss`]: refused, lost,
//! `ack-timeout` (no acknowledgement within the timeout), `node-left` (the
//! receiving node left the directory), `publish-failed`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use wasm_core::{ComponentId, CorrelationId, DeliveryLoss, RemoteNodeStats, TraceContext};

use crate::wire::Malformed;

/// Acknowledge at least every this many envelopes of one session under
/// continuous load.
pub(crate) const ACK_EVERY: u64 = 128;

/// Each acknowledged range is sent a second time this long after the first.
pub(crate) const ACK_REPEAT: Duration = Duration::from_millis(200);

/// The credit assumed for a component whose announcement carried none (a
/// host of an older version): the default mailbox capacity.
pub(crate) const DEFAULT_CREDIT: u64 = wasm_core::DEFAULT_MAILBOX_CAPACITY as u64;

/// A receiving host forgets a sending session this long after its last
/// envelope (its acknowledgements are all sent and repeated by then).
const SESSION_IDLE: Duration = Duration::from_secs(60);

/// At most this many refusals and gaps are kept for one repeat; beyond,
/// the repeat is skipped (the first copy of each acknowledgement still
/// went out).
const REPEAT_MAX_ITEMS: usize = 4096;

/// An acknowledgement, as JSON on the sender's outcome subject:
/// `{"node": "b", "session": 7, "from": 1, "upto": 10, "nacks": [[4, "queue-full"]], "lost": [[6, 7]], "credits": {"echo": 100}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ack {
    /// The acknowledging (receiving) node.
    pub(crate) node: String,
    /// The sender's session this acknowledges.
    pub(crate) session: u64,
    /// The first sequence number covered.
    pub(crate) from: u64,
    /// The last sequence number covered (`upto < from`: credits only).
    pub(crate) upto: u64,
    /// Refused envelopes: sequence number and the refusal's text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) nacks: Vec<(u64, String)>,
    /// Gaps: inclusive ranges of sequence numbers that never arrived.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) lost: Vec<(u64, u64)>,
    /// Credits by component name, counted from `upto`.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub(crate) credits: HashMap<String, u64>,
}

impl Ack {
    /// The JSON body.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        // Strings and numbers only: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a JSON body.
    pub(crate) fn from_json(body: &[u8]) -> Result<Self, Malformed> {
        serde_json::from_slice(body).map_err(|e| Malformed(format!("acknowledgement: {e}")))
    }
}

/// What an outstanding envelope was, to end it if it is not delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// A fire-and-forget message: dead-lettered when undelivered.
    Message {
        /// Its sender, `name@node`.
        sender: ComponentId,
    },
    /// A request: failed with `delivery-failed` when undelivered (unless
    /// the receiving host refused it, which answers with its own outcome).
    Request {
        /// Its requester, `name@node`.
        requester: ComponentId,
        /// The requester's correlation id.
        id: CorrelationId,
        /// The request's trace context.
        trace: TraceContext,
    },
}

/// An envelope that ended undelivered, for the transport to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Undelivered {
    /// What it was.
    pub(crate) sent: Sent,
    /// Its target, `name@node`.
    pub(crate) target: ComponentId,
    /// Why, as a class.
    pub(crate) loss: DeliveryLoss,
    /// Why, in words.
    pub(crate) reason: String,
}

/// What an outstanding envelope is, without its ids (they are interned
/// per node: numbering an envelope allocates nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A fire-and-forget message.
    Message,
    /// A request, with the requester's correlation id and trace context.
    Request {
        /// The requester's correlation id.
        id: CorrelationId,
        /// The request's trace context.
        trace: TraceContext,
    },
}

/// One outstanding envelope: its target's and sender's slots in the node's
/// interned ids.
#[derive(Debug)]
struct InFlight {
    target: u32,
    sender: u32,
    kind: Kind,
    at: Instant,
}

/// A target component's credit at the sender.
#[derive(Debug)]
struct Credit {
    /// The target, `name@node`.
    id: ComponentId,
    /// The credit granted, counted from the last acknowledged sequence
    /// number; `None` until the first grant (the announced credit applies).
    window: Option<u64>,
    /// Envelopes to it numbered after that sequence number and not yet
    /// ended.
    outstanding: u64,
}

/// The sending side's state for one receiving node.
#[derive(Debug)]
struct NodeOut {
    /// The sequence number of `in_flight[0]`; `base + in_flight.len()` is
    /// the next number. Numbers are consecutive, so the outstanding
    /// envelopes are a ring indexed by number (ended ones are `None` until
    /// the front moves past them).
    base: u64,
    in_flight: VecDeque<Option<InFlight>>,
    /// The targets on this node, by name, each with its credit.
    target_slots: FxHashMap<String, u32>,
    targets: Vec<Credit>,
    /// The senders of envelopes to this node, interned.
    sender_slots: FxHashMap<ComponentId, u32>,
    senders: Vec<ComponentId>,
    stats: RemoteNodeStats,
}

impl NodeOut {
    fn new(node: &str) -> Self {
        Self {
            base: 1,
            in_flight: VecDeque::new(),
            target_slots: FxHashMap::default(),
            targets: Vec::new(),
            sender_slots: FxHashMap::default(),
            senders: Vec::new(),
            stats: RemoteNodeStats::new(node),
        }
    }

    fn next_seq(&self) -> u64 {
        self.base + self.in_flight.len() as u64
    }

    /// The slot of target `id` (`name@node`), made on first use.
    fn target_slot(&mut self, id: &ComponentId) -> u32 {
        if let Some(slot) = self.target_slots.get(id.name()) {
            return *slot;
        }
        let slot = u32::try_from(self.targets.len()).unwrap_or(u32::MAX);
        self.targets.push(Credit { id: id.clone(), window: None, outstanding: 0 });
        self.target_slots.insert(id.name().to_owned(), slot);
        slot
    }

    /// The slot of sender `id`, made on first use.
    fn sender_slot(&mut self, id: &ComponentId) -> u32 {
        if let Some(slot) = self.sender_slots.get(id) {
            return *slot;
        }
        let slot = u32::try_from(self.senders.len()).unwrap_or(u32::MAX);
        self.senders.push(id.clone());
        self.sender_slots.insert(id.clone(), slot);
        slot
    }

    /// Takes envelope `seq` out of the ring, if it is outstanding, and
    /// counts it ended (no longer pending, nor against its target's credit).
    fn take(&mut self, seq: u64) -> Option<InFlight> {
        let index = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        let entry = self.in_flight.get_mut(index)?.take()?;
        while matches!(self.in_flight.front(), Some(None)) {
            self.in_flight.pop_front();
            self.base += 1;
        }
        self.stats.pending_acks -= 1;
        if let Some(credit) = self.targets.get_mut(entry.target as usize) {
            credit.outstanding = credit.outstanding.saturating_sub(1);
        }
        Some(entry)
    }

    /// `entry` as reported to the host.
    fn undelivered(&self, entry: &InFlight, loss: DeliveryLoss, reason: String) -> Undelivered {
        let sender = self.senders[entry.sender as usize].clone();
        let sent = match entry.kind {
            Kind::Message => Sent::Message { sender },
            Kind::Request { id, trace } => Sent::Request { requester: sender, id, trace },
        };
        let target = self.targets[entry.target as usize].id.clone();
        Undelivered { sent, target, loss, reason: format!("{reason} (node {})", self.stats.node) }
    }
}

/// The sending side: sequence numbers, outstanding envelopes and credits,
/// per receiving node.
#[derive(Debug)]
pub(crate) struct Outbound {
    session: u64,
    nodes: FxHashMap<String, NodeOut>,
}

/// Why [`Outbound::reserve`] refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NoCredit {
    /// The credit that is used up.
    pub(crate) credit: u64,
}

impl Outbound {
    /// The state of a transport whose session is `session`.
    pub(crate) fn new(session: u64) -> Self {
        Self { session, nodes: FxHashMap::default() }
    }

    /// This transport's session.
    pub(crate) fn session(&self) -> u64 {
        self.session
    }

    /// Numbers an envelope from `sender` to `target` (`name@node`) and
    /// counts it outstanding, if the target has credit left: its granted
    /// window, or `announced()` before the first grant (asked only then).
    ///
    /// # Errors
    /// [`NoCredit`] when the target's outstanding envelopes fill its credit
    /// (counted in the node's `credit_refusals`).
    pub(crate) fn reserve(
        &mut self,
        node: &str,
        target: &ComponentId,
        sender: &ComponentId,
        kind: Kind,
        announced: impl FnOnce() -> u64,
        now: Instant,
    ) -> Result<u64, NoCredit> {
        // Looked up before inserting: no allocation on the hot path.
        if !self.nodes.contains_key(node) {
            self.nodes.insert(node.to_owned(), NodeOut::new(node));
        }
        let out = self.nodes.get_mut(node).expect("inserted above");
        let target = out.target_slot(target);
        let credit = &mut out.targets[target as usize];
        let window = credit.window.unwrap_or_else(announced);
        if credit.outstanding >= window {
            out.stats.credit_refusals += 1;
            return Err(NoCredit { credit: window });
        }
        credit.outstanding += 1;
        let sender = out.sender_slot(sender);
        let seq = out.next_seq();
        match kind {
            Kind::Message => out.stats.messages_sent += 1,
            Kind::Request { .. } => out.stats.requests_sent += 1,
        }
        out.stats.pending_acks += 1;
        out.in_flight.push_back(Some(InFlight { target, sender, kind, at: now }));
        Ok(seq)
    }

    /// Takes back the last [`Outbound::reserve`] for `node` (the envelope
    /// was not queued after all): uncounted, and its number reused.
    pub(crate) fn unreserve(&mut self, node: &str, seq: u64) {
        let Some(out) = self.nodes.get_mut(node) else { return };
        if seq + 1 != out.next_seq() {
            return;
        }
        let Some(Some(entry)) = out.in_flight.pop_back() else { return };
        if let Some(credit) = out.targets.get_mut(entry.target as usize) {
            credit.outstanding = credit.outstanding.saturating_sub(1);
        }
        match entry.kind {
            Kind::Message => out.stats.messages_sent -= 1,
            Kind::Request { .. } => out.stats.requests_sent -= 1,
        }
        out.stats.pending_acks -= 1;
    }

    /// Applies an acknowledgement from `ack.node`: ends every outstanding
    /// envelope it covers (acknowledged, or undelivered as refused or lost)
    /// and takes its credits. An acknowledgement of another session (an
    /// earlier run of this host) or of envelopes already ended changes
    /// nothing but the credits.
    pub(crate) fn on_ack(&mut self, ack: &Ack) -> Vec<Undelivered> {
        let mut ended = Vec::new();
        if ack.session != self.session {
            return ended;
        }
        let Some(out) = self.nodes.get_mut(&ack.node) else { return ended };
        if ack.from <= ack.upto {
            // Only what is still outstanding: a repeat finds nothing.
            let first = ack.from.max(out.base);
            let last = ack.upto.min(out.next_seq().saturating_sub(1));
            for seq in first..=last {
                let Some(entry) = out.take(seq) else { continue };
                if let Some((_, why)) = ack.nacks.iter().find(|(nacked, _)| *nacked == seq) {
                    out.stats.undelivered[DeliveryLoss::Refused.index()] += 1;
                    ended.push(out.undelivered(&entry, DeliveryLoss::Refused, format!("refused: {why}")));
                } else if ack.lost.iter().any(|(a, b)| (*a..=*b).contains(&seq)) {
                    out.stats.undelivered[DeliveryLoss::Lost.index()] += 1;
                    ended.push(out.undelivered(&entry, DeliveryLoss::Lost, "lost on the way".to_owned()));
                } else {
                    out.stats.acknowledged += 1;
                }
            }
        }
        for (name, granted) in &ack.credits {
            // The credit counts from `upto`: what is still outstanding was
            // numbered after it (an older acknowledgement's credit, counted
            // from an earlier `upto`, is at worst too small for a moment).
            if let Some(slot) = out.target_slots.get(name) {
                out.targets[*slot as usize].window = Some(*granted);
            }
        }
        ended
    }

    /// Ends every envelope outstanding longer than `timeout` at `now`
    /// (`ack-timeout`).
    pub(crate) fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<Undelivered> {
        let mut ended = Vec::new();
        for out in self.nodes.values_mut() {
            // Sequence order is sending order: the oldest come first.
            let mut seq = out.base;
            while seq < out.next_seq() {
                let index = usize::try_from(seq - out.base).unwrap_or(usize::MAX);
                match out.in_flight.get(index) {
                    Some(Some(entry)) if now.saturating_duration_since(entry.at) < timeout => break,
                    Some(Some(_)) => {
                        let Some(entry) = out.take(seq) else { break };
                        out.stats.undelivered[DeliveryLoss::AckTimeout.index()] += 1;
                        let why = format!("no acknowledgement within {} ms", timeout.as_millis());
                        ended.push(out.undelivered(&entry, DeliveryLoss::AckTimeout, why));
                    }
                    _ => {}
                }
                seq += 1;
            }
        }
        ended
    }

    /// Ends every envelope outstanding to `node` (`node-left`) and forgets
    /// its credits (the next host of that name starts from its
    /// announcement). The counts stay.
    pub(crate) fn node_left(&mut self, node: &str) -> Vec<Undelivered> {
        let Some(out) = self.nodes.get_mut(node) else { return Vec::new() };
        let mut ended = Vec::new();
        for seq in out.base..out.next_seq() {
            let Some(entry) = out.take(seq) else { continue };
            out.stats.undelivered[DeliveryLoss::NodeLeft.index()] += 1;
            ended.push(out.undelivered(&entry, DeliveryLoss::NodeLeft, "the node left the lattice".to_owned()));
        }
        for credit in &mut out.targets {
            credit.window = None;
        }
        ended
    }

    /// Ends envelope `seq` to `node`, which the client refused to publish.
    pub(crate) fn publish_failed(&mut self, node: &str, seq: u64, why: &str) -> Option<Undelivered> {
        let out = self.nodes.get_mut(node)?;
        let entry = out.take(seq)?;
        out.stats.undelivered[DeliveryLoss::PublishFailed.index()] += 1;
        Some(out.undelivered(&entry, DeliveryLoss::PublishFailed, format!("cannot publish: {why}")))
    }

    /// The counts per node (without the receiving side's).
    pub(crate) fn stats(&self) -> impl Iterator<Item = &RemoteNodeStats> {
        self.nodes.values().map(|out| &out.stats)
    }
}

/// The receiving side's state for one sending session.
#[derive(Debug)]
struct SessionIn {
    node: String,
    /// The highest sequence number seen.
    last: u64,
    /// The first sequence number not yet acknowledged.
    from: u64,
    nacks: Vec<(u64, String)>,
    lost: Vec<(u64, u64)>,
    /// Components the unacknowledged envelopes went to.
    touched: FxHashSet<String>,
    /// The credit last granted, per component.
    granted: FxHashMap<String, u64>,
    last_seen: Instant,
    /// The acknowledgements sent since the last repeat, merged, and when
    /// the first of them was sent.
    repeat: Option<(Ack, Instant)>,
}

/// The receiving side: what each sending session sent, refused and lost,
/// and the credits granted to it.
#[derive(Debug, Default)]
pub(crate) struct Inbound {
    /// By session: 64 random bits per run of a host, so sessions of two
    /// hosts do not collide (a session names its node too).
    sessions: FxHashMap<u64, SessionIn>,
    /// Envelopes received and refused, per sending node.
    counts: FxHashMap<String, (u64, u64)>,
}

impl Inbound {
    /// Records envelope `seq` of `node`'s session `session`, for component
    /// `name`, as queued (see [`Inbound::refuse`]). A sequence number past
    /// the next expected one records the numbers in between as lost; the
    /// first envelope of a session starts its sequence (what came before
    /// went to an earlier run of this host). Returns whether the session has
    /// [`ACK_EVERY`] envelopes unacknowledged.
    pub(crate) fn record(&mut self, node: &str, session: u64, seq: u64, name: &str, now: Instant) -> bool {
        let state = self.sessions.entry(session).or_insert_with(|| SessionIn {
            node: node.to_owned(),
            last: seq.saturating_sub(1),
            from: seq,
            nacks: Vec::new(),
            lost: Vec::new(),
            touched: FxHashSet::default(),
            granted: FxHashMap::default(),
            last_seen: now,
            repeat: None,
        });
        state.last_seen = now;
        if !self.counts.contains_key(node) {
            self.counts.insert(node.to_owned(), (0, 0));
        }
        let counts = self.counts.get_mut(node).expect("inserted above");
        counts.0 += 1;
        if seq <= state.last {
            // NATS does not redeliver: a number seen before is a foreign
            // or replayed message. Nothing to acknowledge again.
            return false;
        }
        if seq > state.last + 1 {
            state.lost.push((state.last + 1, seq - 1));
        }
        state.last = seq;
        if !state.touched.contains(name) {
            state.touched.insert(name.to_owned());
        }
        state.last - state.from + 1 >= ACK_EVERY
    }

    /// Marks envelope `seq` of session `session`, just recorded, as refused
    /// with `refusal` (a negative acknowledgement).
    pub(crate) fn refuse(&mut self, session: u64, seq: u64, refusal: String) {
        let Some(state) = self.sessions.get_mut(&session) else { return };
        if seq != state.last || state.nacks.last().is_some_and(|(last, _)| *last == seq) {
            return;
        }
        state.nacks.push((seq, refusal));
        if let Some(counts) = self.counts.get_mut(&state.node) {
            counts.1 += 1;
        }
    }

    /// The acknowledgements of every session with unacknowledged envelopes,
    /// each with the credits of the components they touched (`free`: a
    /// component's free slots, `None` when it does not run here).
    pub(crate) fn take_acks(
        &mut self,
        node: &str,
        now: Instant,
        free: impl Fn(&str) -> Option<u64>,
    ) -> Vec<(String, Ack)> {
        let sharers = self.sharers();
        let mut acks = Vec::new();
        for (session, state) in &mut self.sessions {
            if state.last < state.from {
                continue;
            }
            let mut credits = HashMap::with_capacity(state.touched.len());
            for name in state.touched.drain() {
                let grant = share(free(&name), sharers.get(&name).copied());
                state.granted.insert(name.clone(), grant);
                credits.insert(name, grant);
            }
            let ack = Ack {
                node: node.to_owned(),
                session: *session,
                from: state.from,
                upto: state.last,
                nacks: std::mem::take(&mut state.nacks),
                lost: std::mem::take(&mut state.lost),
                credits,
            };
            state.from = state.last + 1;
            merge_repeat(&mut state.repeat, &ack, now);
            acks.push((state.node.clone(), ack));
        }
        acks
    }

    /// The periodic work: credit updates for components whose free slots
    /// grew to at least twice what was last granted (or from none), the
    /// repeats that are due, and forgetting idle sessions.
    pub(crate) fn tick(&mut self, node: &str, now: Instant, free: impl Fn(&str) -> Option<u64>) -> Vec<(String, Ack)> {
        let sharers = self.sharers();
        let mut acks = Vec::new();
        self.sessions
            .retain(|_, state| now.saturating_duration_since(state.last_seen) < SESSION_IDLE || state.repeat.is_some());
        for (session, state) in &mut self.sessions {
            if let Some((repeat, first)) = &state.repeat
                && now.saturating_duration_since(*first) >= ACK_REPEAT
            {
                let mut repeat = repeat.clone();
                repeat.credits.clear();
                state.repeat = None;
                acks.push((state.node.clone(), repeat));
            }
            let mut credits = HashMap::new();
            for (name, granted) in &mut state.granted {
                let grant = share(free(name), sharers.get(name).copied());
                if grant > 0 && grant >= granted.saturating_mul(2) && grant != *granted {
                    *granted = grant;
                    credits.insert(name.clone(), grant);
                }
            }
            if !credits.is_empty() {
                // Credits only: covers nothing (`upto < from`), counted from
                // the last number acknowledged.
                let upto = state.from.saturating_sub(1);
                acks.push((
                    state.node.clone(),
                    Ack { node: node.to_owned(), session: *session, from: upto + 1, upto, credits, ..Ack::default() },
                ));
            }
        }
        acks
    }

    /// Envelopes received from each node, and how many of them were
    /// refused.
    pub(crate) fn received(&self) -> impl Iterator<Item = (&String, (u64, u64))> {
        self.counts.iter().map(|(node, counts)| (node, *counts))
    }

    /// How many sessions send to each component (have been granted
    /// credit for it, or touched it since).
    fn sharers(&self) -> FxHashMap<String, u64> {
        let mut sharers: FxHashMap<String, u64> = FxHashMap::default();
        for state in self.sessions.values() {
            for name in state.granted.keys().chain(state.touched.iter().filter(|n| !state.granted.contains_key(*n))) {
                *sharers.entry(name.clone()).or_default() += 1;
            }
        }
        sharers
    }
}

/// One session's share of `free` slots among `sharers` sessions (at least
/// one slot while any is free, so no sender starves).
fn share(free: Option<u64>, sharers: Option<u64>) -> u64 {
    let free = free.unwrap_or(0);
    let sharers = sharers.unwrap_or(1).max(1);
    if free == 0 { 0 } else { (free / sharers).max(1) }
}

/// Adds `ack` to the pending repeat.
fn merge_repeat(repeat: &mut Option<(Ack, Instant)>, ack: &Ack, now: Instant) {
    match repeat {
        None => *repeat = Some((ack.clone(), now)),
        Some((merged, _)) => {
            if merged.nacks.len() + merged.lost.len() + ack.nacks.len() + ack.lost.len() > REPEAT_MAX_ITEMS {
                // Too much to repeat: this range goes out once only.
                *repeat = None;
                return;
            }
            merged.upto = ack.upto;
            merged.nacks.extend(ack.nacks.iter().cloned());
            merged.lost.extend(ack.lost.iter().copied());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> ComponentId {
        ComponentId::parse(text).expect("a valid id")
    }

    /// A message from `s@a`.
    fn message(out: &mut Outbound, target: &ComponentId, announced: u64, now: Instant) -> Result<u64, NoCredit> {
        out.reserve(target.node().expect("qualified"), target, &id("s@a"), Kind::Message, || announced, now)
    }

    #[test]
    fn acknowledgements_end_each_envelope_once_as_delivered_refused_or_lost() {
        let now = Instant::now();
        let mut out = Outbound::new(7);
        let echo = id("echo@b");
        let seqs: Vec<u64> = (0..5).map(|_| message(&mut out, &echo, 100, now).expect("credit")).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);

        // The receiver got 1, 2 (refused) and 4; 3 was lost.
        let mut inbound = Inbound::default();
        inbound.record("a", 7, 1, "echo", now);
        inbound.record("a", 7, 2, "echo", now);
        inbound.refuse(7, 2, "queue-full".to_owned());
        inbound.record("a", 7, 4, "echo", now);
        let acks = inbound.take_acks("b", now, |_| Some(50));
        assert_eq!(acks.len(), 1);
        let (to, ack) = &acks[0];
        assert_eq!((to.as_str(), ack.from, ack.upto), ("a", 1, 4));
        assert_eq!(ack.lost, [(3, 3)]);
        assert_eq!(ack.credits.get("echo"), Some(&50));
        let ack = Ack::from_json(&ack.to_json()).expect("round trip");

        let ended = out.on_ack(&ack);
        let losses: Vec<DeliveryLoss> = ended.iter().map(|u| u.loss).collect();
        assert_eq!(losses, [DeliveryLoss::Refused, DeliveryLoss::Lost]);
        assert!(ended[0].reason.contains("queue-full"), "{}", ended[0].reason);
        // A repeat of the same acknowledgement changes nothing.
        assert!(out.on_ack(&ack).is_empty());
        // Another session's acknowledgement neither.
        assert!(out.on_ack(&Ack { session: 8, ..ack.clone() }).is_empty());

        // 5 is outstanding until it times out.
        assert!(out.expire(now + Duration::from_millis(10), Duration::from_secs(1)).is_empty());
        let timed_out = out.expire(now + Duration::from_secs(1), Duration::from_secs(1));
        assert_eq!(timed_out.iter().map(|u| u.loss).collect::<Vec<_>>(), [DeliveryLoss::AckTimeout]);

        let stats = out.stats().next().expect("node b");
        assert_eq!(stats.messages_sent, 5);
        assert_eq!(stats.acknowledged, 2);
        assert_eq!(stats.pending_acks, 0);
        assert_eq!(stats.undelivered, [1, 1, 1, 0, 0]);
        assert_eq!(stats.messages_sent, stats.acknowledged + stats.pending_acks + stats.undelivered_total());
    }

    #[test]
    fn credit_refuses_at_send_time_and_is_replenished_from_the_acknowledged_point() {
        let now = Instant::now();
        let mut out = Outbound::new(1);
        let echo = id("echo@b");
        // Announced credit 2: the third is refused before anything is sent.
        assert_eq!(message(&mut out, &echo, 2, now), Ok(1));
        assert_eq!(message(&mut out, &echo, 2, now), Ok(2));
        assert_eq!(message(&mut out, &echo, 2, now), Err(NoCredit { credit: 2 }));
        // Another component of the same node has its own credit.
        assert_eq!(message(&mut out, &id("other@b"), 2, now), Ok(3));

        // b queued 1 and 2 and grants 3 from there: 3 may be outstanding.
        let ack = Ack {
            node: "b".into(),
            session: 1,
            from: 1,
            upto: 2,
            credits: [("echo".to_owned(), 3)].into(),
            ..Ack::default()
        };
        assert!(out.on_ack(&ack).is_empty());
        for seq in 4..7 {
            assert_eq!(message(&mut out, &echo, 2, now), Ok(seq));
        }
        assert!(message(&mut out, &echo, 2, now).is_err());
        // A credit update with no range: nothing more outstanding than 3 + 2.
        let update = Ack { from: 3, upto: 2, credits: [("echo".to_owned(), 5)].into(), ..ack };
        assert!(out.on_ack(&update).is_empty());
        assert_eq!(message(&mut out, &echo, 2, now), Ok(7));
        assert_eq!(message(&mut out, &echo, 2, now), Ok(8));
        assert!(message(&mut out, &echo, 2, now).is_err());
        assert_eq!(out.stats().next().map(|s| s.credit_refusals), Some(3));

        // Taking back the last reservation reuses its number.
        out.unreserve("b", 8);
        assert_eq!(message(&mut out, &echo, 2, now), Ok(8));
    }

    #[test]
    fn a_node_that_leaves_ends_everything_outstanding_to_it() {
        let now = Instant::now();
        let mut out = Outbound::new(1);
        let (request_id, trace) = (CorrelationId::generate(), TraceContext::new_root());
        let request = Kind::Request { id: request_id, trace };
        message(&mut out, &id("echo@b"), 10, now).expect("credit");
        out.reserve("b", &id("echo@b"), &id("r@a"), request, || 10, now).expect("credit");
        message(&mut out, &id("echo@c"), 10, now).expect("credit");
        let ended = out.node_left("b");
        assert_eq!(ended.len(), 2);
        assert!(ended.iter().all(|u| u.loss == DeliveryLoss::NodeLeft));
        assert_eq!(ended[1].sent, Sent::Request { requester: id("r@a"), id: request_id, trace });
        assert_eq!(ended[0].sent, Sent::Message { sender: id("s@a") });
        let b = out.stats().find(|s| s.node == "b").expect("b");
        assert_eq!((b.pending_acks, b.undelivered[DeliveryLoss::NodeLeft.index()]), (0, 2));
        let c = out.stats().find(|s| s.node == "c").expect("c");
        assert_eq!(c.pending_acks, 1);
    }

    #[test]
    fn the_receiver_acknowledges_every_ack_every_envelopes_and_repeats_each_range_once() {
        let now = Instant::now();
        let mut inbound = Inbound::default();
        let due: Vec<bool> = (1..=ACK_EVERY).map(|seq| inbound.record("a", 1, seq, "echo", now)).collect();
        assert!(!due[..due.len() - 1].iter().any(|d| *d) && due[due.len() - 1]);
        let first = inbound.take_acks("b", now, |_| Some(10));
        assert_eq!((first[0].1.from, first[0].1.upto), (1, ACK_EVERY));
        inbound.record("a", 1, ACK_EVERY + 1, "echo", now);
        inbound.refuse(1, ACK_EVERY + 1, "stopped".into());
        let second = inbound.take_acks("b", now, |_| Some(10));
        assert_eq!((second[0].1.from, second[0].1.upto), (ACK_EVERY + 1, ACK_EVERY + 1));
        // Nothing new: no acknowledgement.
        assert!(inbound.take_acks("b", now, |_| Some(10)).is_empty());
        // The repeat covers both, refusal included, once.
        assert!(inbound.tick("b", now, |_| Some(10)).is_empty());
        let repeats = inbound.tick("b", now + ACK_REPEAT, |_| Some(10));
        assert_eq!(repeats.len(), 1);
        let repeat = &repeats[0].1;
        assert_eq!((repeat.from, repeat.upto, repeat.nacks.len()), (1, ACK_EVERY + 1, 1));
        assert!(inbound.tick("b", now + ACK_REPEAT * 2, |_| Some(10)).is_empty());
    }

    #[test]
    fn a_zero_or_repeated_sequence_number_neither_panics_nor_acknowledges_twice() {
        let now = Instant::now();
        let mut inbound = Inbound::default();
        assert!(!inbound.record("a", 5, 0, "echo", now));
        assert!(!inbound.record("a", 5, 0, "echo", now));
        // Credits only for a session that acknowledged nothing yet.
        inbound.tick("b", now, |_| Some(4));
        let acks = inbound.take_acks("b", now, |_| Some(4));
        assert!(acks.iter().all(|(_, ack)| ack.upto <= ack.from), "{acks:?}");
        assert!(inbound.take_acks("b", now, |_| Some(4)).is_empty());
        inbound.tick("b", now + ACK_REPEAT, |_| Some(100));
    }

    #[test]
    fn credit_updates_follow_a_draining_mailbox_and_are_shared_between_senders() {
        let now = Instant::now();
        let mut inbound = Inbound::default();
        inbound.record("a", 1, 1, "echo", now);
        inbound.record("c", 9, 1, "echo", now);
        // Full: no credit.
        let acks = inbound.take_acks("b", now, |_| Some(0));
        assert!(acks.iter().all(|(_, ack)| ack.credits.get("echo") == Some(&0)));
        // Unchanged: no update (the repeats aside).
        let later = now + Duration::from_millis(1);
        assert!(inbound.tick("b", later, |_| Some(0)).is_empty());
        // 100 free slots, two senders: 50 each, as a credit-only update.
        let updates = inbound.tick("b", later, |_| Some(100));
        assert_eq!(updates.len(), 2);
        for (_, ack) in &updates {
            assert_eq!(ack.credits.get("echo"), Some(&50));
            assert!(ack.upto < ack.from, "covers nothing: {ack:?}");
        }
        // Not twice as much: no update.
        assert!(inbound.tick("b", later, |_| Some(120)).is_empty());
    }
}
