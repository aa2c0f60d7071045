//! Correlation ids of requests: [`CorrelationId`] and its map key [`CorrelationKey`].

use std::fmt;

use uuid::Uuid;

use crate::error::CorrelationIdError;

/// The 16 bytes of a [`CorrelationId`]: what hot maps key on, with no heap string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct CorrelationKey(pub [u8; 16]);

/// A request's correlation id: a random UUID v4 (RFC 9562, section 5.4),
/// created by the host in `send-request` and shown to guests in its
/// lowercase hyphenated text form (36 bytes).
///
/// The id carries its key and its text side by side on the stack, so
/// [`CorrelationId::as_str`] needs no allocation and maps key on
/// [`CorrelationId::key`].
///
/// ```
/// use wasm_core::CorrelationId;
/// let id = CorrelationId::generate();
/// let again = CorrelationId::parse(id.as_str()).unwrap();
/// assert_eq!(id, again);
/// assert_eq!(id.as_str().len(), 36);
/// ```
#[derive(Clone, Copy)]
pub struct CorrelationId {
    key: CorrelationKey,
    text: [u8; 36],
}

impl CorrelationId {
    /// A fresh random UUID v4 (the `uuid` crate's `fast-rng`: a thread-local
    /// ChaCha generator, no syscall per id).
    #[must_use]
    pub fn generate() -> Self {
        Self::from_uuid(Uuid::new_v4())
    }

    /// Parses the hyphenated text form (any case; the stored text is lowercase).
    ///
    /// # Errors
    /// [`CorrelationIdError`] when `text` is not a UUID, or is a UUID of
    /// another version than 4 (no id of ours has another version).
    pub fn parse(text: &str) -> Result<Self, CorrelationIdError> {
        let uuid = Uuid::try_parse(text)
            .map_err(|_| CorrelationIdError::Malformed { text: text.chars().take(64).collect() })?;
        if uuid.get_version_num() != 4 {
            return Err(CorrelationIdError::NotV4 { text: text.chars().take(64).collect() });
        }
        Ok(Self::from_uuid(uuid))
    }

    /// Rebuilds an id from its key (for example one stored in a map).
    #[must_use]
    pub fn from_key(key: CorrelationKey) -> Self {
        Self::from_uuid(Uuid::from_bytes(key.0))
    }

    fn from_uuid(uuid: Uuid) -> Self {
        let mut text = [0u8; 36];
        uuid.hyphenated().encode_lower(&mut text);
        Self { key: CorrelationKey(*uuid.as_bytes()), text }
    }

    /// The 16-byte map key.
    #[must_use]
    pub fn key(&self) -> CorrelationKey {
        self.key
    }

    /// The lowercase hyphenated text, as guests see it (36 bytes).
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Always ASCII: written by `encode_lower` above.
        std::str::from_utf8(&self.text).unwrap_or("00000000-0000-0000-0000-000000000000")
    }
}

impl PartialEq for CorrelationId {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for CorrelationId {}

impl std::hash::Hash for CorrelationId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CorrelationId({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_non_v4() {
        let id = CorrelationId::generate();
        assert_eq!(CorrelationId::parse(&id.as_str().to_uppercase()).ok(), Some(id));
        assert!(matches!(CorrelationId::parse("nope"), Err(CorrelationIdError::Malformed { .. })));
        assert!(matches!(
            CorrelationId::parse("6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
            Err(CorrelationIdError::NotV4 { .. })
        ));
        assert_eq!(CorrelationId::from_key(id.key()), id);
    }
}
