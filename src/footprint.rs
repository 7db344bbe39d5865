//! What one idle connection's task weighs: the size of the futures stored in it for the connection's whole life
//! (reported for the memory budget guard, tests/memory_budget.rs, and bench/README.md).

/// Bytes of the futures of one raw WebSocket connection: its reader (its session), its writer, and the
/// connection's one task that runs both (what is stored).
#[doc(hidden)]
pub fn raw_websocket_tasks() -> (usize, usize, usize) {
    crate::transports::ws::task_sizes()
}
