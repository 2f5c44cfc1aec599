//! Create-call request validation as the service does it (the emulator reuses it).
//!
//! The scenarios and their needs come from the examples of `spec/create-call.md`:
//!
//! | scenario | shape | permission (any of) |
//! |---|---|---|
//! | peer-to-peer VoIP (ex. 1, 2) | one VoIP target | `Calls.Initiate.All`, `Calls.InitiateGroupCalls.All` |
//! | group call (ex. 3, 4) | 2 to 5 VoIP targets | `Calls.InitiateGroupCalls.All` |
//! | meeting join (ex. 5, 6, 7) | `meetingInfo` (+ `chatInfo` for an organizer meeting), no targets | `Calls.JoinGroupCalls.All` |
//! | guest join (ex. 8) | a meeting join whose source identity is `guest` | `Calls.JoinGroupCallsasGuest.All`, `Calls.JoinGroupCalls.All` |
//! | PSTN (ex. 9, 10) | one E.164 `phone` target, `applicationInstance` source, `tenantId` | `Calls.Initiate.All`, `Calls.InitiateGroupCalls.All` |
//!
//! A permission listed after the first is a more privileged one of the spec's table that covers
//! the scenario too. App-hosted media needs `Calls.AccessMedia.All` as well.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use media_session::Blob;

use crate::error::{GraphError, RequestError, UriProblem};
use crate::model::{
    Call, CallDirection, Field, IdentityRole, IdentitySet, MediaConfig, MeetingInfo, Modality,
    PathText,
};
use crate::permissions::{Permission, PermissionRequirement};

/// Most targets a group call may have ("up to 5 VoIP users").
pub const MAX_GROUP_TARGETS: usize = 5;

/// Most digits of an E.164 number.
pub const MAX_E164_DIGITS: usize = 15;

/// What a create-call request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scenario {
    /// A one-to-one VoIP call.
    PeerToPeer,
    /// A group call with `targets` VoIP participants (2 to 5).
    GroupCall {
        /// Number of targets.
        targets: usize,
    },
    /// Joining an existing meeting.
    MeetingJoin {
        /// How the meeting is found.
        meeting: MeetingKind,
        /// True when the bot joins as a guest (source identity `guest`).
        as_guest: bool,
    },
    /// A one-to-one PSTN call from an application instance.
    Pstn,
}

/// How a joined meeting is identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MeetingKind {
    /// Organizer + a `19:meeting_...` thread: a scheduled meeting.
    Scheduled,
    /// Organizer + a channel thread (`19:...@thread.skype`, `@thread.tacv2`).
    Channel,
    /// `joinMeetingIdMeetingInfo`.
    JoinMeetingId,
    /// `tokenMeetingInfo`.
    Token,
}

/// Who hosts the call's media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaHosting {
    /// The service (`serviceHostedMediaConfig`).
    Service,
    /// The bot (`appHostedMediaConfig`).
    App,
}

/// A create-call request that passed validation.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ValidatedRequest {
    /// What the request asks for.
    pub scenario: Scenario,
    /// Who hosts the media.
    pub media: MediaHosting,
    /// The permissions the caller needs.
    pub required_permissions: PermissionRequirement,
    /// The parsed media session configuration of an app-hosted call.
    pub blob: Option<Box<Blob>>,
}

/// Validates a create-call request body as the service does: the call must fit one of the
/// scenarios above, with its required properties, a `callbackUri` over https (http only to a
/// loopback host), known modalities, and for app-hosted media a blob that parses.
///
/// The error names the offending property by its JSON path and carries Graph's envelope.
pub fn validate_create_call(call: &Call) -> Result<ValidatedRequest, GraphError> {
    check_call(call).map_err(GraphError::from)
}

/// Like [`validate_create_call`], with the bare reason instead of the envelope.
pub fn check_call(call: &Call) -> Result<ValidatedRequest, RequestError> {
    if let Some(t) = call.odata_type.get()
        && !crate::model::core::odata_type_is(t, "microsoft.graph.call")
    {
        return Err(RequestError::WrongODataType {
            path: "@odata.type".into(),
            expected: "#microsoft.graph.call",
            found: t.clone(),
        });
    }
    if let Some(direction) = call.direction.get()
        && *direction != CallDirection::Outgoing
    {
        return Err(RequestError::UnsupportedValue {
            path: "direction".into(),
            expected: "\"outgoing\" (a created call is outgoing)",
            found: direction.as_str().to_owned(),
        });
    }
    let callback = required(&call.callback_uri, "callbackUri", "")?;
    check_callback_uri(callback).map_err(|problem| RequestError::InvalidUri {
        path: "callbackUri".into(),
        problem,
    })?;
    check_modalities(&call.requested_modalities)?;
    let (media, blob) = check_media_config(&call.media_config)?;
    if let Some(tenant) = call.tenant_id.get()
        && tenant.trim().is_empty()
    {
        return Err(RequestError::Empty {
            path: "tenantId".into(),
        });
    }

    let joins_meeting = call.meeting_info.get().is_some() || call.chat_info.get().is_some();
    let scenario = if joins_meeting {
        check_meeting_join(call)?
    } else {
        check_outgoing_call(call)?
    };

    let any_of = match &scenario {
        Scenario::PeerToPeer | Scenario::Pstn => {
            vec![Permission::Initiate, Permission::InitiateGroupCalls]
        }
        Scenario::GroupCall { .. } => vec![Permission::InitiateGroupCalls],
        Scenario::MeetingJoin { as_guest: true, .. } => {
            vec![
                Permission::JoinGroupCallsAsGuest,
                Permission::JoinGroupCalls,
            ]
        }
        Scenario::MeetingJoin {
            as_guest: false, ..
        } => vec![Permission::JoinGroupCalls],
    };
    let all_of = match media {
        MediaHosting::App => vec![Permission::AccessMedia],
        MediaHosting::Service => Vec::new(),
    };
    Ok(ValidatedRequest {
        scenario,
        media,
        required_permissions: PermissionRequirement { any_of, all_of },
        blob: blob.map(Box::new),
    })
}

fn required<'a, T>(
    field: &'a Field<T>,
    path: &str,
    context: &'static str,
) -> Result<&'a T, RequestError> {
    field.get().ok_or_else(|| RequestError::Missing {
        path: path.into(),
        context,
    })
}

fn required_text<'a>(
    field: &'a Field<String>,
    path: &str,
    context: &'static str,
) -> Result<&'a str, RequestError> {
    let text = required(field, path, context)?;
    if text.trim().is_empty() {
        return Err(RequestError::Empty { path: path.into() });
    }
    Ok(text)
}

/// `https://...`, or `http://` to a loopback host.
pub fn check_callback_uri(uri: &str) -> Result<(), UriProblem> {
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UriProblem::InvalidCharacter);
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(UriProblem::NotAbsolute);
    };
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(UriProblem::NotAbsolute);
    }
    let secure = if scheme.eq_ignore_ascii_case("https") {
        true
    } else if scheme.eq_ignore_ascii_case("http") {
        false
    } else {
        return Err(UriProblem::UnsupportedScheme);
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(UriProblem::MissingHost);
        };
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UriProblem::InvalidPort)?),
        };
        (host, port)
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(UriProblem::MissingHost);
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p != 0);
        if !valid {
            return Err(UriProblem::InvalidPort);
        }
    }
    if secure || is_loopback(host) {
        Ok(())
    } else {
        Err(UriProblem::InsecureHttp)
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback())
}

fn check_modalities(field: &Field<Vec<Modality>>) -> Result<(), RequestError> {
    let modalities = required(field, "requestedModalities", "")?;
    if modalities.is_empty() {
        return Err(RequestError::Empty {
            path: "requestedModalities".into(),
        });
    }
    for (i, modality) in modalities.iter().enumerate() {
        let usable = matches!(
            modality,
            Modality::Audio | Modality::Video | Modality::VideoBasedScreenSharing | Modality::Data
        );
        if !usable {
            return Err(RequestError::UnsupportedValue {
                path: PathText(format!("requestedModalities[{i}]")),
                expected: "one of \"audio\", \"video\", \"videoBasedScreenSharing\", \"data\"",
                found: modality.as_str().to_owned(),
            });
        }
    }
    Ok(())
}

fn check_media_config(
    field: &Field<MediaConfig>,
) -> Result<(MediaHosting, Option<Blob>), RequestError> {
    match required(field, "mediaConfig", "")? {
        MediaConfig::AppHosted(config) => {
            let blob = required(&config.blob, "mediaConfig.blob", " for app-hosted media")?;
            let text = blob.as_str().trim();
            if text.is_empty() {
                return Err(RequestError::Empty {
                    path: "mediaConfig.blob".into(),
                });
            }
            if text.starts_with('<') && text.ends_with('>') {
                return Err(RequestError::BlobPlaceholder {
                    path: "mediaConfig.blob".into(),
                    found: text.chars().take(64).collect(),
                });
            }
            let parsed = Blob::parse(blob.as_str()).map_err(|e| RequestError::InvalidBlob {
                path: "mediaConfig.blob".into(),
                source: Arc::new(e),
            })?;
            Ok((MediaHosting::App, Some(parsed)))
        }
        MediaConfig::ServiceHosted(config) => {
            if let Some(media) = config.pre_fetch_media.get() {
                for (i, info) in media.iter().enumerate() {
                    required_text(
                        &info.uri,
                        &format!("mediaConfig.preFetchMedia[{i}].uri"),
                        "",
                    )?;
                }
            }
            Ok((MediaHosting::Service, None))
        }
        MediaConfig::Unknown(value) => match value.get("@odata.type") {
            None | Some(serde_json::Value::Null) => Err(RequestError::Missing {
                path: "mediaConfig.@odata.type".into(),
                context: " (#microsoft.graph.appHostedMediaConfig or \
                          #microsoft.graph.serviceHostedMediaConfig)",
            }),
            Some(found) => Err(RequestError::WrongODataType {
                path: "mediaConfig.@odata.type".into(),
                expected: "#microsoft.graph.appHostedMediaConfig or \
                           #microsoft.graph.serviceHostedMediaConfig",
                found: found
                    .as_str()
                    .map_or_else(|| found.to_string(), str::to_owned),
            }),
        },
    }
}

/// Checks that every identity of a set has an id (a guest's is optional) and returns the set.
fn check_identity_set(set: &IdentitySet, path: &str) -> Result<(), RequestError> {
    let mut any = false;
    for (role, identity) in set.identities() {
        any = true;
        let id_path = format!("{path}.{role}.id");
        match role {
            IdentityRole::Guest => {
                required_text(
                    &identity.display_name,
                    &format!("{path}.guest.displayName"),
                    " for a guest",
                )?;
                if let Some(id) = identity.id.get()
                    && id.as_str().trim().is_empty()
                {
                    return Err(RequestError::Empty {
                        path: id_path.into(),
                    });
                }
            }
            _ => {
                let id = required(&identity.id, &id_path, "")?;
                if id.as_str().trim().is_empty() {
                    return Err(RequestError::Empty {
                        path: id_path.into(),
                    });
                }
                if role == IdentityRole::Phone && !is_e164(id.as_str()) {
                    return Err(RequestError::InvalidPhoneNumber {
                        path: id_path.into(),
                    });
                }
            }
        }
    }
    if any {
        Ok(())
    } else {
        Err(RequestError::NoIdentity { path: path.into() })
    }
}

/// `+` followed by 1 to 15 digits.
pub fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (1..=MAX_E164_DIGITS).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Checks `source` when present; returns its identity set.
fn check_source(call: &Call) -> Result<Option<&IdentitySet>, RequestError> {
    let Some(source) = call.source.get() else {
        return Ok(None);
    };
    if let Some(t) = source.odata_type.get()
        && !crate::model::core::odata_type_is(t, "microsoft.graph.participantInfo")
    {
        return Err(RequestError::WrongODataType {
            path: "source.@odata.type".into(),
            expected: "#microsoft.graph.participantInfo",
            found: t.clone(),
        });
    }
    let identity = required(&source.identity, "source.identity", "")?;
    check_identity_set(identity, "source.identity")?;
    Ok(Some(identity))
}

fn check_meeting_join(call: &Call) -> Result<Scenario, RequestError> {
    if let Some(targets) = call.targets.get()
        && !targets.is_empty()
    {
        return Err(RequestError::NotAllowed {
            path: "targets".into(),
            context: "when joining a meeting (leave it out or empty)",
        });
    }
    let source = check_source(call)?;
    let as_guest = source.is_some_and(|s| s.guest.get().is_some());
    let meeting = match required(&call.meeting_info, "meetingInfo", " to join a meeting")? {
        MeetingInfo::Organizer(info) => {
            let organizer = required(
                &info.organizer,
                "meetingInfo.organizer",
                " in an organizerMeetingInfo",
            )?;
            check_identity_set(organizer, "meetingInfo.organizer")?;
            let chat = required(
                &call.chat_info,
                "chatInfo",
                " to join a meeting by its organizer",
            )?;
            let thread = required_text(&chat.thread_id, "chatInfo.threadId", "")?;
            required_text(&chat.message_id, "chatInfo.messageId", "")?;
            if thread.contains("meeting_") {
                MeetingKind::Scheduled
            } else {
                MeetingKind::Channel
            }
        }
        MeetingInfo::JoinMeetingId(info) => {
            required_text(
                &info.join_meeting_id,
                "meetingInfo.joinMeetingId",
                " in a joinMeetingIdMeetingInfo",
            )?;
            MeetingKind::JoinMeetingId
        }
        MeetingInfo::Token(info) => {
            let token = required(&info.token, "meetingInfo.token", " in a tokenMeetingInfo")?;
            if token.expose().trim().is_empty() {
                return Err(RequestError::Empty {
                    path: "meetingInfo.token".into(),
                });
            }
            MeetingKind::Token
        }
        MeetingInfo::Unknown(value) => {
            const EXPECTED: &str = "#microsoft.graph.organizerMeetingInfo, \
                                    #microsoft.graph.joinMeetingIdMeetingInfo or \
                                    #microsoft.graph.tokenMeetingInfo";
            return Err(match value.get("@odata.type") {
                None | Some(serde_json::Value::Null) => RequestError::Missing {
                    path: "meetingInfo.@odata.type".into(),
                    context: " (organizerMeetingInfo, joinMeetingIdMeetingInfo or tokenMeetingInfo)",
                },
                Some(found) => RequestError::WrongODataType {
                    path: "meetingInfo.@odata.type".into(),
                    expected: EXPECTED,
                    found: found
                        .as_str()
                        .map_or_else(|| found.to_string(), str::to_owned),
                },
            });
        }
    };
    Ok(Scenario::MeetingJoin { meeting, as_guest })
}

fn check_outgoing_call(call: &Call) -> Result<Scenario, RequestError> {
    let targets = required(
        &call.targets,
        "targets",
        " to place a call (or meetingInfo to join a meeting)",
    )?;
    if targets.is_empty() {
        return Err(RequestError::Empty {
            path: "targets".into(),
        });
    }
    let mut phone_target = None;
    for (i, target) in targets.iter().enumerate() {
        if let Some(t) = target.odata_type.get() {
            let fits =
                crate::model::core::odata_type_is(t, "microsoft.graph.invitationParticipantInfo")
                    || crate::model::core::odata_type_is(t, "microsoft.graph.participantInfo");
            if !fits {
                return Err(RequestError::WrongODataType {
                    path: PathText(format!("targets[{i}].@odata.type")),
                    expected: "#microsoft.graph.invitationParticipantInfo",
                    found: t.clone(),
                });
            }
        }
        let path = format!("targets[{i}].identity");
        let identity = required(&target.identity, &path, "")?;
        check_identity_set(identity, &path)?;
        if identity.guest.get().is_some() {
            return Err(RequestError::NotAllowed {
                path: PathText(format!("{path}.guest")),
                context: "as a call target (guests join meetings)",
            });
        }
        if identity.phone.get().is_some() && phone_target.is_none() {
            phone_target = Some(i);
        }
    }
    let source = check_source(call)?;
    if let Some(source) = source
        && source.guest.get().is_some()
    {
        return Err(RequestError::NotAllowed {
            path: "source.identity.guest".into(),
            context: "outside a meeting join",
        });
    }

    if phone_target.is_some() {
        if targets.len() > 1 {
            return Err(RequestError::TooManyTargets {
                path: "targets".into(),
                max: 1,
                found: targets.len(),
                context: "in a PSTN call",
            });
        }
        let source = source.ok_or(RequestError::Missing {
            path: "source".into(),
            context: " to place a PSTN call (an application instance with a phone number)",
        })?;
        if source.application_instance.get().is_none() {
            return Err(RequestError::WrongIdentity {
                path: "source.identity".into(),
                expected: IdentityRole::ApplicationInstance,
                context: "to place a PSTN call",
            });
        }
        required_text(&call.tenant_id, "tenantId", " to place a PSTN call")?;
        return Ok(Scenario::Pstn);
    }
    match targets.len() {
        1 => Ok(Scenario::PeerToPeer),
        n if n <= MAX_GROUP_TARGETS => Ok(Scenario::GroupCall { targets: n }),
        n => Err(RequestError::TooManyTargets {
            path: "targets".into(),
            max: MAX_GROUP_TARGETS,
            found: n,
            context: "in a group call",
        }),
    }
}
