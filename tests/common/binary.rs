//! The gateway binary as a child process, for the tests of the CLI, signals and multi-node faults: a clean
//! environment, a fixed loopback port (so a node can be restarted at the same address), its stderr collected
//! (and echoed when `TELEGRAPHY_TEST_LOGS` is set). Killed when dropped.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::{mpsc, Mutex},
};

use super::{free_port, metric_value, WAIT};

pub const GATEWAY_BIN: &str = env!("CARGO_BIN_EXE_telegraphy-gateway");

/// The binary with a clean environment: no TELEGRAPHY_* or RUST_LOG from the caller, NATS and secret set;
/// stdout and stderr piped, killed on drop.
pub fn gateway_command(nats_url: &str, secret: &str) -> Command {
    program_command(Path::new(GATEWAY_BIN), nats_url, secret)
}

/// [`gateway_command`] for another program that loads the gateway's settings (e.g. an example app embedding it).
pub fn program_command(program: &Path, nats_url: &str, secret: &str) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars() {
        if key.starts_with("TELEGRAPHY_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.env("TELEGRAPHY_NATS__URL", nats_url)
        .env("TELEGRAPHY_AUTH__SECRET", secret)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// `telegraphy-gateway serve` (or another program serving a node, see [`GatewayBinary::launch_program`]) as a
/// child process.
pub struct GatewayBinary {
    program: PathBuf,
    pub name: String,
    pub port: u16,
    nats_url: String,
    secret: String,
    env: Vec<(String, String)>,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

impl GatewayBinary {
    /// Launches node `name` (with `env` on top of [`gateway_command`]'s) and waits until it is ready.
    pub async fn start(name: &str, nats_url: &str, secret: &str, env: &[(&str, &str)]) -> Self {
        let gateway = Self::launch(name, nats_url, secret, env).await;
        gateway.wait_ready(WAIT).await;
        gateway
    }

    /// Launches node `name` and waits until it listens (not until it is ready).
    pub async fn launch(name: &str, nats_url: &str, secret: &str, env: &[(&str, &str)]) -> Self {
        Self::launch_program(Path::new(GATEWAY_BIN), name, nats_url, secret, env).await
    }

    /// Launches `program` (which must log `listening on http://` once it listens) like [`GatewayBinary::launch`].
    pub async fn launch_program(
        program: &Path,
        name: &str,
        nats_url: &str,
        secret: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let mut gateway = GatewayBinary {
            program: program.to_path_buf(),
            name: name.to_string(),
            port: free_port(),
            nats_url: nats_url.to_string(),
            secret: secret.to_string(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            child: None,
            log: Arc::new(Mutex::new(String::new())),
        };
        gateway.relaunch().await;
        gateway
    }

    /// Starts the process again (same name, port and settings) and waits until it listens.
    pub async fn relaunch(&mut self) {
        let mut cmd = program_command(&self.program, &self.nats_url, &self.secret);
        cmd.env("TELEGRAPHY_HTTP__BIND", format!("127.0.0.1:{}", self.port)).env("TELEGRAPHY_NODE__NAME", &self.name);
        cmd.stdout(std::process::Stdio::null()); // `serve` logs to stderr; an unread pipe could fill
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        let mut child = cmd.spawn().expect("spawn the gateway binary");
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let (listening_tx, mut listening) = mpsc::channel(1);
        let (log, name) = (self.log.clone(), self.name.clone());
        let echo = std::env::var_os("TELEGRAPHY_TEST_LOGS").is_some();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("listening on http://") {
                    let _ = listening_tx.try_send(());
                }
                if echo {
                    eprintln!("[{name}] {line}");
                }
                let mut log = log.lock().await;
                log.push_str(&line);
                log.push('\n');
            }
        });
        let listened = tokio::time::timeout(WAIT, listening.recv()).await;
        assert!(matches!(listened, Ok(Some(()))), "{} did not log `listening on http://` within {WAIT:?}", self.name);
        self.child = Some(child);
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `/readyz` status, 0 when the node does not answer.
    pub async fn readyz(&self) -> u16 {
        match reqwest::get(self.http("/readyz")).await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// Waits until `/readyz` answers 200; on timeout the panic says why the node was not ready (the last
    /// `/readyz` answer) and shows the end of its log.
    pub async fn wait_ready(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let last = match reqwest::get(self.http("/readyz")).await {
                Ok(r) if r.status().as_u16() == 200 => return,
                Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default().trim()),
                Err(e) => format!("no answer: {e}"),
            };
            if tokio::time::Instant::now() >= deadline {
                let log = self.log().await;
                let tail: Vec<&str> = log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
                panic!(
                    "{} not ready within {limit:?} (last /readyz: {last}); log tail:\n{}",
                    self.name,
                    tail.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn metric(&self, series: &str) -> f64 {
        let text = reqwest::get(self.http("/metrics")).await.unwrap().text().await.unwrap();
        metric_value(&text, series)
    }

    /// The running process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(Child::id).expect("running")
    }

    pub fn sigterm(&self) {
        let pid = self.pid().to_string();
        let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(status.success());
    }

    /// Waits (bounded) for the exit; returns the exit code (a signal death fails the test).
    pub async fn wait_exit(&mut self, limit: Duration) -> i32 {
        let mut child = self.child.take().expect("running");
        let status = tokio::time::timeout(limit, child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit within {limit:?}", self.name))
            .unwrap();
        status.code().expect("exited normally, not by a signal")
    }

    /// SIGKILL, and waits for it to be gone.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill the gateway");
        }
    }

    /// Resident set size of the process, in bytes (VmRSS of /proc/<pid>/status).
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read /proc/<pid>/status");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/<pid>/status");
        let kib: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS value");
        kib * 1024
    }

    pub async fn log(&self) -> String {
        self.log.lock().await.clone()
    }
}
