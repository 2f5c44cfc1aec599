//! Calls as the service sees them: the call resource, its roster, its life from
//! `establishing` to `terminated` as the scenario's participants answer, ring out, reject or
//! hang up, and the keepAlive rule.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use signalling::MediaHosting;
use tokio::sync::{mpsc, watch};

use crate::media::{self, MediaLink};
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

    fn to_json(&self) -> Value {
        json!({
            "@odata.type": "#microsoft.graph.resultInfo",
            "code": self.code,
            "subcode": self.subcode,
            "message": self.message,
        })
    }
}

/// Someone the bot called, resolved against the scenario.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub participant: Value,
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
    Incoming(Target),
}

/// How long an incoming call waits for the bot's answer (emulated time).
pub(crate) const INCOMING_WINDOW: Duration = Duration::from_secs(15);

/// One participant in a call's roster besides the JSON Graph shows.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub participant: Value,
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
        self.participant["id"].as_str().unwrap_or("")
    }
}

pub(crate) struct Inner {
    pub resource: Value,
    pub roster: Vec<Member>,
    pub last_keep_alive: Instant,
    pub operations: BTreeMap<String, Value>,
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
pub(crate) fn user_identity(id: &str, name: &str, tenant: &str) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.identitySet",
        "user": {
            "@odata.type": "#microsoft.graph.identity",
            "displayName": name,
            "id": id,
            "tenantId": tenant,
        }
    })
}

/// A participant resource.
pub(crate) fn participant(id: &str, identity: Value, source_id: u32, in_lobby: bool) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.participant",
        "info": {
            "@odata.type": "#microsoft.graph.participantInfo",
            "identity": identity,
            "languageId": "en-US",
        },
        "mediaStreams": [{
            "@odata.type": "#microsoft.graph.mediaStream",
            "mediaType": "audio",
            "sourceId": source_id.to_string(),
            "direction": "sendReceive",
            "serverMuted": false,
        }],
        "isMuted": false,
        "isInLobby": in_lobby,
        "id": id,
    })
}

impl CallEntry {
    pub fn new(
        shared: &Arc<Shared>,
        resource: Value,
        app_id: String,
        tenant_id: String,
        hosting: MediaHosting,
    ) -> Arc<Self> {
        let id = resource["id"].as_str().unwrap_or_default().to_owned();
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

    pub fn state(&self) -> String {
        lock(&self.inner).resource["state"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub fn is_ended(&self) -> bool {
        *self.ended.borrow()
    }

    fn callback_uri(inner: &Inner) -> String {
        inner.resource["callbackUri"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Sends a notification about the call itself with the given properties.
    fn notify_call(&self, shared: &Shared, inner: &Inner, change: &str, mut data: Value) {
        data["@odata.type"] = json!("#microsoft.graph.call");
        data["id"] = json!(self.id);
        let n = notify::notification(
            change,
            &self.resource_url(),
            &Self::callback_uri(inner),
            data,
        );
        self.notifier.send(shared, &self.id, notify::body(vec![n]));
    }

    /// Sends the roster (every participant) as a participants update.
    fn notify_roster(&self, shared: &Shared, inner: &Inner) {
        let list: Vec<Value> = inner.roster.iter().map(|m| m.participant.clone()).collect();
        let n = notify::notification(
            "updated",
            &format!("{}/participants", self.resource_url()),
            &Self::callback_uri(inner),
            Value::Array(list),
        );
        self.notifier.send(shared, &self.id, notify::body(vec![n]));
    }

    /// Moves the call to `state` and tells the bot.
    pub fn set_state(&self, shared: &Shared, state: &str) {
        let mut inner = lock(&self.inner);
        if inner.resource["state"] == "terminated" {
            return;
        }
        inner.resource["state"] = json!(state);
        let mut data = json!({ "state": state });
        if state == "established" {
            data["direction"] = inner.resource["direction"].clone();
            data["tenantId"] = json!(self.tenant_id);
            for key in ["chatInfo", "meetingInfo"] {
                if inner.resource[key].is_object() {
                    data[key] = inner.resource[key].clone();
                }
            }
        }
        self.notify_call(shared, &inner, "updated", data);
        drop(inner);
        shared.log(LogKind::Request, Some(&self.id), format!("call {state}"));
    }

    /// Ends the call (once): `terminated` with its result, roster emptied, media closed.
    pub fn terminate(&self, shared: &Shared, result: &CallResult) {
        let mut inner = lock(&self.inner);
        if inner.resource["state"] == "terminated" {
            return;
        }
        inner.resource["state"] = json!("terminated");
        inner.resource["resultInfo"] = result.to_json();
        inner.roster.clear();
        let media = inner.media.take();
        let data = json!({ "state": "terminated", "resultInfo": result.to_json() });
        self.notify_call(shared, &inner, "deleted", data);
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
        identity: Value,
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
            "deleted",
            &format!("{}/participants", self.resource_url()),
            &Self::callback_uri(&inner),
            Value::Array(vec![gone.participant]),
        );
        self.notifier.send(shared, &self.id, notify::body(vec![n]));
        self.sync_media(shared, &inner);
        let others = inner.roster.iter().filter(|m| !m.is_bot).count();
        let is_meeting = inner.resource["meetingInfo"].is_object();
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
        if m.participant["isInLobby"] != true {
            return false;
        }
        m.participant["isInLobby"] = json!(false);
        let bot_admitted = m.is_bot;
        self.notify_roster(shared, &inner);
        self.sync_media(shared, &inner);
        drop(inner);
        if bot_admitted {
            self.set_state(shared, "established");
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
        m.participant["isMuted"] = json!(muted);
        self.notify_roster(shared, &inner);
        self.sync_media(shared, &inner);
        true
    }

    /// Records a keepAlive.
    pub fn keep_alive(&self) {
        lock(&self.inner).last_keep_alive = Instant::now();
    }

    /// Sends an operation's notification.
    pub fn notify_operation(&self, shared: &Shared, operation: Value) {
        let inner = lock(&self.inner);
        let url = format!(
            "{}/operations/{}",
            self.resource_url(),
            operation["id"].as_str().unwrap_or("")
        );
        let n = notify::notification("deleted", &url, &Self::callback_uri(&inner), operation);
        self.notifier.send(shared, &self.id, notify::body(vec![n]));
    }

    /// Sends a call update carrying a tone the bot subscribed to.
    pub fn notify_tone(&self, shared: &Shared, tone: &str) {
        let mut inner = lock(&self.inner);
        let sequence = inner.next_tone_sequence;
        inner.next_tone_sequence += 1;
        let data = json!({
            "toneInfo": { "@odata.type": "#microsoft.graph.toneInfo", "sequenceId": sequence, "tone": tone }
        });
        self.notify_call(shared, &inner, "updated", data);
    }

    /// Tells the conference about a roster change.
    fn sync_media(&self, shared: &Shared, inner: &Inner) {
        if let Some(link) = &inner.media {
            link.set_roster(media::roster_specs(&shared.media, &inner.roster, |e| {
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
            if inner.resource["mediaConfig"]["@odata.type"]
                != "#microsoft.graph.appHostedMediaConfig"
            {
                return true;
            }
            let blob = inner.resource["mediaConfig"]["blob"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let roster = media::roster_specs(&shared.media, &inner.roster, |e| {
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
        if inner.resource["state"] == "terminated" {
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
    bot_identity: Value,
) {
    if !matches!(plan, Plan::Incoming(_)) {
        call.set_state(&shared, "establishing");
    }
    let my_id = lock(&call.inner).resource["myParticipantId"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let ring_timeout = Duration::from_millis(shared.scenario.settings.ring_timeout_ms);
    match plan {
        Plan::Direct(targets) => {
            if !targets.iter().any(|t| t.known) {
                if !call.wait(&shared, Duration::from_millis(200)).await {
                    let why = crate::lookup::unreachable_targets(
                        &shared.scenario,
                        targets.iter().map(|t| &t.participant),
                    );
                    call.terminate(&shared, &CallResult::NO_CALLEE.with_message(why));
                }
                return;
            }
            if call.wait(&shared, Duration::from_millis(100)).await {
                return;
            }
            call.set_state(&shared, "ringing");
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
                    call.set_state(&shared, "established");
                }
                answered += 1;
                let pid = uuid::Uuid::new_v4().to_string();
                call.join(
                    &shared,
                    &pid,
                    t.participant.clone(),
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
            {
                let inner = lock(&call.inner);
                let n = notify::notification(
                    "created",
                    &call.resource_url(),
                    &CallEntry::callback_uri(&inner),
                    inner.resource.clone(),
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
            call.join(
                &shared,
                &pid,
                caller.participant,
                caller.voice,
                false,
                false,
            );
            if call.wait(&shared, Duration::from_millis(100)).await {
                return;
            }
            // The answer's media config decides whether media connects.
            if !call.connect_media(&shared).await {
                return;
            }
            call.set_state(&shared, "established");
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
                call.join(&shared, &pid, m.participant, m.voice, false, false);
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
                call.set_state(&shared, "established");
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
