//! Malformed input of every kind gets a clear error, never a panic.

mod common;

use common::example;
use serde_json::Value;
use signalling::model::{Call, CommsNotifications};
use signalling::{
    MAX_DEPTH, MAX_INPUT_BYTES, ParseError, ParseMode, Position, SyntaxError, parse, parse_call,
    parse_notifications, parse_value, parse_value_bytes,
};

fn syntax(text: &str, mode: ParseMode) -> (SyntaxError, Position) {
    match parse_value(text, mode) {
        Err(ParseError::Syntax { error, at }) => (error, at),
        other => panic!("{text:?}: expected a syntax error, got {other:?}"),
    }
}

#[test]
fn every_truncation_of_every_example_is_an_error_with_a_position_inside_the_text() {
    for name in [
        "ex01-request.json",
        "ex05-notification-roster.json",
        "ex01-response.json",
    ] {
        let text = example(name);
        let lines = text.lines().count() + 1;
        for (cut, _) in text.char_indices().skip(1) {
            let prefix = &text[..cut];
            if prefix.trim_end().is_empty() || prefix.trim_end() == text.trim_end() {
                continue;
            }
            for mode in [ParseMode::Strict, ParseMode::Tolerant] {
                let err = parse_call(prefix, mode).expect_err("truncated");
                let at = err
                    .position()
                    .unwrap_or_else(|| panic!("{name}@{cut}: {err}"));
                assert!(
                    at.line >= 1 && at.line <= lines && at.column >= 1,
                    "{name}@{cut}: {err}"
                );
            }
        }
    }
}

#[test]
fn wrong_types_name_the_property() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"{"targets": "john"}"#,
            "targets",
            "must be an array, found a string",
        ),
        (
            r#"{"requestedModalities": [1]}"#,
            "requestedModalities[0]",
            "must be a string, found a number",
        ),
        (
            r#"{"source": {"identity": {"user": {"id": 5}}}}"#,
            "source.identity.user.id",
            "must be a string, found a number",
        ),
        (
            r#"{"ringingTimeoutInSeconds": 1e3}"#,
            "ringingTimeoutInSeconds",
            "32-bit integer",
        ),
        (
            r#"{"ringingTimeoutInSeconds": 99999999999}"#,
            "ringingTimeoutInSeconds",
            "32-bit integer",
        ),
        (
            r#"{"ringingTimeoutInSeconds": "30"}"#,
            "ringingTimeoutInSeconds",
            "found a string",
        ),
        (
            r#"{"resultInfo": {"code": true}}"#,
            "resultInfo.code",
            "a number or a numeric string",
        ),
        (
            r#"{"mediaConfig": []}"#,
            "mediaConfig",
            "must be an object, found an array",
        ),
        (
            r##"{"mediaConfig": {"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": {}}}"##,
            "mediaConfig.blob",
            "must be a string, found an object",
        ),
        (r#"{"state": 3}"#, "state", "must be a string"),
        (
            r#"{"toneInfo": {"sequenceId": 1.5}}"#,
            "toneInfo.sequenceId",
            "64-bit integer",
        ),
        (r#"[]"#, "", "must be an object, found an array"),
        (r#""call""#, "", "must be an object, found a string"),
    ];
    for (text, path, says) in cases {
        let err = parse_call(text, ParseMode::Strict).expect_err(text);
        assert_eq!(err.path(), Some(*path), "{text}");
        let message = err.to_string();
        assert!(message.contains(says), "{text}: {message}");
    }

    let err = parse_notifications(
        r#"{"value": [{"resourceData": {}}, {"resourceData": "call"}]}"#,
        ParseMode::Strict,
    )
    .expect_err("scalar resourceData");
    assert_eq!(err.path(), Some("value[1].resourceData"));
    let err = parse_notifications(
        r##"{"value": [{"resourceData": [{"@odata.type": "#microsoft.graph.participant", "isMuted": "no"}]}]}"##,
        ParseMode::Strict,
    )
    .expect_err("mistyped participant");
    assert_eq!(err.path(), Some("value[0].resourceData[0].isMuted"));
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let huge = format!("{{\"subject\": \"{}\"}}", "a".repeat(MAX_INPUT_BYTES));
    let err = parse_call(&huge, ParseMode::Tolerant).expect_err("too large");
    assert_eq!(
        err,
        ParseError::TooLarge {
            len: huge.len(),
            limit: MAX_INPUT_BYTES
        }
    );
    assert!(parse_value_bytes(huge.as_bytes(), ParseMode::Strict).is_err());

    // Large but under the limit is fine.
    let big = format!("{{\"subject\": \"{}\"}}", "a".repeat(MAX_INPUT_BYTES / 2));
    assert!(parse_call(&big, ParseMode::Strict).is_ok());
}

#[test]
fn nesting_is_bounded_in_both_modes() {
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    for mode in [ParseMode::Strict, ParseMode::Tolerant] {
        assert!(parse_value(&nested(MAX_DEPTH), mode).is_ok());
        let (error, at) = syntax(&nested(MAX_DEPTH + 1), mode);
        assert_eq!(error, SyntaxError::TooDeep { limit: MAX_DEPTH });
        assert_eq!(
            at,
            Position {
                line: 1,
                column: MAX_DEPTH + 1
            }
        );
        // Far deeper input fails the same way, without exhausting the stack.
        let (error, _) = syntax(&"[{\"a\":".repeat(200_000), mode);
        assert_eq!(error, SyntaxError::TooDeep { limit: MAX_DEPTH });
    }
    // Deep unknown properties inside a call are kept, within the bound.
    let deep_extra = format!("{{\"x-deep\": {}}}", nested(MAX_DEPTH - 1));
    let call: Call = parse(&deep_extra, ParseMode::Strict).expect("within the bound");
    assert!(call.extra.contains_key("x-deep"));
}

#[test]
fn lexical_errors_are_named_and_placed() {
    use SyntaxError::*;
    let cases: &[(&str, SyntaxError, (usize, usize))] = &[
        ("", UnexpectedEnd, (1, 1)),
        ("   \n  ", UnexpectedEnd, (2, 3)),
        (
            "{\"a\": tru}",
            UnexpectedChar {
                found: '}',
                expected: "a JSON value",
            },
            (1, 10),
        ),
        (
            "{\"a\" 1}",
            UnexpectedChar {
                found: '1',
                expected: "':'",
            },
            (1, 6),
        ),
        (
            "{a: 1}",
            UnexpectedChar {
                found: 'a',
                expected: "a string key",
            },
            (1, 2),
        ),
        (
            "[1 2]",
            UnexpectedChar {
                found: '2',
                expected: "',' or ']'",
            },
            (1, 4),
        ),
        ("{\"a\": \"\\x\"}", InvalidEscape, (1, 8)),
        ("{\"a\": \"\\ud800\"}", LoneSurrogate, (1, 8)),
        ("{\"a\": \"\\udc00x\"}", LoneSurrogate, (1, 8)),
        (
            "{\"a\": \"tab\there\"}",
            ControlCharacter { code: 9 },
            (1, 11),
        ),
        (
            "{\"a\": \"line\nbreak\"}",
            ControlCharacter { code: 10 },
            (1, 12),
        ),
        (
            "[01]",
            UnexpectedChar {
                found: '1',
                expected: "',' or ']'",
            },
            (1, 3),
        ),
        ("[1.]", InvalidNumber, (1, 2)),
        ("[-]", InvalidNumber, (1, 2)),
        ("[1e]", InvalidNumber, (1, 2)),
        ("[1e999]", NumberOutOfRange, (1, 2)),
        ("{} {}", TrailingCharacters, (1, 4)),
        ("\u{feff}{}", ByteOrderMark, (1, 1)),
        (
            "{\"é\": \"ü\", \"é\": 1}",
            DuplicateKey { key: "é".into() },
            (1, 12),
        ),
        ("[1,]", TrailingComma, (1, 3)),
        ("{\"a\":1 ,\n }", TrailingComma, (1, 8)),
    ];
    for (text, error, (line, column)) in cases {
        let (found, at) = syntax(text, ParseMode::Strict);
        assert_eq!(&found, error, "{text:?}");
        assert_eq!(
            at,
            Position {
                line: *line,
                column: *column
            },
            "{text:?}"
        );
    }
}

#[test]
fn tolerant_mode_accepts_only_what_it_documents() {
    let tolerant = |t: &str| parse_value(t, ParseMode::Tolerant);
    assert_eq!(tolerant("[1,2,]").unwrap(), serde_json::json!([1, 2]));
    assert_eq!(
        tolerant("{\"a\":1,\"b\":2,\"a\":3,}").unwrap(),
        serde_json::json!({"a": 3, "b": 2})
    );
    assert_eq!(tolerant("\u{feff}{}").unwrap(), serde_json::json!({}));
    for bad in [
        "[,]",
        "[1,,2]",
        "{,}",
        "{\"a\":1,,}",
        "[1,",
        "{\"a\":}",
        "[1]]",
        "'a'",
        "[NaN]",
    ] {
        assert!(tolerant(bad).is_err(), "{bad}");
    }
}

#[test]
fn invalid_utf8_is_refused_with_its_offset() {
    let err = parse_value_bytes(b"{\"a\": \"\xff\"}", ParseMode::Tolerant).expect_err("not UTF-8");
    assert_eq!(err, ParseError::NotUtf8 { offset: 7 });
}

#[test]
fn numbers_keep_their_kind() {
    let v = parse_value(
        "[0, -0, 18446744073709551615, -9223372036854775808, 18446744073709551616, 1.5e3]",
        ParseMode::Strict,
    )
    .unwrap();
    let reference: Value = serde_json::from_str(&v.to_string()).unwrap();
    assert_eq!(v, reference);
    assert!(v[2].is_u64());
    assert!(v[3].is_i64());
    assert!(v[4].is_f64());
}

#[test]
fn unknown_types_and_values_are_kept() {
    let text = r##"{
      "@odata.type": "#microsoft.graph.commsNotifications",
      "value": [{
        "changeType": "reshuffled",
        "resource": "/app/calls/abc",
        "resourceData": {"@odata.type": "#microsoft.graph.futureThing", "n": [1, {"m": null}]}
      }, {
        "changeType": "updated",
        "resourceUrl": "/communications/calls/abc/operations/op1",
        "resourceData": {
          "@odata.type": "#microsoft.graph.playPromptOperation",
          "status": "completed", "completionReason": "completedSuccessfully",
          "resultInfo": {"code": "200", "subcode": 0, "message": null}
        }
      }]
    }"##;
    let notifications: CommsNotifications = parse(text, ParseMode::Strict).unwrap();
    let value = notifications.value.get().unwrap();
    assert_eq!(value[0].change_type.get().unwrap().as_str(), "reshuffled");
    assert_eq!(value[0].resource_path(), Some("/app/calls/abc"));
    assert!(matches!(
        value[0].resource_data.get(),
        Some(signalling::model::ResourceData::Unknown(_))
    ));
    let Some(signalling::model::ResourceData::Operation(op)) = value[1].resource_data.get() else {
        panic!("operation");
    };
    let signalling::model::CommsOperation::PlayPrompt(play) = &**op else {
        panic!("play prompt");
    };
    let result = play.result_info.get().unwrap();
    assert_eq!(result.code.get().unwrap().as_i64(), Some(200));
    assert_eq!(result.subcode.get().unwrap().as_i64(), Some(0));
    use signalling::model::GraphType;
    assert_eq!(
        notifications.to_json_value(),
        parse_value(text, ParseMode::Strict).unwrap()
    );
}

/// Numbers read as serde_json reads them: `-0` is negative zero (a float), other integers
/// stay integers; found by `strict_acceptance_implies_serde_json_acceptance`.
#[test]
fn negative_zero_is_a_float_as_in_serde_json() {
    for text in ["-0", "0", "-1", "[-0, 0]", "{\"a\": -0}", "-0.0", "-0e0"] {
        let reference: serde_json::Value = serde_json::from_str(text).unwrap();
        for mode in [ParseMode::Strict, ParseMode::Tolerant] {
            assert_eq!(parse_value(text, mode).unwrap(), reference, "{text}");
        }
    }
    let zero = parse_value("-0", ParseMode::Strict).unwrap();
    assert!(
        zero.as_f64()
            .is_some_and(|z| z == 0.0 && z.is_sign_negative())
    );
}
