//! Medians, spreads and percentiles of repeated measurements.

use std::time::Duration;

use serde::Serialize;

/// A repeated measurement: its median and its range.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Spread {
    /// Median of the repeats.
    pub median: f64,
    /// Smallest repeat.
    pub min: f64,
    /// Largest repeat.
    pub max: f64,
    /// Number of repeats.
    pub n: usize,
}

impl Spread {
    /// Summarises `values` (empty: all zero).
    #[must_use]
    pub fn of(values: &[f64]) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => 0.0,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => f64::midpoint(sorted[n / 2 - 1], sorted[n / 2]),
        };
        Spread {
            median,
            min: sorted.first().copied().unwrap_or(0.0),
            max: sorted.last().copied().unwrap_or(0.0),
            n,
        }
    }

    /// `median (min–max)` with `digits` decimals.
    #[must_use]
    pub fn show(&self, digits: usize) -> String {
        if self.n <= 1 {
            return format!("{:.digits$}", self.median);
        }
        format!(
            "{:.digits$} ({:.digits$}–{:.digits$})",
            self.median, self.min, self.max
        )
    }
}

/// The `p`th percentile (nearest rank) of `samples`, in milliseconds.
#[must_use]
pub fn percentile_ms(samples: &[Duration], p: usize) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let index = (sorted.len() * p)
        .div_ceil(100)
        .saturating_sub(1)
        .min(sorted.len().saturating_sub(1));
    sorted.get(index).copied().unwrap_or_default().as_secs_f64() * 1000.0
}

/// The `p`th percentile (nearest rank) of plain numbers.
#[must_use]
pub fn percentile(values: &[f64], p: usize) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = (sorted.len() * p)
        .div_ceil(100)
        .saturating_sub(1)
        .min(sorted.len().saturating_sub(1));
    sorted.get(index).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        let s = Spread::of(&[3.0, 1.0, 2.0]);
        assert!((s.median - 2.0).abs() < 1e-9 && (s.min - 1.0).abs() < 1e-9 && (s.max - 3.0).abs() < 1e-9);
        assert!((Spread::of(&[1.0, 2.0]).median - 1.5).abs() < 1e-9);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((percentile(&v, 99) - 99.0).abs() < 1e-9);
        assert!((percentile(&v, 50) - 50.0).abs() < 1e-9);
    }
}
