//! The calling API's endpoints, one method each.

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::client::{Answer, ApiError, GraphClient, segment};
use crate::ids::{CallId, ParticipantId};
use crate::model::{
    Call, CommsOperation, GraphType, InvitationParticipantInfo, MediaConfig, MediaInfo, Modality,
    Participant, ParticipantInfo, RecordingStatus, Tone,
};

/// A call the service accepted to create.
#[derive(Debug, Clone)]
pub struct CreatedCall {
    /// The call as the service returned it.
    pub call: Call,
    /// Its id.
    pub id: CallId,
    /// The `Location` header: the call's URL.
    pub location: String,
}

/// Why the bot rejects an incoming call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// No reason given.
    None,
    /// The bot is busy.
    Busy,
    /// The caller is not allowed.
    Forbidden,
}

impl RejectReason {
    /// Graph's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::None => "none",
            RejectReason::Busy => "busy",
            RejectReason::Forbidden => "forbidden",
        }
    }
}

/// The bot's role in screen sharing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScreenSharingRole {
    /// Watches.
    Viewer,
    /// Shares.
    Sharer,
}

impl ScreenSharingRole {
    /// Graph's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ScreenSharingRole::Viewer => "viewer",
            ScreenSharingRole::Sharer => "sharer",
        }
    }
}

/// A prompt of service-hosted media: a WAV file (mono, 16-bit, 16 kHz) the service plays.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// The file.
    pub media: MediaInfo,
}

impl Prompt {
    /// A prompt playing the file at `uri`, cached by the service under `resource_id`.
    pub fn new(uri: impl Into<String>, resource_id: impl Into<String>) -> Self {
        Prompt {
            media: MediaInfo {
                odata_type: "#microsoft.graph.mediaInfo".to_owned().into(),
                uri: uri.into().into(),
                resource_id: resource_id.into().into(),
                ..MediaInfo::default()
            },
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "@odata.type": "#microsoft.graph.mediaPrompt",
            "mediaInfo": self.media.to_json_value(),
        })
    }
}

/// How to answer an incoming call.
#[derive(Debug, Clone)]
pub struct AnswerOptions {
    /// Where the service sends this call's notifications.
    pub callback_uri: String,
    /// Who hosts the media (app-hosted: the media session's blob).
    pub media_config: MediaConfig,
    /// Modalities accepted.
    pub accepted_modalities: Vec<Modality>,
    /// How many concurrent calls of this kind the bot takes (policy-based recording).
    pub participant_capacity: Option<u32>,
}

impl AnswerOptions {
    /// Audio, with `media_config`.
    pub fn new(callback_uri: impl Into<String>, media_config: MediaConfig) -> Self {
        AnswerOptions {
            callback_uri: callback_uri.into(),
            media_config,
            accepted_modalities: vec![Modality::Audio],
            participant_capacity: None,
        }
    }

    /// App-hosted media with `session`'s blob.
    pub fn app_hosted(
        callback_uri: impl Into<String>,
        session: &media_session::MediaSession,
    ) -> Self {
        Self::new(callback_uri, crate::calls::media_config_of(session))
    }
}

/// `recordResponse` settings.
#[derive(Debug, Clone, Default)]
pub struct RecordOptions {
    /// Prompts played before recording.
    pub prompts: Vec<Prompt>,
    /// Whether speaking interrupts the prompt.
    pub barge_in_allowed: Option<bool>,
    /// Seconds of silence at the start before giving up.
    pub initial_silence_timeout_in_seconds: Option<u32>,
    /// Seconds of silence that end the recording.
    pub max_silence_timeout_in_seconds: Option<u32>,
    /// Longest recording, seconds.
    pub max_record_duration_in_seconds: Option<u32>,
    /// Beep before recording.
    pub play_beep: Option<bool>,
    /// Tones that end the recording.
    pub stop_tones: Vec<Tone>,
    /// Echoed back in the operation.
    pub client_context: Option<String>,
}

fn operation(answer: Answer) -> Result<Option<CommsOperation>, ApiError> {
    let status = answer.status.as_u16();
    answer
        .body
        .map(|b| {
            CommsOperation::from_json_value(b).map_err(|_| ApiError::BadResponse {
                status,
                problem: "the body is not a commsOperation",
            })
        })
        .transpose()
}

fn with_context(mut body: Map<String, Value>, client_context: Option<&str>) -> Value {
    if let Some(c) = client_context {
        body.insert("clientContext".into(), Value::String(c.to_owned()));
    }
    Value::Object(body)
}

fn non_empty<T>(name: &'static str, items: &[T]) -> Result<(), ApiError> {
    if items.is_empty() {
        Err(ApiError::InvalidArgument {
            name,
            problem: "the list is empty",
        })
    } else {
        Ok(())
    }
}

impl GraphClient {
    fn call_path(call: &CallId) -> Result<String, ApiError> {
        Ok(format!(
            "/communications/calls/{}",
            segment("call id", call.as_str())?
        ))
    }

    async fn action(
        &self,
        call: &CallId,
        action: &str,
        body: &Value,
    ) -> Result<Option<CommsOperation>, ApiError> {
        let path = format!("{}/{action}", Self::call_path(call)?);
        operation(self.send(Method::POST, &path, Some(body)).await?)
    }

    /// `POST /communications/calls`: `201 Created` with the call and its `Location`.
    pub async fn create_call(&self, call: &Call) -> Result<CreatedCall, ApiError> {
        let answer = self
            .send(
                Method::POST,
                "/communications/calls",
                Some(&call.to_json_value()),
            )
            .await?;
        let status = answer.status.as_u16();
        let body = answer.body.ok_or(ApiError::BadResponse {
            status,
            problem: "the body is empty, expected the call",
        })?;
        let created = Call::from_json_value(body).map_err(|_| ApiError::BadResponse {
            status,
            problem: "the body is not a call",
        })?;
        let id = created
            .id
            .get()
            .filter(|id| !id.is_empty())
            .cloned()
            .ok_or(ApiError::BadResponse {
                status,
                problem: "the call has no id",
            })?;
        let location = answer
            .location
            .unwrap_or_else(|| format!("{}/communications/calls/{id}", self.base_url()));
        Ok(CreatedCall {
            call: created,
            id: CallId::new(id),
            location,
        })
    }

    /// `GET /communications/calls/{id}`.
    pub async fn get_call(&self, call: &CallId) -> Result<Call, ApiError> {
        let answer = self
            .send(Method::GET, &Self::call_path(call)?, None)
            .await?;
        let status = answer.status.as_u16();
        answer
            .body
            .and_then(|b| Call::from_json_value(b).ok())
            .ok_or(ApiError::BadResponse {
                status,
                problem: "the body is not a call",
            })
    }

    /// `DELETE /communications/calls/{id}`: hang up.
    pub async fn delete_call(&self, call: &CallId) -> Result<(), ApiError> {
        self.send(Method::DELETE, &Self::call_path(call)?, None)
            .await
            .map(drop)
    }

    /// `POST .../answer`.
    pub async fn answer(&self, call: &CallId, options: &AnswerOptions) -> Result<(), ApiError> {
        let mut body = json!({
            "callbackUri": options.callback_uri,
            "mediaConfig": options.media_config.to_json_value(),
            "acceptedModalities": options.accepted_modalities.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        });
        if let Some(n) = options.participant_capacity {
            body["participantCapacity"] = json!(n);
        }
        self.action(call, "answer", &body).await.map(drop)
    }

    /// `POST .../reject`.
    pub async fn reject(
        &self,
        call: &CallId,
        reason: RejectReason,
        callback_uri: Option<&str>,
    ) -> Result<(), ApiError> {
        let mut body = json!({ "reason": reason.as_str() });
        if let Some(uri) = callback_uri {
            body["callbackUri"] = json!(uri);
        }
        self.action(call, "reject", &body).await.map(drop)
    }

    /// `POST .../redirect`.
    pub async fn redirect(
        &self,
        call: &CallId,
        targets: &[InvitationParticipantInfo],
        timeout_seconds: Option<u32>,
        callback_uri: Option<&str>,
    ) -> Result<(), ApiError> {
        non_empty("targets", targets)?;
        let mut body = json!({
            "targets": targets.iter().map(GraphType::to_json_value).collect::<Vec<_>>(),
        });
        if let Some(t) = timeout_seconds {
            body["timeout"] = json!(t);
        }
        if let Some(uri) = callback_uri {
            body["callbackUri"] = json!(uri);
        }
        self.action(call, "redirect", &body).await.map(drop)
    }

    /// `POST .../transfer`.
    pub async fn transfer(
        &self,
        call: &CallId,
        target: &InvitationParticipantInfo,
        transferee: Option<&ParticipantInfo>,
    ) -> Result<(), ApiError> {
        let mut body = json!({ "transferTarget": target.to_json_value() });
        if let Some(t) = transferee {
            body["transferee"] = t.to_json_value();
        }
        self.action(call, "transfer", &body).await.map(drop)
    }

    /// `POST .../playPrompt` (service-hosted media).
    pub async fn play_prompt(
        &self,
        call: &CallId,
        prompts: &[Prompt],
        client_context: Option<&str>,
    ) -> Result<Option<CommsOperation>, ApiError> {
        non_empty("prompts", prompts)?;
        let mut body = Map::new();
        body.insert(
            "prompts".into(),
            Value::Array(prompts.iter().map(Prompt::to_json).collect()),
        );
        self.action(call, "playPrompt", &with_context(body, client_context))
            .await
    }

    /// `POST .../recordResponse` (service-hosted media).
    pub async fn record_response(
        &self,
        call: &CallId,
        options: &RecordOptions,
    ) -> Result<Option<CommsOperation>, ApiError> {
        let mut body = Map::new();
        body.insert(
            "prompts".into(),
            Value::Array(options.prompts.iter().map(Prompt::to_json).collect()),
        );
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                body.insert(k.to_owned(), v);
            }
        };
        put("bargeInAllowed", options.barge_in_allowed.map(Value::from));
        put(
            "initialSilenceTimeoutInSeconds",
            options.initial_silence_timeout_in_seconds.map(Value::from),
        );
        put(
            "maxSilenceTimeoutInSeconds",
            options.max_silence_timeout_in_seconds.map(Value::from),
        );
        put(
            "maxRecordDurationInSeconds",
            options.max_record_duration_in_seconds.map(Value::from),
        );
        put("playBeep", options.play_beep.map(Value::from));
        if !options.stop_tones.is_empty() {
            put(
                "stopTones",
                Some(options.stop_tones.iter().map(|t| t.as_str()).collect()),
            );
        }
        self.action(
            call,
            "recordResponse",
            &with_context(body, options.client_context.as_deref()),
        )
        .await
    }

    /// `POST .../cancelMediaProcessing`.
    pub async fn cancel_media_processing(
        &self,
        call: &CallId,
        client_context: Option<&str>,
    ) -> Result<Option<CommsOperation>, ApiError> {
        self.action(
            call,
            "cancelMediaProcessing",
            &with_context(Map::new(), client_context),
        )
        .await
    }

    /// `POST .../subscribeToTone`.
    pub async fn subscribe_to_tone(
        &self,
        call: &CallId,
        client_context: Option<&str>,
    ) -> Result<Option<CommsOperation>, ApiError> {
        self.action(
            call,
            "subscribeToTone",
            &with_context(Map::new(), client_context),
        )
        .await
    }

    /// `POST .../sendDtmfTones`.
    pub async fn send_dtmf_tones(
        &self,
        call: &CallId,
        tones: &[Tone],
        delay_between_tones_ms: Option<u32>,
        client_context: Option<&str>,
    ) -> Result<Option<CommsOperation>, ApiError> {
        non_empty("tones", tones)?;
        let mut body = Map::new();
        body.insert(
            "tones".into(),
            tones.iter().map(|t| t.as_str()).collect::<Vec<_>>().into(),
        );
        if let Some(ms) = delay_between_tones_ms {
            body.insert("delayBetweenTonesMs".into(), ms.into());
        }
        self.action(call, "sendDtmfTones", &with_context(body, client_context))
            .await
    }

    /// `POST .../keepAlive`.
    pub async fn keep_alive(&self, call: &CallId) -> Result<(), ApiError> {
        let path = format!("{}/keepAlive", Self::call_path(call)?);
        self.send(Method::POST, &path, None).await.map(drop)
    }

    /// `POST .../mute`: mutes the bot.
    pub async fn mute(
        &self,
        call: &CallId,
        client_context: Option<&str>,
    ) -> Result<Option<CommsOperation>, ApiError> {
        self.action(call, "mute", &with_context(Map::new(), client_context))
            .await
    }

    /// `POST .../unmute`.
    pub async fn unmute(
        &self,
        call: &CallId,
        client_context: Option<&str>,
    ) -> Result<Option<CommsOperation>, ApiError> {
        self.action(call, "unmute", &with_context(Map::new(), client_context))
            .await
    }

    /// `POST .../updateRecordingStatus`.
    pub async fn update_recording_status(
        &self,
        call: &CallId,
        status: &RecordingStatus,
        client_context: Option<&str>,
    ) -> Result<Option<CommsOperation>, ApiError> {
        let mut body = Map::new();
        body.insert("status".into(), status.as_str().into());
        self.action(
            call,
            "updateRecordingStatus",
            &with_context(body, client_context),
        )
        .await
    }

    /// `POST .../changeScreenSharingRole`.
    pub async fn change_screen_sharing_role(
        &self,
        call: &CallId,
        role: ScreenSharingRole,
    ) -> Result<(), ApiError> {
        self.action(
            call,
            "changeScreenSharingRole",
            &json!({ "role": role.as_str() }),
        )
        .await
        .map(drop)
    }

    /// `GET .../participants`.
    pub async fn list_participants(&self, call: &CallId) -> Result<Vec<Participant>, ApiError> {
        let path = format!("{}/participants", Self::call_path(call)?);
        let answer = self.send(Method::GET, &path, None).await?;
        let status = answer.status.as_u16();
        let bad = ApiError::BadResponse {
            status,
            problem: "the body is not a participant collection",
        };
        let Some(Value::Object(mut body)) = answer.body else {
            return Err(bad);
        };
        match body.remove("value") {
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| Participant::from_json_value(v).ok())
                .collect::<Option<Vec<_>>>()
                .ok_or(bad),
            _ => Err(bad),
        }
    }

    /// `GET .../participants/{id}`.
    pub async fn get_participant(
        &self,
        call: &CallId,
        participant: &ParticipantId,
    ) -> Result<Participant, ApiError> {
        let path = format!(
            "{}/participants/{}",
            Self::call_path(call)?,
            segment("participant id", participant.as_str())?
        );
        let answer = self.send(Method::GET, &path, None).await?;
        let status = answer.status.as_u16();
        answer
            .body
            .and_then(|b| Participant::from_json_value(b).ok())
            .ok_or(ApiError::BadResponse {
                status,
                problem: "the body is not a participant",
            })
    }

    /// `POST .../participants/invite`.
    pub async fn invite_participants(
        &self,
        call: &CallId,
        participants: &[InvitationParticipantInfo],
        client_context: Option<&str>,
    ) -> Result<Option<CommsOperation>, ApiError> {
        non_empty("participants", participants)?;
        let mut body = Map::new();
        body.insert(
            "participants".into(),
            participants
                .iter()
                .map(GraphType::to_json_value)
                .collect::<Vec<_>>()
                .into(),
        );
        let path = format!("{}/participants/invite", Self::call_path(call)?);
        operation(
            self.send(
                Method::POST,
                &path,
                Some(&with_context(body, client_context)),
            )
            .await?,
        )
    }

    /// `DELETE .../participants/{id}`.
    pub async fn delete_participant(
        &self,
        call: &CallId,
        participant: &ParticipantId,
    ) -> Result<(), ApiError> {
        let path = format!(
            "{}/participants/{}",
            Self::call_path(call)?,
            segment("participant id", participant.as_str())?
        );
        self.send(Method::DELETE, &path, None).await.map(drop)
    }

    /// `POST .../participants/{id}/mute`.
    pub async fn mute_participant(
        &self,
        call: &CallId,
        participant: &ParticipantId,
        client_context: Option<&str>,
    ) -> Result<Option<CommsOperation>, ApiError> {
        let path = format!(
            "{}/participants/{}/mute",
            Self::call_path(call)?,
            segment("participant id", participant.as_str())?
        );
        operation(
            self.send(
                Method::POST,
                &path,
                Some(&with_context(Map::new(), client_context)),
            )
            .await?,
        )
    }
}
