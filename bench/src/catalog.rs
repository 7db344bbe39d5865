//! `catalog`: the event catalog (PROTOCOL.md section 12) on a node. Puts `--entries` entries in the catalog KV
//! bucket (as any publisher would), waits until the gateway lists the last one, and reports the gateway's memory
//! before and after (per entry), then the round trip of `--requests` sequential `events` requests, full (the
//! listing bounded by `catalog.max_reply_bytes`) and narrowed to one entry. The last entry (in key order) is
//! `bench.fan.{n}` (pattern `bench.fan.*`): the pattern `connect --subscribe` takes (`bench.fan.>`) shares its first
//! tokens with every entry, the worst case of the strict-mode check before its token trie (issue 21).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_nats::jetstream::{self, kv};
use clap::Args;
use futures_util::{stream, StreamExt};
use serde_json::{json, Value};

use crate::{
    client::{self, Dial},
    report::{num, Outcome, Table},
    stats::{new_hist, Latency},
    target, tokens, Common,
};

#[derive(Args, Debug)]
pub struct CatalogArgs {
    #[command(flatten)]
    pub common: Common,
    /// Entries to put in the bucket.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub entries: u64,
    /// Characters of each entry's description (its size; the JSON Schema of `data` adds ~150 bytes).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(0..=4096))]
    pub description_chars: u64,
    /// Sequential `events` requests of each kind (full listing, narrowed).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub requests: u64,
    /// The gateway's catalog.bucket.
    #[arg(long, default_value = "telegraphy_catalog")]
    pub bucket: String,
}

/// The entry `i` of `total`: `<prefix>.cat.e<i>.{key}`, and the last one `<prefix>.fan.{n}`.
fn entry(prefix: &str, i: u64, total: u64, description: &str) -> (String, Vec<u8>) {
    let (name, pattern) = if i + 1 == total {
        (format!("{prefix}.fan.{{n}}"), format!("{prefix}.fan.*"))
    } else {
        (format!("{prefix}.cat.e{i}.{{key}}"), format!("{prefix}.cat.e{i}.*"))
    };
    let key = format!("bench-catalog.{}", pattern.replace('*', "="));
    let value = json!({"format": 1, "name": name, "patterns": [pattern], "kind": "custom", "operations": [],
        "description": description, "presence": null, "version": 1, "owner": "bench-catalog", "generation": 1,
        "data": {"type": "object", "properties": {"t": {"type": "integer"}, "p": {"type": "string"}},
                 "required": ["t"]}});
    (key, serde_json::to_vec(&value).expect("an entry serialises"))
}

/// One connected client (grant `<prefix>.>`) and its `events` round trips.
struct Reader(client::Ws);

impl Reader {
    async fn events(&mut self, event: Option<&str>) -> anyhow::Result<(Duration, Value)> {
        let mut frame = json!({"type": "events", "id": 3});
        if let Some(event) = event {
            frame["event"] = json!(event);
        }
        let start = Instant::now();
        self.0.send(tokio_tungstenite::tungstenite::Message::text(frame.to_string())).await?;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.0.next())
                .await
                .context("events reply timed out")?
                .context("connection closed")??;
            if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
                let reply: Value = serde_json::from_str(text.as_str())?;
                match reply["type"].as_str() {
                    Some("events") => return Ok((start.elapsed(), reply)),
                    Some("error") => return Ok((start.elapsed(), reply)),
                    Some("ping") => self.0.send(tokio_tungstenite::tungstenite::Message::text(client::PONG)).await?,
                    _ => {}
                }
            }
        }
    }
}

use futures_util::SinkExt as _;

pub async fn run(args: &CatalogArgs) -> anyhow::Result<Outcome> {
    let common = &args.common;
    let endpoint = common.endpoint()?;
    let prefix = &common.event_prefix;
    let Some(pid) = common.gateway_pid else { bail!("catalog needs --gateway-pid (BENCH_GATEWAY_PID)") };
    let minter = tokens::Minter::new(&common.nats, &common.tokens_bucket, common.token_ttl).await?;
    let token = minter.mint("bench-catalog-", 0, 1, &format!("{prefix}.>"), 1).await?.remove(0);
    let mut ws = client::dial(&endpoint, Dial::default()).await?;
    client::authenticate(&mut ws, &token).await?;
    let mut reader = Reader(ws);
    let before = target::memory(pid)?;

    let nats = telegraphy::node::nats::connect_once(&common.nats).await?;
    let js = jetstream::new(nats);
    let store = match js.get_key_value(&args.bucket).await {
        Ok(store) => store,
        Err(_) => js
            .create_key_value(kv::Config { bucket: args.bucket.clone(), history: 1, ..Default::default() })
            .await
            .context("creating the catalog bucket")?,
    };
    let description = "d".repeat(args.description_chars as usize);
    let put_start = Instant::now();
    let put: Vec<anyhow::Result<()>> = stream::iter(0..args.entries)
        .map(|i| {
            let (key, value) = entry(prefix, i, args.entries, &description);
            let store = &store;
            async move {
                store.put(key, value.into()).await.context("KV put")?;
                Ok(())
            }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    put.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let put_secs = put_start.elapsed().as_secs_f64();
    let bytes = entry(prefix, 0, args.entries, &description).1.len();

    // Until the node lists the last entry (its watch applied every put before it).
    let last = format!("{prefix}.fan.*");
    let deadline = Instant::now() + Duration::from_secs(common.timeout);
    loop {
        let (_, reply) = reader.events(Some(&last)).await?;
        if reply["events"].as_array().is_some_and(|e| e.len() == 1) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the gateway never listed {last}: {reply}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let loaded_secs = put_start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await; // let the allocator settle
    let after = target::memory(pid)?;
    let per_entry = (after.rss_kb as f64 - before.rss_kb as f64) * 1024.0 / args.entries as f64;

    let mut rows = Vec::new();
    for (label, event) in [("full", None), ("narrowed", Some(last.as_str()))] {
        let mut hist = new_hist();
        let (mut listed, mut frame_bytes, mut truncated) = (0, 0, false);
        for _ in 0..args.requests {
            let (took, reply) = reader.events(event).await?;
            if reply["type"] != "events" {
                bail!("events refused: {reply}");
            }
            hist.record(took.as_micros() as u64).ok();
            listed = reply["events"].as_array().map_or(0, |e| e.len());
            frame_bytes = reply.to_string().len();
            truncated = reply["truncated"] == true;
            // Inside the default request rate (20/s, bursts of 150).
            tokio::time::sleep(Duration::from_millis(55)).await;
        }
        rows.push((label, Latency::of(&hist), listed, frame_bytes, truncated));
    }

    let mut load = Table::new(
        format!("catalog: {} entries of {bytes} bytes put, listed by the gateway", args.entries),
        vec!["entries", "put s", "listed after s", "gw RSS before MB", "gw RSS after MB", "RSS per entry B"],
    );
    load.row(vec![
        args.entries.to_string(),
        num(put_secs, 2),
        num(loaded_secs, 2),
        num(before.rss_kb as f64 / 1024.0, 1),
        num(after.rss_kb as f64 / 1024.0, 1),
        num(per_entry, 0),
    ]);
    let mut requests = Table::new(
        format!("catalog: {} sequential `events` requests of each kind", args.requests),
        vec!["request", "listed", "frame bytes", "truncated", "p50 ms", "p99 ms", "max ms"],
    );
    for (label, latency, listed, frame_bytes, truncated) in &rows {
        requests.row(vec![
            label.to_string(),
            listed.to_string(),
            frame_bytes.to_string(),
            truncated.to_string(),
            num(latency.p50_ms, 2),
            num(latency.p99_ms, 2),
            num(latency.max_ms, 2),
        ]);
    }
    let json = json!({
        "scenario": "catalog",
        "params": {"entries": args.entries, "description_chars": args.description_chars, "requests": args.requests},
        "entry_bytes": bytes, "put_seconds": put_secs, "listed_after_seconds": loaded_secs,
        "gateway": {"memory_before": before, "memory_after": after, "rss_per_entry_bytes": per_entry},
        "requests": rows.iter().map(|(label, latency, listed, frame_bytes, truncated)| json!({
            "kind": label, "latency": latency, "listed": listed, "frame_bytes": frame_bytes, "truncated": truncated,
        })).collect::<Vec<_>>(),
    });
    Ok(Outcome { tables: vec![load, requests], notes: vec![], json, errors: 0 })
}
