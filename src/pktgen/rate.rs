//! The transmit rate limit: a token bucket, checked once per batch.
//!
//! Tokens (frames) accrue at `rate` per second up to `burst`; a batch of
//! `n` frames may go when `n` tokens are there. Time is passed in as
//! nanoseconds since an arbitrary origin, so tests drive it without
//! sleeping. Arithmetic is in integer nano-tokens (`u128`), so rates up to
//! `u64::MAX` per second neither overflow nor drift.
//!
//! The bucket starts full; [`take`](TokenBucket::take) right away to start
//! lower. Time spent unable to send (asleep too long, descheduled, a full
//! queue) is made up only as far as `burst` reaches: the bucket caps
//! there, so a run that fell further behind ends below the target rate,
//! never above it.

const NANO: u128 = 1_000_000_000;

/// A token bucket of frames.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    /// Tokens × 10⁹.
    credit: u128,
    last_ns: u64,
}

impl TokenBucket {
    /// `rate` frames per second (at least 1), at most `burst` (at least 1)
    /// at once; full at time `now_ns`.
    pub fn new(rate: u64, burst: u64, now_ns: u64) -> TokenBucket {
        let burst = burst.max(1);
        TokenBucket {
            rate: rate.max(1),
            burst,
            credit: u128::from(burst) * NANO,
            last_ns: now_ns,
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    fn refill(&mut self, now_ns: u64) {
        let dt = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        let cap = u128::from(self.burst) * NANO;
        self.credit = (self.credit + u128::from(dt) * u128::from(self.rate)).min(cap);
    }

    /// Whole tokens available at `now_ns`.
    pub fn available(&mut self, now_ns: u64) -> u64 {
        self.refill(now_ns);
        u64::try_from(self.credit / NANO).unwrap_or(u64::MAX)
    }

    /// Spends `n` tokens (all available ones if there are fewer).
    pub fn take(&mut self, n: u64) {
        self.credit = self.credit.saturating_sub(u128::from(n) * NANO);
    }

    /// Nanoseconds from the last refill until `want` tokens (capped at the
    /// burst) are available; 0 when they already are.
    pub fn wait_ns(&self, want: u64) -> u64 {
        let need = u128::from(want.min(self.burst)) * NANO;
        if self.credit >= need {
            return 0;
        }
        let rate = u128::from(self.rate);
        u64::try_from((need - self.credit).div_ceil(rate)).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn starts_full_and_refills_at_the_rate() {
        let mut b = TokenBucket::new(1000, 64, 0);
        assert_eq!(b.available(0), 64);
        b.take(64);
        assert_eq!(b.available(0), 0);
        assert_eq!(b.available(10 * MS), 10);
        assert_eq!(b.available(10 * MS + MS / 2), 10);
        assert_eq!(b.available(11 * MS), 11);
        // Capped at the burst however long it waits.
        assert_eq!(b.available(10_000 * MS), 64);
    }

    #[test]
    fn wait_is_exactly_until_enough_tokens() {
        let mut b = TokenBucket::new(1000, 64, 0);
        b.take(64);
        assert_eq!(b.wait_ns(1), MS);
        assert_eq!(b.wait_ns(10), 10 * MS);
        // More than the burst waits for the burst, not forever.
        assert_eq!(b.wait_ns(1000), 64 * MS);
        assert_eq!(b.available(b.wait_ns(10)), 10);
        assert_eq!(b.wait_ns(10), 0);
    }

    #[test]
    fn sub_token_credit_is_kept() {
        // 3 frames/s: a token every 333.33 ms, the thirds never rounded
        // away (the sender takes each token within 1 ms, before the
        // bucket's cap of 2 could cut off a fraction).
        let mut b = TokenBucket::new(3, 2, 0);
        b.take(2);
        let mut sent = 0;
        for ms in 1..=3000 {
            if b.available(ms * MS) >= 1 {
                b.take(1);
                sent += 1;
            }
        }
        assert_eq!(sent, 9);
    }

    #[test]
    fn long_run_rate_matches_with_batches() {
        // Simulate a sender that sleeps exactly as long as the bucket says,
        // in batches of up to 64, for one second at 123457 frames/s.
        let rate = 123_457;
        let mut b = TokenBucket::new(rate, 64, 0);
        let (mut now, mut sent) = (0u64, 0u64);
        while now < 1_000 * MS {
            let n = b.available(now).min(64);
            if n >= 64 {
                b.take(n);
                sent += n;
            } else {
                now += b.wait_ns(64).max(1);
            }
        }
        // The first burst is extra; otherwise within one batch of the rate.
        assert!(sent.abs_diff(rate + 64) <= 64, "sent {sent}");
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let mut b = TokenBucket::new(1000, 10, 5 * MS);
        b.take(10);
        assert_eq!(b.available(MS), 0);
        assert_eq!(b.available(6 * MS), 1);
    }
}
