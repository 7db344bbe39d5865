//! `connect`: authenticated connects per second and the time each takes (dial -> `connected`), with every
//! token minted and registered before the clock starts.

use anyhow::bail;
use clap::Args;
use serde_json::json;

use crate::{
    pool::split,
    report::{num, Outcome, Table},
    stats::{new_hist, Errors, Latency},
    target::{self, percent_cell, Scrape},
    worker::{Cmd, Patterns, Reply},
    Common,
};

#[derive(Args, Debug)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connects to make in total (one fresh token each).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub connections: u64,
    /// Keep every connection open until the end (default: close each right after `connected`).
    #[arg(long)]
    pub hold: bool,
    /// Also subscribe after connecting and time up to `subscribed`.
    #[arg(long)]
    pub subscribe: bool,
}

pub async fn run(args: &ConnectArgs) -> anyhow::Result<Outcome> {
    let common = &args.common;
    let total = args.connections as usize;
    if args.hold && total / usize::from(common.workers) > 19_000 {
        bail!("--hold with {total} connections needs more --workers (at most 19000 sockets per worker)");
    }
    let addr = common.endpoint()?.addr;
    let mut pool = common.pool().await?;
    let mint_start = std::time::Instant::now();
    let cmds = split(0, total, pool.len()).into_iter().map(|(first, count)| Cmd::Mint { first, count }).collect();
    pool.call_each(cmds).await?;
    let mint_secs = mint_start.elapsed().as_secs_f64();

    let before = Scrape::take(addr).await?;
    let cpu = common.cpu_meters(pool.pids());
    let subscribe = args.subscribe.then_some(Patterns::One);
    let replies = pool.call_all(Cmd::Connect { hold: args.hold, subscribe }).await?;
    let cpu = cpu.read();
    let after = Scrape::take(addr).await?;
    let gateway_rss = common.gateway_pid.and_then(|p| target::memory(p).ok());
    pool.stop().await;

    let mut latency = new_hist();
    let mut errors = Errors::default();
    let (mut ok, mut first, mut last) = (0, u64::MAX, 0);
    for reply in replies {
        let Reply::Connected(r) = reply else { bail!("unexpected worker reply {reply:?}") };
        ok += r.ok;
        errors.merge(&r.errors);
        r.latency.merge_into(&mut latency);
        first = first.min(r.first_ns);
        last = last.max(r.last_ns);
    }
    let secs = (last.saturating_sub(first) as f64 / 1e9).max(1e-9);
    let rate = ok as f64 / secs;
    let latency = Latency::of(&latency);
    let gw_ok = after.delta(&before, r#"telegraphy_connects_total{result="ok"}"#);
    let gw_failed = after.delta(&before, r#"telegraphy_connects_total{result="failed"}"#);
    let mut table = Table::new(
        format!(
            "connect: authenticated connects ({} worker(s) x {} at once{}{})",
            common.workers,
            common.concurrency,
            if args.subscribe { ", + subscribe" } else { "" },
            if args.hold { ", held open" } else { ", closed after connect" }
        ),
        vec![
            "connects",
            "ok",
            "errors",
            "seconds",
            "connects/s",
            "p50 ms",
            "p99 ms",
            "p999 ms",
            "max ms",
            "gw CPU%",
            "nats CPU%",
            "bench CPU%",
        ],
    );
    table.row(vec![
        total.to_string(),
        ok.to_string(),
        errors.count.to_string(),
        num(secs, 2),
        num(rate, 0),
        num(latency.p50_ms, 2),
        num(latency.p99_ms, 2),
        num(latency.p999_ms, 2),
        num(latency.max_ms, 2),
        percent_cell(cpu.gateway),
        percent_cell(cpu.nats),
        num(cpu.bench, 0),
    ]);
    let json = json!({
        "scenario": "connect",
        "params": { "connections": total, "workers": common.workers, "concurrency": common.concurrency, "hold": args.hold, "subscribe": args.subscribe },
        "ok": ok, "seconds": secs, "connects_per_s": rate, "latency": latency,
        "mint_seconds": mint_secs,
        "gateway": { "connects_ok": gw_ok, "connects_failed": gw_failed, "memory_after": gateway_rss },
        "cpu_percent": cpu,
        "errors": errors,
    });
    Ok(Outcome {
        tables: vec![table],
        notes: vec![format!("gateway counted {gw_ok} connects ok, {gw_failed} failed; tokens minted and registered in {mint_secs:.1} s (not timed)")],
        json,
        errors: errors.count,
    })
}
