//! Benchmarks of the correlation tracker: time per operation (criterion) and
//! memory per pending request at 1,000,000 pending.
//!
//! `cargo bench -p wasm-messaging --bench tracker`
//!
//! Memory is measured without a counting allocator (the workspace forbids
//! `unsafe_code`, which `GlobalAlloc` needs): the bench re-runs itself as a
//! child process with `MALLOC_MMAP_THRESHOLD_=131072`, so glibc serves every
//! large block (the map's table, the timer heap) with `mmap` and unmaps it
//! when freed, and reports the growth of `VmRSS` while registering
//! 1,000,000 requests, divided by 1,000,000. The owners are created before
//! the first reading, so only the tracker's own memory is counted.

use std::hint::black_box;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use wasm_core::{Clock, ComponentId, CorrelationId, CorrelationTracker, RequestOwner};
use wasm_messaging::{ManualClock, MonotonicClock, PendingRequests};

/// Set in the child process that measures memory; the value names the owner type.
const MEMORY_CHILD_ENV: &str = "WASM_MESSAGING_TRACKER_MEMORY_CHILD";
const PENDING: usize = 1_000_000;
/// Pre-generated ids per pool; each is completed before it is reused.
const POOL: usize = 4096;
const TIMEOUT_MS: u64 = 5_000;

/// An 8-byte owner of the kind the composition root uses: a handle to the
/// requester's actor.
#[derive(Clone)]
struct ActorRef(Arc<Actor>);

struct Actor {
    id: ComponentId,
}

impl RequestOwner for ActorRef {
    fn owner_id(&self) -> &ComponentId {
        &self.0.id
    }
}

fn component(name: &str) -> ComponentId {
    ComponentId::parse(name).expect("valid component id")
}

fn id_pool() -> Vec<CorrelationId> {
    (0..POOL).map(|_| CorrelationId::generate()).collect()
}

fn main() {
    if let Ok(owner) = std::env::var(MEMORY_CHILD_ENV) {
        measure_memory(&owner);
        return;
    }
    // `cargo test --benches` runs this binary without `--bench`: criterion
    // then runs each benchmark once, and the memory report is skipped.
    if std::env::args().any(|arg| arg == "--bench") {
        report_memory();
    }
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40)
        .configure_from_args();
    single_thread(&mut criterion);
    two_threads(&mut criterion);
    criterion.final_summary();
}

fn single_thread(criterion: &mut Criterion) {
    let (a, b) = (component("requester"), component("responder"));
    let mut group = criterion.benchmark_group("tracker");

    group.bench_function("id_generation", |bench| bench.iter(CorrelationId::generate));
    let monotonic = MonotonicClock::new();
    group.bench_function("monotonic_clock_now_ms", |bench| bench.iter(|| monotonic.now_ms()));

    {
        let tracker = PendingRequests::<ComponentId, _>::new(ManualClock::new(0));
        let ids = id_pool();
        let mut next = 0;
        group.bench_function("register_complete/excluding_id_generation_and_clock", |bench| {
            bench.iter(|| {
                let id = &ids[next % POOL];
                next += 1;
                let _ = black_box(tracker.register_with_id(id, a.clone(), b.clone(), TIMEOUT_MS));
                black_box(tracker.complete(id))
            });
        });
    }

    {
        let tracker = PendingRequests::<ComponentId>::new(MonotonicClock::new());
        let ids = id_pool();
        let mut next = 0;
        group.bench_function("register_complete/excluding_id_generation", |bench| {
            bench.iter(|| {
                let id = &ids[next % POOL];
                next += 1;
                let _ = black_box(tracker.register_with_id(id, a.clone(), b.clone(), TIMEOUT_MS));
                black_box(tracker.complete(id))
            });
        });
        assert!(tracker.stats().balanced());
    }

    {
        let tracker = PendingRequests::<ComponentId>::new(MonotonicClock::new());
        group.bench_function("register_complete/including_id_generation", |bench| {
            bench.iter(|| {
                let id = tracker.register(a.clone(), b.clone(), TIMEOUT_MS);
                black_box(tracker.complete(&id))
            });
        });
    }

    {
        let tracker = PendingRequests::<ComponentId>::new(MonotonicClock::new());
        let ids = id_pool();
        let mut next = 0;
        group.bench_function("register_cancel/excluding_id_generation", |bench| {
            bench.iter(|| {
                let id = &ids[next % POOL];
                next += 1;
                let _ = black_box(tracker.register_with_id(id, a.clone(), b.clone(), TIMEOUT_MS));
                black_box(tracker.cancel(id, &a))
            });
        });
    }

    {
        let clock = ManualClock::new(0);
        let tracker = PendingRequests::<ComponentId, _>::new(clock.clone());
        let ids = id_pool();
        let mut next = 0;
        group.bench_function("register_timeout/one_per_cleanup", |bench| {
            bench.iter(|| {
                let id = &ids[next % POOL];
                next += 1;
                let _ = black_box(tracker.register_with_id(id, a.clone(), b.clone(), 0));
                clock.advance(1);
                black_box(tracker.cleanup_expired())
            });
        });
        assert_eq!(tracker.stats().pending, 0);
    }

    {
        const BATCH: usize = 1_000;
        let clock = ManualClock::new(0);
        let tracker = PendingRequests::<ComponentId, _>::new(clock.clone());
        let ids = id_pool();
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(BenchmarkId::new("register_timeout/batch", BATCH), |bench| {
            bench.iter(|| {
                for id in &ids[..BATCH] {
                    let _ = black_box(tracker.register_with_id(id, a.clone(), b.clone(), 0));
                }
                clock.advance(1);
                black_box(tracker.cleanup_expired())
            });
        });
        assert_eq!(tracker.stats().pending, 0);
    }
    group.finish();
}

/// Two threads, each doing register+complete on one shared tracker. One
/// iteration is one register+complete on each thread (two in all), so the
/// reported time is the wall time per pair and the throughput counts both.
fn two_threads(criterion: &mut Criterion) {
    let tracker = PendingRequests::<ComponentId>::new(MonotonicClock::new());
    // Each thread has its own requester and responder, so the threads share
    // the tracker and nothing else (not even a reference count).
    let pools = [
        (id_pool(), component("requester-1"), component("responder-1")),
        (id_pool(), component("requester-2"), component("responder-2")),
    ];
    let mut group = criterion.benchmark_group("tracker/two_threads");
    group.throughput(Throughput::Elements(2));
    group.bench_function("register_complete/excluding_id_generation", |bench| {
        bench.iter_custom(|iters| {
            let start = Barrier::new(3);
            std::thread::scope(|scope| {
                for (ids, a, b) in &pools {
                    let (tracker, start) = (&tracker, &start);
                    scope.spawn(move || {
                        start.wait();
                        for i in 0..iters {
                            let id = &ids[i as usize % POOL];
                            let _ = black_box(tracker.register_with_id(id, a.clone(), b.clone(), TIMEOUT_MS));
                            black_box(tracker.complete(id));
                        }
                    });
                }
                start.wait();
                let began = Instant::now();
                // The scope joins both threads before returning.
                began
            })
            .elapsed()
        });
    });
    group.finish();
    assert!(tracker.stats().balanced());
}

/// Runs [`measure_memory`] in a child process per owner type and prints its
/// report.
fn report_memory() {
    let Ok(exe) = std::env::current_exe() else {
        println!("memory: cannot find the bench executable; skipped");
        return;
    };
    for owner in ["component-id", "arc-owner"] {
        let output = Command::new(&exe).env(MEMORY_CHILD_ENV, owner).env("MALLOC_MMAP_THRESHOLD_", "131072").output();
        match output {
            Ok(output) if output.status.success() => print!("{}", String::from_utf8_lossy(&output.stdout)),
            Ok(output) => println!("memory ({owner}): child failed: {}", String::from_utf8_lossy(&output.stderr)),
            Err(error) => println!("memory ({owner}): cannot run child: {error}"),
        }
    }
}

fn measure_memory(owner: &str) {
    let target = component("responder");
    match owner {
        "component-id" => {
            let owners: Vec<ComponentId> = (0..1_000).map(|i| component(&format!("requester-{i}"))).collect();
            fill_and_report("O = ComponentId", &owners, &target);
        }
        _ => {
            let owners: Vec<ActorRef> =
                (0..1_000).map(|i| ActorRef(Arc::new(Actor { id: component(&format!("requester-{i}")) }))).collect();
            fill_and_report("O = ActorRef(Arc<Actor>), 8 bytes", &owners, &target);
        }
    }
}

fn fill_and_report<O: RequestOwner + Clone>(label: &str, owners: &[O], target: &ComponentId) {
    let tracker = PendingRequests::<O>::new(MonotonicClock::new());
    // Initialise the id generator's thread-local state before the baseline.
    black_box(CorrelationId::generate());
    let before = resident_bytes();
    for i in 0..PENDING {
        black_box(tracker.register(owners[i % owners.len()].clone(), target.clone(), 300_000));
    }
    let after = resident_bytes();
    assert_eq!(tracker.pending_len(), PENDING);
    match (before, after) {
        (Some(before), Some(after)) => println!(
            "bytes per pending request: {} ({label}; VmRSS grew {} bytes for {PENDING} pending)",
            after.saturating_sub(before) / PENDING as u64,
            after.saturating_sub(before),
        ),
        _ => println!("bytes per pending request: unknown ({label}; no /proc/self/status)"),
    }
    black_box(&tracker);
}

/// `VmRSS` of this process, in bytes.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
