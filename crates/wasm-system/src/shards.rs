//! Sharded execution ([`crate::SystemBuilder::shards`]): actors on
//! single-threaded tokio executors, one OS thread each, instead of the
//! embedder's work-stealing runtime.
//!
//! Each actor stays on the shard it was placed on for its life. Actors of
//! one placement group (`[placement] group`) share a shard, so a wake-up
//! between them (a message, a request, a callback) never crosses threads:
//! the woken actor runs next on the same thread, with no futex, no
//! inter-processor interrupt and no work stealing in between. On a
//! work-stealing runtime a request ping-pong keeps waking the idle worker
//! (tokio runs at most three woken tasks in a row from a worker's LIFO slot,
//! then hands the next to the run queue and unparks another worker), which
//! the `guest_to_guest` bench measures as a round trip p99 three to four
//! times higher, with over a third of the CPU time in the kernel's context
//! switches (perf).
//!
//! The price is balance: nothing moves an actor to an idle shard. The
//! execution model's guarantees hold within a shard: a guest that computes
//! yields at every epoch tick (so actors sharing its shard keep running),
//! one that waits in WASI awaits, budgets and supervision are the actor's
//! own. Messages between shards, to and from the host and across nodes
//! work as between any tasks.
//!
//! A shard's thread runs until the `System` is gone and every actor
//! spawned on it has ended (each actor task holds a token of its shard), so
//! actors told to stop by a dropped `System` still stop cleanly.
//!
//! Each shard calls its guests on a wasmtime engine of its own: the first
//! shard on the system's engine, every other on a
//! [`WasmEngine::sibling`] (same settings; its own epoch ticker thread and
//! stack pool). Every guest call touches engine-wide state (wasmtime 48
//! takes a reference on the engine for each call's fiber), and two shards
//! calling at once on one engine passed that cache line between their
//! cores on every call. The `guest_to_guest` bench's baseline alternates
//! raw calls on two threads on one engine and on an engine each: one engine
//! took 1.07 to 1.10x the time (medians of three runs), and two threads
//! scaled 1.60 to 1.78x over one on one engine against 1.88 to 1.96x on an
//! engine each. A component is compiled once, by the system's
//! engine, and each other shard's engine adopts a copy of its code the
//! first time one of its actors is placed there ([`WasmEngine::adopt`]):
//! the price is that much memory per shard for each component used on it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wasm_runtime::{CompiledComponent, RuntimeError, WasmEngine};

use crate::error::SystemError;

/// The shards of a system and where its actors go.
pub(crate) struct Shards {
    shards: Vec<Shard>,
    placement: Mutex<Placement>,
}

struct Shard {
    handle: Handle,
    /// Cloned into every task spawned on the shard: the shard's thread
    /// ends once this and every clone are dropped.
    alive: mpsc::Sender<()>,
    /// The engine its actors' instances live on.
    engine: Arc<WasmEngine>,
    /// The engine's copies of the components placed here: (the system's
    /// component, the copy). The first keeps the key alive, so a component
    /// dropped elsewhere cannot be mistaken for a new one at its address.
    adopted: Mutex<Vec<(CompiledComponent, CompiledComponent)>>,
}

/// Which shard each group got, and whose turn is next.
#[derive(Default)]
struct Placement {
    groups: HashMap<String, usize>,
    next: usize,
}

/// The most shards a system runs on: far more than the cores of any
/// machine this is for, so a typo in `[app] shards` is an error, not ten
/// thousand threads.
pub(crate) const MAX_SHARDS: usize = 256;

impl Shards {
    /// Starts `count` shards (at least one), threads `wasm-shard-<k>`: the
    /// first calls guests on `engine`, each other on a sibling of it.
    ///
    /// # Errors
    /// [`SystemError::Shards`]: more than [`MAX_SHARDS`] (`InvalidInput`);
    /// the OS could not start a thread, or tokio could not build a runtime
    /// (its I/O driver). [`SystemError::Engine`]: a sibling engine could
    /// not start. The shards started before the failure end.
    pub(crate) fn start(count: usize, engine: &Arc<WasmEngine>) -> Result<Self, SystemError> {
        if count > MAX_SHARDS {
            return Err(SystemError::Shards(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{count} shards asked for; at most {MAX_SHARDS}"),
            )));
        }
        let shards = (0..count.max(1))
            .map(|index| {
                let engine = match index {
                    0 => Arc::clone(engine),
                    _ => Arc::new(engine.sibling().map_err(SystemError::Engine)?),
                };
                Shard::start(index, engine).map_err(SystemError::Shards)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { shards, placement: Mutex::default() })
    }

    /// Shard `shard`'s engine, and its copy of `compiled` (a component of
    /// the system's engine), adopted the first time it is asked for.
    ///
    /// # Errors
    /// As [`WasmEngine::adopt`].
    ///
    /// # Panics
    /// When `shard` is not a shard's index.
    pub(crate) fn engine_for(
        &self,
        shard: usize,
        compiled: &CompiledComponent,
    ) -> Result<(Arc<WasmEngine>, CompiledComponent), RuntimeError> {
        let shard = &self.shards[shard];
        if shard.engine.owns(compiled) {
            return Ok((Arc::clone(&shard.engine), compiled.clone()));
        }
        // Held while copying, so one copy is made even when several actors
        // of a component start at once; copying takes milliseconds, and
        // only the first start of a component on a shard does it.
        let mut adopted = shard.adopted.lock();
        if let Some((_, copy)) = adopted.iter().find(|(original, _)| original.same_code(compiled)) {
            return Ok((Arc::clone(&shard.engine), copy.clone()));
        }
        let copy = shard.engine.adopt(compiled)?;
        adopted.push((compiled.clone(), copy.clone()));
        Ok((Arc::clone(&shard.engine), copy))
    }

    /// How many shards there are.
    pub(crate) fn len(&self) -> usize {
        self.shards.len()
    }

    /// The shard for a component of placement `group`: the group's shard,
    /// or the next in turn (then the group's from now on).
    pub(crate) fn place(&self, group: Option<&str>) -> usize {
        let mut placement = self.placement.lock();
        if let Some(&shard) = group.and_then(|group| placement.groups.get(group)) {
            return shard;
        }
        let shard = placement.next;
        placement.next = (shard + 1) % self.shards.len();
        if let Some(group) = group {
            placement.groups.insert(group.to_owned(), shard);
        }
        shard
    }

    /// Spawns `task` on shard `shard` (from [`Shards::place`]).
    ///
    /// # Panics
    /// When `shard` is not a shard's index.
    pub(crate) fn spawn<F>(&self, shard: usize, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let shard = &self.shards[shard];
        let alive = shard.alive.clone();
        shard.handle.spawn(async move {
            let _alive = alive;
            task.await
        })
    }
}

impl Shard {
    /// Starts shard `index`: its runtime is built on its own thread (a
    /// runtime dropped inside the caller's async context would panic, so
    /// none is ever made there) and hands its handle back.
    fn start(index: usize, engine: Arc<WasmEngine>) -> std::io::Result<Self> {
        let (alive, mut ended) = mpsc::channel::<()>(1);
        let (started, handle) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new().name(format!("wasm-shard-{index}")).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = started.send(Err(error));
                    return;
                }
            };
            let _ = started.send(Ok(runtime.handle().clone()));
            // Nothing is ever sent: `recv` ends when every token is dropped.
            runtime.block_on(async move { while ended.recv().await.is_some() {} });
        })?;
        let handle =
            handle.recv().map_err(|_| std::io::Error::other("the shard thread ended before its runtime ran"))??;
        Ok(Self { handle, alive, engine, adopted: Mutex::default() })
    }
}
