//! The loom shim (tokio's `src/loom/` pattern): one API for locks, atomics
//! and `Arc`, backed by `parking_lot` and `std` in normal builds and by
//! `loom::sync` under `--cfg loom`, so the loom models in `src/tests/`
//! explore every interleaving of the very code that ships.
//!
//! The API is parking_lot's: `read()`, `write()` and `lock()` return guards
//! directly. loom's locks poison like std's; the wrappers below ignore
//! poisoning (`PoisonError::into_inner`), which is what parking_lot does, so
//! both sides behave the same after a panic in a critical section.
//!
//! Crate code imports locks, atomics and `Arc` only from here (the architecture
//! lint checks the source text). [`unmodelled`] names the `std` types the
//! models do not replace, so this file says exactly what loom covers.

#[cfg(not(loom))]
mod imp {
    pub(crate) use std::sync::Arc;
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};

    pub(crate) use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
    pub(crate) use std::thread_local;
}

#[cfg(loom)]
mod imp {
    use std::sync::PoisonError;

    pub(crate) use loom::sync::Arc;
    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
    pub(crate) use loom::sync::{MutexGuard, RwLockReadGuard, RwLockWriteGuard};
    pub(crate) use loom::thread_local;

    /// `loom::sync::RwLock` with parking_lot's signatures.
    #[derive(Debug)]
    pub(crate) struct RwLock<T>(loom::sync::RwLock<T>);

    impl<T> RwLock<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::RwLock::new(value))
        }

        pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
            self.0.read().unwrap_or_else(PoisonError::into_inner)
        }

        pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
            self.0.write().unwrap_or_else(PoisonError::into_inner)
        }
    }

    impl<T: Default> Default for RwLock<T> {
        fn default() -> Self {
            Self::new(T::default())
        }
    }

    /// `loom::sync::Mutex` with parking_lot's signatures.
    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    #[allow(dead_code, reason = "part of the shim's API; the tracker itself needs no mutex")]
    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    impl<T: Default> Default for Mutex<T> {
        fn default() -> Self {
            Self::new(T::default())
        }
    }
}

#[allow(unused_imports, reason = "the shim offers the whole set; each build uses part of it")]
pub(crate) use imp::{
    Arc, AtomicBool, AtomicU64, AtomicUsize, Mutex, MutexGuard, Ordering, RwLock, RwLockReadGuard, RwLockWriteGuard,
    fence, thread_local,
};

/// `std` types that stay `std` under loom: loom has no `Weak` or `OnceLock`, and
/// an `Arc` that is downgraded to a `Weak`, or that crosses the crate's API (the
/// router, the registry's actor handles, the timer's tracker), must be std's. The
/// loom models do not explore what these guard.
pub(crate) mod unmodelled {
    /// A process-wide counter that is only a heuristic (which accounting
    /// stripe a thread counts in); under loom each model uses its own.
    #[allow(unused_imports, reason = "not used under loom")]
    pub(crate) use std::sync::atomic::{AtomicUsize, Ordering};
    #[allow(unused_imports, reason = "the shim offers the whole set; each build uses part of it")]
    pub(crate) use std::sync::{Arc, OnceLock, Weak};
}
