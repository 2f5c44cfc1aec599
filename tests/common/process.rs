//! A child process that is killed and reaped on drop, so that a failing test leaves no
//! process behind. (A browser, which starts processes of its own, is killed as a process
//! group instead: [`super::browser::Browser`].)

#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::process::Child;

/// A child process, killed and reaped on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
