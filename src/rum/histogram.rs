//! A mergeable latency histogram with fixed log-scale buckets.
//!
//! Every histogram everywhere (one minute of one key, a merged window, another fleet node's
//! copy read back from a shared store) has the same bucket layout, so merging is element-wise
//! addition: no sample is kept, the order of merges does not matter, and the result is the
//! same as if every sample had been recorded into one histogram. Quantiles are estimated from
//! the counts by interpolating log-linearly inside the bucket that holds the quantile.
//!
//! Layout: [`BUCKETS_PER_DOUBLING`] buckets per doubling, from [`MIN_MS`] (1 ms) up to
//! [`MAX_MS`] (65.536 s), so [`BUCKETS`] = 64. Bucket `i` covers `[lower_ms(i), upper_ms(i))`;
//! each bucket is 2^(1/4) ≈ 1.19 times as wide as the one below it, so a quantile is never
//! further than one bucket (±19 %) from the true sample quantile, and much closer for
//! smooth distributions. Values below 1 ms are counted in the first bucket and values at or
//! above 65.5 s in the last one: that is the outlier clip, so one absurd timing moves a
//! quantile by at most one sample's weight and never stretches the scale.
//!
//! Pure: depends on nothing but `std`.

/// Buckets per doubling of the latency. Four keeps the quantile error under 19 % with 64
/// buckets of 4 bytes each.
pub const BUCKETS_PER_DOUBLING: usize = 4;
/// Lower edge of the first bucket, in milliseconds.
pub const MIN_MS: f64 = 1.0;
/// Number of doublings covered: 1 ms · 2^16 = 65.536 s, above any beacon fetch timeout.
const DOUBLINGS: usize = 16;
/// Number of buckets (fixed; a shared store's layout depends on it).
pub const BUCKETS: usize = BUCKETS_PER_DOUBLING * DOUBLINGS;
/// Upper edge of the last bucket, in milliseconds.
pub const MAX_MS: f64 = 65_536.0;

/// Counts of latency samples per fixed log-scale bucket.
///
/// Counts are `u32` to keep one histogram at 256 bytes (the windows hold one per key and
/// minute); additions saturate at `u32::MAX`, far beyond any one window's samples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    counts: [u32; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: [0; BUCKETS],
        }
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a histogram from its counts, e.g. as read back from a shared store. `None`
    /// when the slice does not have exactly [`BUCKETS`] entries (a different layout must not
    /// be merged silently).
    pub fn from_counts(counts: &[u32]) -> Option<Self> {
        let counts: [u32; BUCKETS] = counts.try_into().ok()?;
        Some(Histogram { counts })
    }

    /// The counts per bucket, [`BUCKETS`] long, lowest bucket first.
    pub fn counts(&self) -> &[u32] {
        &self.counts
    }

    /// Records one successful timing in milliseconds. Values outside the scale are clipped
    /// into the first or last bucket; NaN is not a timing and is ignored (ingestion rejects
    /// it before it gets here). Returns whether the sample was counted.
    pub fn record(&mut self, ms: f64) -> bool {
        if ms.is_nan() {
            return false;
        }
        let i = bucket_of(ms);
        self.counts[i] = self.counts[i].saturating_add(1);
        true
    }

    /// Adds another histogram's counts to this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    /// Number of samples recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|&c| c == 0)
    }

    /// The `q` quantile (0 ≤ q ≤ 1) in milliseconds, or `None` when the histogram is empty
    /// or `q` is out of range.
    ///
    /// The rank `q · n` is located in the cumulative counts; inside that bucket the samples
    /// are assumed spread evenly on the log scale (the bucket layout's own scale), so the
    /// estimate is `lower · (upper / lower)^f` where `f` is the rank's fraction of the way
    /// through the bucket's count. `quantile(0.0)` is the lower edge of the lowest non-empty
    /// bucket and `quantile(1.0)` the upper edge of the highest.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&q) {
            return None;
        }
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = q * n as f64;
        let mut below = 0.0_f64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let c = f64::from(c);
            if below + c >= rank {
                let f = ((rank - below) / c).clamp(0.0, 1.0);
                let lower = lower_ms(i);
                return Some(lower * (upper_ms(i) / lower).powf(f));
            }
            below += c;
        }
        // Unreachable for 0 ≤ q ≤ 1 (the last non-empty bucket reaches n), kept total for
        // rounding: the top of the highest non-empty bucket.
        self.counts.iter().rposition(|&c| c > 0).map(upper_ms)
    }
}

/// Index of the bucket that counts `ms`: values below [`MIN_MS`] (and NaN) go to 0, values at
/// or above [`MAX_MS`] to `BUCKETS - 1`.
pub fn bucket_of(ms: f64) -> usize {
    if ms.is_nan() || ms <= MIN_MS {
        return 0;
    }
    if ms >= MAX_MS {
        return BUCKETS - 1;
    }
    let estimate = ((ms / MIN_MS).log2() * BUCKETS_PER_DOUBLING as f64).floor();
    let mut i = (estimate as usize).min(BUCKETS - 1);
    // log2 rounding can put a value at an edge one bucket off; the edges are the truth.
    if i > 0 && ms < lower_ms(i) {
        i -= 1;
    } else if i + 1 < BUCKETS && ms >= upper_ms(i) {
        i += 1;
    }
    i
}

/// Lower edge of bucket `i` in milliseconds.
pub fn lower_ms(i: usize) -> f64 {
    MIN_MS * (i as f64 / BUCKETS_PER_DOUBLING as f64).exp2()
}

/// Upper edge of bucket `i` in milliseconds (the lower edge of bucket `i + 1`).
pub fn upper_ms(i: usize) -> f64 {
    lower_ms(i + 1)
}

#[cfg(test)]
mod tests;
