//! The `botmedia` command line's library: the demo and the load tool, built on the
//! [`botmedia`] facade and the embedded emulator. Bots link `botmedia`, not this crate.

pub mod demo;
pub mod fleet;
pub mod load;
pub mod logging;
pub mod serve;
mod tone;
