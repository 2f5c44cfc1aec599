//! `commsOperation` and its subtypes.

use serde_json::Value;

use crate::model::core::{
    FromJson, Path, ToJson, graph_object, graph_type_impls, odata_type_is, odata_type_of,
};
use crate::model::{
    InvitationParticipantInfo, ModelError, OperationStatus, PlayPromptCompletionReason,
    RecordCompletionReason, ResultInfo, Secret, SendDtmfCompletionReason,
};

graph_object! {
    /// A `commsOperation` with no properties of its own beyond the base type's: the base type
    /// itself and `cancelMediaProcessingOperation`, `muteParticipantOperation`,
    /// `unmuteParticipantOperation`, `subscribeToToneOperation`,
    /// `updateRecordingStatusOperation`, `startHoldMusicOperation`, `stopHoldMusicOperation`,
    /// `addLargeGalleryViewOperation`, `muteParticipantsOperation`.
    pub struct OperationDetails {
        /// `@odata.type`, as read: which operation this is.
        "@odata.type" => odata_type: String,
        /// The operation id.
        "id" => id: String,
        /// Context the bot passed when it started the operation.
        "clientContext" => client_context: String,
        /// Status.
        "status" => status: OperationStatus,
        /// Outcome.
        "resultInfo" => result_info: ResultInfo,
    }
}

graph_object! {
    /// `playPromptOperation`.
    pub struct PlayPromptOperation {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// The operation id.
        "id" => id: String,
        /// Context the bot passed.
        "clientContext" => client_context: String,
        /// Status.
        "status" => status: OperationStatus,
        /// Outcome.
        "resultInfo" => result_info: ResultInfo,
        /// Why it completed.
        "completionReason" => completion_reason: PlayPromptCompletionReason,
    }
}

graph_object! {
    /// `recordOperation` (record a response).
    pub struct RecordOperation {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// The operation id.
        "id" => id: String,
        /// Context the bot passed.
        "clientContext" => client_context: String,
        /// Status.
        "status" => status: OperationStatus,
        /// Outcome.
        "resultInfo" => result_info: ResultInfo,
        /// Why it completed.
        "completionReason" => completion_reason: RecordCompletionReason,
        /// Token to fetch the recording.
        "recordingAccessToken" => recording_access_token: Secret,
        /// Where the recording is.
        "recordingLocation" => recording_location: String,
    }
}

graph_object! {
    /// `sendDtmfTonesOperation`.
    pub struct SendDtmfTonesOperation {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// The operation id.
        "id" => id: String,
        /// Context the bot passed.
        "clientContext" => client_context: String,
        /// Status.
        "status" => status: OperationStatus,
        /// Outcome.
        "resultInfo" => result_info: ResultInfo,
        /// Why it completed.
        "completionReason" => completion_reason: SendDtmfCompletionReason,
    }
}

graph_object! {
    /// `inviteParticipantsOperation`.
    pub struct InviteParticipantsOperation {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// The operation id.
        "id" => id: String,
        /// Context the bot passed.
        "clientContext" => client_context: String,
        /// Status.
        "status" => status: OperationStatus,
        /// Outcome.
        "resultInfo" => result_info: ResultInfo,
        /// Who was invited.
        "participants" => participants: Vec<InvitationParticipantInfo>,
    }
}

/// `commsOperation`, dispatched on `@odata.type`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CommsOperation {
    /// `#microsoft.graph.playPromptOperation`.
    PlayPrompt(PlayPromptOperation),
    /// `#microsoft.graph.recordOperation`.
    Record(RecordOperation),
    /// `#microsoft.graph.sendDtmfTonesOperation`.
    SendDtmfTones(SendDtmfTonesOperation),
    /// `#microsoft.graph.inviteParticipantsOperation`.
    InviteParticipants(InviteParticipantsOperation),
    /// The base type or a subtype with no properties of its own (see [`OperationDetails`]).
    Other(OperationDetails),
    /// An object with another or no `@odata.type`, kept as read.
    Unknown(Value),
}

/// Subtypes that carry only the base properties.
const PLAIN_OPERATIONS: &[&str] = &[
    "microsoft.graph.commsOperation",
    "microsoft.graph.cancelMediaProcessingOperation",
    "microsoft.graph.muteParticipantOperation",
    "microsoft.graph.muteParticipantsOperation",
    "microsoft.graph.unmuteParticipantOperation",
    "microsoft.graph.subscribeToToneOperation",
    "microsoft.graph.updateRecordingStatusOperation",
    "microsoft.graph.startHoldMusicOperation",
    "microsoft.graph.stopHoldMusicOperation",
    "microsoft.graph.addLargeGalleryViewOperation",
    "microsoft.graph.startRecordingOperation",
    "microsoft.graph.stopRecordingOperation",
    "microsoft.graph.startTranscriptionOperation",
    "microsoft.graph.stopTranscriptionOperation",
];

impl CommsOperation {
    /// True when `odata_type` (raw, with or without `#`) names an operation type.
    pub(crate) fn is_operation_type(odata_type: &str) -> bool {
        [
            "microsoft.graph.playPromptOperation",
            "microsoft.graph.recordOperation",
            "microsoft.graph.sendDtmfTonesOperation",
            "microsoft.graph.inviteParticipantsOperation",
        ]
        .iter()
        .chain(PLAIN_OPERATIONS)
        .any(|known| odata_type_is(odata_type, known))
    }

    /// The operation's status, whatever its type (`None` for an unknown object).
    pub fn status(&self) -> Option<&OperationStatus> {
        match self {
            CommsOperation::PlayPrompt(o) => o.status.get(),
            CommsOperation::Record(o) => o.status.get(),
            CommsOperation::SendDtmfTones(o) => o.status.get(),
            CommsOperation::InviteParticipants(o) => o.status.get(),
            CommsOperation::Other(o) => o.status.get(),
            CommsOperation::Unknown(_) => None,
        }
    }
}

impl FromJson for CommsOperation {
    fn from_json(value: Value, at: &Path<'_>) -> Result<Self, ModelError> {
        let Value::Object(map) = &value else {
            return Err(ModelError::wrong_type(at, "an object", &value));
        };
        match odata_type_of(map) {
            Some(t) if odata_type_is(t, "microsoft.graph.playPromptOperation") => {
                PlayPromptOperation::from_json(value, at).map(CommsOperation::PlayPrompt)
            }
            Some(t) if odata_type_is(t, "microsoft.graph.recordOperation") => {
                RecordOperation::from_json(value, at).map(CommsOperation::Record)
            }
            Some(t) if odata_type_is(t, "microsoft.graph.sendDtmfTonesOperation") => {
                SendDtmfTonesOperation::from_json(value, at).map(CommsOperation::SendDtmfTones)
            }
            Some(t) if odata_type_is(t, "microsoft.graph.inviteParticipantsOperation") => {
                InviteParticipantsOperation::from_json(value, at)
                    .map(CommsOperation::InviteParticipants)
            }
            Some(t) if PLAIN_OPERATIONS.iter().any(|known| odata_type_is(t, known)) => {
                OperationDetails::from_json(value, at).map(CommsOperation::Other)
            }
            _ => Ok(CommsOperation::Unknown(value)),
        }
    }
}

impl ToJson for CommsOperation {
    fn to_json(&self) -> Value {
        match self {
            CommsOperation::PlayPrompt(o) => o.to_json(),
            CommsOperation::Record(o) => o.to_json(),
            CommsOperation::SendDtmfTones(o) => o.to_json(),
            CommsOperation::InviteParticipants(o) => o.to_json(),
            CommsOperation::Other(o) => o.to_json(),
            CommsOperation::Unknown(v) => v.clone(),
        }
    }
}

graph_type_impls!(CommsOperation);
