//! The speech tests' way to the measurement scripts of scripts/quality: the repository's
//! root, running a command for its output, and the venv's python. Included by path
//! (`#[path = "common/quality.rs"]`) so a test takes only this piece of the harness.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The repository's root (scripts/ and the test assets live under it).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd` and returns its stdout; panics with its stderr when it fails.
pub fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The measurement venv's python (made or updated by scripts/quality/pyenv.sh; quick once
/// it is up to date).
pub fn python() -> String {
    let mut cmd = Command::new(repo().join("scripts/quality/pyenv.sh"));
    cmd.stderr(Stdio::inherit());
    run(cmd, "scripts/quality/pyenv.sh").trim().to_owned()
}
