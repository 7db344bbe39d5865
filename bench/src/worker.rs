//! Client worker processes. The coordinator (the process the user started) spreads connections over `--workers`
//! copies of itself (`telegraphy-bench __worker`), because one process may hold at most ~20000 sockets here.
//! The worker protocol is one JSON object per line: the [`Job`] first, then [`Cmd`]s on stdin, each answered
//! by one [`Reply`] on stdout. A worker exits on `Stop`, when stdin closes (its coordinator died), or at its
//! deadline, so no run outlives its bound.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use futures_util::{stream, SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    sync::watch,
};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    client::{self, Dial, Ws, PONG},
    stats::{new_hist, Errors, Hist, WireHist},
    target::Endpoint,
    tokens::Minter,
};

/// Close code of a connection the gateway found too slow (outbound queue full).
pub const CLOSE_TOO_SLOW: u16 = telegraphy::protocol::constants::close::TOO_SLOW;

/// Which patterns connections subscribe to (and which events the publisher sends).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Patterns {
    /// Every connection subscribes to `<prefix>.fan.>`; each event reaches all of them.
    One,
    /// Connection i subscribes to `<prefix>.obj.<i>`; each event reaches one connection.
    PerObject,
}

impl Patterns {
    pub fn name(self) -> &'static str {
        match self {
            Patterns::One => "one",
            Patterns::PerObject => "per-object",
        }
    }

    pub fn pattern(self, event_prefix: &str, i: usize) -> String {
        match self {
            Patterns::One => format!("{event_prefix}.fan.>"),
            Patterns::PerObject => format!("{event_prefix}.obj.{i}"),
        }
    }

    /// The name of the `n`th event published for `connections` subscribers.
    pub fn event(self, event_prefix: &str, n: u64, connections: usize) -> String {
        match self {
            Patterns::One => format!("{event_prefix}.fan.tick"),
            Patterns::PerObject => format!("{event_prefix}.obj.{}", n % connections.max(1) as u64),
        }
    }

    /// How many of `connections` receive the `n`th event when connection i filters on group `i % groups`
    /// (`groups` 0 = no filters).
    pub fn receivers(self, n: u64, connections: usize, groups: u32) -> u64 {
        let connections = connections as u64;
        match (self, u64::from(groups)) {
            (Patterns::PerObject, _) => 1,
            (Patterns::One, 0) => connections,
            (Patterns::One, k) => connections / k + u64::from(n % k < connections % k),
        }
    }
}

/// The server-side filter of connection `i` when connections are spread over `groups` filter groups.
pub fn group_filter(i: usize, groups: u32) -> Option<serde_json::Value> {
    (groups > 0).then(|| serde_json::json!({ "g": i as u64 % u64::from(groups) }))
}

/// What a worker is for; sent once as the first line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub url: String,
    pub nats: String,
    pub tokens_bucket: String,
    pub event_prefix: String,
    /// Connections opened at once.
    pub concurrency: usize,
    pub token_ttl: u64,
    /// The worker exits after this many seconds whatever happens.
    pub deadline_secs: u64,
    /// A slow client: tiny receive buffer, and it never reads after `subscribed`.
    pub slow: bool,
    pub read_buffer: usize,
    pub slow_rcvbuf: u32,
    /// `Open` over SSE (`GET /sse`) instead of WebSocket.
    #[serde(default)]
    pub sse: bool,
    /// K > 0: `Open` subscribes connection i with `"presence": true` to the channel [`presence_channel`]`(i, K)`
    /// instead of the pattern.
    #[serde(default)]
    pub presence_channels: u32,
}

/// The presence channel of connection `i` when connections are spread over `channels` channels.
pub fn presence_channel(event_prefix: &str, i: usize, channels: u32) -> String {
    format!("{event_prefix}.presence.{}", i as u64 % u64::from(channels.max(1)))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Cmd {
    /// Mint tokens, then open connections `first..first+count`, each authenticated with one subscription.
    /// With `filter_groups` K > 0, connection i subscribes with the filter `{"g": i % K}`.
    Open {
        first: usize,
        count: usize,
        patterns: Patterns,
        #[serde(default)]
        filter_groups: u32,
    },
    /// Events of `step` received so far.
    Progress {
        step: u32,
    },
    /// Statistics of `step` (and close/error counts since the last report).
    Report {
        step: u32,
    },
    /// Mint tokens for a later `Connect` (minting is not part of the measured connect).
    Mint {
        first: usize,
        count: usize,
    },
    /// Connect with every minted token, `concurrency` at a time; close each at once unless `hold`.
    Connect {
        hold: bool,
        subscribe: Option<Patterns>,
    },
    Stop,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Opened {
    pub ok: u64,
    pub errors: Errors,
    /// Time from dial to `subscribed`, microseconds.
    pub setup: WireHist,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StepReport {
    pub delivered: u64,
    pub latency: WireHist,
    /// Connections the gateway closed with 4008 (too slow).
    pub closed_slow: u64,
    /// Connections closed for any other reason.
    pub closed_other: u64,
    pub errors: Errors,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ConnectReport {
    pub ok: u64,
    pub errors: Errors,
    /// Time from dial to `connected` (or `subscribed`), microseconds.
    pub latency: WireHist,
    /// Wall clock (ns) of the first dial and of the last completed connect.
    pub first_ns: u64,
    pub last_ns: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Opened(Opened),
    Progress { delivered: u64 },
    Report(StepReport),
    Minted { count: usize },
    Connected(ConnectReport),
    Stopped,
    Failed { message: String },
}

/// Events and closes seen by this worker's connections. Sharded so that connections on different threads
/// rarely contend for a lock.
struct Shared {
    shards: Vec<Mutex<HashMap<u32, StepStats>>>,
    closed_slow: AtomicU64,
    closed_other: AtomicU64,
    errors: Mutex<Errors>,
}

struct StepStats {
    delivered: u64,
    latency: Hist,
}

const SHARDS: usize = 16;

impl Shared {
    fn new() -> Self {
        Shared {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            closed_slow: AtomicU64::new(0),
            closed_other: AtomicU64::new(0),
            errors: Mutex::new(Errors::default()),
        }
    }

    fn record(&self, conn: usize, sent_ns: u64, step: u32) {
        let latency_us = client::now_ns().saturating_sub(sent_ns) / 1000;
        let mut shard = self.shards[conn % SHARDS].lock().expect("shard lock");
        let stats = shard.entry(step).or_insert_with(|| StepStats { delivered: 0, latency: new_hist() });
        stats.delivered += 1;
        stats.latency.saturating_record(latency_us.max(1));
    }

    fn delivered(&self, step: u32) -> u64 {
        self.shards.iter().map(|s| s.lock().expect("shard lock").get(&step).map_or(0, |s| s.delivered)).sum()
    }

    fn report(&self, step: u32) -> StepReport {
        let mut latency = new_hist();
        let mut delivered = 0;
        for shard in &self.shards {
            if let Some(stats) = shard.lock().expect("shard lock").remove(&step) {
                delivered += stats.delivered;
                let _ = latency.add(&stats.latency);
            }
        }
        StepReport {
            delivered,
            latency: WireHist::from(&latency),
            closed_slow: self.closed_slow.swap(0, Ordering::Relaxed),
            closed_other: self.closed_other.swap(0, Ordering::Relaxed),
            errors: std::mem::take(&mut *self.errors.lock().expect("errors lock")),
        }
    }

    fn closed(&self, code: Option<u16>) {
        let counter = if code == Some(CLOSE_TOO_SLOW) { &self.closed_slow } else { &self.closed_other };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

struct Worker {
    job: Job,
    endpoint: Endpoint,
    minter: Option<Minter>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    /// Tokens minted for `Connect`.
    tokens: Vec<String>,
    /// Connections kept open by `Connect { hold: true }`.
    held: Arc<Mutex<Vec<Ws>>>,
}

/// Runs a worker process: reads the job and commands on stdin until `Stop`, EOF or the deadline.
pub async fn run() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let first = lines.next_line().await?.context("worker: no job on stdin")?;
    let job: Job = serde_json::from_str(&first).context("worker: bad job")?;
    let deadline = tokio::time::sleep(Duration::from_secs(job.deadline_secs));
    tokio::pin!(deadline);
    let mut worker = Worker {
        endpoint: Endpoint::parse(&job.url)?,
        job,
        minter: None,
        shared: Arc::new(Shared::new()),
        stop: watch::channel(false).0,
        tokens: Vec::new(),
        held: Arc::new(Mutex::new(Vec::new())),
    };
    let mut stdout = tokio::io::stdout();
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line?,
            _ = &mut deadline => anyhow::bail!("worker: deadline of {} s reached", worker.job.deadline_secs),
        };
        let Some(line) = line else { return Ok(()) };
        let cmd: Cmd = serde_json::from_str(&line).context("worker: bad command")?;
        let stop = matches!(cmd, Cmd::Stop);
        let reply = tokio::select! {
            reply = worker.handle(cmd) => reply.unwrap_or_else(|e| Reply::Failed { message: format!("{e:#}") }),
            _ = &mut deadline => anyhow::bail!("worker: deadline of {} s reached", worker.job.deadline_secs),
        };
        let mut out = serde_json::to_vec(&reply)?;
        out.push(b'\n');
        stdout.write_all(&out).await?;
        stdout.flush().await?;
        if stop {
            return Ok(());
        }
    }
}

impl Worker {
    async fn minter(&mut self) -> anyhow::Result<&Minter> {
        if self.minter.is_none() {
            self.minter = Some(Minter::new(&self.job.nats, &self.job.tokens_bucket, self.job.token_ttl).await?);
        }
        Ok(self.minter.as_ref().expect("just set"))
    }

    async fn mint(&mut self, first: usize, count: usize) -> anyhow::Result<Vec<String>> {
        let allow = format!("{}.>", self.job.event_prefix);
        let parallel = self.job.concurrency * 4;
        self.minter().await?.mint("bench-", first, count, &allow, parallel).await
    }

    fn dial(&self) -> Dial {
        Dial { read_buffer: self.job.read_buffer, rcvbuf: self.job.slow.then_some(self.job.slow_rcvbuf) }
    }

    async fn handle(&mut self, cmd: Cmd) -> anyhow::Result<Reply> {
        Ok(match cmd {
            Cmd::Open { first, count, patterns, filter_groups } => {
                Reply::Opened(self.open(first, count, patterns, filter_groups).await?)
            }
            Cmd::Progress { step } => Reply::Progress { delivered: self.shared.delivered(step) },
            Cmd::Report { step } => Reply::Report(self.shared.report(step)),
            Cmd::Mint { first, count } => {
                self.tokens = self.mint(first, count).await?;
                Reply::Minted { count: self.tokens.len() }
            }
            Cmd::Connect { hold, subscribe } => Reply::Connected(self.connect(hold, subscribe).await),
            Cmd::Stop => {
                let _ = self.stop.send(true);
                Reply::Stopped
            }
        })
    }

    /// Opens and keeps `count` subscribed connections; each then reads events until the worker stops.
    async fn open(&mut self, first: usize, count: usize, patterns: Patterns, groups: u32) -> anyhow::Result<Opened> {
        let tokens = self.mint(first, count).await?;
        let dial = self.dial();
        let endpoint = &self.endpoint;
        let prefix = &self.job.event_prefix;
        let (sse, presence) = (self.job.sse, self.job.presence_channels);
        if sse && (groups > 0 || presence > 0) {
            anyhow::bail!("SSE connections subscribe without filters or presence");
        }
        let results: Vec<_> = stream::iter(tokens.into_iter().enumerate())
            .map(|(k, token)| async move {
                let i = first + k;
                let start = Instant::now();
                let opened = if sse {
                    client::open_sse(endpoint, &token, &patterns.pattern(prefix, i)).await.map(Conn::Sse)
                } else {
                    let subscription = if presence > 0 {
                        Subscription { pattern: presence_channel(prefix, i, presence), filter: None, presence: true }
                    } else {
                        Subscription {
                            pattern: patterns.pattern(prefix, i),
                            filter: group_filter(i, groups),
                            presence: false,
                        }
                    };
                    open_one(endpoint, dial, &token, Some(subscription)).await.map(|ws| Conn::Ws(Box::new(ws)))
                };
                (i, opened, start.elapsed())
            })
            .buffer_unordered(self.job.concurrency.max(1))
            .collect()
            .await;
        let mut opened = Opened::default();
        let mut setup = new_hist();
        for (i, ws, took) in results {
            match ws {
                Ok(Conn::Sse(socket)) => {
                    opened.ok += 1;
                    setup.saturating_record(took.as_micros() as u64);
                    let reader = SseReader { buf: vec![0; self.job.read_buffer.max(512)], pending: Vec::new() };
                    tokio::spawn(serve_sse(socket, reader, i, self.shared.clone(), self.stop.subscribe()));
                }
                Ok(Conn::Ws(ws)) => {
                    let ws = *ws;
                    opened.ok += 1;
                    setup.saturating_record(took.as_micros() as u64);
                    let stop = self.stop.subscribe();
                    if self.job.slow {
                        tokio::spawn(hold_unread(ws, stop));
                    } else {
                        tokio::spawn(serve(ws, i, self.shared.clone(), stop));
                    }
                }
                Err(e) => opened.errors.add(format!("{e:#}")),
            }
        }
        opened.setup = WireHist::from(&setup);
        Ok(opened)
    }

    /// Connects with every minted token, `concurrency` at a time, and times each connect.
    async fn connect(&mut self, hold: bool, subscribe: Option<Patterns>) -> ConnectReport {
        let tokens = std::mem::take(&mut self.tokens);
        let next = AtomicUsize::new(0);
        let report = Mutex::new((ConnectReport { first_ns: client::now_ns(), ..Default::default() }, new_hist()));
        let dial = self.dial();
        let (endpoint, prefix, held) = (&self.endpoint, &self.job.event_prefix, &self.held);
        let lane = || async {
            while let Some(token) = tokens.get(next.fetch_add(1, Ordering::Relaxed)) {
                let start = Instant::now();
                let subscription =
                    subscribe.map(|p| Subscription { pattern: p.pattern(prefix, 0), filter: None, presence: false });
                let result = open_one(endpoint, dial, token, subscription).await;
                let took = start.elapsed();
                let ws = {
                    let mut report = report.lock().expect("report lock");
                    match result {
                        Ok(ws) => {
                            report.0.ok += 1;
                            report.0.last_ns = client::now_ns();
                            report.1.saturating_record(took.as_micros() as u64);
                            ws
                        }
                        Err(e) => {
                            report.0.errors.add(format!("{e:#}"));
                            continue;
                        }
                    }
                };
                if hold {
                    held.lock().expect("held lock").push(ws);
                } else {
                    let mut ws = ws;
                    let _ = ws.close(None).await;
                }
            }
        };
        futures_util::future::join_all((0..self.job.concurrency.max(1)).map(|_| lane())).await;
        let (mut report, latency) = report.into_inner().expect("report lock");
        report.latency = WireHist::from(&latency);
        report
    }
}

/// What a connection subscribes to after `connect`.
pub struct Subscription {
    pub pattern: String,
    pub filter: Option<serde_json::Value>,
    /// Be present on `pattern` (a channel: no wildcards).
    pub presence: bool,
}

/// Dials, authenticates and (optionally) subscribes one connection.
pub async fn open_one(
    endpoint: &Endpoint,
    dial: Dial,
    token: &str,
    subscription: Option<Subscription>,
) -> anyhow::Result<Ws> {
    let mut ws = client::dial(endpoint, dial).await?;
    client::authenticate(&mut ws, token).await?;
    if let Some(s) = subscription {
        client::subscribe(&mut ws, &s.pattern, s.filter, s.presence).await?;
    }
    Ok(ws)
}

/// A fast client: reads every frame, records bench events, answers heartbeats.
async fn serve(mut ws: Ws, conn: usize, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let message = tokio::select! {
            _ = stop.changed() => return,
            message = ws.next() => message,
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                if let Some((sent_ns, step)) = client::event_stamp(text.as_str()) {
                    shared.record(conn, sent_ns, step);
                } else if text.as_str().contains(r#""type":"ping""#) && ws.send(Message::text(PONG)).await.is_err() {
                    shared.closed(None);
                    return;
                }
            }
            Some(Ok(Message::Close(frame))) => return shared.closed(frame.map(|f| u16::from(f.code))),
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                shared.errors.lock().expect("errors lock").add(client::short_ws_error(&e));
                return shared.closed(None);
            }
            None => return shared.closed(None),
        }
    }
}

/// A connection `Open` made.
enum Conn {
    Ws(Box<Ws>),
    /// The socket of an SSE response.
    Sse(tokio::net::TcpStream),
}

/// The read side of one SSE client: its read buffer and the bytes of a line not complete yet.
struct SseReader {
    buf: Vec<u8>,
    pending: Vec<u8>,
}

/// A fast SSE client: reads the `text/event-stream` response (PROTOCOL.md section 10.1), takes each `data:`
/// line as one frame and records bench events as [`serve`] does; `event: close` ends it with the close code in
/// the data that follows. The response is chunked, and the gateway writes whole SSE messages per chunk, so the
/// chunk-size lines between messages never split a `data:` line: they are skipped as other lines are. It does
/// not answer heartbeats (that takes a POST to the stream's `post` path): runs set `heartbeat` above their length.
async fn serve_sse(
    mut socket: tokio::net::TcpStream,
    mut reader: SseReader,
    conn: usize,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut closing = false;
    loop {
        let read = tokio::select! {
            _ = stop.changed() => return,
            read = socket.read(&mut reader.buf) => read,
        };
        let n = match read {
            Ok(0) => return shared.closed(None),
            Ok(n) => n,
            Err(e) => {
                shared.errors.lock().expect("errors lock").add(format!("SSE read: {}", e.kind()));
                return shared.closed(None);
            }
        };
        reader.pending.extend_from_slice(&reader.buf[..n]);
        let Some(end) = reader.pending.iter().rposition(|&b| b == b'\n') else { continue };
        for line in reader.pending[..end].split(|&b| b == b'\n') {
            if line == b"event: close" {
                closing = true;
            }
            let Some(frame) = line.strip_prefix(b"data: ").and_then(|f| std::str::from_utf8(f).ok()) else {
                continue;
            };
            if closing {
                return shared.closed(sse_close_code(frame));
            }
            if let Some((sent_ns, step)) = client::event_stamp(frame) {
                shared.record(conn, sent_ns, step);
            }
        }
        reader.pending.drain(..=end);
    }
}

/// The close code in the data of an SSE `event: close` (`{"code":4008,"reason":"..."}`).
fn sse_close_code(data: &str) -> Option<u16> {
    serde_json::from_str::<serde_json::Value>(data).ok()?["code"].as_u64().and_then(|c| u16::try_from(c).ok())
}

/// The slow client: keeps the socket open and never reads it again.
async fn hold_unread(ws: Ws, mut stop: watch::Receiver<bool>) {
    let _ = stop.changed().await;
    drop(ws);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_match_the_filter_groups() {
        // 10 connections over 3 groups: groups 0, 1, 2 hold 4, 3, 3 connections.
        let counted: Vec<u64> =
            (0..3).map(|n| (0..10).filter(|i| group_filter(*i, 3).unwrap()["g"] == n).count() as u64).collect();
        assert_eq!(counted, vec![4, 3, 3]);
        assert_eq!((0..3).map(|n| Patterns::One.receivers(n, 10, 3)).collect::<Vec<_>>(), counted);
        assert_eq!(Patterns::One.receivers(5, 10, 0), 10);
        assert_eq!(Patterns::PerObject.receivers(5, 10, 0), 1);
        assert!(group_filter(1, 0).is_none());
    }

    #[test]
    fn presence_channels_spread_connections_round_robin() {
        assert_eq!(presence_channel("bench", 0, 1000), "bench.presence.0");
        assert_eq!(presence_channel("bench", 1001, 1000), "bench.presence.1");
        assert_eq!(presence_channel("bench", 7, 1), "bench.presence.0");
    }

    #[test]
    fn sse_close_codes_are_read_from_the_close_data() {
        assert_eq!(sse_close_code(r#"{"code":4008,"reason":"too slow"}"#), Some(CLOSE_TOO_SLOW));
        assert_eq!(sse_close_code(r#"{"reason":"x"}"#), None);
        assert_eq!(sse_close_code("not json"), None);
    }
}
