//! Output: a human table on stdout, then one JSON line with everything (for scripts and the record).

use serde::Serialize;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Human table, then the JSON line.
    Both,
    /// Only the human table (and notes).
    Table,
    /// Only the JSON line.
    Json,
}

/// A titled table of rows.
pub struct Table {
    pub title: String,
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: impl Into<String>, headers: Vec<&'static str>) -> Self {
        Table { title: title.into(), headers, rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.len())
                    .chain([self.headers[c].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<&str>| {
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect::<Vec<_>>().join("  ")
        };
        let mut out = format!("{}\n{}\n", self.title, line(self.headers.clone()));
        for row in &self.rows {
            out.push_str(&line(row.iter().map(String::as_str).collect()));
            out.push('\n');
        }
        out
    }
}

/// The result of a scenario: tables for people, one JSON object for machines, and the errors that make the
/// run fail (exit status 1).
pub struct Outcome {
    pub tables: Vec<Table>,
    pub notes: Vec<String>,
    pub json: Value,
    pub errors: u64,
}

impl Outcome {
    pub fn print(&self, output: Output) {
        if output != Output::Json {
            for table in &self.tables {
                println!("{}", table.render());
            }
            for note in &self.notes {
                println!("{note}");
            }
        }
        if output != Output::Table {
            println!("{}", self.json);
        }
    }
}

/// Facts about this machine recorded with every result.
#[derive(Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub mem_total_mb: u64,
    pub kernel: String,
    pub fd_limit: u64,
    /// /proc/loadavg when the run started: other work on this shared machine skews the figures.
    pub loadavg_at_start: String,
}

impl Machine {
    pub fn read(fd_limit: u64, loadavg_at_start: String) -> Self {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kb: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mem_total_mb: mem_kb / 1024,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
            fd_limit,
            loadavg_at_start,
        }
    }
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `x` with at most `digits` decimals, as text.
pub fn num(x: f64, digits: usize) -> String {
    format!("{x:.digits$}")
}
