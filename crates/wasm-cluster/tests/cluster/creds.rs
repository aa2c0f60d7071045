//! Creds files against a broker in operator mode (decentralized JWT
//! authentication): a user the broker's operator vouches for (through its
//! account) carries an envelope; a user of an account the broker does not
//! know fails `connect` with [`ClusterError::Connect`]; a creds file that
//! cannot be read or parsed fails with [`ClusterError::Credentials`].
//!
//! The JWTs are made here, as `nsc` would: an operator signs an account,
//! the account signs a user (the NATS JWT v2 claims, ed25519-nkey signed).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;
use serde_json::{Value, json};
use wasm_cluster::{ClusterAuth, ClusterError};

use crate::auth::{Scratch, assert_unauthorized, config, connect_error, envelope_crosses};
use crate::broker::Broker;

/// No limit, in a JWT's limits.
const UNLIMITED: i64 = -1;

/// A JWT about `subject`, issued and signed by `issuer`, with `nats` as
/// its NATS claims.
fn jwt(issuer: &KeyPair, subject: &KeyPair, name: &str, nats: Value) -> String {
    let issued_at = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
    let claims = json!({
        "jti": format!("{name}-{issued_at}"),
        "iat": issued_at,
        "iss": issuer.public_key(),
        "sub": subject.public_key(),
        "name": name,
        "nats": nats,
    });
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let signature = issuer.sign(signed.as_bytes()).expect("signing a JWT");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The operator's own JWT (self-signed).
fn operator_jwt(operator: &KeyPair) -> String {
    jwt(operator, operator, "test-operator", json!({ "type": "operator", "version": 2 }))
}

/// An account's JWT, signed by `operator`, without limits.
fn account_jwt(operator: &KeyPair, account: &KeyPair) -> String {
    let limits = json!({
        "subs": UNLIMITED, "data": UNLIMITED, "payload": UNLIMITED, "imports": UNLIMITED,
        "exports": UNLIMITED, "wildcards": true, "conn": UNLIMITED, "leaf": UNLIMITED,
    });
    jwt(operator, account, "hosts", json!({ "limits": limits, "type": "account", "version": 2 }))
}

/// A user's creds file (its JWT, signed by `account`, and its seed), as
/// `nsc generate creds` writes it.
fn creds(account: &KeyPair, user: &KeyPair) -> String {
    let nats = json!({
        "pub": {}, "sub": {}, "subs": UNLIMITED, "data": UNLIMITED, "payload": UNLIMITED,
        "type": "user", "version": 2,
    });
    let jwt = jwt(account, user, "host", nats);
    let seed = user.seed().expect("a user seed");
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    )
}

/// An operator-mode broker that knows one account, and the files of users.
struct Operator {
    files: Scratch,
    account: KeyPair,
    broker: Broker,
}

impl Operator {
    fn start() -> Self {
        let operator = KeyPair::new_operator();
        let account = KeyPair::new_account();
        let config = format!(
            "operator: {:?}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {:?}\n}}\n",
            operator_jwt(&operator),
            account.public_key(),
            account_jwt(&operator, &account),
        );
        Self { files: Scratch::new("creds"), account, broker: Broker::start_with_config(&config) }
    }

    /// A new user of `account`'s, as the creds file `name`.
    fn user(&self, name: &str, account: &KeyPair) -> ClusterAuth {
        self.files.write(name, &creds(account, &KeyPair::new_user()));
        ClusterAuth::CredsFile(self.files.path(name))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creds_file_of_a_known_account_carries_an_envelope() {
    let operator = Operator::start();
    let url = operator.broker.url();
    envelope_crosses(
        config(&url, "a", operator.user("a.creds", &operator.account)),
        config(&url, "b", operator.user("b.creds", &operator.account)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creds_file_of_an_unknown_account_or_none_fails_connect() {
    let operator = Operator::start();
    let url = operator.broker.url();
    let stranger = KeyPair::new_account();
    assert_unauthorized(config(&url, "a", operator.user("stranger.creds", &stranger))).await;
    assert_unauthorized(config(&url, "a", ClusterAuth::None)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creds_file_unreadable_or_malformed_is_a_credentials_error() {
    let files = Scratch::new("bad-creds");
    files.write("garbage.creds", "not a creds file\n");
    for file in [files.path("missing.creds"), files.path("garbage.creds")] {
        // Nothing listens there: the file is read before any connection.
        let error = connect_error(config("nats://127.0.0.1:1", "a", ClusterAuth::CredsFile(file.clone()))).await;
        match error {
            ClusterError::Credentials { path, .. } => assert_eq!(path, file),
            other => panic!("expected ClusterError::Credentials for {}, got {other:?}", file.display()),
        }
    }
}
