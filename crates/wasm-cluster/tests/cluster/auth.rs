//! Tokens, users and TLS against a broker that requires them: the right
//! ones carry an envelope end to end, wrong or missing ones fail `connect`
//! with [`ClusterError::Connect`]. Creds files are in `creds.rs`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_nats::rustls::{self, CertificateError};
use async_nats::{ConnectError, ConnectErrorKind};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use wasm_cluster::{ClusterAuth, ClusterConfig, ClusterError, NatsTransport, TlsConfig};
use wasm_core::{RemoteKind, RemoteTransport};

use crate::broker::Broker;
use crate::inbound::{BOUND, Host, Inbound};
use crate::{SLOW, envelope};

/// Node `node` at `url` with `auth`, heartbeat [`SLOW`].
pub(crate) fn config(url: &str, node: &str, auth: ClusterAuth) -> ClusterConfig {
    let mut config = ClusterConfig::new(url, node);
    config.heartbeat = SLOW;
    config.auth = auth;
    config
}

/// Starts hosts `a` and `b` with their configurations and checks that an
/// envelope from a reaches b's inbound.
pub(crate) async fn envelope_crosses(a: ClusterConfig, b: ClusterConfig) {
    let a = Host::start_with(a).await;
    let mut b = Host::start_with(b).await;
    let message = envelope(RemoteKind::Message, br#"{"n":1}"#);
    a.transport.send(message.clone()).expect("send");
    assert_eq!(b.next().await, Inbound::Delivered(message));
}

/// The error `connect` fails with (within [`BOUND`]).
///
/// # Panics
/// When it connects.
pub(crate) async fn connect_error(config: ClusterConfig) -> ClusterError {
    let connect = tokio::time::timeout(BOUND, NatsTransport::connect(config));
    match connect.await.unwrap_or_else(|_| panic!("connect neither failed nor succeeded within {BOUND:?}")) {
        Ok(_) => panic!("connect succeeded where it should have been refused"),
        Err(error) => error,
    }
}

/// Asserts that `connect` fails with [`ClusterError::Connect`]; returns
/// the client's error inside it.
pub(crate) async fn connect_refused(config: ClusterConfig) -> ConnectError {
    let error = connect_error(config).await;
    assert!(matches!(error, ClusterError::Connect { .. }), "expected ClusterError::Connect, got {error:?}");
    let ClusterError::Connect { source, .. } = error else { unreachable!("asserted above") };
    *source.downcast::<ConnectError>().unwrap_or_else(|other| panic!("not the client's ConnectError: {other:?}"))
}

/// Asserts that the broker refuses `config`'s credentials.
pub(crate) async fn assert_unauthorized(config: ClusterConfig) {
    let error = connect_refused(config).await;
    assert_eq!(error.kind(), ConnectErrorKind::AuthorizationViolation, "{error:?}");
}

/// Asserts that `connect` fails in the TLS handshake; returns why.
async fn tls_refused(config: ClusterConfig) -> rustls::Error {
    let error = connect_refused(config).await;
    std::error::Error::source(&error)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .and_then(std::io::Error::get_ref)
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned()
        .unwrap_or_else(|| panic!("not a TLS failure: {error:?}"))
}

fn token(secret: &str) -> ClusterAuth {
    ClusterAuth::Token(secret.to_owned())
}

fn user_password(user: &str, password: &str) -> ClusterAuth {
    ClusterAuth::UserPassword { user: user.to_owned(), password: password.to_owned() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_token_right_carries_an_envelope() {
    let broker = Broker::start_with(&["--auth", "s3cret"]);
    envelope_crosses(config(&broker.url(), "a", token("s3cret")), config(&broker.url(), "b", token("s3cret"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_token_wrong_or_missing_fails_connect() {
    let broker = Broker::start_with(&["--auth", "s3cret"]);
    assert_unauthorized(config(&broker.url(), "a", token("guess"))).await;
    assert_unauthorized(config(&broker.url(), "a", ClusterAuth::None)).await;
    // Right kind of secret, wrong kind of credentials.
    assert_unauthorized(config(&broker.url(), "a", user_password("s3cret", "s3cret"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_user_password_right_carries_an_envelope() {
    let broker = Broker::start_with(&["--user", "host", "--pass", "hunter2"]);
    envelope_crosses(
        config(&broker.url(), "a", user_password("host", "hunter2")),
        config(&broker.url(), "b", user_password("host", "hunter2")),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_user_password_wrong_or_missing_fails_connect() {
    let broker = Broker::start_with(&["--user", "host", "--pass", "hunter2"]);
    assert_unauthorized(config(&broker.url(), "a", user_password("host", "hunter3"))).await;
    assert_unauthorized(config(&broker.url(), "a", user_password("guest", "hunter2"))).await;
    assert_unauthorized(config(&broker.url(), "a", ClusterAuth::None)).await;
    assert_unauthorized(config(&broker.url(), "a", token("hunter2"))).await;
}

/// A CA, a server certificate for `127.0.0.1` and `localhost` and a client
/// certificate, both signed by it, and a second CA that signed nothing, as
/// PEM files in a temp dir (removed on drop).
struct Pki {
    files: Scratch,
}

impl Pki {
    fn generate() -> Self {
        let pki = Self { files: Scratch::new("pki") };

        let ca = certificate_authority("airssys test CA");
        pki.write("ca.pem", &ca.pem());
        pki.write("other-ca.pem", &certificate_authority("airssys other CA").pem());

        let (server, server_key) =
            leaf(&["127.0.0.1", "localhost"], "nats-server", ExtendedKeyUsagePurpose::ServerAuth);
        let server = server.signed_by(&server_key, &ca).expect("signing the server certificate");
        pki.write("server.pem", &server.pem());
        pki.write("server-key.pem", &server_key.serialize_pem());

        let (client, client_key) = leaf(&[], "airssys host", ExtendedKeyUsagePurpose::ClientAuth);
        let client = client.signed_by(&client_key, &ca).expect("signing the client certificate");
        pki.write("client.pem", &client.pem());
        pki.write("client-key.pem", &client_key.serialize_pem());
        pki
    }

    fn write(&self, name: &str, pem: &str) {
        self.files.write(name, pem);
    }

    fn path(&self, name: &str) -> PathBuf {
        self.files.path(name)
    }

    /// The broker's `tls` block: its certificate, and client certificates
    /// signed by the CA required (`verify: true`).
    fn broker_config(&self) -> String {
        let quoted = |name: &str| format!("{:?}", self.path(name).to_string_lossy());
        format!(
            "tls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify: true\n  timeout: 2\n}}\n",
            quoted("server.pem"),
            quoted("server-key.pem"),
            quoted("ca.pem"),
        )
    }

    /// TLS required, trusting `ca`, with the client certificate.
    fn client(&self, ca: &str) -> TlsConfig {
        TlsConfig {
            ca_file: Some(self.path(ca)),
            client_cert: Some(self.path("client.pem")),
            client_key: Some(self.path("client-key.pem")),
            require: true,
        }
    }
}

/// A temp dir of one test's own, removed on drop.
pub(crate) struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// A new dir, `what` in its name.
    pub(crate) fn new(what: &str) -> Self {
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wasm-cluster-{what}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
        Self { dir }
    }

    /// Writes `text` to the file `name` in the dir.
    pub(crate) fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap_or_else(|error| panic!("writing {name}: {error}"));
    }

    /// The file `name` in the dir.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A self-signed CA named `name`.
fn certificate_authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("a CA key");
    CertifiedIssuer::self_signed(params, key).expect("self-signing the CA")
}

/// The parameters and key of an end-entity certificate for `names`.
fn leaf(names: &[&str], common_name: &str, usage: ExtendedKeyUsagePurpose) -> (CertificateParams, KeyPair) {
    let names: Vec<String> = names.iter().map(|&name| name.to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("certificate parameters");
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    (params, KeyPair::generate().expect("a key"))
}

/// `url` with its scheme replaced by `scheme`.
fn with_scheme(url: &str, scheme: &str) -> String {
    let (_, rest) = url.split_once("://").expect("a URL with a scheme");
    format!("{scheme}://{rest}")
}

fn tls_config(url: &str, node: &str, tls: TlsConfig) -> ClusterConfig {
    let mut config = config(url, node, ClusterAuth::None);
    config.tls = Some(tls);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_certificate_carries_an_envelope() {
    let pki = Pki::generate();
    let broker = Broker::start_with_config(&pki.broker_config());
    // One host names the scheme, the other relies on `require`.
    envelope_crosses(
        tls_config(&with_scheme(&broker.url(), "tls"), "a", pki.client("ca.pem")),
        tls_config(&broker.url(), "b", pki.client("ca.pem")),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_client_certificate_fails_connect() {
    let pki = Pki::generate();
    let broker = Broker::start_with_config(&pki.broker_config());
    let url = with_scheme(&broker.url(), "tls");
    let anonymous = TlsConfig { client_cert: None, client_key: None, ..pki.client("ca.pem") };
    // The broker refuses after the client's side of the handshake is done:
    // its alert (bad or required certificate, by Go version) or its closing
    // the connection is what the client sees, so only the variant is checked.
    connect_refused(tls_config(&url, "a", anonymous)).await;
    // No TLS configured at all: the client follows the broker into TLS,
    // trusts only the system's roots, and cannot verify the broker.
    let error = tls_refused(config(&broker.url(), "a", ClusterAuth::None)).await;
    assert_eq!(error, rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_server_signed_by_another_ca_fails_connect() {
    let pki = Pki::generate();
    let broker = Broker::start_with_config(&pki.broker_config());
    let error = tls_refused(tls_config(&with_scheme(&broker.url(), "tls"), "a", pki.client("other-ca.pem"))).await;
    assert_eq!(error, rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_by_the_client_fails_connect_to_a_plain_broker() {
    let pki = Pki::generate();
    let broker = Broker::start();
    // The client starts a handshake; the broker answers in plain NATS.
    tls_refused(tls_config(&broker.url(), "a", pki.client("ca.pem"))).await;
}
