//! Percentiles over a sorted sample.

/// The `p`-th percentile (0 < p <= 100) of an ascending `sorted` sample, by nearest rank: the
/// smallest value with at least p % of the sample at or below it. `None` for an empty sample.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    // The small allowance keeps float error (99.9 / 100 * 1000 = 999.0000000000001) off the rank.
    let rank = (p / 100.0 * sorted.len() as f64 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50, p99, p99.9 and the maximum of an ascending sample, in that order.
pub(crate) fn summary(sorted: &[u64]) -> Option<[u64; 4]> {
    Some([
        percentile(sorted, 50.0)?,
        percentile(sorted, 99.0)?,
        percentile(sorted, 99.9)?,
        *sorted.last()?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 50.0), Some(50));
        assert_eq!(percentile(&hundred, 99.0), Some(99));
        assert_eq!(percentile(&hundred, 99.9), Some(100));
        assert_eq!(percentile(&hundred, 100.0), Some(100));
        assert_eq!(percentile(&hundred, 0.001), Some(1));
        let thousand: Vec<u64> = (1..=1000).collect();
        assert_eq!(summary(&thousand), Some([500, 990, 999, 1000]));
        assert_eq!(percentile(&[7], 99.9), Some(7));
        assert_eq!(percentile(&[1, 2], 50.0), Some(1));
        assert_eq!(percentile(&[1, 2], 51.0), Some(2));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(summary(&[]), None);
    }

    #[test]
    fn one_outlier_shows_in_the_tail_not_the_median() {
        let mut v = vec![100u64; 999];
        v.push(1_000_000);
        assert_eq!(summary(&v), Some([100, 100, 100, 1_000_000]));
        let mut v = vec![100u64; 990];
        v.extend([5_000; 10]);
        assert_eq!(summary(&v), Some([100, 100, 5_000, 5_000]));
    }
}
