//! Property tests: generated model values survive serialize/parse, and the parser agrees
//! with serde_json on generated documents.

use proptest::prelude::*;
use serde_json::{Map, Number, Value};
use signalling::model::*;
use signalling::{ParseMode, parse, parse_value, to_json_pretty};

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<u64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        "\\PC{0,12}".prop_map(Value::String),
        "[\u{0}-\u{1f}\"\\\\/\u{7f}-\u{10ffff}]{0,6}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(("\\PC{0,8}", inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Unknown properties: keys no model type knows.
fn extra() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec(("x-[a-zA-Z]{1,8}", json_value()), 0..3)
        .prop_map(|kv| kv.into_iter().collect())
}

fn field<T: Clone + std::fmt::Debug + 'static>(
    inner: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Field<T>> {
    prop_oneof![
        1 => Just(Field::Absent),
        1 => Just(Field::Null),
        3 => inner.prop_map(Field::Value),
    ]
    .boxed()
}

fn text() -> impl Strategy<Value = String> + Clone {
    "\\PC{0,10}"
}

fn odata(name: &'static str) -> BoxedStrategy<Field<String>> {
    field(prop_oneof![
        Just(format!("#microsoft.graph.{name}")),
        Just(format!("microsoft.graph.{name}"))
    ])
}

macro_rules! graph_enum_strategy {
    ($name:ident) => {
        prop_oneof![
            prop::sample::select($name::KNOWN.to_vec()),
            "[a-zA-Z]{1,12}".prop_map(|s| $name::from_graph(&s)),
        ]
    };
}

fn identity() -> impl Strategy<Value = Identity> {
    (
        field(prop_oneof![
            Just("#microsoft.graph.identity".to_owned()),
            Just("#microsoft.graph.communicationsUserIdentity".to_owned()),
            Just("#microsoft.graph.somethingNew".to_owned()),
        ]),
        field(text().prop_map(IdentityId)),
        field(text()),
        field(text()),
        field(any::<bool>()),
        extra(),
    )
        .prop_map(|(odata_type, id, display_name, tenant_id, hidden, extra)| {
            let mut i = Identity::default();
            i.odata_type = odata_type;
            i.id = id;
            i.display_name = display_name;
            i.tenant_id = tenant_id;
            i.hidden = hidden;
            i.extra = extra;
            i
        })
}

fn identity_set() -> impl Strategy<Value = IdentitySet> {
    let boxed = || field(identity().prop_map(Box::new));
    (
        odata("identitySet"),
        boxed(),
        boxed(),
        boxed(),
        boxed(),
        boxed(),
        boxed(),
        field(graph_enum_strategy!(EndpointType)),
        extra(),
    )
        .prop_map(
            |(odata_type, application, instance, user, guest, phone, acs, endpoint, extra)| {
                let mut s = IdentitySet::default();
                s.odata_type = odata_type;
                s.application = application;
                s.application_instance = instance;
                s.user = user;
                s.guest = guest;
                s.phone = phone;
                s.azure_communication_services_user = acs;
                s.endpoint_type = endpoint;
                s.extra = extra;
                s
            },
        )
}

fn participant_info() -> impl Strategy<Value = ParticipantInfo> {
    (
        odata("participantInfo"),
        field(identity_set()),
        field(text()),
        field(graph_enum_strategy!(EndpointType)),
        field(text()),
        field(text()),
        extra(),
    )
        .prop_map(
            |(odata_type, identity, country, endpoint, language, region, extra)| {
                let mut p = ParticipantInfo::default();
                p.odata_type = odata_type;
                p.identity = identity;
                p.country_code = country;
                p.endpoint_type = endpoint;
                p.language_id = language;
                p.region = region;
                p.extra = extra;
                p
            },
        )
}

fn invitation() -> impl Strategy<Value = InvitationParticipantInfo> {
    (
        odata("invitationParticipantInfo"),
        field(identity_set()),
        field(any::<bool>()),
        field(text()),
        extra(),
    )
        .prop_map(|(odata_type, identity, hidden, replaces, extra)| {
            let mut p = InvitationParticipantInfo::default();
            p.odata_type = odata_type;
            p.identity = identity;
            p.hidden = hidden;
            p.replaces_call_id = replaces;
            p.extra = extra;
            p
        })
}

fn unknown_object() -> impl Strategy<Value = Value> {
    (prop::option::of("#x\\.[a-z]{1,8}"), extra()).prop_map(|(t, mut map)| {
        if let Some(t) = t {
            map.insert("@odata.type".into(), Value::String(t));
        }
        Value::Object(map)
    })
}

fn media_config() -> impl Strategy<Value = MediaConfig> {
    let app = (
        field(text().prop_map(BlobText)),
        field(any::<bool>()),
        extra(),
    )
        .prop_map(|(blob, remove, extra)| {
            let mut c = AppHostedMediaConfig::default();
            c.odata_type = Field::Value("#microsoft.graph.appHostedMediaConfig".into());
            c.blob = blob;
            c.remove_from_default_audio_group = remove;
            c.extra = extra;
            MediaConfig::AppHosted(c)
        });
    let info = (odata("mediaInfo"), field(text()), field(text())).prop_map(|(t, uri, id)| {
        let mut m = MediaInfo::default();
        m.odata_type = t;
        m.uri = uri;
        m.resource_id = id;
        m
    });
    let service = (
        field(prop::collection::vec(info, 0..3)),
        field(any::<bool>()),
        extra(),
    )
        .prop_map(|(media, remove, extra)| {
            let mut c = ServiceHostedMediaConfig::default();
            c.odata_type = Field::Value("microsoft.graph.serviceHostedMediaConfig".into());
            c.pre_fetch_media = media;
            c.remove_from_default_audio_group = remove;
            c.extra = extra;
            MediaConfig::ServiceHosted(c)
        });
    prop_oneof![
        app,
        service,
        unknown_object().prop_map(MediaConfig::Unknown)
    ]
}

fn meeting_info() -> impl Strategy<Value = MeetingInfo> {
    let organizer = (
        field(identity_set().prop_map(Box::new)),
        field(any::<bool>()),
        extra(),
    )
        .prop_map(|(organizer, allow, extra)| {
            let mut m = OrganizerMeetingInfo::default();
            m.odata_type = Field::Value("#microsoft.graph.organizerMeetingInfo".into());
            m.organizer = organizer;
            m.allow_conversation_without_host = allow;
            m.extra = extra;
            MeetingInfo::Organizer(m)
        });
    let join = (field(text()), field(text().prop_map(Secret))).prop_map(|(id, passcode)| {
        let mut m = JoinMeetingIdMeetingInfo::default();
        m.odata_type = Field::Value("#microsoft.graph.joinMeetingIdMeetingInfo".into());
        m.join_meeting_id = id;
        m.passcode = passcode;
        MeetingInfo::JoinMeetingId(m)
    });
    let token = field(text().prop_map(Secret)).prop_map(|token| {
        let mut m = TokenMeetingInfo::default();
        m.odata_type = Field::Value("#microsoft.graph.tokenMeetingInfo".into());
        m.token = token;
        MeetingInfo::Token(m)
    });
    prop_oneof![
        organizer,
        join,
        token,
        unknown_object().prop_map(MeetingInfo::Unknown)
    ]
}

fn result_code() -> impl Strategy<Value = ResultCode> {
    prop_oneof![
        any::<i64>().prop_map(ResultCode::from),
        "[0-9]{1,6}".prop_map(ResultCode::Text)
    ]
}

fn result_info() -> impl Strategy<Value = ResultInfo> {
    (field(result_code()), field(result_code()), field(text())).prop_map(
        |(code, subcode, message)| {
            let mut r = ResultInfo::default();
            r.code = code;
            r.subcode = subcode;
            r.message = message;
            r
        },
    )
}

fn media_stream() -> impl Strategy<Value = MediaStream> {
    (
        odata("mediaStream"),
        field(graph_enum_strategy!(MediaDirection)),
        field(graph_enum_strategy!(Modality)),
        field(any::<bool>()),
        field(text()),
    )
        .prop_map(|(t, direction, media_type, muted, source)| {
            let mut m = MediaStream::default();
            m.odata_type = t;
            m.direction = direction;
            m.media_type = media_type;
            m.server_muted = muted;
            m.source_id = source;
            m
        })
}

fn participant() -> impl Strategy<Value = Participant> {
    (
        field(text()),
        field(participant_info()),
        field(any::<bool>()),
        field(any::<bool>()),
        field(prop::collection::vec(media_stream(), 0..3)),
        field(any::<i64>()),
        extra(),
    )
        .prop_map(|(id, info, lobby, muted, streams, seq, extra)| {
            let mut p = Participant::default();
            p.odata_type = Field::Value("#microsoft.graph.participant".into());
            p.id = id;
            p.info = info;
            p.is_in_lobby = lobby;
            p.is_muted = muted;
            p.media_streams = streams;
            p.roster_sequence_number = seq;
            p.extra = extra;
            p
        })
}

fn call() -> impl Strategy<Value = Call> {
    let head = (
        odata("call"),
        field(text()),
        field(graph_enum_strategy!(CallState)),
        field(graph_enum_strategy!(CallDirection)),
        field(text()),
        field(participant_info()),
        field(prop::collection::vec(invitation(), 0..3)),
        field(prop::collection::vec(graph_enum_strategy!(Modality), 0..3)),
    );
    let tail = (
        field(media_config()),
        field(meeting_info()),
        field(result_info()),
        field(any::<i32>()),
        field(prop::collection::vec(
            graph_enum_strategy!(RoutingPolicy),
            0..2,
        )),
        field((field(any::<i64>()), field(graph_enum_strategy!(Tone)))),
        extra(),
    );
    (head, tail).prop_map(|(head, tail)| {
        let (odata_type, id, state, direction, callback, source, targets, modalities) = head;
        let (media, meeting, result, ringing, routing, tone, extra) = tail;
        let mut c = Call::default();
        c.odata_type = odata_type;
        c.id = id;
        c.state = state;
        c.direction = direction;
        c.callback_uri = callback;
        c.source = source;
        c.targets = targets;
        c.requested_modalities = modalities;
        c.media_config = media;
        c.meeting_info = meeting;
        c.result_info = result;
        c.ringing_timeout_in_seconds = ringing;
        c.routing_policies = routing;
        c.tone_info = match tone {
            Field::Absent => Field::Absent,
            Field::Null => Field::Null,
            Field::Value((sequence, tone)) => {
                let mut t = ToneInfo::default();
                t.sequence_id = sequence;
                t.tone = tone;
                Field::Value(t)
            }
        };
        c.extra = extra;
        c
    })
}

fn operation() -> impl Strategy<Value = CommsOperation> {
    let play = (
        field(text()),
        field(graph_enum_strategy!(OperationStatus)),
        field(result_info()),
        field(graph_enum_strategy!(PlayPromptCompletionReason)),
    )
        .prop_map(|(id, status, result, reason)| {
            let mut o = PlayPromptOperation::default();
            o.odata_type = Field::Value("#microsoft.graph.playPromptOperation".into());
            o.id = id;
            o.status = status;
            o.result_info = result;
            o.completion_reason = reason;
            CommsOperation::PlayPrompt(o)
        });
    let record = (
        field(graph_enum_strategy!(RecordCompletionReason)),
        field(text().prop_map(Secret)),
        field(text()),
    )
        .prop_map(|(reason, token, location)| {
            let mut o = RecordOperation::default();
            o.odata_type = Field::Value("#microsoft.graph.recordOperation".into());
            o.completion_reason = reason;
            o.recording_access_token = token;
            o.recording_location = location;
            CommsOperation::Record(o)
        });
    let other = (
        prop::sample::select(vec![
            "muteParticipantOperation",
            "commsOperation",
            "subscribeToToneOperation",
        ]),
        field(text()),
    )
        .prop_map(|(t, context)| {
            let mut o = OperationDetails::default();
            o.odata_type = Field::Value(format!("#microsoft.graph.{t}"));
            o.client_context = context;
            CommsOperation::Other(o)
        });
    prop_oneof![play, record, other]
}

fn resource_data() -> impl Strategy<Value = ResourceData> {
    prop_oneof![
        call().prop_map(|c| {
            let mut c = c;
            c.odata_type = Field::Value("#microsoft.graph.call".into());
            ResourceData::Call(Box::new(c))
        }),
        prop::collection::vec(
            participant().prop_map(|p| ResourceData::Participant(Box::new(p))),
            0..3
        )
        .prop_map(ResourceData::Collection),
        operation().prop_map(|o| ResourceData::Operation(Box::new(o))),
        unknown_object().prop_map(ResourceData::Unknown),
    ]
}

fn notifications() -> impl Strategy<Value = CommsNotifications> {
    let one = (
        odata("commsNotification"),
        field(graph_enum_strategy!(ChangeType)),
        field(text()),
        field(text()),
        field(resource_data()),
        extra(),
    )
        .prop_map(|(t, change, url, resource, data, extra)| {
            let mut n = CommsNotification::default();
            n.odata_type = t;
            n.change_type = change;
            n.resource_url = url;
            n.resource = resource;
            n.resource_data = data;
            n.extra = extra;
            n
        });
    (
        odata("commsNotifications"),
        field(prop::collection::vec(one, 0..3)),
        extra(),
    )
        .prop_map(|(t, value, extra)| {
            let mut n = CommsNotifications::default();
            n.odata_type = t;
            n.value = value;
            n.extra = extra;
            n
        })
}

fn assert_round_trips<T: GraphType + PartialEq + std::fmt::Debug>(
    value: &T,
) -> Result<(), TestCaseError> {
    let json = value.to_json_value();
    prop_assert_eq!(
        &T::from_json_value(json.clone()).expect("from value"),
        value
    );
    let compact = serde_json::to_string(value).expect("serde serializes");
    prop_assert_eq!(
        &parse::<T>(&compact, ParseMode::Strict).expect("strict parse"),
        value
    );
    let pretty = to_json_pretty(value);
    prop_assert_eq!(
        &parse::<T>(&pretty, ParseMode::Strict).expect("pretty parse"),
        value
    );
    // serde's path goes through serde_json's own parser, whose default float parsing is not
    // always correctly rounded: compare with the model built from serde_json's value.
    let via_serde = serde_json::from_str::<T>(&compact).expect("serde deserializes");
    let serde_value: Value = serde_json::from_str(&compact).expect("serde_json parses");
    prop_assert_eq!(
        via_serde,
        T::from_json_value(serde_value).expect("from serde value")
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn calls_round_trip(c in call()) {
        assert_round_trips(&c)?;
    }

    #[test]
    fn notifications_round_trip(n in notifications()) {
        assert_round_trips(&n)?;
    }

    #[test]
    fn participants_round_trip(p in participant()) {
        assert_round_trips(&p)?;
    }

    #[test]
    fn parser_agrees_with_serde_json(v in json_value()) {
        for text in [v.to_string(), serde_json::to_string_pretty(&v).unwrap()] {
            prop_assert_eq!(&parse_value(&text, ParseMode::Strict).unwrap(), &v);
            prop_assert_eq!(&parse_value(&text, ParseMode::Tolerant).unwrap(), &v);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,64}|[\\[\\]{}:,\"0-9a-z\\\\ -]{0,64}") {
        for mode in [ParseMode::Strict, ParseMode::Tolerant] {
            let _ = parse::<Call>(&text, mode);
            let _ = parse::<CommsNotifications>(&text, mode);
        }
    }

    #[test]
    fn strict_acceptance_implies_serde_json_acceptance(text in "[\\[\\]{}:,\"0-9a-z\\\\ .eE+-]{0,40}") {
        if let Ok(v) = parse_value(&text, ParseMode::Strict) {
            let reference: Value = serde_json::from_str(&text).expect("serde_json agrees");
            prop_assert_eq!(v, reference);
        }
    }
}
