//! What `botmedia serve` runs from: a TOML file overridden by environment variables.
//!
//! The bot's own settings use [`BotSettings::from_vars`]'s `BOTMEDIA_*` names; the file's
//! `[bot]` table holds the same values under short keys and a variable set in the
//! environment wins over the file. Secrets never come from the file itself: the app secret
//! is `BOTMEDIA_APP_SECRET`, or read from the file named by `BOTMEDIA_APP_SECRET_FILE` or
//! `bot.app_secret_file`.

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use botmedia::{BotSettings, Pcm16K};
use serde::{Deserialize, Serialize};

/// The largest config or secret file read, in bytes.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The API's default address: loopback, since the API is not authenticated.
pub const DEFAULT_API_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9450);

/// What the bot does with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Behaviour {
    /// Sends back every frame it hears.
    Echo,
    /// Writes what it hears to `{record.dir}/{call id}.wav` as it comes.
    Record,
    /// Plays `play.prompt`, looped or once then hangs up (`play.repeat`).
    Play,
    /// Declines an incoming call (not for calls the bot places).
    Reject,
}

impl Behaviour {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::Echo => "echo",
            Behaviour::Record => "record",
            Behaviour::Play => "play",
            Behaviour::Reject => "reject",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text.trim() {
            "echo" => Behaviour::Echo,
            "record" => Behaviour::Record,
            "play" => Behaviour::Play,
            "reject" => Behaviour::Reject,
            _ => return None,
        })
    }
}

/// What `play` does at the prompt's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Repeat {
    /// Starts over.
    #[default]
    Loop,
    /// Hangs up.
    Once,
}

/// A prompt read at start: 20 ms 16 kHz mono frames.
#[derive(Clone, Debug)]
pub struct Prompt {
    /// The file it came from.
    pub path: PathBuf,
    /// Its frames (never empty).
    pub frames: Arc<[Pcm16K]>,
}

/// How incoming calls are handled: a default and rules by caller.
#[derive(Clone, Debug)]
pub struct AnswerPolicy {
    /// For callers no rule names.
    pub default: Behaviour,
    /// `(caller id, behaviour)`: a user id or phone number the caller's identity carries;
    /// the first match wins.
    pub rules: Vec<(String, Behaviour)>,
}

impl AnswerPolicy {
    /// The behaviour for a caller whose identities carry these ids.
    pub fn for_caller(&self, ids: &[&str]) -> Behaviour {
        self.rules
            .iter()
            .find(|(caller, _)| ids.contains(&caller.as_str()))
            .map_or(self.default, |(_, b)| *b)
    }
}

/// Everything `botmedia serve` needs, resolved from the file and the environment.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The bot (Graph client, webhook, media platform).
    pub bot: BotSettings,
    /// This instance's id in a fleet (`bot.instance_id`, `BOTMEDIA_INSTANCE_ID`).
    pub instance_id: Option<String>,
    /// Where the HTTP API listens.
    pub api_listen: SocketAddr,
    /// Incoming calls.
    pub answer: AnswerPolicy,
    /// The behaviour of a call placed through the API that names none.
    pub call_behaviour: Behaviour,
    /// The application instance PSTN calls are placed from, unless the request names one.
    pub application_instance_id: Option<String>,
    /// Where `record` writes.
    pub record_dir: PathBuf,
    /// Play the prompt once at the start of a recorded call (a greeting).
    pub record_greeting: bool,
    /// Unmixed speaker streams a recorded meeting asks for (`record.unmixed`, 0 to 4); with
    /// any, it writes one WAV per participant and a timeline beside the mix's.
    pub record_unmixed: u8,
    /// The prompt of `play` (and of a recording's greeting).
    pub prompt: Option<Prompt>,
    /// What `play` does at the prompt's end.
    pub play_repeat: Repeat,
    /// How long running calls may continue once draining started.
    pub drain_grace: Duration,
    /// How long to wait for the calls hung up at the end of the grace to terminate.
    pub hangup_timeout: Duration,
    /// Calls longer than this are hung up.
    pub max_call: Option<Duration>,
    /// Calls at once; beyond it incoming calls are rejected busy and `POST /calls` gets 503.
    pub max_calls: Option<usize>,
}

/// Why the configuration cannot be used. Each names the key or variable at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is too large to be what it should be.
    #[error("{path} is larger than {max} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The bound.
        max: u64,
    },
    /// The TOML does not parse or holds an unknown key or a value of the wrong kind.
    #[error("{}: {message}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// toml's message: the line, the key and what is wrong.
        message: String,
    },
    /// A key's or variable's value cannot work.
    #[error("{key}: {problem}")]
    Invalid {
        /// `section.key` in the file, or the environment variable.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    drain_grace_seconds: Option<u64>,
    hangup_timeout_seconds: Option<u64>,
    max_call_seconds: Option<u64>,
    max_calls: Option<usize>,
    #[serde(default)]
    bot: FileBot,
    #[serde(default)]
    api: FileApi,
    #[serde(default)]
    answer: FileAnswer,
    #[serde(default)]
    calls: FileCalls,
    #[serde(default)]
    record: FileRecord,
    #[serde(default)]
    play: FilePlay,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBot {
    instance_id: Option<String>,
    emulator: Option<String>,
    app_id: Option<String>,
    tenant_id: Option<String>,
    /// Refused with a message: secrets do not belong in the file.
    app_secret: Option<toml::Value>,
    app_secret_file: Option<PathBuf>,
    callback_url: Option<String>,
    shared_callback_url: Option<String>,
    webhook_listen: Option<String>,
    graph_url: Option<String>,
    authority: Option<String>,
    openid_configuration_url: Option<String>,
    media_listen: Option<String>,
    public_mp_uri: Option<String>,
    ice_addresses: Option<Vec<String>>,
    ice_ports: Option<String>,
    ice_public_addresses: Option<Vec<String>>,
    shared_udp: Option<bool>,
    lean_media: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileApi {
    listen: Option<SocketAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAnswer {
    behaviour: Option<Behaviour>,
    #[serde(default)]
    rule: Vec<FileRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRule {
    caller: String,
    behaviour: Behaviour,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCalls {
    behaviour: Option<Behaviour>,
    application_instance_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRecord {
    dir: Option<PathBuf>,
    greeting: Option<bool>,
    #[serde(default, deserialize_with = "unmixed_streams")]
    unmixed: Option<u8>,
}

/// `record.unmixed`, refused at parse time so the message names its line.
fn unmixed_streams<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    let n = i64::deserialize(d)?;
    u8::try_from(n)
        .ok()
        .filter(|n| *n <= botmedia::session::MAX_UNMIXED_STREAMS)
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{n} speaker streams: from 0 (the mix only) to {}",
                botmedia::session::MAX_UNMIXED_STREAMS
            ))
        })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePlay {
    prompt: Option<PathBuf>,
    repeat: Option<Repeat>,
}

/// The `[bot]` keys and the variables they stand for.
const BOT_KEYS: &[(&str, &str)] = &[
    ("instance_id", "BOTMEDIA_INSTANCE_ID"),
    ("emulator", "BOTMEDIA_EMULATOR"),
    ("app_id", "BOTMEDIA_APP_ID"),
    ("tenant_id", "BOTMEDIA_TENANT_ID"),
    ("callback_url", "BOTMEDIA_CALLBACK_URL"),
    ("shared_callback_url", "BOTMEDIA_SHARED_CALLBACK_URL"),
    ("webhook_listen", "BOTMEDIA_WEBHOOK_LISTEN"),
    ("graph_url", "BOTMEDIA_GRAPH_URL"),
    ("authority", "BOTMEDIA_AUTHORITY"),
    (
        "openid_configuration_url",
        "BOTMEDIA_OPENID_CONFIGURATION_URL",
    ),
    ("media_listen", "BOTMEDIA_MEDIA_LISTEN"),
    ("public_mp_uri", "BOTMEDIA_PUBLIC_MP_URI"),
    ("ice_addresses", "BOTMEDIA_ICE_ADDRESSES"),
    ("ice_ports", "BOTMEDIA_ICE_PORTS"),
    ("ice_public_addresses", "BOTMEDIA_ICE_PUBLIC_ADDRESSES"),
    ("shared_udp", "BOTMEDIA_SHARED_UDP"),
    ("lean_media", "BOTMEDIA_LEAN_MEDIA"),
];

impl ServeConfig {
    /// Reads `path` (when given) and the process environment, and loads the prompt.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let text = match path {
            Some(p) => Some(read_bounded(p)?),
            None => None,
        };
        Self::resolve(
            text.as_deref().zip(path),
            |name| std::env::var(name).ok(),
            read_bounded,
        )
    }

    /// The configuration from `file` (its text and path) overridden by the variables `env`
    /// looks up; `read` reads the secret and prompt files.
    pub fn resolve(
        file: Option<(&str, &Path)>,
        env: impl Fn(&str) -> Option<String>,
        read: impl Fn(&Path) -> Result<String, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let parsed: File = match file {
            Some((text, path)) => toml::from_str(text).map_err(|e| ConfigError::Toml {
                path: path.to_owned(),
                message: toml_message(text, &e),
            })?,
            None => File::default(),
        };
        let bot = bot_settings(&parsed.bot, &env, &read)?;
        let instance_id = bot.instance_id.clone();

        let api_listen = match env("BOTMEDIA_API_LISTEN") {
            Some(v) => v.trim().parse().map_err(|e| {
                invalid(
                    "BOTMEDIA_API_LISTEN",
                    format!("`{v}` is not an address like 127.0.0.1:9450: {e}"),
                )
            })?,
            None => parsed.api.listen.unwrap_or(DEFAULT_API_LISTEN),
        };

        let default = match env("BOTMEDIA_ANSWER") {
            Some(v) => Behaviour::parse(&v).ok_or_else(|| {
                invalid(
                    "BOTMEDIA_ANSWER",
                    format!("`{v}` is none of echo, record, play, reject"),
                )
            })?,
            None => parsed.answer.behaviour.unwrap_or(Behaviour::Echo),
        };
        let rules: Vec<(String, Behaviour)> = parsed
            .answer
            .rule
            .into_iter()
            .map(|r| (r.caller, r.behaviour))
            .collect();
        if let Some(i) = rules.iter().position(|(c, _)| c.trim().is_empty()) {
            return Err(invalid(
                format!("answer.rule[{i}].caller"),
                "is empty (a user id or phone number)",
            ));
        }
        let call_behaviour = parsed.calls.behaviour.unwrap_or(Behaviour::Echo);
        if call_behaviour == Behaviour::Reject {
            return Err(invalid(
                "calls.behaviour",
                "`reject` is for incoming calls only; use echo, record or play",
            ));
        }

        let record_dir = env("BOTMEDIA_RECORD_DIR")
            .map(PathBuf::from)
            .or(parsed.record.dir)
            .unwrap_or_else(|| PathBuf::from("recordings"));
        let record_greeting = parsed.record.greeting.unwrap_or(false);
        let record_unmixed = parsed.record.unmixed.unwrap_or(0);

        let (prompt_key, prompt_path) = match env("BOTMEDIA_PLAY_PROMPT") {
            Some(p) => ("BOTMEDIA_PLAY_PROMPT", Some(PathBuf::from(p))),
            None => ("play.prompt", parsed.play.prompt),
        };
        let prompt = match prompt_path {
            Some(path) => Some(load_prompt(prompt_key, path)?),
            None => None,
        };
        let uses_prompt = default == Behaviour::Play
            || call_behaviour == Behaviour::Play
            || rules.iter().any(|(_, b)| *b == Behaviour::Play)
            || record_greeting;
        if uses_prompt && prompt.is_none() {
            return Err(invalid(
                "play.prompt",
                "is not set, but a behaviour plays it (play, or record.greeting = true); \
                 name a WAV file (or set BOTMEDIA_PLAY_PROMPT)",
            ));
        }

        let drain_grace = match env("BOTMEDIA_DRAIN_GRACE_SECONDS") {
            Some(v) => seconds("BOTMEDIA_DRAIN_GRACE_SECONDS", &v)?,
            None => parsed.drain_grace_seconds.unwrap_or(30),
        };
        let hangup_timeout = parsed.hangup_timeout_seconds.unwrap_or(10);
        for (key, v) in [
            ("drain_grace_seconds", drain_grace),
            ("hangup_timeout_seconds", hangup_timeout),
        ] {
            if v > 24 * 3600 {
                return Err(invalid(key, format!("{v} is more than a day")));
            }
        }
        if hangup_timeout == 0 {
            return Err(invalid("hangup_timeout_seconds", "must be at least 1"));
        }
        if parsed.max_call_seconds == Some(0) {
            return Err(invalid(
                "max_call_seconds",
                "must be at least 1 (or absent)",
            ));
        }
        if parsed.max_calls == Some(0) {
            return Err(invalid("max_calls", "must be at least 1 (or absent)"));
        }

        Ok(ServeConfig {
            bot,
            instance_id,
            api_listen,
            answer: AnswerPolicy { default, rules },
            call_behaviour,
            application_instance_id: parsed.calls.application_instance_id,
            record_dir,
            record_greeting,
            record_unmixed,
            prompt,
            play_repeat: parsed.play.repeat.unwrap_or_default(),
            drain_grace: Duration::from_secs(drain_grace),
            hangup_timeout: Duration::from_secs(hangup_timeout),
            max_call: parsed.max_call_seconds.map(Duration::from_secs),
            max_calls: parsed.max_calls,
        })
    }
}

/// The bot's settings: `BotSettings::from_vars` over the environment, then the `[bot]` table.
fn bot_settings(
    file: &FileBot,
    env: &impl Fn(&str) -> Option<String>,
    read: &impl Fn(&Path) -> Result<String, ConfigError>,
) -> Result<BotSettings, ConfigError> {
    if file.app_secret.is_some() {
        return Err(invalid(
            "bot.app_secret",
            "secrets are not read from the config file; set BOTMEDIA_APP_SECRET, or name a \
             file holding it with bot.app_secret_file (or BOTMEDIA_APP_SECRET_FILE)",
        ));
    }
    let mut from_file: HashMap<&'static str, (&'static str, String)> = HashMap::new();
    let mut put = |key: &'static str, value: Option<String>| {
        if let Some(v) = value {
            let var = BOT_KEYS
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .unwrap_or_default();
            from_file.insert(var, (key, v));
        }
    };
    put("instance_id", file.instance_id.clone());
    put("emulator", file.emulator.clone());
    put("app_id", file.app_id.clone());
    put("tenant_id", file.tenant_id.clone());
    put("callback_url", file.callback_url.clone());
    put("shared_callback_url", file.shared_callback_url.clone());
    put("webhook_listen", file.webhook_listen.clone());
    put("graph_url", file.graph_url.clone());
    put("authority", file.authority.clone());
    put(
        "openid_configuration_url",
        file.openid_configuration_url.clone(),
    );
    put("media_listen", file.media_listen.clone());
    put("public_mp_uri", file.public_mp_uri.clone());
    put(
        "ice_addresses",
        file.ice_addresses.as_ref().map(|l| l.join(",")),
    );
    put("ice_ports", file.ice_ports.clone());
    put(
        "ice_public_addresses",
        file.ice_public_addresses.as_ref().map(|l| l.join(",")),
    );
    put("shared_udp", file.shared_udp.map(|b| b.to_string()));
    put("lean_media", file.lean_media.map(|b| b.to_string()));

    let secret = match env("BOTMEDIA_APP_SECRET") {
        Some(s) => Some(s),
        None => {
            let source = env("BOTMEDIA_APP_SECRET_FILE")
                .map(|p| ("BOTMEDIA_APP_SECRET_FILE", PathBuf::from(p)))
                .or_else(|| {
                    file.app_secret_file
                        .clone()
                        .map(|p| ("bot.app_secret_file", p))
                });
            match source {
                Some((key, path)) => {
                    let text =
                        read(&path).map_err(|e| invalid(key, format!("the secret file: {e}")))?;
                    let secret = text.trim().to_owned();
                    if secret.is_empty() {
                        return Err(invalid(key, format!("{} is empty", path.display())));
                    }
                    Some(secret)
                }
                None => None,
            }
        }
    };
    let lookup = |name: &str| -> Option<String> {
        if name == "BOTMEDIA_APP_SECRET" {
            return secret.clone();
        }
        env(name).or_else(|| from_file.get(name).map(|(_, v)| v.clone()))
    };
    let settings = BotSettings::from_vars(lookup).map_err(|e| {
        // Name the key the value came from: the file's when the environment has none.
        let key = match (env(e.var), from_file.get(e.var)) {
            (None, Some((key, _))) => format!("bot.{key}"),
            (None, None) if e.var == "BOTMEDIA_APP_SECRET" => {
                "BOTMEDIA_APP_SECRET (or BOTMEDIA_APP_SECRET_FILE, bot.app_secret_file)".into()
            }
            (None, None) => format!(
                "{} (or bot.{})",
                e.var,
                BOT_KEYS
                    .iter()
                    .find(|(_, v)| *v == e.var)
                    .map_or("?", |(k, _)| *k)
            ),
            _ => e.var.to_owned(),
        };
        invalid(key, e.problem)
    })?;
    if settings.webhook_listen.is_none() {
        return Err(invalid(
            "bot.webhook_listen",
            "is not set: `botmedia serve` serves the webhook itself (set it, or \
             BOTMEDIA_WEBHOOK_LISTEN, say 0.0.0.0:9441 with bot.callback_url its public URL)",
        ));
    }
    Ok(settings)
}

fn seconds(key: &str, text: &str) -> Result<u64, ConfigError> {
    text.trim().parse().map_err(|e| {
        invalid(
            key,
            format!("`{text}` is not a whole number of seconds: {e}"),
        )
    })
}

fn load_prompt(key: &str, path: PathBuf) -> Result<Prompt, ConfigError> {
    let frames = botmedia::wav::Wav::read_frames(&path)
        .map_err(|e| invalid(key, format!("{}: {e}", path.display())))?;
    if frames.is_empty() {
        return Err(invalid(key, format!("{} holds no audio", path.display())));
    }
    Ok(Prompt {
        path,
        frames: frames.into(),
    })
}

/// Reads a whole text file, bounded by [`MAX_FILE_BYTES`].
pub fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(read_err)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
            max: MAX_FILE_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "not UTF-8 (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        ))
    })
}

/// toml's message led by the key it is about (`api.listen`) and the line, when the error
/// points into a `key = value` line.
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    let Some(at) = e.span().map(|s| s.start).filter(|s| *s <= text.len()) else {
        return e.to_string().trim_end().to_owned();
    };
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_no = text[..at].matches('\n').count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    let Some((key, _)) = line
        .split_once('=')
        .filter(|(k, _)| !k.trim().starts_with('['))
    else {
        return format!("line {line_no}: {message}");
    };
    // The table the line sits in: the last `[header]` above it.
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|h| h.trim_matches(|c| c == '[' || c == ']').trim());
    let key = key.trim();
    let key = match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_owned(),
    };
    format!("`{key}` (line {line_no}): {message}")
}
