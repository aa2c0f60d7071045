//! The directory: which components each live host announced, and the codecs
//! they accept. Announcements are JSON:
//! `{"node": "b", "heartbeat_ms": 1000, "components": [{"name": "echo", "accepts": ["json"]}]}`.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wasm_core::{Codec, ComponentId, LocalComponent};

use crate::wire::Malformed;

/// A host forgets another this many heartbeats after its last announcement.
pub(crate) const EXPIRY_HEARTBEATS: u32 = 3;

/// An announcement on `<prefix>.dir`, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Announcement {
    /// The announcing host's node.
    pub(crate) node: String,
    /// Its heartbeat, ms: receivers keep the entry 3 of them. Absent (an
    /// older or foreign announcer): the receiver's own heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) heartbeat_ms: Option<u64>,
    /// Its components; empty: it has none (or is leaving).
    pub(crate) components: Vec<AnnouncedComponent>,
}

/// One component of an [`Announcement`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AnnouncedComponent {
    /// Its name, without `@node`.
    pub(crate) name: String,
    /// Codec names (`json`, `cbor`, ...); empty: every codec.
    #[serde(default)]
    pub(crate) accepts: Vec<String>,
    /// The credit each other host starts with for it (its free mailbox
    /// slots when announced, divided among the live hosts; see
    /// [`crate::flow`]). Absent: [`crate::flow::DEFAULT_CREDIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) credit: Option<u64>,
}

impl Announcement {
    /// What `node` announces for `components`, each with the credit
    /// `credit` gives it (`None`: no credit field).
    pub(crate) fn new(
        node: &str,
        heartbeat: Duration,
        components: &[LocalComponent],
        credit: impl Fn(&str) -> Option<u64>,
    ) -> Self {
        Self {
            node: node.to_owned(),
            heartbeat_ms: Some(u64::try_from(heartbeat.as_millis()).unwrap_or(u64::MAX)),
            components: components
                .iter()
                .map(|c| AnnouncedComponent {
                    name: c.name.clone(),
                    accepts: c.accepts.iter().map(|codec| codec.name().to_owned()).collect(),
                    credit: credit(&c.name),
                })
                .collect(),
        }
    }

    /// The JSON body.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        // Serializing strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and validates a JSON body.
    pub(crate) fn from_json(body: &[u8]) -> Result<Self, Malformed> {
        let announcement: Self = serde_json::from_slice(body).map_err(|e| Malformed(format!("announcement: {e}")))?;
        if ComponentId::validate(&format!("x@{}", announcement.node)).is_err() {
            return Err(Malformed(format!("announcement: bad node {:?}", announcement.node)));
        }
        if let Some(bad) =
            announcement.components.iter().find(|c| c.name.contains('@') || ComponentId::validate(&c.name).is_err())
        {
            return Err(Malformed(format!("announcement of {}: bad name {:?}", announcement.node, bad.name)));
        }
        Ok(announcement)
    }
}

/// What one node's components accept: `None` for every codec, else the
/// known codecs named (an announced list of only unknown names accepts
/// nothing this host can send).
type Accepts = Option<Vec<Codec>>;

#[derive(Debug)]
struct NodeEntry {
    components: HashMap<String, (Accepts, Option<u64>)>,
    expires: Instant,
}

/// The other hosts' announcements, each until its expiry.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    nodes: RwLock<HashMap<String, NodeEntry>>,
}

impl Directory {
    /// Replaces `announcement.node`'s entry (an empty list removes it),
    /// valid for 3 heartbeats from `now` (the announcer's, else `heartbeat`).
    /// Returns whether it removed a known node.
    pub(crate) fn apply(&self, announcement: Announcement, heartbeat: Duration, now: Instant) -> bool {
        let mut nodes = self.nodes.write().unwrap_or_else(PoisonError::into_inner);
        if announcement.components.is_empty() {
            return nodes.remove(&announcement.node).is_some();
        }
        let heartbeat = announcement.heartbeat_ms.map_or(heartbeat, Duration::from_millis);
        let expires = now
            .checked_add(heartbeat.saturating_mul(EXPIRY_HEARTBEATS))
            .unwrap_or_else(|| now + Duration::from_secs(3600));
        let components = announcement
            .components
            .into_iter()
            .map(|c| {
                let accepts = if c.accepts.is_empty() {
                    None
                } else {
                    Some(c.accepts.iter().filter_map(|name| Codec::from_name(name)).collect())
                };
                (c.name, (accepts, c.credit))
            })
            .collect();
        nodes.insert(announcement.node, NodeEntry { components, expires });
        false
    }

    /// Whether `target` (`name@node`) accepts `codec`, as announced and not
    /// expired at `now`; `None` when unknown.
    pub(crate) fn accepts(&self, target: &ComponentId, codec: Codec, now: Instant) -> Option<bool> {
        let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
        let entry = nodes.get(target.node()?).filter(|e| e.expires > now)?;
        let (accepts, _) = entry.components.get(target.name())?;
        Some(accepts.as_ref().is_none_or(|codecs| codecs.contains(&codec)))
    }

    /// The credit `target` (`name@node`) announced, when it announced one.
    pub(crate) fn credit(&self, target: &ComponentId) -> Option<u64> {
        let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
        nodes.get(target.node()?)?.components.get(target.name())?.1
    }

    /// Forgets the entries expired at `now`; returns their nodes.
    pub(crate) fn prune(&self, now: Instant) -> Vec<String> {
        let mut nodes = self.nodes.write().unwrap_or_else(PoisonError::into_inner);
        let expired: Vec<String> = nodes.iter().filter(|(_, e)| e.expires <= now).map(|(n, _)| n.clone()).collect();
        for node in &expired {
            nodes.remove(node);
        }
        expired
    }

    /// How many nodes have a live entry at `now`.
    pub(crate) fn live_nodes(&self, now: Instant) -> usize {
        self.nodes.read().unwrap_or_else(PoisonError::into_inner).values().filter(|e| e.expires > now).count()
    }
}

/// Whether `components` (this host's own list) has `name` accepting `codec`.
pub(crate) fn local_accepts(components: &[LocalComponent], name: &str, codec: Codec) -> Option<bool> {
    let component = components.iter().find(|c| c.name == name)?;
    Some(component.accepts.is_empty() || component.accepts.contains(&codec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> ComponentId {
        ComponentId::parse(text).expect("a valid id")
    }

    fn echo_json(node: &str) -> Announcement {
        Announcement::new(
            node,
            Duration::from_millis(100),
            &[
                LocalComponent { name: "echo".into(), accepts: vec![Codec::Json] },
                LocalComponent { name: "any".into(), accepts: vec![] },
            ],
            |name| (name == "echo").then_some(64),
        )
    }

    #[test]
    fn announcements_round_trip_as_the_documented_json() {
        let announcement = echo_json("b");
        let json: serde_json::Value = serde_json::from_slice(&announcement.to_json()).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"node": "b", "heartbeat_ms": 100, "components": [
                {"name": "echo", "accepts": ["json"], "credit": 64}, {"name": "any", "accepts": []}]})
        );
        assert_eq!(Announcement::from_json(&announcement.to_json()), Ok(announcement));
        let minimal = Announcement::from_json(br#"{"node":"c","components":[{"name":"x"}]}"#).expect("minimal");
        assert_eq!((minimal.heartbeat_ms, minimal.components[0].accepts.len()), (None, 0));
        for bad in [&b"{}"[..], br#"{"node":"C","components":[]}"#, br#"{"node":"c","components":[{"name":"x@y"}]}"#] {
            assert!(Announcement::from_json(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn accepts_answers_from_live_entries_only() {
        let directory = Directory::default();
        let t0 = Instant::now();
        directory.apply(echo_json("b"), Duration::from_secs(1), t0);
        assert_eq!(directory.accepts(&id("echo@b"), Codec::Json, t0), Some(true));
        assert_eq!(directory.accepts(&id("echo@b"), Codec::Cbor, t0), Some(false));
        assert_eq!(directory.accepts(&id("any@b"), Codec::Cbor, t0), Some(true));
        assert_eq!(directory.accepts(&id("nope@b"), Codec::Json, t0), None);
        assert_eq!(directory.accepts(&id("echo@c"), Codec::Json, t0), None);
        assert_eq!(directory.accepts(&id("echo"), Codec::Json, t0), None);
        assert_eq!(directory.live_nodes(t0), 1);
        // The announcer's heartbeat (100 ms) sets the expiry: 300 ms.
        let later = t0 + Duration::from_millis(301);
        assert_eq!(directory.accepts(&id("echo@b"), Codec::Json, later), None);
        assert_eq!(directory.live_nodes(later), 0);
        assert_eq!(directory.prune(later), ["b"]);
        assert_eq!(directory.live_nodes(t0), 0);
        // An empty announcement removes the node at once.
        assert!(!directory.apply(echo_json("b"), Duration::from_secs(1), t0));
        assert_eq!(directory.credit(&id("echo@b")), Some(64));
        assert_eq!(directory.credit(&id("any@b")), None);
        assert!(directory.apply(
            Announcement::new("b", Duration::from_secs(1), &[], |_| None),
            Duration::from_secs(1),
            t0
        ));
        assert_eq!(directory.accepts(&id("echo@b"), Codec::Json, t0), None);
    }

    #[test]
    fn unknown_codec_names_accept_nothing_rather_than_everything() {
        let directory = Directory::default();
        let now = Instant::now();
        let announcement =
            Announcement::from_json(br#"{"node":"c","components":[{"name":"x","accepts":["zstd-future"]}]}"#)
                .expect("valid");
        directory.apply(announcement, Duration::from_secs(1), now);
        assert_eq!(directory.accepts(&id("x@c"), Codec::Json, now), Some(false));
    }
}
