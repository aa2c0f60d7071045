//! Capabilities: which targets a component may message (SPEC section 3).

use std::fmt;

use globset::{Glob, GlobSet, GlobSetBuilder};
use rustc_hash::FxHashSet;

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
    /// Patterns without glob syntax: an exact-match set, the common case.
    /// FxHash, as the registry's map: every send looks its target up here,
    /// and the keys come from the operator's manifest (a tenant only looks
    /// up, so it cannot build the colliding set a flooding attack needs).
    exact: FxHashSet<String>,
    /// Patterns with glob syntax (`*`, `?`, `[`, `{`).
    globs: GlobSet,
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
        let mut exact = FxHashSet::default();
        let mut kept = Vec::new();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let glob = Glob::new(pattern).map_err(|e| CapabilityError::BadPattern {
                pattern: pattern.to_owned(),
                reason: e.kind().to_string(),
            })?;
            if pattern.contains(['*', '?', '[', '{', '\\']) {
                builder.add(glob);
            } else {
                exact.insert(pattern.to_owned());
            }
            kept.push(pattern.to_owned());
        }
        let globs = builder
            .build()
            .map_err(|e| CapabilityError::BadPattern { pattern: kept.join(", "), reason: e.to_string() })?;
        Ok(Self { exact, globs, patterns: kept, may_request })
    }

    /// True when a message to `target` is granted.
    #[must_use]
    pub fn allows(&self, target: &ComponentId) -> bool {
        self.allows_str(target.as_str())
    }

    /// As [`Capabilities::allows`], for a target that is not (yet) a validated id.
    #[must_use]
    pub fn allows_str(&self, target: &str) -> bool {
        self.exact.contains(target) || (!self.globs.is_empty() && self.globs.is_match(target))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_ids_and_globs_both_grant_and_nothing_else_does() {
        let caps = Capabilities::new(["ledger", "billing-*", "node-?", "{a,b}.svc"], false).expect("valid");
        for granted in ["ledger", "billing-eu", "billing-", "node-1", "a.svc", "b.svc"] {
            assert!(caps.allows_str(granted), "{granted}");
        }
        for denied in ["ledger2", "xledger", "billing", "node-12", "c.svc", "payroll", ""] {
            assert!(!caps.allows_str(denied), "{denied}");
        }
        assert!(!caps.may_request());
        assert!(!Capabilities::default().allows_str("ledger"));
    }

    #[test]
    fn a_bad_glob_is_named() {
        let error = Capabilities::new(["ok", "bad-[z"], true).expect_err("unclosed class");
        assert!(matches!(error, CapabilityError::BadPattern { ref pattern, .. } if pattern == "bad-[z"), "{error}");
    }
}
