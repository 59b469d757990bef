//! Everything that touches the operating system's network, the clock, signals and threads:
//! the mio reactor, connections, dialing. The only place in the crate allowed to do so.

mod announcer;
pub mod children;
pub mod clock;
pub mod dns;
pub mod hasher;
pub mod limiter;
pub mod reactor;
pub mod signals;
mod tracker_front;

pub use reactor::{Control, Driver, Reactor, ReactorConfig};
