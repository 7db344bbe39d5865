//! `telegraphy-bench`: load tool for the Telegraphy gateway. Loopback targets only; every run is bounded in
//! time (`--timeout`) and count, and stops by itself. See bench/README.md for the method and the recorded
//! figures.

mod bare;
mod catalog;
mod client;
mod connect;
mod echo;
mod fanout;
mod idle;
mod pool;
mod publish;
mod report;
mod rpc;
mod stats;
mod target;
mod tokens;
mod worker;

use std::{process::ExitCode, time::Duration};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::{report::Output, target::Endpoint};

#[derive(Parser)]
#[command(
    name = "telegraphy-bench",
    version,
    about = "Load tool for the Telegraphy gateway: idle memory, fan-out latency, connect rate, slow-client isolation",
    long_about = "Load tool for the Telegraphy gateway (protocol v1).\n\n\
        Targets must be on this machine (loopback addresses only). Connect tokens are minted in advance with the \
        gateway's library and registered single-use in the NATS KV bucket, so the secret the gateway uses must be in \
        TELEGRAPHY_AUTH__SECRET. Clients run in --workers child processes (each may hold up to ~19k sockets).\n\n\
        Every run prints a table and then one JSON line; the exit status is 1 when the tool saw errors \
        (failed connects, protocol errors, timeouts; with --strict also lost events or slow-client closes), \
        2 for bad arguments."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Open N authenticated connections with one subscription each and report the gateway's RSS per connection.
    Idle(idle::IdleArgs),
    /// Publish timestamped events through NATS to N subscribed connections; report delivery rate, latency
    /// percentiles, losses and slow-client closes; optionally find the highest rate whose p99 stays in budget.
    Fanout(fanout::FanoutArgs),
    /// Authenticated connects per second and connect-time percentiles, with tokens minted in advance.
    Connect(connect::ConnectArgs),
    /// Fast clients' latency without and then with one client that never reads.
    Slow(fanout::SlowArgs),
    /// RPC round trips per second and their latency through the gateway, NATS and the method's workers.
    Rpc(rpc::RpcArgs),
    /// Client publish fan-out: P connections send `publish` frames, S subscribed connections receive them with
    /// `from`; then the same rate published server-side on NATS to the same subscribers, for comparison.
    Publish(publish::PublishArgs),
    /// The event catalog: put N entries in its KV bucket, the gateway's memory per entry, and the round trip of
    /// `events` requests (full and narrowed).
    Catalog(catalog::CatalogArgs),
    /// A minimal NATS -> WebSocket forwarder (no auth, limits or history) to run `fanout` against as the
    /// baseline: `bench/with-gateway.sh` starts one beside the gateway when BENCH_BARE=1 (BENCH_BARE_URL,
    /// BENCH_BARE_PID).
    BareServer(bare::BareArgs),
    /// The RPC baseline: a raw NATS responder answering `{"data":<request>}` in the workers' queue group
    /// (`bench/with-rpc-workers.sh` starts N with RPC_WORKER=echo).
    EchoWorker(echo::EchoArgs),
    /// (internal) a client worker process driven by the coordinator over stdin/stdout.
    #[command(name = "__worker", hide = true)]
    Worker {
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
}

/// Options every scenario shares.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// Gateway WebSocket URL (must be a loopback address).
    #[arg(long, env = "BENCH_URL", default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// NATS URL the gateway uses (loopback only): tokens are registered and events published there.
    #[arg(long, env = "BENCH_NATS", default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// Gateway process id, to read its memory (/proc/<pid>/status) and CPU time. Required by `idle`.
    #[arg(long, env = "BENCH_GATEWAY_PID")]
    pub gateway_pid: Option<u32>,
    /// nats-server process id, to report its CPU use alongside the gateway's.
    #[arg(long, env = "BENCH_NATS_PID")]
    pub nats_pid: Option<u32>,
    /// nats-server's HTTP monitoring address (host:port, loopback), to read message counts from `/varz`.
    #[arg(long, env = "BENCH_NATS_MONITOR")]
    pub nats_monitor: Option<String>,
    /// The gateway's nats.subject_prefix (events are published on <prefix>.<name>).
    #[arg(long, default_value = "telegraphy")]
    pub subject_prefix: String,
    /// The gateway's auth.tokens_bucket.
    #[arg(long, default_value = "telegraphy_tokens")]
    pub tokens_bucket: String,
    /// First token of every event name and pattern the bench uses (tokens allow `<prefix>.>`).
    #[arg(long, default_value = "bench")]
    pub event_prefix: String,
    /// Client worker processes the connections are spread over (one process holds at most ~19k sockets).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,
    /// Runtime threads per worker process.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub worker_threads: u16,
    /// Connections being opened at once, per worker.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub concurrency: u16,
    /// Lifetime of the minted connect tokens, seconds (<= 3600).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub token_ttl: u64,
    /// Read buffer of each client's WebSocket, bytes.
    #[arg(long, default_value_t = 8192)]
    pub read_buffer: usize,
    /// Hard bound on the whole run, seconds: past it the run stops and fails.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// What to print: a table and a JSON line (both), only the table, or only the JSON line.
    #[arg(long, value_enum, default_value_t = Output::Both)]
    pub output: Output,
}

impl Common {
    pub fn endpoint(&self) -> anyhow::Result<Endpoint> {
        Endpoint::parse(&self.url)
    }

    /// The worker job for this run (`slow` for the never-reading client).
    pub fn job(&self, slow: bool, slow_rcvbuf: u32) -> worker::Job {
        worker::Job {
            url: self.url.clone(),
            nats: self.nats.clone(),
            tokens_bucket: self.tokens_bucket.clone(),
            event_prefix: self.event_prefix.clone(),
            concurrency: usize::from(self.concurrency),
            token_ttl: self.token_ttl,
            deadline_secs: self.timeout + 30,
            slow,
            read_buffer: self.read_buffer,
            slow_rcvbuf,
            sse: false,
            presence_channels: 0,
        }
    }

    /// Starts the worker processes (after checking the targets and that the gateway is ready).
    pub async fn pool(&self) -> anyhow::Result<pool::Pool> {
        self.pool_for(&self.job(false, 0)).await
    }

    /// [`Common::pool`] with another job.
    pub async fn pool_for(&self, job: &worker::Job) -> anyhow::Result<pool::Pool> {
        target::wait_ready(self.endpoint()?.addr, Duration::from_secs(15)).await?;
        pool::Pool::start(usize::from(self.workers), usize::from(self.worker_threads), job).await
    }

    /// Starts measuring the CPU use of the gateway, nats-server and the bench (`workers` = worker pids).
    pub fn cpu_meters(&self, workers: Vec<u32>) -> target::CpuMeters {
        target::CpuMeters::start(self.gateway_pid, self.nats_pid, workers)
    }

    /// Checks the arguments shared by all scenarios.
    fn validate(&self) -> anyhow::Result<()> {
        self.endpoint()?;
        target::loopback_nats(&self.nats)?;
        telegraphy::protocol::names::validate_name(&self.event_prefix)
            .ok()
            .filter(|_| !self.event_prefix.contains('.'))
            .context("--event-prefix must be one token of [A-Za-z0-9_-]")?;
        if let Some(pid) = self.gateway_pid {
            target::memory(pid).context("--gateway-pid")?;
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Worker { threads } = cli.command {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build();
        return match runtime.map_err(anyhow::Error::from).and_then(|rt| rt.block_on(worker::run())) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("telegraphy-bench worker: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let fd_limit = target::raise_fd_limit();
    if let Command::BareServer(args) = cli.command {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
        return match runtime.block_on(bare::run(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("telegraphy-bench bare-server: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    if let Command::EchoWorker(args) = cli.command {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        return match runtime.block_on(echo::run(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("telegraphy-bench echo-worker: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let loadavg = report::loadavg();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let (common, run) = match &cli.command {
        Command::Idle(a) => (&a.common, "idle"),
        Command::Fanout(a) => (&a.common, "fanout"),
        Command::Connect(a) => (&a.common, "connect"),
        Command::Slow(a) => (&a.common, "slow"),
        Command::Rpc(a) => (&a.common, "rpc"),
        Command::Publish(a) => (&a.common, "publish"),
        Command::Catalog(a) => (&a.common, "catalog"),
        Command::Worker { .. } | Command::BareServer(_) | Command::EchoWorker(_) => unreachable!("handled above"),
    };
    if let Err(e) = common.validate() {
        eprintln!("telegraphy-bench: {e:#}");
        return ExitCode::from(2);
    }
    let limit = Duration::from_secs(common.timeout);
    let result = runtime.block_on(async {
        let scenario = async {
            match &cli.command {
                Command::Idle(a) => idle::run(a).await,
                Command::Fanout(a) => fanout::run(a).await,
                Command::Connect(a) => connect::run(a).await,
                Command::Slow(a) => fanout::run_slow(a).await,
                Command::Rpc(a) => rpc::run(a).await,
                Command::Publish(a) => publish::run(a).await,
                Command::Catalog(a) => catalog::run(a).await,
                Command::Worker { .. } | Command::BareServer(_) | Command::EchoWorker(_) => {
                    unreachable!("handled above")
                }
            }
        };
        tokio::time::timeout(limit, scenario)
            .await
            .unwrap_or_else(|_| anyhow::bail!("{run}: run exceeded --timeout {} s", common.timeout))
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(mut outcome) => {
            if let Some(object) = outcome.json.as_object_mut() {
                object.insert(
                    "machine".into(),
                    serde_json::to_value(report::Machine::read(fd_limit, loadavg)).unwrap_or_default(),
                );
            }
            outcome.print(common.output);
            if outcome.errors > 0 {
                eprintln!("telegraphy-bench: {run}: {} error(s)", outcome.errors);
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("telegraphy-bench: {run}: {e:#}");
            ExitCode::from(1)
        }
    }
}
