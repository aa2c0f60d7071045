//! Guest stdout and stderr, forwarded to the host's `tracing` log with the
//! component id.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// A WASI output stream whose writes become `tracing` events at INFO
/// (stdout) or WARN (stderr) on target `guest`, tagged with the component id.
#[derive(Clone, Debug)]
pub(crate) struct GuestLog {
    component: String,
    stderr: bool,
}

impl GuestLog {
    pub(crate) fn new(component: &str, stderr: bool) -> Self {
        Self { component: component.to_owned(), stderr }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for GuestLog {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let text = String::from_utf8_lossy(buf);
        let text = text.trim_end_matches('\n');
        if self.stderr {
            tracing::warn!(target: "guest", component = %self.component, stream = "stderr", "{text}");
        } else {
            tracing::info!(target: "guest", component = %self.component, stream = "stdout", "{text}");
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
