//! Latency samples and their percentiles.
//!
//! Percentiles use the nearest-rank method: the p-th percentile of n sorted samples is the
//! sample at rank ⌈p/100 × n⌉ (1-based), so it is always a value that was measured, never an
//! interpolation between two.

use std::time::Duration;

use serde::Serialize;

/// Latencies in microseconds, as measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Samples {
    micros: Vec<u64>,
}

impl Samples {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            micros: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn push(&mut self, elapsed: Duration) {
        self.micros
            .push(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    pub(crate) fn extend(&mut self, other: Samples) {
        self.micros.extend(other.micros);
    }

    pub(crate) fn len(&self) -> usize {
        self.micros.len()
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        let mean = if sorted.is_empty() {
            0.0
        } else {
            sorted.iter().map(|&v| v as f64).sum::<f64>() / sorted.len() as f64
        };
        LatencySummary {
            count: sorted.len(),
            p50_us: nearest_rank(&sorted, 50.0),
            p99_us: nearest_rank(&sorted, 99.0),
            mean_us: mean,
            min_us: sorted.first().copied().unwrap_or(0),
            max_us: sorted.last().copied().unwrap_or(0),
        }
    }
}

/// What a set of latency samples says, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct LatencySummary {
    pub(crate) count: usize,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) mean_us: f64,
    pub(crate) min_us: u64,
    pub(crate) max_us: u64,
}

/// The nearest-rank `percentile` (0 < p ≤ 100) of `sorted` (ascending); 0 when empty.
pub(crate) fn nearest_rank(sorted: &[u64], percentile: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (percentile / 100.0 * sorted.len() as f64).ceil() as usize;
    // Rank 0 only happens for p = 0, which means the smallest sample.
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// `numerator / denominator`, or 0 when the denominator is 0 (nothing was measured).
/// The median of `values`, the mean of the middle two for an even count; 0 for none.
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

pub(crate) fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator == 0.0 {
        0.0
    } else {
        numerator / denominator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_one_to_ten_is_five_by_nearest_rank() {
        let data: Vec<u64> = (1..=10).collect();
        assert_eq!(nearest_rank(&data, 50.0), 5);
    }

    #[test]
    fn the_p99_of_one_to_a_hundred_is_ninety_nine() {
        let data: Vec<u64> = (1..=100).collect();
        assert_eq!(nearest_rank(&data, 99.0), 99);
        assert_eq!(nearest_rank(&data, 100.0), 100);
    }

    #[test]
    fn the_p99_of_ten_samples_is_the_largest() {
        let data: Vec<u64> = (1..=10).collect();
        assert_eq!(nearest_rank(&data, 99.0), 10);
    }

    #[test]
    fn a_percentile_of_one_sample_is_that_sample() {
        assert_eq!(nearest_rank(&[42], 50.0), 42);
        assert_eq!(nearest_rank(&[42], 99.0), 42);
    }

    #[test]
    fn an_empty_sample_set_summarises_as_zeros() {
        let summary = Samples::default().summary();
        assert_eq!(summary.count, 0);
        assert_eq!(summary.p50_us, 0);
        assert_eq!(summary.p99_us, 0);
    }

    #[test]
    fn samples_are_sorted_before_the_percentiles_are_taken() {
        let mut samples = Samples::default();
        for micros in [900, 100, 500, 300, 700] {
            samples.push(Duration::from_micros(micros));
        }
        let summary = samples.summary();
        assert_eq!(summary.p50_us, 500);
        assert_eq!(summary.p99_us, 900);
        assert_eq!(summary.min_us, 100);
        assert!((summary.mean_us - 500.0).abs() < 1e-9);
    }

    #[test]
    fn a_ratio_over_nothing_is_zero_not_infinity() {
        assert_eq!(ratio(3.0, 0.0), 0.0);
        assert_eq!(ratio(3.0, 2.0), 1.5);
    }
}
