//! The per-component rules of the send path (SPEC section 3): capabilities,
//! rate limit, accepted codecs, payload cap and request quotas, built once
//! from the manifest at start.

use std::fmt;
use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use wasm_core::{Capabilities, Codec, ComponentManifest, DEFAULT_MAX_MESSAGE_BYTES, RequestsSection};

use crate::error::PolicyError;

/// The set of codecs a component accepts (all, by default).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CodecSet(u8);

impl CodecSet {
    /// Every known codec.
    pub const ALL: CodecSet = CodecSet(u8::MAX);

    fn bit(codec: Codec) -> u8 {
        let index = Codec::ALL.iter().position(|c| *c == codec).unwrap_or(0);
        1 << index
    }

    /// The set holding `codecs`; an empty list means all codecs.
    #[must_use]
    pub fn of(codecs: &[Codec]) -> Self {
        if codecs.is_empty() {
            return Self::ALL;
        }
        Self(codecs.iter().fold(0, |bits, c| bits | Self::bit(*c)))
    }

    /// The codecs in the set, in [`Codec::ALL`] order; empty for the set of
    /// all codecs (how manifests and the cluster directory say "any").
    #[must_use]
    pub fn codecs(self) -> Vec<Codec> {
        if self == Self::ALL {
            return Vec::new();
        }
        Codec::ALL.iter().copied().filter(|c| self.contains(*c)).collect()
    }

    /// True when `codec` is in the set.
    #[must_use]
    pub fn contains(self, codec: Codec) -> bool {
        self.0 & Self::bit(codec) != 0
    }
}

impl fmt::Display for CodecSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Codec::ALL.iter().filter(|c| self.contains(**c)).map(|c| c.name()).collect();
        f.write_str(&names.join(", "))
    }
}

impl fmt::Debug for CodecSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CodecSet({self})")
    }
}

/// What one component may do, and what it accepts.
pub struct Policy {
    capabilities: Capabilities,
    unrestricted: bool,
    rate: Option<DefaultDirectRateLimiter>,
    accepts: CodecSet,
    max_message_bytes: usize,
    requests: RequestsSection,
}

impl Policy {
    /// Builds the rules from a manifest.
    ///
    /// # Errors
    /// [`PolicyError`] naming the manifest key: an unknown codec name, an
    /// invalid capability pattern, a zero rate or burst, a zero payload cap.
    pub fn from_manifest(manifest: &ComponentManifest) -> Result<Self, PolicyError> {
        let capabilities = Capabilities::new(&manifest.capabilities.send, manifest.capabilities.request)
            .map_err(|e| PolicyError::new("capabilities.send", e.to_string()))?;
        let rate = match &manifest.rate {
            None => None,
            Some(rate) => {
                let per_second = NonZeroU32::new(rate.messages_per_second)
                    .ok_or_else(|| PolicyError::new("rate.messages_per_second", "must be at least 1"))?;
                let burst =
                    NonZeroU32::new(rate.burst).ok_or_else(|| PolicyError::new("rate.burst", "must be at least 1"))?;
                Some(RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)))
            }
        };
        let mut codecs = Vec::new();
        for name in &manifest.codecs.accept {
            let codec = Codec::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = Codec::ALL.iter().map(|c| c.name()).collect();
                PolicyError::new("codecs.accept", format!("unknown codec {name:?} (known: {})", known.join(", ")))
            })?;
            codecs.push(codec);
        }
        if manifest.limits.max_message_bytes == 0 {
            return Err(PolicyError::new("limits.max_message_bytes", "must be at least 1"));
        }
        if manifest.mailbox.capacity == 0 {
            return Err(PolicyError::new("mailbox.capacity", "must be at least 1"));
        }
        if manifest.mailbox.max_bytes == 0 {
            return Err(PolicyError::new("mailbox.max_bytes", "must be at least 1"));
        }
        if manifest.requests.max_timeout_ms == 0
            || manifest.requests.default_timeout_ms > manifest.requests.max_timeout_ms
        {
            return Err(PolicyError::new(
                "requests.default_timeout_ms",
                format!(
                    "must be at most requests.max_timeout_ms ({}), which must be at least 1",
                    manifest.requests.max_timeout_ms
                ),
            ));
        }
        Ok(Self {
            capabilities,
            unrestricted: false,
            rate,
            accepts: CodecSet::of(&codecs),
            max_message_bytes: manifest.limits.max_message_bytes,
            requests: manifest.requests.clone(),
        })
    }

    /// The host's rules: may message and ask anyone, no rate limit, default
    /// payload cap and quotas.
    #[must_use]
    pub fn host() -> Self {
        Self {
            capabilities: Capabilities::default(),
            unrestricted: true,
            rate: None,
            accepts: CodecSet::ALL,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            requests: RequestsSection::default(),
        }
    }

    /// True when a message to `target` (an id, validated or not) is granted.
    #[must_use]
    pub fn may_send_to(&self, target: &str) -> bool {
        self.unrestricted || self.capabilities.allows_str(target)
    }

    /// True when requests are granted.
    #[must_use]
    pub fn may_request(&self) -> bool {
        self.unrestricted || self.capabilities.may_request()
    }

    /// Takes one unit from the rate limiter (GCRA, `governor`); false when
    /// over the limit.
    #[must_use]
    pub fn admit(&self) -> bool {
        self.rate.as_ref().is_none_or(|limiter| limiter.check().is_ok())
    }

    /// The codecs accepted in incoming messages and responses.
    #[must_use]
    pub fn accepts(&self) -> CodecSet {
        self.accepts
    }

    /// Cap on payloads this component sends, in bytes.
    #[must_use]
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Request defaults and quotas.
    #[must_use]
    pub fn requests(&self) -> &RequestsSection {
        &self.requests
    }

    /// The granted capabilities.
    #[must_use]
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("capabilities", &self.capabilities)
            .field("unrestricted", &self.unrestricted)
            .field("rate_limited", &self.rate.is_some())
            .field("accepts", &self.accepts)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("requests", &self.requests)
            .finish()
    }
}
