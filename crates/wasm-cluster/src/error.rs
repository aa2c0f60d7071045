//! Errors of the cluster transport.

use std::path::PathBuf;

use thiserror::Error;

/// A boxed error from the NATS client (its types are not part of this API).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why [`crate::NatsTransport::connect`], [`crate::NatsTransport::start`]
/// or [`crate::NatsTransport::shutdown`] failed.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// The configuration is unusable (bad node, prefix, heartbeat, queue or
    /// TLS file pairing); nothing was attempted.
    #[error("invalid cluster config: {0}")]
    InvalidConfig(String),
    /// The `.creds` file could not be read or parsed.
    #[error("cannot read NATS credentials file {path}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The first connection to the broker failed (later ones are retried
    /// forever).
    #[error("cannot connect to NATS at {url}")]
    Connect {
        /// The configured URL.
        url: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// A subscription could not be made.
    #[error("cannot subscribe to {subject}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// [`crate::NatsTransport::start`] was called a second time.
    #[error("the transport is already started")]
    AlreadyStarted,
    /// A round trip to the broker, a flush or the close failed.
    #[error("the NATS connection failed")]
    Connection(#[source] BoxError),
}
