//! What the bench talks to: loopback-only endpoints, the gateway's `/metrics` and `/readyz`, and the
//! gateway's (and the bench's own) memory and CPU read from `/proc`.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A gateway WebSocket endpoint on this machine.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `ws://host:port/path` as given (host resolved to a loopback address in `addr`).
    pub url: String,
    pub addr: SocketAddr,
}

impl Endpoint {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url.strip_prefix("ws://").context("--url must start with ws:// (loopback only, no TLS)")?;
        let authority = rest.split('/').next().unwrap_or_default();
        Ok(Endpoint { url: url.to_string(), addr: loopback_addr(authority, "--url")? })
    }
}

/// Checks a `nats://host:port` URL is on this machine; returns it unchanged.
pub fn loopback_nats(url: &str) -> anyhow::Result<String> {
    let rest = url.strip_prefix("nats://").context("--nats must start with nats:// (loopback only)")?;
    loopback_addr(rest.trim_end_matches('/'), "--nats")?;
    Ok(url.to_string())
}

/// Parses `host:port` and refuses anything but a loopback address (`localhost` means 127.0.0.1).
fn loopback_addr(authority: &str, what: &str) -> anyhow::Result<SocketAddr> {
    let (host, port) = authority.rsplit_once(':').with_context(|| format!("{what}: {authority:?} has no port"))?;
    let port: u16 = port.parse().with_context(|| format!("{what}: bad port in {authority:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse().with_context(|| format!("{what}: {host:?} is not an IP address or localhost"))?
    };
    if !ip.is_loopback() {
        bail!("{what}: {ip} is not a loopback address; this tool only loads gateways on this machine");
    }
    Ok(SocketAddr::new(ip, port))
}

/// `GET path` over HTTP/1.0 with a bound; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let fetch = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(Duration::from_secs(5), fetch).await.context("HTTP request timed out")??;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("bad HTTP response")?;
    Ok((status, body.to_string()))
}

/// Waits (bounded) until the gateway answers `/readyz` with 200.
pub async fn wait_ready(addr: SocketAddr, limit: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        match http_get(addr, "/readyz").await {
            Ok((200, _)) => return Ok(()),
            Ok((status, body)) if start.elapsed() >= limit => {
                bail!("gateway at {addr} not ready after {limit:?}: {status} {}", body.trim())
            }
            Err(e) if start.elapsed() >= limit => bail!("gateway at {addr} not reachable after {limit:?}: {e:#}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The gateway's Prometheus counters and gauges (`name{labels}` -> value).
#[derive(Clone, Debug, Default)]
pub struct Scrape(HashMap<String, f64>);

impl Scrape {
    /// [`Scrape::take`], or no values when the server has no `/metrics` (an app embedding a node, such as the
    /// example `embed-actix`, need not serve it): the gateway's counters then read 0.
    pub async fn take_or_empty(addr: SocketAddr) -> Self {
        Scrape::take(addr).await.unwrap_or_default()
    }

    pub async fn take(addr: SocketAddr) -> anyhow::Result<Self> {
        let (status, body) = http_get(addr, "/metrics").await?;
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        let values = body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                Some((key.to_string(), value.parse().ok()?))
            })
            .collect();
        Ok(Scrape(values))
    }

    pub fn get(&self, key: &str) -> f64 {
        self.0.get(key).copied().unwrap_or(0.0)
    }

    /// How much counter `key` grew since `before`.
    pub fn delta(&self, before: &Scrape, key: &str) -> u64 {
        (self.get(key) - before.get(key)).max(0.0) as u64
    }
}

/// Resident memory of a process, from `/proc/<pid>/status`.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Memory {
    pub rss_kb: u64,
    pub rss_anon_kb: u64,
    pub hwm_kb: u64,
}

pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Ok(Memory { rss_kb: field("VmRSS:"), rss_anon_kb: field("RssAnon:"), hwm_kb: field("VmHWM:") })
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return Duration::ZERO };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (1-based).
    let Some((_, after)) = stat.rsplit_once(')') else { return Duration::ZERO };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// CPU use of a set of processes over a span of wall time, as a percentage of one core.
pub struct CpuMeter {
    pids: Vec<u32>,
    start: Instant,
    used: Duration,
}

impl CpuMeter {
    pub fn start(pids: Vec<u32>) -> Self {
        let used = pids.iter().map(|p| cpu_time(*p)).sum();
        CpuMeter { pids, start: Instant::now(), used }
    }

    /// Percent of one core used since `start` (200 = both cores of this machine).
    pub fn percent(&self) -> f64 {
        let used: Duration = self.pids.iter().map(|p| cpu_time(*p)).sum();
        let wall = self.start.elapsed().as_secs_f64().max(1e-6);
        (used.saturating_sub(self.used).as_secs_f64() / wall * 100.0 * 10.0).round() / 10.0
    }
}

/// CPU use during a span, in percent of one core: the gateway, nats-server and the bench's own processes.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct CpuUse {
    pub gateway: Option<f64>,
    pub nats: Option<f64>,
    pub bench: f64,
}

pub struct CpuMeters {
    gateway: Option<CpuMeter>,
    nats: Option<CpuMeter>,
    bench: CpuMeter,
}

impl CpuMeters {
    /// `bench` = the worker processes; this process is added.
    pub fn start(gateway: Option<u32>, nats: Option<u32>, mut bench: Vec<u32>) -> Self {
        bench.push(std::process::id());
        CpuMeters {
            gateway: gateway.map(|p| CpuMeter::start(vec![p])),
            nats: nats.map(|p| CpuMeter::start(vec![p])),
            bench: CpuMeter::start(bench),
        }
    }

    pub fn read(&self) -> CpuUse {
        CpuUse {
            gateway: self.gateway.as_ref().map(CpuMeter::percent),
            nats: self.nats.as_ref().map(CpuMeter::percent),
            bench: self.bench.percent(),
        }
    }
}

/// `Some(x)` as text with no decimals, `-` for None.
pub fn percent_cell(x: Option<f64>) -> String {
    x.map_or("-".into(), |c| format!("{c:.0}"))
}

/// Raises this process's open-file limit to its hard limit (inherited by worker processes).
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert_eq!(Endpoint::parse("ws://127.0.0.1:8080/ws").unwrap().addr.port(), 8080);
        assert!(Endpoint::parse("ws://localhost:1/ws").unwrap().addr.ip().is_loopback());
        assert!(Endpoint::parse("ws://[::1]:9/ws").is_ok());
        assert!(Endpoint::parse("ws://10.0.0.1:8080/ws").is_err());
        assert!(Endpoint::parse("ws://example.com:80/ws").is_err());
        assert!(Endpoint::parse("wss://127.0.0.1:443/ws").is_err());
        assert!(loopback_nats("nats://127.0.0.1:4222").is_ok());
        assert!(loopback_nats("nats://192.168.1.2:4222").is_err());
    }
}
