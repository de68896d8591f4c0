//! Fair shares, as pure policies with time passed in: the seats one address may take, and the
//! bytes per second one sender may send (a token bucket).
//!
//! A sender over its rate is not cut: the loop stops reading from it until its bucket has
//! refilled, so TCP flow control slows it down and nothing is lost.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A sender's allowance: `rate` bytes per second on average, and at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Bytes per second, on average over time.
    pub bytes_per_sec: u64,
    /// Most bytes taken at once after a quiet spell (the bucket's size); at least 1.
    pub burst: u64,
}

/// One sender's token bucket: it holds up to `burst` tokens, one per byte, and refills at the
/// rate. Reading takes tokens; with none left, reading waits until [`Bucket::ready_at`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    rate: Rate,
    /// Tokens held at `at`, in millionths of a byte so slow rates refill smoothly.
    micro_tokens: u64,
    at: Instant,
}

const MICRO: u64 = 1_000_000;

impl Bucket {
    /// A full bucket at `now`.
    pub(crate) fn new(rate: Rate, now: Instant) -> Self {
        Bucket {
            rate,
            micro_tokens: rate.burst.max(1).saturating_mul(MICRO),
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at);
        // bytes/s * µs = millionths of a byte.
        let gained = u128::from(self.rate.bytes_per_sec) * elapsed.as_micros();
        let cap = u128::from(self.rate.burst.max(1)) * u128::from(MICRO);
        let tokens = (u128::from(self.micro_tokens) + gained).min(cap);
        self.micro_tokens = u64::try_from(tokens).unwrap_or(u64::MAX);
        self.at = now;
    }

    /// Whole bytes that may be read at `now`.
    pub(crate) fn available(&mut self, now: Instant) -> usize {
        self.refill(now);
        usize::try_from(self.micro_tokens / MICRO).unwrap_or(usize::MAX)
    }

    /// Takes `bytes` (at most what [`Bucket::available`] said).
    pub(crate) fn take(&mut self, bytes: usize) {
        let micro = (bytes as u64).saturating_mul(MICRO);
        self.micro_tokens = self.micro_tokens.saturating_sub(micro);
    }

    /// The least a read should wait for: a few kilobytes, or the whole burst if smaller, so a
    /// limited sender is read in chunks rather than a few bytes at every turn.
    pub(crate) fn worth_reading(&self) -> usize {
        usize::try_from(self.rate.burst.clamp(1, 4096)).unwrap_or(4096)
    }

    /// When at least `bytes` whole bytes (at most the burst) will be available (`now` if they
    /// are).
    pub(crate) fn ready_at(&mut self, now: Instant, bytes: usize) -> Instant {
        self.refill(now);
        let want = (bytes as u64)
            .clamp(1, self.rate.burst.max(1))
            .saturating_mul(MICRO);
        if self.micro_tokens >= want || self.rate.bytes_per_sec == 0 {
            return now;
        }
        let missing = want - self.micro_tokens;
        // Round up, so the wait is never too short to gain the byte.
        let micros = missing.div_ceil(self.rate.bytes_per_sec);
        now + Duration::from_micros(micros)
    }
}

/// What counts as one address for `--max-per-address`: an IPv4 address, or an IPv6 /64 (one
/// subscriber's network, which hands out addresses from it freely).
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// How many clients each address has connected now.
#[derive(Debug, Default)]
pub(crate) struct Seats {
    by_address: HashMap<IpAddr, usize>,
}

impl Seats {
    /// How many clients `key` has now.
    pub(crate) fn taken(&self, key: IpAddr) -> usize {
        self.by_address.get(&key).copied().unwrap_or(0)
    }

    pub(crate) fn take(&mut self, key: IpAddr) {
        *self.by_address.entry(key).or_insert(0) += 1;
    }

    pub(crate) fn free(&mut self, key: IpAddr) {
        if let Some(n) = self.by_address.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.by_address.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_bucket_gives_its_burst_then_the_rate() {
        let t0 = Instant::now();
        let rate = Rate {
            bytes_per_sec: 1000,
            burst: 500,
        };
        let mut b = Bucket::new(rate, t0);
        assert_eq!(b.available(t0), 500);
        b.take(500);
        assert_eq!(b.available(t0), 0);
        assert_eq!(b.ready_at(t0, 1), t0 + MS, "one byte per millisecond");
        assert_eq!(b.ready_at(t0, 100), t0 + 100 * MS);
        assert_eq!(
            b.ready_at(t0, 10_000),
            t0 + 500 * MS,
            "never more than the burst"
        );
        assert_eq!(b.available(t0 + 100 * MS), 100);
        b.take(100);
        // A long quiet spell refills only up to the burst.
        assert_eq!(b.available(t0 + 10_000 * MS), 500);
    }

    #[test]
    fn over_any_window_a_bucket_gives_at_most_burst_plus_rate_times_time() {
        let t0 = Instant::now();
        let rate = Rate {
            bytes_per_sec: 3000,
            burst: 1000,
        };
        let mut b = Bucket::new(rate, t0);
        let mut taken = 0;
        let mut now = t0;
        for step in 0..1000u64 {
            now = t0 + Duration::from_micros(step * 777);
            let n = b.available(now).min(123);
            b.take(n);
            taken += n;
        }
        let elapsed = now - t0;
        let allowed = 1000 + (3000.0 * elapsed.as_secs_f64()) as usize;
        assert!(taken <= allowed, "took {taken}, allowed {allowed}");
        assert!(
            taken + 200 >= allowed,
            "took {taken} of {allowed}: the bucket starves senders"
        );
    }

    #[test]
    fn slow_rates_refill_smoothly_and_ready_at_rounds_up() {
        let t0 = Instant::now();
        let mut b = Bucket::new(
            Rate {
                bytes_per_sec: 3,
                burst: 1,
            },
            t0,
        );
        b.take(1);
        let at = b.ready_at(t0, 1);
        assert_eq!(at, t0 + Duration::from_micros(333_334));
        assert_eq!(b.available(at - Duration::from_micros(1)), 0);
        assert_eq!(b.available(at), 1);
    }

    #[test]
    fn addresses_are_counted_per_ipv4_address_and_per_ipv6_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(address_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
        let mut seats = Seats::default();
        seats.take(address_key(a));
        seats.take(address_key(b));
        assert_eq!(seats.taken(address_key(other)), 0);
        assert_eq!(seats.taken(address_key(a)), 2);
        seats.free(address_key(a));
        seats.free(address_key(b));
        assert!(seats.by_address.is_empty());
    }
}
