//! Create-call validation per scenario: the spec's examples (with a real blob where they print
//! the placeholder) and requests broken one property at a time.

mod common;

use common::{example, real_blob};
use serde_json::{Value, json};
use signalling::model::{Call, GraphType};
use signalling::{
    ErrorReason, GraphError, MediaHosting, MeetingKind, ParseMode, Permission, RequestError,
    Scenario, UriProblem, ValidatedRequest, parse_call, parse_value, validate_create_call,
};

const PLACEHOLDER: &str = "\"<Media Session Configuration>\"";

fn with_real_blob(text: &str) -> String {
    let blob = serde_json::to_string(&real_blob()).expect("blob as a JSON string");
    text.replace(PLACEHOLDER, &blob)
}

fn validate_example(name: &str) -> Result<ValidatedRequest, GraphError> {
    let text = with_real_blob(&example(name));
    let call = parse_call(&text, ParseMode::Tolerant).expect(name);
    validate_create_call(&call)
}

fn example_value(name: &str) -> Value {
    parse_value(&example(name), ParseMode::Tolerant).expect(name)
}

fn validate_value(value: Value) -> Result<ValidatedRequest, GraphError> {
    let call = Call::from_json_value(value).expect("fits the model");
    validate_create_call(&call)
}

fn refused(value: Value) -> GraphError {
    validate_value(value).expect_err("must be refused")
}

fn invalid(err: &GraphError) -> &RequestError {
    match &*err.reason {
        ErrorReason::Invalid(e) => e,
        other => panic!("expected an invalid-request error, got {other:?}"),
    }
}

#[test]
fn examples_validate_to_their_scenario_and_permissions() {
    use Permission::*;
    let cases: &[(&str, Scenario, MediaHosting, &[Permission])] = &[
        (
            "ex01-request.json",
            Scenario::PeerToPeer,
            MediaHosting::Service,
            &[Initiate, InitiateGroupCalls],
        ),
        (
            "ex02-request.json",
            Scenario::PeerToPeer,
            MediaHosting::App,
            &[Initiate, InitiateGroupCalls],
        ),
        (
            "ex03-request.json",
            Scenario::GroupCall { targets: 2 },
            MediaHosting::Service,
            &[InitiateGroupCalls],
        ),
        (
            "ex04-request.json",
            Scenario::GroupCall { targets: 2 },
            MediaHosting::App,
            &[InitiateGroupCalls],
        ),
        (
            "ex05-request.json",
            Scenario::MeetingJoin {
                meeting: MeetingKind::Scheduled,
                as_guest: false,
            },
            MediaHosting::Service,
            &[JoinGroupCalls],
        ),
        (
            "ex06-request.json",
            Scenario::MeetingJoin {
                meeting: MeetingKind::Scheduled,
                as_guest: false,
            },
            MediaHosting::App,
            &[JoinGroupCalls],
        ),
        (
            "ex07-request.json",
            Scenario::MeetingJoin {
                meeting: MeetingKind::Channel,
                as_guest: false,
            },
            MediaHosting::Service,
            &[JoinGroupCalls],
        ),
        (
            "ex08-request.json",
            Scenario::MeetingJoin {
                meeting: MeetingKind::Channel,
                as_guest: true,
            },
            MediaHosting::Service,
            &[JoinGroupCallsAsGuest, JoinGroupCalls],
        ),
        (
            "ex09-request.json",
            Scenario::Pstn,
            MediaHosting::Service,
            &[Initiate, InitiateGroupCalls],
        ),
        (
            "ex10-request.json",
            Scenario::Pstn,
            MediaHosting::App,
            &[Initiate, InitiateGroupCalls],
        ),
    ];
    for (name, scenario, media, any_of) in cases {
        let request = validate_example(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&request.scenario, scenario, "{name}");
        assert_eq!(request.media, *media, "{name}");
        assert_eq!(request.required_permissions.any_of, *any_of, "{name}");
        let all_of: &[Permission] = if *media == MediaHosting::App {
            &[AccessMedia]
        } else {
            &[]
        };
        assert_eq!(request.required_permissions.all_of, all_of, "{name}");
        assert_eq!(
            request.blob.is_some(),
            *media == MediaHosting::App,
            "{name}"
        );
    }
}

#[test]
fn permission_requirements_are_any_of_plus_all_of() {
    let request = validate_example("ex02-request.json").unwrap();
    let needs = &request.required_permissions;
    assert!(!needs.is_satisfied_by(&["Calls.Initiate.All"]));
    assert_eq!(
        needs.missing(&["Calls.Initiate.All"]),
        vec![Permission::AccessMedia]
    );
    assert!(needs.is_satisfied_by(&["Calls.Initiate.All", "Calls.AccessMedia.All"]));
    assert!(needs.is_satisfied_by(&["calls.initiategroupcall.all", "Calls.AccessMedia.All"]));
    assert!(!needs.is_satisfied_by(&["Calls.JoinGroupCalls.All", "Calls.AccessMedia.All"]));
    assert_eq!(
        needs.to_string(),
        "one of [Calls.Initiate.All, Calls.InitiateGroupCalls.All] and all of [Calls.AccessMedia.All]"
    );
    assert_eq!(
        needs.minimal(),
        vec![Permission::Initiate, Permission::AccessMedia]
    );

    let guest = validate_example("ex08-request.json").unwrap();
    assert!(
        guest
            .required_permissions
            .is_satisfied_by(&["Calls.JoinGroupCallsAsGuest.All"])
    );
    assert!(
        !guest
            .required_permissions
            .is_satisfied_by(&["Calls.Initiate.All"])
    );
}

#[test]
fn the_printed_placeholder_blob_is_refused_naming_media_config_blob() {
    for name in [
        "ex02-request.json",
        "ex04-request.json",
        "ex06-request.json",
        "ex10-request.json",
    ] {
        let call = parse_call(&example(name), ParseMode::Tolerant).unwrap();
        let err = validate_create_call(&call).expect_err(name);
        assert_eq!(err.property(), Some("mediaConfig.blob"), "{name}");
        assert!(matches!(
            invalid(&err),
            RequestError::BlobPlaceholder { .. }
        ));
        assert_eq!(err.status(), 400);
        assert!(
            err.message().contains("'mediaConfig.blob'"),
            "{}",
            err.message()
        );
    }
}

#[test]
fn a_blob_that_does_not_parse_is_refused_with_the_blob_parser_reason() {
    let mut call = example_value("ex02-request.json");
    call["mediaConfig"]["blob"] = json!("{\"mpUri\": 1}");
    let err = refused(call);
    assert!(matches!(invalid(&err), RequestError::InvalidBlob { .. }));
    assert_eq!(err.property(), Some("mediaConfig.blob"));
    assert!(err.message().contains("mpUri"), "{}", err.message());

    let mut call = example_value("ex02-request.json");
    call["mediaConfig"]["blob"] = json!("not json at all");
    assert_eq!(refused(call).property(), Some("mediaConfig.blob"));

    let mut call = example_value("ex02-request.json");
    call["mediaConfig"].as_object_mut().unwrap().remove("blob");
    assert_eq!(refused(call).property(), Some("mediaConfig.blob"));
}

#[test]
fn callback_uri_is_required_and_https_except_to_loopback() {
    let mut call = example_value("ex01-request.json");
    call.as_object_mut().unwrap().remove("callbackUri");
    let err = refused(call);
    assert!(matches!(invalid(&err), RequestError::Missing { .. }));
    assert_eq!(err.property(), Some("callbackUri"));

    let cases: &[(&str, Option<UriProblem>)] = &[
        ("https://bot.contoso.com/callback", None),
        ("HTTPS://bot.contoso.com:8443/callback?x=1", None),
        ("http://127.0.0.1:8080/callback", None),
        ("http://127.8.9.10/callback", None),
        ("http://localhost:3978/api/calling", None),
        ("http://[::1]:9000/cb", None),
        (
            "http://bot.contoso.com/callback",
            Some(UriProblem::InsecureHttp),
        ),
        ("http://10.0.0.1/callback", Some(UriProblem::InsecureHttp)),
        (
            "http://127.0.0.1.evil.com/callback",
            Some(UriProblem::InsecureHttp),
        ),
        (
            "ftp://bot.contoso.com/callback",
            Some(UriProblem::UnsupportedScheme),
        ),
        ("bot.contoso.com/callback", Some(UriProblem::NotAbsolute)),
        ("https:///callback", Some(UriProblem::MissingHost)),
        (
            "https://bot.contoso.com:99999/cb",
            Some(UriProblem::InvalidPort),
        ),
        ("https://bot.contoso.com:/cb", Some(UriProblem::InvalidPort)),
        (
            "https://bot.contoso.com/call back",
            Some(UriProblem::InvalidCharacter),
        ),
    ];
    for (uri, expected) in cases {
        let mut call = example_value("ex01-request.json");
        call["callbackUri"] = json!(uri);
        match (validate_value(call), expected) {
            (Ok(_), None) => {}
            (Err(err), Some(problem)) => {
                let RequestError::InvalidUri {
                    path,
                    problem: found,
                } = invalid(&err)
                else {
                    panic!("{uri}: {err}");
                };
                assert_eq!(path.as_str(), "callbackUri");
                assert_eq!(found, problem, "{uri}");
            }
            (result, expected) => panic!("{uri}: expected {expected:?}, got {result:?}"),
        }
    }
}

fn user_target(i: usize) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.invitationParticipantInfo",
        "identity": {
            "@odata.type": "#microsoft.graph.identitySet",
            "user": { "@odata.type": "#microsoft.graph.identity", "id": format!("user-{i}") }
        }
    })
}

#[test]
fn group_calls_take_at_most_five_targets() {
    let mut call = example_value("ex03-request.json");
    call["targets"] = Value::Array((0..5).map(user_target).collect());
    assert_eq!(
        validate_value(call.clone()).unwrap().scenario,
        Scenario::GroupCall { targets: 5 }
    );

    call["targets"] = Value::Array((0..6).map(user_target).collect());
    let err = refused(call);
    let RequestError::TooManyTargets { max, found, .. } = invalid(&err) else {
        panic!("{err}");
    };
    assert_eq!((*max, *found), (5, 6));
    assert_eq!(err.property(), Some("targets"));
}

#[test]
fn calls_need_targets_with_identities() {
    let mut call = example_value("ex01-request.json");
    call["targets"] = json!([]);
    assert_eq!(refused(call).property(), Some("targets"));

    let mut call = example_value("ex01-request.json");
    call["targets"][0]["identity"] = json!({"@odata.type": "#microsoft.graph.identitySet"});
    let err = refused(call);
    assert!(matches!(invalid(&err), RequestError::NoIdentity { .. }));
    assert_eq!(err.property(), Some("targets[0].identity"));

    let mut call = example_value("ex01-request.json");
    call["targets"][0]["identity"]["user"]
        .as_object_mut()
        .unwrap()
        .remove("id");
    assert_eq!(
        refused(call).property(),
        Some("targets[0].identity.user.id")
    );

    let mut call = example_value("ex01-request.json");
    call["targets"][0]["@odata.type"] = json!("#microsoft.graph.participant");
    assert_eq!(refused(call).property(), Some("targets[0].@odata.type"));
}

#[test]
fn pstn_needs_an_e164_target_an_application_instance_source_and_a_tenant() {
    for bad in [
        "12345678901",
        "+1234567890123456",
        "+1 2345678901",
        "+",
        "+12a45",
        "tel:+1234",
    ] {
        let mut call = example_value("ex09-request.json");
        call["targets"][0]["identity"]["phone"]["id"] = json!(bad);
        let err = refused(call);
        assert!(
            matches!(invalid(&err), RequestError::InvalidPhoneNumber { .. }),
            "{bad}"
        );
        assert_eq!(
            err.property(),
            Some("targets[0].identity.phone.id"),
            "{bad}"
        );
        if bad.len() > 3 {
            assert!(
                !err.message().contains(bad),
                "the number is not echoed: {}",
                err.message()
            );
        }
    }
    for good in ["+1", "+123456789012345", "+4930123456"] {
        let mut call = example_value("ex09-request.json");
        call["targets"][0]["identity"]["phone"]["id"] = json!(good);
        assert_eq!(
            validate_value(call).unwrap().scenario,
            Scenario::Pstn,
            "{good}"
        );
    }

    let mut call = example_value("ex09-request.json");
    call.as_object_mut().unwrap().remove("tenantId");
    let err = refused(call);
    assert!(matches!(invalid(&err), RequestError::Missing { .. }));
    assert_eq!(err.property(), Some("tenantId"));

    let mut call = example_value("ex09-request.json");
    call["source"] = example_value("ex02-request.json")["source"].clone();
    let err = refused(call);
    assert!(matches!(invalid(&err), RequestError::WrongIdentity { .. }));
    assert_eq!(err.property(), Some("source.identity"));

    let mut call = example_value("ex09-request.json");
    call.as_object_mut().unwrap().remove("source");
    assert_eq!(refused(call).property(), Some("source"));

    let mut call = example_value("ex09-request.json");
    let phone = call["targets"][0].clone();
    call["targets"] = json!([phone, user_target(1)]);
    assert!(matches!(
        invalid(&refused(call)),
        RequestError::TooManyTargets { max: 1, .. }
    ));
}

#[test]
fn modalities_must_be_known() {
    for bad in ["hologram", "unknown", "unknownFutureValue"] {
        let mut call = example_value("ex01-request.json");
        call["requestedModalities"] = json!(["audio", bad]);
        let err = refused(call);
        assert!(
            matches!(invalid(&err), RequestError::UnsupportedValue { .. }),
            "{bad}"
        );
        assert_eq!(err.property(), Some("requestedModalities[1]"));
    }
    let mut call = example_value("ex01-request.json");
    call["requestedModalities"] = json!(["audio", "video", "videoBasedScreenSharing", "data"]);
    assert!(validate_value(call).is_ok());

    let mut call = example_value("ex01-request.json");
    call["requestedModalities"] = json!([]);
    assert_eq!(refused(call).property(), Some("requestedModalities"));

    let mut call = example_value("ex01-request.json");
    call.as_object_mut().unwrap().remove("requestedModalities");
    assert_eq!(refused(call).property(), Some("requestedModalities"));
}

#[test]
fn media_config_must_be_one_of_the_two_types() {
    let mut call = example_value("ex01-request.json");
    call.as_object_mut().unwrap().remove("mediaConfig");
    assert_eq!(refused(call).property(), Some("mediaConfig"));

    let mut call = example_value("ex01-request.json");
    call["mediaConfig"] = json!({"blob": "{}"});
    assert_eq!(refused(call).property(), Some("mediaConfig.@odata.type"));

    let mut call = example_value("ex01-request.json");
    call["mediaConfig"] = json!({"@odata.type": "#microsoft.graph.holographicMediaConfig"});
    let err = refused(call);
    assert!(matches!(invalid(&err), RequestError::WrongODataType { .. }));
    assert_eq!(err.property(), Some("mediaConfig.@odata.type"));
}

#[test]
fn meeting_joins_need_meeting_and_chat_info_and_no_targets() {
    let mut call = example_value("ex05-request.json");
    call["targets"] = json!([user_target(0)]);
    let err = refused(call);
    assert!(matches!(invalid(&err), RequestError::NotAllowed { .. }));
    assert_eq!(err.property(), Some("targets"));

    let mut call = example_value("ex05-request.json");
    call.as_object_mut().unwrap().remove("chatInfo");
    assert_eq!(refused(call).property(), Some("chatInfo"));

    let mut call = example_value("ex05-request.json");
    call.as_object_mut().unwrap().remove("meetingInfo");
    assert_eq!(refused(call).property(), Some("meetingInfo"));

    let mut call = example_value("ex05-request.json");
    call["chatInfo"].as_object_mut().unwrap().remove("threadId");
    assert_eq!(refused(call).property(), Some("chatInfo.threadId"));

    let mut call = example_value("ex05-request.json");
    call["meetingInfo"]["organizer"]["user"]
        .as_object_mut()
        .unwrap()
        .remove("id");
    assert_eq!(
        refused(call).property(),
        Some("meetingInfo.organizer.user.id")
    );

    let mut call = example_value("ex05-request.json");
    call.as_object_mut().unwrap().remove("chatInfo");
    call["meetingInfo"] = json!({
        "@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo",
        "joinMeetingId": "1234567890",
        "passcode": "secret-passcode"
    });
    let joined = validate_value(call.clone()).unwrap();
    assert_eq!(
        joined.scenario,
        Scenario::MeetingJoin {
            meeting: MeetingKind::JoinMeetingId,
            as_guest: false
        }
    );
    let parsed = Call::from_json_value(call).unwrap();
    assert!(
        !format!("{parsed:?}").contains("secret-passcode"),
        "passcode redacted in Debug"
    );

    let mut call = example_value("ex08-request.json");
    call["source"]["identity"]["guest"]
        .as_object_mut()
        .unwrap()
        .remove("displayName");
    assert_eq!(
        refused(call).property(),
        Some("source.identity.guest.displayName")
    );
}

#[test]
fn guests_only_join_meetings() {
    let mut call = example_value("ex01-request.json");
    call["source"] = example_value("ex08-request.json")["source"].clone();
    let err = refused(call);
    assert!(matches!(invalid(&err), RequestError::NotAllowed { .. }));
    assert_eq!(err.property(), Some("source.identity.guest"));
}

#[test]
fn a_created_call_is_outgoing_and_typed_as_a_call() {
    let mut call = example_value("ex03-request.json");
    call["direction"] = json!("incoming");
    assert_eq!(refused(call).property(), Some("direction"));

    let mut call = example_value("ex01-request.json");
    call["@odata.type"] = json!("#microsoft.graph.participant");
    assert_eq!(refused(call).property(), Some("@odata.type"));
}

#[test]
fn errors_come_in_graphs_envelope() {
    let mut call = example_value("ex01-request.json");
    call["callbackUri"] = json!("http://bot.contoso.com/callback");
    let err = refused(call).with_client_request_id("client-42");
    let envelope = err.to_json();
    let body = &envelope["error"];
    assert_eq!(body["code"], "BadRequest");
    assert!(body["message"].as_str().unwrap().contains("'callbackUri'"));
    let inner = &body["innerError"];
    let request_id = inner["request-id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(request_id).unwrap(), err.request_id);
    let date = inner["date"].as_str().unwrap();
    assert_eq!(date.len(), "2024-01-02T03:04:05Z".len(), "{date}");
    assert!(date.ends_with('Z') && date.as_bytes()[10] == b'T', "{date}");
    assert_eq!(inner["client-request-id"], "client-42");
    assert_eq!(envelope.as_object().unwrap().len(), 1);
    assert_eq!(serde_json::to_value(&err).unwrap(), envelope);
    assert_eq!(err.status(), 400);

    let another = refused(example_value("ex01-request.json").tap_remove("callbackUri"));
    assert_ne!(
        another.request_id, err.request_id,
        "a fresh request id per error"
    );
}

#[test]
fn malformed_bodies_become_graph_errors_with_a_position() {
    let err: GraphError = parse_call("{\"callbackUri\": \"https://x\",,}", ParseMode::Strict)
        .unwrap_err()
        .into();
    assert_eq!(err.status(), 400);
    assert!(
        err.message().contains("line 1 column 29"),
        "{}",
        err.message()
    );

    let err: GraphError = parse_call("{\"targets\": {}}", ParseMode::Strict)
        .unwrap_err()
        .into();
    assert_eq!(err.property(), Some("targets"));
    assert!(
        err.message().contains("must be an array, found an object"),
        "{}",
        err.message()
    );
}

trait TapRemove {
    fn tap_remove(self, key: &str) -> Self;
}

impl TapRemove for Value {
    fn tap_remove(mut self, key: &str) -> Self {
        if let Some(map) = self.as_object_mut() {
            map.remove(key);
        }
        self
    }
}
