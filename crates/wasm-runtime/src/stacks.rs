//! Fiber stacks for async guest calls, carved from a few large mappings.
//!
//! Every guest call runs on a fiber stack, and wasmtime keeps the last one
//! a `Store` used for its next call, so each instance that has run holds a
//! stack while it is idle. wasmtime's own stacks are one `mmap` each with a
//! guard page made inaccessible by `mprotect`: two memory mappings per
//! instance. Linux caps a process's mappings (`vm.max_map_count`, 65,530 by
//! default), which capped a process at about 16,000 instances.
//!
//! This pool hands out stacks from shared read-write mappings of
//! [`SLOTS_PER_CHUNK`] slots each: one guard page at the bottom of each
//! slot (stacks grow down), then the stack. The guard page is installed with
//! `madvise(MADV_GUARD_INSTALL)` (Linux 6.13), which marks the page in the
//! page tables without splitting the mapping, so a hundred thousand stacks
//! cost a few hundred mappings; on older kernels it falls back to
//! `mprotect(PROT_NONE)` (safe, but one more mapping per stack, as before).
//! A stack given back (its `Store` dropped) is emptied with
//! `MADV_DONTNEED` (its pages leave the resident set and read as zero when
//! touched again) and reused. The mappings are unmapped when the pool and
//! every stack from it are gone.

#![allow(unsafe_code, reason = "wasmtime's StackCreator is an unsafe trait; mmap and madvise are FFI")]

use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use wasmtime::{StackCreator, StackMemory};

/// Slots per mapping: with the default 2 MiB stack, about 1 GiB of address
/// space, reserved without committing memory (`MAP_NORESERVE`).
pub(crate) const SLOTS_PER_CHUNK: usize = 512;

/// `MADV_GUARD_INSTALL` from Linux's `include/uapi/asm-generic/mman-common.h`
/// (6.13; the `libc` crate does not name it yet).
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// A [`StackCreator`] that carves guarded stacks out of shared mappings.
#[derive(Debug)]
pub(crate) struct StackPool {
    inner: Arc<Pool>,
}

#[derive(Debug)]
struct Pool {
    /// The host page size: the guard's size and every alignment.
    page: usize,
    /// The usable stack, in bytes (page-rounded), above the guard page.
    stack_bytes: usize,
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    /// Each mapping: its base address and length in bytes.
    chunks: Vec<(usize, usize)>,
    /// Slots of the last mapping not handed out yet.
    fresh: Range<usize>,
    /// Base addresses of slots given back (guard installed, stack empty).
    free: Vec<usize>,
}

impl StackPool {
    /// A pool of stacks of `stack_bytes` each (rounded up to pages).
    pub(crate) fn new(stack_bytes: usize) -> Self {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(4096);
        let stack_bytes = stack_bytes.div_ceil(page).max(1) * page;
        Self { inner: Arc::new(Pool { page, stack_bytes, state: Mutex::new(PoolState::default()) }) }
    }
}

impl Pool {
    fn slot_bytes(&self) -> usize {
        self.page + self.stack_bytes
    }

    /// A slot's base address: a free one, or a fresh one with its guard
    /// installed (a new mapping when the last one is used up).
    fn take(&self) -> std::io::Result<usize> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(base) = state.free.pop() {
            return Ok(base);
        }
        if state.fresh.is_empty() {
            let len = self.slot_bytes() * SLOTS_PER_CHUNK;
            // SAFETY: a new anonymous mapping at an address the kernel picks;
            // nothing else refers to it.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if base == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            let base = base as usize;
            state.chunks.push((base, len));
            state.fresh = base..base + len;
        }
        let base = state.fresh.start;
        state.fresh.start += self.slot_bytes();
        drop(state);
        self.install_guard(base)?;
        Ok(base)
    }

    /// Makes the page at `base` fault on any access.
    fn install_guard(&self, base: usize) -> std::io::Result<()> {
        // SAFETY: `base` is the first page of a slot of our own mapping that
        // nobody uses yet.
        if unsafe { libc::madvise(base as *mut libc::c_void, self.page, MADV_GUARD_INSTALL) } == 0 {
            return Ok(());
        }
        // Before Linux 6.13 (EINVAL): the classic guard, one more mapping.
        // SAFETY: as above.
        if unsafe { libc::mprotect(base as *mut libc::c_void, self.page, libc::PROT_NONE) } == 0 {
            return Ok(());
        }
        Err(std::io::Error::last_os_error())
    }

    /// Takes a slot back: its stack is emptied (pages dropped, zero when
    /// next touched) and the slot reused.
    fn give_back(&self, base: usize) {
        // SAFETY: the stack above the guard belongs to a dropped
        // `PooledStack`, so no fiber runs on it.
        let emptied =
            unsafe { libc::madvise((base + self.page) as *mut libc::c_void, self.stack_bytes, libc::MADV_DONTNEED) };
        // A stack that could not be emptied is not reused: it would not
        // start zeroed.
        if emptied == 0 {
            self.state.lock().unwrap_or_else(PoisonError::into_inner).free.push(base);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        for &(base, len) in &state.chunks {
            // SAFETY: every stack holds the pool, so none is in use now.
            unsafe { libc::munmap(base as *mut libc::c_void, len) };
        }
    }
}

// SAFETY: each stack is a distinct, page-aligned slot of a mapping that lives
// as long as the stack (it holds the pool), with a guard page below it, zero
// filled when handed out (fresh, or emptied by MADV_DONTNEED when given back).
unsafe impl StackCreator for StackPool {
    fn new_stack(&self, size: usize, _zeroed: bool) -> wasmtime::Result<Box<dyn StackMemory>> {
        if size > self.inner.stack_bytes {
            wasmtime::bail!("fiber stack of {size} bytes asked of a pool of {} byte stacks", self.inner.stack_bytes);
        }
        let base = self.inner.take().map_err(|e| wasmtime::Error::msg(format!("allocating a fiber stack: {e}")))?;
        Ok(Box::new(PooledStack { pool: Arc::clone(&self.inner), base }))
    }
}

/// One stack of the pool; given back when dropped.
#[derive(Debug)]
struct PooledStack {
    pool: Arc<Pool>,
    /// The slot's base: its guard page.
    base: usize,
}

// SAFETY: see `StackCreator for StackPool`.
unsafe impl StackMemory for PooledStack {
    fn top(&self) -> *mut u8 {
        (self.base + self.pool.slot_bytes()) as *mut u8
    }

    fn range(&self) -> Range<usize> {
        self.base + self.pool.page..self.base + self.pool.slot_bytes()
    }

    fn guard_range(&self) -> Range<*mut u8> {
        self.base as *mut u8..(self.base + self.pool.page) as *mut u8
    }
}

impl Drop for PooledStack {
    fn drop(&mut self) {
        self.pool.give_back(self.base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_are_distinct_zeroed_and_reused() {
        let pool = StackPool::new(64 * 1024);
        let a = pool.new_stack(64 * 1024, true).expect("stack");
        let b = pool.new_stack(64 * 1024, true).expect("stack");
        assert!(a.range().end <= b.range().start || b.range().end <= a.range().start);
        assert_eq!(a.range().len(), 64 * 1024);
        assert_eq!(a.top() as usize, a.range().end);
        assert_eq!(a.guard_range().end as usize, a.range().start);
        let top = a.range().end - 8;
        // SAFETY: inside stack `a`, which nobody else uses.
        unsafe { (top as *mut u64).write(7) };
        let reused_range = a.range();
        drop(a);
        let c = pool.new_stack(64 * 1024, true).expect("stack");
        assert_eq!(c.range(), reused_range, "a stack given back is reused");
        // SAFETY: as above, in stack `c`.
        assert_eq!(unsafe { (top as *const u64).read() }, 0, "a reused stack starts zeroed");
        assert!(pool.new_stack(1 << 20, true).is_err(), "larger than the pool's stacks");
    }
}
