//! Time as an input (spec §5.20): services take the clock they are built with, so tests can move
//! it; the shipped binary uses the system clock and offers no way to set it from outside.

use std::sync::atomic::{AtomicI64, Ordering};

/// Unix time in whole seconds.
pub trait Clock: Send + Sync {
    fn now(&self) -> i64;
}

/// A clock that only moves when a test moves it.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(unix_secs: i64) -> Self {
        ManualClock(AtomicI64::new(unix_secs))
    }

    pub fn set(&self, unix_secs: i64) {
        self.0.store(unix_secs, Ordering::SeqCst);
    }

    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// RFC 3339 UTC with second precision and a `Z` (spec §4 "Timestamps").
pub fn rfc3339(unix_secs: i64) -> String {
    chrono::DateTime::from_timestamp(unix_secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_rfc3339_utc_seconds() {
        assert_eq!(super::rfc3339(1_640_781_189), "2021-12-29T12:33:09Z");
    }
}
