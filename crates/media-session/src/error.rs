use std::fmt;

/// The JSON type found where another was expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonType {
    /// `null`
    Null,
    /// `true` or `false`
    Bool,
    /// a number
    Number,
    /// a string
    String,
    /// an array
    Array,
    /// an object
    Object,
}

impl JsonType {
    pub(crate) fn of(v: &serde_json::Value) -> Self {
        use serde_json::Value;
        match v {
            Value::Null => Self::Null,
            Value::Bool(_) => Self::Bool,
            Value::Number(_) => Self::Number,
            Value::String(_) => Self::String,
            Value::Array(_) => Self::Array,
            Value::Object(_) => Self::Object,
        }
    }
}

impl fmt::Display for JsonType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Null => "null",
            Self::Bool => "a boolean",
            Self::Number => "a number",
            Self::String => "a string",
            Self::Array => "an array",
            Self::Object => "an object",
        })
    }
}

/// Why a media session blob was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// The text is not JSON.
    #[error("blob is not valid JSON at line {line}, column {column}: {source}")]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the JSON parser saw.
        #[source]
        source: serde_json::Error,
    },
    /// The text is larger than [`crate::MAX_BLOB_BYTES`].
    #[error("blob is {len} bytes, more than the {max} accepted")]
    TooLarge {
        /// Length of the input in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The JSON is not an object.
    #[error("blob must be a JSON object, found {found}")]
    NotAnObject {
        /// What was found instead.
        found: JsonType,
    },
    /// A required key is absent.
    #[error("blob is missing the key `{key}`")]
    Missing {
        /// The missing key.
        key: &'static str,
    },
    /// A key has a value of the wrong JSON type.
    #[error("blob key `{key}` must be {expected}, found {found}")]
    WrongType {
        /// The key.
        key: String,
        /// What the key must hold.
        expected: &'static str,
        /// What it holds.
        found: JsonType,
    },
    /// `mpUri` is not an endpoint this engine can reach; the same check and text as
    /// [`SessionError::InvalidMpUri`].
    #[error("mpUri `{uri}` is invalid: {reason}")]
    InvalidMpUri {
        /// The refused URI (its first 200 characters).
        uri: String,
        /// Why.
        reason: &'static str,
    },
    /// A `mediaConfig` object was given where a blob belongs, and it has no `blob` to read
    /// (a `serviceHostedMediaConfig`, or an `appHostedMediaConfig` without its blob).
    #[error("the mediaConfig{} has no `blob`", .odata_type.as_deref().map(|t| format!(" ({t})")).unwrap_or_default())]
    MediaConfigWithoutBlob {
        /// Its `@odata.type`, if it names one.
        odata_type: Option<String>,
    },
    /// A key has the right type but a value that cannot be used.
    #[error("blob key `{key}` is invalid: {reason}")]
    Invalid {
        /// The key.
        key: String,
        /// Why it is refused.
        reason: String,
    },
}

/// Why a media session could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The media platform's `mpUri` is not `http(s)://HOST:PORT/MediaProcessor`.
    #[error("mpUri `{uri}` is invalid: {reason}")]
    InvalidMpUri {
        /// The refused URI.
        uri: String,
        /// Why.
        reason: &'static str,
    },
    /// The audio format cannot be used with the stream directions asked for.
    #[error("audio format {format} is only supported for {allowed} streams, not {direction}")]
    FormatNotAllowed {
        /// The format asked for.
        format: &'static str,
        /// The direction asked for.
        direction: &'static str,
        /// The direction(s) the format allows.
        allowed: &'static str,
    },
    /// A socket with no direction enabled has nothing to negotiate.
    #[error("audio socket must send, receive or both; `inactive` has no contexts")]
    NoDirection,
    /// Unmixed meeting audio asked of a socket that does not receive, or on more streams
    /// than the platform sends.
    #[error("unmixed meeting audio on {streams} streams: {reason}")]
    UnmixedNotAllowed {
        /// The streams asked for.
        streams: u8,
        /// Why it cannot be had.
        reason: &'static str,
    },
}
