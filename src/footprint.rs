//! What one idle connection's tasks weigh: the size of the futures stored in them for the connection's whole life
//! (reported for the memory budget guard, tests/memory_budget.rs, and bench/README.md).

/// Bytes of the futures of one raw WebSocket connection's reader (its session) and writer tasks.
#[doc(hidden)]
pub fn raw_websocket_tasks() -> (usize, usize) {
    crate::transports::ws::task_sizes()
}
