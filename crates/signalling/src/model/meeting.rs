//! `chatInfo`, the `meetingInfo` variants and `meetingCapability`.

use std::fmt;

use serde_json::Value;

use crate::model::core::{
    FromJson, Path, ToJson, graph_object, graph_type_impls, odata_type_is, odata_type_of,
};
use crate::model::{AutoAdmittedUsersType, IdentitySet, ModelError};

/// A secret string (a meeting token, a passcode, an access token): `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Secret(pub String);

impl Secret {
    /// The secret as text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl FromJson for Secret {
    fn from_json(value: Value, at: &Path<'_>) -> Result<Self, ModelError> {
        String::from_json(value, at).map(Secret)
    }
}

impl ToJson for Secret {
    fn to_json(&self) -> Value {
        Value::String(self.0.clone())
    }
}

graph_object! {
    /// `chatInfo`: the chat thread of a meeting.
    pub struct ChatInfo {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// The chat thread id (`19:meeting_...@thread.v2`, `19:...@thread.skype`, ...).
        "threadId" => thread_id: String,
        /// The message id in the thread (`0` for a scheduled meeting).
        "messageId" => message_id: String,
        /// The reply-chain message id.
        "replyChainMessageId" => reply_chain_message_id: String,
    }
}

graph_object! {
    /// `organizerMeetingInfo`: a meeting found by its organizer.
    pub struct OrganizerMeetingInfo {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// The organizer.
        "organizer" => organizer: Box<IdentitySet>,
        /// Whether the meeting can go on with no host (deprecated but still sent).
        "allowConversationWithoutHost" => allow_conversation_without_host: bool,
    }
}

graph_object! {
    /// `tokenMeetingInfo`: a meeting found by a token.
    pub struct TokenMeetingInfo {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// The token.
        "token" => token: Secret,
        /// Whether the meeting can go on with no host.
        "allowConversationWithoutHost" => allow_conversation_without_host: bool,
    }
}

graph_object! {
    /// `joinMeetingIdMeetingInfo`: a meeting found by its join id.
    pub struct JoinMeetingIdMeetingInfo {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// The join meeting id.
        "joinMeetingId" => join_meeting_id: String,
        /// The passcode, if the meeting has one.
        "passcode" => passcode: Secret,
        /// Whether the meeting can go on with no host.
        "allowConversationWithoutHost" => allow_conversation_without_host: bool,
    }
}

/// `meetingInfo`, dispatched on `@odata.type`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MeetingInfo {
    /// `#microsoft.graph.organizerMeetingInfo`.
    Organizer(OrganizerMeetingInfo),
    /// `#microsoft.graph.tokenMeetingInfo`.
    Token(TokenMeetingInfo),
    /// `#microsoft.graph.joinMeetingIdMeetingInfo`.
    JoinMeetingId(JoinMeetingIdMeetingInfo),
    /// An object with another or no `@odata.type`, kept as read.
    Unknown(Value),
}

impl FromJson for MeetingInfo {
    fn from_json(value: Value, at: &Path<'_>) -> Result<Self, ModelError> {
        let Value::Object(map) = &value else {
            return Err(ModelError::wrong_type(at, "an object", &value));
        };
        match odata_type_of(map) {
            Some(t) if odata_type_is(t, "microsoft.graph.organizerMeetingInfo") => {
                OrganizerMeetingInfo::from_json(value, at).map(MeetingInfo::Organizer)
            }
            Some(t) if odata_type_is(t, "microsoft.graph.tokenMeetingInfo") => {
                TokenMeetingInfo::from_json(value, at).map(MeetingInfo::Token)
            }
            Some(t) if odata_type_is(t, "microsoft.graph.joinMeetingIdMeetingInfo") => {
                JoinMeetingIdMeetingInfo::from_json(value, at).map(MeetingInfo::JoinMeetingId)
            }
            _ => Ok(MeetingInfo::Unknown(value)),
        }
    }
}

impl ToJson for MeetingInfo {
    fn to_json(&self) -> Value {
        match self {
            MeetingInfo::Organizer(m) => m.to_json(),
            MeetingInfo::Token(m) => m.to_json(),
            MeetingInfo::JoinMeetingId(m) => m.to_json(),
            MeetingInfo::Unknown(v) => v.clone(),
        }
    }
}

graph_type_impls!(MeetingInfo);

graph_object! {
    /// `meetingCapability`: what the meeting allows.
    pub struct MeetingCapability {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// Anonymous users may start the meeting.
        "allowAnonymousUsersToStartMeeting" => allow_anonymous_users_to_start_meeting: bool,
        /// Who is admitted without the lobby.
        "autoAdmittedUsers" => auto_admitted_users: AutoAdmittedUsersType,
    }
}
