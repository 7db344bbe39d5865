//! `rpc`: RPC round trips through the gateway, NATS and whatever workers serve the method (bench/README.md runs
//! one `manage.py telegraphy_worker`). C connections each keep one request in flight (send `rpc`, await its
//! answer, send the next) until R round trips are done; reports round trips per second and their latency.
//! Run against a gateway whose `rpc.requests_per_second` and `limits.requests_per_second` do not throttle the
//! bench (e.g. both 0 / 100000), or most requests come back `limit_exceeded`.

use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use telegraphy::protocol::token::Grants;
use tokio::sync::Barrier;
use tokio_tungstenite::tungstenite::Message;

use crate::{
    client::{self, Dial, Ws, PONG},
    report::{num, Outcome, Table},
    stats::{new_hist, Latency},
    target::{self, percent_cell, CpuMeter, Endpoint},
    tokens::Minter,
    Common,
};

#[derive(Args, Debug)]
pub struct RpcArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections, each with one request in flight at a time.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub connections: u64,
    /// Round trips in total.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub requests: u64,
    /// The method called (a worker must serve it; the token's rpc grant is this method).
    #[arg(long, default_value = "test.echo")]
    pub method: String,
    /// The request's `data` (JSON).
    #[arg(long, default_value = r#"{"text":"hello"}"#)]
    pub data: String,
    /// User id of the tokens (the Python worker loads this user: "1" is the first user of its database).
    #[arg(long, default_value = "1")]
    pub user: String,
    /// Process ids of the workers serving the method, to report their CPU use (comma-separated;
    /// `bench/with-rpc-workers.sh` exports them).
    #[arg(long, env = "BENCH_WORKER_PIDS", value_delimiter = ',')]
    pub worker_pids: Vec<u32>,
}

/// One connection's loop: its share of the round trips, their latencies (µs) and the errors' codes. The
/// connection opens (`connect` with its token, bounded by client::STEP_TIMEOUT) before the start barrier, so the
/// measured span holds round trips only; a connection that fails to open still passes the barrier.
async fn client(
    endpoint: Endpoint,
    token: String,
    method: String,
    data: Value,
    count: u64,
    start: Arc<Barrier>,
) -> anyhow::Result<(Vec<u64>, Vec<String>)> {
    let opened = async {
        let mut ws = client::dial(&endpoint, Dial::default()).await?;
        client::authenticate(&mut ws, &token).await?;
        anyhow::Ok(ws)
    }
    .await;
    start.wait().await;
    let mut ws = opened?;
    let (mut latencies, mut errors) = (Vec::with_capacity(count as usize), Vec::new());
    for id in 1..=count {
        let started = std::time::Instant::now();
        ws.send(Message::text(json!({"type": "rpc", "id": id, "method": method, "data": data}).to_string())).await?;
        let answer = next_frame(&mut ws).await?;
        latencies.push(started.elapsed().as_micros() as u64);
        if answer["type"] != "rpc_result" {
            errors.push(answer["code"].as_str().unwrap_or("?").to_string());
        }
    }
    let _ = ws.close(None).await;
    Ok((latencies, errors))
}

/// The next frame other than a heartbeat (answered meanwhile).
async fn next_frame(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        match ws.next().await.context("connection ended")?? {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text)?;
                if frame["type"] == "ping" {
                    ws.send(Message::text(PONG)).await?;
                    continue;
                }
                return Ok(frame);
            }
            Message::Close(frame) => bail!("closed: {frame:?}"),
            _ => {}
        }
    }
}

pub async fn run(args: &RpcArgs) -> anyhow::Result<Outcome> {
    let common = &args.common;
    let endpoint = common.endpoint()?;
    target::wait_ready(endpoint.addr, std::time::Duration::from_secs(15)).await?;
    let data: Value = serde_json::from_str(&args.data).context("--data must be JSON")?;
    telegraphy::protocol::names::validate_name(&args.method).ok().context("--method must be an event name")?;
    let minter = Minter::new(&common.nats, &common.tokens_bucket, common.token_ttl).await?;
    let grants = Grants { rpc: vec![args.method.clone()], ..Grants::default() };
    let mut tokens = Vec::new();
    for _ in 0..args.connections {
        tokens.push(minter.mint_with_grants(&args.user, &format!("{}.>", common.event_prefix), grants.clone()).await?);
    }
    let per = args.requests / args.connections;
    let extra = args.requests % args.connections;
    let start = Arc::new(Barrier::new(args.connections as usize + 1));
    let tasks: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, token)| {
            let count = per + u64::from((i as u64) < extra);
            tokio::spawn(client(endpoint.clone(), token, args.method.clone(), data.clone(), count, start.clone()))
        })
        .collect();
    start.wait().await;
    let cpu = common.cpu_meters(vec![]);
    let workers_cpu = (!args.worker_pids.is_empty()).then(|| CpuMeter::start(args.worker_pids.clone()));
    let started = std::time::Instant::now();
    let mut hist = new_hist();
    let mut errors: Vec<String> = Vec::new();
    for task in tasks {
        let (latencies, errs) = task.await??;
        for us in latencies {
            let _ = hist.record(us.max(1));
        }
        errors.extend(errs);
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu.read();
    let workers_cpu = workers_cpu.map(|m| m.percent());
    let latency = Latency::of(&hist);
    let ok = hist.len() - errors.len() as u64;
    let rate = hist.len() as f64 / secs.max(1e-9);
    let mut table = Table::new(
        format!(
            "rpc: {} round trips of {} over {} connection(s), one in flight each",
            args.requests, args.method, args.connections
        ),
        vec![
            "round trips",
            "ok",
            "errors",
            "seconds",
            "round trips/s",
            "p50 ms",
            "p99 ms",
            "p999 ms",
            "max ms",
            "gw CPU%",
            "nats CPU%",
            "workers CPU%",
            "bench CPU%",
        ],
    );
    table.row(vec![
        hist.len().to_string(),
        ok.to_string(),
        errors.len().to_string(),
        num(secs, 2),
        num(rate, 0),
        num(latency.p50_ms, 2),
        num(latency.p99_ms, 2),
        num(latency.p999_ms, 2),
        num(latency.max_ms, 2),
        percent_cell(cpu.gateway),
        percent_cell(cpu.nats),
        percent_cell(workers_cpu),
        percent_cell(Some(cpu.bench)),
    ]);
    errors.sort();
    errors.dedup();
    let json = json!({
        "scenario": "rpc",
        "params": { "connections": args.connections, "requests": args.requests, "method": args.method },
        "ok": ok, "seconds": secs, "round_trips_per_s": rate, "latency": latency, "cpu_percent": cpu, "workers_cpu_percent": workers_cpu,
        "workers": args.worker_pids.len(),
        "error_codes": errors,
    });
    Ok(Outcome { tables: vec![table], notes: vec![], json, errors: (hist.len() - ok) })
}
