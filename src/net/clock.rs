//! The one place the crate reads the clock. The sans-IO core takes `now` as an argument;
//! the reactor (and tests that need a base instant for virtual time) get it here.

use std::time::Instant;

/// The current monotonic time.
pub fn now() -> Instant {
    Instant::now()
}
