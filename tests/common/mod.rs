pub mod browser;
pub mod join;
pub mod platform;
pub mod process;
pub mod pulse;
