//! A real `nats-server` on loopback, one per test, killed on drop.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a starting broker may take to accept connections.
const START_BOUND: Duration = Duration::from_secs(15);

/// A `nats-server -a 127.0.0.1` child process, with the extra arguments
/// (or configuration file) it was started with.
///
/// The first start lets the server pick a free port (`-p -1`) and reads it
/// back from the server's ports file, named by its pid. (Binding `:0` in
/// the test and handing the port over races with the other tests doing the
/// same: a server that lost the race exits, and its test then talks to
/// another test's broker.)
pub(crate) struct Broker {
    port: u16,
    child: Child,
    /// Where the server writes its ports file (and reads its configuration
    /// file); removed on drop.
    dir: PathBuf,
    /// Passed to every start after `-a`, `-p` and `--ports_file_dir`.
    extra: Vec<String>,
}

impl Broker {
    /// Starts a broker on a free loopback port and waits until it accepts
    /// TCP connections.
    ///
    /// # Panics
    /// When `nats-server` is not installed, exits at once, or does not
    /// accept connections within 15 s.
    pub(crate) fn start() -> Self {
        Self::spawn(None, new_dir(), Vec::new())
    }

    /// Like [`Broker::start`], with extra `nats-server` arguments
    /// (`["--auth", "s3cret"]`, `["--user", "u", "--pass", "p"]`); a
    /// restart passes them again.
    ///
    /// # Panics
    /// As [`Broker::start`], also when the server refuses the arguments.
    #[allow(dead_code, reason = "not every test binary that includes this file needs a configured broker")]
    pub(crate) fn start_with(args: &[&str]) -> Self {
        Self::spawn(None, new_dir(), args.iter().map(|&arg| arg.to_owned()).collect())
    }

    /// Like [`Broker::start`], with `config` (nats-server's configuration
    /// format) written to `broker.conf` in the broker's temp dir and passed
    /// as `-c`. The command line's `-a` and `-p` win over the file's `host`
    /// and `port`.
    ///
    /// # Panics
    /// As [`Broker::start`], also when the server refuses the file.
    #[allow(dead_code, reason = "not every test binary that includes this file needs a configured broker")]
    pub(crate) fn start_with_config(config: &str) -> Self {
        let dir = new_dir();
        let file = dir.join("broker.conf");
        std::fs::write(&file, config).expect("writing the broker's configuration file");
        Self::spawn(None, dir, vec!["-c".to_owned(), file.to_string_lossy().into_owned()])
    }

    /// Starts `nats-server` on `port` (`None`: one it picks) with `extra`
    /// arguments.
    fn spawn(port: Option<u16>, dir: PathBuf, extra: Vec<String>) -> Self {
        let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let mut child = Command::new(executable())
            .args(["-a", "127.0.0.1", "-p", &port_arg, "--ports_file_dir"])
            .arg(&dir)
            .args(&extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning nats-server");
        let port = wait_until_listening(&mut child, &dir);
        Self { port, child, dir, extra }
    }

    /// `nats://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the broker (SIGKILL: no goodbye to its clients).
    #[allow(dead_code, reason = "not every test binary that includes this file kills or restarts its broker")]
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the broker and starts a new one on the same port.
    #[allow(dead_code, reason = "not every test binary that includes this file kills or restarts its broker")]
    pub(crate) fn restart(&mut self) {
        self.kill();
        let mut next = Self::spawn(Some(self.port), self.dir.clone(), self.extra.clone());
        std::mem::swap(self, &mut next);
        // `next` is the killed one now; its drop would remove the shared
        // dir, so forget its dir first.
        next.dir = PathBuf::new();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A temp dir of one broker's own (ports file, configuration file).
fn new_dir() -> PathBuf {
    static STARTED: AtomicUsize = AtomicUsize::new(0);
    let n = STARTED.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("wasm-cluster-nats-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir for the ports file");
    dir
}

/// Waits for `child`'s ports file in `dir` and for its client port to
/// accept TCP connections; returns the port.
fn wait_until_listening(child: &mut Child, dir: &Path) -> u16 {
    let ports_file = format!("_{}.ports", child.id());
    let deadline = Instant::now() + START_BOUND;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("nats-server exited at start with {status} (port taken?)");
        }
        if let Some(port) = read_port(dir, &ports_file)
            && TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Duration::from_millis(200))
                .is_ok()
        {
            return port;
        }
        assert!(Instant::now() < deadline, "nats-server did not listen within {START_BOUND:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The client port in the ports file of `dir` ending `suffix`
/// (`{"nats":["nats://127.0.0.1:4222"]}`), once it is written.
fn read_port(dir: &Path, suffix: &str) -> Option<u16> {
    let file = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|entry| entry.file_name().to_string_lossy().ends_with(suffix))?;
    let ports: serde_json::Value = serde_json::from_slice(&std::fs::read(file.path()).ok()?).ok()?;
    let url = ports["nats"][0].as_str()?;
    url.rsplit(':').next()?.parse().ok()
}

/// `$NATS_SERVER`, else `nats-server` on `PATH`, else Debian's
/// `/usr/sbin/nats-server` (not on a non-root user's `PATH`).
fn executable() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|dir| dir.join("nats-server")).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/nats-server"), PathBuf::from("/usr/bin/nats-server")])
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "these tests need a NATS broker: `nats-server` is not installed (Debian: `apt-get install \
                 nats-server`; .ci/run installs it), or set NATS_SERVER to its path"
            )
        })
}
