use std::fmt;
use std::str::FromStr;

use crate::blob::{Blob, MEDIA_STACK_VERSION, MP_VERSION, SKYPE_MEDIA_BOTS_VERSION};
use crate::error::SessionError;
use crate::ids::{ContextId, MediaSessionId};

/// The PCM format of the frames a bot exchanges with an audio socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AudioFormat {
    /// 16 kHz mono, 16-bit: 320 samples (640 bytes) per 20 ms frame.
    #[default]
    Pcm16K,
    /// 44.1 kHz stereo, 16-bit: 882 sample pairs per 20 ms frame. As on the anchor
    /// platform, only for sockets that send and do not receive.
    Pcm44KStereo,
}

impl AudioFormat {
    /// The name used in the blob's `supportedAudioFormat`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pcm16K => "Pcm16K",
            Self::Pcm44KStereo => "Pcm44KStereo",
        }
    }

    /// Sample rate in Hz.
    pub fn sample_rate(self) -> u32 {
        match self {
            Self::Pcm16K => 16_000,
            Self::Pcm44KStereo => 44_100,
        }
    }

    /// Interleaved channels.
    pub fn channels(self) -> u16 {
        match self {
            Self::Pcm16K => 1,
            Self::Pcm44KStereo => 2,
        }
    }

    /// Samples per channel in one 20 ms frame.
    pub fn samples_per_frame(self) -> usize {
        self.sample_rate() as usize / 50
    }

    /// Bytes in one 20 ms frame of little-endian i16 samples.
    pub fn bytes_per_frame(self) -> usize {
        self.samples_per_frame() * self.channels() as usize * 2
    }
}

impl fmt::Display for AudioFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AudioFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Pcm16K" => Ok(Self::Pcm16K),
            "Pcm44KStereo" => Ok(Self::Pcm44KStereo),
            other => Err(format!(
                "unknown audio format `{other}` (known: Pcm16K, Pcm44KStereo)"
            )),
        }
    }
}

/// Which ways audio flows through a socket, from the bot's point of view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamDirection {
    /// The bot sends and receives.
    #[default]
    SendRecv,
    /// The bot only sends.
    SendOnly,
    /// The bot only receives.
    RecvOnly,
    /// Nothing flows (refused by [`MediaSession::new`]).
    Inactive,
}

impl StreamDirection {
    /// Whether the bot receives audio (a render context exists).
    pub fn receives(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }

    /// Whether the bot sends audio (a source context exists).
    pub fn sends(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }

    /// The lower-case name used on the command line and in SDP.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }
}

impl fmt::Display for StreamDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StreamDirection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "sendrecv" => Ok(Self::SendRecv),
            "sendonly" => Ok(Self::SendOnly),
            "recvonly" => Ok(Self::RecvOnly),
            "inactive" => Ok(Self::Inactive),
            _ => Err(format!(
                "unknown stream direction `{s}` (known: sendrecv, sendonly, recvonly)"
            )),
        }
    }
}

/// Most unmixed speaker streams a session can ask for, as on the anchor platform.
pub const MAX_UNMIXED_STREAMS: u8 = 4;

/// Settings of a media session's audio socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AudioSocketSettings {
    /// Which ways audio flows.
    pub direction: StreamDirection,
    /// The PCM format of the bot's frames.
    pub format: AudioFormat,
    /// Unmixed meeting audio (the anchor's `ReceiveUnmixedMeetingAudio`): how many of the
    /// dominant speakers the service sends on streams of their own beside the mix, 0 (off)
    /// to [`MAX_UNMIXED_STREAMS`]. Each stream gets an audio render context of its own in
    /// the blob, after the mix's.
    pub unmixed_streams: u8,
}

impl AudioSocketSettings {
    /// Settings with the given direction and format, mixed audio only.
    pub fn new(direction: StreamDirection, format: AudioFormat) -> Self {
        Self {
            direction,
            format,
            unmixed_streams: 0,
        }
    }

    /// The same settings asking for unmixed meeting audio on `streams` speaker streams
    /// (the anchor's default is 4, [`MAX_UNMIXED_STREAMS`]); 0 switches it off.
    pub fn with_unmixed_meeting_audio(mut self, streams: u8) -> Self {
        self.unmixed_streams = streams;
        self
    }
}

/// The media endpoint's URI, `http(s)://HOST[:PORT][/prefix]/MediaProcessor`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MpUri(String);

impl MpUri {
    /// Checks and wraps a URI.
    pub fn parse(uri: &str) -> Result<Self, SessionError> {
        let bad = |reason| SessionError::InvalidMpUri {
            uri: uri.chars().take(200).collect(),
            reason,
        };
        if uri.starts_with("net.tcp://") {
            return Err(bad(
                "net.tcp is the scheme of Microsoft's media processors, which this engine does not speak; the scheme must be http or https",
            ));
        }
        let rest = uri
            .strip_prefix("http://")
            .or_else(|| uri.strip_prefix("https://"))
            .ok_or_else(|| bad("the scheme must be http or https"))?;
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("the path must end with /MediaProcessor"))?;
        if !path.ends_with("MediaProcessor")
            || !(path == "MediaProcessor" || path.ends_with("/MediaProcessor"))
        {
            return Err(bad("the path must end with /MediaProcessor"));
        }
        if path.contains(['?', '#', ' ']) {
            return Err(bad("the path must not hold a query, fragment or space"));
        }
        let host_end = if authority.starts_with('[') {
            authority
                .find(']')
                .map(|i| i + 1)
                .ok_or_else(|| bad("unclosed IPv6 literal"))?
        } else {
            authority.find(':').unwrap_or(authority.len())
        };
        let (host, port) = authority.split_at(host_end);
        if host.is_empty() || host.contains(['@', ' ']) {
            return Err(bad("the host is missing or malformed"));
        }
        if let Some(port) = port.strip_prefix(':') {
            match port.parse::<u16>() {
                Ok(p) if p > 0 => {}
                _ => return Err(bad("the port must be a number from 1 to 65535")),
            }
        } else if !port.is_empty() {
            return Err(bad("the host is missing or malformed"));
        }
        Ok(Self(uri.to_owned()))
    }

    /// The URI as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where the service posts its SDP offer for a session:
    /// `{mpUri}/sessions/{mpMediaSessionId}`.
    pub fn session_url(&self, id: &MediaSessionId) -> String {
        format!("{}/sessions/{}", self.0, id.expose())
    }
}

impl fmt::Debug for MpUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MpUri({})", self.0)
    }
}

impl fmt::Display for MpUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Settings of the media platform that the sessions need: where its endpoint listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaPlatformSettings {
    /// The public URI of the media endpoint.
    pub mp_uri: MpUri,
}

impl MediaPlatformSettings {
    /// Settings for an endpoint reachable at `mp_uri`.
    pub fn new(mp_uri: &str) -> Result<Self, SessionError> {
        Ok(Self {
            mp_uri: MpUri::parse(mp_uri)?,
        })
    }
}

/// One call's media session: its id, its contexts and the blob that describes it.
#[derive(Clone, Debug)]
pub struct MediaSession {
    id: MediaSessionId,
    mp_uri: MpUri,
    audio: AudioSocketSettings,
    audio_render_context: Option<ContextId>,
    /// The render contexts of the unmixed speaker streams, in stream order (1, 2, ...).
    unmixed_contexts: Vec<ContextId>,
    audio_source_context: Option<ContextId>,
    call_id: Option<String>,
}

impl MediaSession {
    /// A new session with a fresh random id and one context per enabled direction.
    ///
    /// `call_id` is the id of the call the session is for, when it is already known (an
    /// incoming call being answered); the blob then carries it.
    pub fn new(
        platform: &MediaPlatformSettings,
        audio: &AudioSocketSettings,
        call_id: Option<&str>,
    ) -> Result<Self, SessionError> {
        if audio.direction == StreamDirection::Inactive {
            return Err(SessionError::NoDirection);
        }
        if audio.format == AudioFormat::Pcm44KStereo && audio.direction != StreamDirection::SendOnly
        {
            return Err(SessionError::FormatNotAllowed {
                format: audio.format.as_str(),
                direction: audio.direction.as_str(),
                allowed: "sendonly",
            });
        }
        if audio.unmixed_streams > MAX_UNMIXED_STREAMS {
            return Err(SessionError::UnmixedNotAllowed {
                streams: audio.unmixed_streams,
                reason: "the most is 4",
            });
        }
        if audio.unmixed_streams > 0 && !audio.direction.receives() {
            return Err(SessionError::UnmixedNotAllowed {
                streams: audio.unmixed_streams,
                reason: "the socket does not receive",
            });
        }
        Ok(Self {
            id: MediaSessionId::random(),
            mp_uri: platform.mp_uri.clone(),
            audio: *audio,
            audio_render_context: audio.direction.receives().then(ContextId::random),
            unmixed_contexts: (0..audio.unmixed_streams)
                .map(|_| ContextId::random())
                .collect(),
            audio_source_context: audio.direction.sends().then(ContextId::random),
            call_id: call_id.map(str::to_owned),
        })
    }

    /// The session's id.
    pub fn id(&self) -> &MediaSessionId {
        &self.id
    }

    /// The endpoint URI the blob names.
    pub fn mp_uri(&self) -> &MpUri {
        &self.mp_uri
    }

    /// The audio socket's settings.
    pub fn audio_socket(&self) -> &AudioSocketSettings {
        &self.audio
    }

    /// The context of the audio the bot receives, if it receives.
    pub fn audio_render_context(&self) -> Option<ContextId> {
        self.audio_render_context
    }

    /// The render contexts of the unmixed speaker streams, in stream order: the `a=msid`
    /// track ids of the service's speaker streams. Empty unless unmixed audio was asked for.
    pub fn unmixed_contexts(&self) -> &[ContextId] {
        &self.unmixed_contexts
    }

    /// The context of the audio the bot sends, if it sends.
    pub fn audio_source_context(&self) -> Option<ContextId> {
        self.audio_source_context
    }

    /// The call id the blob carries, if any.
    pub fn call_id(&self) -> Option<&str> {
        self.call_id.as_deref()
    }

    /// The blob describing this session.
    pub fn blob(&self) -> Blob {
        Blob {
            mp_uri: self.mp_uri.as_str().to_owned(),
            // The mix first, then one per unmixed speaker stream.
            audio_render_contexts: self
                .audio_render_context
                .into_iter()
                .chain(self.unmixed_contexts.iter().copied())
                .collect(),
            video_render_contexts: Vec::new(),
            audio_source_contexts: self.audio_source_context.into_iter().collect(),
            video_source_contexts: Vec::new(),
            data_render_contexts: None,
            data_source_contexts: None,
            supported_audio_format: self.audio.format,
            video_sink_encoding_formats: Vec::new(),
            mp_media_session_id: self.id,
            region_affinity: None,
            skype_media_bots_version: SKYPE_MEDIA_BOTS_VERSION.to_owned(),
            media_stack_version: MEDIA_STACK_VERSION.to_owned(),
            mp_version: MP_VERSION.to_owned(),
            call_id: self.call_id.clone(),
            extra: serde_json::Map::new(),
        }
    }

    /// The `mediaConfig` of a create-call or answer request for this session: an
    /// `appHostedMediaConfig` whose `blob` is the blob's JSON as a string.
    pub fn app_hosted_media_config(&self) -> serde_json::Value {
        serde_json::json!({
            "@odata.type": "#microsoft.graph.appHostedMediaConfig",
            "blob": self.blob().to_json(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform() -> MediaPlatformSettings {
        MediaPlatformSettings::new("https://bot.example.com:8445/MediaProcessor").unwrap()
    }

    #[test]
    fn contexts_follow_directions() {
        for (dir, render, source) in [
            (StreamDirection::SendRecv, true, true),
            (StreamDirection::SendOnly, false, true),
            (StreamDirection::RecvOnly, true, false),
        ] {
            let s = MediaSession::new(
                &platform(),
                &AudioSocketSettings::new(dir, AudioFormat::Pcm16K),
                None,
            )
            .unwrap();
            let blob = s.blob();
            assert_eq!(
                blob.audio_render_contexts.len(),
                usize::from(render),
                "{dir}"
            );
            assert_eq!(
                blob.audio_source_contexts.len(),
                usize::from(source),
                "{dir}"
            );
            assert_eq!(s.audio_render_context().is_some(), render);
            assert_eq!(s.audio_source_context().is_some(), source);
        }
    }

    #[test]
    fn unmixed_streams_get_render_contexts_after_the_mix() {
        let audio = AudioSocketSettings::new(StreamDirection::SendRecv, AudioFormat::Pcm16K)
            .with_unmixed_meeting_audio(4);
        let s = MediaSession::new(&platform(), &audio, None).unwrap();
        let blob = s.blob();
        assert_eq!(blob.audio_render_contexts.len(), 5);
        assert_eq!(
            Some(blob.audio_render_contexts[0]),
            s.audio_render_context()
        );
        assert_eq!(&blob.audio_render_contexts[1..], s.unmixed_contexts());
        // Read back from its JSON, the blob names the same streams in the same order.
        let parsed = crate::Blob::parse(&blob.to_json()).unwrap();
        assert_eq!(parsed.audio_render_contexts, blob.audio_render_contexts);

        let too_many = audio.with_unmixed_meeting_audio(5);
        let err = MediaSession::new(&platform(), &too_many, None).unwrap_err();
        assert!(err.to_string().contains("the most is 4"), "{err}");
        let send_only = AudioSocketSettings::new(StreamDirection::SendOnly, AudioFormat::Pcm16K)
            .with_unmixed_meeting_audio(2);
        let err = MediaSession::new(&platform(), &send_only, None).unwrap_err();
        assert!(err.to_string().contains("does not receive"), "{err}");
    }

    #[test]
    fn inactive_and_stereo_receive_are_refused() {
        let inactive = AudioSocketSettings::new(StreamDirection::Inactive, AudioFormat::Pcm16K);
        assert_eq!(
            MediaSession::new(&platform(), &inactive, None).unwrap_err(),
            SessionError::NoDirection
        );
        let stereo = AudioSocketSettings::new(StreamDirection::SendRecv, AudioFormat::Pcm44KStereo);
        let err = MediaSession::new(&platform(), &stereo, None).unwrap_err();
        assert!(err.to_string().contains("Pcm44KStereo"), "{err}");
        let send = AudioSocketSettings::new(StreamDirection::SendOnly, AudioFormat::Pcm44KStereo);
        assert_eq!(
            MediaSession::new(&platform(), &send, None)
                .unwrap()
                .blob()
                .supported_audio_format,
            AudioFormat::Pcm44KStereo
        );
    }

    #[test]
    fn mp_uri_checks() {
        for ok in [
            "http://127.0.0.1:8445/MediaProcessor",
            "https://bot.contoso.com/MediaProcessor",
            "https://[::1]:9000/media/MediaProcessor",
        ] {
            MpUri::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "net.tcp://bot.contoso.com:18732/MediaProcessor",
            "http://:80/MediaProcessor",
            "http://host:0/MediaProcessor",
            "http://host:99999/MediaProcessor",
            "http://host:80/Other",
            "http://host:80",
            "http://host:80/XMediaProcessor",
            "http://[::1/MediaProcessor",
            "",
        ] {
            assert!(MpUri::parse(bad).is_err(), "{bad}");
        }
        let p = platform();
        let id = MediaSessionId::random();
        assert_eq!(
            p.mp_uri.session_url(&id),
            format!(
                "https://bot.example.com:8445/MediaProcessor/sessions/{}",
                id.expose()
            )
        );
    }

    #[test]
    fn app_hosted_config_embeds_blob_as_string() {
        let s = MediaSession::new(&platform(), &AudioSocketSettings::default(), Some("call-1"))
            .unwrap();
        let cfg = s.app_hosted_media_config();
        assert_eq!(cfg["@odata.type"], "#microsoft.graph.appHostedMediaConfig");
        let blob = Blob::parse(cfg["blob"].as_str().unwrap()).unwrap();
        assert_eq!(blob.call_id.as_deref(), Some("call-1"));
        assert_eq!(blob.mp_media_session_id, *s.id());
    }
}
