//! The execution model, with components written the way users write them
//! (plain Rust, wit-bindgen, `wasm32-wasip2`: `tests/guests/behaviour`) and
//! the WASI fixture, in a running system: output reaches the host log,
//! panics are crashes the supervisor repairs, sleeps count against the time
//! budget, spinning guests do not hold up anyone else, host panics are
//! supervised, and WASI grants only what the manifest lists; and the same
//! on shards (`SystemBuilder::shards`), where each actor runs on the shard
//! thread of its placement group.

use std::sync::Arc;

use wasm_core::RequestError;
use wasm_messaging::{AuditEvent, AuditRecord, AuditSink};
use wasm_runtime::componentize_wat_with_packages;
use wasm_system::{System, SystemEvent};
use wasm_tests::{Harness, REQUESTER, cmd_send, compiled, engine, host_log, manifest, raw};

/// The Rust test guest (see its crate docs for the commands it takes).
const GUEST: &str = "rust:guest-behaviour";

/// Budgets of a guest that spins until its 5 s time budget ends it.
const SPINNER: &str = "[limits]\nfuel_per_call = 100000000000000\ntime_per_call_ms = 5000";

fn crashed(event: &SystemEvent, id: &str) -> Option<String> {
    match event {
        SystemEvent::Crashed { component, reason } if component.as_str() == id => Some(reason.clone()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_rust_guest_println_and_eprintln_reach_the_host_log_with_the_component_id() {
    let log = host_log();
    let h = Harness::start(&[("printer-1", GUEST, "")]).await;
    assert_eq!(h.ask("printer-1", raw(b"print:hello from rust")).await, Ok(raw(b"printed")));
    let stdout = log.wait_for_line(&["component=printer-1", "hello from rust"]).await;
    assert!(stdout.contains("INFO") && stdout.contains("stream=\"stdout\""), "{stdout}");
    let stderr = log.wait_for_line(&["component=printer-1", "hello from rust (stderr)"]).await;
    assert!(stderr.contains("WARN") && stderr.contains("stream=\"stderr\""), "{stderr}");
    assert_eq!(log.lines_with(&["component=printer-1", "hello from rust"]).len(), 2, "one log line per guest line");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_a_flooding_guest_is_rate_limited_in_the_host_log() {
    let log = host_log();
    let h = Harness::start(&[("flooder-1", GUEST, "")]).await;
    // 5,000 lines in one call: the default limit lets a burst of 1,000 through.
    assert_eq!(h.ask("flooder-1", raw(b"flood:5000")).await, Ok(raw(b"flooded")));
    let logged = log.lines_with(&["component=flooder-1", "flood line"]).len();
    assert!((1_000..5_000).contains(&logged), "a burst is logged, the flood is not: {logged} lines");
    assert_eq!(h.ask("flooder-1", raw(b"print:after the flood")).await, Ok(raw(b"printed")));
    let _ = h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_rust_guest_panic_is_target_failed_and_a_restarted_instance_serves_the_next() {
    let log = host_log();
    let mut h = Harness::start(&[("panicker-1", GUEST, "")]).await;
    match h.ask("panicker-1", raw(b"panic:the guest gave up")).await {
        Err(RequestError::TargetFailed(reason)) => {
            assert!(reason.contains("panicker-1") && reason.contains("unreachable"), "{reason}");
        }
        other => panic!("expected target-failed, got {other:?}"),
    }
    let message = log.wait_for_line(&["component=panicker-1", "the guest gave up"]).await;
    assert!(message.contains("WARN") && message.contains("stderr"), "the panic message is logged: {message}");
    h.wait_for("the crash", |e| crashed(e, "panicker-1")).await;
    h.wait_for("the restart", |e| matches!(e, SystemEvent::Restarted { .. }).then_some(())).await;
    assert_eq!(h.ask("panicker-1", raw(b"echo")).await, Ok(raw(b"echo")), "the new instance serves");
    let stats = h.finish().await;
    assert_eq!((stats.dead_lettered, stats.requests.failed), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_rust_guest_sleeps_and_reads_clocks_and_sleep_counts_against_its_time_budget() {
    let mut h = Harness::start(&[("sleeper-1", GUEST, "[limits]\ntime_per_call_ms = 300")]).await;
    assert_eq!(h.ask("sleeper-1", raw(b"sleep:10")).await, Ok(raw(b"slept 10")));
    let seconds = h.ask("sleeper-1", raw(b"clock")).await.expect("clocks work");
    let seconds: u64 = std::str::from_utf8(&seconds[1..]).expect("text").parse().expect("a number");
    assert!(seconds > 1_600_000_000, "the wall clock is the host's: {seconds}");
    match h.ask("sleeper-1", raw(b"sleep:600000")).await {
        Err(RequestError::TargetFailed(reason)) => assert!(reason.contains("time budget of 300 ms"), "{reason}"),
        other => panic!("expected the time budget to end the sleep, got {other:?}"),
    }
    h.wait_for("the crash", |e| crashed(e, "sleeper-1")).await;
    assert_eq!(h.ask("sleeper-1", raw(b"echo")).await, Ok(raw(b"echo")), "the new instance serves");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_a_100ms_timeout_and_an_echo_round_trip_complete_while_two_guests_spin_on_5s_budgets() {
    let log = host_log();
    let mut h = Harness::start(&[
        ("spinner-a", GUEST, SPINNER),
        ("spinner-b", GUEST, SPINNER),
        ("requester", "requester", REQUESTER),
        ("sleepy", GUEST, ""),
        ("echo", "echo", ""),
    ])
    .await;
    h.system.try_send("spinner-a", raw(b"spin")).expect("queued");
    h.system.try_send("spinner-b", raw(b"spin")).expect("queued");
    log.wait_for_line(&["component=spinner-a", "spinning"]).await;
    log.wait_for_line(&["component=spinner-b", "spinning"]).await;
    // Both spinners now run a call that only their 5 s budget ends, on a
    // runtime with 2 worker threads.
    assert_eq!(h.ask("echo", raw(b"ping")).await, Ok(raw(b"ping")), "an idle component answers");
    let id = h.request_via("requester", 100, "sleepy", &raw(b"sleep:2000")).await;
    assert_eq!(h.callback("requester", id).await, Err(RequestError::Timeout));
    let crashes: Vec<String> =
        h.take_events().iter().filter_map(|e| crashed(e, "spinner-a").or(crashed(e, "spinner-b"))).collect();
    assert!(crashes.is_empty(), "the timeout and the echo came while both spinners still ran: {crashes:?}");
    for spinner in ["spinner-a", "spinner-b"] {
        let reason = h.wait_for("the spinner's time budget", |e| crashed(e, spinner)).await;
        assert!(reason.contains("time budget of 5000 ms"), "{reason}");
    }
    h.settle().await;
    let stats = h.finish().await;
    assert_eq!(stats.requests.orphaned, 1, "sleepy's late response is dropped");
}

/// An audit sink that panics on refusals: a host-side panic in the middle
/// of a guest's host call.
#[derive(Debug)]
struct PanickingAudit;

impl AuditSink for PanickingAudit {
    fn record(&self, record: AuditRecord) {
        assert!(record.event != AuditEvent::Refused, "the audit sink failed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_a_host_panic_while_handling_is_a_crash_with_target_failed_and_a_restart() {
    let mut h = Harness::start_audited(&[("requester", "requester", "")], Arc::new(PanickingAudit)).await;
    // No capability: the send is refused and auditing the refusal panics.
    match h.ask("requester", cmd_send(1, "nobody", &raw(b"x"))).await {
        Err(RequestError::TargetFailed(reason)) => {
            assert!(reason.contains("host panic") && reason.contains("the audit sink failed"), "{reason}");
        }
        other => panic!("expected target-failed, got {other:?}"),
    }
    let reason = h.wait_for("the crash", |e| crashed(e, "requester")).await;
    assert!(reason.contains("host panic"), "{reason}");
    h.wait_for("the restart", |e| matches!(e, SystemEvent::Restarted { .. }).then_some(())).await;
    assert_eq!(h.ask("requester", raw(b"hello")).await, Ok(raw(b"hello")), "the new instance serves");
    let stats = h.finish().await;
    assert_eq!((stats.dead_lettered, stats.requests.failed), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_rust_guest_environment_files_and_network_are_denied_unless_granted() {
    let dir = std::env::temp_dir().join(format!("wasi-grant-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("note.txt"), "granted text").expect("file");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let other = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let (port, other_port) = (listener.local_addr().expect("addr").port(), other.local_addr().expect("addr").port());
    let grants = format!(
        "[wasi]\nenv = {{ GREETING = \"hi\" }}\ndirs = [{{ host = {:?}, guest = \"/data\" }}]\nnetwork = [\"127.0.0.1:{port}\"]",
        dir.display().to_string()
    );
    let h = Harness::start(&[("denied-1", GUEST, ""), ("granted-1", GUEST, &grants)]).await;
    let code = |result: Result<Vec<u8>, wasm_core::ComponentError>| result.map_err(|e| e.code);

    assert_eq!(code(h.command("denied-1", raw(b"env:GREETING")).await), Err(2));
    assert_eq!(code(h.command("denied-1", raw(b"env:PATH")).await), Err(2), "nothing is inherited");
    assert_eq!(code(h.command("granted-1", raw(b"env:GREETING")).await), Ok(raw(b"hi")));

    assert_eq!(code(h.command("denied-1", raw(b"read:/data/note.txt")).await), Err(3));
    assert_eq!(code(h.command("granted-1", raw(b"read:/data/note.txt")).await), Ok(raw(b"granted text")));
    assert_eq!(code(h.command("granted-1", raw(b"read:/etc/hostname")).await), Err(3), "only the grant");

    let connect = |port: u16| raw(format!("connect:127.0.0.1:{port}").as_bytes());
    assert_eq!(code(h.command("denied-1", connect(port)).await), Err(4));
    assert_eq!(h.command("granted-1", connect(port)).await, Ok(raw(b"connected")));
    assert_eq!(code(h.command("granted-1", connect(other_port)).await), Err(4), "only the granted address");
    h.finish().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_the_wasi_logging_fixture_writes_to_the_host_log_inside_a_system() {
    let log = host_log();
    let fixture = |name: &str| {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/wasi").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let component = componentize_wat_with_packages(
        "logging.wat",
        &fixture("logging.wat"),
        &[&fixture("io.wit"), &fixture("cli.wit"), wasm_runtime::WIT, &fixture("logging-world.wit")],
        "logging-component",
    )
    .expect("componentizes against a world with WASI imports");
    let compiled = engine().load("logging", &component).expect("the engine links WASI preview 2");
    let builder = System::builder().engine(engine()).compiled(manifest("logger-7", "logging", ""), compiled);
    let h = Harness::from_builder(builder).await;
    assert_eq!(h.ask("logger-7", raw(b"hello from the guest")).await, Ok(raw(b"hello from the guest")));
    assert_eq!(h.ask("logger-7", raw(b"e-rror on stderr")).await, Ok(raw(b"e-rror on stderr")));
    let stdout = log.wait_for_line(&["component=logger-7", "hello from the guest"]).await;
    assert!(stdout.contains("INFO") && stdout.contains("stream=\"stdout\""), "{stdout}");
    let stderr = log.wait_for_line(&["component=logger-7", "-rror on stderr"]).await;
    assert!(stderr.contains("WARN") && stderr.contains("stream=\"stderr\""), "{stderr}");
    h.finish().await;
}

/// The names of the threads named `wasm-shard-<k>` in this process, and of
/// the epoch tickers of the shards' own engines (`wasm-epoch-sib`), from
/// `/proc/self/task/*/comm`. Only one test of this binary starts shards, so
/// the count is that test's alone.
fn shard_threads() -> Vec<String> {
    let tasks = std::fs::read_dir("/proc/self/task").expect("procfs");
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| name.starts_with("wasm-shard-") || name == "wasm-epoch-sib")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_on_shards_a_group_runs_on_one_shard_thread_spinners_take_turns_and_shutdown_ends_the_threads() {
    let log = host_log();
    let left = "\n[placement]\ngroup = \"left\"";
    let right = "\n[placement]\ngroup = \"right\"";
    let components = [
        ("printer-a", GUEST, left.to_owned()),
        ("spinner-s", GUEST, format!("{SPINNER}{left}")),
        ("echo-s", "echo", left.to_owned()),
        ("printer-b", GUEST, left.to_owned()),
        ("printer-c", GUEST, right.to_owned()),
        ("requester-s", "requester", format!("{REQUESTER}{right}")),
    ];
    let mut builder = System::builder().engine(engine()).shards(2);
    for (id, name, extra) in &components {
        builder = builder.compiled(manifest(id, name, extra), compiled(name));
    }
    let mut h = Harness::from_builder(builder).await;
    assert_eq!(h.system.shard_count(), 2);
    let shard = |id: &str| h.system.shard_of(id).unwrap_or_else(|| panic!("{id} runs on a shard"));
    let (left_shard, right_shard) = (shard("printer-a"), shard("printer-c"));
    assert_eq!((left_shard, right_shard), (0, 1), "the two groups get a shard each, in turn");
    for id in ["spinner-s", "echo-s", "printer-b"] {
        assert_eq!(shard(id), left_shard, "{id} is in group left");
    }
    assert_eq!(shard("requester-s"), right_shard);

    // Each guest runs on its shard's thread: its output is logged there.
    for (id, on) in [("printer-a", left_shard), ("printer-c", right_shard)] {
        assert_eq!(h.ask(id, raw(format!("print:hello from {id}").as_bytes())).await, Ok(raw(b"printed")));
        let line = log.wait_for_line(&[&format!("component={id}"), &format!("hello from {id}")]).await;
        assert!(line.contains(&format!("wasm-shard-{on}")), "{id} ran on shard {on}: {line}");
    }

    // A guest that computes yields every epoch tick: the actors that share
    // its shard keep answering, and requests cross shards.
    h.system.try_send("spinner-s", raw(b"spin")).expect("queued");
    log.wait_for_line(&["component=spinner-s", "spinning"]).await;
    assert_eq!(h.ask("echo-s", raw(b"ping")).await, Ok(raw(b"ping")), "the spinner's shard mate answers");
    assert_eq!(h.ask("printer-b", raw(b"print:while it spins")).await, Ok(raw(b"printed")));
    let id = h.request_via("requester-s", 5_000, "echo-s", &raw(b"across")).await;
    assert_eq!(h.callback("requester-s", id).await, Ok(raw(b"across")), "a request from the other shard");
    let crashes: Vec<String> = h.take_events().iter().filter_map(|e| crashed(e, "spinner-s")).collect();
    assert!(crashes.is_empty(), "all of that came while the spinner still ran: {crashes:?}");

    // Its budget ends the call; the supervisor restarts it on its shard.
    let reason = h.wait_for("the spinner's time budget", |e| crashed(e, "spinner-s")).await;
    assert!(reason.contains("time budget of 5000 ms"), "{reason}");
    assert_eq!(h.ask("spinner-s", raw(b"print:restarted")).await, Ok(raw(b"printed")));
    let line = log.wait_for_line(&["component=spinner-s", "restarted"]).await;
    assert!(line.contains(&format!("wasm-shard-{left_shard}")), "restarted on its shard: {line}");

    // A component added while the system runs joins its group's shard, runs
    // there, and stops there.
    let added = h
        .system
        .add(manifest("printer-d", GUEST, right), wasm_system::ComponentSource::Compiled(compiled(GUEST)))
        .await
        .expect("added while running");
    assert_eq!(h.system.shard_of("printer-d"), Some(right_shard));
    assert_eq!(h.ask("printer-d", raw(b"print:hello from printer-d")).await, Ok(raw(b"printed")));
    let line = log.wait_for_line(&["component=printer-d", "hello from printer-d"]).await;
    assert!(line.contains(&format!("wasm-shard-{right_shard}")), "added on its group's shard: {line}");
    h.system.stop_component(added.id().as_str()).await.expect("stops");
    assert!(h.system.component("printer-d").is_err(), "stopped");
    assert_eq!(h.system.shard_of("printer-d"), None, "a stopped component has no shard");

    // A crash on the other shard, whose engine runs a copy of the code (see
    // `shards.rs`): the supervisor makes the new instance there, from that
    // copy, and it serves.
    match h.ask("printer-c", raw(b"panic:on the right shard")).await {
        Err(RequestError::TargetFailed(reason)) => assert!(reason.contains("printer-c"), "{reason}"),
        other => panic!("expected target-failed, got {other:?}"),
    }
    let restarted = |e: &SystemEvent| match e {
        SystemEvent::Restarted { component, .. } if component.as_str() == "printer-c" => Some(()),
        _ => None,
    };
    h.wait_for("the restart on the right shard", restarted).await;
    assert_eq!(h.ask("printer-c", raw(b"print:restarted right")).await, Ok(raw(b"printed")));
    let line = log.wait_for_line(&["component=printer-c", "restarted right"]).await;
    assert!(line.contains(&format!("wasm-shard-{right_shard}")), "restarted on its shard: {line}");

    let running = shard_threads();
    assert!(running.iter().filter(|name| name.starts_with("wasm-shard-")).count() >= 2, "the shards run: {running:?}");
    assert_eq!(
        running.iter().filter(|name| *name == "wasm-epoch-sib").count(),
        1,
        "the second shard's engine has its ticker thread: {running:?}"
    );
    h.settle().await;
    let stats = h.finish().await;
    assert_eq!(stats.dead_lettered, 2, "the spinner's message and the panicking request: {stats:?}");
    // Every actor has stopped, so each shard's thread ends, and so does
    // the ticker of the second shard's engine.
    let deadline = std::time::Instant::now() + wasm_tests::BOUND;
    while !shard_threads().is_empty() {
        assert!(std::time::Instant::now() < deadline, "shard threads left: {:?}", shard_threads());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_more_shards_than_the_cap_are_refused_before_any_thread_starts() {
    let started = System::builder()
        .engine(engine())
        .shards(257)
        .compiled(manifest("capped", "echo", ""), compiled("echo"))
        .start()
        .await;
    match started {
        Err(wasm_system::SystemError::Shards(error)) => {
            assert!(error.to_string().contains("257 shards asked for; at most 256"), "{error}");
        }
        other => panic!("expected the shard cap, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_a_placement_group_without_a_name_is_a_manifest_error() {
    for (group, problem) in [("", "needs a name"), (&*"g".repeat(129), "129 bytes; at most 128")] {
        let extra = format!("[placement]\ngroup = \"{group}\"");
        let started = System::builder()
            .engine(engine())
            .compiled(manifest("grouped", "echo", &extra), compiled("echo"))
            .start()
            .await;
        match started {
            Err(wasm_system::SystemError::Manifest(error)) => {
                let text = error.to_string();
                assert!(text.contains("placement.group") && text.contains(problem), "{text}");
            }
            other => panic!("expected a manifest error, got {other:?}"),
        }
    }
}
