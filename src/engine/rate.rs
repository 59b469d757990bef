//! Transfer rate estimates over a sliding window of one-second buckets, advanced by the
//! engine's once-a-second tick (no clock reads here).

/// Seconds of history a rate averages over.
pub const WINDOW: usize = 5;

/// Bytes per second over the last [`WINDOW`] seconds.
#[derive(Clone, Debug, Default)]
pub struct Rate {
    buckets: [u64; WINDOW],
    current: u64,
    filled: usize,
    total: u64,
}

impl Rate {
    /// Counts `n` bytes in the current second.
    pub fn add(&mut self, n: u64) {
        self.current += n;
        self.total += n;
    }

    /// Closes the current second (call once a second).
    pub fn tick(&mut self) {
        self.buckets.rotate_right(1);
        self.buckets[0] = self.current;
        self.current = 0;
        self.filled = (self.filled + 1).min(WINDOW);
    }

    /// Average bytes per second over the completed seconds in the window.
    pub fn per_second(&self) -> u64 {
        if self.filled == 0 {
            return self.current;
        }
        self.buckets[..self.filled].iter().sum::<u64>() / self.filled as u64
    }

    /// Bytes in the last completed second.
    pub fn last_second(&self) -> u64 {
        if self.filled == 0 {
            self.current
        } else {
            self.buckets[0]
        }
    }

    /// Bytes in the second before the last completed one (0 until two seconds passed).
    pub fn second_before_last(&self) -> u64 {
        if self.filled < 2 {
            0
        } else {
            self.buckets[1]
        }
    }

    /// Bytes counted since creation.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_over_the_window() {
        let mut r = Rate::default();
        r.add(1000);
        assert_eq!(r.per_second(), 1000, "before the first tick: what we have");
        r.tick();
        assert_eq!(r.per_second(), 1000);
        r.add(3000);
        r.tick();
        assert_eq!(r.per_second(), 2000);
        for _ in 0..WINDOW {
            r.tick();
        }
        assert_eq!(r.per_second(), 0, "old seconds fall out of the window");
        assert_eq!(r.total(), 4000);
    }
}
