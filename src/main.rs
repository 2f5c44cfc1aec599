//! The `botmedia` command line.
fn main() {}
