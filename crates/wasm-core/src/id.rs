//! Component identity: [`ComponentId`].

use std::borrow::Borrow;
use std::fmt;
use std::sync::{Arc, LazyLock};

use crate::error::IdError;

/// Longest accepted component name, in bytes (SPEC section 2: 1..=128 bytes).
pub const MAX_COMPONENT_ID_BYTES: usize = 128;

/// The reserved id of the embedding application and the CLI: the sender of
/// injected messages (SPEC section 3, identity). No component may take it.
pub const HOST_ID: &str = "host";

static HOST: LazyLock<ComponentId> = LazyLock::new(|| ComponentId(Arc::new(HOST_ID.to_owned())));

/// Name of a component instance: 1..=128 bytes of `[a-z0-9._-]`, optionally
/// followed by `@` and a node name (same alphabet, 1..=128 bytes) for a
/// component on another host.
///
/// Cloning is one atomic increment; the id is a thin pointer (8 bytes), so it
/// is cheap to keep in hot maps such as the correlation tracker.
///
/// ```
/// use wasm_core::ComponentId;
/// let id = ComponentId::parse("billing-eu.v2@node-1").unwrap();
/// assert_eq!(id.name(), "billing-eu.v2");
/// assert_eq!(id.node(), Some("node-1"));
/// assert!(ComponentId::parse("Billing").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId(Arc<String>);

impl ComponentId {
    /// Validates `text` and builds an id.
    ///
    /// # Errors
    /// [`IdError`] when the name or node part is empty, longer than
    /// [`MAX_COMPONENT_ID_BYTES`], holds a byte outside `[a-z0-9._-]`, or
    /// there is more than one `@`.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        validate(text)?;
        Ok(Self(Arc::new(text.to_owned())))
    }

    /// Checks `text` against the id syntax without building an id (no allocation).
    ///
    /// # Errors
    /// As [`ComponentId::parse`].
    pub fn validate(text: &str) -> Result<(), IdError> {
        validate(text)
    }

    /// The reserved [`HOST_ID`] (`host`), sender of messages injected by the
    /// embedding application.
    #[must_use]
    pub fn host() -> Self {
        HOST.clone()
    }

    /// The reserved [`HOST_ID`] as a `'static` reference, for owners that
    /// must hand out `&ComponentId` without holding one.
    #[must_use]
    pub fn host_ref() -> &'static Self {
        &HOST
    }

    /// True for the reserved [`HOST_ID`].
    #[must_use]
    pub fn is_host(&self) -> bool {
        self.0.as_str() == HOST_ID
    }

    /// The whole id, `name` or `name@node`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The whole id as a `&String`, for generated bindings whose
    /// `component-id` parameters take `&String` (no copy).
    #[must_use]
    pub fn as_string(&self) -> &String {
        &self.0
    }

    /// True when both are clones of one id (one allocation), not only equal
    /// text: a pointer comparison, which reads neither id's text. Ids
    /// parsed separately from the same text are equal but not the same.
    #[must_use]
    pub fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The name part, before any `@`.
    #[must_use]
    pub fn name(&self) -> &str {
        self.0.split_once('@').map_or(self.0.as_str(), |(name, _)| name)
    }

    /// The node part after `@`, for a component on another host.
    #[must_use]
    pub fn node(&self) -> Option<&str> {
        self.0.split_once('@').map(|(_, node)| node)
    }
}

fn validate(text: &str) -> Result<(), IdError> {
    let (name, node) = match text.split_once('@') {
        Some((name, node)) => (name, Some(node)),
        None => (text, None),
    };
    validate_part(text, name)?;
    if let Some(node) = node {
        validate_part(text, node)?;
    }
    Ok(())
}

fn validate_part(whole: &str, part: &str) -> Result<(), IdError> {
    if part.is_empty() {
        return Err(IdError::Empty { id: whole.to_owned() });
    }
    if part.len() > MAX_COMPONENT_ID_BYTES {
        return Err(IdError::TooLong { id: truncate(whole), len: part.len() });
    }
    if let Some(bad) = part.chars().find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-')) {
        return Err(IdError::InvalidChar { id: truncate(whole), found: bad });
    }
    Ok(())
}

fn truncate(text: &str) -> String {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ComponentId({:?})", self.as_str())
    }
}

impl Borrow<str> for ComponentId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ComponentId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::str::FromStr for ComponentId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for ComponentId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ComponentId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_spec_alphabet_and_node_suffix() {
        for ok in ["a", "echo", "billing-eu.v2_1", "x@node-7", &"a".repeat(128)] {
            assert!(ComponentId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_bad_ids_with_the_reason() {
        assert!(matches!(ComponentId::parse(""), Err(IdError::Empty { .. })));
        assert!(matches!(ComponentId::parse("a@"), Err(IdError::Empty { .. })));
        assert!(matches!(ComponentId::parse("Echo"), Err(IdError::InvalidChar { found: 'E', .. })));
        assert!(matches!(ComponentId::parse("a@b@c"), Err(IdError::InvalidChar { found: '@', .. })));
        assert!(matches!(ComponentId::parse(&"a".repeat(129)), Err(IdError::TooLong { len: 129, .. })));
    }

    #[test]
    fn same_is_one_allocation_and_equality_is_the_text() {
        let a = ComponentId::parse("a").expect("id");
        let copy = ComponentId::parse("a").expect("id");
        assert!(a.same(&a.clone()));
        assert!(!a.same(&copy));
        assert_eq!(a, copy);
    }

    #[test]
    fn is_a_thin_pointer() {
        assert_eq!(size_of::<ComponentId>(), 8);
    }
}
