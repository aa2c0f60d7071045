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
//! took 1.01 to 1.10x the time (medians of five runs), and two threads
//! scaled 1.60 to 1.94x over one on one engine against 1.88 to 1.96x on an
//! engine each. A component is compiled once, by the system's engine, and
//! each other shard's engine adopts a copy of its code (on the blocking
//! pool) the first time one of its actors is placed there
//! ([`WasmEngine::adopt`]; the original keeps its copies, so the
//! component's other actors there share one): the price is that much
//! memory per shard for each component running on it.
//!
//! A shard is chosen before the instance is made (it must be made on the
//! shard's engine); a start that fails gives the placement back
//! ([`Placed`]), so it takes no turn and claims no shard for its group.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wasm_runtime::WasmEngine;

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
}

/// Which shard each group got, and whose turn is next.
#[derive(Default)]
struct Placement {
    groups: HashMap<String, Group>,
    /// Turns taken so far; the next turn goes to shard `turns % shards`.
    /// Counted, not wrapped, so a turn is given back only if it was the
    /// last one taken.
    turns: u64,
}

/// A group's shard, and whether a component of it has started there.
struct Group {
    shard: usize,
    /// A component of the group started: the group keeps the shard.
    started: bool,
    /// Placements of the group not yet kept or undone (while none has
    /// started).
    pending: u32,
    /// The turn placing the group took (given back if every placement of
    /// it is undone before any of its components started).
    turn: u64,
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

    /// The engine shard `shard` calls its guests on (the system's for the
    /// first shard). Components compiled by another engine must be adopted
    /// first ([`WasmEngine::adopt`]).
    ///
    /// # Panics
    /// When `shard` is not a shard's index.
    pub(crate) fn engine(&self, shard: usize) -> &Arc<WasmEngine> {
        &self.shards[shard].engine
    }

    /// How many shards there are.
    pub(crate) fn len(&self) -> usize {
        self.shards.len()
    }

    /// The shard for a component of placement `group`: the group's shard,
    /// or the next in turn (then the group's from now on). Undone when the
    /// [`Placed`] is dropped without [`Placed::keep`]: a component that
    /// fails to start (or whose start is cancelled) takes no turn and claims
    /// no shard for its group, as if it had not been placed (its turn is
    /// given back only if no other component took one since).
    pub(crate) fn place(&self, group: Option<&str>) -> Placed<'_> {
        let mut placement = self.placement.lock();
        if let Some(group) = group
            && let Some(known) = placement.groups.get_mut(group)
        {
            let pending = !known.started;
            if pending {
                known.pending += 1;
            }
            return Placed { shards: self, shard: known.shard, group: pending.then(|| group.to_owned()), turn: None };
        }
        let turn = placement.turns;
        placement.turns += 1;
        let shard = shard_of_turn(turn, self.shards.len());
        if let Some(group) = group {
            placement.groups.insert(group.to_owned(), Group { shard, started: false, pending: 1, turn });
        }
        Placed { shards: self, shard, group: group.map(str::to_owned), turn: group.is_none().then_some(turn) }
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
        Ok(Self { handle, alive, engine })
    }
}

/// The shard turn `turn` goes to.
fn shard_of_turn(turn: u64, shards: usize) -> usize {
    // The remainder is below `shards`, a `usize`.
    usize::try_from(turn % shards as u64).unwrap_or(0)
}

/// A shard chosen by [`Shards::place`], undone when dropped unless kept.
pub(crate) struct Placed<'a> {
    shards: &'a Shards,
    shard: usize,
    /// The group whose placement is pending on this one.
    group: Option<String>,
    /// The turn this placement (of no group) took.
    turn: Option<u64>,
}

impl Placed<'_> {
    /// The chosen shard.
    pub(crate) fn shard(&self) -> usize {
        self.shard
    }

    /// The component started: the placement stands (and its group keeps
    /// the shard). Returns the shard.
    pub(crate) fn keep(mut self) -> usize {
        if let Some(group) = self.group.take() {
            let mut placement = self.shards.placement.lock();
            if let Some(known) = placement.groups.get_mut(&group) {
                known.started = true;
            }
        }
        self.turn = None;
        self.shard
    }
}

impl Drop for Placed<'_> {
    fn drop(&mut self) {
        if self.turn.is_none() && self.group.is_none() {
            return;
        }
        let mut placement = self.shards.placement.lock();
        let mut give_back = self.turn;
        if let Some(group) = self.group.take()
            && let Some(known) = placement.groups.get_mut(&group)
            && !known.started
        {
            known.pending -= 1;
            if known.pending == 0 {
                give_back = Some(known.turn);
                placement.groups.remove(&group);
            }
        }
        // Only the last turn taken (else a later placement's shard would be
        // handed out again).
        if let Some(turn) = give_back
            && placement.turns == turn + 1
        {
            placement.turns = turn;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_runtime::EngineConfig;

    fn start(count: usize) -> (Arc<WasmEngine>, Shards) {
        let engine = Arc::new(WasmEngine::new(EngineConfig::default()).expect("engine"));
        let shards = Shards::start(count, &engine).expect("shards start");
        (engine, shards)
    }

    #[test]
    fn each_shard_after_the_first_calls_guests_on_an_engine_of_its_own() {
        let (engine, shards) = start(3);
        assert!(Arc::ptr_eq(shards.engine(0), &engine), "the first shard runs on the system's engine");
        for (a, b) in [(0, 1), (0, 2), (1, 2)] {
            assert!(!Arc::ptr_eq(shards.engine(a), shards.engine(b)), "shards {a} and {b} share an engine");
        }
        // (Needs `.wat` support to build a component here.)
        #[cfg(feature = "wat")]
        {
            let echo = engine
                .load(
                    "echo",
                    &wasm_runtime::componentize_wat("echo.wat", include_str!("../../../tests/fixtures/echo.wat"))
                        .expect("componentizes"),
                )
                .expect("loads");
            assert!(shards.engine(0).owns(&echo));
            assert!(!shards.engine(1).owns(&echo), "code is per engine: the other shards adopt it");
        }
    }

    #[test]
    fn a_placement_not_kept_takes_no_turn_and_claims_no_shard_for_its_group() {
        let (_engine, shards) = start(3);
        // A failed start gives its turn back.
        let failed = shards.place(None);
        assert_eq!(failed.shard(), 0);
        drop(failed);
        assert_eq!(shards.place(None).keep(), 0, "the turn was given back");
        // A group whose only placement fails claims nothing.
        let failed = shards.place(Some("g"));
        assert_eq!(failed.shard(), 1);
        drop(failed);
        assert_eq!(shards.place(Some("h")).keep(), 1, "g's turn went to h");
        assert_eq!(shards.place(Some("g")).keep(), 2, "g gets the next turn, as a new group");
        assert_eq!(shards.place(Some("g")).keep(), 2, "and keeps it");
        // Two placements of a new group at once: one fails, the other
        // starts, and the group keeps its shard.
        let first = shards.place(Some("k"));
        let second = shards.place(Some("k"));
        assert_eq!((first.shard(), second.shard()), (0, 0));
        assert_eq!(shards.place(None).keep(), 1, "a turn taken meanwhile");
        drop(first);
        assert_eq!(second.keep(), 0);
        assert_eq!(shards.place(Some("k")).keep(), 0, "k kept its shard");
        assert_eq!(shards.place(None).keep(), 2, "and its turn");
        // A turn taken by a later placement is not given back twice, even a
        // whole round of turns later (where the shard numbers repeat).
        let late = shards.place(None);
        assert_eq!(late.shard(), 0);
        for shard in [1, 2, 0] {
            assert_eq!(shards.place(None).keep(), shard);
        }
        drop(late);
        assert_eq!(shards.place(None).keep(), 1, "the turn after the last one taken");
    }
}
