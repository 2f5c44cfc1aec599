//! The `botmedia` command line on the spec's examples and on malformed input: every input
//! gets a clear verdict and an exit status, never a panic.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/signalling/tests/data/spec-examples")
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
    assert!(spec.status.success(), "{}", text(&spec.stderr));

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
