//! The coordinator's side of the worker processes: spawn them, send each a command, gather the replies.

use std::process::Stdio;

use anyhow::{bail, Context};
use futures_util::future::try_join_all;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

use crate::worker::{Cmd, Job, Reply};

struct Proc {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    pid: u32,
}

impl Proc {
    async fn call(&mut self, cmd: &Cmd) -> anyhow::Result<Reply> {
        let mut line = serde_json::to_vec(cmd)?;
        line.push(b'\n');
        self.stdin.write_all(&line).await.context("worker gone")?;
        self.stdin.flush().await?;
        let reply = self.stdout.next_line().await?.context("worker exited without answering")?;
        match serde_json::from_str(&reply).context("bad reply from worker")? {
            Reply::Failed { message } => bail!("worker {}: {message}", self.pid),
            reply => Ok(reply),
        }
    }
}

/// Worker processes; killed when dropped.
pub struct Pool {
    procs: Vec<Proc>,
}

impl Pool {
    /// Starts `count` workers of this executable with the same `job`, each with `threads` runtime threads.
    pub async fn start(count: usize, threads: usize, job: &Job) -> anyhow::Result<Pool> {
        let exe = std::env::current_exe().context("finding this executable")?;
        let mut procs = Vec::with_capacity(count);
        let mut first = serde_json::to_vec(job)?;
        first.push(b'\n');
        for _ in 0..count {
            let mut child = Command::new(&exe)
                .args(["__worker", "--threads", &threads.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("starting a worker process")?;
            let mut stdin = child.stdin.take().context("worker stdin")?;
            let stdout = BufReader::new(child.stdout.take().context("worker stdout")?).lines();
            stdin.write_all(&first).await?;
            let pid = child.id().unwrap_or_default();
            procs.push(Proc { child, stdin, stdout, pid });
        }
        Ok(Pool { procs })
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|p| p.pid).collect()
    }

    /// Sends `cmds[i]` to worker i (all at once) and returns the replies in order.
    pub async fn call_each(&mut self, cmds: Vec<Cmd>) -> anyhow::Result<Vec<Reply>> {
        assert_eq!(cmds.len(), self.procs.len(), "one command per worker");
        try_join_all(self.procs.iter_mut().zip(cmds.iter()).map(|(p, c)| p.call(c))).await
    }

    /// Sends the same command to every worker.
    pub async fn call_all(&mut self, cmd: Cmd) -> anyhow::Result<Vec<Reply>> {
        let cmds = vec![cmd; self.procs.len()];
        self.call_each(cmds).await
    }

    /// Stops the workers and waits (bounded) for them to exit.
    pub async fn stop(mut self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.call_all(Cmd::Stop)).await;
        for p in &mut self.procs {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), p.child.wait()).await;
        }
    }
}

/// Splits `count` items starting at `first` over `parts` as evenly as possible: (first, count) per part.
pub fn split(first: usize, count: usize, parts: usize) -> Vec<(usize, usize)> {
    let parts = parts.max(1);
    let mut next = first;
    (0..parts)
        .map(|k| {
            let n = count / parts + usize::from(k < count % parts);
            let range = (next, n);
            next += n;
            range
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn split_covers_everything_once() {
        assert_eq!(super::split(10, 7, 3), vec![(10, 3), (13, 2), (15, 2)]);
        assert_eq!(super::split(0, 2, 3), vec![(0, 1), (1, 1), (2, 0)]);
    }
}
