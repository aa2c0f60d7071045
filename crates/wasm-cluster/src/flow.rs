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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

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

    /// Whether `seq` is covered.
    fn covers(&self, seq: u64) -> bool {
        (self.from..=self.upto).contains(&seq)
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

/// One outstanding envelope.
#[derive(Debug)]
struct InFlight {
    target: ComponentId,
    sent: Sent,
    at: Instant,
}

/// A target component's credit at the sender.
#[derive(Debug, Default)]
struct Credit {
    /// The credit granted, counted from the last acknowledged sequence
    /// number; `None` until the first grant (the announced credit applies).
    window: Option<u64>,
    /// Envelopes to it numbered after that sequence number and not yet
    /// ended.
    outstanding: u64,
}

/// The sending side's state for one receiving node.
#[derive(Debug, Default)]
struct NodeOut {
    next_seq: u64,
    in_flight: BTreeMap<u64, InFlight>,
    credits: HashMap<String, Credit>,
    stats: RemoteNodeStats,
}

/// The sending side: sequence numbers, outstanding envelopes and credits,
/// per receiving node.
#[derive(Debug)]
pub(crate) struct Outbound {
    session: u64,
    nodes: HashMap<String, NodeOut>,
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
        Self { session, nodes: HashMap::new() }
    }

    /// This transport's session.
    pub(crate) fn session(&self) -> u64 {
        self.session
    }

    /// Numbers an envelope for `target` (`name@node`) and counts it
    /// outstanding, if the target has credit left: its granted window, or
    /// `announced` before the first grant.
    ///
    /// # Errors
    /// [`NoCredit`] when the target's outstanding envelopes fill its credit
    /// (counted in the node's `credit_refusals`).
    pub(crate) fn reserve(
        &mut self,
        node: &str,
        target: &ComponentId,
        sent: Sent,
        announced: u64,
        now: Instant,
    ) -> Result<u64, NoCredit> {
        let out = self.nodes.entry(node.to_owned()).or_insert_with(|| NodeOut {
            next_seq: 1,
            stats: RemoteNodeStats::new(node),
            ..NodeOut::default()
        });
        let credit = out.credits.entry(target.name().to_owned()).or_default();
        let window = credit.window.unwrap_or(announced);
        if credit.outstanding >= window {
            out.stats.credit_refusals += 1;
            return Err(NoCredit { credit: window });
        }
        credit.outstanding += 1;
        let seq = out.next_seq;
        out.next_seq += 1;
        match sent {
            Sent::Message { .. } => out.stats.messages_sent += 1,
            Sent::Request { .. } => out.stats.requests_sent += 1,
        }
        out.stats.pending_acks += 1;
        out.in_flight.insert(seq, InFlight { target: target.clone(), sent, at: now });
        Ok(seq)
    }

    /// Takes back the last [`Outbound::reserve`] for `node` (the envelope
    /// was not queued after all): uncounted, and its number reused.
    pub(crate) fn unreserve(&mut self, node: &str, seq: u64) {
        let Some(out) = self.nodes.get_mut(node) else { return };
        let Some(entry) = out.in_flight.remove(&seq) else { return };
        if let Some(credit) = out.credits.get_mut(entry.target.name()) {
            credit.outstanding = credit.outstanding.saturating_sub(1);
        }
        match entry.sent {
            Sent::Message { .. } => out.stats.messages_sent -= 1,
            Sent::Request { .. } => out.stats.requests_sent -= 1,
        }
        out.stats.pending_acks -= 1;
        if out.next_seq == seq + 1 {
            out.next_seq = seq;
        }
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
            let nacks: HashMap<u64, &str> = ack.nacks.iter().map(|(seq, why)| (*seq, why.as_str())).collect();
            let covered: Vec<u64> = out.in_flight.range(ack.from..=ack.upto).map(|(seq, _)| *seq).collect();
            for seq in covered {
                let Some(entry) = out.in_flight.remove(&seq) else { continue };
                end_one(out, &entry);
                if let Some(why) = nacks.get(&seq) {
                    out.stats.undelivered[DeliveryLoss::Refused.index()] += 1;
                    ended.push(undelivered(&ack.node, entry, DeliveryLoss::Refused, format!("refused: {why}")));
                } else if ack.lost.iter().any(|(a, b)| (*a..=*b).contains(&seq)) {
                    out.stats.undelivered[DeliveryLoss::Lost.index()] += 1;
                    ended.push(undelivered(&ack.node, entry, DeliveryLoss::Lost, "lost on the way".to_owned()));
                } else {
                    out.stats.acknowledged += 1;
                }
            }
        }
        for (name, granted) in &ack.credits {
            let credit = out.credits.entry(name.clone()).or_default();
            // The credit counts from `upto`: what is still outstanding was
            // numbered after it (an older acknowledgement's credit, counted
            // from an earlier `upto`, is at worst too small for a moment).
            credit.window = Some(*granted);
        }
        debug_assert!(ack.covers(ack.upto) || ack.upto < ack.from);
        ended
    }

    /// Ends every envelope outstanding longer than `timeout` at `now`
    /// (`ack-timeout`).
    pub(crate) fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<Undelivered> {
        let mut ended = Vec::new();
        for (node, out) in &mut self.nodes {
            // Sequence order is sending order: the oldest come first.
            while let Some(entry) = out.in_flight.first_entry() {
                if now.saturating_duration_since(entry.get().at) < timeout {
                    break;
                }
                let entry = entry.remove();
                end_one(out, &entry);
                out.stats.undelivered[DeliveryLoss::AckTimeout.index()] += 1;
                let why = format!("no acknowledgement within {} ms", timeout.as_millis());
                ended.push(undelivered(node, entry, DeliveryLoss::AckTimeout, why));
            }
        }
        ended
    }

    /// Ends every envelope outstanding to `node` (`node-left`) and forgets
    /// its credits (the next host of that name starts from its
    /// announcement). The counts stay.
    pub(crate) fn node_left(&mut self, node: &str) -> Vec<Undelivered> {
        let Some(out) = self.nodes.get_mut(node) else { return Vec::new() };
        let entries = std::mem::take(&mut out.in_flight);
        out.credits.clear();
        let mut ended = Vec::with_capacity(entries.len());
        for (_, entry) in entries {
            out.stats.undelivered[DeliveryLoss::NodeLeft.index()] += 1;
            out.stats.pending_acks -= 1;
            ended.push(undelivered(node, entry, DeliveryLoss::NodeLeft, "the node left the lattice".to_owned()));
        }
        ended
    }

    /// Ends envelope `seq` to `node`, which the client refused to publish.
    pub(crate) fn publish_failed(&mut self, node: &str, seq: u64, why: &str) -> Option<Undelivered> {
        let out = self.nodes.get_mut(node)?;
        let entry = out.in_flight.remove(&seq)?;
        end_one(out, &entry);
        out.stats.undelivered[DeliveryLoss::PublishFailed.index()] += 1;
        Some(undelivered(node, entry, DeliveryLoss::PublishFailed, format!("cannot publish: {why}")))
    }

    /// The counts per node (without the receiving side's).
    pub(crate) fn stats(&self) -> impl Iterator<Item = &RemoteNodeStats> {
        self.nodes.values().map(|out| &out.stats)
    }
}

/// Counts `entry` ended: no longer pending, nor outstanding against its
/// target's credit.
fn end_one(out: &mut NodeOut, entry: &InFlight) {
    out.stats.pending_acks -= 1;
    if let Some(credit) = out.credits.get_mut(entry.target.name()) {
        credit.outstanding = credit.outstanding.saturating_sub(1);
    }
}

fn undelivered(node: &str, entry: InFlight, loss: DeliveryLoss, reason: String) -> Undelivered {
    Undelivered { sent: entry.sent, target: entry.target, loss, reason: format!("{reason} (node {node})") }
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
    touched: HashSet<String>,
    /// The credit last granted, per component.
    granted: HashMap<String, u64>,
    last_seen: Instant,
    /// The acknowledgements sent since the last repeat, merged, and when
    /// the first of them was sent.
    repeat: Option<(Ack, Instant)>,
}

/// The receiving side: what each sending session sent, refused and lost,
/// and the credits granted to it.
#[derive(Debug, Default)]
pub(crate) struct Inbound {
    sessions: HashMap<(String, u64), SessionIn>,
    /// Envelopes received and refused, per sending node.
    counts: HashMap<String, (u64, u64)>,
}

impl Inbound {
    /// Records envelope `seq` of `node`'s session `session`, for component
    /// `name`, refused with `refusal` or queued (`None`). A sequence number
    /// past the next expected one records the numbers in between as lost;
    /// the first envelope of a session starts its sequence (what came
    /// before went to an earlier run of this host). Returns whether the
    /// session has [`ACK_EVERY`] envelopes unacknowledged.
    pub(crate) fn record(
        &mut self,
        node: &str,
        session: u64,
        seq: u64,
        name: &str,
        refusal: Option<String>,
        now: Instant,
    ) -> bool {
        let state = self.sessions.entry((node.to_owned(), session)).or_insert_with(|| SessionIn {
            node: node.to_owned(),
            last: seq.saturating_sub(1),
            from: seq,
            nacks: Vec::new(),
            lost: Vec::new(),
            touched: HashSet::new(),
            granted: HashMap::new(),
            last_seen: now,
            repeat: None,
        });
        state.last_seen = now;
        let counts = self.counts.entry(node.to_owned()).or_default();
        counts.0 += 1;
        counts.1 += u64::from(refusal.is_some());
        if seq <= state.last {
            // NATS does not redeliver: a number seen before is a foreign
            // or replayed message. Nothing to acknowledge again.
            return false;
        }
        if seq > state.last + 1 {
            state.lost.push((state.last + 1, seq - 1));
        }
        state.last = seq;
        if let Some(refusal) = refusal {
            state.nacks.push((seq, refusal));
        }
        state.touched.insert(name.to_owned());
        state.last - state.from + 1 >= ACK_EVERY
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
        for ((_, session), state) in &mut self.sessions {
            if state.last < state.from {
                continue;
            }
            let mut credits = HashMap::new();
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
        for ((_, session), state) in &mut self.sessions {
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
                let upto = state.from - 1;
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
    fn sharers(&self) -> HashMap<String, u64> {
        let mut sharers: HashMap<String, u64> = HashMap::new();
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

    fn message(sender: &str) -> Sent {
        Sent::Message { sender: id(sender) }
    }

    #[test]
    fn acknowledgements_end_each_envelope_once_as_delivered_refused_or_lost() {
        let now = Instant::now();
        let mut out = Outbound::new(7);
        let seqs: Vec<u64> =
            (0..5).map(|_| out.reserve("b", &id("echo@b"), message("a1@a"), 100, now).expect("credit")).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);

        // The receiver got 1, 2 (refused) and 4; 3 was lost.
        let mut inbound = Inbound::default();
        for (seq, refusal) in [(1, None), (2, Some("queue-full".to_owned())), (4, None)] {
            inbound.record("a", 7, seq, "echo", refusal, now);
        }
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
        assert_eq!(out.reserve("b", &echo, message("s@a"), 2, now), Ok(1));
        assert_eq!(out.reserve("b", &echo, message("s@a"), 2, now), Ok(2));
        assert_eq!(out.reserve("b", &echo, message("s@a"), 2, now), Err(NoCredit { credit: 2 }));
        // Another component of the same node has its own credit.
        assert_eq!(out.reserve("b", &id("other@b"), message("s@a"), 2, now), Ok(3));

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
            assert_eq!(out.reserve("b", &echo, message("s@a"), 2, now), Ok(seq));
        }
        assert!(out.reserve("b", &echo, message("s@a"), 2, now).is_err());
        // A credit update with no range: nothing more outstanding than 3 + 2.
        let update = Ack { from: 3, upto: 2, credits: [("echo".to_owned(), 5)].into(), ..ack };
        assert!(out.on_ack(&update).is_empty());
        assert_eq!(out.reserve("b", &echo, message("s@a"), 2, now), Ok(7));
        assert_eq!(out.reserve("b", &echo, message("s@a"), 2, now), Ok(8));
        assert!(out.reserve("b", &echo, message("s@a"), 2, now).is_err());
        assert_eq!(out.stats().next().map(|s| s.credit_refusals), Some(3));

        // Taking back the last reservation reuses its number.
        out.unreserve("b", 8);
        assert_eq!(out.reserve("b", &echo, message("s@a"), 2, now), Ok(8));
    }

    #[test]
    fn a_node_that_leaves_ends_everything_outstanding_to_it() {
        let now = Instant::now();
        let mut out = Outbound::new(1);
        let request =
            Sent::Request { requester: id("r@a"), id: CorrelationId::generate(), trace: TraceContext::new_root() };
        out.reserve("b", &id("echo@b"), message("s@a"), 10, now).expect("credit");
        out.reserve("b", &id("echo@b"), request.clone(), 10, now).expect("credit");
        out.reserve("c", &id("echo@c"), message("s@a"), 10, now).expect("credit");
        let ended = out.node_left("b");
        assert_eq!(ended.len(), 2);
        assert!(ended.iter().all(|u| u.loss == DeliveryLoss::NodeLeft));
        assert_eq!(ended[1].sent, request);
        let b = out.stats().find(|s| s.node == "b").expect("b");
        assert_eq!((b.pending_acks, b.undelivered[DeliveryLoss::NodeLeft.index()]), (0, 2));
        let c = out.stats().find(|s| s.node == "c").expect("c");
        assert_eq!(c.pending_acks, 1);
    }

    #[test]
    fn the_receiver_acknowledges_every_ack_every_envelopes_and_repeats_each_range_once() {
        let now = Instant::now();
        let mut inbound = Inbound::default();
        let due: Vec<bool> = (1..=ACK_EVERY).map(|seq| inbound.record("a", 1, seq, "echo", None, now)).collect();
        assert!(!due[..due.len() - 1].iter().any(|d| *d) && due[due.len() - 1]);
        let first = inbound.take_acks("b", now, |_| Some(10));
        assert_eq!((first[0].1.from, first[0].1.upto), (1, ACK_EVERY));
        inbound.record("a", 1, ACK_EVERY + 1, "echo", Some("stopped".into()), now);
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
    fn credit_updates_follow_a_draining_mailbox_and_are_shared_between_senders() {
        let now = Instant::now();
        let mut inbound = Inbound::default();
        inbound.record("a", 1, 1, "echo", None, now);
        inbound.record("c", 9, 1, "echo", None, now);
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
