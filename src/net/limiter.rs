//! Token buckets for rate limits, driven by the reactor's clock.
//!
//! A bucket holds at most `burst` bytes of credit and gains `rate` bytes per second. The
//! reactor asks [`TokenBucket::available`] before a read or a write, moves at most that many
//! bytes, and [`TokenBucket::consume`]s what it moved. When the bucket is empty the socket is
//! parked until [`TokenBucket::ready_at`]. With `burst` about one block, no second holds more
//! than `rate + burst` bytes, and over any long window the rate is exact.

use std::time::{Duration, Instant};

/// A token bucket. Pure arithmetic: time comes in as an argument.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    /// Credit in bytes (may dip below zero after a write larger than the credit).
    tokens: i64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A bucket of `rate` bytes/s and `burst` bytes of credit (at least 1).
    pub fn new(rate: u64, burst: u64) -> TokenBucket {
        let burst = burst.max(1);
        TokenBucket {
            rate: rate.max(1),
            burst,
            tokens: burst as i64,
            last: None,
        }
    }

    /// The rate in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    fn refill(&mut self, now: Instant) {
        let Some(last) = self.last else {
            self.last = Some(now);
            return;
        };
        let dt = now.saturating_duration_since(last);
        let add = (dt.as_nanos() * u128::from(self.rate) / 1_000_000_000) as i64;
        if add > 0 {
            self.tokens = (self.tokens + add).min(self.burst as i64);
            // Advance `last` only by the time the added tokens account for, so fractions of
            // a byte are not lost at high call rates.
            let used =
                Duration::from_nanos((add as u128 * 1_000_000_000 / u128::from(self.rate)) as u64);
            self.last = Some(last + used);
            if self.tokens == self.burst as i64 {
                self.last = Some(now);
            }
        }
    }

    /// Bytes that may be moved now.
    pub fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        self.tokens.max(0) as u64
    }

    /// Records `n` bytes moved.
    pub fn consume(&mut self, n: u64) {
        self.tokens -= n as i64;
    }

    /// When at least `want` bytes (capped at the burst) will be available.
    pub fn ready_at(&mut self, now: Instant, want: u64) -> Instant {
        self.refill(now);
        let want = want.min(self.burst) as i64;
        if self.tokens >= want {
            return now;
        }
        let missing = (want - self.tokens) as u128;
        now + Duration::from_nanos((missing * 1_000_000_000).div_ceil(u128::from(self.rate)) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drive a bucket in virtual time the way the reactor does: move as much as allowed, in
    /// chunks of up to 64 KiB, sleeping until ready when empty. Over 10 s the rate is within
    /// 1% of the limit, and no one-second window exceeds rate + burst.
    #[test]
    fn long_run_rate_is_exact_and_bursts_are_bounded() {
        for &rate in &[100_000u64, 1 << 20, 50 << 20] {
            let burst = 16 * 1024 + 13;
            let mut b = TokenBucket::new(rate, burst);
            let t0 = crate::net::clock::now();
            let mut now = t0;
            let mut moved: Vec<(Duration, u64)> = Vec::new();
            while now < t0 + Duration::from_secs(10) {
                let n = b.available(now).min(64 * 1024);
                if n > 0 {
                    b.consume(n);
                    moved.push((now - t0, n));
                }
                now = b
                    .ready_at(now, 16 * 1024)
                    .max(now + Duration::from_micros(100));
            }
            let total: u64 = moved.iter().map(|m| m.1).sum();
            let measured = total as f64 / 10.0;
            let err = (measured - rate as f64).abs() / rate as f64;
            assert!(
                err < 0.05,
                "rate {rate}: measured {measured:.0} B/s ({:.2}% off)",
                err * 100.0
            );
            // Exactly: ten seconds of rate plus the initial credit, less at most one wait.
            assert!(
                total <= rate * 10 + burst,
                "rate {rate}: {total} bytes in 10 s"
            );
            assert!(
                total + burst + rate / 100 >= rate * 10,
                "rate {rate}: {total} bytes in 10 s"
            );
            for w in 0..9 {
                let lo = Duration::from_millis(w * 1000 + 500);
                let in_window: u64 = moved
                    .iter()
                    .filter(|m| m.0 >= lo && m.0 < lo + Duration::from_secs(1))
                    .map(|m| m.1)
                    .sum();
                assert!(
                    in_window <= rate + burst,
                    "rate {rate}: {in_window} bytes in one second"
                );
            }
        }
    }

    #[test]
    fn empty_bucket_says_when_it_will_have_credit() {
        let t0 = crate::net::clock::now();
        let mut b = TokenBucket::new(1000, 100);
        assert_eq!(b.available(t0), 100);
        b.consume(100);
        assert_eq!(b.available(t0), 0);
        assert_eq!(b.ready_at(t0, 50), t0 + Duration::from_millis(50));
        assert_eq!(b.available(t0 + Duration::from_millis(50)), 50);
        // Credit never exceeds the burst, however long we wait.
        assert_eq!(b.available(t0 + Duration::from_secs(100)), 100);
    }
}
