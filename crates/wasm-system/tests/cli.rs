//! The `wasm-system` binary, driven as a user drives it: `run` on the
//! examples of `examples/` (checking the printed summary and the audit log)
//! and `check` on good and broken manifests (checking that the error names
//! the file, the key or the export at fault).
//!
//! Every command runs with the workspace root as its working directory, so
//! paths look like the ones in the examples' READMEs. The examples are Rust
//! crates that `run --build` compiles; those builds use the target directory
//! `target/guests` (as the end-to-end tests' guests do), since the `cargo test`
//! running these tests holds the lock of the default one. Temporary files go to a
//! fresh directory under [`std::env::temp_dir`], removed when the test passes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// The workspace root (two levels above this crate).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The target directory of guest builds started by the binary.
fn guest_target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from).join("guests")
}

/// `wasm-system` with the workspace root as working directory and guest
/// builds going to [`guest_target_dir`].
fn wasm_system_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasm-system"));
    command.current_dir(workspace_root()).env("CARGO_TARGET_DIR", guest_target_dir());
    command
}

/// Runs `wasm-system args...` in the workspace root and waits for it.
fn wasm_system(args: &[&str]) -> Output {
    wasm_system_command().args(args).output().expect("running the wasm-system binary")
}

/// Stdout and stderr of a finished command, for assertions and messages.
fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Runs `wasm-system args...`, requires exit status 0 and returns stdout.
fn succeed(args: &[&str]) -> String {
    let output = wasm_system(args);
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "wasm-system {args:?} failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    stdout
}

/// Runs `wasm-system args...`, requires a non-zero exit status and returns
/// stdout and stderr.
fn fail(args: &[&str]) -> (String, String) {
    let output = wasm_system(args);
    let (stdout, stderr) = text(&output);
    assert!(!output.status.success(), "wasm-system {args:?} succeeded\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert_ne!(output.status.code(), None, "wasm-system {args:?} was killed by a signal\nstderr:\n{stderr}");
    (stdout, stderr)
}

/// A fresh, empty directory for one test's files.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("wasm-system-cli-{test}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating a temporary directory");
        Self(dir)
    }

    /// Writes `contents` to `name` in the directory and returns its path.
    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Keep the files of a failed test for inspection.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A path as a `&str` argument (temporary paths are UTF-8 on every CI host).
fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// The summary line that starts with `label` (`messages`, `requests`, ...).
fn summary_line<'a>(summary: &'a str, label: &str) -> &'a str {
    summary
        .lines()
        .find(|line| line.split_whitespace().next() == Some(label))
        .unwrap_or_else(|| panic!("no `{label}` line in the summary:\n{summary}"))
}

/// The number after the words `name` in a summary line: `count(line,
/// "timed out")` reads `... timed out    1 ...`.
fn count(line: &str, name: &str) -> u64 {
    let words: Vec<&str> = line.split_whitespace().collect();
    let name: Vec<&str> = name.split_whitespace().collect();
    let at = words
        .windows(name.len())
        .position(|window| window == name.as_slice())
        .unwrap_or_else(|| panic!("no `{}` in summary line {line:?}", name.join(" ")));
    let value = words.get(at + name.len()).unwrap_or_else(|| panic!("no value after `{}` in {line:?}", name.join(" ")));
    value.parse().unwrap_or_else(|e| panic!("`{}` is {value:?} in {line:?}: {e}", name.join(" ")))
}

/// Asserts the summary's last verdict: every message and request accounted
/// for, and the run reached quiescence.
fn assert_balanced(summary: &str) {
    let line = summary_line(summary, "accounting");
    assert_eq!(line.trim(), "accounting balanced", "summary:\n{summary}");
}

const REQUEST_REPLY: &str = "examples/request-reply/app.toml";
const PING_PONG: &str = "examples/ping-pong/app.toml";
const SHOP: &str = "examples/shop/app.toml";

// ---------------------------------------------------------------------------
// run
// ---------------------------------------------------------------------------

#[test]
fn cli_run_request_reply_summary_shows_completed_timed_out_and_cancelled() {
    let summary = succeed(&["run", "--build", REQUEST_REPLY]);
    let requests = summary_line(&summary, "requests");
    assert_eq!(count(requests, "accepted"), 3, "summary:\n{summary}");
    assert!(count(requests, "completed") >= 1, "summary:\n{summary}");
    assert_eq!(count(requests, "handler errors"), 0, "summary:\n{summary}");
    assert_eq!(count(requests, "timed out"), 1, "summary:\n{summary}");
    assert_eq!(count(requests, "cancelled"), 1, "summary:\n{summary}");
    assert_eq!(count(requests, "pending"), 0, "summary:\n{summary}");
    // Every request gets exactly one callback.
    let callbacks = summary_line(&summary, "callbacks");
    assert_eq!(count(callbacks, "queued"), 3, "summary:\n{summary}");
    assert_eq!(count(callbacks, "handled"), 3, "summary:\n{summary}");
    // sleepy's endless loop: trapped by its time budget, dead-lettered,
    // restarted by the supervisor.
    let messages = summary_line(&summary, "messages");
    assert_eq!(count(messages, "dead-lettered"), 1, "summary:\n{summary}");
    let lifecycle = summary_line(&summary, "lifecycle");
    assert_eq!(count(lifecycle, "crashes"), 1, "summary:\n{summary}");
    assert_eq!(count(lifecycle, "restarts"), 1, "summary:\n{summary}");
    assert_eq!(count(summary_line(&summary, "refused"), "refused"), 0, "summary:\n{summary}");
    assert_balanced(&summary);
}

#[test]
fn cli_run_ping_pong_handles_every_message() {
    // 3 injected messages, each starting a rally of 1001 messages
    // (1000, 999, ..., 0): 3 + 3 * 1001.
    const EXPECTED: u64 = 3 + 3 * 1001;
    let summary = succeed(&["run", "--build", PING_PONG]);
    let messages = summary_line(&summary, "messages");
    assert_eq!(count(messages, "accepted"), EXPECTED, "summary:\n{summary}");
    assert_eq!(count(messages, "handled"), EXPECTED, "summary:\n{summary}");
    assert_eq!(count(messages, "dead-lettered"), 0, "summary:\n{summary}");
    assert_eq!(count(summary_line(&summary, "requests"), "accepted"), 0, "summary:\n{summary}");
    assert_eq!(count(summary_line(&summary, "refused"), "refused"), 0, "summary:\n{summary}");
    let lifecycle = summary_line(&summary, "lifecycle");
    assert_eq!(count(lifecycle, "crashes"), 0, "summary:\n{summary}");
    assert_balanced(&summary);
}

#[test]
fn cli_run_writes_the_audit_log() {
    let dir = TempDir::new("audit");
    let log = dir.path("audit.jsonl");
    let summary = succeed(&["run", "--build", REQUEST_REPLY, "--audit-log", arg(&log)]);
    assert_balanced(&summary);
    let text = std::fs::read_to_string(&log).expect("reading the audit log");
    let records: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("audit line {line:?} is not JSON: {e}")))
        .collect();
    assert!(!records.is_empty(), "empty audit log");
    for record in &records {
        let object = record.as_object().unwrap_or_else(|| panic!("audit record {record} is not an object"));
        for key in ["time", "event", "sender", "target", "correlation_id", "outcome", "reason"] {
            assert!(object.contains_key(key), "audit record {record} lacks `{key}`");
        }
    }
    assert_eq!(
        count(summary_line(&summary, "audit"), "written"),
        u64::try_from(records.len()).expect("a record count"),
        "summary:\n{summary}\naudit log:\n{text}"
    );
    // A lifecycle record names its component as sender or target.
    let events_of = |event: &str, component: &str| {
        records.iter().filter(|r| r["event"] == event && (r["sender"] == component || r["target"] == component)).count()
    };
    for component in ["client", "service", "sleepy"] {
        assert_eq!(events_of("start", component), 1, "`start` of {component}, audit log:\n{text}");
    }
    assert_eq!(events_of("crash", "sleepy"), 1, "audit log:\n{text}");
    assert_eq!(events_of("restart", "sleepy"), 1, "audit log:\n{text}");
}

#[test]
fn cli_run_build_shop_example_shows_every_ending_a_crash_and_the_rate_limit() {
    let output = wasm_system(&["run", "--build", SHOP]);
    let (summary, log) = text(&output);
    assert!(output.status.success(), "shop failed ({})\nstdout:\n{summary}\nstderr:\n{log}", output.status);
    // 6 orders and 1 cancel from the shopper; 6 reservations; 3 charges.
    let requests = summary_line(&summary, "requests");
    assert_eq!(count(requests, "accepted"), 16, "summary:\n{summary}");
    assert_eq!(count(requests, "completed"), 13, "summary:\n{summary}");
    assert_eq!(count(requests, "handler errors"), 0, "summary:\n{summary}");
    assert_eq!(count(requests, "timed out"), 1, "the gold order, summary:\n{summary}");
    assert_eq!(count(requests, "cancelled"), 1, "order 3, summary:\n{summary}");
    assert_eq!(count(requests, "failed"), 1, "billing's panic, summary:\n{summary}");
    let lifecycle = summary_line(&summary, "lifecycle");
    assert_eq!((count(lifecycle, "crashes"), count(lifecycle, "restarts")), (1, 1), "summary:\n{summary}");
    let refused = summary_line(&summary, "refused");
    assert!(refused.contains("rate-limited") && count(refused, "refused") >= 10, "summary:\n{summary}");
    assert_balanced(&summary);
    // What the components printed reaches the host log, per component.
    for (component, line) in [
        ("orders", "order 1 confirmed"),
        ("orders", "order 2 failed: inventory: timeout"),
        ("orders", "order 3 failed: cancelled by the customer"),
        ("orders", "order 4 failed: billing: target failed"),
        ("orders", "order 5 failed: out of stock"),
        ("orders", "order 6 confirmed"),
        ("billing", "every item in stock has a price"),
        ("shopper", "views refused by the rate limit"),
    ] {
        assert!(
            log.lines().any(|l| l.contains(line) && l.contains(&format!("component={component}"))),
            "no `{line}` from {component} in the log:\n{log}"
        );
    }
}

#[test]
fn cli_new_scaffolds_a_crate_that_checks_builds_and_runs() {
    let dir = TempDir::new("new");
    let demo = dir.path("demo");
    let created = succeed(&["new", arg(&demo)]);
    assert!(created.contains("created component crate `demo`"), "{created}");
    for file in ["Cargo.toml", "src/lib.rs", "Component.toml", "app.toml", ".cargo/config.toml", ".gitignore"] {
        assert!(demo.join(file).exists(), "{file} missing");
    }
    let lib = std::fs::read_to_string(demo.join("src/lib.rs")).expect("lib.rs");
    assert!(lib.contains("wasm_guest::export!(Demo)") && !lib.contains("wit_bindgen"), "SDK only:\n{lib}");
    // As generated, before any build.
    let checked = succeed(&["check", arg(&demo.join("Component.toml"))]);
    assert!(checked.contains("ok    demo (not built yet"), "{checked}");
    // Build speed only: the workspace's lock file and release profile let the
    // build reuse the dependencies the other guests compiled in the shared
    // target directory. Without them it resolves and compiles its own (about
    // 90 s here), with the same result.
    std::fs::copy(workspace_root().join("Cargo.lock"), demo.join("Cargo.lock")).expect("copying Cargo.lock");
    let output = wasm_system_command()
        .env("CARGO_PROFILE_RELEASE_DEBUG", "line-tables-only")
        .args(["run", "--build", arg(&demo.join("app.toml"))])
        .output()
        .expect("running wasm-system");
    let (summary, log) = text(&output);
    assert!(output.status.success(), "run --build failed ({})\nstdout:\n{summary}\nstderr:\n{log}", output.status);
    assert_eq!(count(summary_line(&summary, "messages"), "handled"), 1, "summary:\n{summary}");
    assert_balanced(&summary);
    assert!(
        log.lines().any(|l| l.contains("hello, world! (from host, greeting number 1)") && l.contains("component=demo")),
        "the greeting in the host log:\n{log}"
    );
    let checked = succeed(&["check", arg(&demo.join("app.toml"))]);
    assert!(checked.contains("ok    demo (") && !checked.contains("not built"), "{checked}");
}

#[test]
fn cli_new_refuses_a_name_that_is_not_a_crate_name_and_an_existing_directory() {
    let dir = TempDir::new("new-bad");
    let (_, stderr) = fail(&["new", arg(&dir.path("Bad.Name"))]);
    assert!(stderr.contains("cannot name a component crate"), "{stderr}");
    std::fs::create_dir_all(dir.path("taken")).expect("mkdir");
    let (_, stderr) = fail(&["new", arg(&dir.path("taken"))]);
    assert!(stderr.contains("already exists"), "{stderr}");
    let (_, stderr) = fail(&["new", arg(&dir.path("nosdk")), "--sdk", arg(&dir.path("nowhere"))]);
    assert!(stderr.contains("the guest SDK (crate wasm-guest) is not at"), "{stderr}");
}

#[test]
fn cli_build_names_the_manifest_of_a_missing_crate() {
    let dir = TempDir::new("build-missing");
    let manifest = dir.write("c.toml", "[component]\nid = \"c\"\nwasm = \"c.wasm\"\nbuild = \"no-such-crate\"\n");
    let (_, stderr) = fail(&["build", arg(&manifest)]);
    assert!(
        stderr.contains("c.toml") && stderr.contains("component.build = \"no-such-crate\" has no Cargo.toml"),
        "{stderr}"
    );
    let (_, stderr) = fail(&["check", arg(&manifest)]);
    assert!(stderr.contains("no-such-crate, which has no Cargo.toml"), "{stderr}");
}

/// The path of fixture `tests/fixtures/<name>`, absolute, for manifests
/// written to a temporary directory.
fn fixture(name: &str) -> String {
    let path = workspace_root().join("tests/fixtures").join(name);
    path.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", path.display())).display().to_string()
}

/// Writes an app of one component `id` (fixture `wat`, extra manifest TOML)
/// with one injected raw message `text`, and returns the app file.
fn one_component_app(dir: &TempDir, id: &str, wat: &str, extra: &str, text: &str) -> PathBuf {
    dir.write(&format!("{id}.toml"), format!("[component]\nid = \"{id}\"\nwasm = {:?}\n{extra}\n", fixture(wat)));
    dir.write("app.toml", format!("components = [\"{id}.toml\"]\n\n[[inject]]\nto = \"{id}\"\ntext = {text:?}\n"))
}

/// Waits for `child` to exit within a generous bound, killing it if it does not.
fn wait_bounded(mut child: Child, what: &str) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("polling the child").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what}: wasm-system did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collecting the output")
}

#[test]
fn cli_run_exits_non_zero_when_a_component_stops_abnormally() {
    let dir = TempDir::new("abnormal");
    let app = one_component_app(&dir, "fragile", "trapping.wat", "[restart]\nmax_restarts = 0", "!");
    let (stdout, stderr) = fail(&["run", arg(&app)]);
    assert!(stderr.contains("stopped abnormally") && stderr.contains("fragile"), "stderr:\n{stderr}");
    assert!(stdout.contains("restart intensity exceeded"), "the summary names the stop:\n{stdout}");
    assert_balanced(&stdout);
}

#[test]
fn cli_run_shutdown_cuts_a_restart_backoff_short() {
    let dir = TempDir::new("backoff");
    let extra = "[restart]\nbackoff_ms = 600000\nmax_backoff_ms = 600000";
    let app = one_component_app(&dir, "fragile", "trapping.wat", extra, "!");
    let child = wasm_system_command()
        .args(["run", arg(&app), "--drain", "1s"])
        .current_dir(workspace_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting wasm-system");
    // A 600 s backoff is pending when the run is quiescent and shuts down.
    let output = wait_bounded(child, "a pending restart backoff");
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(count(summary_line(&stdout, "lifecycle"), "crashes"), 1, "{stdout}");
    assert_balanced(&stdout);
}

#[test]
fn cli_run_sigterm_drains_writes_the_audit_log_and_the_summary() {
    let dir = TempDir::new("sigterm");
    let log = dir.path("audit.jsonl");
    let extra = "[limits]\nfuel_per_call = 100000000000000\ntime_per_call_ms = 600000";
    // The slow fixture loops forever on 0xFFFFFFFF: the run never gets quiescent.
    let app = one_component_app(&dir, "busy", "slow.wat", extra, "\u{FF}\u{FF}\u{FF}\u{FF}");
    let mut child = wasm_system_command()
        .args(["run", arg(&app), "--drain", "1s", "--audit-log", arg(&log)])
        .current_dir(workspace_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting wasm-system");
    // Wait for the component to start (the info log), then send SIGTERM.
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    while !seen.contains("component started") {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).expect("reading stderr") > 0, "exited early:\n{seen}");
        seen.push_str(&line);
    }
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let reader = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        rest
    });
    let output = wait_bounded(child, "SIGTERM");
    let rest = reader.join().expect("stderr reader");
    let (stdout, _) = text(&output);
    assert!(output.status.success(), "stdout:\n{stdout}\nstderr:\n{seen}{rest}");
    assert!(rest.contains("SIGTERM"), "stderr:\n{rest}");
    assert_eq!(count(summary_line(&stdout, "messages"), "dead-lettered"), 1, "the busy call was cut:\n{stdout}");
    assert_balanced(&stdout.replace(" (stopped before quiescence)", ""));
    let audit = std::fs::read_to_string(&log).expect("the audit log was written");
    assert!(audit.lines().any(|l| l.contains("\"event\":\"start\"")), "audit log:\n{audit}");
    assert!(audit.lines().any(|l| l.contains("\"event\":\"stop\"")), "audit log:\n{audit}");
}

// ---------------------------------------------------------------------------
// run: the table, the JSON report, the events file, timed and request injections
// ---------------------------------------------------------------------------

/// The per-component table of a summary: one map per row, from header to
/// cell, keyed by the `component` cell.
fn table(summary: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let cells = |line: &str| -> Vec<String> {
        line.trim().trim_matches('|').split('|').map(|cell| cell.trim().to_owned()).collect()
    };
    let mut lines = summary.lines().filter(|line| line.starts_with('|'));
    let header = cells(lines.next().unwrap_or_else(|| panic!("no table in the summary:\n{summary}")));
    lines
        .filter(|line| !line.starts_with("|-"))
        .map(|line| {
            let row: BTreeMap<String, String> = header.iter().cloned().zip(cells(line)).collect();
            (row["component"].clone(), row)
        })
        .collect()
}

/// The number in column `column` of `component`'s row of the table.
fn cell(table: &BTreeMap<String, BTreeMap<String, String>>, component: &str, column: &str) -> u64 {
    let row = table.get(component).unwrap_or_else(|| panic!("no row for {component} in {table:?}"));
    let value = row.get(column).unwrap_or_else(|| panic!("no column {column:?} in {row:?}"));
    value.parse().unwrap_or_else(|e| panic!("{component}'s {column} is {value:?}: {e}"))
}

/// A JSON number as u64, with the path in the message if it is not one.
fn number(value: &Value, path: &str) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("{path} is not a count: {value}"))
}

/// Asserts that output written for a pipe holds no terminal control: no
/// escape sequence (colours, cursor moves, a progress line) and no carriage
/// return (a redrawn line).
fn assert_plain(what: &str, text: &str) {
    assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{what} holds terminal control codes:\n{text:?}");
    assert!(!text.contains("msg/s"), "{what} holds the progress line:\n{text}");
}

#[test]
fn cli_run_json_report_to_stdout_has_every_component_and_balances() {
    // ping-pong is deterministic: each of the 3 rallies is 1001 messages,
    // pong gets 1000, 998, ..., 0 (501 of them) and ping the 500 odd ones
    // after the host's start message.
    let output = wasm_system(&["run", "--build", PING_PONG, "--json", "-"]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_plain("stdout", &stdout);
    assert_plain("stderr", &stderr);
    // With `--json -` the summary goes to stderr and stdout is the report alone.
    assert_balanced(&stderr);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}"));
    assert_eq!(report["app"], "ping-pong");
    assert_eq!((&report["balanced"], &report["drained"]), (&Value::Bool(true), &Value::Bool(true)), "{report:#}");
    assert!(report["stopped_abnormally"].as_array().is_some_and(Vec::is_empty), "{report:#}");
    let components = report["components"].as_array().expect("components");
    let ids: Vec<&str> = components.iter().map(|c| c["id"].as_str().expect("an id")).collect();
    assert_eq!(ids, ["ping", "pong"]);
    for (component, handled) in [(&components[0], 3 + 3 * 500), (&components[1], 3 * 501)] {
        for key in ["messages_accepted", "handled", "completed"] {
            assert_eq!(number(&component[key], key), handled, "{key} of {component:#}");
        }
        for key in ["requests_accepted", "handler_errors", "callbacks_handled", "dead_letters_total", "refused_total"] {
            assert_eq!(number(&component[key], key), 0, "{key} of {component:#}");
        }
        assert_eq!(
            component["dead_letters"],
            serde_json::json!({"target-failed": 0, "undelivered": 0, "delivery-failed": 0})
        );
        assert_eq!(component["refused"].as_object().map(serde_json::Map::len), Some(9), "every kind: {component:#}");
        assert_eq!((number(&component["mailbox_len"], "mailbox_len"), &component["stopped"]), (0, &Value::Bool(true)));
    }
    let totals = &report["totals"];
    for key in ["messages_accepted", "handled", "dead_lettered", "requests_accepted", "callbacks_handled"] {
        let sum: u64 =
            components.iter().map(|c| number(&c[key.replace("dead_lettered", "dead_letters_total")], key)).sum();
        assert_eq!(number(&totals[key], key), sum, "totals.{key} against the components");
    }
    assert_eq!(number(&totals["messages_accepted"], "messages_accepted"), 3 + 3 * 1001);
    assert_eq!(totals["requests"]["registered"], 0);
    assert_eq!(totals["refused"]["rate-limited"], 0);
    assert_eq!(report["lifecycle"], serde_json::json!({"crashes": 0, "restarts": 0, "stops": 2}));
    assert_eq!((&report["audit"], &report["events_written"]), (&Value::Null, &Value::Null));
}

/// An app of `echo` (echo.wat) and `rejecter` (rejecting.wat, which answers
/// every message with error 42), with the `[[inject]]` entries `injections`.
fn echo_and_rejecter_app(dir: &TempDir, injections: &str) -> PathBuf {
    dir.write("echo.toml", format!("[component]\nid = \"echo\"\nwasm = {:?}\n", fixture("echo.wat")));
    dir.write("rejecter.toml", format!("[component]\nid = \"rejecter\"\nwasm = {:?}\n", fixture("rejecting.wat")));
    dir.write(
        "app.toml",
        format!("components = [\"echo.toml\", \"rejecter.toml\"]\n\n[app]\nname = \"rejections\"\n\n{injections}"),
    )
}

#[test]
fn cli_run_injected_requests_print_their_outcomes_and_handler_errors_count_apart() {
    let dir = TempDir::new("requests");
    let app = echo_and_rejecter_app(
        &dir,
        "[[inject]]\nto = \"echo\"\ntext = \"hello\"\nrequest = true\ntimeout_ms = 10000\n\n\
         [[inject]]\nto = \"rejecter\"\ntext = \"please\"\nrequest = true\n\n\
         [[inject]]\nto = \"rejecter\"\ntext = \"note\"\n",
    );
    let json = dir.path("report.json");
    let output = wasm_system(&["run", arg(&app), "--json", arg(&json)]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_plain("stdout", &stdout);
    assert_plain("stderr", &stderr);
    // One line per injected request, when its outcome arrives.
    let response = stdout.lines().find(|l| l.starts_with("response from echo (")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(response.ends_with("): raw hello"), "{response}");
    let id = &response["response from echo (".len()..][..36];
    assert!(id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'), "a correlation id: {response}");
    assert!(
        stdout.lines().any(|l| l.starts_with("request to rejecter (")
            && l.ends_with(") failed: handler error: component error 42: rejected")),
        "stdout:\n{stdout}"
    );
    // The summary: one request completed with a response, one with a handler error.
    let requests = summary_line(&stdout, "requests");
    assert_eq!((count(requests, "accepted"), count(requests, "completed")), (2, 1), "{stdout}");
    assert_eq!(count(requests, "handler errors"), 1, "{stdout}");
    let handlers = summary_line(&stdout, "handlers");
    assert_eq!((count(handlers, "ok"), count(handlers, "handler errors")), (1, 2), "{stdout}");
    assert_balanced(&stdout);
    // The table: a row per component.
    let table = table(&stdout);
    assert_eq!(table.keys().collect::<Vec<_>>(), ["echo", "rejecter"], "{stdout}");
    for (column, echo, rejecter) in [
        ("accepted", 1, 2),
        ("handled", 1, 2),
        ("completed", 1, 0),
        ("handler errors", 0, 2),
        ("callbacks", 0, 0),
        ("dead letters", 0, 0),
        ("refused", 0, 0),
        ("crashes", 0, 0),
        ("restarts", 0, 0),
    ] {
        assert_eq!(
            (cell(&table, "echo", column), cell(&table, "rejecter", column)),
            (echo, rejecter),
            "{column}:\n{stdout}"
        );
    }
    // The JSON report says the same.
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report")).expect("JSON");
    let totals = &report["totals"];
    assert_eq!(
        (number(&totals["requests"]["completed"], "completed"), number(&totals["request_handler_errors"], "e")),
        (2, 1)
    );
    let rejecter = &report["components"][1];
    assert_eq!(rejecter["id"], "rejecter");
    assert_eq!(
        (number(&rejecter["handler_errors"], "handler_errors"), number(&rejecter["completed"], "completed")),
        (2, 0)
    );
    assert_eq!((number(&rejecter["messages_accepted"], "m"), number(&rejecter["requests_accepted"], "r")), (1, 1));
    assert_eq!(report["balanced"], true);
}

#[test]
fn cli_run_events_file_has_a_line_per_handled_message_and_callback() {
    let dir = TempDir::new("events");
    let events = dir.path("events.jsonl");
    let summary = succeed(&["run", "--build", REQUEST_REPLY, "--events", arg(&events)]);
    assert_balanced(&summary);
    let text = std::fs::read_to_string(&events).expect("the events file");
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("event line {line:?} is not JSON: {e}")))
        .collect();
    assert_eq!(count(summary_line(&summary, "events"), "written"), u64::try_from(lines.len()).expect("a count"));
    for line in &lines {
        let object = line.as_object().unwrap_or_else(|| panic!("{line} is not an object"));
        for key in [
            "event",
            "component",
            "sender",
            "kind",
            "correlation_id",
            "outcome",
            "reason",
            "codec",
            "bytes",
            "preview",
            "response_codec",
            "response_preview",
            "callback_result",
            "trace_id",
        ] {
            assert!(object.contains_key(key), "{line} lacks `{key}`");
        }
    }
    let of = |event: &'static str| lines.iter().filter(move |l| l["event"] == event);
    // The host's "go" to the client.
    assert!(
        of("handled").any(|l| l["component"] == "client"
            && l["sender"] == "host"
            && l["preview"] == "go"
            && l["kind"] == "message"
            && l["codec"] == "raw"),
        "{text}"
    );
    // The client's request to the service, answered: its handled line and
    // the client's callback share the correlation id.
    let hello = of("handled")
        .find(|l| l["component"] == "service" && l["kind"] == "request")
        .unwrap_or_else(|| panic!("no request handled by service:\n{text}"));
    assert_eq!(
        (&hello["sender"], &hello["preview"], &hello["outcome"]),
        (&"client".into(), &"hello".into(), &"ok".into())
    );
    assert_eq!((&hello["response_codec"], &hello["response_preview"]), (&"raw".into(), &"hello".into()));
    let answered = of("callback")
        .find(|l| l["correlation_id"] == hello["correlation_id"])
        .unwrap_or_else(|| panic!("no callback for {}:\n{text}", hello["correlation_id"]));
    assert_eq!(
        (&answered["component"], &answered["outcome"], &answered["preview"]),
        (&"client".into(), &"response".into(), &"hello".into())
    );
    assert_eq!(answered["callback_result"], "ok");
    // The other two endings, the dead letter, the crash and the restart.
    let outcomes: Vec<&Value> = of("callback").map(|l| &l["outcome"]).collect();
    assert!(outcomes.contains(&&"timeout".into()) && outcomes.contains(&&"cancelled".into()), "{text}");
    assert_eq!(of("dead-letter").filter(|l| l["component"] == "sleepy" && l["outcome"] == "target-failed").count(), 1);
    assert_eq!(of("crash").filter(|l| l["component"] == "sleepy").count(), 1, "{text}");
    assert_eq!(of("restart").filter(|l| l["component"] == "sleepy").count(), 1, "{text}");
    assert_eq!(of("stop").count(), 3, "{text}");
}

#[test]
fn cli_run_sends_timed_injections_in_time_order_and_waits_for_them() {
    let dir = TempDir::new("timed");
    // Due at: early 0, tick 0, tick 200, late 300, mid 300, tick 400 ms.
    // `late` is listed first and `mid` last: ties go in manifest order.
    let app = echo_and_rejecter_app(
        &dir,
        "[[inject]]\nto = \"echo\"\ntext = \"late\"\nafter_ms = 300\n\n\
         [[inject]]\nto = \"echo\"\ntext = \"early\"\n\n\
         [[inject]]\nto = \"echo\"\ntext = \"tick\"\nrepeat = 3\nevery_ms = 200\n\n\
         [[inject]]\nto = \"echo\"\ntext = \"mid\"\nafter_ms = 300\n",
    );
    let events = dir.path("events.jsonl");
    let summary = succeed(&["run", arg(&app), "--events", arg(&events)]);
    assert_balanced(&summary);
    // The run did not end at the first quiescence: every send was made.
    assert_eq!(count(summary_line(&summary, "messages"), "accepted"), 6, "{summary}");
    let text = std::fs::read_to_string(&events).expect("the events file");
    let handled: Vec<String> = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("JSON"))
        .filter(|l| l["event"] == "handled" && l["component"] == "echo")
        .map(|l| l["preview"].as_str().expect("a text preview").to_owned())
        .collect();
    assert_eq!(handled, ["early", "tick", "tick", "late", "mid", "tick"], "events:\n{text}");
}

#[test]
fn cli_check_refuses_a_timeout_on_an_injected_message() {
    let dir = TempDir::new("inject-timeout");
    let app = echo_and_rejecter_app(&dir, "[[inject]]\nto = \"echo\"\ntext = \"x\"\ntimeout_ms = 100\n");
    let (_, stderr) = fail(&["check", arg(&app)]);
    assert!(stderr.contains("inject[0].timeout_ms") && stderr.contains("request = true"), "{stderr}");
}

// ---------------------------------------------------------------------------
// check
// ---------------------------------------------------------------------------

#[test]
fn cli_check_accepts_the_examples() {
    let stdout = succeed(&["check", REQUEST_REPLY]);
    for component in ["client", "service", "sleepy"] {
        assert!(stdout.contains(&format!("ok    {component} ")), "stdout:\n{stdout}");
    }
    let stdout = succeed(&["check", PING_PONG]);
    for component in ["ping", "pong"] {
        assert!(stdout.contains(&format!("ok    {component} ")), "stdout:\n{stdout}");
    }
}

#[test]
fn cli_check_names_a_typo_in_a_manifest() {
    let dir = TempDir::new("typo");
    let manifest =
        dir.write("typo.toml", "[component]\nid = \"typo\"\nwasm = \"echo.wat\"\n\n[mailbox]\ncapacty = 5\n");
    let (_, stderr) = fail(&["check", arg(&manifest)]);
    assert!(stderr.contains(arg(&manifest)), "stderr does not name the file:\n{stderr}");
    assert!(stderr.contains("capacty"), "stderr does not name the key:\n{stderr}");
}

#[test]
fn cli_check_takes_a_component_manifest_with_a_u64_above_i64_max() {
    let dir = TempDir::new("u64");
    let manifest = dir.write(
        "big.toml",
        format!(
            "[component]\nid = \"big\"\nwasm = {:?}\n\n[limits]\nfuel_per_call = 18446744073709551615\n",
            fixture("echo.wat")
        ),
    );
    let stdout = succeed(&["check", arg(&manifest)]);
    assert!(stdout.contains("ok    big "), "stdout:\n{stdout}");
}

#[test]
fn cli_check_refuses_a_core_module_with_a_hint_to_componentize() {
    let dir = TempDir::new("core");
    // The smallest core module: magic and version 1.
    dir.write("core.wasm", b"\0asm\x01\x00\x00\x00");
    let manifest = dir.write("core.toml", "[component]\nid = \"core\"\nwasm = \"core.wasm\"\n");
    let (_, stderr) = fail(&["check", arg(&manifest)]);
    assert!(stderr.contains("core wasm module") && stderr.contains("componentize"), "no hint:\n{stderr}");
    assert!(stderr.contains(arg(&manifest)), "stderr does not name the manifest:\n{stderr}");
}

#[test]
fn cli_run_names_the_manifest_of_a_missing_wasm_file() {
    let dir = TempDir::new("missing-wasm");
    let component = dir.write("gone.toml", "[component]\nid = \"gone\"\nwasm = \"gone.wasm\"\n");
    let app = dir.write("app.toml", "components = [\"gone.toml\"]\n");
    let (_, stderr) = fail(&["run", arg(&app)]);
    assert!(stderr.contains(arg(&component)), "stderr does not name the component's manifest:\n{stderr}");
    assert!(stderr.contains("gone.wasm"), "stderr does not name the wasm file:\n{stderr}");
}

#[test]
fn cli_check_names_an_unknown_codec() {
    let dir = TempDir::new("codec");
    let manifest =
        dir.write("codec.toml", "[component]\nid = \"codec\"\nwasm = \"echo.wat\"\n\n[codecs]\naccept = [\"jsonn\"]\n");
    let (_, stderr) = fail(&["check", arg(&manifest)]);
    assert!(stderr.contains(arg(&manifest)), "stderr does not name the file:\n{stderr}");
    assert!(stderr.contains("codecs.accept"), "stderr does not name the key:\n{stderr}");
    assert!(stderr.contains("jsonn"), "stderr does not name the codec:\n{stderr}");
}

#[test]
fn cli_check_names_a_missing_handle_callback() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let read = |name: &str| {
        let path = fixtures.join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    };
    let component = wasm_runtime::componentize_wat_with_wit(
        "no_callback.wat",
        &read("no_callback.wat"),
        &read("no_callback.wit"),
        "component",
    )
    .expect("componentizing no_callback.wat against no_callback.wit");
    let dir = TempDir::new("no-callback");
    dir.write("no_callback.wasm", component);
    let manifest = dir.write("no_callback.toml", "[component]\nid = \"no-callback\"\nwasm = \"no_callback.wasm\"\n");
    let (stdout, stderr) = fail(&["check", arg(&manifest)]);
    assert!(
        stdout.contains("handle-callback") || stderr.contains("handle-callback"),
        "the output does not name the missing export\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stderr.contains("error no-callback:"), "stderr does not name the component:\n{stderr}");
}

// ---------------------------------------------------------------------------
// Metrics and trace export
// ---------------------------------------------------------------------------

#[path = "../../../tests/otlp_receiver.rs"]
mod otlp_receiver;

/// A loopback port free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port()
}

/// `GET /metrics` from `127.0.0.1:port` with plain HTTP/1.0; `None` when
/// nothing answers.
fn scrape(port: u16) -> Option<String> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    (status.starts_with("HTTP/1.") && status.contains(" 200")).then(|| body.to_owned())
}

/// The value of the series `name{labels}` in a scrape.
fn series(scrape: &str, name: &str, labels: &str) -> Option<u64> {
    let prefix = format!("{name}{{{labels}}} ");
    scrape.lines().find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
}

#[test]
fn cli_run_serves_metrics_that_promtool_accepts_and_that_equal_the_report() {
    let dir = TempDir::new("metrics");
    let app = echo_and_rejecter_app(
        &dir,
        "[[inject]]\nto = \"echo\"\ntext = \"hello\"\nrepeat = 3\n\n\
         [[inject]]\nto = \"rejecter\"\ntext = \"please\"\nrequest = true\n",
    );
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let child = wasm_system_command()
        .args(["run", arg(&app), "--metrics-addr", &addr, "--metrics-interval", "50ms"])
        .args(["--linger", "1500ms", "--json", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting wasm-system");
    // Scrape until the endpoint goes away with the process: the last scrape
    // is from the linger after quiescence, or from the shutdown, which
    // publishes the final counts.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    let mut answered = 0;
    while Instant::now() < deadline {
        match scrape(port) {
            Some(text) => {
                answered += 1;
                last = Some(text);
            }
            None if last.is_some() => break,
            None => {}
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let output = wait_bounded(child, "metrics run");
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let last = last.unwrap_or_else(|| panic!("/metrics never answered\nstderr:\n{stderr}"));
    assert!(answered >= 2, "scraped {answered} times during the run");

    let file = dir.write("scrape.txt", &last);
    let checked = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).expect("the scrape"))
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool not runnable ({e}): install Debian's `prometheus` package (.ci/run does)")
        });
    assert!(checked.status.success(), "promtool check metrics:\n{}\n{last}", String::from_utf8_lossy(&checked.stdout));

    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}"));
    for component in report["components"].as_array().expect("components") {
        let id = component["id"].as_str().expect("an id");
        let label = format!("component=\"{id}\"");
        for (metric, key) in [
            ("airssys_messages_accepted_total", "messages_accepted"),
            ("airssys_requests_accepted_total", "requests_accepted"),
            ("airssys_handled_total", "handled"),
            ("airssys_handler_errors_total", "handler_errors"),
            ("airssys_callbacks_handled_total", "callbacks_handled"),
            ("airssys_crashes_total", "crashes"),
            ("airssys_restarts_total", "restarts"),
        ] {
            let reported = number(&component[key], key);
            assert_eq!(series(&last, metric, &label), Some(reported), "{metric} of {id}\n{last}");
        }
        let handled = number(&component["handled"], "handled");
        assert_eq!(series(&last, "airssys_handler_duration_seconds_count", &label), Some(handled), "{id}\n{last}");
    }
    // Known values, so the comparison above is not of two zeros.
    assert_eq!(series(&last, "airssys_messages_accepted_total", "component=\"echo\""), Some(3));
    assert_eq!(series(&last, "airssys_handler_errors_total", "component=\"rejecter\""), Some(1));
    let completed = number(&report["totals"]["requests"]["completed"], "completed");
    assert_eq!(series(&last, "airssys_requests_ended_total", "outcome=\"completed\""), Some(completed));
}

#[test]
fn cli_run_exports_a_span_per_handled_message_over_otlp() {
    let dir = TempDir::new("otlp");
    let app = echo_and_rejecter_app(
        &dir,
        "[[inject]]\nto = \"echo\"\ntext = \"hello\"\nrepeat = 3\n\n\
         [[inject]]\nto = \"rejecter\"\ntext = \"please\"\nrequest = true\n",
    );
    // Once with the flag, once with the standard variable alone.
    for by_variable in [false, true] {
        let (url, spans) = otlp_receiver::receiver();
        let base = url.trim_end_matches("/v1/traces");
        let mut command = wasm_system_command();
        command.args(["run", arg(&app)]).env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        if by_variable {
            command.env("OTEL_EXPORTER_OTLP_ENDPOINT", base);
        } else {
            command.args(["--otlp-endpoint", base]).env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        }
        let output = command.output().expect("running wasm-system");
        assert_exported_spans(&output, &spans);
    }
}

/// The spans of the echo/rejecter run: three messages at `echo`, one
/// request at `rejecter`, nothing else.
fn assert_exported_spans(output: &Output, spans: &std::sync::mpsc::Receiver<otlp_receiver::Exported>) {
    let (stdout, stderr) = text(output);
    assert!(output.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // The exporter flushed before the process exited.
    let got: Vec<_> = spans.try_iter().collect();
    let of = |component: &str| -> Vec<&otlp_receiver::Exported> {
        got.iter().filter(|s| s.attributes.get("component").map(String::as_str) == Some(component)).collect()
    };
    let (echo, rejecter) = (of("echo"), of("rejecter"));
    assert_eq!((echo.len(), rejecter.len(), got.len()), (3, 1, 4), "{got:#?}\nstderr:\n{stderr}");
    for span in &echo {
        assert_eq!((span.attributes["kind"].as_str(), span.attributes["outcome"].as_str()), ("message", "ok"));
        assert_eq!((span.attributes["sender"].as_str(), span.parent_span_id.as_str()), ("host", ""), "a root span");
    }
    let rejected = rejecter[0];
    assert_eq!(
        (rejected.attributes["kind"].as_str(), rejected.attributes["outcome"].as_str()),
        ("request", "handler-error")
    );
    assert_eq!(rejected.attributes["correlation_id"].len(), 36, "{rejected:?}");
    assert_eq!(rejected.span_id.len(), 16, "the host's span id, in hex: {rejected:?}");
    // Each host message starts its own trace.
    let mut traces: Vec<&str> = got.iter().map(|s| s.trace_id.as_str()).collect();
    traces.sort_unstable();
    traces.dedup();
    assert_eq!(traces.len(), 4);
}

// ---------------------------------------------------------------------------
// Two hosts
// ---------------------------------------------------------------------------

#[path = "../../wasm-cluster/tests/cluster/broker.rs"]
mod broker;

/// Parses the JSON report `--json -` wrote to stdout, after checking the
/// run succeeded.
fn json_report(output: &Output, what: &str) -> Value {
    let (stdout, stderr) = text(output);
    assert!(output.status.success(), "{what}: stdout:\n{stdout}\nstderr:\n{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e}):\n{stdout}\n{stderr}"))
}

fn component<'a>(report: &'a Value, id: &str) -> &'a Value {
    let components = report["components"].as_array().expect("components");
    components.iter().find(|c| c["id"] == id).unwrap_or_else(|| panic!("{id} in {report:#}"))
}

#[test]
fn cli_two_hosts_rally_across_a_real_nats_server() {
    let broker = broker::Broker::start();
    let url = broker.url();
    // Both apps use the ping-pong guest: build it once, first.
    succeed(&["build", "examples/cluster/node-b.toml"]);
    let b = wasm_system_command()
        .args(["run", "examples/cluster/node-b.toml", "--nats", &url, "--linger", "2s", "--json", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting node b");
    // Node a waits until b announced pong (`[cluster] requires`), then
    // rallies with it three times; it stops once idle.
    let a = wasm_system(&["run", "examples/cluster/node-a.toml", "--nats", &url, "--json", "-"]);
    let a = json_report(&a, "node a");
    let b = json_report(&wait_bounded(b, "node b"), "node b");
    for (report, id) in [(&a, "ping"), (&b, "pong")] {
        assert_eq!(report["balanced"], Value::Bool(true), "{report:#}");
        // Each rally is 1,001 hops: ping handles the start and 500 counters
        // per rally, pong 501.
        assert_eq!(number(&component(report, id)["handled"], "handled"), 1503, "{id}: {report:#}");
        assert_eq!(number(&report["totals"]["refused_total"], "refused_total"), 0, "{report:#}");
    }
    // Every hop crossed the broker: ping sent 501 per rally, pong 500.
    assert_eq!(number(&a["totals"]["remote_messages_sent"], "a's remote messages"), 1503);
    assert_eq!(number(&b["totals"]["remote_messages_sent"], "b's remote messages"), 1500);
    // Every one of them was acknowledged by the other node, none is
    // pending or undelivered, and each host received what the other sent.
    for (report, other, sent, received) in [(&a, "b", 1503, 1500), (&b, "a", 1500, 1503)] {
        let nodes = report["nodes"].as_array().unwrap_or_else(|| panic!("a nodes array: {report:#}"));
        let node = nodes.iter().find(|n| n["node"] == other).unwrap_or_else(|| panic!("node {other}: {report:#}"));
        assert_eq!(number(&node["messages_sent"], "messages_sent"), sent, "{node:#}");
        assert_eq!(number(&node["acknowledged"], "acknowledged"), sent, "{node:#}");
        assert_eq!(number(&node["pending_acks"], "pending_acks"), 0, "{node:#}");
        assert_eq!(number(&node["undelivered_total"], "undelivered_total"), 0, "{node:#}");
        assert_eq!(number(&node["received"], "received"), received, "{node:#}");
    }
}

#[test]
fn cli_run_injects_into_a_component_of_another_node() {
    let broker = broker::Broker::start();
    let url = broker.url();
    let dir = TempDir::new("inject-remote");
    dir.write("echo.toml", format!("[component]\nid = \"echo\"\nwasm = {:?}\n", fixture("echo.wat")));
    dir.write("local.toml", format!("[component]\nid = \"local\"\nwasm = {:?}\n", fixture("echo.wat")));
    let node_b = dir.write("b.toml", "components = [\"echo.toml\"]\n\n[cluster]\nnode = \"b\"\n");
    let injections = "[[inject]]\nto = \"echo@b\"\ntext = \"over\"\nrequest = true\n\n\
                      [[inject]]\nto = \"echo@b\"\ntext = \"note\"\nrepeat = 3\n";
    let node_a =
        dir.write("a.toml", format!("components = [\"local.toml\"]\n\n[cluster]\nnode = \"a\"\n\n{injections}"));
    let b = wasm_system_command()
        .args(["run", arg(&node_b), "--nats", &url, "--linger", "2s", "--json", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting node b");
    // a waits until b announced echo (an injection target of another node
    // is awaited like `[cluster] requires`), then injects.
    let a = wasm_system(&["run", arg(&node_a), "--nats", &url, "--json", "-"]);
    let (_, a_stderr) = text(&a);
    let response =
        a_stderr.lines().find(|l| l.starts_with("response from echo@b (")).unwrap_or_else(|| panic!("{a_stderr}"));
    assert!(response.ends_with("): raw over"), "{response}");
    let a = json_report(&a, "node a");
    let b = json_report(&wait_bounded(b, "node b"), "node b");
    let to_b = &a["nodes"][0];
    assert_eq!(to_b["node"], "b", "{a:#}");
    let counts: Vec<u64> = ["messages_sent", "requests_sent", "acknowledged", "undelivered_total"]
        .iter()
        .map(|key| number(&to_b[*key], key))
        .collect();
    assert_eq!(counts, [3, 1, 4, 0], "{to_b:#}");
    assert_eq!(number(&component(&b, "echo")["handled"], "echo handled"), 4, "{b:#}");
    assert_eq!(number(&a["totals"]["requests"]["completed"], "completed"), 1, "{a:#}");

    // Without a cluster, the same injection is a clear error at start.
    let alone = dir.write("alone.toml", format!("components = [\"local.toml\"]\n\n{injections}"));
    let output = wasm_system(&["run", arg(&alone)]);
    let (stdout, stderr) = text(&output);
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("echo@b") && stderr.contains("needs a cluster"), "{stderr}");
}

// ---------------------------------------------------------------------------
// On a terminal
// ---------------------------------------------------------------------------

/// Runs `wasm-system args...` on a pseudo-terminal (util-linux `script`,
/// Debian's essential `bsdutils`) and returns what the terminal received,
/// stdout and stderr together, escape codes included.
fn on_a_terminal(args: &[&str]) -> String {
    let binary = env!("CARGO_BIN_EXE_wasm-system");
    let command = std::iter::once(binary).chain(args.iter().copied()).collect::<Vec<_>>().join(" ");
    let output = Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", guest_target_dir())
        .stdin(Stdio::null())
        .output()
        .expect("running `script` (util-linux)");
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "on a terminal: {command}\n{stdout}\n{stderr}");
    stdout
}

#[test]
fn cli_run_on_a_terminal_shows_progress_then_the_table() {
    // The linger keeps the run going a second after quiescence, so the
    // progress line (redrawn every 250 ms) is drawn several times.
    let screen = on_a_terminal(&["run", "--build", PING_PONG, "--linger", "1s"]);
    assert!(screen.contains("msg/s") && screen.contains("pending requests"), "no progress line:\n{screen:?}");
    assert!(screen.contains('\u{1b}'), "the progress line is drawn with terminal control codes:\n{screen:?}");
    // Then the summary and the per-component table, once.
    let table = screen.find("| component").unwrap_or_else(|| panic!("no table:\n{screen}"));
    assert!(screen[table..].contains("| ping") && screen[table..].contains("| pong"), "{screen}");
    assert_eq!(screen.matches("accounting balanced").count(), 1, "{screen}");
    // `--no-progress` turns it off even on a terminal.
    let quiet = on_a_terminal(&["run", "--build", PING_PONG, "--linger", "1s", "--no-progress"]);
    assert!(!quiet.contains("msg/s"), "{quiet:?}");
}
