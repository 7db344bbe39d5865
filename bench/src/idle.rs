//! `idle`: the gateway's memory per idle authenticated connection (one subscription each), read from
//! `/proc/<gateway pid>/status` before any connection and after each level of connections has settled. With
//! `--presence` each connection is present on a channel instead (PROTOCOL.md section 11); after the last level
//! the run holds the connections for `--hold` seconds and reports the CPU the presence refresh costs the
//! gateway and nats-server and nats-server's message rate, then times `presence_stats` and `presence` requests.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::json;

use crate::{
    pool::split,
    report::{num, Outcome, Table},
    stats::{new_hist, Errors, Latency},
    target::{self, Scrape},
    worker::{self, Cmd, Patterns, Reply},
    Common,
};

#[derive(Args, Debug)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connection counts to measure at, cumulative and increasing (e.g. 1000,5000,15000).
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub connections: Vec<usize>,
    /// Subscribe every connection to one pattern, or each to its own (one node NATS subscription each).
    #[arg(long, value_enum, default_value_t = Patterns::One)]
    pub patterns: Patterns,
    /// Open the connections over SSE (`GET /sse` on the `--url`'s address, PROTOCOL.md section 10.1) instead of
    /// WebSocket. The clients do not answer heartbeats: give the gateway a `heartbeat` longer than the run.
    #[arg(long)]
    pub sse: bool,
    /// Subscribe each connection with `"presence": true` to the channel `<prefix>.presence.<i % K>`
    /// (`--presence-channels` K); then hold and time presence requests (`--hold`, `--requests`).
    #[arg(long, conflicts_with = "sse")]
    pub presence: bool,
    /// K: presence channels the connections are spread over (the gateway's presence.max_channels bounds it).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub presence_channels: u32,
    /// With --presence: seconds to hold all connections after the last level, measuring CPU (use at least two
    /// presence refresh intervals).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub hold: u64,
    /// With --presence: sequential `presence_stats` requests, then as many `presence` requests, from one extra
    /// connection. They take request tokens: run the gateway with TELEGRAPHY_LIMITS__REQUESTS_PER_SECOND=0.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub requests: u32,
    /// Seconds to wait after a level is open before reading the gateway's memory.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=120))]
    pub settle: u64,
}

/// Most connections one run may open.
const MAX_CONNECTIONS: usize = 60_000;

pub async fn run(args: &IdleArgs) -> anyhow::Result<Outcome> {
    let common = &args.common;
    let pid =
        common.gateway_pid.context("idle needs --gateway-pid (or BENCH_GATEWAY_PID) to read the gateway's memory")?;
    let levels = &args.connections;
    if levels.is_empty() || levels.windows(2).any(|w| w[0] >= w[1]) || levels[0] == 0 {
        bail!("--connections must be increasing positive counts");
    }
    let top = *levels.last().expect("not empty");
    if top > MAX_CONNECTIONS {
        bail!("--connections: at most {MAX_CONNECTIONS}");
    }
    if top / usize::from(common.workers) > 19_000 {
        bail!(
            "--workers {}: a worker would hold more than 19000 sockets (limit 20000 open files); use more workers",
            common.workers
        );
    }
    let addr = common.endpoint()?.addr;
    let presence_channels = if args.presence { args.presence_channels } else { 0 };
    let job = worker::Job { sse: args.sse, presence_channels, ..common.job(false, 0) };
    let mut pool = common.pool_for(&job).await?;
    let before = target::memory(pid)?;
    let mut table = Table::new(
        format!(
            "idle: gateway memory per authenticated {} connection ({}, {} worker process(es))",
            if args.sse { "SSE" } else { "WebSocket" },
            if args.presence {
                format!("present on {presence_channels} channel(s)")
            } else {
                format!("{} pattern(s)", args.patterns.name())
            },
            pool.len()
        ),
        vec![
            "conns",
            "open",
            "errors",
            "open/s",
            "setup p99 ms",
            "gw RSS MB",
            "RSS/conn KB",
            "marginal KB",
            "anon/conn KB",
            "gw gauge",
        ],
    );
    let mut rows = Vec::new();
    let mut errors = Errors::default();
    let (mut open_total, mut previous) = (0usize, (0usize, before.rss_kb));
    for &level in levels {
        let ranges = split(open_total, level - open_total, pool.len());
        let cmds = ranges
            .iter()
            .map(|&(first, count)| Cmd::Open { first, count, patterns: args.patterns, filter_groups: 0 })
            .collect();
        let start = Instant::now();
        let replies = pool.call_each(cmds).await?;
        let took = start.elapsed();
        let mut setup = new_hist();
        let mut ok = 0;
        for reply in replies {
            let Reply::Opened(opened) = reply else { bail!("unexpected worker reply {reply:?}") };
            ok += opened.ok;
            errors.merge(&opened.errors);
            opened.setup.merge_into(&mut setup);
        }
        open_total = level;
        tokio::time::sleep(Duration::from_secs(args.settle)).await;
        let memory = target::memory(pid)?;
        let gauge = Scrape::take(addr).await.map(|s| s.get("telegraphy_connections")).unwrap_or(-1.0);
        let per_conn = (memory.rss_kb as f64 - before.rss_kb as f64) / level as f64;
        let anon_per_conn = (memory.rss_anon_kb as f64 - before.rss_anon_kb as f64) / level as f64;
        let marginal = (memory.rss_kb as f64 - previous.1 as f64) / (level - previous.0) as f64;
        let setup = Latency::of(&setup);
        let rate = (level - previous.0) as f64 / took.as_secs_f64();
        table.row(vec![
            level.to_string(),
            ok.to_string(),
            errors.count.to_string(),
            num(rate, 0),
            num(setup.p99_ms, 1),
            num(memory.rss_kb as f64 / 1024.0, 1),
            num(per_conn, 2),
            num(marginal, 2),
            num(anon_per_conn, 2),
            num(gauge, 0),
        ]);
        rows.push(json!({
            "connections": level, "opened_this_level": ok, "open_seconds": took.as_secs_f64(), "open_per_s": rate,
            "setup": setup, "gateway_memory": memory, "rss_per_conn_kb": per_conn, "rss_anon_per_conn_kb": anon_per_conn,
            "marginal_rss_per_conn_kb": marginal, "gateway_connections_gauge": gauge,
            "worker_rss_kb": pool.pids().iter().map(|p| target::memory(*p).map_or(0, |m| m.rss_kb)).sum::<u64>(),
        }));
        previous = (level, memory.rss_kb);
    }
    let mut tables = vec![table];
    let presence = if args.presence {
        let (held, requests, json) = presence::measure(common, &pool, args, top).await?;
        tables.extend([held, requests]);
        json
    } else {
        serde_json::Value::Null
    };
    // Connections the gateway closed after they opened (e.g. 4008 when join frames flood a presence channel):
    // the measured memory is then for fewer connections than the level says.
    let (mut closed_slow, mut closed_other) = (0u64, 0u64);
    for reply in pool.call_all(Cmd::Report { step: 0 }).await? {
        let Reply::Report(r) = reply else { bail!("unexpected worker reply {reply:?}") };
        (closed_slow, closed_other) = (closed_slow + r.closed_slow, closed_other + r.closed_other);
        errors.merge(&r.errors);
    }
    pool.stop().await;
    let json = json!({
        "closed_after_open": { "too_slow_4008": closed_slow, "other": closed_other },
        "scenario": "idle",
        "params": {
            "connections": levels, "sse": args.sse, "patterns": args.patterns, "workers": common.workers, "settle_s": args.settle,
            "presence_channels": presence_channels, "hold_s": args.hold, "requests": args.requests,
        },
        "gateway_memory_before": before,
        "levels": rows,
        "presence": presence,
        "errors": errors,
    });
    Ok(Outcome {
        tables,
        notes: vec![
            "RSS/conn = (RSS now - RSS before the first connection) / conns; marginal = growth since the previous level / new conns.".into(),
            format!("connections closed after they opened (counted as errors): {closed_slow} with 4008 (too slow), {closed_other} otherwise"),
        ],
        json,
        errors: errors.count + closed_slow + closed_other,
    })
}

/// The `--presence` measurements after the last level.
mod presence {
    use std::{net::SocketAddr, time::Duration};

    use anyhow::{bail, Context};
    use serde_json::{json, Value};

    use super::IdleArgs;
    use crate::{
        client::{self, Dial},
        pool::Pool,
        report::{num, Table},
        stats::{new_hist, Latency},
        target::{self, percent_cell},
        tokens::Minter,
        worker::{self, Subscription},
        Common,
    };

    /// Holds the open connections for `--hold` seconds (CPU of gateway and nats-server, NATS message rates), then
    /// times `--requests` presence requests of each kind from one more connection present on channel 0.
    pub async fn measure(
        common: &Common,
        pool: &Pool,
        args: &IdleArgs,
        connections: usize,
    ) -> anyhow::Result<(Table, Table, Value)> {
        let monitor = common.nats_monitor.as_deref().map(monitor_addr).transpose()?;
        let cpu = common.cpu_meters(pool.pids());
        let varz_before = varz(monitor).await?;
        tokio::time::sleep(Duration::from_secs(args.hold)).await;
        let used = cpu.read();
        let varz_after = varz(monitor).await?;
        let hold = args.hold as f64;
        let rate = |key: &str| match (&varz_before, &varz_after) {
            (Some(a), Some(b)) => Some((b[key].as_f64().unwrap_or(0.0) - a[key].as_f64().unwrap_or(0.0)) / hold),
            _ => None,
        };
        let (in_rate, out_rate) = (rate("in_msgs"), rate("out_msgs"));
        let mut held = Table::new(
            format!("idle --presence: {} s hold with all connections present (CPU in % of one core)", args.hold),
            vec!["conns", "channels", "gw CPU %", "nats CPU %", "bench CPU %", "NATS in msg/s", "NATS out msg/s"],
        );
        held.row(vec![
            connections.to_string(),
            args.presence_channels.to_string(),
            percent_cell(used.gateway),
            percent_cell(used.nats),
            num(used.bench, 0),
            percent_cell(in_rate),
            percent_cell(out_rate),
        ]);

        let minter = Minter::new(&common.nats, &common.tokens_bucket, common.token_ttl).await?;
        let token = minter.mint("bench-presence-probe-", 0, 1, &format!("{}.>", common.event_prefix), 1).await?;
        let channel = worker::presence_channel(&common.event_prefix, 0, args.presence_channels);
        let subscription = Subscription { pattern: channel.clone(), filter: None, presence: true };
        let mut ws = worker::open_one(&common.endpoint()?, Dial::default(), &token[0], Some(subscription)).await?;
        let mut requests = Table::new(
            format!("idle --presence: {} sequential requests of each kind on {channel}, one connection", args.requests),
            vec!["request", "count", "p50 ms", "p99 ms", "max ms"],
        );
        let mut latencies = serde_json::Map::new();
        for kind in ["presence_stats", "presence"] {
            let frame = json!({"type": kind, "id": 7, "event": channel});
            let mut hist = new_hist();
            for _ in 0..args.requests {
                let took = client::request(&mut ws, &frame, kind).await.with_context(|| format!("{kind} request"))?;
                hist.saturating_record((took.as_micros() as u64).max(1));
            }
            let latency = Latency::of(&hist);
            requests.row(vec![
                kind.to_string(),
                latency.count.to_string(),
                num(latency.p50_ms, 3),
                num(latency.p99_ms, 3),
                num(latency.max_ms, 3),
            ]);
            latencies.insert(kind.to_string(), serde_json::to_value(latency)?);
        }
        let json = json!({
            "channels": args.presence_channels, "hold_s": args.hold, "cpu_percent": used,
            "nats_in_msgs_per_s": in_rate, "nats_out_msgs_per_s": out_rate, "requests": latencies,
        });
        Ok((held, requests, json))
    }

    fn monitor_addr(text: &str) -> anyhow::Result<SocketAddr> {
        let addr: SocketAddr = text.parse().context("--nats-monitor must be host:port")?;
        if !addr.ip().is_loopback() {
            bail!("--nats-monitor must be a loopback address");
        }
        Ok(addr)
    }

    /// nats-server's `/varz` (None without a monitoring address).
    async fn varz(monitor: Option<SocketAddr>) -> anyhow::Result<Option<Value>> {
        let Some(addr) = monitor else { return Ok(None) };
        let (status, body) = target::http_get(addr, "/varz").await?;
        if status != 200 {
            bail!("nats-server /varz answered {status}");
        }
        Ok(Some(serde_json::from_str(&body).context("nats-server /varz: not JSON")?))
    }
}
