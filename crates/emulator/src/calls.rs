//! Calls as the service sees them: the call resource, its roster, its life from
//! `establishing` to `terminated` as the scenario's participants answer, ring out, reject or
//! hang up, and the keepAlive rule.
//!
//! The call, its roster and its operations are kept as `signalling::model` values and turned
//! into JSON only where they leave: an HTTP response or a notification (see [`crate::notify`]).
//!
//! Dependency direction: this module drives [`crate::media`] (it hands the conference a
//! roster of [`media::ParticipantSpec`]s built by [`roster_specs`] and holds each call's
//! [`MediaLink`]); `media` knows nothing of calls, rosters or Graph.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use signalling::MediaHosting;
use signalling::model::{
    CallState, ChangeType, CommsOperation, Field, Identity, IdentityRole, IdentitySet, MediaConfig,
    MediaDirection, MediaStream, Modality, Participant, ParticipantInfo, ResourceData, ResultCode,
    ResultInfo, Tone, ToneInfo,
};
use tokio::sync::{mpsc, watch};

use crate::media::{self, MediaHub, MediaLink, ParticipantSpec, VoiceSource};
use crate::notify::{self, Notifier};
use crate::scenario::{Answer, Lobby, Meeting, Voice};
use crate::state::{LogKind, Shared, lock};

/// How a call ends: Graph's `resultInfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallResult {
    /// `resultInfo.code`.
    pub code: u16,
    /// `resultInfo.subcode`.
    pub subcode: u32,
    /// `resultInfo.message`: the constants' general text, or one that names what was wrong
    /// (see [`CallResult::with_message`]).
    pub message: Cow<'static, str>,
}

impl CallResult {
    /// The bot hung up (DELETE on the call).
    pub const ENDED_BY_BOT: Self = Self {
        code: 200,
        subcode: 7000,
        message: Cow::Borrowed("The call was ended by the application."),
    };
    /// The other side hung up.
    pub const ENDED_BY_PEER: Self = Self {
        code: 200,
        subcode: 4097,
        message: Cow::Borrowed("The call was ended by the other participant."),
    };
    /// Nobody could be reached.
    pub const NO_CALLEE: Self = Self {
        code: 480,
        subcode: 10037,
        message: Cow::Borrowed("No callee endpoints were found."),
    };
    /// The callee rejected the call as busy.
    pub const BUSY: Self = Self {
        code: 486,
        subcode: 0,
        message: Cow::Borrowed("The callee is busy."),
    };
    /// Nobody answered before the ring timeout.
    pub const NO_ANSWER: Self = Self {
        code: 408,
        subcode: 10057,
        message: Cow::Borrowed("The callee did not answer."),
    };
    /// No keepAlive for too long.
    pub const NO_KEEP_ALIVE: Self = Self {
        code: 408,
        subcode: 8537,
        message: Cow::Borrowed("The call was ended because no keepAlive was received."),
    };
    /// The bot did not answer an incoming call within 15 s.
    pub const NOT_ANSWERED_BY_BOT: Self = Self {
        code: 408,
        subcode: 10058,
        message: Cow::Borrowed("The application did not answer the incoming call in time."),
    };
    /// The meeting does not exist.
    pub const MEETING_NOT_FOUND: Self = Self {
        code: 404,
        subcode: 11000,
        message: Cow::Borrowed("The meeting was not found."),
    };
    /// The bot's media could not be reached.
    pub const BOT_MEDIA_FAILED: Self = Self {
        code: 500,
        subcode: 1005,
        message: Cow::Borrowed("The application's media endpoint could not be connected."),
    };
    /// Media connectivity was lost.
    pub const MEDIA_LOST: Self = Self {
        code: 410,
        subcode: 301005,
        message: Cow::Borrowed("Media connectivity was lost."),
    };

    /// The same code and subcode with a message that says more.
    pub fn with_message(self, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
            ..self
        }
    }

    /// Graph's `resultInfo` for this result.
    pub(crate) fn result_info(&self) -> ResultInfo {
        let mut info = ResultInfo::default();
        info.odata_type = "#microsoft.graph.resultInfo".to_owned().into();
        info.code = ResultCode::from(i64::from(self.code)).into();
        info.subcode = ResultCode::from(i64::from(self.subcode)).into();
        info.message = self.message.clone().into_owned().into();
        info
    }
}

/// Someone the bot called, resolved against the scenario.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// Who it is: the scenario's identity, or the request's for an unknown target (empty
    /// when the request gave none).
    pub identity: IdentitySet,
    pub voice: Voice,
    pub answer: Answer,
    pub known: bool,
}

/// What the call's task has to play out.
#[derive(Clone, Debug)]
pub(crate) enum Plan {
    /// Peer-to-peer, group or PSTN: ring the targets.
    Direct(Vec<Target>),
    /// Join a meeting (Err: the scenario has no such meeting, and why).
    Meeting {
        meeting: Result<(Meeting, Vec<Target>), String>,
        as_guest: bool,
    },
    /// Someone calls the bot: the bot must answer, reject or redirect within the window.
    Incoming(Box<Target>),
}

/// How long an incoming call waits for the bot's answer (emulated time).
pub(crate) const INCOMING_WINDOW: Duration = Duration::from_secs(15);

/// One participant in a call's roster: the resource Graph shows, and what only the emulator
/// knows about it.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub participant: Participant,
    pub voice: Voice,
    pub is_bot: bool,
    /// Written by the conference while app-hosted media runs.
    pub meter: media::Meter,
}

impl Member {
    /// The participant's current audio level, 0 to 1 (0 without media).
    pub fn level(&self) -> f32 {
        self.meter.level()
    }

    pub fn id(&self) -> &str {
        self.participant.id.get().map_or("", String::as_str)
    }

    fn in_lobby(&self) -> bool {
        self.participant.is_in_lobby.get() == Some(&true)
    }

    /// `mediaStreams[0].sourceId`: the CSRC the bot sees when this participant speaks.
    fn source_id(&self) -> u32 {
        self.participant
            .media_streams
            .get()
            .and_then(|s| s.first())
            .and_then(|s| s.source_id.get())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

pub(crate) struct Inner {
    /// The call resource as `GET` shows it.
    pub resource: signalling::model::Call,
    pub roster: Vec<Member>,
    pub last_keep_alive: Instant,
    /// Running operations by id, until they complete or are cancelled.
    pub operations: BTreeMap<String, CommsOperation>,
    next_source_id: u32,
    next_tone_sequence: u64,
    /// App-hosted media, once connected.
    pub media: Option<MediaLink>,
}

/// One call.
pub(crate) struct CallEntry {
    pub id: String,
    pub app_id: String,
    pub tenant_id: String,
    pub hosting: MediaHosting,
    pub notifier: Notifier,
    pub inner: Mutex<Inner>,
    ended: watch::Sender<bool>,
    /// Signalled when the bot answers an incoming call.
    pub answered: tokio::sync::Notify,
}

/// An identity set for a scenario user.
pub(crate) fn user_identity(id: &str, name: &str, tenant: &str) -> IdentitySet {
    let mut user = Identity::new(id, Some(name));
    user.tenant_id = tenant.to_owned().into();
    IdentitySet::with(IdentityRole::User, user)
}

/// An identity set of one identity in `role` (`#microsoft.graph.identity`); a missing name
/// is shown as `null`.
pub(crate) fn identity_set(role: IdentityRole, id: &str, name: Option<&str>) -> IdentitySet {
    let mut identity = Identity::new(id, name);
    if name.is_none() {
        identity.display_name = Field::Null;
    }
    IdentitySet::with(role, identity)
}

/// A participant resource.
pub(crate) fn participant(
    id: &str,
    identity: IdentitySet,
    source_id: u32,
    in_lobby: bool,
) -> Participant {
    let mut info = ParticipantInfo::default();
    info.odata_type = "#microsoft.graph.participantInfo".to_owned().into();
    info.identity = identity.into();
    info.language_id = "en-US".to_owned().into();
    let mut audio = MediaStream::default();
    audio.odata_type = "#microsoft.graph.mediaStream".to_owned().into();
    audio.media_type = Modality::Audio.into();
    audio.source_id = source_id.to_string().into();
    audio.direction = MediaDirection::SendReceive.into();
    audio.server_muted = false.into();
    let mut p = Participant::default();
    p.odata_type = "#microsoft.graph.participant".to_owned().into();
    p.info = info.into();
    p.media_streams = vec![audio].into();
    p.is_muted = false.into();
    p.is_in_lobby = in_lobby.into();
    p.id = id.to_owned().into();
    p
}

impl CallEntry {
    pub fn new(
        shared: &Arc<Shared>,
        resource: signalling::model::Call,
        app_id: String,
        tenant_id: String,
        hosting: MediaHosting,
    ) -> Arc<Self> {
        let id = resource.id.get().cloned().unwrap_or_default();
        let notifier = Notifier::start(
            shared.clone(),
            id.clone(),
            app_id.clone(),
            tenant_id.clone(),
        );
        Arc::new(Self {
            id,
            app_id,
            tenant_id,
            hosting,
            notifier,
            inner: Mutex::new(Inner {
                resource,
                roster: Vec::new(),
                last_keep_alive: Instant::now(),
                operations: BTreeMap::new(),
                next_source_id: 1,
                next_tone_sequence: 1,
                media: None,
            }),
            ended: watch::channel(false).0,
            answered: tokio::sync::Notify::new(),
        })
    }

    pub fn resource_url(&self) -> String {
        format!("/communications/calls/{}", self.id)
    }

    /// The call's state (`establishing` until the resource says otherwise).
    pub fn state(&self) -> CallState {
        state_of(&lock(&self.inner).resource)
    }

    pub fn is_ended(&self) -> bool {
        *self.ended.borrow()
    }

    /// The bot's own participant id in this call (`myParticipantId`), empty if unset.
    pub(crate) fn my_participant_id(&self) -> String {
        lock(&self.inner)
            .resource
            .my_participant_id
            .get()
            .cloned()
            .unwrap_or_default()
    }

    fn callback_uri(inner: &Inner) -> String {
        inner
            .resource
            .callback_uri
            .get()
            .cloned()
            .unwrap_or_default()
    }

    /// Sends a notification about the call itself with the properties set in `data`.
    fn notify_call(
        &self,
        shared: &Shared,
        inner: &Inner,
        change: ChangeType,
        mut data: signalling::model::Call,
    ) {
        data.odata_type = "#microsoft.graph.call".to_owned().into();
        data.id = self.id.clone().into();
        let n = notify::notification(
            change,
            &self.resource_url(),
            &Self::callback_uri(inner),
            ResourceData::Call(Box::new(data)),
        );
        self.notifier.send(shared, &self.id, notify::body(vec![n]));
    }

    /// Sends the roster (every participant) as a participants update.
    fn notify_roster(&self, shared: &Shared, inner: &Inner) {
        let list = inner
            .roster
            .iter()
            .map(|m| ResourceData::Participant(Box::new(m.participant.clone())))
            .collect();
        let n = notify::notification(
            ChangeType::Updated,
            &format!("{}/participants", self.resource_url()),
            &Self::callback_uri(inner),
            ResourceData::Collection(list),
        );
        self.notifier.send(shared, &self.id, notify::body(vec![n]));
    }

    /// Moves the call to `state` and tells the bot.
    pub fn set_state(&self, shared: &Shared, state: CallState) {
        let mut inner = lock(&self.inner);
        if state_of(&inner.resource) == CallState::Terminated {
            return;
        }
        inner.resource.state = state.clone().into();
        let mut data = signalling::model::Call::default();
        data.state = state.clone().into();
        if state == CallState::Established {
            data.direction = or_null(&inner.resource.direction);
            data.tenant_id = self.tenant_id.clone().into();
            // Only those the call has (a `null` in the resource is left out).
            if let Some(chat) = inner.resource.chat_info.get() {
                data.chat_info = chat.clone().into();
            }
            if let Some(meeting) = inner.resource.meeting_info.get() {
                data.meeting_info = meeting.clone().into();
            }
        }
        self.notify_call(shared, &inner, ChangeType::Updated, data);
        drop(inner);
        shared.log(LogKind::Request, Some(&self.id), format!("call {state}"));
    }

    /// Ends the call (once): `terminated` with its result, roster emptied, media closed.
    pub fn terminate(&self, shared: &Shared, result: &CallResult) {
        let mut inner = lock(&self.inner);
        if state_of(&inner.resource) == CallState::Terminated {
            return;
        }
        inner.resource.state = CallState::Terminated.into();
        inner.resource.result_info = result.result_info().into();
        inner.roster.clear();
        let media = inner.media.take();
        let mut data = signalling::model::Call::default();
        data.state = CallState::Terminated.into();
        data.result_info = result.result_info().into();
        self.notify_call(shared, &inner, ChangeType::Deleted, data);
        drop(inner);
        if let Some(link) = media {
            close_media(shared, &self.id, link);
        }
        self.ended.send_replace(true);
        // The message is left out: it can name scenario users and phone numbers.
        tracing::info!(
            target: "emulator::calls",
            call_id = %self.id,
            code = result.code,
            subcode = result.subcode,
            "call ended with {}/{}",
            result.code,
            result.subcode
        );
        shared.log(
            LogKind::Request,
            Some(&self.id),
            format!(
                "call terminated ({}/{}: {})",
                result.code, result.subcode, result.message
            ),
        );
        shared.retire(&self.id);
    }

    /// Adds a participant to the roster and tells the bot.
    pub fn join(
        &self,
        shared: &Shared,
        id: &str,
        identity: IdentitySet,
        voice: Voice,
        is_bot: bool,
        in_lobby: bool,
    ) -> u32 {
        let mut inner = lock(&self.inner);
        let source_id = inner.next_source_id;
        inner.next_source_id += 1;
        inner.roster.retain(|m| m.id() != id);
        inner.roster.push(Member {
            participant: participant(id, identity, source_id, in_lobby),
            voice,
            is_bot,
            meter: media::Meter::default(),
        });
        self.notify_roster(shared, &inner);
        self.sync_media(shared, &inner);
        source_id
    }

    /// Removes a participant; the bot hears of it as a roster change. A peer-to-peer call
    /// whose only other participant leaves ends.
    pub fn leave(&self, shared: &Shared, participant_id: &str) -> bool {
        let mut inner = lock(&self.inner);
        let Some(pos) = inner.roster.iter().position(|m| m.id() == participant_id) else {
            return false;
        };
        let gone = inner.roster.remove(pos);
        let n = notify::notification(
            ChangeType::Deleted,
            &format!("{}/participants", self.resource_url()),
            &Self::callback_uri(&inner),
            ResourceData::Collection(vec![ResourceData::Participant(Box::new(gone.participant))]),
        );
        self.notifier.send(shared, &self.id, notify::body(vec![n]));
        self.sync_media(shared, &inner);
        let others = inner.roster.iter().filter(|m| !m.is_bot).count();
        let is_meeting = inner.resource.meeting_info.get().is_some();
        drop(inner);
        if others == 0 && !is_meeting {
            self.terminate(shared, &CallResult::ENDED_BY_PEER);
        }
        true
    }

    /// Lets a participant in from the lobby.
    pub fn admit(&self, shared: &Shared, participant_id: &str) -> bool {
        let mut inner = lock(&self.inner);
        let Some(m) = inner.roster.iter_mut().find(|m| m.id() == participant_id) else {
            return false;
        };
        if !m.in_lobby() {
            return false;
        }
        m.participant.is_in_lobby = false.into();
        let bot_admitted = m.is_bot;
        self.notify_roster(shared, &inner);
        self.sync_media(shared, &inner);
        drop(inner);
        if bot_admitted {
            self.set_state(shared, CallState::Established);
        }
        true
    }

    /// Changes what a participant says (a WAV file, a tone, silence or an echo) from the
    /// next frame on. The voice is prepared first, so an unreadable WAV changes nothing.
    pub fn set_voice(
        &self,
        shared: &Shared,
        participant_id: &str,
        voice: Voice,
    ) -> Result<(), String> {
        shared.media.prepare(&voice).map_err(|e| e.to_string())?;
        let mut inner = lock(&self.inner);
        let Some(m) = inner
            .roster
            .iter_mut()
            .find(|m| m.id() == participant_id && !m.is_bot)
        else {
            return Err("no such participant (or it is the bot)".into());
        };
        m.voice = voice;
        self.sync_media(shared, &inner);
        Ok(())
    }

    /// Sets a participant's mute flag and tells the bot.
    pub fn set_muted(&self, shared: &Shared, participant_id: &str, muted: bool) -> bool {
        let mut inner = lock(&self.inner);
        let Some(m) = inner.roster.iter_mut().find(|m| m.id() == participant_id) else {
            return false;
        };
        m.participant.is_muted = muted.into();
        self.notify_roster(shared, &inner);
        self.sync_media(shared, &inner);
        true
    }

    /// Records a keepAlive.
    pub fn keep_alive(&self) {
        lock(&self.inner).last_keep_alive = Instant::now();
    }

    /// Sends an operation's notification.
    pub fn notify_operation(&self, shared: &Shared, operation: CommsOperation) {
        let inner = lock(&self.inner);
        let url = format!(
            "{}/operations/{}",
            self.resource_url(),
            crate::graph::operation_id(&operation)
        );
        let n = notify::notification(
            ChangeType::Deleted,
            &url,
            &Self::callback_uri(&inner),
            ResourceData::Operation(Box::new(operation)),
        );
        self.notifier.send(shared, &self.id, notify::body(vec![n]));
    }

    /// Sends a call update carrying a tone the bot subscribed to.
    pub fn notify_tone(&self, shared: &Shared, tone: Tone) {
        let mut inner = lock(&self.inner);
        let sequence = inner.next_tone_sequence;
        inner.next_tone_sequence += 1;
        let mut info = ToneInfo::default();
        info.odata_type = "#microsoft.graph.toneInfo".to_owned().into();
        info.sequence_id = i64::try_from(sequence).unwrap_or(i64::MAX).into();
        info.tone = tone.into();
        let mut data = signalling::model::Call::default();
        data.tone_info = info.into();
        self.notify_call(shared, &inner, ChangeType::Updated, data);
    }

    /// Tells the conference about a roster change.
    fn sync_media(&self, shared: &Shared, inner: &Inner) {
        if let Some(link) = &inner.media {
            link.set_roster(roster_specs(&shared.media, &inner.roster, |e| {
                shared.log(LogKind::Error, Some(&self.id), e)
            }));
        }
    }

    /// A participant presses a key. With app-hosted media connected the bot hears it as an
    /// RFC 4733 event; `None` when this call has no media leg to carry it.
    pub fn send_media_tone(
        &self,
        tone: media_endpoint::Tone,
    ) -> Option<Result<(), media_endpoint::ToneError>> {
        lock(&self.inner)
            .media
            .as_ref()
            .map(|link| link.send_tone(tone))
    }

    /// For app-hosted media: connects to the bot's media endpoint (the blob's `mpUri`) and
    /// waits until the transport is up. On failure the call ends with 500/1005 and this
    /// returns false; it also returns false when the call ended meanwhile.
    pub async fn connect_media(self: &Arc<Self>, shared: &Arc<Shared>) -> bool {
        let (blob, roster) = {
            let inner = lock(&self.inner);
            // The resource's media config: the request's, or the answer's for an incoming call.
            let Some(blob) = app_hosted_blob(inner.resource.media_config.get()) else {
                return true;
            };
            let roster = roster_specs(&shared.media, &inner.roster, |e| {
                shared.log(LogKind::Error, Some(&self.id), e)
            });
            (blob, roster)
        };
        let fail = |why: String| {
            shared.log(LogKind::Error, Some(&self.id), why);
            self.terminate(shared, &CallResult::BOT_MEDIA_FAILED);
            false
        };
        let blob = match media_session::Blob::parse(&blob) {
            Ok(b) => b,
            Err(e) => return fail(format!("the media blob is invalid: {e}")),
        };
        let (tx, mut events) = mpsc::channel(256);
        let link = match shared.media.connect(&blob, roster, tx).await {
            Ok(link) => link,
            Err(e) => return fail(format!("media: {e}")),
        };
        // The call is established only once media flows, as a conference server does.
        let up = tokio::time::timeout(MEDIA_CONNECT_TIMEOUT, async {
            while let Some(ev) = events.recv().await {
                match ev {
                    media_endpoint::EndpointEvent::SendStatus(
                        media_endpoint::SendStatus::Active,
                    ) => return Ok(()),
                    media_endpoint::EndpointEvent::StreamFailure(r) => {
                        return Err(format!("{r:?}"));
                    }
                    media_endpoint::EndpointEvent::LegEnded(r) => return Err(format!("{r:?}")),
                    _ => {}
                }
            }
            Err("the leg ended".to_owned())
        })
        .await;
        match up {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                close_media(shared, &self.id, link);
                return fail(format!("media did not connect: {why}"));
            }
            Err(_) => {
                close_media(shared, &self.id, link);
                return fail(format!(
                    "media did not connect within {MEDIA_CONNECT_TIMEOUT:?}"
                ));
            }
        }
        let mut inner = lock(&self.inner);
        if state_of(&inner.resource) == CallState::Terminated {
            drop(inner);
            close_media(shared, &self.id, link);
            return false;
        }
        inner.media = Some(link);
        // The roster may have changed while the leg connected.
        self.sync_media(shared, &inner);
        drop(inner);
        shared.log(
            LogKind::Media,
            Some(&self.id),
            "media connected to the bot's endpoint".into(),
        );
        tokio::spawn(watch_media(shared.clone(), self.clone(), events));
        true
    }

    /// Waits up to `d` (emulated time); true when the call ended meanwhile.
    async fn wait(&self, shared: &Shared, d: Duration) -> bool {
        let mut rx = self.ended.subscribe();
        if *rx.borrow() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(shared.scaled(d)) => self.is_ended(),
            _ = rx.changed() => true,
        }
    }
}

/// The call's state; a resource without one is still `establishing`.
pub(crate) fn state_of(resource: &signalling::model::Call) -> CallState {
    resource
        .state
        .get()
        .cloned()
        .unwrap_or(CallState::Establishing)
}

/// `Absent` becomes `null`: the resource shows every property it echoes from a request, as
/// Graph does.
pub(crate) fn or_null<T: Clone>(field: &Field<T>) -> Field<T> {
    match field {
        Field::Absent => Field::Null,
        other => other.clone(),
    }
}

/// The blob of an app-hosted media config, written exactly as `#microsoft.graph.
/// appHostedMediaConfig` (the emulator asks for the documented spelling); `None` for any
/// other media config.
pub(crate) fn app_hosted_blob(config: Option<&MediaConfig>) -> Option<String> {
    match config {
        Some(MediaConfig::AppHosted(c))
            if c.odata_type.get().map(String::as_str)
                == Some("#microsoft.graph.appHostedMediaConfig") =>
        {
            Some(
                c.blob
                    .get()
                    .map(|b| b.as_str().to_owned())
                    .unwrap_or_default(),
            )
        }
        _ => None,
    }
}

/// The conference's view of a call's roster. A voice that cannot be prepared (an unreadable
/// WAV file) is silence, and `on_error` hears why.
pub(crate) fn roster_specs(
    hub: &MediaHub,
    roster: &[Member],
    mut on_error: impl FnMut(String),
) -> Vec<ParticipantSpec> {
    roster
        .iter()
        .map(|m| {
            let voice = match hub.remotes.voice(m.id()) {
                Some(remote) => VoiceSource::Remote(remote),
                None => hub.prepare(&m.voice).unwrap_or_else(|e| {
                    on_error(format!("{}: {e}; it stays silent", m.voice.describe()));
                    VoiceSource::Silence
                }),
            };
            let in_lobby = m.in_lobby();
            ParticipantSpec {
                key: m.id().to_owned(),
                source_id: m.source_id(),
                voice,
                hears: !in_lobby,
                heard: !in_lobby && m.participant.is_muted.get() != Some(&true),
                is_bot: m.is_bot,
                meter: m.meter.clone(),
                faults: m.voice.faults().cloned(),
            }
        })
        .collect()
}

/// How long app-hosted media may take to connect before the call fails with 500/1005.
const MEDIA_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Ends a media leg off the caller's path: the `DELETE` runs as a task when a runtime is
/// there (dropping the link ends it locally in any case).
fn close_media(shared: &Shared, call_id: &str, link: MediaLink) {
    let st = link.stats();
    shared.log(
        LogKind::Media,
        Some(call_id),
        format!(
            "media leg closed: {} packets from the bot, {} frames concealed, jitter buffer {} ms; {} packets to the bot",
            st.packets_received,
            st.concealed,
            st.buffer_delay().as_millis(),
            st.frames_sent
        ),
    );
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(async move {
                if let Err(e) = link.close().await {
                    tracing::debug!(error = %e, "closing the media leg");
                }
            });
        }
        Err(_) => drop(link),
    }
}

/// Follows a connected leg: tones from the bot go to the event log; a failed or vanished
/// leg ends the call with 410/301005.
async fn watch_media(
    shared: Arc<Shared>,
    call: Arc<CallEntry>,
    mut events: mpsc::Receiver<media_endpoint::EndpointEvent>,
) {
    use media_endpoint::{EndReason, EndpointEvent};
    while let Some(ev) = events.recv().await {
        match ev {
            EndpointEvent::ToneReceived(tone) => shared.log(
                LogKind::Media,
                Some(&call.id),
                format!("DTMF {tone} from the bot"),
            ),
            EndpointEvent::SendStatus(s) => shared.log(
                LogKind::Media,
                Some(&call.id),
                format!("media send status {s:?}"),
            ),
            // Closed: the emulator itself ended the leg (the call is over).
            EndpointEvent::LegEnded(EndReason::Closed) => return,
            EndpointEvent::StreamFailure(_) | EndpointEvent::LegEnded(_) => {
                shared.log(
                    LogKind::Media,
                    Some(&call.id),
                    format!("media lost: {ev:?}"),
                );
                call.terminate(&shared, &CallResult::MEDIA_LOST);
                return;
            }
            _ => {}
        }
    }
}

/// Plays out a call's life. Runs as its own task; returns when the call ends.
pub(crate) async fn run(
    shared: Arc<Shared>,
    call: Arc<CallEntry>,
    plan: Plan,
    bot_identity: IdentitySet,
) {
    if !matches!(plan, Plan::Incoming(_)) {
        call.set_state(&shared, CallState::Establishing);
    }
    let my_id = call.my_participant_id();
    let ring_timeout = Duration::from_millis(shared.scenario.settings.ring_timeout_ms);
    match plan {
        Plan::Direct(targets) => {
            if !targets.iter().any(|t| t.known) {
                if !call.wait(&shared, Duration::from_millis(200)).await {
                    let why = crate::lookup::unreachable_targets(
                        &shared.scenario,
                        targets.iter().map(|t| &t.identity),
                    );
                    call.terminate(&shared, &CallResult::NO_CALLEE.with_message(why));
                }
                return;
            }
            if call.wait(&shared, Duration::from_millis(100)).await {
                return;
            }
            call.set_state(&shared, CallState::Ringing);
            // Each target's answer on one timeline.
            let mut timeline: Vec<(Duration, usize)> = targets
                .iter()
                .enumerate()
                .filter(|(_, t)| t.known)
                .filter_map(|(i, t)| match t.answer {
                    Answer::AfterMs(ms) if Duration::from_millis(ms) < ring_timeout => {
                        Some((Duration::from_millis(ms), i))
                    }
                    Answer::Busy => Some((Duration::from_millis(150), i)),
                    _ => None,
                })
                .collect();
            timeline.sort();
            let mut elapsed = Duration::ZERO;
            let mut answered = 0usize;
            let mut busy = 0usize;
            for (at, i) in timeline {
                if call.wait(&shared, at.saturating_sub(elapsed)).await {
                    return;
                }
                elapsed = at;
                let t = &targets[i];
                if t.answer == Answer::Busy {
                    busy += 1;
                    shared.log(
                        LogKind::Request,
                        Some(&call.id),
                        "a target rejected the call: busy".into(),
                    );
                    if busy == targets.len() {
                        call.terminate(&shared, &CallResult::BUSY);
                        return;
                    }
                    continue;
                }
                if answered == 0 {
                    call.join(
                        &shared,
                        &my_id,
                        bot_identity.clone(),
                        Voice::Silence,
                        true,
                        false,
                    );
                    if !call.connect_media(&shared).await {
                        return;
                    }
                    call.set_state(&shared, CallState::Established);
                }
                answered += 1;
                let pid = uuid::Uuid::new_v4().to_string();
                call.join(
                    &shared,
                    &pid,
                    t.identity.clone(),
                    t.voice.clone(),
                    false,
                    false,
                );
            }
            if answered == 0 {
                if call
                    .wait(&shared, ring_timeout.saturating_sub(elapsed))
                    .await
                {
                    return;
                }
                call.terminate(&shared, &CallResult::NO_ANSWER);
                return;
            }
        }
        Plan::Incoming(caller) => {
            let caller = *caller;
            {
                let inner = lock(&call.inner);
                let n = notify::notification(
                    ChangeType::Created,
                    &call.resource_url(),
                    &CallEntry::callback_uri(&inner),
                    ResourceData::Call(Box::new(inner.resource.clone())),
                );
                call.notifier.send(&shared, &call.id, notify::body(vec![n]));
            }
            shared.log(
                LogKind::Request,
                Some(&call.id),
                "incoming call offered to the bot".into(),
            );
            let mut ended = call.ended.subscribe();
            let answered = tokio::select! {
                _ = call.answered.notified() => true,
                _ = ended.changed() => return,
                _ = tokio::time::sleep(shared.scaled(INCOMING_WINDOW)) => false,
            };
            if !answered {
                call.terminate(&shared, &CallResult::NOT_ANSWERED_BY_BOT);
                return;
            }
            call.join(&shared, &my_id, bot_identity, Voice::Silence, true, false);
            let pid = uuid::Uuid::new_v4().to_string();
            call.join(&shared, &pid, caller.identity, caller.voice, false, false);
            if call.wait(&shared, Duration::from_millis(100)).await {
                return;
            }
            // The answer's media config decides whether media connects.
            if !call.connect_media(&shared).await {
                return;
            }
            call.set_state(&shared, CallState::Established);
        }
        Plan::Meeting { meeting, as_guest } => {
            if call.wait(&shared, Duration::from_millis(100)).await {
                return;
            }
            let (meeting, members) = match meeting {
                Ok(found) => found,
                Err(why) => {
                    call.terminate(&shared, &CallResult::MEETING_NOT_FOUND.with_message(why));
                    return;
                }
            };
            for m in members {
                let pid = uuid::Uuid::new_v4().to_string();
                call.join(&shared, &pid, m.identity, m.voice, false, false);
            }
            let lobby = match meeting.lobby {
                Lobby::Nobody => false,
                Lobby::Guests => as_guest,
                Lobby::EveryoneElse => true,
            };
            call.join(&shared, &my_id, bot_identity, Voice::Silence, true, lobby);
            if !call.connect_media(&shared).await {
                return;
            }
            if !lobby {
                call.set_state(&shared, CallState::Established);
            } else {
                shared.log(
                    LogKind::Request,
                    Some(&call.id),
                    "the bot waits in the lobby".into(),
                );
            }
        }
    }
    // The keepAlive rule: an established call without one for too long ends.
    let timeout = Duration::from_millis(shared.scenario.settings.keep_alive_timeout_ms);
    loop {
        let since = lock(&call.inner).last_keep_alive.elapsed();
        let left = shared.scaled(timeout).saturating_sub(since);
        if left.is_zero() {
            call.terminate(&shared, &CallResult::NO_KEEP_ALIVE);
            return;
        }
        let mut rx = call.ended.subscribe();
        if *rx.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(left) => {}
            _ = rx.changed() => return,
        }
    }
}
