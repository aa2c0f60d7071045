//! How a host joins the lattice: [`ClusterConfig`], [`ClusterAuth`], [`TlsConfig`].

use std::path::PathBuf;
use std::time::Duration;

use wasm_core::ComponentId;

use crate::error::ClusterError;

/// The default subject prefix: every subject of the lattice starts `airssys.`.
pub const DEFAULT_PREFIX: &str = "airssys";

/// The default directory heartbeat: 1 s.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

/// The default capacity of the outgoing queue, in envelopes and outcomes.
pub const DEFAULT_OUTGOING_QUEUE: usize = 65_536;

/// The default capacity of the NATS client's command channel (async-nats's
/// own default), in commands.
pub const DEFAULT_CLIENT_CAPACITY: usize = 2048;

/// The default acknowledgement timeout: 5 s.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how a [`crate::NatsTransport`] connects, and who it is.
///
/// ```
/// use wasm_cluster::ClusterConfig;
/// let config = ClusterConfig::new("nats://127.0.0.1:4222", "node-1");
/// assert_eq!(config.prefix, "airssys");
/// assert_eq!(config.heartbeat, std::time::Duration::from_secs(1));
/// ```
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The broker: a NATS URL (`nats://host:4222`, `tls://host:4222`), or
    /// several separated by commas (the client picks one and fails over).
    pub url: String,
    /// This host's node name: components here are `name@<node>` to the
    /// others. The node part of a component id: 1 to 128 bytes of
    /// `[a-z0-9._-]`.
    pub node: String,
    /// The first token(s) of every subject (default [`DEFAULT_PREFIX`]);
    /// hosts of one lattice share it. Dot-separated non-empty tokens, no
    /// whitespace, `*` or `>`.
    pub prefix: String,
    /// How often this host republishes its directory entry (default
    /// [`DEFAULT_HEARTBEAT`], 1 s); the others forget it 3 heartbeats after
    /// the last one they heard. Must not be zero.
    pub heartbeat: Duration,
    /// The credentials the broker asks for.
    pub auth: ClusterAuth,
    /// TLS to the broker, if any.
    pub tls: Option<TlsConfig>,
    /// Capacity of the outgoing queue (default [`DEFAULT_OUTGOING_QUEUE`]),
    /// in envelopes plus outcomes not yet handed to the client: when it is
    /// full, `send` refuses with `queue-full`. Must not be zero.
    pub outgoing_queue: usize,
    /// How long an envelope sent to another node may stay unacknowledged
    /// before it ends undelivered with `ack-timeout` (default
    /// [`DEFAULT_ACK_TIMEOUT`], 5 s): a message is dead-lettered, a request
    /// fails with `delivery-failed`. Must not be zero.
    pub ack_timeout: Duration,
    /// Capacity of the NATS client's command channel (async-nats's
    /// `client_capacity`; default [`DEFAULT_CLIENT_CAPACITY`], 2048), in
    /// commands: `send` hands an envelope straight to it while it has room
    /// and nothing waits in the outgoing queue, else queues it. While the
    /// client reconnects, it fills. Must not be zero.
    pub client_capacity: usize,
}

impl ClusterConfig {
    /// A configuration for `node` at `url` with the defaults: prefix
    /// `airssys`, heartbeat 1 s, no credentials, no TLS, a queue of 65,536,
    /// an acknowledgement timeout of 5 s.
    #[must_use]
    pub fn new(url: impl Into<String>, node: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            node: node.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            heartbeat: DEFAULT_HEARTBEAT,
            auth: ClusterAuth::None,
            tls: None,
            outgoing_queue: DEFAULT_OUTGOING_QUEUE,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            client_capacity: DEFAULT_CLIENT_CAPACITY,
        }
    }

    /// Checks what the broker cannot: the node, the prefix, the heartbeat,
    /// the queue and the TLS file pairing.
    pub(crate) fn validate(&self) -> Result<(), ClusterError> {
        let invalid = |what: String| Err(ClusterError::InvalidConfig(what));
        if ComponentId::validate(&format!("x@{}", self.node)).is_err() {
            return invalid(format!("node {:?} is not 1 to 128 bytes of [a-z0-9._-]", self.node));
        }
        let bad_token = |t: &str| t.is_empty() || t.contains(|c: char| c.is_whitespace() || c == '*' || c == '>');
        if self.prefix.split('.').any(bad_token) {
            return invalid(format!(
                "prefix {:?} must be dot-separated non-empty tokens without whitespace, '*' or '>'",
                self.prefix
            ));
        }
        if self.heartbeat.is_zero() {
            return invalid("heartbeat must not be zero".to_owned());
        }
        if self.client_capacity == 0 {
            return invalid("client_capacity must not be zero".to_owned());
        }
        if self.ack_timeout.is_zero() {
            return invalid("ack_timeout must not be zero".to_owned());
        }
        if self.outgoing_queue == 0 {
            return invalid("outgoing_queue must not be zero".to_owned());
        }
        if let Some(tls) = &self.tls
            && tls.client_cert.is_some() != tls.client_key.is_some()
        {
            return invalid("tls: client_cert and client_key go together".to_owned());
        }
        Ok(())
    }
}

/// The credentials a host presents to the broker.
#[derive(Clone, Default)]
pub enum ClusterAuth {
    /// None (a broker without authorization).
    #[default]
    None,
    /// A token (`authorization { token: ... }` on the server).
    Token(String),
    /// A user and password.
    UserPassword {
        /// The user name.
        user: String,
        /// Its password.
        password: String,
    },
    /// A `.creds` file (a user JWT and its NKey seed, as `nsc` writes it),
    /// read at connect.
    CredsFile(PathBuf),
}

impl std::fmt::Debug for ClusterAuth {
    /// Names the kind of credentials, never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Token(_) => f.write_str("Token(..)"),
            Self::UserPassword { user, .. } => {
                f.debug_struct("UserPassword").field("user", user).finish_non_exhaustive()
            }
            Self::CredsFile(path) => f.debug_tuple("CredsFile").field(path).finish(),
        }
    }
}

/// TLS to the broker (rustls, with the `ring` provider).
#[derive(Clone, Debug, Default)]
pub struct TlsConfig {
    /// A PEM file of CA certificates to trust instead of the system's (the
    /// client loads the system's roots only when no CA file is given).
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate, for brokers that verify clients; with
    /// `client_key`.
    pub client_cert: Option<PathBuf>,
    /// The PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Refuse to connect without TLS (even to a `nats://` URL).
    pub require: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_refuses_what_the_broker_would_not_catch() {
        let ok = ClusterConfig::new("nats://127.0.0.1:4222", "node-1.eu");
        assert!(ok.validate().is_ok());
        let with = |f: &dyn Fn(&mut ClusterConfig)| {
            let mut config = ok.clone();
            f(&mut config);
            config.validate()
        };
        assert!(with(&|c| c.node = "Node".into()).is_err());
        assert!(with(&|c| c.node = String::new()).is_err());
        assert!(with(&|c| c.prefix = "a..b".into()).is_err());
        assert!(with(&|c| c.prefix = "a.>".into()).is_err());
        assert!(with(&|c| c.prefix = "org.airssys".into()).is_ok());
        assert!(with(&|c| c.heartbeat = Duration::ZERO).is_err());
        assert!(with(&|c| c.outgoing_queue = 0).is_err());
        assert!(with(&|c| c.ack_timeout = Duration::ZERO).is_err());
        assert!(with(&|c| c.client_capacity = 0).is_err());
        assert!(
            with(&|c| c.tls = Some(TlsConfig { client_cert: Some("c.pem".into()), ..TlsConfig::default() })).is_err()
        );
    }

    #[test]
    fn auth_debug_hides_secrets() {
        let auth = ClusterAuth::UserPassword { user: "u".into(), password: "hunter2".into() };
        assert!(!format!("{auth:?}").contains("hunter2"));
        assert!(!format!("{:?}", ClusterAuth::Token("secret".into())).contains("secret"));
    }
}
