//! Latency histograms (microseconds, HdrHistogram with 3 significant digits) and how they travel between the
//! worker processes and the coordinator.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub type Hist = Histogram<u64>;

/// Highest latency recorded, in microseconds (larger values are clamped to it).
const MAX_US: u64 = 120_000_000;

pub fn new_hist() -> Hist {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// A histogram as (value, count) pairs, for the worker protocol.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WireHist(pub Vec<(u64, u64)>);

impl From<&Hist> for WireHist {
    fn from(h: &Hist) -> Self {
        WireHist(h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect())
    }
}

impl WireHist {
    pub fn merge_into(&self, h: &mut Hist) {
        for &(value, count) in &self.0 {
            let _ = h.record_n(value.clamp(1, MAX_US), count);
        }
    }
}

/// A latency distribution in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Hist) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Up to a few distinct error messages, for the report.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Errors {
    pub count: u64,
    pub samples: Vec<String>,
}

impl Errors {
    const SAMPLES: usize = 5;

    pub fn add(&mut self, message: impl Into<String>) {
        self.count += 1;
        let message = message.into();
        if self.samples.len() < Self::SAMPLES && !self.samples.contains(&message) {
            self.samples.push(message);
        }
    }

    pub fn merge(&mut self, other: &Errors) {
        self.count += other.count;
        for s in &other.samples {
            if self.samples.len() < Self::SAMPLES && !self.samples.contains(s) {
                self.samples.push(s.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_histograms_merge_losslessly_enough() {
        let mut a = new_hist();
        for v in 1..=1000u64 {
            a.record(v * 10).unwrap();
        }
        let mut merged = new_hist();
        WireHist::from(&a).merge_into(&mut merged);
        WireHist::from(&a).merge_into(&mut merged);
        assert_eq!(merged.len(), 2000);
        let l = Latency::of(&merged);
        assert!((l.p50_ms - 5.0).abs() < 0.01, "{l:?}");
        assert!((l.p99_ms - 9.9).abs() < 0.02, "{l:?}");
    }

    #[test]
    fn errors_keep_distinct_samples() {
        let mut e = Errors::default();
        for i in 0..20 {
            e.add(format!("e{}", i % 3));
        }
        assert_eq!(e.count, 20);
        assert_eq!(e.samples, vec!["e0", "e1", "e2"]);
    }
}
