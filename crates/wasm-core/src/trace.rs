//! W3C trace context (<https://www.w3.org/TR/trace-context/>), carried by
//! every message so a chain of requests across components is one trace.

use std::cell::RefCell;
use std::fmt;

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

/// The `traceparent` of a message: a 16-byte trace id shared by the whole
/// chain, the 8-byte id of the span that sent it, and the flags byte.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// Trace id (never all zeros).
    pub trace_id: [u8; 16],
    /// Id of the sending span (never all zeros).
    pub span_id: [u8; 8],
    /// Trace flags; bit 0 is `sampled`.
    pub flags: u8,
}

impl TraceContext {
    /// Starts a new trace (for a message injected by the host), sampled.
    #[must_use]
    pub fn new_root() -> Self {
        Self { trace_id: nonzero(), span_id: nonzero(), flags: 1 }
    }

    /// A child: same trace and flags, a fresh span id (the span that handles
    /// a message carrying `self`).
    #[must_use]
    pub fn child(&self) -> Self {
        Self { trace_id: self.trace_id, span_id: nonzero(), flags: self.flags }
    }

    /// The `traceparent` header value, version 00:
    /// `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>` (55 bytes).
    #[must_use]
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", hex(&self.trace_id), hex(&self.span_id), self.flags)
    }

    /// The trace id as 32 lowercase hex digits.
    #[must_use]
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id as 16 lowercase hex digits.
    #[must_use]
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }

    /// Parses a version-00 `traceparent` value.
    ///
    /// Returns `None` when the value is malformed or has an all-zero id, as
    /// the W3C spec says a receiver must then start a new trace.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || version != "00" {
            return None;
        }
        let trace_id: [u8; 16] = unhex(trace)?;
        let span_id: [u8; 8] = unhex(span)?;
        let [flags]: [u8; 1] = unhex(flags)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self { trace_id, span_id, flags })
    }
}

thread_local! {
    /// Where trace and span ids come from: a per-thread `SmallRng`
    /// (xoshiro256++) seeded once from the thread's CSPRNG, as
    /// OpenTelemetry's `RandomIdGenerator` does. Ids must be unique and
    /// well spread, not secret (they travel in clear `traceparent`
    /// headers), and every envelope handled draws a span id, so this
    /// spares the ChaCha generator and its reseeding checks per draw.
    /// Correlation ids, which guests see and may try to guess, stay on
    /// the CSPRNG (`CorrelationId::generate`).
    static IDS: RefCell<SmallRng> = RefCell::new(SmallRng::from_rng(&mut rand::rng()));
}

fn nonzero<const N: usize>() -> [u8; N] {
    IDS.with_borrow_mut(|rng| {
        let mut bytes = [0u8; N];
        loop {
            rng.fill_bytes(&mut bytes);
            if bytes != [0; N] {
                return bytes;
            }
        }
    })
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceContext({})", self.traceparent())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_children_share_the_trace() {
        let root = TraceContext::new_root();
        let header = root.traceparent();
        assert_eq!(header.len(), 55);
        assert_eq!(TraceContext::parse(&header), Some(root));
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        assert_eq!(TraceContext::parse("00-00000000000000000000000000000000-0000000000000001-01"), None);
        assert_eq!(TraceContext::parse("01-x"), None);
    }

    #[test]
    fn span_ids_are_unique_within_and_across_threads() {
        // Each thread's generator is seeded from the CSPRNG: a fixed seed
        // would give two threads the same sequence.
        let draw = || (0..1_000).map(|_| TraceContext::new_root().child().span_id).collect::<Vec<_>>();
        let other = std::thread::spawn(draw).join().expect("thread");
        let mut all = draw();
        all.extend(other);
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "a span id repeated");
        assert!(!all.contains(&[0; 8]));
    }
}
