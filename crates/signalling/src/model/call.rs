//! The `call` resource and the small objects only a call references.

use serde_json::{Number, Value};

use crate::model::core::{FromJson, Path, ToJson, graph_object};
use crate::model::{
    CallDirection, CallState, CallTranscriptionState, ChatInfo, IdentitySet,
    InvitationParticipantInfo, MediaConfig, MediaState, MeetingCapability, MeetingInfo, Modality,
    ModelError, ParticipantInfo, RoutingPolicy, RoutingType, Tone,
};

graph_object! {
    /// The `call` resource (Graph beta).
    pub struct Call {
        /// `@odata.type`, as read (`#microsoft.graph.call`).
        "@odata.type" => odata_type: String,
        /// The call id.
        "id" => id: String,
        /// Where the call is in its life.
        "state" => state: CallState,
        /// Incoming or outgoing.
        "direction" => direction: CallDirection,
        /// Subject of a group call.
        "subject" => subject: String,
        /// Where the service sends notifications for this call.
        "callbackUri" => callback_uri: String,
        /// Id shared by every leg of the call.
        "callChainId" => call_chain_id: String,
        /// How the call was routed.
        "callRoutes" => call_routes: Vec<CallRoute>,
        /// The caller.
        "source" => source: ParticipantInfo,
        /// Who is called.
        "targets" => targets: Vec<InvitationParticipantInfo>,
        /// Modalities asked for.
        "requestedModalities" => requested_modalities: Vec<Modality>,
        /// Modalities in use.
        "activeModalities" => active_modalities: Vec<Modality>,
        /// Who hosts the media and how.
        "mediaConfig" => media_config: MediaConfig,
        /// State of the call's media.
        "mediaState" => media_state: CallMediaState,
        /// Routing policies.
        "routingPolicies" => routing_policies: Vec<RoutingPolicy>,
        /// Tenant of the call.
        "tenantId" => tenant_id: String,
        /// The bot's own participant id.
        "myParticipantId" => my_participant_id: String,
        /// Why the call ended.
        "terminationReason" => termination_reason: String,
        /// Ringing timeout, seconds.
        "ringingTimeoutInSeconds" => ringing_timeout_in_seconds: i32,
        /// Result of the call (on termination).
        "resultInfo" => result_info: ResultInfo,
        /// Who answered.
        "answeredBy" => answered_by: ParticipantInfo,
        /// Chat thread of the meeting joined.
        "chatInfo" => chat_info: ChatInfo,
        /// The meeting joined.
        "meetingInfo" => meeting_info: MeetingInfo,
        /// Transcription state.
        "transcription" => transcription: CallTranscriptionInfo,
        /// What the meeting allows.
        "meetingCapability" => meeting_capability: MeetingCapability,
        /// A DTMF tone received.
        "toneInfo" => tone_info: ToneInfo,
        /// Context of an incoming call.
        "incomingContext" => incoming_context: IncomingContext,
        /// Call options (`outgoingCallOptions` / `incomingCallOptions`).
        "callOptions" => call_options: CallOptions,
    }
}

graph_object! {
    /// `callRoute`: one hop of a call's routing.
    pub struct CallRoute {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// Where the call ended up.
        "final" => final_: IdentitySet,
        /// Who was called first.
        "original" => original: IdentitySet,
        /// How the call was routed.
        "routingType" => routing_type: RoutingType,
    }
}

graph_object! {
    /// `toneInfo`: a DTMF tone.
    pub struct ToneInfo {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// Sequence number of the tone.
        "sequenceId" => sequence_id: i64,
        /// The tone.
        "tone" => tone: Tone,
    }
}

/// `code` or `subcode` of a [`ResultInfo`]: Graph documents numbers, some payloads carry
/// strings; either is kept as read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResultCode {
    /// A JSON number.
    Number(Number),
    /// A JSON string.
    Text(String),
}

impl ResultCode {
    /// The code as an integer, whether it was written as a number or a string.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            ResultCode::Number(n) => n.as_i64(),
            ResultCode::Text(s) => s.trim().parse().ok(),
        }
    }
}

impl From<i64> for ResultCode {
    fn from(value: i64) -> Self {
        ResultCode::Number(value.into())
    }
}

impl FromJson for ResultCode {
    fn from_json(value: Value, at: &Path<'_>) -> Result<Self, ModelError> {
        match value {
            Value::Number(n) => Ok(ResultCode::Number(n)),
            Value::String(s) => Ok(ResultCode::Text(s)),
            other => Err(ModelError::wrong_type(
                at,
                "a number or a numeric string",
                &other,
            )),
        }
    }
}

impl ToJson for ResultCode {
    fn to_json(&self) -> Value {
        match self {
            ResultCode::Number(n) => Value::Number(n.clone()),
            ResultCode::Text(s) => Value::String(s.clone()),
        }
    }
}

graph_object! {
    /// `resultInfo`: the outcome of a call or an operation.
    pub struct ResultInfo {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// Result code (an HTTP-like status).
        "code" => code: ResultCode,
        /// Sub-code.
        "subcode" => subcode: ResultCode,
        /// Message.
        "message" => message: String,
    }
}

graph_object! {
    /// `callMediaState`.
    pub struct CallMediaState {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// State of the audio.
        "audio" => audio: MediaState,
    }
}

graph_object! {
    /// `callTranscriptionInfo`.
    pub struct CallTranscriptionInfo {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// When the state last changed (ISO 8601).
        "lastModifiedDateTime" => last_modified_date_time: String,
        /// Transcription state.
        "state" => state: CallTranscriptionState,
    }
}

graph_object! {
    /// `incomingContext`: who an incoming call is really from.
    pub struct IncomingContext {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// Participant observed by the bot.
        "observedParticipantId" => observed_participant_id: String,
        /// On whose behalf the call is made.
        "onBehalfOf" => on_behalf_of: IdentitySet,
        /// The source participant.
        "sourceParticipantId" => source_participant_id: String,
        /// Who transferred the call.
        "transferor" => transferor: IdentitySet,
    }
}

graph_object! {
    /// `callOptions` (`outgoingCallOptions`, `incomingCallOptions`).
    pub struct CallOptions {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// Hide the bot after the call escalates to a group call.
        "hideBotAfterEscalation" => hide_bot_after_escalation: bool,
        /// Send content-sharing notifications.
        "isContentSharingNotificationEnabled" => is_content_sharing_notification_enabled: bool,
        /// Send roster changes as deltas.
        "isDeltaRosterEnabled" => is_delta_roster_enabled: bool,
        /// Send interactive roster updates.
        "isInteractiveRosterEnabled" => is_interactive_roster_enabled: bool,
    }
}
