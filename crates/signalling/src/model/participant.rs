//! `participantInfo`, `invitationParticipantInfo`, `participant` and what a participant
//! references.

use crate::model::core::graph_object;
use crate::model::{
    EndpointType, IdentitySet, MediaStream, OnlineMeetingContentSharingDisabledReason,
    OnlineMeetingVideoDisabledReason, RecordingStatus,
};

graph_object! {
    /// `participantInfo`: who a participant is and where it calls from.
    pub struct ParticipantInfo {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// The participant's identities.
        "identity" => identity: IdentitySet,
        /// ISO 3166-1 country code of the participant's location.
        "countryCode" => country_code: String,
        /// The kind of endpoint.
        "endpointType" => endpoint_type: EndpointType,
        /// Language culture (`en-US`).
        "languageId" => language_id: String,
        /// Media region of the participant.
        "region" => region: String,
        /// The participant id.
        "participantId" => participant_id: String,
        /// Platform id of the participant's client.
        "platformId" => platform_id: String,
        /// The identity before anonymization.
        "nonAnonymizedIdentity" => non_anonymized_identity: IdentitySet,
    }
}

graph_object! {
    /// `invitationParticipantInfo`: someone invited into a call (a call's `targets`).
    pub struct InvitationParticipantInfo {
        /// `@odata.type`, as read (`#microsoft.graph.invitationParticipantInfo`; some requests
        /// send `#microsoft.graph.participantInfo`).
        "@odata.type" => odata_type: String,
        /// Who is invited.
        "identity" => identity: IdentitySet,
        /// The kind of endpoint.
        "endpointType" => endpoint_type: EndpointType,
        /// Hide the participant from the roster.
        "hidden" => hidden: bool,
        /// The participant id.
        "participantId" => participant_id: String,
        /// Remove from the default audio routing group.
        "removeFromDefaultAudioRoutingGroup" => remove_from_default_audio_routing_group: bool,
        /// The call this invitation replaces (consultative transfer).
        "replacesCallId" => replaces_call_id: String,
        /// Media region (seen in responses).
        "region" => region: String,
        /// Language culture (seen in responses).
        "languageId" => language_id: String,
    }
}

graph_object! {
    /// `recordingInfo`: whether and by whom a participant is recorded.
    pub struct RecordingInfo {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// Who started the recording.
        "initiatedBy" => initiated_by: crate::model::ParticipantInfo,
        /// Who started the recording (identity form).
        "initiator" => initiator: IdentitySet,
        /// Recording status.
        "recordingStatus" => recording_status: RecordingStatus,
    }
}

graph_object! {
    /// `removedState`: why a participant left.
    pub struct RemovedState {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// The reason.
        "reason" => reason: String,
    }
}

graph_object! {
    /// `onlineMeetingRestricted`: media the participant is restricted from.
    pub struct OnlineMeetingRestricted {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// Why content sharing is disabled.
        "contentSharingDisabled" => content_sharing_disabled: OnlineMeetingContentSharingDisabledReason,
        /// Why video is disabled.
        "videoDisabled" => video_disabled: OnlineMeetingVideoDisabledReason,
    }
}

graph_object! {
    /// `participant`: a member of a call's roster.
    pub struct Participant {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// The participant id.
        "id" => id: String,
        /// Who the participant is.
        "info" => info: ParticipantInfo,
        /// Waiting in the lobby.
        "isInLobby" => is_in_lobby: bool,
        /// Muted (client or server).
        "isMuted" => is_muted: bool,
        /// The participant's media streams.
        "mediaStreams" => media_streams: Vec<MediaStream>,
        /// Opaque metadata.
        "metadata" => metadata: String,
        /// Recording state.
        "recordingInfo" => recording_info: RecordingInfo,
        /// Why the participant left.
        "removedState" => removed_state: RemovedState,
        /// Restrictions in the meeting.
        "restrictedExperience" => restricted_experience: OnlineMeetingRestricted,
        /// Roster sequence number, to order roster updates.
        "rosterSequenceNumber" => roster_sequence_number: i64,
        /// Display name chosen by the participant.
        "preferredDisplayName" => preferred_display_name: String,
        /// Whether the identity is anonymized.
        "isIdentityAnonymized" => is_identity_anonymized: bool,
    }
}
