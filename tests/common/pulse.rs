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
    /// Its command-line interface's socket (`pacmd`'s commands, for those `pactl` lacks).
    cli: PathBuf,
    log: PathBuf,
}

/// Starts a private PulseAudio daemon whose sockets (`native`, and `cli` for
/// [`PulseAudio::cli`]), home and log (`pulseaudio.log`) are in `dir`, loading each of
/// `modules` (the text of a `--load=`, e.g. a null sink) after them; returns once it
/// answers.
pub fn start(dir: &Path, modules: &[&str]) -> PulseAudio {
    std::fs::create_dir_all(dir).expect("pulse dir");
    let socket = dir.join("native");
    let cli = dir.join("cli");
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
        .arg(format!(
            "--load=module-cli-protocol-unix socket={}",
            cli.display()
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
        cli,
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

    /// Runs `pactl` with `args` against this daemon and returns what it printed; it must
    /// succeed.
    pub fn pactl_output(&self, args: &[&str]) -> String {
        let out = Command::new("pactl")
            .args(["--server", &self.server])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .expect("run pactl (Debian package pulseaudio-utils)");
        assert!(
            out.status.success(),
            "pactl {}: {}",
            args.join(" "),
            self.output()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs one command of PulseAudio's command-line interface (what `pacmd` sends, e.g.
    /// `kill-sink-input 3`); its answer, empty when a command that answers only on failure
    /// succeeded.
    pub fn cli(&self, command: &str) -> String {
        use std::io::{Read, Write};
        let mut socket =
            std::os::unix::net::UnixStream::connect(&self.cli).expect("PulseAudio's CLI socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("socket timeout");
        socket
            .write_all(format!("{command}\n").as_bytes())
            .expect("write to PulseAudio's CLI");
        // The daemon answers and closes once the command's input ends.
        let _ = socket.shutdown(std::net::Shutdown::Write);
        let mut answer = String::new();
        let _ = socket.read_to_string(&mut answer);
        answer
    }

    /// The index of the sink or source (`kind`: `sinks` or `sources`) named `name`.
    pub fn index_of(&self, kind: &str, name: &str) -> Option<String> {
        self.pactl_output(&["list", "short", kind])
            .lines()
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .find(|f| f.get(1) == Some(&name))
            .map(|f| f[0].to_owned())
    }

    /// The indices of the client streams (`kind`: `sink-inputs` or `source-outputs`) attached
    /// to the sink or source whose index is `device`.
    pub fn streams_on(&self, kind: &str, device: &str) -> Vec<String> {
        self.pactl_output(&["list", "short", kind])
            .lines()
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .filter(|f| f.get(1) == Some(&device))
            .map(|f| f[0].to_owned())
            .collect()
    }

    /// Runs `pactl` with `args` against this daemon; true if it succeeded.
    pub fn try_pactl(&self, args: &[&str]) -> bool {
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
