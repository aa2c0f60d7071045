//! Errors of the messaging layer.

use std::fmt;

use thiserror::Error;

/// A mailbox refused an envelope; the envelope is handed back, as tokio's
/// `TrySendError` does. `Debug` does not require `T: Debug`.
#[derive(Error)]
pub enum MailboxError<T> {
    /// The bounded queue is full (backpressure).
    #[error("mailbox full")]
    Full(T),
    /// The actor is gone.
    #[error("mailbox closed")]
    Closed(T),
}

impl<T> MailboxError<T> {
    /// The envelope handed back.
    pub fn into_inner(self) -> T {
        match self {
            MailboxError::Full(t) | MailboxError::Closed(t) => t,
        }
    }
}

impl<T> fmt::Debug for MailboxError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MailboxError::Full(_) => f.write_str("Full(..)"),
            MailboxError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// A component could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegistryError {
    /// Another component already has this id.
    #[error("component id {0} is already registered")]
    Duplicate(String),
    /// The id is reserved for the host.
    #[error("component id `host` is reserved for the embedding application")]
    Reserved,
}

/// A manifest whose rules cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{key}: {problem}")]
pub struct PolicyError {
    /// The manifest key at fault, dotted (`rate.burst`).
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

impl PolicyError {
    pub(crate) fn new(key: &str, problem: impl Into<String>) -> Self {
        Self { key: key.to_owned(), problem: problem.into() }
    }
}
