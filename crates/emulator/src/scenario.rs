//! The scenario file: who the emulator's participants are, how they answer and what they
//! say, which meetings and phone numbers exist, and which apps may call.
//!
//! TOML (or JSON, by the file's extension). Every section is optional; what is missing comes
//! from [`Scenario::default`]. Example:
//!
//! ```toml
//! [settings]
//! time_scale = 1.0          # > 1 makes timers (ringing, keepAlive) run faster
//! ring_timeout_ms = 30000
//! unmixed_audio = true      # false plays a service without unmixed speaker streams
//!
//! [[apps]]
//! app_id = "2891555a-92ff-42e6-80fa-6e1300c6b5c6"
//! secret = "local-secret"
//! tenant_id = "aa67bd4c-8475-432d-bd41-39f255720e0a"
//! roles = ["Calls.Initiate.All", "Calls.AccessMedia.All"]
//!
//! [[users]]
//! id = "112f7296-5fa4-42ca-bae8-6a692b15d4b8"
//! display_name = "John"
//! says = { tone = { hz = 440.0 } }        # or "silence", "echo", { wav = "hello.wav" }
//! answer = { after_ms = 500 }              # or "busy", "no_answer"
//!
//! [[phones]]
//! number = "+12345678901"
//! display_name = "Front desk"
//! says = "echo"
//!
//! [[meetings]]
//! thread_id = "19:meeting_abc@thread.v2"
//! message_id = "0"
//! organizer = "112f7296-5fa4-42ca-bae8-6a692b15d4b8"
//! participants = ["112f7296-5fa4-42ca-bae8-6a692b15d4b8"]
//! lobby = "guests"                         # who waits: "nobody", "guests", "everyone_else"
//! subject = "Weekly sync"                  # optional, for people
//! join_meeting_id = "314 159 265 358"      # optional: joinMeetingIdMeetingInfo finds it
//! passcode = "demo42"                      # optional: ... and must carry this passcode
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::identity::AppRegistration;

/// Every application permission the calling API knows; the default app holds them all.
pub const ALL_PERMISSIONS: [&str; 7] = [
    "Calls.Initiate.All",
    "Calls.InitiateGroupCalls.All",
    "Calls.JoinGroupCalls.All",
    "Calls.JoinGroupCallsAsGuest.All",
    "Calls.AccessMedia.All",
    "OnlineMeetings.Read.All",
    "OnlineMeetings.ReadWrite.All",
];

/// The default tenant of the built-in scenario (the spec's examples' tenant).
pub const DEFAULT_TENANT: &str = "aa67bd4c-8475-432d-bd41-39f255720e0a";
/// The default app id of the built-in scenario (the spec's examples' bot).
pub const DEFAULT_APP_ID: &str = "2891555a-92ff-42e6-80fa-6e1300c6b5c6";
/// The default app secret of the built-in scenario. Local use only.
pub const DEFAULT_APP_SECRET: &str = "botmedia-local-secret";

/// A whole scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// Timers and limits.
    pub settings: Settings,
    /// App registrations that may get tokens.
    pub apps: Vec<AppRegistration>,
    /// VoIP users.
    pub users: Vec<User>,
    /// PSTN numbers that can be called.
    pub phones: Vec<Phone>,
    /// Scheduled or channel meetings that can be joined.
    pub meetings: Vec<Meeting>,
}

/// Timers and limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Speed-up of every emulator timer (ringing, keepAlive, lobby); 1 is real time.
    pub time_scale: f64,
    /// How long a target rings before the call fails unanswered, in ms.
    pub ring_timeout_ms: u64,
    /// A call with no keepAlive for this long ends with resultInfo 408/8537, in ms.
    pub keep_alive_timeout_ms: u64,
    /// App-hosted calls the service carries at once; past it, creating one more is refused
    /// with 503 `ServiceUnavailable` in Graph's error format (unlimited when absent).
    pub max_app_hosted_calls: Option<usize>,
    /// Whether the service sends unmixed speaker streams (the anchor's unmixed meeting
    /// audio) to a bot whose blob asks for them; `false` plays a service that sends the
    /// mix only.
    pub unmixed_audio: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            time_scale: 1.0,
            ring_timeout_ms: 30_000,
            keep_alive_timeout_ms: 45 * 60 * 1000,
            max_app_hosted_calls: None,
            unmixed_audio: true,
        }
    }
}

/// What a synthetic participant sends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Voice {
    /// Digital silence.
    #[default]
    Silence,
    /// Sends back what it hears, one frame later.
    Echo,
    /// A sine tone.
    Tone {
        /// Frequency in Hz (20..=7900 at 16 kHz).
        hz: f64,
        /// Level in dBFS (default -12).
        #[serde(default = "default_level")]
        dbfs: f64,
    },
    /// A WAV file (PCM 16-bit, any rate, mono or stereo), looped.
    Wav(PathBuf),
    /// Load testing: sends a pre-encoded Opus loop (no codec work per call; a 1 kHz probe
    /// leaves on every whole second of the media clock) and only counts what it receives.
    /// Alone with the bot in a call, it replaces the conference.
    Load,
    /// Another voice heard through an impaired network path.
    Impaired {
        /// What is said.
        voice: Box<Voice>,
        /// What the network does to it on the way to the bot.
        faults: Faults,
    },
}

/// Network faults on the way from a participant to the bot: loss (random or in bursts),
/// jitter, reordering, duplication, a peer that goes silent or vanishes. Deterministic for
/// a given `seed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Share of packets lost, in percent.
    pub loss_percent: f64,
    /// Mean length of a loss burst in packets (1: independent losses).
    pub burst_length: f64,
    /// Each packet is held back by up to this long (uniform), order kept.
    pub jitter_ms: u32,
    /// Share of packets sent after the packet that follows them, in percent.
    pub reorder_percent: f64,
    /// Share of packets sent twice, in percent.
    pub duplicate_percent: f64,
    /// The participant stops sending this long after media starts.
    pub silent_after_ms: Option<u64>,
    /// ... for this long (forever when absent).
    pub silent_for_ms: Option<u64>,
    /// The participant's media leg ends abruptly this long after media starts (the call
    /// stays; the bot sees its peer leave).
    pub vanish_after_ms: Option<u64>,
    /// Seed of the random choices.
    pub seed: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            loss_percent: 0.0,
            burst_length: 1.0,
            jitter_ms: 0,
            reorder_percent: 0.0,
            duplicate_percent: 0.0,
            silent_after_ms: None,
            silent_for_ms: None,
            vanish_after_ms: None,
            seed: 1,
        }
    }
}

impl Faults {
    fn check(&self, path: &str) -> Result<(), ScenarioError> {
        let bad = |field: &str, reason: &str| ScenarioError::Invalid {
            path: format!("{path}.{field}"),
            reason: reason.into(),
        };
        for (field, v) in [
            ("loss_percent", self.loss_percent),
            ("reorder_percent", self.reorder_percent),
            ("duplicate_percent", self.duplicate_percent),
        ] {
            if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
                return Err(bad(field, "must be between 0 and 100"));
            }
        }
        if !(self.burst_length.is_finite() && (1.0..=1000.0).contains(&self.burst_length)) {
            return Err(bad("burst_length", "must be between 1 and 1000 packets"));
        }
        if self.loss_percent >= 100.0 && self.burst_length > 1.0 {
            return Err(bad("loss_percent", "must be below 100 with bursts"));
        }
        if self.jitter_ms > 1000 {
            return Err(bad("jitter_ms", "must be at most 1000 ms"));
        }
        Ok(())
    }
}

impl Voice {
    /// A short description for the dashboard.
    pub fn describe(&self) -> String {
        match self {
            Voice::Silence => "silence".into(),
            Voice::Echo => "echo".into(),
            Voice::Tone { hz, dbfs } => format!("tone {hz} Hz at {dbfs} dBFS"),
            Voice::Wav(p) => format!("WAV {}", p.display()),
            Voice::Load => "load (pre-encoded Opus)".into(),
            Voice::Impaired { voice, .. } => format!("{} over a faulty network", voice.describe()),
        }
    }

    /// The voice itself, under any network faults.
    pub fn base(&self) -> &Voice {
        match self {
            Voice::Impaired { voice, .. } => voice.base(),
            v => v,
        }
    }

    fn base_mut(&mut self) -> &mut Voice {
        match self {
            Voice::Impaired { voice, .. } => voice.base_mut(),
            v => v,
        }
    }

    /// The network faults on the way to the bot, if any.
    pub fn faults(&self) -> Option<&Faults> {
        match self {
            Voice::Impaired { faults, .. } => Some(faults),
            _ => None,
        }
    }
}

fn default_level() -> f64 {
    -12.0
}

/// How a participant answers when called.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Answer {
    /// Answers after ringing this long.
    AfterMs(u64),
    /// Rejects as busy.
    Busy,
    /// Never answers; the call ends when the ring timeout passes.
    NoAnswer,
}

impl Default for Answer {
    fn default() -> Self {
        Self::AfterMs(300)
    }
}

/// A VoIP user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The user's id (an AAD object id).
    pub id: String,
    /// The name shown in rosters.
    pub display_name: String,
    /// The tenant the user belongs to (default: the first app's).
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// What the user says.
    #[serde(default)]
    pub says: Voice,
    /// How the user answers.
    #[serde(default)]
    pub answer: Answer,
}

/// A phone number reachable over PSTN.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phone {
    /// E.164 number: `+` then up to 15 digits.
    pub number: String,
    /// The caller name shown.
    #[serde(default)]
    pub display_name: Option<String>,
    /// What the callee says.
    #[serde(default)]
    pub says: Voice,
    /// How the callee answers.
    #[serde(default)]
    pub answer: Answer,
}

/// Who waits in a meeting's lobby.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lobby {
    /// Everyone joins directly.
    Nobody,
    /// Guests (identity `guest`) wait to be admitted.
    #[default]
    Guests,
    /// Everyone but the organizer and listed participants waits.
    EveryoneElse,
}

/// A scheduled or channel meeting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meeting {
    /// The chat thread id, e.g. `19:meeting_...@thread.v2`.
    pub thread_id: String,
    /// The message id (`0` for a scheduled meeting, the channel message otherwise).
    #[serde(default = "default_message_id")]
    pub message_id: String,
    /// The organizer's user id.
    pub organizer: String,
    /// Users in the meeting before the bot joins.
    #[serde(default)]
    pub participants: Vec<String>,
    /// Lobby policy.
    #[serde(default)]
    pub lobby: Lobby,
    /// The meeting's title, for people reading the scenario.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The numeric id people dial or type to join (`joinMeetingIdMeetingInfo.joinMeetingId`);
    /// spaces are ignored when matching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_meeting_id: Option<String>,
    /// The passcode a `joinMeetingIdMeetingInfo` must carry, when set. Local use: it is shown
    /// by [`Scenario::describe`] and never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passcode: Option<String>,
}

impl Meeting {
    /// The Teams-style join URL of this meeting (`https://teams.microsoft.com/l/meetup-join/
    /// {threadId}/{messageId}?context={"Tid":..,"Oid":..}`, percent-encoded): what a client
    /// parses into `chatInfo` + `organizerMeetingInfo`, as Graph's SDKs do with a real one.
    /// `tenant_id` is the organizer's tenant.
    pub fn join_web_url(&self, tenant_id: &str) -> String {
        let context = format!("{{\"Tid\":\"{tenant_id}\",\"Oid\":\"{}\"}}", self.organizer);
        format!(
            "{JOIN_WEB_URL_PREFIX}{}/{}?context={}",
            percent_encode(&self.thread_id),
            percent_encode(&self.message_id),
            percent_encode(&context)
        )
    }

    /// Whether `join_meeting_id` names this meeting (spaces ignored, as people type them).
    pub fn has_join_meeting_id(&self, join_meeting_id: &str) -> bool {
        let digits = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        self.join_meeting_id
            .as_deref()
            .is_some_and(|mine| !mine.is_empty() && digits(mine) == digits(join_meeting_id))
    }
}

/// Where Teams meeting join URLs start.
pub const JOIN_WEB_URL_PREFIX: &str = "https://teams.microsoft.com/l/meetup-join/";

pub use signalling::calls::JoinWebUrl;

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

fn default_message_id() -> String {
    "0".into()
}

/// Why a scenario was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax or shape error (the message names line, column and key).
    #[error("scenario is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// JSON syntax or shape error.
    #[error("scenario is not valid JSON at line {line}, column {column}: {source}")]
    Json {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Details.
        #[source]
        source: serde_json::Error,
    },
    /// A value is well-formed but not acceptable.
    #[error("scenario {path}: {reason}")]
    Invalid {
        /// Where, e.g. `users[2].says.tone.hz`.
        path: String,
        /// Why.
        reason: String,
    },
}

/// The largest scenario file accepted.
pub const MAX_SCENARIO_BYTES: usize = 1024 * 1024;

impl Default for Scenario {
    fn default() -> Self {
        Self {
            settings: Settings::default(),
            apps: vec![AppRegistration {
                app_id: DEFAULT_APP_ID.into(),
                secret: DEFAULT_APP_SECRET.into(),
                tenant_id: DEFAULT_TENANT.into(),
                roles: ALL_PERMISSIONS.iter().map(|s| (*s).to_owned()).collect(),
            }],
            users: vec![
                user(
                    "112f7296-5fa4-42ca-bae8-6a692b15d4b8",
                    "John",
                    Voice::Tone {
                        hz: 440.0,
                        dbfs: -12.0,
                    },
                ),
                user(
                    "98da8a1a-1b87-452c-a713-65d3f10b5555",
                    "Ada",
                    Voice::Tone {
                        hz: 660.0,
                        dbfs: -12.0,
                    },
                ),
                user("550fae72-d251-43ec-868c-373732c2704f", "Grace", Voice::Echo),
                user(
                    "1ac2c3c1-4f2a-46cd-a1b4-2b4a3e0a6b7c",
                    "Linus",
                    Voice::Silence,
                ),
            ],
            phones: vec![Phone {
                number: "+12345678901".into(),
                display_name: Some("Front desk".into()),
                says: Voice::Echo,
                answer: Answer::default(),
            }],
            meetings: vec![Meeting {
                thread_id: "19:meeting_Y2FsbGluZy1ib3QtZGVtbw@thread.v2".into(),
                message_id: "0".into(),
                organizer: "112f7296-5fa4-42ca-bae8-6a692b15d4b8".into(),
                participants: vec![
                    "112f7296-5fa4-42ca-bae8-6a692b15d4b8".into(),
                    "98da8a1a-1b87-452c-a713-65d3f10b5555".into(),
                ],
                lobby: Lobby::Guests,
                subject: Some("Botmedia demo meeting".into()),
                join_meeting_id: Some("314 159 265 358".into()),
                passcode: Some("demo42".into()),
            }],
        }
    }
}

fn user(id: &str, name: &str, says: Voice) -> User {
    User {
        id: id.into(),
        display_name: name.into(),
        tenant_id: None,
        says,
        answer: Answer::default(),
    }
}

impl Scenario {
    /// Reads a scenario file: JSON if its name ends in `.json`, TOML otherwise. Relative
    /// WAV paths are resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let read = |source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        if meta.len() > MAX_SCENARIO_BYTES as u64 {
            return Err(ScenarioError::Invalid {
                path: path.display().to_string(),
                reason: format!("file is larger than {MAX_SCENARIO_BYTES} bytes"),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let mut scenario = if json {
            Self::from_json(&text)?
        } else {
            Self::from_toml(&text)?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        for voice in scenario
            .users
            .iter_mut()
            .map(|u| &mut u.says)
            .chain(scenario.phones.iter_mut().map(|p| &mut p.says))
        {
            if let Voice::Wav(p) = voice.base_mut()
                && p.is_relative()
            {
                *p = base.join(&*p);
            }
        }
        Ok(scenario)
    }

    /// Parses and checks TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ScenarioError> {
        Self::check_size(text)?;
        let s: Self = toml::from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    /// Parses and checks JSON text.
    pub fn from_json(text: &str) -> Result<Self, ScenarioError> {
        Self::check_size(text)?;
        let s: Self = serde_json::from_str(text).map_err(|source| ScenarioError::Json {
            line: source.line(),
            column: source.column(),
            source,
        })?;
        s.validate()?;
        Ok(s)
    }

    fn check_size(text: &str) -> Result<(), ScenarioError> {
        if text.len() > MAX_SCENARIO_BYTES {
            return Err(ScenarioError::Invalid {
                path: "(file)".into(),
                reason: format!("larger than {MAX_SCENARIO_BYTES} bytes"),
            });
        }
        Ok(())
    }

    /// Checks what serde cannot: ranges, E.164 numbers, references between sections,
    /// duplicates.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |path: String, reason: &str| {
            Err(ScenarioError::Invalid {
                path,
                reason: reason.to_owned(),
            })
        };
        let s = &self.settings;
        if !(s.time_scale.is_finite() && (0.01..=10_000.0).contains(&s.time_scale)) {
            return bad(
                "settings.time_scale".into(),
                "must be between 0.01 and 10000",
            );
        }
        if s.ring_timeout_ms == 0 || s.keep_alive_timeout_ms == 0 {
            return bad("settings".into(), "timeouts must be positive");
        }
        if self.apps.is_empty() {
            return bad("apps".into(), "at least one app registration is needed");
        }
        let mut app_ids = BTreeSet::new();
        for (i, a) in self.apps.iter().enumerate() {
            if a.app_id.is_empty() || a.secret.is_empty() || a.tenant_id.is_empty() {
                return bad(
                    format!("apps[{i}]"),
                    "app_id, secret and tenant_id must not be empty",
                );
            }
            if !app_ids.insert(&a.app_id) {
                return bad(format!("apps[{i}].app_id"), "duplicated app id");
            }
        }
        let mut user_ids = BTreeSet::new();
        for (i, u) in self.users.iter().enumerate() {
            if u.id.is_empty() {
                return bad(format!("users[{i}].id"), "must not be empty");
            }
            if !user_ids.insert(u.id.as_str()) {
                return bad(format!("users[{i}].id"), "duplicated user id");
            }
            check_voice(&u.says, &format!("users[{i}].says"))?;
        }
        let mut numbers = BTreeSet::new();
        for (i, p) in self.phones.iter().enumerate() {
            if !is_e164(&p.number) {
                return bad(
                    format!("phones[{i}].number"),
                    "must be E.164: + then 1 to 15 digits, not starting with 0",
                );
            }
            if !numbers.insert(p.number.as_str()) {
                return bad(format!("phones[{i}].number"), "duplicated number");
            }
            check_voice(&p.says, &format!("phones[{i}].says"))?;
        }
        let mut threads = BTreeSet::new();
        let mut join_ids = BTreeSet::new();
        for (i, m) in self.meetings.iter().enumerate() {
            if let Some(id) = &m.join_meeting_id {
                let digits: String = id.chars().filter(|c| !c.is_whitespace()).collect();
                if digits.is_empty() {
                    return bad(
                        format!("meetings[{i}].join_meeting_id"),
                        "must not be empty",
                    );
                }
                if !join_ids.insert(digits) {
                    return bad(
                        format!("meetings[{i}].join_meeting_id"),
                        "duplicated join meeting id",
                    );
                }
            } else if m.passcode.is_some() {
                return bad(
                    format!("meetings[{i}].passcode"),
                    "needs a join_meeting_id to go with it",
                );
            }
            if m.thread_id.is_empty() {
                return bad(format!("meetings[{i}].thread_id"), "must not be empty");
            }
            if !threads.insert((&m.thread_id, &m.message_id)) {
                return bad(
                    format!("meetings[{i}]"),
                    "duplicated thread_id and message_id",
                );
            }
            if !user_ids.contains(m.organizer.as_str()) {
                return bad(
                    format!("meetings[{i}].organizer"),
                    "is not one of the users",
                );
            }
            for (j, p) in m.participants.iter().enumerate() {
                if !user_ids.contains(p.as_str()) {
                    return bad(
                        format!("meetings[{i}].participants[{j}]"),
                        "is not one of the users",
                    );
                }
            }
        }
        Ok(())
    }

    /// The user with this id.
    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    /// The phone with this number.
    pub fn phone(&self, number: &str) -> Option<&Phone> {
        self.phones.iter().find(|p| p.number == number)
    }

    /// The meeting with this thread and message id.
    pub fn meeting(&self, thread_id: &str, message_id: &str) -> Option<&Meeting> {
        self.meetings
            .iter()
            .find(|m| m.thread_id == thread_id && m.message_id == message_id)
    }
}

fn check_voice(v: &Voice, path: &str) -> Result<(), ScenarioError> {
    if let Voice::Impaired { voice, faults } = v {
        faults.check(&format!("{path}.impaired.faults"))?;
        if matches!(**voice, Voice::Impaired { .. }) {
            return Err(ScenarioError::Invalid {
                path: format!("{path}.impaired.voice"),
                reason: "one set of faults per voice".into(),
            });
        }
        return check_voice(voice, &format!("{path}.impaired.voice"));
    }
    if let Voice::Tone { hz, dbfs } = v {
        if !(hz.is_finite() && (20.0..=7900.0).contains(hz)) {
            return Err(ScenarioError::Invalid {
                path: format!("{path}.tone.hz"),
                reason: "must be between 20 and 7900 Hz".into(),
            });
        }
        if !(dbfs.is_finite() && (-96.0..=0.0).contains(dbfs)) {
            return Err(ScenarioError::Invalid {
                path: format!("{path}.tone.dbfs"),
                reason: "must be between -96 and 0 dBFS".into(),
            });
        }
    }
    Ok(())
}

/// Whether `s` is an E.164 number: `+`, then 1 to 15 digits, the first not 0.
pub fn is_e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| {
        (1..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_scenario_is_valid_and_round_trips_through_toml_and_json() {
        let s = Scenario::default();
        s.validate().unwrap();
        let toml_text = toml::to_string(&s).unwrap();
        assert_eq!(Scenario::from_toml(&toml_text).unwrap(), s);
        let json_text = serde_json::to_string(&s).unwrap();
        assert_eq!(Scenario::from_json(&json_text).unwrap(), s);
    }

    #[test]
    fn documented_example_parses() {
        let doc = include_str!("scenario.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.strip_prefix("//! ").unwrap_or("").to_owned() + "\n")
            .collect();
        let s = Scenario::from_toml(&example).unwrap();
        assert_eq!(s.users[0].answer, Answer::AfterMs(500));
        assert_eq!(s.meetings[0].lobby, Lobby::Guests);
        assert_eq!(s.phones[0].says, Voice::Echo);
    }

    #[test]
    fn bad_scenarios_name_what_is_wrong() {
        for (text, needle) in [
            ("[settings]\ntime_scale = -1.0", "settings.time_scale"),
            ("[[phones]]\nnumber = \"12345\"", "phones[0].number"),
            (
                "[[users]]\nid = \"a\"\ndisplay_name = \"A\"\nsays = { tone = { hz = 1e9 } }",
                "users[0].says.tone.hz",
            ),
            (
                "[[meetings]]\nthread_id = \"t\"\norganizer = \"nobody\"",
                "meetings[0].organizer",
            ),
            (
                "[[users]]\nid = \"a\"\ndisplay_name = \"A\"\nsays = \"shout\"",
                "shout",
            ),
            ("[settings]\nspeed = 2", "speed"),
            ("apps = []", "apps"),
            ("[[users]]\nid = 5", "id"),
            ("[[users", "TOML"),
        ] {
            let err = Scenario::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn faults_parse_and_are_checked() {
        let s = Scenario::from_toml(
            "meetings = []\n[[users]]\nid = \"a\"\ndisplay_name = \"A\"\nsays = { impaired = { voice = \"load\", faults = { loss_percent = 5.0, burst_length = 2.0, jitter_ms = 30 } } }",
        )
        .expect("valid");
        let v = &s.users[0].says;
        assert_eq!(v.base(), &Voice::Load);
        let f = v.faults().expect("faults");
        assert_eq!(
            (f.loss_percent, f.burst_length, f.jitter_ms, f.seed),
            (5.0, 2.0, 30, 1)
        );
        for (faults, path) in [
            (
                "loss_percent = 101.0",
                "users[0].says.impaired.faults.loss_percent",
            ),
            (
                "burst_length = 0.5",
                "users[0].says.impaired.faults.burst_length",
            ),
            (
                "jitter_ms = 5000",
                "users[0].says.impaired.faults.jitter_ms",
            ),
        ] {
            let text = format!(
                "meetings = []\n[[users]]\nid = \"a\"\ndisplay_name = \"A\"\nsays = {{ impaired = {{ voice = \"load\", faults = {{ {faults} }} }} }}"
            );
            match Scenario::from_toml(&text) {
                Err(ScenarioError::Invalid { path: p, .. }) => assert_eq!(p, path),
                other => panic!("{faults}: {other:?}"),
            }
        }
    }

    #[test]
    fn e164() {
        assert!(is_e164("+12345678901"));
        assert!(is_e164("+1"));
        assert!(!is_e164("+"));
        assert!(!is_e164("+0123"));
        assert!(!is_e164("12345"));
        assert!(!is_e164("+1234567890123456"));
        assert!(!is_e164("+1 234"));
    }
}
