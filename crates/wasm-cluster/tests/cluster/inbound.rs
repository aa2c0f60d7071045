//! A recording [`RemoteInbound`] and the hosts of a test.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use wasm_cluster::{ClusterConfig, NatsTransport};
use wasm_core::{MessagingError, RemoteEnvelope, RemoteInbound, RemoteOutcome, RemoteUndelivered};

/// How long a test waits for something that should happen.
pub(crate) const BOUND: Duration = Duration::from_secs(20);

/// What a host's inbound was handed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// `deliver`.
    Delivered(RemoteEnvelope),
    /// `complete`.
    Completed(RemoteOutcome),
    /// `undelivered`.
    Undelivered(RemoteUndelivered),
}

/// Records every call; `deliver` answers with `refusal` when one is set;
/// every component has `free` free slots (1024 unless set).
pub(crate) struct Recorder {
    calls: mpsc::UnboundedSender<Inbound>,
    refusal: Mutex<Option<MessagingError>>,
    free: Mutex<u64>,
}

impl Recorder {
    /// From now on, every component has `free` free slots.
    pub(crate) fn set_free(&self, free: u64) {
        *self.free.lock().unwrap_or_else(PoisonError::into_inner) = free;
    }

    /// From now on, `deliver` refuses with `error`.
    pub(crate) fn refuse(&self, error: MessagingError) {
        *self.refusal.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
    }
}

impl RemoteInbound for Recorder {
    fn deliver(&self, envelope: RemoteEnvelope) -> Result<(), MessagingError> {
        let _ = self.calls.send(Inbound::Delivered(envelope));
        match self.refusal.lock().unwrap_or_else(PoisonError::into_inner).clone() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn complete(&self, outcome: RemoteOutcome) {
        let _ = self.calls.send(Inbound::Completed(outcome));
    }

    fn undelivered(&self, letter: RemoteUndelivered) {
        let _ = self.calls.send(Inbound::Undelivered(letter));
    }

    fn free_slots(&self, _name: &str) -> Option<u64> {
        Some(*self.free.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A started transport with its recording inbound.
pub(crate) struct Host {
    pub(crate) transport: Arc<NatsTransport>,
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) calls: mpsc::UnboundedReceiver<Inbound>,
}

impl Host {
    /// Connects `node` to `url` with `heartbeat` and starts it.
    pub(crate) async fn start(url: &str, node: &str, heartbeat: Duration) -> Self {
        let mut config = ClusterConfig::new(url, node);
        config.heartbeat = heartbeat;
        Self::start_with(config).await
    }

    /// Connects with `config` and starts it.
    pub(crate) async fn start_with(config: ClusterConfig) -> Self {
        let transport = NatsTransport::connect(config).await.expect("connect");
        let (sender, calls) = mpsc::unbounded_channel();
        let recorder = Arc::new(Recorder { calls: sender, refusal: Mutex::new(None), free: Mutex::new(1024) });
        let inbound: Weak<dyn RemoteInbound> = Arc::downgrade(&recorder) as Weak<dyn RemoteInbound>;
        transport.start(inbound).await.expect("start");
        Self { transport, recorder, calls }
    }

    /// The next call on this host's inbound, within [`BOUND`].
    pub(crate) async fn next(&mut self) -> Inbound {
        tokio::time::timeout(BOUND, self.calls.recv())
            .await
            .unwrap_or_else(|_| panic!("nothing reached the inbound within {BOUND:?}"))
            .expect("the recorder lives as long as the host")
    }
}

/// Waits until `condition` holds, checking every 10 ms, within [`BOUND`].
///
/// # Panics
/// When it does not hold by then, naming `what`.
pub(crate) async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + BOUND;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {BOUND:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
