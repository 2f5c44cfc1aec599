//! 20 ms audio frames on dedicated real-time threads.
