//! Latency samples in an HDR histogram: fixed memory however long the run, percentiles to three
//! significant digits (a 1,234 µs sample is reported within 1 µs of its value).

use hdrhistogram::Histogram;

/// One reader's (or a whole run's) probe latencies, in nanoseconds.
#[derive(Debug, Clone)]
pub(crate) struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        // Three significant digits; the range grows as samples need it.
        Latencies(Histogram::new(3).expect("3 significant digits is a valid precision"))
    }
}

impl Latencies {
    /// Adds one sample.
    pub(crate) fn record(&mut self, ns: u64) {
        // Auto-resizing, so only a value beyond u64's range could fail: there is none.
        let _ = self.0.record(ns.max(1));
    }

    /// Adds every sample of `other`.
    pub(crate) fn add(&mut self, other: &Latencies) {
        let _ = self.0.add(&other.0);
    }

    /// How many samples.
    pub(crate) fn len(&self) -> u64 {
        self.0.len()
    }

    /// p50, p99, p99.9 and the maximum, in that order; `None` without samples.
    pub(crate) fn summary(&self) -> Option<[u64; 4]> {
        if self.0.is_empty() {
            return None;
        }
        let q = |quantile: f64| self.0.value_at_quantile(quantile);
        Some([q(0.50), q(0.99), q(0.999), self.0.max()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(samples: impl IntoIterator<Item = u64>) -> Latencies {
        let mut l = Latencies::default();
        for s in samples {
            l.record(s);
        }
        l
    }

    /// Equal to three significant digits.
    fn near(got: u64, want: u64) -> bool {
        got.abs_diff(want) <= want / 1000
    }

    #[test]
    fn percentiles_within_three_significant_digits() {
        let [p50, p99, p999, max] = of(1..=1000).summary().unwrap();
        assert!(
            near(p50, 500) && near(p99, 990) && near(p999, 999),
            "{p50} {p99} {p999}"
        );
        assert!(near(max, 1000), "{max}");
        let [p50, p99, _, max] = of((1..=1000).map(|us| us * 1000)).summary().unwrap();
        assert!(near(p50, 500_000) && near(p99, 990_000), "{p50} {p99}");
        assert!(near(max, 1_000_000), "{max}");
        assert_eq!(of([]).summary(), None);
    }

    #[test]
    fn one_outlier_shows_in_the_tail_not_the_median() {
        let l = of(std::iter::repeat_n(100, 999).chain([1_000_000]));
        let [p50, p99, p999, max] = l.summary().unwrap();
        assert_eq!((p50, p99, p999), (100, 100, 100));
        assert!(near(max, 1_000_000), "{max}");
        let l = of(std::iter::repeat_n(100, 990).chain([5_000; 10]));
        let [p50, _, p999, max] = l.summary().unwrap();
        assert_eq!(p50, 100);
        assert!(near(p999, 5_000) && near(max, 5_000), "{p999} {max}");
    }

    #[test]
    fn merged_runs_count_every_sample() {
        let mut a = of([10, 20]);
        a.add(&of([30]));
        assert_eq!(a.len(), 3);
    }
}
