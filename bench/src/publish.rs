//! `publish`: client publish fan-out (PROTOCOL.md section 13.1, issue 22). P publisher connections, each with
//! a token granting `<event_prefix>.room.>` (`publish_ephemeral` or `publish`), send `publish` frames of
//! `<event_prefix>.room.typing` at a total target rate; S subscriber connections subscribed to
//! `<event_prefix>.room.>` receive them as `event` frames with the sender (`from`) the gateway added.
//!
//! Two phases run in one process against the same subscribers: 1 = client publish (data
//! `{"t":<ns>,"s":1,...}` in the frame), 2 = the same rate of the same event published server-side on
//! `<subject_prefix>.<event>` straight to NATS, like `fanout` (skip it with --no-nats-phase; run it first with
//! --nats-first). Each phase publishes for --duration seconds, then waits until every expected delivery arrived
//! (published x S) or nothing arrived for a second, bounded by --drain. Reported per phase: publishes/s, the `published` ack's
//! round trip (client phase), refusals by code, deliveries/s, lost, publish -> delivery latency, how many client
//! events carried `from` (and NATS events none), and the CPU of the gateway, nats-server and the bench.
//!
//! The gateway's client publish rate limits must be raised for a rate over 10/s per publisher:
//! `TELEGRAPHY_CLIENT_PUBLISH__REQUESTS_PER_SECOND`, `..._REQUEST_BURST` and the general
//! `TELEGRAPHY_LIMITS__REQUESTS_PER_SECOND=0` (bench/README.md shows the command).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::Args;
use futures_util::{stream, SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use telegraphy::protocol::token::Grants;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::{
    client::{self, Dial, Ws, PONG},
    report::{num, Outcome, Table},
    stats::{new_hist, Errors, Hist, Latency},
    target::{self, percent_cell, CpuUse},
    tokens::Minter,
    Common,
};

/// Phase numbers, carried as the `s` of every event's data.
const CLIENT: u32 = 1;
const SERVER: u32 = 2;

/// How the publishers' events go out (the grant their tokens carry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// `publish_ephemeral`: never stored (with history on, straight to the live subject).
    Ephemeral,
    /// `publish`: stored like any event (with history on, through the stream).
    Stored,
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    #[command(flatten)]
    pub common: Common,
    /// Publisher connections (each its own user), sharing --rate.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub publishers: u64,
    /// Subscriber connections (each its own user), all on `<event_prefix>.room.>`.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub subscribers: u64,
    /// Publishes per second in total, in each phase.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Size of each event's JSON data in bytes (timestamp plus padding; at least ~60).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub size: u64,
    /// Seconds of publishing per phase.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration: u64,
    /// Most seconds to wait after a phase for deliveries and acks still in flight.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub drain: u64,
    /// The publishers' grant.
    #[arg(long, value_enum, default_value_t = Kind::Ephemeral)]
    pub kind: Kind,
    /// Run only the client publish phase (no server-side comparison).
    #[arg(long)]
    pub no_nats_phase: bool,
    /// Run the server-side NATS phase before the client publish phase (to see whether the order matters).
    #[arg(long)]
    pub nats_first: bool,
    /// Count lost deliveries, refused publishes and events with a wrong `from` as errors (exit status 1).
    #[arg(long)]
    pub strict: bool,
}

impl PublishArgs {
    fn event(&self) -> String {
        format!("{}.room.typing", self.common.event_prefix)
    }

    fn pattern(&self) -> String {
        format!("{}.room.>", self.common.event_prefix)
    }
}

/// Counters the subscribers update as events arrive, read by the coordinator to know when a phase drained.
#[derive(Default)]
struct Arrivals {
    delivered: [AtomicU64; 3],
}

/// What one subscriber saw, per phase (index = phase).
struct Seen {
    hists: [Hist; 3],
    with_from: [u64; 3],
    /// Event frames whose data has no bench stamp or an unknown phase.
    unexpected: u64,
}

/// What one publisher saw in the client phase.
struct Sent {
    sent: u64,
    acked: u64,
    acks: Hist,
    refused: BTreeMap<String, u64>,
    /// Publishes with neither an ack nor an error by the end of the drain.
    unanswered: u64,
}

/// One phase's figures.
#[derive(Debug, Serialize)]
struct Phase {
    phase: &'static str,
    target_rate: f64,
    published: u64,
    publish_rate: f64,
    refused: BTreeMap<String, u64>,
    unanswered: u64,
    ack: Option<Latency>,
    expected: u64,
    delivered: u64,
    delivered_per_s: f64,
    lost: u64,
    with_from: u64,
    latency: Latency,
    cpu_percent: CpuUse,
    /// The gateway threads' voluntary context switches during the phase per delivered frame (lower = more frames
    /// handled per wake-up).
    gateway_sleeps_per_delivery: Option<f64>,
}

pub async fn run(args: &PublishArgs) -> anyhow::Result<Outcome> {
    let common = &args.common;
    let endpoint = common.endpoint()?;
    target::wait_ready(endpoint.addr, Duration::from_secs(15)).await?;
    let minter = Minter::new(&common.nats, &common.tokens_bucket, common.token_ttl).await?;
    let allow = format!("{}.>", common.event_prefix);
    let dial = Dial { read_buffer: common.read_buffer, rcvbuf: None };

    // Subscribers first, all subscribed before anything is published.
    let tokens = minter.mint("bench-sub-", 0, args.subscribers as usize, &allow, 32).await?;
    let opened: Vec<anyhow::Result<Ws>> = stream::iter(tokens)
        .map(|token| {
            let (endpoint, pattern) = (endpoint.clone(), args.pattern());
            async move {
                let mut ws = client::dial(&endpoint, dial).await?;
                client::authenticate(&mut ws, &token).await?;
                client::subscribe(&mut ws, &pattern, None, false).await?;
                anyhow::Ok(ws)
            }
        })
        .buffer_unordered(usize::from(common.concurrency))
        .collect()
        .await;
    let mut open_errors = Errors::default();
    let mut subscribers = Vec::new();
    for ws in opened {
        match ws {
            Ok(ws) => subscribers.push(ws),
            Err(e) => open_errors.add(format!("{e:#}")),
        }
    }
    if open_errors.count > 0 {
        bail!("{} subscriber(s) failed to open: {}", open_errors.count, open_errors.samples.join("; "));
    }
    let arrivals = Arc::new(Arrivals::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let readers: Vec<_> =
        subscribers.into_iter().map(|ws| tokio::spawn(subscriber(ws, arrivals.clone(), stop_rx.clone()))).collect();

    // Publishers.
    let grant = vec![args.pattern()];
    let grants = match args.kind {
        Kind::Ephemeral => Grants { publish_ephemeral: grant, ..Grants::default() },
        Kind::Stored => Grants { publish: grant, ..Grants::default() },
    };
    let mut publishers = Vec::new();
    for i in 0..args.publishers {
        let token = minter.mint_with_grants(&format!("bench-pub-{i}"), &allow, grants.clone()).await?;
        let mut ws = client::dial(&endpoint, dial).await?;
        client::authenticate(&mut ws, &token).await.context("publisher connect")?;
        publishers.push(ws);
    }

    // The phases in the asked order; with --nats-first the server-side one runs first (warm-up effects).
    let mut phases = Vec::new();
    if args.nats_first && !args.no_nats_phase {
        phases.push(nats_phase(args, &arrivals).await?);
    }
    phases.push(client_phase(args, publishers, &arrivals).await?);
    if !args.nats_first && !args.no_nats_phase {
        phases.push(nats_phase(args, &arrivals).await?);
    }

    let _ = stop_tx.send(true);
    let mut seen = Vec::new();
    for reader in readers {
        seen.push(reader.await??);
    }
    let phases: Vec<Phase> = phases
        .into_iter()
        .map(|p| {
            let index = if p.ack.is_some() { CLIENT } else { SERVER } as usize;
            let mut hist = new_hist();
            for s in &seen {
                let _ = hist.add(&s.hists[index]);
            }
            let delivered = hist.len();
            let secs = args.duration as f64;
            Phase {
                phase: p.phase,
                target_rate: p.target_rate,
                published: p.published,
                publish_rate: p.publish_rate,
                refused: p.refused,
                unanswered: p.unanswered,
                ack: p.ack,
                expected: p.expected,
                delivered,
                delivered_per_s: delivered as f64 / secs,
                lost: p.expected.saturating_sub(delivered),
                with_from: seen.iter().map(|s| s.with_from[index]).sum(),
                latency: Latency::of(&hist),
                cpu_percent: p.cpu,
                gateway_sleeps_per_delivery: p.gateway_sleeps.map(|w| w as f64 / delivered.max(1) as f64),
            }
        })
        .collect();
    let unexpected: u64 = seen.iter().map(|s| s.unexpected).sum();
    report(args, phases, unexpected)
}

/// Phase 1: the publishers send `publish` frames at --rate in total for --duration, then the deliveries drain.
async fn client_phase(args: &PublishArgs, publishers: Vec<Ws>, arrivals: &Arrivals) -> anyhow::Result<PhaseStart> {
    let cpu = args.common.cpu_meters(vec![]);
    let sleeps = args.common.gateway_pid.and_then(sleeps);
    let rate_each = args.rate / args.publishers as f64;
    let tasks: Vec<_> = publishers
        .into_iter()
        .enumerate()
        .map(|(i, ws)| {
            let event = args.event();
            let (duration, drain, size) = (Duration::from_secs(args.duration), args.drain, args.size as usize);
            // Publishers start spread over one ticker period, so their frames do not leave in lockstep.
            let stagger = Duration::from_micros(1000 * i as u64 / args.publishers);
            tokio::spawn(publisher(ws, i as u64, event, rate_each, duration, drain, size, stagger))
        })
        .collect();
    let mut sent = Vec::new();
    for task in tasks {
        sent.push(task.await??);
    }
    let published: u64 = sent.iter().map(|s| s.acked).sum();
    let expected = published * args.subscribers;
    drain(arrivals, CLIENT, expected, args.drain).await;
    let cpu_use = cpu.read();
    let sleeps = sleeps_since(args, sleeps);
    let mut acks = new_hist();
    let mut refused = BTreeMap::new();
    for s in &sent {
        acks.add(&s.acks).context("merging ack histograms")?;
        for (code, n) in &s.refused {
            *refused.entry(code.clone()).or_insert(0) += n;
        }
    }
    let attempted: u64 = sent.iter().map(|s| s.sent).sum();
    Ok(PhaseStart {
        phase: "client publish",
        target_rate: args.rate,
        published,
        publish_rate: attempted as f64 / args.duration as f64,
        refused,
        unanswered: sent.iter().map(|s| s.unanswered).sum(),
        ack: Some(Latency::of(&acks)),
        expected,
        cpu: cpu_use,
        gateway_sleeps: sleeps,
    })
}

/// Phase 2: the same rate of the same event published server-side on NATS, like `fanout`.
async fn nats_phase(args: &PublishArgs, arrivals: &Arrivals) -> anyhow::Result<PhaseStart> {
    let nats = async_nats::connect(&args.common.nats).await.context("connecting to NATS")?;
    let subject = format!("{}.{}", args.common.subject_prefix, args.event());
    let cpu = args.common.cpu_meters(vec![]);
    let sleeps = args.common.gateway_pid.and_then(sleeps);
    let (published, secs) = publish_nats(&nats, subject, args.rate, args.duration, args.size as usize).await?;
    let expected = published * args.subscribers;
    drain(arrivals, SERVER, expected, args.drain).await;
    Ok(PhaseStart {
        phase: "NATS publish (server)",
        target_rate: args.rate,
        published,
        publish_rate: published as f64 / secs,
        refused: BTreeMap::new(),
        unanswered: 0,
        ack: None,
        expected,
        cpu: cpu.read(),
        gateway_sleeps: sleeps_since(args, sleeps),
    })
}

/// A phase's figures known before the subscribers' histograms are gathered.
struct PhaseStart {
    phase: &'static str,
    target_rate: f64,
    published: u64,
    publish_rate: f64,
    refused: BTreeMap<String, u64>,
    unanswered: u64,
    ack: Option<Latency>,
    expected: u64,
    cpu: CpuUse,
    gateway_sleeps: Option<u64>,
}

fn report(args: &PublishArgs, phases: Vec<Phase>, unexpected: u64) -> anyhow::Result<Outcome> {
    let mut table = Table::new(
        format!(
            "publish: {} publisher(s) -> {} subscriber(s) of {}, {} event {}, {} events/s for {} s per phase, {} B data",
            args.publishers,
            args.subscribers,
            args.pattern(),
            match args.kind {
                Kind::Ephemeral => "ephemeral",
                Kind::Stored => "stored",
            },
            args.event(),
            num(args.rate, 0),
            args.duration,
            args.size
        ),
        vec![
            "phase",
            "published",
            "pub/s",
            "refused",
            "ack p50 ms",
            "ack p99 ms",
            "delivered",
            "deliv/s",
            "lost",
            "p50 ms",
            "p99 ms",
            "p999 ms",
            "max ms",
            "with from",
            "gw CPU%",
            "nats CPU%",
            "bench CPU%",
            "gw sleeps/frame",
        ],
    );
    let mut errors = 0;
    for p in &phases {
        let refused: u64 = p.refused.values().sum();
        let wrong_from = if p.ack.is_some() { p.delivered - p.with_from } else { p.with_from };
        if args.strict {
            errors += p.lost + refused + p.unanswered + wrong_from;
        }
        table.row(vec![
            p.phase.to_string(),
            p.published.to_string(),
            num(p.publish_rate, 0),
            if p.refused.is_empty() {
                "0".into()
            } else {
                p.refused.iter().map(|(c, n)| format!("{c}:{n}")).collect::<Vec<_>>().join(",")
            },
            p.ack.as_ref().map_or("-".into(), |a| num(a.p50_ms, 2)),
            p.ack.as_ref().map_or("-".into(), |a| num(a.p99_ms, 2)),
            p.delivered.to_string(),
            num(p.delivered_per_s, 0),
            p.lost.to_string(),
            num(p.latency.p50_ms, 2),
            num(p.latency.p99_ms, 2),
            num(p.latency.p999_ms, 2),
            num(p.latency.max_ms, 2),
            p.with_from.to_string(),
            percent_cell(p.cpu_percent.gateway),
            percent_cell(p.cpu_percent.nats),
            percent_cell(Some(p.cpu_percent.bench)),
            p.gateway_sleeps_per_delivery.map_or("-".into(), |w| num(w, 4)),
        ]);
    }
    if args.strict {
        errors += unexpected;
    }
    let notes = vec![
        "pub/s = publishes sent/s (client phase: frames sent, `published` = acked); deliv/s = event frames received \
         by all subscribers / --duration; latency = publish (timestamp in data) -> subscriber; with from = event \
         frames carrying the gateway's `from` (all of the client phase's, none of the NATS phase's)."
            .to_string(),
    ];
    let json = json!({
        "scenario": "publish",
        "params": {
            "publishers": args.publishers, "subscribers": args.subscribers, "rate": args.rate,
            "duration": args.duration, "size": args.size,
            "kind": match args.kind { Kind::Ephemeral => "ephemeral", Kind::Stored => "stored" },
        },
        "phases": phases,
        "unexpected": unexpected,
    });
    Ok(Outcome { tables: vec![table], notes, json, errors })
}

/// The voluntary context switches of all threads of process `pid` so far (None if unreadable): each is a thread
/// going to sleep for lack of work, so fewer per delivered frame means more frames handled per wake-up.
fn sleeps(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

/// The gateway's voluntary context switches since `before`.
fn sleeps_since(args: &PublishArgs, before: Option<u64>) -> Option<u64> {
    Some(args.common.gateway_pid.and_then(sleeps)?.saturating_sub(before?))
}

/// Waits until `expected` events of `phase` arrived, or nothing arrived for a second, or `limit` seconds passed.
async fn drain(arrivals: &Arrivals, phase: u32, expected: u64, limit: u64) {
    let end = Instant::now() + Duration::from_secs(limit);
    let count = || arrivals.delivered[phase as usize].load(Ordering::Relaxed);
    let (mut last, mut last_change) = (count(), Instant::now());
    while count() < expected && Instant::now() < end && last_change.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = count();
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
    }
}

/// One subscriber: reads event frames until told to stop, recording each one's latency by phase.
async fn subscriber(mut ws: Ws, arrivals: Arc<Arrivals>, mut stop: watch::Receiver<bool>) -> anyhow::Result<Seen> {
    let mut seen = Seen { hists: [new_hist(), new_hist(), new_hist()], with_from: [0; 3], unexpected: 0 };
    loop {
        let message = tokio::select! {
            biased;
            _ = stop.changed() => break,
            message = ws.next() => message,
        };
        let Some(message) = message else { bail!("subscriber connection closed") };
        match message.map_err(|e| anyhow::anyhow!("subscriber: {}", client::short_ws_error(&e)))? {
            Message::Text(text) => {
                if text.starts_with(r#"{"type":"ping""#) {
                    ws.send(Message::text(PONG)).await?;
                    continue;
                }
                match client::event_stamp(&text) {
                    Some((t, phase)) if phase == CLIENT || phase == SERVER => {
                        let us = client::now_ns().saturating_sub(t) / 1000;
                        let _ = seen.hists[phase as usize].record(us.max(1));
                        // `from` follows `data` (PROTOCOL.md section 13.1); the bench's data holds no `"from"`.
                        if text.contains(r#","from":{"user":"#) {
                            seen.with_from[phase as usize] += 1;
                        }
                        arrivals.delivered[phase as usize].fetch_add(1, Ordering::Relaxed);
                    }
                    _ if text.starts_with(r#"{"type":"event""#) => seen.unexpected += 1,
                    _ => {}
                }
            }
            Message::Close(frame) => bail!("subscriber closed: {}", frame.map_or(0, |f| u16::from(f.code))),
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    Ok(seen)
}

/// One publisher (after `stagger`): `publish` frames at `rate` per second for `duration` (a 1 ms ticker sends what is due), and
/// the `published` acks (matched by id) or `error`s, read meanwhile and then until all are answered or
/// `drain` seconds passed.
#[allow(clippy::too_many_arguments)]
async fn publisher(
    mut ws: Ws,
    index: u64,
    event: String,
    rate: f64,
    duration: Duration,
    drain: u64,
    size: usize,
    stagger: Duration,
) -> anyhow::Result<Sent> {
    tokio::time::sleep(stagger).await;
    let mut out = Sent { sent: 0, acked: 0, acks: new_hist(), refused: BTreeMap::new(), unanswered: 0 };
    let mut pending: HashMap<u64, Instant> = HashMap::new();
    let start = Instant::now();
    let end = start + duration + Duration::from_secs(drain);
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sending = true;
    while sending || !pending.is_empty() {
        tokio::select! {
            _ = ticker.tick(), if sending => {
                let elapsed = start.elapsed();
                let due = ((rate * elapsed.min(duration).as_secs_f64()) as u64).max(out.sent);
                while out.sent < due {
                    out.sent += 1;
                    let id = out.sent;
                    let data = client::payload(client::now_ns(), CLIENT, index << 32 | id, None, size);
                    let frame = format!(
                        r#"{{"type":"publish","id":{id},"event":"{event}","data":{}}}"#,
                        String::from_utf8_lossy(&data)
                    );
                    pending.insert(id, Instant::now());
                    ws.send(Message::text(frame)).await.context("sending publish")?;
                }
                sending = elapsed < duration;
            }
            message = ws.next() => {
                let Some(message) = message else { bail!("publisher connection closed") };
                let Message::Text(text) = message.map_err(|e| anyhow::anyhow!("publisher: {}", client::short_ws_error(&e)))? else {
                    continue;
                };
                let frame: Value = serde_json::from_str(&text).context("gateway sent a non-JSON frame")?;
                let id = frame["id"].as_u64();
                match frame["type"].as_str() {
                    Some("ping") => ws.send(Message::text(PONG)).await?,
                    Some("published") => {
                        if let Some(sent_at) = id.and_then(|id| pending.remove(&id)) {
                            out.acked += 1;
                            let _ = out.acks.record((sent_at.elapsed().as_micros() as u64).max(1));
                        }
                    }
                    Some("error") => {
                        id.and_then(|id| pending.remove(&id));
                        *out.refused.entry(frame["code"].as_str().unwrap_or("?").to_string()).or_insert(0) += 1;
                    }
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(end.into()) => break,
        }
    }
    out.unanswered = pending.len() as u64;
    let _ = ws.close(None).await;
    Ok(out)
}

/// Publishes the phase-2 events on NATS at `rate` per second for `duration` seconds; returns how many and over
/// how long.
async fn publish_nats(
    nats: &async_nats::Client,
    subject: String,
    rate: f64,
    duration: u64,
    size: usize,
) -> anyhow::Result<(u64, f64)> {
    let subject = async_nats::Subject::from(subject);
    crate::fanout::publish_paced(nats, rate, duration, |sent| {
        (subject.clone(), client::payload(client::now_ns(), SERVER, sent, None, size).into())
    })
    .await
}
