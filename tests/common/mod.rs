pub mod browser;
pub mod join;
