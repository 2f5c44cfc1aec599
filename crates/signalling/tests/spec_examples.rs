//! Every file of the spec's examples: the strict-JSON ones parse with their proper type and
//! round-trip; the others are refused by the strict parser at a named line and column and
//! accepted by the tolerant one.

mod common;

use common::{example, examples_dir, line_col, strip_trailing_commas};
use serde_json::Value;
use signalling::model::{
    Call, CallState, CommsNotifications, GraphType, IdentityRole, MediaConfig, MeetingInfo,
    ResourceData,
};
use signalling::{ParseError, ParseMode, SyntaxError, parse, parse_value};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Request,
    Response,
    Notification,
    Blob,
}

/// (file, kind, strict JSON as printed).
const EXAMPLES: &[(&str, Kind, bool)] = &[
    ("ex01-request.json", Kind::Request, true),
    ("ex01-response.json", Kind::Response, false),
    (
        "ex01-notification-establishing.json",
        Kind::Notification,
        true,
    ),
    (
        "ex01-notification-established.json",
        Kind::Notification,
        true,
    ),
    ("ex02-blob.txt", Kind::Blob, false),
    ("ex02-request.json", Kind::Request, true),
    ("ex02-response.json", Kind::Response, false),
    ("ex03-request.json", Kind::Request, true),
    ("ex04-request.json", Kind::Request, true),
    ("ex05-request.json", Kind::Request, false),
    ("ex05-response.json", Kind::Response, false),
    (
        "ex05-notification-establishing.json",
        Kind::Notification,
        true,
    ),
    (
        "ex05-notification-established.json",
        Kind::Notification,
        true,
    ),
    ("ex05-notification-roster.json", Kind::Notification, true),
    ("ex06-request.json", Kind::Request, false),
    ("ex07-request.json", Kind::Request, false),
    ("ex08-request.json", Kind::Request, false),
    ("ex08-notification-roster.json", Kind::Notification, true),
    ("ex09-request.json", Kind::Request, false),
    ("ex09-response.json", Kind::Response, false),
    ("ex10-request.json", Kind::Request, false),
    ("ex10-response.json", Kind::Response, false),
];

#[test]
fn every_file_of_the_examples_is_listed() {
    let mut on_disk: Vec<String> = std::fs::read_dir(examples_dir())
        .expect("examples dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name != "README.md")
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = EXAMPLES.iter().map(|(n, _, _)| (*n).to_owned()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

/// Parses with the example's proper type and returns (model JSON, parsed text JSON).
fn round_trip(text: &str, kind: Kind, mode: ParseMode) -> (Value, Value) {
    let raw = parse_value(text, mode).expect("parses as JSON");
    let model = match kind {
        Kind::Request | Kind::Response => {
            parse::<Call>(text, mode).expect("a call").to_json_value()
        }
        Kind::Notification => parse::<CommsNotifications>(text, mode)
            .expect("notifications")
            .to_json_value(),
        Kind::Blob => unreachable!("blobs are not Graph JSON"),
    };
    (model, raw)
}

#[test]
fn strict_examples_parse_and_round_trip() {
    for &(name, kind, strict) in EXAMPLES {
        if !strict {
            continue;
        }
        let text = example(name);
        let (model, raw) = round_trip(&text, kind, ParseMode::Strict);
        assert_eq!(model, raw, "{name} round trip");
        // The model agrees with serde_json on what the document is.
        let reference: Value = serde_json::from_str(&text).expect("serde_json parses it");
        assert_eq!(raw, reference, "{name} value");
        // And the written form parses strictly back to the same model.
        let written = serde_json::to_string(&model).expect("serializes");
        let (again, _) = round_trip(&written, kind, ParseMode::Strict);
        assert_eq!(again, model, "{name} second round trip");
    }
}

#[test]
fn non_strict_examples_are_refused_with_line_and_column_then_accepted_when_tolerant() {
    for &(name, kind, strict) in EXAMPLES {
        if strict || kind == Kind::Blob {
            continue;
        }
        let text = example(name);
        let err = parse::<Call>(&text, ParseMode::Strict).expect_err(name);
        let ParseError::Syntax { at, .. } = &err else {
            panic!("{name}: expected a syntax error, got {err:?}");
        };
        let message = err.to_string();
        assert!(
            message.contains(&format!("line {} column {}", at.line, at.column)),
            "{name}: {message}"
        );
        assert!(
            serde_json::from_str::<Value>(&text).is_err(),
            "{name} is not strict JSON"
        );

        let (model, raw) = round_trip(&text, kind, ParseMode::Tolerant);
        assert_eq!(model, raw, "{name} tolerant round trip");
    }
}

#[test]
fn the_first_trailing_comma_is_reported_where_it_is() {
    for &(name, kind, strict) in EXAMPLES {
        if strict || kind == Kind::Blob {
            continue;
        }
        let text = example(name);
        // Independent oracle: the first ',' whose next non-space character closes a container.
        let offset = text
            .char_indices()
            .find(|&(i, c)| {
                c == ',' && matches!(text[i + 1..].trim_start().chars().next(), Some('}' | ']'))
            })
            .map(|(i, _)| i)
            .expect("a trailing comma");
        let (line, column) = line_col(&text, offset);
        let err = parse_value(&text, ParseMode::Strict).expect_err(name);
        assert_eq!(
            err,
            ParseError::Syntax {
                error: SyntaxError::TrailingComma,
                at: signalling::Position { line, column },
            },
            "{name}"
        );
    }
}

#[test]
fn the_duplicated_tenant_id_of_example_5_is_refused_strictly_and_last_wins_when_tolerant() {
    let text = strip_trailing_commas(&example("ex05-request.json"));
    let second = text
        .match_indices("\"tenantId\"")
        .nth(1)
        .expect("two tenantIds")
        .0;
    let (line, column) = line_col(&text, second);
    let err = parse_value(&text, ParseMode::Strict).expect_err("duplicate key");
    assert_eq!(
        err,
        ParseError::Syntax {
            error: SyntaxError::DuplicateKey {
                key: "tenantId".into()
            },
            at: signalling::Position { line, column },
        }
    );
    assert!(err.to_string().contains("duplicate key \"tenantId\""));

    let call: Call = parse(&text, ParseMode::Tolerant).expect("tolerant");
    let Some(MeetingInfo::Organizer(info)) = call.meeting_info.get() else {
        panic!("organizer meeting info");
    };
    let user = info
        .organizer
        .get()
        .and_then(|o| o.get(IdentityRole::User))
        .expect("organizer user");
    assert_eq!(
        user.tenant_id.get().map(String::as_str),
        Some("86dc81db-c112-4228-9222-63f3esaa1edb"),
        "last value wins"
    );
}

#[test]
fn typed_content_of_the_examples() {
    let call: Call = parse(&example("ex01-response.json"), ParseMode::Tolerant).unwrap();
    assert_eq!(call.state.get(), Some(&CallState::Establishing));
    assert!(call.source.get().unwrap().country_code.is_null());
    assert!(call.result_info.is_null());
    assert!(call.extra.contains_key("@odata.context"));
    let Some(MediaConfig::ServiceHosted(media)) = call.media_config.get() else {
        panic!("service hosted");
    };
    assert_eq!(media.pre_fetch_media.get().map(Vec::len), Some(2));

    let call: Call = parse(&example("ex02-request.json"), ParseMode::Strict).unwrap();
    let Some(MediaConfig::AppHosted(media)) = call.media_config.get() else {
        panic!("app hosted");
    };
    assert_eq!(
        media.blob.get().map(|b| b.as_str()),
        Some("<Media Session Configuration>")
    );

    let call: Call = parse(&example("ex09-request.json"), ParseMode::Tolerant).unwrap();
    let target = &call.targets.get().unwrap()[0];
    let phone = target
        .identity
        .get()
        .unwrap()
        .get(IdentityRole::Phone)
        .unwrap();
    assert_eq!(phone.id.get().unwrap().as_str(), "+12345678901");
    assert!(
        !format!("{phone:?}").contains("12345678901"),
        "phone masked in Debug"
    );

    let roster: CommsNotifications =
        parse(&example("ex05-notification-roster.json"), ParseMode::Strict).unwrap();
    let notification = &roster.value.get().unwrap()[0];
    assert!(
        notification
            .resource_path()
            .unwrap()
            .ends_with("/participants")
    );
    let data = notification.resource_data.get().unwrap();
    let participants = data.participants();
    assert_eq!(participants.len(), 2);
    assert_eq!(participants[0].media_streams.get().unwrap().len(), 3);
    assert_eq!(participants[0].is_muted.get(), Some(&true));

    let established: CommsNotifications = parse(
        &example("ex01-notification-established.json"),
        ParseMode::Strict,
    )
    .unwrap();
    let data = established.value.get().unwrap()[0]
        .resource_data
        .get()
        .unwrap();
    let ResourceData::Call(call) = data else {
        panic!("call resource data");
    };
    assert_eq!(call.state.get(), Some(&CallState::Established));
}

#[test]
fn the_blob_example_is_kept_and_belongs_to_media_session() {
    let printed = example("ex02-blob.txt");
    // Not Graph JSON: the strict parser refuses it with a position.
    let err = parse_value(&printed, ParseMode::Strict).expect_err("escaped blob");
    assert!(err.position().is_some());
    // media-session reads the printed form, and refuses the `net.tcp://` endpoint of
    // Microsoft's media platform as it refuses it in `MediaPlatformSettings`.
    let err = media_session::Blob::parse_printed(&printed).expect_err("net.tcp mpUri");
    assert!(
        matches!(err, media_session::BlobError::InvalidMpUri { ref uri, .. }
            if uri == "net.tcp://bot.contoso.com:18732/MediaProcessor"),
        "{err:?}"
    );
    let ours = printed.replace("net.tcp://", "https://");
    let blob = media_session::Blob::parse_printed(&ours).expect("media-session parses it");
    assert_eq!(blob.mp_uri, "https://bot.contoso.com:18732/MediaProcessor");
}

#[test]
fn documents_are_recognized_by_their_type() {
    for &(name, kind, strict) in EXAMPLES {
        if kind == Kind::Blob {
            continue;
        }
        let mode = if strict {
            ParseMode::Strict
        } else {
            ParseMode::Tolerant
        };
        let text = example(name);
        let document = signalling::parse_document(&text, mode).expect(name);
        let expected = if kind == Kind::Notification {
            "commsNotifications"
        } else {
            "call"
        };
        assert_eq!(document.kind(), expected, "{name}");
        assert_eq!(
            document.to_json_value(),
            parse_value(&text, mode).unwrap(),
            "{name}"
        );
    }
    let participant = r##"{"@odata.type": "#microsoft.graph.participant", "id": "p1"}"##;
    let document = signalling::parse_document(participant, ParseMode::Strict).unwrap();
    assert_eq!(document.kind(), "participant");
    let untyped_callback = r#"{"value": []}"#;
    let document = signalling::parse_document(untyped_callback, ParseMode::Strict).unwrap();
    assert_eq!(document.kind(), "commsNotifications");
    let operation = r##"{"@odata.type": "#microsoft.graph.recordOperation", "status": "running"}"##;
    let document = signalling::parse_document(operation, ParseMode::Strict).unwrap();
    assert_eq!(document.kind(), "commsOperation");
}
