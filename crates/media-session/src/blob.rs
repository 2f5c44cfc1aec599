use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{BlobError, JsonType, SessionError};
use crate::ids::{ContextId, MediaSessionId};
use crate::session::{AudioFormat, MpUri};

/// The largest blob text accepted, in bytes. Real blobs are under 1 KiB.
pub const MAX_BLOB_BYTES: usize = 64 * 1024;

pub(crate) const SKYPE_MEDIA_BOTS_VERSION: &str = concat!("botmedia/", env!("CARGO_PKG_VERSION"));
pub(crate) const MEDIA_STACK_VERSION: &str = "webrtc-rs/0.21";
pub(crate) const MP_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The serialized media session configuration that a create-call or answer request carries
/// in `appHostedMediaConfig.blob`.
///
/// Keys and their order are those of the spec's sample. Keys this type does not know are
/// kept in [`Blob::extra`] and written back after the known ones.
#[derive(Clone, Debug, PartialEq)]
pub struct Blob {
    /// `mpUri`: where the service connects media.
    pub mp_uri: String,
    /// `audioRenderContexts`: one per received audio stream.
    pub audio_render_contexts: Vec<ContextId>,
    /// `videoRenderContexts`.
    pub video_render_contexts: Vec<String>,
    /// `audioSourceContexts`: one per sent audio stream.
    pub audio_source_contexts: Vec<ContextId>,
    /// `videoSourceContexts`.
    pub video_source_contexts: Vec<String>,
    /// `dataRenderContexts` (`null` when there are none).
    pub data_render_contexts: Option<Vec<String>>,
    /// `dataSourceContexts` (`null` when there are none).
    pub data_source_contexts: Option<Vec<String>>,
    /// `supportedAudioFormat`.
    pub supported_audio_format: AudioFormat,
    /// `videoSinkEncodingFormats`, kept as JSON.
    pub video_sink_encoding_formats: Vec<Value>,
    /// `mpMediaSessionId`.
    pub mp_media_session_id: MediaSessionId,
    /// `regionAffinity`.
    pub region_affinity: Option<String>,
    /// `skypeMediaBotsVersion`.
    pub skype_media_bots_version: String,
    /// `mediaStackVersion`.
    pub media_stack_version: String,
    /// `mpVersion`.
    pub mp_version: String,
    /// `callId` (`null` for a call not created yet).
    pub call_id: Option<String>,
    /// Keys this type does not know, in the order read.
    pub extra: Map<String, Value>,
}

const KEYS: [&str; 15] = [
    "mpUri",
    "audioRenderContexts",
    "videoRenderContexts",
    "audioSourceContexts",
    "videoSourceContexts",
    "dataRenderContexts",
    "dataSourceContexts",
    "supportedAudioFormat",
    "videoSinkEncodingFormats",
    "mpMediaSessionId",
    "regionAffinity",
    "skypeMediaBotsVersion",
    "mediaStackVersion",
    "mpVersion",
    "callId",
];

impl Blob {
    /// Parses a blob from its JSON text (an object, as embedded in `mediaConfig.blob`).
    ///
    /// Every key of the spec's sample must be present; `dataRenderContexts`,
    /// `dataSourceContexts`, `regionAffinity` and `callId` may be `null`. Unknown keys are
    /// kept. Errors name the missing or mistyped key.
    pub fn parse(text: &str) -> Result<Self, BlobError> {
        if text.len() > MAX_BLOB_BYTES {
            return Err(BlobError::TooLarge {
                len: text.len(),
                max: MAX_BLOB_BYTES,
            });
        }
        let value: Value = serde_json::from_str(text).map_err(syntax)?;
        Self::from_value(value)
    }

    /// Parses a blob as people paste it: a JSON object, a JSON string holding one (as in a
    /// request body), the object's text with its quotes escaped (`{\"mpUri\":...}`, as the
    /// spec prints its sample), or the whole `appHostedMediaConfig` object
    /// (`{"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": "..."}`, as
    /// `botmedia blob --media-config` prints it), whose `blob` is then read.
    pub fn parse_printed(text: &str) -> Result<Self, BlobError> {
        if text.len() > MAX_BLOB_BYTES {
            return Err(BlobError::TooLarge {
                len: text.len(),
                max: MAX_BLOB_BYTES,
            });
        }
        let trimmed = text.trim();
        let unescaped = if trimmed.starts_with('"') {
            Some(trimmed.to_owned())
        } else if trimmed.starts_with("{\\\"") {
            Some(format!("\"{trimmed}\""))
        } else {
            None
        };
        match unescaped {
            Some(literal) => {
                let inner: String = serde_json::from_str(&literal).map_err(syntax)?;
                Self::parse(&inner)
            }
            None => {
                let value: Value = serde_json::from_str(trimmed).map_err(syntax)?;
                if is_media_config(&value) {
                    Self::from_media_config(value)
                } else {
                    Self::from_value(value)
                }
            }
        }
    }

    /// The blob of a `mediaConfig` object: its `blob` string, parsed.
    fn from_media_config(value: Value) -> Result<Self, BlobError> {
        let Value::Object(mut config) = value else {
            return Err(BlobError::NotAnObject {
                found: JsonType::of(&value),
            });
        };
        match config.remove("blob") {
            Some(Value::String(blob)) => Self::parse(&blob),
            Some(other) => Err(wrong("mediaConfig.blob", "a string", &other)),
            None => Err(BlobError::MediaConfigWithoutBlob {
                odata_type: config
                    .get("@odata.type")
                    .and_then(Value::as_str)
                    .map(|t| t.chars().take(100).collect()),
            }),
        }
    }

    /// Reads a blob from an already parsed JSON value.
    pub fn from_value(value: Value) -> Result<Self, BlobError> {
        let Value::Object(mut map) = value else {
            return Err(BlobError::NotAnObject {
                found: JsonType::of(&value),
            });
        };
        let mut take = |key: &'static str| map.remove(key).ok_or(BlobError::Missing { key });
        let mp_uri = string(take("mpUri")?, "mpUri")?;
        // The same check as `MediaPlatformSettings::new`: a blob names an endpoint this
        // engine can reach, not one of another media platform (the spec's sample says
        // `net.tcp://`).
        MpUri::parse(&mp_uri).map_err(|e| match e {
            SessionError::InvalidMpUri { uri, reason } => BlobError::InvalidMpUri { uri, reason },
            other => invalid("mpUri", &other.to_string()),
        })?;
        let audio_render_contexts = contexts(take("audioRenderContexts")?, "audioRenderContexts")?;
        let video_render_contexts = strings(take("videoRenderContexts")?, "videoRenderContexts")?;
        let audio_source_contexts = contexts(take("audioSourceContexts")?, "audioSourceContexts")?;
        let video_source_contexts = strings(take("videoSourceContexts")?, "videoSourceContexts")?;
        let data_render_contexts = nullable(take("dataRenderContexts")?, |v| {
            strings(v, "dataRenderContexts")
        })?;
        let data_source_contexts = nullable(take("dataSourceContexts")?, |v| {
            strings(v, "dataSourceContexts")
        })?;
        let format_text = string(take("supportedAudioFormat")?, "supportedAudioFormat")?;
        let supported_audio_format = format_text.parse().map_err(|reason| BlobError::Invalid {
            key: "supportedAudioFormat".into(),
            reason,
        })?;
        let video_sink_encoding_formats = match take("videoSinkEncodingFormats")? {
            Value::Array(items) => items,
            other => return Err(wrong("videoSinkEncodingFormats", "an array", &other)),
        };
        let id_text = string(take("mpMediaSessionId")?, "mpMediaSessionId")?;
        let mp_media_session_id = Uuid::parse_str(&id_text)
            .map(MediaSessionId::from_uuid)
            .map_err(|_| invalid("mpMediaSessionId", "must be a UUID"))?;
        let region_affinity = nullable(take("regionAffinity")?, |v| string(v, "regionAffinity"))?;
        let skype_media_bots_version =
            string(take("skypeMediaBotsVersion")?, "skypeMediaBotsVersion")?;
        let media_stack_version = string(take("mediaStackVersion")?, "mediaStackVersion")?;
        let mp_version = string(take("mpVersion")?, "mpVersion")?;
        let call_id = nullable(take("callId")?, |v| string(v, "callId"))?;
        Ok(Self {
            mp_uri,
            audio_render_contexts,
            video_render_contexts,
            audio_source_contexts,
            video_source_contexts,
            data_render_contexts,
            data_source_contexts,
            supported_audio_format,
            video_sink_encoding_formats,
            mp_media_session_id,
            region_affinity,
            skype_media_bots_version,
            media_stack_version,
            mp_version,
            call_id,
            extra: map,
        })
    }

    /// The blob as a JSON value, keys in the spec's order, unknown keys last.
    pub fn to_value(&self) -> Value {
        fn ids(list: &[ContextId]) -> Value {
            Value::Array(list.iter().map(|c| Value::String(c.to_string())).collect())
        }
        fn texts(list: &[String]) -> Value {
            Value::Array(list.iter().cloned().map(Value::String).collect())
        }
        fn opt_texts(list: &Option<Vec<String>>) -> Value {
            list.as_deref().map_or(Value::Null, texts)
        }
        fn opt(text: &Option<String>) -> Value {
            text.clone().map_or(Value::Null, Value::String)
        }
        let values = [
            Value::String(self.mp_uri.clone()),
            ids(&self.audio_render_contexts),
            texts(&self.video_render_contexts),
            ids(&self.audio_source_contexts),
            texts(&self.video_source_contexts),
            opt_texts(&self.data_render_contexts),
            opt_texts(&self.data_source_contexts),
            Value::String(self.supported_audio_format.as_str().to_owned()),
            Value::Array(self.video_sink_encoding_formats.clone()),
            Value::String(self.mp_media_session_id.expose().to_string()),
            opt(&self.region_affinity),
            Value::String(self.skype_media_bots_version.clone()),
            Value::String(self.media_stack_version.clone()),
            Value::String(self.mp_version.clone()),
            opt(&self.call_id),
        ];
        let mut map: Map<String, Value> =
            KEYS.iter().map(|k| (*k).to_owned()).zip(values).collect();
        for (k, v) in &self.extra {
            map.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Value::Object(map)
    }

    /// The blob's compact JSON text, as embedded in `appHostedMediaConfig.blob`.
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }
}

fn syntax(source: serde_json::Error) -> BlobError {
    BlobError::Syntax {
        line: source.line(),
        column: source.column(),
        source,
    }
}

/// Whether `value` is a `mediaConfig` object rather than a blob: it names a media config
/// type, or has a `blob` and no `mpUri`.
fn is_media_config(value: &Value) -> bool {
    let Value::Object(map) = value else {
        return false;
    };
    let typed = map
        .get("@odata.type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.ends_with("MediaConfig"));
    typed || (map.contains_key("blob") && !map.contains_key("mpUri"))
}

fn wrong(key: &str, expected: &'static str, found: &Value) -> BlobError {
    BlobError::WrongType {
        key: key.to_owned(),
        expected,
        found: JsonType::of(found),
    }
}

fn invalid(key: &str, reason: &str) -> BlobError {
    BlobError::Invalid {
        key: key.to_owned(),
        reason: reason.to_owned(),
    }
}

fn string(v: Value, key: &str) -> Result<String, BlobError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(wrong(key, "a string", &other)),
    }
}

fn nullable<T>(
    v: Value,
    read: impl FnOnce(Value) -> Result<T, BlobError>,
) -> Result<Option<T>, BlobError> {
    match v {
        Value::Null => Ok(None),
        other => read(other).map(Some),
    }
}

fn strings(v: Value, key: &str) -> Result<Vec<String>, BlobError> {
    let Value::Array(items) = v else {
        return Err(wrong(key, "an array of strings", &v));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| string(item, &format!("{key}[{i}]")))
        .collect()
}

fn contexts(v: Value, key: &str) -> Result<Vec<ContextId>, BlobError> {
    let list = strings(v, key)?;
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            Uuid::parse_str(s)
                .map(ContextId::from_uuid)
                .map_err(|_| invalid(&format!("{key}[{i}]"), "must be a UUID"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's sample with an mpUri this engine serves (the spec's is `net.tcp://`).
    pub(crate) const SAMPLE: &str = r#"{"mpUri":"https://bot.contoso.com:18732/MediaProcessor","audioRenderContexts":["14778cc4-f54c-43c7-989f-9092e34ef784"],"videoRenderContexts":[],"audioSourceContexts":["a5dcfc9b-5a54-48ef-86f5-1fdd8508741a"],"videoSourceContexts":[],"dataRenderContexts":null,"dataSourceContexts":null,"supportedAudioFormat":"Pcm16K","videoSinkEncodingFormats":[],"mpMediaSessionId":"2379cf46-acf3-4fef-a914-be9627075320","regionAffinity":null,"skypeMediaBotsVersion":"1.11.1.0086","mediaStackVersion":"2018.53.1.1","mpVersion":"7.2.0.3881","callId":"1b69b141-7f1a-4033-9c34-202737190a20"}"#;

    #[test]
    fn sample_round_trips_byte_for_byte() {
        let blob = Blob::parse(SAMPLE).unwrap();
        assert_eq!(blob.to_json(), SAMPLE);
        assert_eq!(
            blob.call_id.as_deref(),
            Some("1b69b141-7f1a-4033-9c34-202737190a20")
        );
    }

    #[test]
    fn every_key_is_required_and_named() {
        for key in KEYS {
            let mut v: Value = serde_json::from_str(SAMPLE).unwrap();
            v.as_object_mut().unwrap().remove(key);
            let err = Blob::from_value(v).unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{key}`")),
                "{key}: {err}"
            );
        }
    }

    #[test]
    fn mistyped_keys_are_named() {
        for (key, bad) in [
            ("mpUri", Value::from(5)),
            ("audioRenderContexts", Value::from("x")),
            ("audioSourceContexts", serde_json::json!([1])),
            ("supportedAudioFormat", Value::from("Pcm8K")),
            ("mpMediaSessionId", Value::from("not-a-uuid")),
            ("callId", Value::from(true)),
            ("dataRenderContexts", Value::from(1)),
            ("videoSinkEncodingFormats", Value::Null),
        ] {
            let mut v: Value = serde_json::from_str(SAMPLE).unwrap();
            v[key] = bad;
            let err = Blob::from_value(v).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn unknown_keys_survive() {
        let text = SAMPLE.replacen('}', r#","futureKey":{"a":[1,2]}}"#, 1);
        let blob = Blob::parse(&text).unwrap();
        assert_eq!(blob.extra["futureKey"], serde_json::json!({"a":[1,2]}));
        assert_eq!(blob.to_json(), text);
    }

    #[test]
    fn printed_forms_parse() {
        let escaped = SAMPLE.replace('"', "\\\"");
        let quoted = serde_json::to_string(SAMPLE).unwrap();
        for form in [SAMPLE.to_owned(), escaped, quoted] {
            assert_eq!(Blob::parse_printed(&form).unwrap().to_json(), SAMPLE);
        }
    }

    #[test]
    fn malformed_text_is_refused_with_position() {
        for bad in [
            "",
            "{",
            "[1,2]",
            "null",
            "\"x\"",
            r#"{"mpUri":}"#,
            "<Media Session Configuration>",
        ] {
            let err = Blob::parse_printed(bad).unwrap_err();
            let msg = err.to_string();
            assert!(!msg.is_empty());
            if let BlobError::Syntax { line, column, .. } = err {
                assert!(line >= 1 && column <= bad.len() + 1, "{bad}: {msg}");
            }
        }
        let deep = "[".repeat(10_000);
        assert!(matches!(Blob::parse(&deep), Err(BlobError::Syntax { .. })));
        let huge = " ".repeat(MAX_BLOB_BYTES + 1);
        assert!(matches!(
            Blob::parse(&huge),
            Err(BlobError::TooLarge { .. })
        ));
    }

    #[test]
    fn mp_uri_is_checked_as_media_platform_settings_checks_it() {
        for uri in [
            "ftp://bot.contoso.com:18732/MediaProcessor",
            "net.tcp://bot.contoso.com:18732/MediaProcessor",
            "https://bot.contoso.com:0/MediaProcessor",
            "https://bot.contoso.com/Other",
            "",
        ] {
            let text = SAMPLE.replace("https://bot.contoso.com:18732/MediaProcessor", uri);
            let blob_err = Blob::parse(&text).unwrap_err();
            let settings_err = crate::MediaPlatformSettings::new(uri).unwrap_err();
            assert!(
                matches!(&blob_err, BlobError::InvalidMpUri { uri: u, .. } if u == uri),
                "{uri}: {blob_err:?}"
            );
            assert_eq!(blob_err.to_string(), settings_err.to_string(), "{uri}");
        }
        let err = Blob::parse(&SAMPLE.replace("https://bot.contoso.com:18732", "ftp://h:21"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "mpUri `ftp://h:21/MediaProcessor` is invalid: the scheme must be http or https"
        );
    }

    fn media_config(blob: &str) -> String {
        serde_json::to_string_pretty(&serde_json::json!({
            "@odata.type": "#microsoft.graph.appHostedMediaConfig",
            "blob": blob,
        }))
        .unwrap()
    }

    #[test]
    fn an_app_hosted_media_config_is_read_for_its_blob() {
        let blob = Blob::parse_printed(&media_config(SAMPLE)).unwrap();
        assert_eq!(blob.to_json(), SAMPLE);
        // Without its type, an object with a blob and no mpUri is still a media config.
        let untyped = serde_json::json!({ "blob": SAMPLE }).to_string();
        assert_eq!(Blob::parse_printed(&untyped).unwrap().to_json(), SAMPLE);
        // The blob inside is checked as any blob.
        let err = Blob::parse_printed(&media_config(r#"{"mpUri":"ftp://h/MediaProcessor"}"#))
            .unwrap_err();
        assert!(matches!(err, BlobError::InvalidMpUri { .. }), "{err:?}");
    }

    #[test]
    fn a_media_config_without_a_blob_is_refused_clearly() {
        let app = r##"{"@odata.type": "#microsoft.graph.appHostedMediaConfig"}"##;
        let err = Blob::parse_printed(app).unwrap_err();
        assert!(
            matches!(&err, BlobError::MediaConfigWithoutBlob { odata_type: Some(t) } if t == "#microsoft.graph.appHostedMediaConfig"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "the mediaConfig (#microsoft.graph.appHostedMediaConfig) has no `blob`"
        );
        let service = r##"{"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}"##;
        assert!(matches!(
            Blob::parse_printed(service),
            Err(BlobError::MediaConfigWithoutBlob { .. })
        ));
        let not_text = r##"{"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": 5}"##;
        let err = Blob::parse_printed(not_text).unwrap_err().to_string();
        assert_eq!(
            err,
            "blob key `mediaConfig.blob` must be a string, found a number"
        );
    }
}
