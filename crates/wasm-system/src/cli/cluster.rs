//! `run`'s cluster: the NATS transport the app's `[cluster]` section and
//! the `--node`/`--nats` flags describe (SPEC section 5).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use wasm_cluster::{ClusterAuth, ClusterConfig, NatsTransport, TlsConfig};
use wasm_core::{ClusterSection, Codec, ComponentId, RemoteTransport};

/// The broker `run` uses when neither `--nats` nor `[cluster] nats` names one.
pub(crate) const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// The transport configuration for `section` (paths relative to `base`, the
/// app manifest's directory), with the flags overriding the node and URL.
/// `None` when the app joins no cluster (no section, no flags).
///
/// # Errors
/// No node name; more than one kind of credentials; a password without a
/// user.
pub(crate) fn config(
    section: Option<&ClusterSection>,
    node: Option<&str>,
    nats: Option<&str>,
    base: &Path,
) -> anyhow::Result<Option<ClusterConfig>> {
    if section.is_none() && node.is_none() && nats.is_none() {
        return Ok(None);
    }
    let section = section.cloned().unwrap_or_default();
    let Some(node) = node.map(str::to_owned).or(section.node) else {
        bail!("joining a cluster needs this host's node name: `--node NAME` or `[cluster] node`");
    };
    let url = nats.map(str::to_owned).or(section.nats).unwrap_or_else(|| DEFAULT_NATS_URL.to_owned());
    let mut config = ClusterConfig::new(url, node);
    if let Some(prefix) = section.prefix {
        config.prefix = prefix;
    }
    if let Some(ms) = section.heartbeat_ms {
        config.heartbeat = Duration::from_millis(ms);
    }
    if let Some(ms) = section.ack_timeout_ms {
        config.ack_timeout = Duration::from_millis(ms);
    }
    config.auth = match (section.token, section.user, section.password, section.creds_file) {
        (None, None, None, None) => ClusterAuth::None,
        (Some(token), None, None, None) => ClusterAuth::Token(token),
        (None, Some(user), password, None) => {
            ClusterAuth::UserPassword { user, password: password.unwrap_or_default() }
        }
        (None, None, None, Some(file)) => ClusterAuth::CredsFile(base.join(file)),
        (None, None, Some(_), None) => bail!("[cluster] password needs a user"),
        _ => bail!("[cluster] takes one kind of credentials: token, user/password, or creds_file"),
    };
    if section.tls_ca.is_some() || section.tls_cert.is_some() || section.tls_key.is_some() {
        config.tls = Some(TlsConfig {
            ca_file: section.tls_ca.map(|f| base.join(f)),
            client_cert: section.tls_cert.map(|f| base.join(f)),
            client_key: section.tls_key.map(|f| base.join(f)),
            require: true,
        });
    }
    Ok(Some(config))
}

/// Connects to the broker (the transport reconnects on its own after).
///
/// # Errors
/// The broker does not answer, refuses the credentials, or the
/// configuration is invalid.
pub(crate) async fn connect(config: ClusterConfig) -> anyhow::Result<Arc<NatsTransport>> {
    let (url, node) = (config.url.clone(), config.node.clone());
    NatsTransport::connect(config).await.with_context(|| format!("joining the cluster at {url} as node {node}"))
}

/// How long a cluster node's `run` stays up once idle when `--linger` does
/// not say: a node is quiescent between the hops of a conversation with
/// another host.
pub(crate) const IDLE_LINGER: Duration = Duration::from_secs(1);

/// How long `run` waits for `[cluster] requires` when `--duration` does not
/// say.
pub(crate) const REQUIRES_WAIT: Duration = Duration::from_secs(30);

/// Waits until the directory knows every component of `requires`
/// (`name@node`), up to `limit`.
///
/// # Errors
/// An entry is not a `name@node` id, or not every one was announced within
/// `limit` (the error names those missing).
pub(crate) async fn await_components(
    transport: &dyn RemoteTransport,
    requires: &[String],
    limit: Duration,
) -> anyhow::Result<()> {
    let ids = requires
        .iter()
        .map(|text| match ComponentId::parse(text) {
            Ok(id) if id.node().is_some() => Ok(id),
            Ok(_) => bail!("[cluster] requires `{text}`: name a component of another node, `name@node`"),
            Err(e) => bail!("[cluster] requires `{text}`: {e}"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let missing =
        || -> Vec<&ComponentId> { ids.iter().filter(|id| transport.accepts(id, Codec::Raw).is_none()).collect() };
    let deadline = tokio::time::Instant::now() + limit;
    while !missing().is_empty() {
        if tokio::time::Instant::now() >= deadline {
            let names: Vec<String> = missing().iter().map(ToString::to_string).collect();
            bail!("no host announced {} within {limit:?}", names.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !requires.is_empty() {
        tracing::info!(components = %requires.join(", "), "required components are announced");
    }
    Ok(())
}
