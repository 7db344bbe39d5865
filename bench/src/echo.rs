//! `echo-worker`: the RPC baseline (issue 22). A raw NATS responder for one method, in the workers' queue group
//! (PROTOCOL.md section 14, "Workers"), that answers every request with `{"data":<the request's payload>}`
//! without reading its headers, a database or a permission. An `rpc` run against it measures the gateway, NATS
//! and the load client: the ceiling a real worker (`manage.py telegraphy_worker`) is compared with in
//! bench/README.md. `bench/with-rpc-workers.sh` starts N of them (RPC_WORKER=echo).

use anyhow::Context;
use bytes::{BufMut, BytesMut};
use futures_util::StreamExt;

/// The queue group every worker of a method joins (PROTOCOL.md section 14).
const QUEUE_GROUP: &str = "telegraphy_workers";

#[derive(clap::Args, Debug)]
pub struct EchoArgs {
    /// NATS URL (loopback).
    #[arg(long, env = "BENCH_NATS", default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// The gateway's nats.subject_prefix (requests arrive on <prefix>_rpc.<method>).
    #[arg(long, default_value = "telegraphy")]
    pub subject_prefix: String,
    /// The method served.
    #[arg(long, default_value = "test.echo")]
    pub method: String,
}

/// Serves until killed or until NATS closes the subscription.
pub async fn run(args: EchoArgs) -> anyhow::Result<()> {
    crate::target::loopback_nats(&args.nats)?;
    telegraphy::protocol::names::validate_name(&args.method).ok().context("--method must be an event name")?;
    let nats = async_nats::connect(&args.nats).await.context("connecting to NATS")?;
    let subject = format!("{}_rpc.{}", args.subject_prefix, args.method);
    let mut requests = nats.queue_subscribe(subject.clone(), QUEUE_GROUP.into()).await.context("subscribing")?;
    nats.flush().await.context("NATS flush")?;
    println!("echo-worker ready on {subject}");
    while let Some(request) = requests.next().await {
        let Some(reply) = request.reply else { continue };
        let mut answer = BytesMut::with_capacity(request.payload.len() + 9);
        answer.put_slice(b"{\"data\":");
        answer.put_slice(if request.payload.is_empty() { b"null" } else { &request.payload });
        answer.put_u8(b'}');
        nats.publish(reply, answer.freeze()).await.context("publishing a reply")?;
    }
    Ok(())
}
