//! `fanout` and `slow`: events with a publish timestamp go through NATS (and the history stream, when the
//! gateway has it on) to subscribed connections; clients take the end-to-end latency from the timestamp.
//!
//! A run is a series of steps. Each step publishes at a fixed rate for `--duration` seconds (event data
//! `{"t":<ns>,"s":<step>,...}`), then waits until every expected event has arrived or nothing more arrives
//! (bounded by `--drain`), then gathers the clients' histograms. Expected deliveries = published x receivers
//! per event; the rest are counted lost.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use async_nats::Subject;
use clap::Args;
use serde::Serialize;
use serde_json::json;

use crate::{
    client,
    pool::{split, Pool},
    report::{num, Outcome, Table},
    stats::{new_hist, Errors, Latency},
    target::{self, percent_cell, CpuUse, Scrape},
    worker::{Cmd, Job, Patterns, Reply},
    Common,
};

/// The load of a step, shared by `fanout` and `slow`.
#[derive(Args, Debug)]
pub struct Load {
    /// Subscribed (fast) connections.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub connections: u64,
    /// Events published per second in total (the start rate with --find-max).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Size of each event's JSON data in bytes (timestamp plus padding; at least ~60).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub size: u64,
    /// Seconds of publishing per step.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration: u64,
    /// Most seconds to wait after a step for events still in flight before counting them lost.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub drain: u64,
    /// Count lost events and closed fast clients as errors (exit status 1), e.g. for smoke runs.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Args, Debug)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub load: Load,
    /// One shared pattern (each event reaches every connection) or one pattern per connection (each event
    /// reaches one connection; the gateway holds one NATS subscription per connection).
    #[arg(long, value_enum, default_value_t = Patterns::One)]
    pub patterns: Patterns,
    /// With one pattern: spread connections over K server-side filter groups (connection i subscribes with
    /// `"filter":{"g": i % K}`, event n carries `"g": n % K`), so each event reaches about N/K connections and
    /// the gateway evaluates K distinct filters per event. 0 = no filters.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub filter_groups: u32,
    /// Open the connections over SSE (`GET /sse` on the `--url`'s address, PROTOCOL.md section 10.1) instead of
    /// WebSocket; events arrive as `data:` lines. The clients do not answer heartbeats: give the gateway a
    /// `heartbeat` longer than the run (TELEGRAPHY_HEARTBEAT=600). Not with --filter-groups.
    #[arg(long)]
    pub sse: bool,
    /// Step the rate to find the highest one whose p99 stays within --p99-budget-ms with nothing lost.
    #[arg(long)]
    pub find_max: bool,
    /// With --find-max: rate multiplier between steps until a step fails (then the search bisects).
    #[arg(long, default_value_t = 2.0)]
    pub step_factor: f64,
    /// With --find-max: most steps.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=30))]
    pub max_steps: u32,
    /// With --find-max: never publish faster than this (events/s).
    #[arg(long, default_value_t = 200_000.0)]
    pub max_rate: f64,
    /// p99 latency budget of a passing step, milliseconds.
    #[arg(long, default_value_t = 25.0)]
    pub p99_budget_ms: f64,
}

#[derive(Args, Debug)]
pub struct SlowArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub load: Load,
    /// SO_RCVBUF of the slow client's socket, bytes (small, so the gateway notices it soon).
    #[arg(long, default_value_t = 4096)]
    pub slow_rcvbuf: u32,
}

/// One step's figures.
#[derive(Clone, Debug, Serialize)]
struct Step {
    step: u32,
    target_rate: f64,
    published: u64,
    publish_rate: f64,
    expected: u64,
    delivered: u64,
    delivered_per_s: f64,
    lost: u64,
    /// Frames beyond the expected count (duplicates, or events a filter should have dropped).
    unexpected: u64,
    latency: Latency,
    closed_slow: u64,
    closed_other: u64,
    errors: Errors,
    cpu_percent: CpuUse,
    gateway_rss_kb: Option<u64>,
    gateway_frames_out: u64,
    gateway_slow_disconnects: u64,
    /// Seconds into the step when the gateway first counted a slow disconnect (polled every 100 ms).
    first_slow_disconnect_s: Option<f64>,
    nats_slow_consumers: u64,
}

impl Step {
    fn passes(&self, p99_budget_ms: f64) -> bool {
        self.latency.p99_ms <= p99_budget_ms
            && self.lost == 0
            && self.unexpected == 0
            && self.closed_slow + self.closed_other == 0
            && self.errors.count == 0
            && self.publish_rate >= 0.95 * self.target_rate
    }

    fn cells(&self, verdict: &str) -> Vec<String> {
        vec![
            self.step.to_string(),
            num(self.target_rate, 0),
            num(self.publish_rate, 0),
            num(self.delivered_per_s, 0),
            num(self.latency.p50_ms, 2),
            num(self.latency.p99_ms, 2),
            num(self.latency.p999_ms, 2),
            num(self.latency.max_ms, 1),
            self.lost.to_string(),
            format!("{}/{}", self.closed_slow, self.gateway_slow_disconnects),
            percent_cell(self.cpu_percent.gateway),
            percent_cell(self.cpu_percent.nats),
            num(self.cpu_percent.bench, 0),
            verdict.to_string(),
        ]
    }
}

const HEADERS: [&str; 14] = [
    "step",
    "rate",
    "pub/s",
    "deliv/s",
    "p50 ms",
    "p99 ms",
    "p999 ms",
    "max ms",
    "lost",
    "slow cl/gw",
    "gw CPU%",
    "nats CPU%",
    "bench CPU%",
    "",
];

/// Open connections plus a publisher.
struct Bench<'a> {
    common: &'a Common,
    load: &'a Load,
    pool: Pool,
    /// Other processes whose CPU counts as the bench's (the slow client).
    extra_pids: Vec<u32>,
    nats: async_nats::Client,
    addr: SocketAddr,
    patterns: Patterns,
    filter_groups: u32,
    /// Fast connections still open.
    live: u64,
    subjects: Vec<Subject>,
}

impl<'a> Bench<'a> {
    async fn setup(
        common: &'a Common,
        load: &'a Load,
        patterns: Patterns,
        filter_groups: u32,
        sse: bool,
    ) -> anyhow::Result<(Bench<'a>, serde_json::Value)> {
        if load.rate <= 0.0 || !load.rate.is_finite() {
            bail!("--rate must be positive");
        }
        if filter_groups > 0 && patterns != Patterns::One {
            bail!("--filter-groups needs --patterns one");
        }
        if filter_groups > 0 && sse {
            bail!("--filter-groups is not available with --sse");
        }
        let connections = load.connections as usize;
        if connections / usize::from(common.workers) > 19_000 {
            bail!("--workers {}: a worker would hold more than 19000 sockets; use more workers", common.workers);
        }
        let mut pool = common.pool_for(&Job { sse, ..common.job(false, 0) }).await?;
        let nats = async_nats::connect(&common.nats).await.context("connecting to NATS")?;
        let start = Instant::now();
        let cmds = split(0, connections, pool.len())
            .into_iter()
            .map(|(first, count)| Cmd::Open { first, count, patterns, filter_groups })
            .collect();
        let mut opened = 0;
        let mut errors = Errors::default();
        let mut setup = new_hist();
        for reply in pool.call_each(cmds).await? {
            let Reply::Opened(o) = reply else { bail!("unexpected worker reply {reply:?}") };
            opened += o.ok;
            errors.merge(&o.errors);
            o.setup.merge_into(&mut setup);
        }
        if errors.count > 0 {
            bail!("{} of {connections} connections failed to open: {}", errors.count, errors.samples.join("; "));
        }
        let subject_count = match patterns {
            Patterns::One => 1,
            Patterns::PerObject => connections,
        };
        let subjects = (0..subject_count as u64)
            .map(|n| {
                Subject::from(format!(
                    "{}.{}",
                    common.subject_prefix,
                    patterns.event(&common.event_prefix, n, connections)
                ))
            })
            .collect();
        let summary =
            json!({ "opened": opened, "seconds": start.elapsed().as_secs_f64(), "setup": Latency::of(&setup) });
        let addr = common.endpoint()?.addr;
        let bench = Bench {
            common,
            load,
            pool,
            extra_pids: Vec::new(),
            nats,
            addr,
            patterns,
            filter_groups,
            live: opened,
            subjects,
        };
        Ok((bench, summary))
    }

    /// Publishes at `rate` for the step's duration and gathers what the clients saw.
    async fn step(&mut self, step: u32, rate: f64) -> anyhow::Result<Step> {
        let before = Scrape::take_or_empty(self.addr).await;
        let mut pids = self.pool.pids();
        pids.extend(&self.extra_pids);
        let cpu = self.common.cpu_meters(pids);
        let (published, publish_secs, first_slow) = {
            let started = Instant::now();
            let watch = watch_slow_disconnects(self.addr, before.get(SLOW_DISCONNECTS));
            tokio::pin!(watch);
            let publish = self.publish(step, rate);
            tokio::pin!(publish);
            let (mut watching, mut first_slow) = (true, None);
            loop {
                tokio::select! {
                    done = &mut publish => {
                        let (published, secs) = done?;
                        break (published, secs, first_slow);
                    }
                    at = &mut watch, if watching => {
                        watching = false;
                        first_slow = at.map(|t| t.duration_since(started).as_secs_f64());
                    }
                }
            }
        };
        let expected = (0..published).map(|n| self.patterns.receivers(n, self.live as usize, self.filter_groups)).sum();
        self.drain(step, expected).await?;
        let cpu_percent = cpu.read();
        let after = Scrape::take_or_empty(self.addr).await;
        let mut latency = new_hist();
        let mut out = Step {
            step,
            target_rate: rate,
            published,
            publish_rate: published as f64 / publish_secs,
            expected,
            delivered: 0,
            delivered_per_s: 0.0,
            lost: 0,
            unexpected: 0,
            latency: Latency::default(),
            closed_slow: 0,
            closed_other: 0,
            errors: Errors::default(),
            cpu_percent,
            gateway_rss_kb: self.common.gateway_pid.and_then(|p| target::memory(p).ok()).map(|m| m.rss_kb),
            gateway_frames_out: after.delta(&before, "telegraphy_frames_out_total"),
            gateway_slow_disconnects: after.delta(&before, SLOW_DISCONNECTS),
            first_slow_disconnect_s: first_slow,
            nats_slow_consumers: after.delta(&before, "telegraphy_nats_slow_consumers_total"),
        };
        for reply in self.pool.call_all(Cmd::Report { step }).await? {
            let Reply::Report(r) = reply else { bail!("unexpected worker reply {reply:?}") };
            out.delivered += r.delivered;
            out.closed_slow += r.closed_slow;
            out.closed_other += r.closed_other;
            out.errors.merge(&r.errors);
            r.latency.merge_into(&mut latency);
        }
        out.latency = Latency::of(&latency);
        out.delivered_per_s = out.delivered as f64 / publish_secs;
        out.lost = expected.saturating_sub(out.delivered);
        out.unexpected = out.delivered.saturating_sub(expected);
        self.live = self.live.saturating_sub(out.closed_slow + out.closed_other);
        Ok(out)
    }

    /// Publishes `{"t":..,"s":step,..}` events at `rate` per second for the step's duration; returns how many
    /// were published and over how long.
    async fn publish(&self, step: u32, rate: f64) -> anyhow::Result<(u64, f64)> {
        let size = self.load.size as usize;
        publish_paced(&self.nats, rate, self.load.duration, |sent| {
            let subject = self.subjects[(sent % self.subjects.len() as u64) as usize].clone();
            let group = (self.filter_groups > 0).then(|| sent % u64::from(self.filter_groups));
            (subject, client::payload(client::now_ns(), step, sent, group, size).into())
        })
        .await
    }

    /// Waits until `expected` events of `step` arrived, or nothing arrived for a second, or `--drain` passed.
    async fn drain(&mut self, step: u32, expected: u64) -> anyhow::Result<()> {
        let limit = Instant::now() + Duration::from_secs(self.load.drain);
        let (mut last, mut last_change) = (u64::MAX, Instant::now());
        while Instant::now() < limit {
            let mut delivered = 0;
            for reply in self.pool.call_all(Cmd::Progress { step }).await? {
                if let Reply::Progress { delivered: d } = reply {
                    delivered += d;
                }
            }
            if delivered >= expected {
                break;
            }
            if delivered != last {
                (last, last_change) = (delivered, Instant::now());
            } else if last_change.elapsed() >= Duration::from_secs(1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

const SLOW_DISCONNECTS: &str = "telegraphy_slow_disconnects_total";

/// Resolves with the instant the gateway's slow-disconnect counter first exceeds `base` (polled every 100 ms).
async fn watch_slow_disconnects(addr: SocketAddr, base: f64) -> Option<Instant> {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if Scrape::take(addr).await.ok()?.get(SLOW_DISCONNECTS) > base {
            return Some(Instant::now());
        }
    }
}

fn strict_errors(load: &Load, steps: &[Step]) -> u64 {
    // More frames than expected is always wrong (duplicates or filtering failures), strict or not.
    let errors: u64 = steps.iter().map(|s| s.errors.count + s.unexpected).sum();
    let strict: u64 = if load.strict {
        steps.iter().map(|s| s.lost + s.closed_slow + s.closed_other + u64::from(s.delivered == 0)).sum()
    } else {
        0
    };
    errors + strict
}

pub async fn run(args: &FanoutArgs) -> anyhow::Result<Outcome> {
    let (common, load) = (&args.common, &args.load);
    let (mut bench, setup) = Bench::setup(common, load, args.patterns, args.filter_groups, args.sse).await?;
    let title = format!(
        "fanout: {} {} connections, {} pattern(s){}, {} B events, {} s steps, {} worker(s)",
        load.connections,
        if args.sse { "SSE" } else { "WebSocket" },
        args.patterns.name(),
        match args.filter_groups {
            0 => String::new(),
            k => format!(" with {k} filter groups"),
        },
        load.size,
        load.duration,
        common.workers
    );
    let mut table = Table::new(title, HEADERS.to_vec());
    let mut steps = Vec::new();
    let (mut best, mut worst): (Option<f64>, Option<f64>) = (None, None);
    let mut rate = load.rate;
    for step in 0..if args.find_max { args.max_steps } else { 1 } {
        let s = bench.step(step, rate).await?;
        let ok = s.passes(args.p99_budget_ms);
        table.row(s.cells(if !args.find_max {
            ""
        } else if ok {
            "ok"
        } else {
            "over"
        }));
        let lost_connections = s.closed_slow + s.closed_other > 0;
        steps.push(s);
        if !args.find_max || lost_connections {
            break;
        }
        if ok {
            best = Some(best.map_or(rate, |b: f64| b.max(rate)));
        } else {
            worst = Some(worst.map_or(rate, |w: f64| w.min(rate)));
        }
        rate = match (best, worst) {
            (Some(_), None) => rate * args.step_factor,
            (None, Some(w)) => w / args.step_factor,
            (Some(b), Some(w)) if w / b > 1.15 => (b * w).sqrt(),
            _ => break,
        };
        if rate > args.max_rate {
            break;
        }
    }
    bench.pool.stop().await;
    let errors = strict_errors(load, &steps);
    let max_ok =
        best.map(|b| steps.iter().filter(|s| s.target_rate == b).map(|s| s.delivered_per_s).fold(0.0, f64::max));
    let mut notes = vec![
        "rate = events published/s; deliv/s = frames received by all clients/s; slow cl/gw = clients closed 4008 / gateway slow disconnects.".to_string(),
    ];
    if args.find_max {
        notes.push(match best {
            Some(b) => format!(
                "max rate with p99 <= {} ms and nothing lost: {b:.0} events/s ({:.0} deliveries/s)",
                args.p99_budget_ms,
                max_ok.unwrap_or(0.0)
            ),
            None => format!("no step passed (p99 <= {} ms, nothing lost)", args.p99_budget_ms),
        });
    }
    let json = json!({
        "scenario": "fanout",
        "params": {
            "connections": load.connections, "sse": args.sse, "patterns": args.patterns, "filter_groups": args.filter_groups, "rate": load.rate, "size": load.size,
            "duration_s": load.duration, "workers": common.workers, "find_max": args.find_max, "p99_budget_ms": args.p99_budget_ms,
        },
        "setup": setup,
        "steps": steps,
        "max_ok_rate": best,
        "max_ok_deliveries_per_s": max_ok,
        "errors": errors,
    });
    Ok(Outcome { tables: vec![table], notes, json, errors })
}

pub async fn run_slow(args: &SlowArgs) -> anyhow::Result<Outcome> {
    let (common, load) = (&args.common, &args.load);
    let (mut bench, setup) = Bench::setup(common, load, Patterns::One, 0, false).await?;
    let title = format!(
        "slow: {} fast connections at {} events/s of {} B, {} s per run, without and with one client that never reads",
        load.connections, load.rate, load.size, load.duration
    );
    let mut table = Table::new(title, HEADERS.to_vec());
    let baseline = bench.step(0, load.rate).await?;
    table.row(baseline.cells("without"));

    let mut slow = Pool::start(1, 1, &common.job(true, args.slow_rcvbuf)).await?;
    let first = load.connections as usize;
    let open = Cmd::Open { first, count: 1, patterns: Patterns::One, filter_groups: 0 };
    let [Reply::Opened(opened)] = &slow.call_all(open).await?[..] else {
        bail!("unexpected reply from the slow client's worker");
    };
    if opened.ok != 1 {
        bail!("the slow client could not connect: {}", opened.errors.samples.join("; "));
    }
    bench.extra_pids = slow.pids();
    let with_slow = bench.step(1, load.rate).await?;
    table.row(with_slow.cells("with slow"));
    slow.stop().await;
    bench.pool.stop().await;

    let change = (with_slow.latency.p99_ms - baseline.latency.p99_ms) / baseline.latency.p99_ms.max(1e-9) * 100.0;
    let steps = [baseline, with_slow];
    let errors = strict_errors(load, &steps);
    let notes = vec![
        format!(
            "fast clients' p99 {:.2} ms -> {:.2} ms ({change:+.1}%); the slow client was disconnected by the gateway: {}",
            steps[0].latency.p99_ms,
            steps[1].latency.p99_ms,
            match steps[1].first_slow_disconnect_s {
                Some(at) => format!("yes, {at:.1} s into the run"),
                None if steps[1].gateway_slow_disconnects > 0 => "yes".to_string(),
                None => "no (raise --duration or --rate to fill its queue)".to_string(),
            }
        ),
        "slow cl/gw = fast clients closed 4008 / gateway slow disconnects (the slow client's close is in the gateway count).".to_string(),
    ];
    let json = json!({
        "scenario": "slow",
        "params": { "connections": load.connections, "rate": load.rate, "size": load.size, "duration_s": load.duration, "workers": common.workers, "slow_rcvbuf": args.slow_rcvbuf },
        "setup": setup,
        "without_slow": steps[0],
        "with_slow": steps[1],
        "p99_change_percent": change,
        "slow_client_disconnected": steps[1].gateway_slow_disconnects > 0,
        "errors": errors,
    });
    Ok(Outcome { tables: vec![table], notes, json, errors })
}

/// Publishes on NATS at `rate` messages per second for `duration` seconds (paced by a 1 ms ticker, catching up
/// after a late tick), the `n`th message being `message(n)`; flushes, then returns how many were published and
/// over how long. `fanout` and `publish`'s server-side phase share it.
pub async fn publish_paced(
    nats: &async_nats::Client,
    rate: f64,
    duration: u64,
    mut message: impl FnMut(u64) -> (async_nats::Subject, bytes::Bytes),
) -> anyhow::Result<(u64, f64)> {
    let duration = Duration::from_secs(duration);
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0u64;
    loop {
        ticker.tick().await;
        let elapsed = start.elapsed();
        let due = ((rate * elapsed.min(duration).as_secs_f64()) as u64).max(sent);
        while sent < due {
            let (subject, data) = message(sent);
            nats.publish(subject, data).await.context("publishing to NATS")?;
            sent += 1;
        }
        if elapsed >= duration {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    tokio::time::timeout(Duration::from_secs(10), nats.flush()).await.context("NATS flush timed out")??;
    Ok((sent, secs))
}
