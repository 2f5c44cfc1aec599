//! `mediaConfig` (app-hosted and service-hosted), `mediaInfo` and `mediaStream`.

use std::fmt;

use serde_json::Value;

use crate::model::core::{
    FromJson, Path, ToJson, graph_object, graph_type_impls, odata_type_is, odata_type_of,
};
use crate::model::{MediaDirection, Modality, ModelError};

/// The serialized media session configuration of an app-hosted call (a JSON document carried
/// as a string). It names the media session id, a capability: `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct BlobText(pub String);

impl BlobText {
    /// The blob as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BlobText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobText(<{} bytes>)", self.0.len())
    }
}

impl FromJson for BlobText {
    fn from_json(value: Value, at: &Path<'_>) -> Result<Self, ModelError> {
        String::from_json(value, at).map(BlobText)
    }
}

impl ToJson for BlobText {
    fn to_json(&self) -> Value {
        Value::String(self.0.clone())
    }
}

graph_object! {
    /// `appHostedMediaConfig`: the bot hosts the media itself.
    pub struct AppHostedMediaConfig {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// The media session configuration.
        "blob" => blob: BlobText,
        /// Keep the bot out of the default audio routing group.
        "removeFromDefaultAudioGroup" => remove_from_default_audio_group: bool,
    }
}

graph_object! {
    /// `serviceHostedMediaConfig`: the service hosts the media (prompts, recording, DTMF).
    pub struct ServiceHostedMediaConfig {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// Prompts to fetch before they are played.
        "preFetchMedia" => pre_fetch_media: Vec<MediaInfo>,
        /// Keep the bot out of the default audio routing group.
        "removeFromDefaultAudioGroup" => remove_from_default_audio_group: bool,
    }
}

graph_object! {
    /// `mediaInfo`: a media file the service can play.
    pub struct MediaInfo {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// Where the file is.
        "uri" => uri: String,
        /// An id the bot chooses, to cache the file.
        "resourceId" => resource_id: String,
    }
}

graph_object! {
    /// `mediaStream`: one stream of a participant.
    pub struct MediaStream {
        /// `@odata.type`, as read.
        "@odata.type" => odata_type: String,
        /// Direction.
        "direction" => direction: MediaDirection,
        /// Label.
        "label" => label: String,
        /// Media type.
        "mediaType" => media_type: Modality,
        /// Muted by the server.
        "serverMuted" => server_muted: bool,
        /// Source id (the CSRC of the participant's audio in a mixed stream).
        "sourceId" => source_id: String,
    }
}

/// `mediaConfig`, dispatched on `@odata.type`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MediaConfig {
    /// `#microsoft.graph.appHostedMediaConfig`.
    AppHosted(AppHostedMediaConfig),
    /// `#microsoft.graph.serviceHostedMediaConfig`.
    ServiceHosted(ServiceHostedMediaConfig),
    /// An object with another or no `@odata.type`, kept as read.
    Unknown(Value),
}

/// `@odata.type` of app-hosted media configuration.
pub(crate) const APP_HOSTED: &str = "microsoft.graph.appHostedMediaConfig";
/// `@odata.type` of service-hosted media configuration.
pub(crate) const SERVICE_HOSTED: &str = "microsoft.graph.serviceHostedMediaConfig";

impl FromJson for MediaConfig {
    fn from_json(value: Value, at: &Path<'_>) -> Result<Self, ModelError> {
        let Value::Object(map) = &value else {
            return Err(ModelError::wrong_type(at, "an object", &value));
        };
        match odata_type_of(map) {
            Some(t) if odata_type_is(t, APP_HOSTED) => {
                AppHostedMediaConfig::from_json(value, at).map(MediaConfig::AppHosted)
            }
            Some(t) if odata_type_is(t, SERVICE_HOSTED) => {
                ServiceHostedMediaConfig::from_json(value, at).map(MediaConfig::ServiceHosted)
            }
            _ => Ok(MediaConfig::Unknown(value)),
        }
    }
}

impl ToJson for MediaConfig {
    fn to_json(&self) -> Value {
        match self {
            MediaConfig::AppHosted(c) => c.to_json(),
            MediaConfig::ServiceHosted(c) => c.to_json(),
            MediaConfig::Unknown(v) => v.clone(),
        }
    }
}

graph_type_impls!(MediaConfig);

impl MediaConfig {
    /// App-hosted media with `blob`, typed `#microsoft.graph.appHostedMediaConfig`.
    pub fn app_hosted(blob: String) -> Self {
        MediaConfig::AppHosted(AppHostedMediaConfig {
            odata_type: format!("#{APP_HOSTED}").into(),
            blob: BlobText(blob).into(),
            ..AppHostedMediaConfig::default()
        })
    }

    /// Service-hosted media, typed `#microsoft.graph.serviceHostedMediaConfig`.
    pub fn service_hosted() -> Self {
        MediaConfig::ServiceHosted(ServiceHostedMediaConfig {
            odata_type: format!("#{SERVICE_HOSTED}").into(),
            ..ServiceHostedMediaConfig::default()
        })
    }
}
