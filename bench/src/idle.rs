//! `idle`: the gateway's memory per idle authenticated connection (one subscription each), read from
//! `/proc/<gateway pid>/status` before any connection and after each level of connections has settled.

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
    let mut pool = common.pool_for(&worker::Job { sse: args.sse, ..common.job(false, 0) }).await?;
    let before = target::memory(pid)?;
    let mut table = Table::new(
        format!(
            "idle: gateway memory per authenticated {} connection ({} pattern(s), {} worker process(es))",
            if args.sse { "SSE" } else { "WebSocket" },
            args.patterns.name(),
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
    pool.stop().await;
    let json = json!({
        "scenario": "idle",
        "params": { "connections": levels, "sse": args.sse, "patterns": args.patterns, "workers": common.workers, "settle_s": args.settle },
        "gateway_memory_before": before,
        "levels": rows,
        "errors": errors,
    });
    Ok(Outcome {
        tables: vec![table],
        notes: vec![
            "RSS/conn = (RSS now - RSS before the first connection) / conns; marginal = growth since the previous level / new conns.".into(),
        ],
        json,
        errors: errors.count,
    })
}
