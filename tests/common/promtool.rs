//! `promtool check metrics` over a scrape, shared by the tests that serve `/metrics`.
//! Included by path (`#[path = "common/promtool.rs"]`). Needs `promtool` on PATH
//! (scripts/setup.sh --test installs it).

use std::io::Write as _;
use std::process::{Command, Stdio};

/// Fails unless promtool accepts `scrape` and has nothing to say about it (no lint).
pub fn check(scrape: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool on PATH");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
