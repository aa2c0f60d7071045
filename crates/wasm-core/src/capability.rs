//! Capabilities: which targets a component may message (SPEC section 3).

use std::fmt;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::CapabilityError;
use crate::id::ComponentId;

/// What a component's manifest grants: the targets it may message (exact
/// ids and glob patterns such as `billing-*`, matched by `globset`, whose
/// syntax is documented at <https://docs.rs/globset>) and whether it may send
/// requests. The default grants nothing.
///
/// ```
/// use wasm_core::{Capabilities, ComponentId};
/// let caps = Capabilities::new(["echo", "billing-*"], true).unwrap();
/// assert!(caps.allows(&ComponentId::parse("billing-eu").unwrap()));
/// assert!(!caps.allows(&ComponentId::parse("payroll").unwrap()));
/// assert!(!Capabilities::default().allows(&ComponentId::parse("echo").unwrap()));
/// ```
#[derive(Clone, Default)]
pub struct Capabilities {
    targets: GlobSet,
    patterns: Vec<String>,
    may_request: bool,
}

impl Capabilities {
    /// Grants sending to every target matching one of `patterns`, and sending
    /// requests when `may_request`.
    ///
    /// # Errors
    /// [`CapabilityError::BadPattern`] naming the first pattern that is not a
    /// valid glob.
    pub fn new<I, S>(patterns: I, may_request: bool) -> Result<Self, CapabilityError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut builder = GlobSetBuilder::new();
        let mut kept = Vec::new();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let glob = Glob::new(pattern).map_err(|e| CapabilityError::BadPattern {
                pattern: pattern.to_owned(),
                reason: e.kind().to_string(),
            })?;
            builder.add(glob);
            kept.push(pattern.to_owned());
        }
        let targets = builder
            .build()
            .map_err(|e| CapabilityError::BadPattern { pattern: kept.join(", "), reason: e.to_string() })?;
        Ok(Self { targets, patterns: kept, may_request })
    }

    /// True when a message to `target` is granted.
    #[must_use]
    pub fn allows(&self, target: &ComponentId) -> bool {
        !self.patterns.is_empty() && self.targets.is_match(target.as_str())
    }

    /// True when the component may send requests (to targets it may message).
    #[must_use]
    pub fn may_request(&self) -> bool {
        self.may_request
    }

    /// The granted patterns, as written in the manifest.
    #[must_use]
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capabilities").field("send", &self.patterns).field("may_request", &self.may_request).finish()
    }
}
