//! The summary math: HDR histograms of nanoseconds, and median with min–max across rounds.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest value a histogram holds: one minute in nanoseconds (longer values are clamped).
const MAX_NS: u64 = 60_000_000_000;

/// An empty histogram of nanoseconds, 3 significant digits (0.1 % resolution).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds")
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(ns);
}

/// The value at percentile `p` (0–100) of a histogram of nanoseconds, in microseconds.
pub fn percentile_us(h: &Histogram<u64>, p: f64) -> f64 {
    if h.is_empty() {
        return f64::NAN;
    }
    h.value_at_percentile(p) as f64 / 1000.0
}

/// Median and range of one figure across rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for no values. The median of an even count is the mean of the middle two.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[v.len() - 1],
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"median": self.median, "min": self.min, "max": self.max})
    }
}

/// Element-wise `b - a` (the gateway lane minus the direct lane, round by round).
pub fn differences(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| b - a).collect()
}

/// Element-wise `b / a`.
pub fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(a, b)| if *a > 0.0 { b / a } else { f64::NAN })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_the_median_and_the_range() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(
            s,
            Spread {
                median: 2.0,
                min: 1.0,
                max: 3.0
            }
        );
        assert_eq!(Spread::of(&[4.0, 1.0, 3.0, 2.0]).unwrap().median, 2.5);
        assert_eq!(Spread::of(&[7.0]).unwrap().median, 7.0);
        assert!(Spread::of(&[]).is_none());
        assert_eq!(Spread::of(&[f64::NAN, 5.0]).unwrap().median, 5.0);
    }

    #[test]
    fn percentiles_come_out_in_microseconds() {
        let mut h = histogram();
        // 1 µs … 1000 µs, once each.
        for us in 1..=1000u64 {
            record(&mut h, Duration::from_micros(us));
        }
        let p50 = percentile_us(&h, 50.0);
        let p99 = percentile_us(&h, 99.0);
        // 3 significant digits: within 0.1 % of the exact rank.
        assert!((p50 - 500.0).abs() <= 0.5, "{p50}");
        assert!((p99 - 990.0).abs() <= 1.0, "{p99}");
        assert!(percentile_us(&histogram(), 50.0).is_nan());
    }

    #[test]
    fn lanes_are_compared_round_by_round() {
        assert_eq!(differences(&[10.0, 20.0], &[15.0, 21.0]), vec![5.0, 1.0]);
        assert_eq!(ratios(&[10.0, 20.0], &[5.0, 20.0]), vec![0.5, 1.0]);
        assert!(ratios(&[0.0], &[1.0])[0].is_nan());
    }

    #[test]
    fn huge_values_are_clamped_not_lost() {
        let mut h = histogram();
        record(&mut h, Duration::from_secs(3600));
        assert_eq!(h.len(), 1);
    }
}
