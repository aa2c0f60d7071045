//! End-to-end tests: real components (tests/fixtures, componentized by the
//! host) in a real system, one module per area, tests named
//! `<area>_<behaviour>`. Tests wait on events with a generous bound, never
//! on time, and end by checking that the counters balance.

mod batching;
mod cluster;
mod containment;
mod embedding;
mod execution;
mod messaging;
mod observability;
mod policy;
mod requests;
mod sdk;
mod supervision;
