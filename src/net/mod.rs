//! Everything that touches the operating system's network, the clock and threads: the mio
//! reactor, connections, dialing. The only place in the crate allowed to do so.

pub mod clock;
