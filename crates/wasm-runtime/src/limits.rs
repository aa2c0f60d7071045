//! The resource limiter of one instance: caps over *all* its linear
//! memories and tables together, and on how many of each (and of core
//! instances) it may create. wasmtime's `StoreLimits` caps each memory on
//! its own, so a component with 32 memories could hold 32 times the cap;
//! this one keeps running totals.

use wasm_core::Limits;
use wasmtime::ResourceLimiter;

/// Totals and caps of one instance ([`wasmtime::Store`]).
#[derive(Debug)]
pub(crate) struct InstanceLimiter {
    memory_cap: usize,
    table_cap: usize,
    memories: usize,
    tables: usize,
    instances: usize,
    /// Bytes of linear memory the instance holds, all memories.
    memory_used: usize,
    /// Table elements the instance holds, all tables.
    table_used: usize,
}

impl InstanceLimiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            memory_cap: limits.memory_bytes,
            table_cap: limits.table_elements,
            memories: limits.max_memories,
            tables: limits.max_tables,
            instances: limits.max_instances,
            memory_used: 0,
            table_used: 0,
        }
    }
}

impl ResourceLimiter for InstanceLimiter {
    /// Called for a memory's initial size and for every grow: refuses (a
    /// trap, before wasmtime reserves anything) what would take the total
    /// over the cap.
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.memory_used.saturating_add(desired.saturating_sub(current));
        if total > self.memory_cap {
            return Err(wasmtime::Error::msg(format!(
                "memory cap exceeded: growing to {total} bytes over all linear memories, cap {} bytes",
                self.memory_cap
            )));
        }
        self.memory_used = total;
        Ok(true)
    }

    /// As [`InstanceLimiter::memory_growing`], in table elements.
    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.table_used.saturating_add(desired.saturating_sub(current));
        if total > self.table_cap {
            return Err(wasmtime::Error::msg(format!(
                "table cap exceeded: growing to {total} elements over all tables, cap {} elements",
                self.table_cap
            )));
        }
        self.table_used = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_hold_over_all_memories_and_tables_together() {
        let limits = Limits { memory_bytes: 100, table_elements: 10, ..Limits::default() };
        let mut limiter = InstanceLimiter::new(&limits);
        assert!(limiter.memory_growing(0, 60, None).expect("first memory"));
        assert!(limiter.memory_growing(0, 40, None).expect("second memory, 100 in all"));
        assert!(limiter.memory_growing(40, 41, None).is_err(), "one byte more over both is refused");
        assert!(limiter.table_growing(0, 10, None).expect("ten elements"));
        assert!(limiter.table_growing(0, 1, None).is_err(), "a second table counts too");
    }
}
