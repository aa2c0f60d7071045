//! Observability: per-component counts, the metrics they publish
//! (validated by Prometheus's own `promtool`), and handler spans.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use wasm_core::{MessagingError, RequestError};
use wasm_messaging::DeadLetterCause;
use wasm_system::metrics::{HANDLER_DURATION, HANDLER_DURATION_BUCKETS, REQUEST_DURATION};
use wasm_system::{ComponentStats, System, SystemEvent};
use wasm_tests::{Harness, RecordingAudit, cmd_send, compiled, engine, manifest, raw};

/// The components of these tests: an echo, a handler that always errs, a
/// requester allowed to message and ask `echo` only, a component that
/// traps on `!` (one restart allowed), and one that takes its messages in
/// batches.
const COMPONENTS: [(&str, &str, &str); 5] = [
    ("echo", "echo", ""),
    ("rejecting", "rejecting", ""),
    ("requester", "requester", "[capabilities]\nsend = [\"echo\"]\nrequest = true"),
    ("trapping", "trapping", "[restart]\nbackoff_ms = 1"),
    ("batching", "batching", ""),
];

/// Drives the same traffic through `h` and returns each component's counts.
async fn traffic(h: &mut Harness) -> Vec<(String, ComponentStats)> {
    for _ in 0..3 {
        h.system.try_send("echo", raw(b"m")).expect("accepted");
        h.system.try_send("batching", raw(b"m")).expect("accepted");
    }
    for _ in 0..2 {
        assert_eq!(h.ask("echo", raw(b"q")).await, Ok(raw(b"q")));
    }
    assert!(matches!(h.ask("rejecting", raw(b"x")).await, Err(RequestError::HandlerError(e)) if e.code == 42));
    // Refused at the requester (permission-denied), which then errs.
    h.command("requester", cmd_send(1, "payroll", &raw(b"pay"))).await.expect_err("no capability");
    h.command("requester", cmd_send(2, "echo", &raw(b"hi"))).await.expect("two sends");
    let id = h.request_via("requester", 1_000, "echo", &raw(b"r")).await;
    assert_eq!(h.callback("requester", id).await, Ok(raw(b"r")));
    h.system.try_send("trapping", raw(b"!")).expect("accepted");
    h.wait_for("the restart", |e| matches!(e, SystemEvent::Restarted { .. }).then_some(())).await;
    let refused = h.system.try_send("nobody", raw(b"?")).expect_err("no such component");
    assert_eq!(refused.error(), &MessagingError::TargetNotFound("nobody".into()));
    h.settle().await;
    h.system.component_stats().into_iter().map(|(id, s)| (id.to_string(), s)).collect()
}

fn stats_of<'a>(all: &'a [(String, ComponentStats)], id: &str) -> &'a ComponentStats {
    &all.iter().find(|(c, _)| c == id).unwrap_or_else(|| panic!("{id} in {all:?}")).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observability_each_component_counts_what_it_accepted_handled_failed_and_was_refused() {
    let mut h = Harness::start(&COMPONENTS).await;
    let all = traffic(&mut h).await;
    let echo = stats_of(&all, "echo");
    // 3 + 2 messages (host, requester), 2 + 1 requests (host, requester).
    assert_eq!((echo.messages_accepted, echo.requests_accepted, echo.handled), (5, 3, 8), "{echo:?}");
    assert_eq!((echo.handler_errors, echo.completed(), echo.dead_letters_total()), (0, 8, 0), "{echo:?}");
    let rejecting = stats_of(&all, "rejecting");
    assert_eq!((rejecting.handled, rejecting.handler_errors, rejecting.completed()), (1, 1, 0), "{rejecting:?}");
    let requester = stats_of(&all, "requester");
    // Three commands (one refused inside, so its handler errs) and one callback.
    assert_eq!((requester.requests_accepted, requester.handled, requester.handler_errors), (3, 3, 1), "{requester:?}");
    assert_eq!(requester.callbacks_handled, 1, "{requester:?}");
    let denied = MessagingError::PermissionDenied(String::new()).kind_index();
    assert_eq!((requester.refused[denied], requester.refused_total()), (1, 1), "{requester:?}");
    let trapping = stats_of(&all, "trapping");
    assert_eq!((trapping.crashes, trapping.restarts), (1, 1), "{trapping:?}");
    assert_eq!(trapping.dead_letters[DeadLetterCause::TargetFailed.index()], 1, "{trapping:?}");
    assert_eq!((trapping.handled, trapping.dead_letters_total()), (0, 1), "{trapping:?}");
    let batching = stats_of(&all, "batching");
    assert_eq!(batching.handled, 3, "{batching:?}");
    assert!((1..=3).contains(&batching.batches), "its messages came in batches: {batching:?}");
    assert_eq!(echo.batches, 0, "echo.wat has no batch-lifecycle: {echo:?}");
    // The components' parts add up to the router's totals.
    let totals = h.system.stats();
    let sum = |f: fn(&ComponentStats) -> u64| all.iter().map(|(_, s)| f(s)).sum::<u64>();
    assert_eq!(sum(|s| s.messages_accepted), totals.messages_accepted);
    assert_eq!(sum(|s| s.requests_accepted), totals.requests_accepted);
    assert_eq!(sum(|s| s.handled), totals.handled);
    assert_eq!(sum(|s| s.callbacks_handled), totals.callbacks_handled);
    assert_eq!(sum(|s| s.dead_letters_total()), totals.dead_lettered);
    let not_found = MessagingError::TargetNotFound(String::new()).kind_index();
    assert_eq!(totals.refused_host[not_found], 1, "{totals:?}");
    assert_eq!(sum(ComponentStats::refused_total) + totals.refused_host.iter().sum::<u64>(), totals.refused_total());
    let report = h.system.shutdown(Duration::from_secs(5)).await;
    let final_echo =
        stats_of(&report.components.iter().map(|(id, s)| (id.to_string(), *s)).collect::<Vec<_>>(), "echo").handled;
    assert_eq!(final_echo, 8, "the shutdown report keeps each component's counts");
}

/// The process's Prometheus recorder (one per test binary; only this
/// module's tests turn metrics on).
fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(HANDLER_DURATION.into()),
                &HANDLER_DURATION_BUCKETS,
            )
            .expect("buckets")
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(REQUEST_DURATION.into()),
                &HANDLER_DURATION_BUCKETS,
            )
            .expect("buckets")
            .install_recorder()
            .expect("the one recorder of this test binary")
    })
}

/// The value of the sample whose line starts with `series` (name and labels
/// exactly as rendered), or `None`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observability_metrics_pass_promtool_and_equal_the_hosts_counts() {
    let prometheus = prometheus();
    let audit = Arc::new(RecordingAudit::default());
    let mut builder = System::builder().engine(engine()).audit(audit).metrics_interval(Duration::from_millis(20));
    for (id, name, extra) in COMPONENTS {
        builder = builder.compiled(manifest(id, name, extra), compiled(name));
    }
    let mut h = Harness::from_builder(builder).await;
    let all = traffic(&mut h).await;
    h.system.record_metrics();
    let text = prometheus.render();

    // Prometheus's own validator (format and naming lints).
    let file = std::env::temp_dir().join(format!("airssys-metrics-{}.txt", std::process::id()));
    std::fs::write(&file, &text).expect("write the scrape");
    let checked = std::process::Command::new("promtool")
        .arg("check")
        .arg("metrics")
        .stdin(std::fs::File::open(&file).expect("open the scrape"))
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool not runnable ({e}): install Debian's `prometheus` package (.ci/run does)")
        });
    if std::env::var_os("KEEP_SCRAPE").is_none() {
        let _ = std::fs::remove_file(&file);
    }
    assert!(
        checked.status.success(),
        "promtool check metrics failed:\n{}{}\n--- scrape ---\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // The values are the host's counts.
    for (id, s) in &all {
        let value = |name: &str| sample(&text, &format!("{name}{{component=\"{id}\"}}"));
        #[allow(clippy::cast_precision_loss, reason = "small counts")]
        let expect = |n: u64| Some(n as f64);
        assert_eq!(value("airssys_messages_accepted_total"), expect(s.messages_accepted), "{id}\n{text}");
        assert_eq!(value("airssys_requests_accepted_total"), expect(s.requests_accepted), "{id}");
        assert_eq!(value("airssys_handled_total"), expect(s.handled), "{id}");
        assert_eq!(value("airssys_handler_errors_total"), expect(s.handler_errors), "{id}");
        assert_eq!(value("airssys_batches_total"), expect(s.batches), "{id}");
        assert_eq!(value("airssys_callbacks_handled_total"), expect(s.callbacks_handled), "{id}");
        assert_eq!(value("airssys_crashes_total"), expect(s.crashes), "{id}");
        assert_eq!(value("airssys_restarts_total"), expect(s.restarts), "{id}");
        assert_eq!(value("airssys_mailbox_depth"), Some(0.0), "{id}");
        // One duration per handler that returned or trapped.
        let calls = s.handled + s.callbacks_handled + s.crashes;
        assert_eq!(value(&format!("{HANDLER_DURATION}_count")), expect(calls), "{id}");
        // One round trip per callback handled: the requests this component
        // sent, timed from their registration (none for the others).
        let round_trips = value(&format!("{REQUEST_DURATION}_count")).unwrap_or(0.0);
        assert_eq!(Some(round_trips), expect(s.callbacks_handled), "{id}\n{text}");
        if s.callbacks_handled > 0 {
            let total = value(&format!("{REQUEST_DURATION}_sum")).expect("a sum beside the count");
            assert!(total > 0.0, "{id}: a round trip takes time\n{text}");
        }
    }
    let series = |name: &str, labels: &str| sample(&text, &format!("{name}{{{labels}}}"));
    assert_eq!(series("airssys_refused_total", "component=\"requester\",kind=\"permission-denied\""), Some(1.0));
    assert_eq!(series("airssys_refused_total", "component=\"host\",kind=\"target-not-found\""), Some(1.0));
    assert_eq!(series("airssys_dead_letters_total", "component=\"trapping\",reason=\"target-failed\""), Some(1.0));
    let requests = h.system.stats().requests;
    #[allow(clippy::cast_precision_loss, reason = "small counts")]
    let completed = requests.completed as f64;
    assert_eq!(series("airssys_requests_ended_total", "outcome=\"completed\""), Some(completed), "{text}");
    assert_eq!(sample(&text, "airssys_tracker_pending_requests"), Some(0.0));
    h.finish().await;
}
