//! The Microsoft Graph (beta) calling resources: `call` and everything it references, the
//! participants, operations and the notifications that carry them.
//!
//! Every object keeps the properties it does not know in `extra` and tells an absent property
//! from an explicit `null` ([`Field`]), so parse-then-serialize gives back the same JSON value.
//! `@odata.type` is kept as read on every object; polymorphic properties ([`MediaConfig`],
//! [`MeetingInfo`], [`CommsOperation`], [`ResourceData`]) dispatch on it, with an `Unknown`
//! variant that keeps an object of a type this model does not know.

pub(crate) mod core;

mod call;
mod enums;
mod identity;
mod media;
mod meeting;
mod notification;
mod operation;
mod participant;

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use self::call::{
    Call, CallMediaState, CallOptions, CallRoute, CallTranscriptionInfo, IncomingContext,
    ResultCode, ResultInfo, ToneInfo,
};
pub use self::core::Field;
pub use self::enums::{
    AutoAdmittedUsersType, CallDirection, CallState, CallTranscriptionState, ChangeType,
    EndpointType, MediaDirection, MediaState, Modality, OnlineMeetingContentSharingDisabledReason,
    OnlineMeetingVideoDisabledReason, OperationStatus, PlayPromptCompletionReason,
    RecordCompletionReason, RecordingStatus, RoutingPolicy, RoutingType, SendDtmfCompletionReason,
    Tone,
};
pub use self::identity::{Identity, IdentityId, IdentityKind, IdentityRole, IdentitySet};
pub use self::media::{
    AppHostedMediaConfig, BlobText, MediaConfig, MediaInfo, MediaStream, ServiceHostedMediaConfig,
};
pub use self::meeting::{
    ChatInfo, JoinMeetingIdMeetingInfo, MeetingCapability, MeetingInfo, OrganizerMeetingInfo,
    Secret, TokenMeetingInfo,
};
pub use self::notification::{CommsNotification, CommsNotifications, ResourceData};
pub use self::operation::{
    CommsOperation, InviteParticipantsOperation, OperationDetails, PlayPromptOperation,
    RecordOperation, SendDtmfTonesOperation,
};
pub use self::participant::{
    InvitationParticipantInfo, OnlineMeetingRestricted, Participant, ParticipantInfo,
    RecordingInfo, RemovedState,
};

/// A type of this model: converts from and to a JSON value and round-trips through it.
///
/// Implemented by every model type (sealed). [`crate::parse`] is generic over it.
pub trait GraphType: self::core::Sealed + Serialize + DeserializeOwned + Sized {
    /// Converts a JSON value; a mistyped property is reported with its path.
    fn from_json_value(value: Value) -> Result<Self, ModelError>;

    /// The JSON form: known properties in the model's order, then the unknown ones.
    fn to_json_value(&self) -> Value;
}

/// A JSON value that does not fit the model: a property of the wrong type or out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A property has the wrong JSON type.
    #[error("`{path}` must be {expected}, found {found}")]
    WrongType {
        /// JSON path of the property (`targets[0].identity`); empty for the document root.
        path: PathText,
        /// What the model expects there.
        expected: &'static str,
        /// The JSON kind found instead.
        found: &'static str,
    },
    /// A number does not fit the property's range.
    #[error("`{path}` must be {expected}")]
    OutOfRange {
        /// JSON path of the property.
        path: PathText,
        /// The range the model expects.
        expected: &'static str,
    },
}

impl ModelError {
    pub(crate) fn wrong_type(
        at: &self::core::Path<'_>,
        expected: &'static str,
        found: &Value,
    ) -> Self {
        ModelError::WrongType {
            path: PathText(at.render()),
            expected,
            found: self::core::kind_of(found),
        }
    }

    pub(crate) fn out_of_range(at: &self::core::Path<'_>, expected: &'static str) -> Self {
        ModelError::OutOfRange {
            path: PathText(at.render()),
            expected,
        }
    }

    /// The JSON path of the offending property.
    pub fn path(&self) -> &str {
        match self {
            ModelError::WrongType { path, .. } | ModelError::OutOfRange { path, .. } => &path.0,
        }
    }
}

/// A rendered JSON path such as `targets[0].identity.phone.id` (empty: the document root).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PathText(pub String);

impl PathText {
    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PathText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(document root)")
        } else {
            f.write_str(&self.0)
        }
    }
}

impl From<String> for PathText {
    fn from(value: String) -> Self {
        PathText(value)
    }
}

impl From<&str> for PathText {
    fn from(value: &str) -> Self {
        PathText(value.to_owned())
    }
}
