//! The `botmedia` command line on the spec's examples and on malformed input: every input
//! gets a clear verdict and an exit status, never a panic.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../signalling/tests/data/spec-examples")
}

fn botmedia(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_botmedia"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("botmedia starts");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(bytes) = stdin {
            // A huge input may be refused before it is all written.
            let _ = input.write_all(bytes);
        }
    }
    child.wait_with_output().expect("botmedia ends")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A request of the given example with a real blob in place of the spec's placeholder.
fn with_real_blob(name: &str) -> String {
    let blob = botmedia(&["blob"], None);
    assert!(blob.status.success());
    let blob = text(&blob.stdout).trim().to_owned();
    let body = std::fs::read_to_string(examples().join(name)).unwrap();
    body.replace(
        "\"<Media Session Configuration>\"",
        &serde_json::to_string(&blob).unwrap(),
    )
}

#[test]
fn strict_examples_pass_and_print_permissions() {
    for (name, needle) in [
        ("ex01-request.json", "Calls.Initiate.All"),
        ("ex03-request.json", "Calls.InitiateGroupCalls.All"),
        ("ex04-request.json", "Calls.AccessMedia.All"),
    ] {
        let input = with_real_blob(name);
        let out = botmedia(&["check", "-"], Some(input.as_bytes()));
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {stdout}{}",
            text(&out.stderr)
        );
        assert!(stdout.contains(needle), "{name}: {stdout}");
        assert!(
            stdout.contains("\"@odata.type\": \"#microsoft.graph.call\""),
            "{name}"
        );
    }
}

#[test]
fn json_output_is_one_document() {
    let out = botmedia(
        &[
            "check",
            "--json",
            examples().join("ex09-request.json").to_str().unwrap(),
            "--tolerant",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["scenario"], "PSTN");
    assert_eq!(doc["media"], "service-hosted");
    assert!(
        doc["permissions"]["anyOf"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "Calls.Initiate.All")
    );
    assert_eq!(doc["call"]["@odata.type"], "#microsoft.graph.call");
}

#[test]
fn non_strict_examples_need_tolerant_mode() {
    for name in [
        "ex05-request.json",
        "ex07-request.json",
        "ex08-request.json",
        "ex09-request.json",
    ] {
        let path = examples().join(name);
        let strict = botmedia(&["check", path.to_str().unwrap()], None);
        assert_eq!(strict.status.code(), Some(1), "{name}");
        let envelope: serde_json::Value = serde_json::from_slice(&strict.stdout).unwrap();
        let message = envelope["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("line") && message.contains("column"),
            "{name}: {message}"
        );
        assert!(envelope["error"]["innerError"]["request-id"].is_string());
        let tolerant = botmedia(&["check", "--tolerant", path.to_str().unwrap()], None);
        assert!(
            tolerant.status.success(),
            "{name}: {}",
            text(&tolerant.stdout)
        );
    }
}

#[test]
fn placeholder_blob_is_refused_naming_the_property() {
    let out = botmedia(
        &[
            "check",
            examples().join("ex02-request.json").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let envelope: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(envelope["error"]["code"], "BadRequest");
    assert!(
        envelope["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mediaConfig.blob")
    );
}

#[test]
fn malformed_requests_get_graph_errors_never_panics() {
    let good = std::fs::read_to_string(examples().join("ex01-request.json")).unwrap();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let huge = format!("{{\"callbackUri\": \"{}\"}}", "a".repeat(5 * 1024 * 1024));
    let cases: Vec<(String, &str)> = vec![
        (good[..good.len() / 2].to_owned(), "line"),
        (good.replace("\"audio\"", "42"), "requestedModalities"),
        (
            good.replace("\"https://bot.contoso.com/callback\"", "[]"),
            "callbackUri",
        ),
        (
            good.replace(
                "https://bot.contoso.com/callback",
                "http://bot.contoso.com/callback",
            ),
            "callbackUri",
        ),
        (deep, "nest"),
        ("".into(), ""),
        ("null".into(), ""),
        ("\u{feff}{}".into(), ""),
        ("{\"targets\": \"John\"}".into(), "targets"),
    ];
    for (input, needle) in cases {
        let out = botmedia(&["check", "-"], Some(input.as_bytes()));
        let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: {shown}",
            &input[..input.len().min(80)]
        );
        assert!(!shown.contains("panicked"), "{shown}");
        let envelope: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            envelope["error"]["message"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains(&needle.to_lowercase()),
            "{needle}: {shown}"
        );
    }
    let out = botmedia(&["check", "-"], Some(huge.as_bytes()));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("larger than"),
        "{}",
        text(&out.stderr)
    );
    let out = botmedia(&["check", "-"], Some(&[0xff, 0xfe, b'{']));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("UTF-8"));
}

#[test]
fn blob_is_made_and_checked() {
    let out = botmedia(
        &[
            "blob",
            "--audio",
            "recvonly",
            "--call-id",
            "c-1",
            "--mp-uri",
            "https://bot.example.com:9441/MediaProcessor",
        ],
        None,
    );
    assert!(out.status.success());
    let blob: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = blob
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys[0], "mpUri");
    assert_eq!(keys[14], "callId");
    assert_eq!(blob["audioSourceContexts"].as_array().unwrap().len(), 0);
    assert_eq!(blob["audioRenderContexts"].as_array().unwrap().len(), 1);
    assert_eq!(blob["callId"], "c-1");

    let parsed = botmedia(&["blob", "--parse", "-"], Some(&out.stdout));
    assert!(parsed.status.success(), "{}", text(&parsed.stderr));
    let spec = botmedia(
        &[
            "blob",
            "--parse",
            examples().join("ex02-blob.txt").to_str().unwrap(),
        ],
        None,
    );
    // The spec's sample names Microsoft's media processor (net.tcp): read, and refused
    // for it, as `blob --mp-uri net.tcp://...` is.
    assert_eq!(spec.status.code(), Some(1), "{}", text(&spec.stderr));
    assert!(
        text(&spec.stderr).contains("net.tcp"),
        "{}",
        text(&spec.stderr)
    );
    let made = botmedia(
        &[
            "blob",
            "--mp-uri",
            "net.tcp://bot.contoso.com:18732/MediaProcessor",
        ],
        None,
    );
    assert_eq!(made.status.code(), Some(2));
    assert!(
        text(&made.stderr).contains("net.tcp"),
        "{}",
        text(&made.stderr)
    );
    // What `blob --media-config` prints, `blob --parse` reads.
    let config = botmedia(&["blob", "--media-config"], None);
    assert!(config.status.success());
    let parsed = botmedia(&["blob", "--parse", "-"], Some(&config.stdout));
    assert!(parsed.status.success(), "{}", text(&parsed.stderr));
    let ftp = botmedia(
        &["blob", "--parse", "-"],
        Some(
            text(&out.stdout)
                .replacen("https://", "ftp://", 1)
                .as_bytes(),
        ),
    );
    assert_eq!(ftp.status.code(), Some(1), "{}", text(&ftp.stderr));

    for (input, needle) in [
        (r#"{"mpUri": 1}"#, "mpUri"),
        ("{", "line"),
        ("[]", "object"),
    ] {
        let bad = botmedia(&["blob", "--parse", "-"], Some(input.as_bytes()));
        assert_eq!(bad.status.code(), Some(1));
        assert!(
            text(&bad.stderr).contains(needle),
            "{input}: {}",
            text(&bad.stderr)
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["blob", "--audio", "sideways"],
        vec!["blob", "--mp-uri", "ftp://x/MediaProcessor"],
        vec!["blob", "--format", "Pcm44KStereo"],
        vec!["check", "/nonexistent/file.json"],
        vec!["frobnicate"],
    ] {
        let out = botmedia(&args, None);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!text(&out.stderr).is_empty());
    }
    let help = botmedia(&["check", "--help"], None);
    assert!(help.status.success());
    assert!(text(&help.stdout).contains("--tolerant"));
}

/// Runs `botmedia emulator --seconds 2` on a free port with `env`, makes one request while it
/// runs, and returns its stdout and stderr.
fn emulator_logs(env: &[(&str, &str)], args: &[&str]) -> (String, String) {
    use std::io::{BufRead, BufReader, Read};
    let mut child = Command::new(env!("CARGO_BIN_EXE_botmedia"))
        .args(args)
        .args(["emulator", "--listen", "127.0.0.1:0", "--seconds", "2"])
        .env_remove("RUST_LOG")
        .env_remove("BOTMEDIA_LOG_FORMAT")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the emulator starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr = first
        .trim()
        .strip_prefix("botmedia emulator listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    let mut conn = std::net::TcpStream::connect(&addr).expect("the emulator listens");
    conn.write_all(
        b"GET /v1/.well-known/OpenIdConfiguration HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let out = child.wait_with_output().expect("the emulator ends");
    assert!(out.status.success(), "{}", text(&out.stderr));
    (first + &rest, text(&out.stderr))
}

#[test]
fn the_emulator_logs_each_request_on_stderr_and_keeps_stdout_for_its_output() {
    let (stdout, stderr) = emulator_logs(&[], &[]);
    assert!(
        stderr.lines().any(|l| l.contains("emulator::http")
            && l.contains("GET /v1/.well-known/OpenIdConfiguration 200")),
        "{stderr}"
    );
    assert!(!stdout.contains("emulator::http"), "{stdout}");
    // Its banner says how to reach it and whom to call.
    for needle in [
        "/join",
        "OpenID",
        "its secret is the built-in",
        "Grace",
        "+12345678901",
        "joinWebUrl https://teams.microsoft.com/l/meetup-join/",
        "Try         botmedia call --emulator http://127.0.0.1:",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
    let (_, debug) = emulator_logs(&[("RUST_LOG", "debug")], &[]);
    assert!(debug.contains("DEBUG"), "{debug}");
    let (_, quiet) = emulator_logs(&[("RUST_LOG", "error")], &[]);
    assert!(!quiet.contains("emulator::http"), "{quiet}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    for (env, args) in [
        (&[("BOTMEDIA_LOG_FORMAT", "json")][..], &[][..]),
        (
            &[("BOTMEDIA_LOG_FORMAT", "text")][..],
            &["--log-format", "json"][..],
        ),
    ] {
        let (_, stderr) = emulator_logs(env, args);
        let lines: Vec<serde_json::Value> = stderr
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert!(
            lines.iter().any(|l| l["target"] == "emulator::http"
                && l["level"] == "INFO"
                && l["fields"]["status"] == 200),
            "{stderr}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_botmedia"))
        .args(["blob"])
        .env("BOTMEDIA_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("BOTMEDIA_LOG_FORMAT"));
}

#[test]
fn logs_never_reach_stdout_of_a_tool() {
    let out = Command::new(env!("CARGO_BIN_EXE_botmedia"))
        .args(["blob"])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let blob = text(&out.stdout);
    assert_eq!(blob.lines().count(), 1, "{blob}");
    assert!(!blob.contains("TRACE") && !blob.contains("DEBUG"), "{blob}");
}
