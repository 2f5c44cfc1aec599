//! Shared helpers: the spec examples copied under `tests/data/spec-examples/`.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/spec-examples")
}

pub fn example(name: &str) -> String {
    let path = examples_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A real media session blob (JSON text), as a bot would put in `mediaConfig.blob`.
pub fn real_blob() -> String {
    let platform =
        media_session::MediaPlatformSettings::new("http://127.0.0.1:8445/MediaProcessor")
            .expect("platform settings");
    let session = media_session::MediaSession::new(
        &platform,
        &media_session::AudioSocketSettings::default(),
        None,
    )
    .expect("media session");
    session.blob().to_json()
}

/// Removes every comma that directly precedes `]` or `}` (outside strings): the spec's
/// examples made strict JSON except for duplicated keys.
pub fn strip_trailing_commas(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for (i, &c) in chars.iter().enumerate() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        if c == ',' {
            let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
            if matches!(next, Some('}' | ']')) {
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// 1-based (line, column in chars) of byte offset `offset`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

pub mod callback;
