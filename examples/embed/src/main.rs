//! Embedding the host in a Rust program, as a library user would: one
//! dependency on `wasm-system` with `default-features = false` (no CLI), two
//! components described with the manifest builder, a typed request and its
//! typed response, a request whose future is dropped (which cancels it), and a
//! graceful shutdown whose accounting balances.
//!
//! The components are the runtime's WAT fixtures (`echo.wat` answers with
//! what it got; `slow.wat` spins on `0x55 n:u32`), so the example needs no
//! build step: `cargo run -p example-embed`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasm_system::{ComponentId, ComponentManifest, Message, Payload, System};

/// What the program asks.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Greeting {
    to: String,
    times: u32,
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let echo = ComponentManifest::new(ComponentId::parse("echo")?);
    let slow = ComponentManifest::new(ComponentId::parse("slow")?)
        .limits(wasm_system::Limits { fuel_per_call: u64::MAX, ..wasm_system::Limits::default() });
    let system =
        System::builder().component(echo, fixture("echo.wat")).component(slow, fixture("slow.wat")).start().await?;

    // A typed request and its typed response.
    let hello = Greeting { to: "world".into(), times: 3 };
    let reply = system.request("echo", Payload::json(&hello)?, Some(Duration::from_secs(1)))?.await?;
    let echoed: Greeting = Message::from_bytes(reply)?.decode()?;
    assert_eq!(echoed, hello);
    println!("echo answered {echoed:?}");

    // A request nobody waits for any more: dropping its future cancels it.
    let slow = system.component("slow")?;
    let busy = slow.request(Payload::encoded(wasm_system::Codec::Raw, 200_000_000u32.to_le_bytes()), None)?;
    let abandoned = slow.request(Payload::raw(b"?"), None)?;
    drop(abandoned);
    busy.await?;

    let report = system.shutdown(Duration::from_secs(5)).await;
    let requests = &report.stats.requests;
    println!(
        "requests: {} completed, {} cancelled; accounting {}",
        requests.completed,
        requests.cancelled,
        if report.stats.balanced() { "balanced" } else { "NOT balanced" }
    );
    if !report.stats.balanced() || requests.cancelled != 1 {
        return Err("the run did not end as expected".into());
    }
    Ok(())
}
