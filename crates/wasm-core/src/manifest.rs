//! Manifest types: what `Component.toml` and `app.toml` hold (parsed with
//! serde; the composition root reads the files and reports errors with the
//! file, key and problem). Unknown keys are refused so typos surface.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

use crate::id::ComponentId;
use crate::payload::{Codec, DEFAULT_MAX_MESSAGE_BYTES};

/// Default mailbox bound, in messages (SPEC section 3, backpressure).
pub const DEFAULT_MAILBOX_CAPACITY: usize = 1024;
/// Default mailbox bound, in payload bytes queued (16 MiB: sixteen messages
/// at the default payload cap).
pub const DEFAULT_MAILBOX_BYTES: usize = 16 * 1024 * 1024;
/// Default request timeout when `send-request` passes 0, in ms.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;

/// A request timeout as the WIT's `timeout-ms`: `None` is 0 ("the sender's
/// default", `[requests] default_timeout_ms`); a `Some` is rounded up to whole
/// milliseconds, at least 1 ms, so a short timeout never becomes 0, and
/// saturates at `u64::MAX` (which the host then refuses as over its maximum).
/// The host's `System::request` and the guest SDK's `request` both use it.
///
/// ```
/// use std::time::Duration;
/// use wasm_core::timeout_ms;
/// assert_eq!(timeout_ms(None), 0);
/// assert_eq!(timeout_ms(Some(Duration::ZERO)), 1);
/// assert_eq!(timeout_ms(Some(Duration::from_micros(1))), 1);
/// assert_eq!(timeout_ms(Some(Duration::from_millis(250))), 250);
/// assert_eq!(timeout_ms(Some(Duration::from_micros(250_001))), 251);
/// assert_eq!(timeout_ms(Some(Duration::new(2, 1))), 2_001);
/// assert_eq!(timeout_ms(Some(Duration::from_secs(u64::MAX / 1_000))), u64::MAX / 1_000 * 1_000);
/// assert_eq!(timeout_ms(Some(Duration::new(u64::MAX / 1_000, 999_999_999))), u64::MAX);
/// assert_eq!(timeout_ms(Some(Duration::MAX)), u64::MAX);
/// ```
#[must_use]
pub fn timeout_ms(timeout: Option<std::time::Duration>) -> u64 {
    // In u64, not through `as_nanos`' u128, and with a compare instead of an
    // overflow-checked multiply: a guest calls this per request, and wasm32
    // does both through 128-bit libcalls (`__udivti3`, `__multi3`).
    const SAFE_SECS: u64 = (u64::MAX - 1_000) / 1_000;
    timeout.map_or(0, |t| {
        let (secs, millis) = (t.as_secs(), u64::from(t.subsec_nanos().div_ceil(1_000_000)));
        if secs <= SAFE_SECS {
            (secs * 1_000 + millis).max(1)
        } else {
            secs.saturating_mul(1_000).saturating_add(millis)
        }
    })
}
/// Default maximum `timeout-ms` a request may ask for, in ms.
pub const DEFAULT_MAX_TIMEOUT_MS: u64 = 300_000;
/// Default maximum of pending requests per component.
pub const DEFAULT_MAX_PENDING: usize = 10_000;
/// Default fuel per handler call (wasmtime fuel units, about one per instruction).
pub const DEFAULT_FUEL_PER_CALL: u64 = 1_000_000_000;
/// Default wall-clock budget per handler call, in ms.
pub const DEFAULT_TIME_PER_CALL_MS: u64 = 5_000;
/// Default cap on an instance's linear memories together, in bytes (64 MiB).
pub const DEFAULT_MEMORY_BYTES: usize = 64 * 1024 * 1024;
/// Default cap on an instance's table elements together (100,000).
pub const DEFAULT_TABLE_ELEMENTS: usize = 100_000;
/// Default cap on the linear memories an instance may create.
pub const DEFAULT_MAX_MEMORIES: usize = 4;
/// Default cap on the tables an instance may create.
pub const DEFAULT_MAX_TABLES: usize = 64;
/// Default cap on the core instances a component instance may create.
pub const DEFAULT_MAX_INSTANCES: usize = 64;

/// One component's manifest (`Component.toml`).
///
/// ```
/// let m: wasm_core::ComponentManifest = toml::from_str(r#"
///     [component]
///     id = "echo"
///     wasm = "echo.wat"
///     [capabilities]
///     send = ["billing-*"]
///     request = true
/// "#).unwrap();
/// assert_eq!(m.component.id.as_str(), "echo");
/// assert_eq!(m.mailbox.capacity, 1024);
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentManifest {
    /// Identity and code.
    pub component: ComponentSection,
    /// Per-call and per-instance execution limits.
    #[serde(default)]
    pub limits: Limits,
    /// Mailbox settings.
    #[serde(default)]
    pub mailbox: MailboxSection,
    /// Request defaults and quotas.
    #[serde(default)]
    pub requests: RequestsSection,
    /// What it may message (nothing by default).
    #[serde(default)]
    pub capabilities: CapabilitySection,
    /// Outgoing rate limit (none by default).
    #[serde(default)]
    pub rate: Option<RateSection>,
    /// Codecs it accepts (all known codecs by default).
    #[serde(default)]
    pub codecs: CodecSection,
    /// Supervision after a crash.
    #[serde(default)]
    pub restart: RestartSection,
    /// What WASI grants beyond output, clocks and random numbers (nothing by default).
    #[serde(default)]
    pub wasi: WasiSection,
    /// Which actors share an executor when the system runs on shards
    /// (nothing by default).
    #[serde(default)]
    pub placement: PlacementSection,
}

/// A manifest built in code, so embedders and tests need no TOML text: every
/// section starts at its default, as in a `Component.toml` that names only
/// `[component] id`. The code comes from the `SystemBuilder` call that takes
/// the manifest (a file, bytes or a compiled component), so `wasm` is empty
/// unless [`ComponentManifest::wasm`] sets it. Values are checked when the
/// system starts, as a file's are.
///
/// ```
/// use wasm_core::{Codec, ComponentId, ComponentManifest};
///
/// let m = ComponentManifest::new(ComponentId::parse("orders").unwrap())
///     .may_send(["inventory", "billing-*"])
///     .may_request(true)
///     .mailbox(256, 1 << 20)
///     .rate(100, 200)
///     .accept([Codec::Json]);
/// assert_eq!(m.capabilities.send, ["inventory", "billing-*"]);
/// assert_eq!((m.mailbox.capacity, m.codecs.accept.as_slice()), (256, &["json".to_owned()][..]));
/// ```
impl ComponentManifest {
    /// Component `id` with every default: no capabilities, default limits,
    /// mailbox, quotas and restart policy, all codecs, no WASI grants.
    #[must_use]
    pub fn new(id: ComponentId) -> Self {
        Self {
            component: ComponentSection { id, wasm: PathBuf::new(), build: None },
            limits: Limits::default(),
            mailbox: MailboxSection::default(),
            requests: RequestsSection::default(),
            capabilities: CapabilitySection::default(),
            rate: None,
            codecs: CodecSection::default(),
            restart: RestartSection::default(),
            wasi: WasiSection::default(),
            placement: PlacementSection::default(),
        }
    }

    /// `[component] wasm`: where the code is (for `SystemBuilder::loaded`-style use).
    #[must_use]
    pub fn wasm(mut self, path: impl Into<PathBuf>) -> Self {
        self.component.wasm = path.into();
        self
    }

    /// `[capabilities] send`: targets it may message, exact ids or globs.
    #[must_use]
    pub fn may_send<S: Into<String>>(mut self, targets: impl IntoIterator<Item = S>) -> Self {
        self.capabilities.send = targets.into_iter().map(Into::into).collect();
        self
    }

    /// `[capabilities] request`: whether it may send requests (to the same targets).
    #[must_use]
    pub fn may_request(mut self, allowed: bool) -> Self {
        self.capabilities.request = allowed;
        self
    }

    /// `[mailbox]`: at most `capacity` envelopes and `max_bytes` payload bytes.
    #[must_use]
    pub fn mailbox(mut self, capacity: usize, max_bytes: usize) -> Self {
        self.mailbox.capacity = capacity;
        self.mailbox.max_bytes = max_bytes;
        self
    }

    /// `[rate]`: GCRA limit on its sends, `per_second` sustained, `burst` above it.
    #[must_use]
    pub fn rate(mut self, per_second: u32, burst: u32) -> Self {
        self.rate = Some(RateSection { messages_per_second: per_second, burst });
        self
    }

    /// `[codecs] accept`: the codecs it accepts (all when never called).
    #[must_use]
    pub fn accept(mut self, codecs: impl IntoIterator<Item = Codec>) -> Self {
        self.codecs.accept = codecs.into_iter().map(|c| c.name().to_owned()).collect();
        self
    }

    /// `[limits]`.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// `[requests]`.
    #[must_use]
    pub fn requests(mut self, requests: RequestsSection) -> Self {
        self.requests = requests;
        self
    }

    /// `[restart]`.
    #[must_use]
    pub fn restart(mut self, restart: RestartSection) -> Self {
        self.restart = restart;
        self
    }

    /// `[wasi]`.
    #[must_use]
    pub fn wasi(mut self, wasi: WasiSection) -> Self {
        self.wasi = wasi;
        self
    }

    /// `[placement] group`: components of one group run on one shard.
    #[must_use]
    pub fn placement_group(mut self, group: impl Into<String>) -> Self {
        self.placement.group = Some(group.into());
        self
    }
}

/// `[placement]`: which actors share an executor when the system runs its
/// actors on shards (`SystemBuilder::shards` in `wasm-system`: single-threaded
/// executors, one OS thread each); without shards it is checked (a bad
/// group name is still an error) and otherwise unused. Components of one
/// `group` run on the same shard, so the messages, requests and callbacks
/// between them never cross threads: a request ping-pong then costs no
/// wake-up of another thread. A component without a group gets a shard in
/// turn (round robin), as does each new group.
///
/// ```
/// let m: wasm_core::ComponentManifest = toml::from_str(r#"
///     [component]
///     id = "client"
///     wasm = "client.wasm"
///     [placement]
///     group = "checkout"
/// "#).unwrap();
/// assert_eq!(m.placement.group.as_deref(), Some("checkout"));
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlacementSection {
    /// The group's name: 1 to [`PlacementSection::MAX_GROUP_BYTES`] bytes,
    /// any text (checked when the component starts).
    pub group: Option<String>,
}

impl PlacementSection {
    /// The longest group name, in bytes (as long as a component id).
    pub const MAX_GROUP_BYTES: usize = 128;

    /// Checks the group name.
    ///
    /// # Errors
    /// What is wrong with it: empty, or longer than
    /// [`PlacementSection::MAX_GROUP_BYTES`].
    pub fn validate(&self) -> Result<(), String> {
        match self.group.as_deref() {
            Some("") => Err("a placement group needs a name".to_owned()),
            Some(group) if group.len() > Self::MAX_GROUP_BYTES => {
                Err(format!("{} bytes; at most {}", group.len(), Self::MAX_GROUP_BYTES))
            }
            _ => Ok(()),
        }
    }
}

/// `[component]`: identity and code.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentSection {
    /// The component id.
    pub id: ComponentId,
    /// Path of the component: a `.wasm` component binary, or a `.wat` core
    /// module that the host componentizes against the `airssys:wasm` world.
    /// Relative paths are relative to the manifest's directory.
    pub wasm: PathBuf,
    /// The Rust crate (a directory with a `Cargo.toml`) that `wasm` is built
    /// from, relative to the manifest's directory. `wasm-system build`
    /// compiles it for `wasm32-wasip2` and writes the component to `wasm`;
    /// without this key, `wasm` is used as it is.
    #[serde(default)]
    pub build: Option<PathBuf>,
}

/// `[limits]`: execution limits; exceeding one traps that call only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Fuel per handler call (wasmtime fuel units).
    pub fuel_per_call: u64,
    /// Wall-clock budget per handler call, in ms, time asleep in WASI included.
    pub time_per_call_ms: u64,
    /// Cap on all the instance's linear memories together, in bytes, for the
    /// instance's life; a grow over it traps before anything is reserved.
    pub memory_bytes: usize,
    /// Cap on all the instance's table elements together; a grow over it
    /// traps before anything is reserved.
    pub table_elements: usize,
    /// Cap on the linear memories the instance may create (each reserves
    /// address space of its own).
    pub max_memories: usize,
    /// Cap on the tables the instance may create.
    pub max_tables: usize,
    /// Cap on the core instances the component instance may create.
    pub max_instances: usize,
    /// Cap on a message or response this component sends, in bytes.
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel_per_call: DEFAULT_FUEL_PER_CALL,
            time_per_call_ms: DEFAULT_TIME_PER_CALL_MS,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            table_elements: DEFAULT_TABLE_ELEMENTS,
            max_memories: DEFAULT_MAX_MEMORIES,
            max_tables: DEFAULT_MAX_TABLES,
            max_instances: DEFAULT_MAX_INSTANCES,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// `[mailbox]`: the bounds of what may wait for the component.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailboxSection {
    /// Bound on queued messages and requests, in envelopes.
    pub capacity: usize,
    /// Bound on the payload bytes queued for the component: messages,
    /// requests and callbacks together. A message or request that would go
    /// over is refused with `queue-full`; a response that would go over
    /// reaches the requester as `target-failed` instead.
    pub max_bytes: usize,
}

impl Default for MailboxSection {
    fn default() -> Self {
        Self { capacity: DEFAULT_MAILBOX_CAPACITY, max_bytes: DEFAULT_MAILBOX_BYTES }
    }
}

/// `[requests]`: defaults and quotas for requests this component sends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestsSection {
    /// Timeout used when `send-request` passes 0, in ms.
    pub default_timeout_ms: u64,
    /// Largest accepted `timeout-ms`, in ms.
    pub max_timeout_ms: u64,
    /// Pending requests allowed at once.
    pub max_pending: usize,
}

impl Default for RequestsSection {
    fn default() -> Self {
        Self {
            default_timeout_ms: DEFAULT_TIMEOUT_MS,
            max_timeout_ms: DEFAULT_MAX_TIMEOUT_MS,
            max_pending: DEFAULT_MAX_PENDING,
        }
    }
}

/// `[capabilities]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapabilitySection {
    /// Targets it may message: exact ids and glob patterns.
    pub send: Vec<String>,
    /// Whether it may send requests (to those targets).
    pub request: bool,
}

/// `[rate]`: GCRA limit on outgoing messages and requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSection {
    /// Sustained rate, in messages per second (at least 1).
    pub messages_per_second: u32,
    /// Burst allowed above the rate, in messages (at least 1).
    pub burst: u32,
}

/// `[codecs]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CodecSection {
    /// Codec names it accepts (`raw`, `json`, `cbor`, `messagepack`,
    /// `protobuf`, `borsh`, `bincode`); empty means all of them.
    pub accept: Vec<String>,
}

/// `[restart]`: the supervisor's policy (Erlang/OTP restart intensity).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartSection {
    /// At most this many restarts...
    pub max_restarts: u32,
    /// ...within this window, in ms; one more stops the component.
    pub within_ms: u64,
    /// Delay before the first restart, in ms; doubles per consecutive restart.
    pub backoff_ms: u64,
    /// Cap on the delay, in ms.
    pub max_backoff_ms: u64,
}

impl Default for RestartSection {
    fn default() -> Self {
        Self { max_restarts: 10, within_ms: 10_000, backoff_ms: 0, max_backoff_ms: 1_000 }
    }
}

/// `[wasi]`: what WASI preview 2 gives the guest beyond stdout and stderr
/// (which go to the host log), clocks and random numbers. Nothing by
/// default: no environment variables (none are inherited from the host), no
/// directories, no network, no name lookups.
///
/// ```
/// let m: wasm_core::ComponentManifest = toml::from_str(r#"
///     [component]
///     id = "reader"
///     wasm = "reader.wasm"
///     [wasi]
///     env = { GREETING = "hello" }
///     dirs = [{ host = "data", guest = "/data" }]
///     network = ["127.0.0.1:8080", "127.0.0.1:*"]
/// "#).unwrap();
/// assert_eq!(m.wasi.env["GREETING"], "hello");
/// assert!(!m.wasi.dirs[0].writable);
/// assert!(m.wasi.network[1].allows("127.0.0.1:9000".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WasiSection {
    /// Environment variables the guest sees, exactly these.
    pub env: BTreeMap<String, String>,
    /// Host directories the guest may open (WASI preopens).
    pub dirs: Vec<DirGrant>,
    /// Socket addresses the guest may connect to, bind or send to (TCP and
    /// UDP). Name lookups stay denied: grant addresses, not names.
    pub network: Vec<SocketGrant>,
}

/// One `[wasi] dirs` entry: a host directory preopened for the guest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    /// The host directory; relative paths are relative to the manifest's directory.
    pub host: PathBuf,
    /// Where the guest sees it (for example `/data`).
    pub guest: String,
    /// Whether the guest may create, write and remove files in it (default: read only).
    #[serde(default)]
    pub writable: bool,
}

/// One `[wasi] network` entry: `ip:port`, or `ip:*` for every port of one
/// address (IPv6 as `[::1]:8080`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SocketGrant {
    /// The address granted.
    pub ip: IpAddr,
    /// The port granted; `None` for every port.
    pub port: Option<u16>,
}

impl SocketGrant {
    /// Whether this grant covers `addr`.
    #[must_use]
    pub fn allows(&self, addr: SocketAddr) -> bool {
        addr.ip() == self.ip && self.port.is_none_or(|port| port == addr.port())
    }
}

impl TryFrom<String> for SocketGrant {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let bad = || format!("{text:?} is not `ip:port` or `ip:*` (a name is not an address)");
        if let Some(ip) = text.strip_suffix(":*") {
            let ip = ip.strip_prefix('[').and_then(|ip| ip.strip_suffix(']')).unwrap_or(ip);
            return ip.parse().map(|ip| Self { ip, port: None }).map_err(|_| bad());
        }
        let addr: SocketAddr = text.parse().map_err(|_| bad())?;
        Ok(Self { ip: addr.ip(), port: Some(addr.port()) })
    }
}

impl fmt::Display for SocketGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.port) {
            (IpAddr::V4(ip), Some(port)) => write!(f, "{ip}:{port}"),
            (IpAddr::V6(ip), Some(port)) => write!(f, "[{ip}]:{port}"),
            (IpAddr::V4(ip), None) => write!(f, "{ip}:*"),
            (IpAddr::V6(ip), None) => write!(f, "[{ip}]:*"),
        }
    }
}

/// An application manifest (`app.toml`): the components to start and the
/// messages to inject at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppManifest {
    /// `[app]`.
    #[serde(default)]
    pub app: AppSection,
    /// Paths of component manifests, relative to the app manifest.
    pub components: Vec<PathBuf>,
    /// Messages injected by the host (sender `host`) once all components run.
    #[serde(default, rename = "inject")]
    pub injections: Vec<Injection>,
    /// `[cluster]`: join other hosts over NATS (SPEC section 5).
    #[serde(default)]
    pub cluster: Option<ClusterSection>,
}

/// `[cluster]` of an app manifest: this host's node and the NATS broker the
/// hosts of the lattice share (`wasm-system run --node NAME --nats URL`
/// overrides the first two). Credentials: at most one of `token`,
/// `user`/`password`, `creds_file`.
///
/// ```
/// let app: wasm_core::AppManifest = toml::from_str(r#"
///     components = ["echo.toml"]
///     [cluster]
///     node = "b"
///     nats = "nats://127.0.0.1:4222"
///     heartbeat_ms = 500
/// "#).unwrap();
/// let cluster = app.cluster.unwrap();
/// assert_eq!((cluster.node.as_deref(), cluster.heartbeat_ms), (Some("b"), Some(500)));
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// This host's node name: its components are `name@<node>` to others.
    pub node: Option<String>,
    /// The broker's URL(s), `nats://host:4222` (comma-separated for several).
    pub nats: Option<String>,
    /// The subject prefix the lattice shares (default `airssys`).
    pub prefix: Option<String>,
    /// How often this host announces its components, ms (default 1000).
    pub heartbeat_ms: Option<u64>,
    /// How long a message or request sent to another node may stay
    /// unacknowledged before it ends undelivered (`ack-timeout`), ms
    /// (default 5000).
    pub ack_timeout_ms: Option<u64>,
    /// A token the broker asks for.
    pub token: Option<String>,
    /// A user name the broker asks for (with `password`).
    pub user: Option<String>,
    /// The user's password.
    pub password: Option<String>,
    /// A NATS `.creds` file (JWT and NKey seed), relative to the app manifest.
    pub creds_file: Option<PathBuf>,
    /// A CA certificate (PEM) to verify the broker with; setting it
    /// requires TLS.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM), with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Components of other nodes (`name@node`) this app needs: `run` waits
    /// until the directory knows each before injecting anything.
    #[serde(default)]
    pub requires: Vec<String>,
}

/// `[app]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSection {
    /// A name for logs and the summary.
    #[serde(default)]
    pub name: String,
    /// Run the actors on this many shards (`SystemBuilder::shards` in
    /// `wasm-system`, placed by each component's `[placement] group`; at
    /// most 256); 0, the default: on the runtime's worker threads.
    #[serde(default)]
    pub shards: usize,
}

/// One `[[inject]]` entry: a message (or, with `request = true`, a request)
/// the host sends, `repeat` times, starting `after_ms` after the components
/// run and `every_ms` apart.
///
/// ```
/// let app: wasm_core::AppManifest = toml::from_str(r#"
///     components = ["service.toml"]
///     [[inject]]
///     to = "service"
///     text = "tick"
///     after_ms = 500
///     every_ms = 100
///     repeat = 3
///     [[inject]]
///     to = "service"
///     text = "hello"
///     request = true
///     timeout_ms = 250
/// "#).unwrap();
/// let (tick, hello) = (&app.injections[0], &app.injections[1]);
/// assert_eq!((tick.after_ms, tick.every_ms, tick.repeat, tick.request), (500, 100, 3, false));
/// assert_eq!((hello.after_ms, hello.request, hello.timeout_ms), (0, true, Some(250)));
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Injection {
    /// The target component.
    pub to: ComponentId,
    /// The codec of the body (its name; default `raw`).
    #[serde(default = "default_codec")]
    pub codec: String,
    /// The body as UTF-8 text (the host adds the codec prefix).
    #[serde(default)]
    pub text: Option<String>,
    /// The body as bytes (instead of `text`).
    #[serde(default)]
    pub bytes: Option<Vec<u8>>,
    /// How many times to send it.
    #[serde(default = "one")]
    pub repeat: u32,
    /// Delay before the first send, in ms from when the components run
    /// (default 0: at once).
    #[serde(default)]
    pub after_ms: u64,
    /// Delay between one send and the next of its `repeat`, in ms (default
    /// 0: back to back).
    #[serde(default)]
    pub every_ms: u64,
    /// Send a request (the host's `send-request`) instead of a
    /// fire-and-forget message; its outcome goes to the host, which reports
    /// it (default false).
    #[serde(default)]
    pub request: bool,
    /// The request's timeout, in ms (only with `request = true`; default:
    /// the host's default request timeout, 5,000 ms).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

fn default_codec() -> String {
    "raw".to_owned()
}

fn one() -> u32 {
    1
}
