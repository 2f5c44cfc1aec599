//! A private PulseAudio daemon for one test: its socket, home and log in the test's own
//! directory, null sinks instead of sound cards, stopped when the test is done.

#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::Proc;

/// A running private PulseAudio daemon, killed and reaped on drop.
pub struct PulseAudio {
    daemon: Proc,
    /// Its address, for `PULSE_SERVER` or `pactl --server`.
    pub server: String,
    log: PathBuf,
}

/// Starts a private PulseAudio daemon whose socket (`native`), home and log
/// (`pulseaudio.log`) are in `dir`, loading each of `modules` (the text of a `--load=`,
/// e.g. a null sink) after its native protocol socket; returns once it answers.
pub fn start(dir: &Path, modules: &[&str]) -> PulseAudio {
    std::fs::create_dir_all(dir).expect("pulse dir");
    let socket = dir.join("native");
    let log = dir.join("pulseaudio.log");
    let out = std::fs::File::create(&log).expect("pulseaudio log");
    let err = out.try_clone().expect("pulseaudio log");
    let child = Command::new("pulseaudio")
        .args([
            "-n",
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--use-pid-file=no",
            "--disallow-exit",
            "--log-target=stderr",
        ])
        .arg(format!(
            "--load=module-native-protocol-unix auth-anonymous=1 socket={}",
            socket.display()
        ))
        .args(modules.iter().map(|m| format!("--load={m}")))
        .env("HOME", dir)
        .env("XDG_RUNTIME_DIR", dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start pulseaudio (Debian package pulseaudio)");
    let pulse = PulseAudio {
        daemon: Proc(child),
        server: format!("unix:{}", socket.display()),
        log,
    };
    // The daemon loads its modules before it serves a client: once `pactl` gets an answer,
    // the sinks are there.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !pulse.try_pactl(&["info"]) {
        assert!(
            Instant::now() < deadline,
            "PulseAudio did not start (Debian packages pulseaudio, pulseaudio-utils): {}",
            pulse.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    pulse
}

impl PulseAudio {
    /// Runs `pactl` with `args` against this daemon; it must succeed.
    pub fn pactl(&self, args: &[&str]) {
        assert!(
            self.try_pactl(args),
            "pactl {}: {}",
            args.join(" "),
            self.output()
        );
    }

    fn try_pactl(&self, args: &[&str]) -> bool {
        Command::new("pactl")
            .args(["--server", &self.server])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// What the daemon logged so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
