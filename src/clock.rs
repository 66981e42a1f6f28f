//! Deadlines that cannot overflow. `Instant + Duration` panics past the clock's range, and a
//! timeout may come from input; every deadline in ferry is computed here.

use std::time::{Duration, Instant};

/// Far enough to never arrive, near enough to be representable.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `from + timeout`, or a point a century away when that sum does not fit.
pub fn deadline_from(from: Instant, timeout: Duration) -> Instant {
    from.checked_add(timeout.min(NEVER))
        .or_else(|| from.checked_add(Duration::from_secs(24 * 3600)))
        .unwrap_or(from)
}

/// `timeout` from now.
pub fn deadline(timeout: Duration) -> Instant {
    deadline_from(Instant::now(), timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_timeouts_do_not_overflow() {
        let now = Instant::now();
        assert!(deadline_from(now, Duration::MAX) > now + Duration::from_secs(365 * 24 * 3600));
        assert_eq!(
            deadline_from(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
    }
}
