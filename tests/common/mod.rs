pub mod browser;
pub mod join;
pub mod process;
pub mod pulse;
