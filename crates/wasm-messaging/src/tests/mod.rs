//! Concurrency and property tests of the correlation tracker and the
//! router's accounting.
//!
//! - `loom_*` (only under `--cfg loom`): loom models of the races between
//!   outcomes, each asserting exactly one outcome per request, and of the
//!   envelope accounting's count / try-send / roll-back / settle. Run with
//!   `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p wasm-messaging --release --lib loom_`.
//! - `proptest_*` (not under loom): random operation sequences checked
//!   against an independent reference model.

#[cfg(loom)]
mod loom_accounting;
#[cfg(loom)]
mod loom_tracker;
#[cfg(not(loom))]
mod proptest_tracker;
