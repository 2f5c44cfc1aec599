//! Graph's error envelope, and the reasons a create-call request is refused.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::model::{IdentityRole, PathText};
use crate::parse::ParseError;
use crate::permissions::{Permission, PermissionRequirement};

/// Why a create-call request is refused; every variant names the offending property by its
/// JSON path (`targets[0].identity.phone.id`).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// A required property is absent or `null`.
    #[error("'{path}' is required{context}")]
    Missing {
        /// The property.
        path: PathText,
        /// Why it is required here (for example " to place a PSTN call"); may be empty.
        context: &'static str,
    },
    /// A string or list that must not be empty is.
    #[error("'{path}' must not be empty")]
    Empty {
        /// The property.
        path: PathText,
    },
    /// A property that this kind of request must not have.
    #[error("'{path}' is not allowed {context}")]
    NotAllowed {
        /// The property.
        path: PathText,
        /// When it is refused (for example "when joining a meeting").
        context: &'static str,
    },
    /// An `@odata.type` that does not fit the property.
    #[error("'{path}' is {found:?}, expected {expected}")]
    WrongODataType {
        /// The `@odata.type` property.
        path: PathText,
        /// The type(s) allowed.
        expected: &'static str,
        /// The type found.
        found: String,
    },
    /// A value outside the allowed set.
    #[error("'{path}' is {found:?}, expected {expected}")]
    UnsupportedValue {
        /// The property.
        path: PathText,
        /// What is allowed.
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// A URI that is not acceptable.
    #[error("'{path}' is not a valid callback URI: {problem}")]
    InvalidUri {
        /// The property.
        path: PathText,
        /// What is wrong with it.
        problem: UriProblem,
    },
    /// More targets than the scenario allows.
    #[error("'{path}' has {found} entries; at most {max} are allowed {context}")]
    TooManyTargets {
        /// The property (`targets`).
        path: PathText,
        /// The limit.
        max: usize,
        /// How many were given.
        found: usize,
        /// The scenario ("in a group call").
        context: &'static str,
    },
    /// An identity set with no identity in it.
    #[error("'{path}' contains no identity")]
    NoIdentity {
        /// The identity set.
        path: PathText,
    },
    /// An identity of the wrong kind for the scenario.
    #[error("'{path}' must contain {expected:?} identity {context}")]
    WrongIdentity {
        /// The identity set.
        path: PathText,
        /// The role required.
        expected: IdentityRole,
        /// The scenario.
        context: &'static str,
    },
    /// A phone id that is not E.164. The number itself is not repeated (personal data).
    #[error("'{path}' is not an E.164 phone number ('+' followed by 1 to 15 digits)")]
    InvalidPhoneNumber {
        /// The property.
        path: PathText,
    },
    /// The media session blob of an app-hosted call cannot be parsed.
    #[error("'{path}' is not a media session configuration: {source}")]
    InvalidBlob {
        /// The property (`mediaConfig.blob`).
        path: PathText,
        /// What the blob parser said.
        #[source]
        source: Arc<media_session::BlobError>,
    },
    /// The blob is the documentation's placeholder, not a configuration.
    #[error(
        "'{path}' holds the documentation placeholder {found:?}; put the serialized media \
         session configuration there"
    )]
    BlobPlaceholder {
        /// The property (`mediaConfig.blob`).
        path: PathText,
        /// The placeholder.
        found: String,
    },
}

impl RequestError {
    /// The JSON path of the offending property.
    pub fn path(&self) -> &str {
        match self {
            RequestError::Missing { path, .. }
            | RequestError::Empty { path }
            | RequestError::NotAllowed { path, .. }
            | RequestError::WrongODataType { path, .. }
            | RequestError::UnsupportedValue { path, .. }
            | RequestError::InvalidUri { path, .. }
            | RequestError::TooManyTargets { path, .. }
            | RequestError::NoIdentity { path }
            | RequestError::WrongIdentity { path, .. }
            | RequestError::InvalidPhoneNumber { path }
            | RequestError::InvalidBlob { path, .. }
            | RequestError::BlobPlaceholder { path, .. } => path.as_str(),
        }
    }
}

/// What is wrong with a URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriProblem {
    /// Not an absolute URI (`scheme://host...`).
    #[error("it is not an absolute URI")]
    NotAbsolute,
    /// A scheme other than https (or http to a loopback host).
    #[error("the scheme must be https")]
    UnsupportedScheme,
    /// `http` to a host that is not loopback.
    #[error("http is only allowed to a loopback host (localhost, 127.0.0.0/8, [::1]); use https")]
    InsecureHttp,
    /// No host.
    #[error("it has no host")]
    MissingHost,
    /// A port that is not a number in 1..=65535.
    #[error("its port is invalid")]
    InvalidPort,
    /// Whitespace or control characters.
    #[error("it contains whitespace or control characters")]
    InvalidCharacter,
}

/// Why the service answers with an error.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ErrorReason {
    /// The body is not acceptable JSON, or does not fit the `call` resource.
    Malformed(ParseError),
    /// The request is well formed but not valid for the API.
    Invalid(RequestError),
    /// The caller lacks permissions.
    Forbidden {
        /// What the request needs.
        required: PermissionRequirement,
        /// What the caller lacks.
        missing: Vec<Permission>,
    },
}

impl fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorReason::Malformed(ParseError::Model(e)) => {
                write!(f, "The request body does not fit the call resource: {e}")
            }
            ErrorReason::Malformed(e) => write!(f, "The request body is not valid JSON: {e}"),
            ErrorReason::Invalid(e) => write!(f, "Invalid request: {e}"),
            ErrorReason::Forbidden { required, .. } => {
                write!(f, "Insufficient permissions: this request needs {required}")
            }
        }
    }
}

/// An error as Graph returns it: an HTTP status and the envelope
/// `{"error":{"code","message","innerError":{"request-id","date","client-request-id"}}}`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct GraphError {
    /// Why (boxed: errors travel in `Result`s and should stay small).
    pub reason: Box<ErrorReason>,
    /// `innerError.request-id`.
    pub request_id: Uuid,
    /// `innerError.date` (UTC).
    pub date: OffsetDateTime,
    /// `innerError.client-request-id`, echoed from the request's header when it had one.
    pub client_request_id: Option<String>,
}

impl GraphError {
    /// A new error with a fresh request id, dated now.
    pub fn new(reason: ErrorReason) -> Self {
        let now = OffsetDateTime::now_utc();
        GraphError {
            reason: Box::new(reason),
            request_id: Uuid::new_v4(),
            // Graph dates its errors to the second.
            date: now.replace_nanosecond(0).unwrap_or(now),
            client_request_id: None,
        }
    }

    /// Echoes the caller's `client-request-id`.
    pub fn with_client_request_id(mut self, id: impl Into<String>) -> Self {
        self.client_request_id = Some(id.into());
        self
    }

    /// HTTP status: 400 for malformed or invalid requests, 413 for an oversized body, 403 for
    /// missing permissions.
    pub fn status(&self) -> u16 {
        match &*self.reason {
            ErrorReason::Malformed(ParseError::TooLarge { .. }) => 413,
            ErrorReason::Malformed(_) | ErrorReason::Invalid(_) => 400,
            ErrorReason::Forbidden { .. } => 403,
        }
    }

    /// `error.code`.
    pub fn code(&self) -> &'static str {
        match &*self.reason {
            ErrorReason::Malformed(ParseError::TooLarge { .. }) => "RequestEntityTooLarge",
            ErrorReason::Malformed(_) | ErrorReason::Invalid(_) => "BadRequest",
            ErrorReason::Forbidden { .. } => "Forbidden",
        }
    }

    /// `error.message`: names the offending property, or the line and column of a syntax
    /// error.
    pub fn message(&self) -> String {
        self.reason.to_string()
    }

    /// The JSON path of the offending property, when there is one.
    pub fn property(&self) -> Option<&str> {
        match &*self.reason {
            ErrorReason::Invalid(e) => Some(e.path()),
            ErrorReason::Malformed(e) => e.path(),
            ErrorReason::Forbidden { .. } => None,
        }
    }

    /// The envelope as a JSON value.
    pub fn to_json(&self) -> Value {
        let date = self
            .date
            .format(&Rfc3339)
            .unwrap_or_else(|_| self.date.unix_timestamp().to_string());
        let mut inner = Map::new();
        inner.insert(
            "request-id".into(),
            Value::String(self.request_id.to_string()),
        );
        inner.insert("date".into(), Value::String(date));
        inner.insert(
            "client-request-id".into(),
            self.client_request_id
                .clone()
                .map_or(Value::Null, Value::String),
        );
        json!({
            "error": {
                "code": self.code(),
                "message": self.message(),
                "innerError": inner,
            }
        })
    }
}

impl From<ParseError> for GraphError {
    fn from(value: ParseError) -> Self {
        GraphError::new(ErrorReason::Malformed(value))
    }
}

impl From<RequestError> for GraphError {
    fn from(value: RequestError) -> Self {
        GraphError::new(ErrorReason::Invalid(value))
    }
}

impl serde::Serialize for GraphError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}
