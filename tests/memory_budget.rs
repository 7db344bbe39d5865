//! The memory budget of an idle connection, as a guard that is not a timing test (issue 24).
//!
//! This test binary counts every heap byte the process holds (a counting `#[global_allocator]`: allocated minus
//! freed), runs a real gateway in-process against a real nats-server with default settings (history on,
//! single-use tokens), opens [`SESSIONS`] raw WebSocket connections that each `connect` and `subscribe` once and
//! then stay idle, and asserts what they hold per connection. The clients are blocking `std` sockets with
//! fixed stack buffers, so after the baseline the only live bytes they add are their sockets' (none on the heap):
//! what grows is the gateway's. Deterministic: live bytes, not RSS; a baseline taken after warm-up connections
//! (first subscription of the pattern, first entries of the node's tables) is subtracted.

mod common;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::atomic::{AtomicIsize, Ordering},
    time::Duration,
};

use common::*;

/// Heap bytes held per idle authenticated connection (one subscription), at most. Derived from this test on the
/// debug build (`cargo test`): 13.1 KB on main at 59cef4c (its reader future alone was 7 560 B, the session's
/// cleanup with presence's KV calls awaited inline; a tokio mpsc channel with its first 32-slot block, 1.6 KB;
/// a hash table for one subscription; a 1 KiB read buffer); 4 498 B at 45bb197 with one user per connection
/// and issue 20's per-user budgets; 4 153 B (19 allocations) since the connection runs as one task with one timer,
/// first queue and batch buffers of one slot and no flag or `Rc` of its own; 4 040 B (17 allocations) since the
/// session's user and session id are the connection table's strings and its patterns are held without parsing
/// slack; 4 056 B since a queued frame carries its position span (40 B instead of 32 in each of those two
/// one-slot buffers). bench/README.md, "Performance budget (issue 24)", says what is counted. The budget is that
/// plus ~8 % for map growth steps while the connections register: anything paying per idle connection for
/// presence, history, a queue block or a frame handler's state again lands above it.
const BUDGET_PER_SESSION: isize = 4_368;

/// The raw WebSocket path's reader (session) future, at most: 872 B measured on the debug build (7 560 B on
/// main at 59cef4c). A frame handler or a cleanup awaited inline instead of boxed shows here first.
const BUDGET_READER_FUTURE: usize = 960;

/// The writer's future, at most: 528 B measured on the debug build.
const BUDGET_WRITER_FUTURE: usize = 640;

/// The connection's one task future (reader, writer and their glue), stored whole in its task for the
/// connection's life: 1 624 B measured on the debug build. tokio aligns a task to 128 bytes, with ~136 B of
/// header: at most 1 656 B keeps the task in one 1 792-byte allocation (the two tasks before it took 1 152 + 640).
const BUDGET_TASK_FUTURE: usize = 1_656;

/// Connections measured (after [`WARM_UP`] connections taken into the baseline).
const SESSIONS: usize = 200;
const WARM_UP: usize = 20;

/// Heap bytes allocated and not yet freed, process-wide.
static LIVE: AtomicIsize = AtomicIsize::new(0);

/// Live allocations by requested size: index `size / 16` for sizes under 4 KiB, the last slot for the rest.
/// Printed (the difference over the measured connections) to find what each idle connection allocates.
const SIZE_CLASSES: usize = 257;
#[allow(clippy::declare_interior_mutable_const)] // only the array's initialiser
const ZERO: AtomicIsize = AtomicIsize::new(0);
static BY_SIZE: [AtomicIsize; SIZE_CLASSES] = [ZERO; SIZE_CLASSES];

fn size_class(size: usize) -> &'static AtomicIsize {
    &BY_SIZE[(size / 16).min(SIZE_CLASSES - 1)]
}

fn by_size() -> Vec<isize> {
    BY_SIZE.iter().map(|n| n.load(Ordering::Relaxed)).collect()
}

struct Counting;

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is kept beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
            size_class(layout.size()).fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
            size_class(layout.size()).fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        size_class(layout.size()).fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
            size_class(layout.size()).fetch_sub(1, Ordering::Relaxed);
            size_class(new_size).fetch_add(1, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live heap bytes once the process is quiet: read until two readings 200 ms apart agree within 1 KiB (at most
/// [`WAIT`]; the last reading otherwise). Background work (NATS pings, KV acks) allocates only transiently.
async fn settled_live() -> isize {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = LIVE.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = LIVE.load(Ordering::Relaxed);
        if (now - last).abs() < 1024 || tokio::time::Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}

/// A minimal blocking protocol v1 client: no heap allocation is kept per connection (the socket only).
struct Idle(TcpStream);

impl Idle {
    /// Opens a WebSocket to `/ws`, connects with `token` and subscribes to `pattern`; panics when a step fails.
    fn open(addr: SocketAddr, token: &str, pattern: &str) -> Self {
        let mut stream = TcpStream::connect(addr).expect("TCP connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("send the upgrade");
        let mut head = [0u8; 1024];
        let mut len = 0;
        while !head[..len].ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut head[len..len + 1]).expect("read the upgrade answer");
            assert!(n == 1 && len + 1 < head.len(), "upgrade answer ended early");
            len += 1;
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head[..len]));
        let mut client = Idle(stream);
        client.send(&format!(r#"{{"type":"connect","id":1,"token":"{token}"}}"#));
        client.expect(r#""type":"connected""#);
        client.send(&format!(r#"{{"type":"subscribe","id":2,"event":"{pattern}"}}"#));
        client.expect(r#""type":"subscribed""#);
        client
    }

    /// Sends one masked text frame (mask 0: the payload is sent as is).
    fn send(&mut self, text: &str) {
        let len = text.len();
        assert!(len < 65536);
        let mut frame = vec![0x81u8];
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(text.as_bytes());
        self.0.write_all(&frame).expect("send a frame");
    }

    /// Reads the next server frame (unmasked text) and checks that it contains `marker`.
    fn expect(&mut self, marker: &str) {
        let mut header = [0u8; 2];
        self.0.read_exact(&mut header).expect("read a frame header");
        let len = match header[1] & 0x7f {
            126 => {
                let mut ext = [0u8; 2];
                self.0.read_exact(&mut ext).expect("read a frame length");
                usize::from(u16::from_be_bytes(ext))
            }
            127 => panic!("unexpectedly large frame"),
            n => usize::from(n),
        };
        let mut payload = [0u8; 4096];
        assert!(len <= payload.len(), "frame of {len} bytes");
        self.0.read_exact(&mut payload[..len]).expect("read a frame");
        let text = String::from_utf8_lossy(&payload[..len]);
        assert!(text.contains(marker), "expected {marker}, got {text}");
    }
}

/// Prints what the measured connections added, per size class of 16 bytes: live allocations per connection
/// (classes where it is at least 0.05), so a change in what every idle connection allocates can be found.
fn print_allocations_per_session(before: &[isize], after: &[isize]) {
    let mut count = 0.0;
    eprintln!("live allocations added per idle connection, by requested size:");
    for (class, (b, a)) in before.iter().zip(after).enumerate() {
        let per = (a - b) as f64 / SESSIONS as f64;
        if per.abs() >= 0.05 {
            let range = if class == SIZE_CLASSES - 1 {
                ">= 4096 B".to_string()
            } else {
                format!("{}-{} B", class * 16, class * 16 + 15)
            };
            eprintln!("  {range:>12}: {per:6.2}");
            count += per;
        }
    }
    eprintln!("  {:>12}: {count:6.2}", "total");
}

/// Opens one idle connection per token, on a blocking thread (the gateway runs meanwhile).
async fn open_all(addr: SocketAddr, tokens: Vec<String>, into: &mut Vec<Idle>) {
    let opened = tokio::task::spawn_blocking(move || {
        let mut opened = Vec::with_capacity(tokens.len());
        for token in &tokens {
            opened.push(Idle::open(addr, token, "budget.idle"));
        }
        opened
    });
    into.extend(tokio::time::timeout(Duration::from_secs(60), opened).await.expect("opened in time").unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_stays_within_its_memory_budget() {
    let nats = NatsServer::start();
    let app = spawn_app(&nats.url()).await;
    let mut tokens = Vec::with_capacity(WARM_UP + SESSIONS);
    for user in 0..WARM_UP + SESSIONS {
        // One user per connection, as browsers are (and `limits.max_connections_per_user` is 32): each
        // connection also pays its user's entry in the node's per-user budgets.
        tokens.push(app.token(&format!("budget-{user}"), &["budget.>"]).await);
    }
    let measured = tokens.split_off(WARM_UP);
    let mut clients = Vec::with_capacity(WARM_UP + SESSIONS);
    open_all(app.addr, tokens, &mut clients).await;
    let before = settled_live().await;
    let sizes_before = by_size();

    open_all(app.addr, measured, &mut clients).await;
    let after = settled_live().await;
    print_allocations_per_session(&sizes_before, &by_size());
    let per_session = (after - before) / SESSIONS as isize;
    let (reader, writer, task) = telegraphy::footprint::raw_websocket_tasks();
    eprintln!(
        "idle connection: {per_session} heap bytes ({SESSIONS} connections: {before} -> {after}); futures: reader \
         {reader} B, writer {writer} B, the connection's task {task} B"
    );
    assert_eq!(app.metric("telegraphy_connections ").await as usize, WARM_UP + SESSIONS, "all connections open");
    assert!(
        per_session <= BUDGET_PER_SESSION,
        "an idle connection holds {per_session} heap bytes, over its budget of {BUDGET_PER_SESSION}"
    );
    assert!(reader <= BUDGET_READER_FUTURE, "reader future {reader} B > {BUDGET_READER_FUTURE} B");
    assert!(writer <= BUDGET_WRITER_FUTURE, "writer future {writer} B > {BUDGET_WRITER_FUTURE} B");
    assert!(task <= BUDGET_TASK_FUTURE, "connection task future {task} B > {BUDGET_TASK_FUTURE} B");
    drop(clients);
    app.shutdown().await.expect("shutdown");
}
