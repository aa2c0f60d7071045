//! Guest-to-guest messaging as users feel it, each figure beside its
//! physical baseline measured in the same run, printed as a table.
//!
//! Baselines (no router, no actor):
//! - **raw call**: one async `handle-message` of the echo fixture with a
//!   64-byte payload, straight through wasmtime (what every delivery costs
//!   at least);
//! - **channel hop**: one tokio mpsc message between two tasks (half a
//!   ping-pong round trip; its p50 and p99 are of the round trip);
//! - **raw batch**: async `handle-messages` calls of `batching.wat`, 64
//!   messages a call from an in-memory source, per message (the floor of a
//!   batched delivery on the guest's side: a 64th of a call, one
//!   `next-message` import and its lowering);
//! - **raw calls on two threads at once**: raw calls on two threads, each
//!   with its own instance and single-threaded executor, over raw calls on
//!   one thread alone (throughput): how far this machine's two cores scale
//!   call-bound work, the ceiling of "two pairs at once". Both instances
//!   on one engine (as actors on the default runtime), and on an engine
//!   each (as actors on two shards), alternated, with the ratio of the
//!   two: what sharing one engine costs. Measured again just before each
//!   two-pairs case and printed beside it.
//!
//! Measured in a running [`System`] with real guests (`requester.wat` and
//! `echo.wat`, then the same on the guest SDK, `tests/guests/bench`):
//! - **request round trip driven by the guests**: the requester's `R`
//!   command sends a request to `echo`, and each `handle-callback` sends the
//!   next, so no host command sits in the loop. p50, p99 and mean come from
//!   the latency histogram the host keeps per request
//!   (`airssys_request_duration_seconds`: `send-request` accepted to the
//!   end of its `handle-callback`), read through a metrics recorder this
//!   bench installs. Each sample ends when `handle-callback` returns, and
//!   that handler sends the next request, so samples overlap by one
//!   `send-request` (the wall-clock time per round trip is printed too).
//!   The physical floor is two raw calls (echo's `handle-message`, the
//!   requester's `handle-callback`) and two hops; the host work in between
//!   (`send-request`, the response, the callback) is what is above it.
//!   A second line splits the round trip: the two guest calls it contains,
//!   as the actors time them (`airssys_handler_duration_seconds`: the call
//!   with its fiber, lowering and the host calls the guest makes, so the
//!   requester's includes its `send-request`), and the rest (wall time per
//!   round trip minus both calls' means: actors, mailboxes, the response
//!   and the scheduler). Keeping those two histograms adds a record to each
//!   call of the rally, as a system with a metrics recorder pays anyway.
//! - **fire-and-forget**, one sender guest to one sink guest (the sender's
//!   one `handle-message` sends N messages); eight senders to one sink;
//!   two independent sender/sink pairs at once (scaling over the cores).
//!   Time per message from the command to every message handled, with the
//!   time the senders took to send alone; the floor is one raw call and
//!   one hop per message. `wat-batch` runs the same with a sink that takes
//!   its messages in batches (`batching.wat`, world `batch-component`), and
//!   prints the messages per `handle-messages` call; the SDK sink batches
//!   too (every SDK component does). A sink that batches is set beside the
//!   batched floor (raw batch per message + one hop), the others beside
//!   one raw call + one hop.
//!
//! Every case also prints the cores it kept busy (process CPU time over
//! wall time while it ran, all threads): how much of the machine it used,
//! for instance whether one pair already spans both cores.
//!
//! Each case runs 3 rounds and the table gives the median round and the
//! range. The VM this runs on changes speed by up to 2.5x within minutes,
//! so each ratio to a floor is against baselines measured again (one
//! round each) just before that case, not only those at the top: a ratio
//! then compares figures taken seconds apart, and the floor it used is
//! printed beside it. After each case the bench checks the host's counts: every
//! message handled by a sink and none dead-lettered; every request of a
//! rally answered by echo and its callback handled without an error.
//!
//! Run: `cargo bench -p wasm-system --bench guest_to_guest` (`G2G_N` sets
//! N, default 200,000 per case; `cargo test --all-targets` or `--benches`
//! runs it as a smoke test with N = 2,000 and one round). `BENCH_ENGINE=dense` runs it
//! on `EngineConfig::dense()`. `G2G_ONLY` runs only the cases whose names
//! contain it (`wat round trip`, `sdk fire-and-forget`, `round trip`,
//! `wat-batch fire-and-forget 1:1` (1:1 alone), `fire-and-forget 8:1`,
//! `fire-and-forget two pairs` (with its 1:1, for the scaling), ...),
//! for profiling one. `G2G_WORKERS` sets the tokio runtime's worker threads
//! (default 2, the machine's cores). `G2G_SHARDS=2` runs the systems'
//! actors on two shards instead (`SystemBuilder::shards`), each rally's
//! two components in one placement group and each sink with its senders in
//! another (then set `G2G_WORKERS=1`: the runtime only drives the bench).
#![allow(missing_docs, reason = "a bench binary")]

mod common;

use common::{
    BOUND, channel_echo, echo_instance, fixture_instance, in_task, manifest, payload64, root, sdk_guest, send_command,
    shutdown,
};

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram as Hdr;
use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use tokio::runtime::Runtime;
use wasm_core::ComponentId;
use wasm_runtime::{CompiledComponent, InboundMessage, MessageSource, WasmEngine};
use wasm_system::metrics::{HANDLER_DURATION, REQUEST_DURATION};
use wasm_system::{ComponentStats, System};

/// Request latencies in ns, as the host records them.
struct Latencies(Mutex<Hdr<u64>>);

impl Latencies {
    fn new() -> Self {
        // 1 ns to 60 s, 3 significant digits.
        Self(Mutex::new(Hdr::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")))
    }

    fn take(&self) -> Hdr<u64> {
        let mut histogram = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = histogram.clone();
        histogram.reset();
        taken
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl HistogramFn for Latencies {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "seconds to whole ns")]
    fn record(&self, seconds: f64) {
        let ns = (seconds * 1e9).round() as u64;
        self.0.lock().unwrap_or_else(PoisonError::into_inner).saturating_record(ns.max(1));
    }
}

/// Keeps `airssys_request_duration_seconds` (all components together) and
/// `airssys_handler_duration_seconds` of the rallies' two components, and
/// drops every other metric (so the fire-and-forget cases record nothing
/// per message).
struct LatencyRecorder {
    requests: Arc<Latencies>,
    handlers: Arc<Handlers>,
}

/// The handler durations in ns of the components named `requester` and
/// `echo` (a rally's two).
#[derive(Default)]
struct Handlers {
    requester: Arc<Latencies>,
    echo: Arc<Latencies>,
}

impl Recorder for LatencyRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        if key.name() == REQUEST_DURATION {
            return Histogram::from_arc(Arc::clone(&self.requests));
        }
        let component = key.labels().find(|label| label.key() == "component").map(|label| label.value());
        match component.filter(|_| key.name() == HANDLER_DURATION) {
            Some("requester") => Histogram::from_arc(Arc::clone(&self.handlers.requester)),
            Some("echo") => Histogram::from_arc(Arc::clone(&self.handlers.echo)),
            _ => Histogram::noop(),
        }
    }
}

/// How the run is sized.
struct Plan {
    n: u64,
    rounds: usize,
}

/// The median of some measurements and their range.
#[derive(Clone, Copy)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Self { median: values[values.len() / 2], min: values[0], max: values[values.len() - 1] }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:8.0} ns  ({:.0}..{:.0})", self.median, self.min, self.max)
    }
}

/// Cores busy while a case ran: the process's CPU time (every thread,
/// `CLOCK_PROCESS_CPUTIME_ID`) over the wall time, summed over the timed
/// parts of its rounds. It shows how much of the machine a case used: a
/// pair that pipelines (the sender on one worker, the sink on the other)
/// already keeps much of both cores busy, which leaves a second pair little
/// to scale onto; a ping-pong, serial by nature, shows the scheduler's own
/// work (the idle worker woken, searching for tasks, parking again) as the
/// part above one core. Not a bound: that overhead shrinks under load.
///
/// Also the time the hypervisor took from this VM's CPUs while the case ran
/// (`steal` of `/proc/stat`, all CPUs, in cores): a case that ran while the
/// host gave the VM less than its two cores shows it here, and its figures
/// (scaling above all) are then the host's, not ours.
#[derive(Default, Clone, Copy)]
struct Busy {
    cpu: Duration,
    wall: Duration,
    stolen: Duration,
}

impl Busy {
    /// Runs `timed`, adding its CPU, wall and stolen time.
    fn measure<T>(&mut self, timed: impl FnOnce() -> T) -> T {
        let (cpu, stolen, wall) = (cpu_time(), stolen_time(), Instant::now());
        let result = timed();
        self.cpu += cpu_time().saturating_sub(cpu);
        self.stolen += stolen_time().saturating_sub(stolen);
        self.wall += wall.elapsed();
        result
    }

    fn cores(self) -> f64 {
        self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    fn stolen_cores(self) -> f64 {
        self.stolen.as_secs_f64() / self.wall.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} cores busy, {:.2} stolen", self.cores(), self.stolen_cores())
    }
}

/// Time the hypervisor ran something else on this VM's CPUs so far, summed
/// over the CPUs (the `steal` column of the `cpu` line of `/proc/stat`, in
/// `USER_HZ` ticks of 10 ms); zero where there is no such file.
fn stolen_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks = stat
        .lines()
        .find(|line| line.starts_with("cpu "))
        .and_then(|line| line.split_whitespace().nth(8))
        .and_then(|steal| steal.parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// CPU time of the whole process so far (all threads, those ended too).
fn cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(now.tv_sec.unsigned_abs(), u32::try_from(now.tv_nsec).unwrap_or(0))
}

/// `G2G_SHARDS`: run the systems' actors on this many shards
/// (`SystemBuilder::shards`; 0, the default: on the bench's runtime). Each
/// rally's requester and echo, and each sender with its sink, then share a
/// placement group (see [`group`]).
fn shards() -> usize {
    std::env::var("G2G_SHARDS").ok().and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// A manifest's `[placement]` section putting it in `group`.
fn group(name: &str) -> String {
    format!("\n[placement]\ngroup = \"{name}\"")
}

fn per(elapsed: Duration, n: u64) -> f64 {
    elapsed.as_nanos() as f64 / n as f64
}

fn start(rt: &Runtime, engine: &Arc<WasmEngine>, components: &[(String, CompiledComponent, String)]) -> Arc<System> {
    Arc::new(rt.block_on(async {
        let mut builder =
            System::builder().engine(Arc::clone(engine)).metrics_interval(Duration::from_secs(3600)).shards(shards());
        for (id, compiled, extra) in components {
            builder = builder.compiled(manifest(id, extra), compiled.clone());
        }
        builder.start().await.expect("system starts")
    }))
}

/// The host's counts of component `id`.
fn stats_of(system: &System, id: &str) -> ComponentStats {
    system.component_stats().into_iter().find(|(c, _)| c.as_str() == id).map(|(_, stats)| stats).expect("a component")
}

/// Which guests play requester/sender and echo/sink, compiled once.
#[derive(Clone)]
struct Guests {
    name: &'static str,
    requester: CompiledComponent,
    echo: CompiledComponent,
    /// The command that makes a sender send `n` messages to `target`.
    send: fn(u64, &str) -> Vec<u8>,
    /// The command that starts a rally of `n` requests to `target`;
    /// `None` when `echo` cannot answer requests (a sink only).
    rally: Option<fn(u64, &str) -> Vec<u8>>,
}

fn wat_send(n: u64, target: &str) -> Vec<u8> {
    send_command(u32::try_from(n).expect("n fits u32"), target)
}

fn wat_rally(n: u64, target: &str) -> Vec<u8> {
    let mut cmd = wat_send(n, target);
    cmd[1] = b'R';
    cmd
}

fn sdk_send(n: u64, target: &str) -> Vec<u8> {
    format!("\x55m:{n}:{target}").into_bytes()
}

fn sdk_rally(n: u64, target: &str) -> Vec<u8> {
    format!("\x55R:{n}:{target}").into_bytes()
}

/// The batch baseline's source: hands out the prepared payloads from `host`,
/// [`BATCH`] a call, as the actor's batch does (the payload moved, the
/// sender's id copied for the first message of a call).
struct Prepared {
    payloads: Vec<Vec<u8>>,
    in_batch: usize,
}

/// Messages per call in the batch baseline (the host's cap).
const BATCH: usize = 64;

impl MessageSource for Prepared {
    fn next(&mut self, _previous: Option<Result<(), wasm_core::ComponentError>>) -> Option<InboundMessage> {
        if self.in_batch == BATCH {
            return None;
        }
        let message = self.payloads.pop()?;
        // As the actor's batch does: the sender named on the first message
        // of a call, the same sender after that.
        let sender = (self.in_batch == 0).then(|| "host".to_owned());
        self.in_batch += 1;
        Some(InboundMessage { sender, message, trace: None })
    }
}

/// ns per message of raw async `handle-messages` calls of `batching.wat`,
/// 64 messages a call from an in-memory source: what a batched delivery
/// costs at least on the guest's side (its share of one call, one
/// `next-message` import and its lowering).
fn raw_batch(rt: &Runtime, engine: &Arc<WasmEngine>, n: u64) -> f64 {
    let system = start(rt, engine, &[]);
    let mut instance = fixture_instance(rt, engine, "batching", system.message_router());
    let payloads = (0..n).map(|_| payload64()).collect();
    let elapsed = in_task(rt, async move {
        let mut source = Box::new(Prepared { payloads, in_batch: 0 });
        let started = Instant::now();
        while !source.payloads.is_empty() {
            source.in_batch = 0;
            instance.handle_messages(source).await.expect("no trap");
            source = instance.take_source::<Prepared>().expect("the source comes back");
        }
        started.elapsed()
    });
    shutdown(rt, system);
    per(elapsed, n)
}

/// ns per raw async `handle-message` call of the echo fixture.
fn raw_call(rt: &Runtime, engine: &Arc<WasmEngine>, n: u64) -> f64 {
    let system = start(rt, engine, &[]);
    let mut instance = echo_instance(rt, engine, system.message_router());
    let elapsed = in_task(rt, async move {
        let started = Instant::now();
        echo_calls(&mut instance, n).await;
        started.elapsed()
    });
    shutdown(rt, system);
    per(elapsed, n)
}

/// How far raw `handle-message` calls scale over two threads on this
/// machine: the physical ceiling of "two pairs at once". Each thread runs
/// its own echo instance on a single-threaded executor of its own (as a
/// shard does). Calls on one thread alone, then on two threads started
/// together with both instances on one engine, then with the second on an
/// engine of its own (its own `wasmtime::Engine`, epoch ticker and stack
/// pool, as a second shard has): see [`Scaling`].
fn raw_call_scaling(rt: &Runtime, engine: &Arc<WasmEngine>, n: u64) -> Scaling {
    let system = start(rt, engine, &[]);
    let other = Arc::new(WasmEngine::new(common::engine_config()).expect("engine"));
    let router = || system.message_router();
    let mut first = [echo_instance(rt, engine, router())];
    let mut shared = [echo_instance(rt, engine, router()), echo_instance(rt, engine, router())];
    let mut separate = [echo_instance(rt, engine, router()), echo_instance(rt, &other, router())];
    // The VM's speed changes within seconds: alternate short runs and take
    // the medians of each alternation's ratios.
    let runs = n.div_ceil(ALTERNATIONS).max(1);
    let (mut one_engine, mut two_engines, mut sharing) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ALTERNATIONS {
        let alone = raw_calls_at_once(&mut first, runs).as_secs_f64();
        let on_one = raw_calls_at_once(&mut shared, runs).as_secs_f64();
        let on_two = raw_calls_at_once(&mut separate, runs).as_secs_f64();
        one_engine.push(2.0 * alone / on_one);
        two_engines.push(2.0 * alone / on_two);
        sharing.push(on_one / on_two);
    }
    drop((first, shared, separate, other));
    shutdown(rt, system);
    Scaling {
        one_engine: Spread::of(one_engine).median,
        two_engines: Spread::of(two_engines).median,
        sharing: Spread::of(sharing).median,
    }
}

/// Raw calls on two threads at once, over one thread alone (throughput; 2.0
/// for two cores that share nothing; less: shared caches, memory
/// bandwidth, vCPUs that are not whole cores, or shared engine state).
/// Each figure is the median over [`ALTERNATIONS`] alternations of the
/// three runs (`n / ALTERNATIONS` calls each).
#[derive(Clone, Copy)]
struct Scaling {
    /// Both instances on one engine (actors on the default runtime, or on
    /// one engine's shards).
    one_engine: f64,
    /// Each on an engine of its own (actors on two shards).
    two_engines: f64,
    /// The time of the two threads on one engine over their time on an
    /// engine each: what sharing the engine costs (every wasmtime call
    /// touches engine-wide state, such as the engine's reference count that
    /// wasmtime 48 takes for each call's fiber in `make_fiber_unchecked`).
    sharing: f64,
}

impl std::fmt::Display for Scaling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2}x on one engine, {:.2}x on an engine each (one engine takes {:.2}x the time)",
            self.one_engine, self.two_engines, self.sharing
        )
    }
}

/// How many alternations [`raw_call_scaling`] runs.
const ALTERNATIONS: u64 = 9;

/// `n` raw `handle-message` calls on each of `instances` at once, each on a
/// thread and single-threaded executor of its own, started together: the
/// time until the last thread is done.
fn raw_calls_at_once(instances: &mut [wasm_runtime::ComponentInstance], n: u64) -> Duration {
    let ready = std::sync::Barrier::new(instances.len());
    std::thread::scope(|scope| {
        let threads: Vec<_> = instances
            .iter_mut()
            .map(|instance| {
                let ready = &ready;
                scope.spawn(move || {
                    let executor =
                        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("executor");
                    ready.wait();
                    let started = Instant::now();
                    executor.block_on(echo_calls(instance, n));
                    started.elapsed()
                })
            })
            .collect();
        threads.into_iter().map(|thread| thread.join().expect("calling thread")).max().unwrap_or_default()
    })
}

/// `n` raw async `handle-message` calls of an echo instance, from the host,
/// each with the same 64-byte payload: the raw-call baseline's loop.
async fn echo_calls(instance: &mut wasm_runtime::ComponentInstance, n: u64) {
    let sender = ComponentId::host();
    let payload = payload64();
    for _ in 0..n {
        black_box(instance.handle_message(&sender, black_box(&payload), None).await.ok());
    }
}

/// A tokio mpsc ping-pong between two tasks: (ns per one-way hop, round
/// trip histogram in ns).
fn channel_hop(rt: &Runtime, n: u64) -> (f64, Hdr<u64>) {
    in_task(rt, async move {
        let (to_echo, mut main_rx, echo) = channel_echo();
        let clock = quanta::Clock::new();
        let mut histogram = Hdr::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
        let started = Instant::now();
        for _ in 0..n {
            let sent = clock.raw();
            to_echo.send(payload64()).await.expect("send");
            black_box(main_rx.recv().await.expect("recv"));
            histogram.saturating_record(clock.delta_as_nanos(sent, clock.raw()).max(1));
        }
        let elapsed = started.elapsed();
        echo.abort();
        (per(elapsed, n) / 2.0, histogram)
    })
}

/// Request rallies driven by the guests: (ns per round trip from the wall
/// clock, the host's histogram of the rounds, the host's histograms of the
/// requester's callback calls and of echo's calls).
fn round_trips(
    rt: &Runtime,
    engine: &Arc<WasmEngine>,
    guests: &Guests,
    rally: fn(u64, &str) -> Vec<u8>,
    plan: &Plan,
    (latencies, handlers): (&Latencies, &Handlers),
) -> (Spread, Hdr<u64>, [Hdr<u64>; 2], Busy) {
    let system = start(
        rt,
        engine,
        &[
            (
                "requester".into(),
                guests.requester.clone(),
                format!("[capabilities]\nsend = [\"echo\"]\nrequest = true{}", group("rally")),
            ),
            ("echo".into(), guests.echo.clone(), group("rally")),
        ],
    );
    let mut walls = Vec::new();
    let mut all = Hdr::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
    let mut calls = [all.clone(), all.clone()];
    let mut busy = Busy::default();
    for _ in 0..plan.rounds {
        latencies.take();
        // Drops what an earlier round recorded under these names.
        handlers.requester.take();
        handlers.echo.take();
        let command = rally(plan.n, "echo");
        let system_in = Arc::clone(&system);
        let elapsed = busy.measure(|| {
            in_task(rt, async move {
                let started = Instant::now();
                let ask = system_in.request("requester", command, Some(BOUND)).expect("command");
                ask.response().await.expect("the rally starts");
                assert!(system_in.wait_quiescent(BOUND).await, "the rally ends");
                started.elapsed()
            })
        });
        let round = latencies.take();
        assert_eq!(round.len(), plan.n, "{}: every request of the rally came back", guests.name);
        all.add(&round).expect("same bounds");
        // The requester's calls: every callback and the command that started the rally.
        calls[0].add(handlers.requester.take()).expect("same bounds");
        calls[1].add(handlers.echo.take()).expect("same bounds");
        walls.push(per(elapsed, plan.n));
    }
    let rallies = plan.n * plan.rounds as u64;
    let (requester, echo) = (stats_of(&system, "requester"), stats_of(&system, "echo"));
    assert_eq!(
        (requester.callbacks_handled, requester.handler_errors, echo.handled, echo.handler_errors),
        (rallies, 0, rallies, 0),
        "{}: every request answered and its callback handled without an error",
        guests.name
    );
    shutdown(rt, system);
    (Spread::of(walls), all, calls, busy)
}

/// Fire-and-forget from `senders` sender guests, `pairs` apart: with
/// `pairs == 1` every sender sends to one sink; with `pairs == 2` there
/// are two senders and two sinks, each sender with its own. Returns ns per
/// message until all were handled, ns per message until the senders were
/// done sending, and the messages per `handle-messages` call the sinks got
/// (`None` for sinks that take them one call each).
fn fire_and_forget(
    rt: &Runtime,
    engine: &Arc<WasmEngine>,
    guests: &Guests,
    plan: &Plan,
    senders: usize,
    pairs: usize,
) -> (Spread, Spread, Option<f64>, Busy) {
    let sinks = pairs;
    let mut components = Vec::new();
    for s in 0..senders {
        let sink = format!("sink{}", s % sinks);
        components.push((
            format!("sender{s}"),
            guests.requester.clone(),
            format!("[capabilities]\nsend = [\"{sink}\"]{}", group(&sink)),
        ));
    }
    // Room for every message of a round at once, in count and in bytes
    // (64-byte payloads), so no send is refused whatever N is.
    let mailbox = format!("[mailbox]\ncapacity = {}\nmax_bytes = {}", plan.n.max(1024), (plan.n * 64).max(1 << 20));
    for k in 0..sinks {
        components.push((format!("sink{k}"), guests.echo.clone(), format!("{mailbox}{}", group(&format!("sink{k}")))));
    }
    let system = start(rt, engine, &components);
    let per_sender = plan.n / senders as u64;
    let total = per_sender * senders as u64;
    let mut handled = Vec::new();
    let mut sent = Vec::new();
    let mut busy = Busy::default();
    for _ in 0..plan.rounds {
        let system_in = Arc::clone(&system);
        let send = guests.send;
        let (all_sent, all_handled) = busy.measure(|| {
            in_task(rt, async move {
                let started = Instant::now();
                let asks: Vec<_> = (0..senders)
                    .map(|s| {
                        let command = send(per_sender, &format!("sink{}", s % sinks));
                        system_in.request(&format!("sender{s}"), command, Some(BOUND)).expect("command")
                    })
                    .collect();
                for ask in asks {
                    ask.response().await.expect("all sent");
                }
                let all_sent = started.elapsed();
                assert!(system_in.wait_quiescent(BOUND).await, "every message handled");
                (all_sent, started.elapsed())
            })
        });
        sent.push(per(all_sent, total));
        handled.push(per(all_handled, total));
    }
    let sink_stats: Vec<_> = (0..sinks).map(|k| stats_of(&system, &format!("sink{k}"))).collect();
    let handled_total: u64 = sink_stats.iter().map(|s| s.handled).sum();
    let dead: u64 = sink_stats.iter().map(ComponentStats::dead_letters_total).sum();
    assert_eq!((handled_total, dead), (total * plan.rounds as u64, 0), "{}: every message handled", guests.name);
    let batches: u64 = sink_stats.iter().map(|s| s.batches).sum();
    let per_batch = (batches > 0).then(|| handled_total as f64 / batches as f64);
    shutdown(rt, system);
    (Spread::of(handled), Spread::of(sent), per_batch, busy)
}

/// The three baselines (ns per message): the medians at the top of the
/// table, or one round each measured again just before a case.
struct Floors {
    raw: f64,
    raw_batched: f64,
    hop: f64,
}

impl Floors {
    fn measure(rt: &Runtime, engine: &Arc<WasmEngine>, n: u64) -> Self {
        Self { raw: raw_call(rt, engine, n), raw_batched: raw_batch(rt, engine, n), hop: channel_hop(rt, n).0 }
    }

    /// One raw call and one hop: a message delivered by a call of its own.
    fn message(&self) -> f64 {
        self.raw + self.hop
    }

    /// A raw batch's share and one hop: a message delivered in a batch.
    fn batched(&self) -> f64 {
        self.raw_batched + self.hop
    }

    /// Two raw calls and two hops.
    fn round_trip(&self) -> f64 {
        2.0 * self.message()
    }
}

fn quantile(histogram: &Hdr<u64>, q: f64) -> f64 {
    histogram.value_at_quantile(q) as f64
}

fn main() {
    let bench = std::env::args().any(|arg| arg == "--bench");
    let n = std::env::var("G2G_N").ok().and_then(|n| n.parse().ok()).unwrap_or(if bench { 200_000 } else { 2_000 });
    let plan = Plan { n, rounds: if bench { 3 } else { 1 } };
    let latencies = Arc::new(Latencies::new());
    let handlers = Arc::new(Handlers::default());
    metrics::set_global_recorder(LatencyRecorder { requests: Arc::clone(&latencies), handlers: Arc::clone(&handlers) })
        .expect("the only recorder");
    let workers = std::env::var("G2G_WORKERS").ok().and_then(|n| n.parse().ok()).unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().expect("runtime");
    let engine = Arc::new(WasmEngine::new(common::engine_config()).expect("engine"));

    let raw = Spread::of((0..plan.rounds).map(|_| raw_call(&rt, &engine, plan.n)).collect());
    let raw_batched = Spread::of((0..plan.rounds).map(|_| raw_batch(&rt, &engine, plan.n)).collect());
    let hops: Vec<_> = (0..plan.rounds).map(|_| channel_hop(&rt, plan.n)).collect();
    let hop = Spread::of(hops.iter().map(|(hop, _)| *hop).collect());
    let mut hop_rtt = Hdr::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
    for (_, histogram) in &hops {
        hop_rtt.add(histogram).expect("same bounds");
    }
    println!(
        "guest_to_guest: N = {} per case, {} round(s), {workers} worker threads, {} shards, median (range){}",
        plan.n,
        plan.rounds,
        shards(),
        if bench { "" } else { " [smoke run without --bench: the numbers mean nothing]" }
    );
    println!("baseline  raw handle-message call      {raw}");
    println!("baseline  raw batch, per message (64)  {raw_batched}");
    println!(
        "baseline  channel hop (one way)        {hop}   round trip p50 {:.0} ns, p99 {:.0} ns",
        quantile(&hop_rtt, 0.5),
        quantile(&hop_rtt, 0.99)
    );
    let scalings: Vec<_> = (0..plan.rounds).map(|_| raw_call_scaling(&rt, &engine, plan.n)).collect();
    let spread = |figure: fn(&Scaling) -> f64| Spread::of(scalings.iter().map(figure).collect());
    let (one_engine, two_engines, sharing) =
        (spread(|s| s.one_engine), spread(|s| s.two_engines), spread(|s| s.sharing));
    println!(
        "baseline  raw calls, two threads at once: {:.2}x one thread on one engine ({:.2}..{:.2}), {:.2}x on an engine each ({:.2}..{:.2}); one engine takes {:.2}x the time ({:.2}..{:.2})",
        one_engine.median,
        one_engine.min,
        one_engine.max,
        two_engines.median,
        two_engines.min,
        two_engines.max,
        sharing.median,
        sharing.min,
        sharing.max
    );
    let floors = Floors { raw: raw.median, raw_batched: raw_batched.median, hop: hop.median };
    println!("floor     fire-and-forget (call + hop) {:8.0} ns", floors.message());
    println!("floor     batched (batch share + hop)  {:8.0} ns", floors.batched());
    println!("floor     round trip (2 calls + 2 hops) {:7.0} ns", floors.round_trip());

    let load = |path: PathBuf| engine.load_file(&path).expect("a guest that loads");
    let wat = Guests {
        name: "wat",
        requester: load(root().join("tests/fixtures/requester.wat")),
        echo: load(root().join("tests/fixtures/echo.wat")),
        send: wat_send,
        rally: Some(wat_rally),
    };
    // The same sender, and a sink that takes its messages in batches
    // (`batching.wat`: world batch-component; it cannot answer requests).
    let wat_batch = Guests {
        name: "wat-batch",
        requester: wat.requester.clone(),
        echo: load(root().join("tests/fixtures/batching.wat")),
        send: wat_send,
        rally: None,
    };
    let only = std::env::var("G2G_ONLY").unwrap_or_default();
    let run = |name: &str, case: &str| format!("{name} {case}").contains(only.as_str());
    let any_fire_and_forget = |name: &str| {
        ["fire-and-forget 1:1", "fire-and-forget 8:1", "fire-and-forget two pairs"].iter().any(|case| run(name, case))
    };
    let mut all_guests = vec![wat, wat_batch];
    // Built and compiled only when one of its cases runs.
    if run("sdk", "round trip") || any_fire_and_forget("sdk") {
        let sdk = load(sdk_guest());
        all_guests.push(Guests {
            name: "sdk",
            requester: sdk.clone(),
            echo: sdk,
            send: sdk_send,
            rally: Some(sdk_rally),
        });
    }
    for guests in &all_guests {
        let name = guests.name;
        if let Some(rally) = guests.rally.filter(|_| run(guests.name, "round trip")) {
            let near = Floors::measure(&rt, &engine, plan.n).round_trip();
            let (wall, histogram, [callbacks, echoes], busy) =
                round_trips(&rt, &engine, guests, rally, &plan, (&latencies, &handlers));
            println!(
                "{name:<9}  request round trip   p50 {:6.0} ns  p99 {:7.0} ns  mean {:6.0} ns  (host histogram, {} requests); wall {wall}; {busy}; p50 / floor {:.2} (floor just before: {near:.0} ns)",
                quantile(&histogram, 0.5),
                quantile(&histogram, 0.99),
                histogram.mean(),
                histogram.len(),
                quantile(&histogram, 0.5) / near
            );
            // Where a round trip's time goes: the two guest calls it
            // contains (as the actors time them: the call, its host calls
            // and the fiber), and everything between them.
            let inside = callbacks.mean() + echoes.mean();
            println!(
                "{name:<9}  round trip's calls   requester's callback p50 {:.0} ns, mean {:.0} ns; echo's request p50 {:.0} ns, mean {:.0} ns; between the calls {:.0} ns a round trip (wall - both means)",
                quantile(&callbacks, 0.5),
                callbacks.mean(),
                quantile(&echoes, 0.5),
                echoes.mean(),
                wall.median - inside
            );
        }
        if !any_fire_and_forget(guests.name) {
            continue;
        }
        let batched = |per_batch: Option<f64>| per_batch.map_or(String::new(), |b| format!("; {b:.1} per batch"));
        // 1:1 runs for itself and for the scaling of two pairs.
        let mut one_pair = None;
        if run(guests.name, "fire-and-forget 1:1") || run(guests.name, "fire-and-forget two pairs") {
            let near = Floors::measure(&rt, &engine, plan.n);
            let (one, one_sent, one_batch, one_busy) = fire_and_forget(&rt, &engine, guests, &plan, 1, 1);
            // Against the floor of what its sink does: a call per message, or
            // a batch's share.
            let floor = if one_batch.is_some() { near.batched() } else { near.message() };
            println!(
                "{name:<9}  fire-and-forget 1:1  {one}  {:.2} M msg/s; senders done at {one_sent}; {one_busy}; / floor {:.2} (floor just before: {floor:.0} ns){}",
                1e3 / one.median,
                one.median / floor,
                batched(one_batch)
            );
            one_pair = Some(one.median);
        }
        if run(guests.name, "fire-and-forget 8:1") {
            let (many, many_sent, many_batch, many_busy) = fire_and_forget(&rt, &engine, guests, &plan, 8, 1);
            println!(
                "{name:<9}  fire-and-forget 8:1  {many}  {:.2} M msg/s; senders done at {many_sent}; {many_busy}{}",
                1e3 / many.median,
                batched(many_batch)
            );
        }
        if let Some(one_pair) = one_pair.filter(|_| run(guests.name, "fire-and-forget two pairs")) {
            let ceiling = raw_call_scaling(&rt, &engine, plan.n);
            let (two, two_sent, two_batch, two_busy) = fire_and_forget(&rt, &engine, guests, &plan, 2, 2);
            println!(
                "{name:<9}  two pairs at once    {two}  {:.2} M msg/s; senders done at {two_sent}; {two_busy}; scaling {:.2}x one pair (raw calls just before: {ceiling}){}",
                1e3 / two.median,
                one_pair / two.median,
                batched(two_batch)
            );
        }
    }
}
