//! `botmedia call`: one app-hosted call placed by a [`botmedia::Bot`] against the emulator or
//! Graph, its audio played from a WAV, recorded to one or echoed, its events printed as
//! lines or JSON.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use botmedia::graph::calls::CreateError;
use botmedia::graph::client::ApiError;
use botmedia::graph::model::{Field, IdentitySet, Participant, ResultCode, ResultInfo};
use botmedia::graph::token::TokenError;
use botmedia::wav::{Wav, WavRecorder};
use botmedia::{
    AudioSocketEvent, Bot, BotError, BotSettings, CallEvent, CallItem, CallRequest, CallState,
    FrameSource, Pcm16K,
};
use clap::{ArgGroup, Args};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::CliError;

/// Where `botmedia emulator` listens by default.
const DEFAULT_EMULATOR: &str = BotSettings::LOCAL_EMULATOR;
/// How long the service has to confirm the end of a call the bot hung up.
const HANG_UP_WAIT: Duration = Duration::from_secs(10);

#[derive(Args)]
#[command(group(
    ArgGroup::new("target")
        .args(["users", "phone", "meeting_url", "meeting_thread", "meeting_id"])
        .multiple(false)
))]
pub(super) struct CallArgs {
    /// Call this directory user; repeat for a group call.
    #[arg(long = "user", value_name = "ID")]
    users: Vec<String>,
    /// Call this phone number (E.164), from the application instance --app-instance.
    #[arg(long, value_name = "+E164", requires = "app_instance")]
    phone: Option<String>,
    /// The bot's phone-enabled application instance (resource account) id, for --phone.
    #[arg(long, value_name = "ID")]
    app_instance: Option<String>,
    /// Join the meeting of this Teams join URL (`.../l/meetup-join/...?context=...`).
    #[arg(long, value_name = "URL")]
    meeting_url: Option<String>,
    /// Join the meeting of this chat thread (`19:meeting_...@thread.v2`), with --organizer.
    #[arg(long, value_name = "ID", requires = "organizer")]
    meeting_thread: Option<String>,
    /// The meeting's chat message id (`0` for a scheduled meeting).
    #[arg(
        long,
        value_name = "ID",
        default_value = "0",
        requires = "meeting_thread"
    )]
    meeting_message: String,
    /// The meeting organizer's user id, for --meeting-thread.
    #[arg(long, value_name = "ID", requires = "meeting_thread")]
    organizer: Option<String>,
    /// The organizer's tenant (the app's tenant by default).
    #[arg(long, value_name = "ID", requires = "meeting_thread")]
    organizer_tenant: Option<String>,
    /// Join the meeting with this join id (the invitation's "Meeting ID").
    #[arg(long, value_name = "ID")]
    meeting_id: Option<String>,
    /// The meeting's passcode, for --meeting-id.
    #[arg(long, value_name = "PASSCODE", requires = "meeting_id")]
    passcode: Option<String>,
    /// Join the meeting as a guest shown with this name.
    #[arg(long, value_name = "NAME")]
    guest: Option<String>,

    /// Send this WAV file's audio (any rate and channel count) once the media connects.
    #[arg(long, value_name = "WAV")]
    play: Option<PathBuf>,
    /// Write what the bot hears to this WAV file (16 kHz mono).
    #[arg(long, value_name = "WAV")]
    record: Option<PathBuf>,
    /// Send every received frame back.
    #[arg(long, conflicts_with = "play")]
    echo: bool,
    /// Hang up after this many seconds, 1 to 604800 (runs until the call ends or Ctrl-C
    /// otherwise).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=604_800))]
    seconds: Option<u64>,
    /// Print the call's events as JSON lines.
    #[arg(long)]
    json: bool,

    /// Base URL of an emulator (`botmedia emulator`); the default when neither this, --app-id
    /// nor BOTMEDIA_EMULATOR / BOTMEDIA_APP_ID is set is http://127.0.0.1:8440. With it,
    /// BOTMEDIA_* variables are ignored.
    #[arg(long, value_name = "URL")]
    emulator: Option<String>,
    /// The Graph API base (https://graph.microsoft.com/v1.0). [env: BOTMEDIA_GRAPH_URL]
    #[arg(long, value_name = "URL")]
    graph_url: Option<String>,
    /// The token endpoint, `{tenant}` substituted. [env: BOTMEDIA_AUTHORITY]
    #[arg(long, value_name = "URL")]
    authority: Option<String>,
    /// The OpenID configuration of the service's callback tokens.
    /// [env: BOTMEDIA_OPENID_CONFIGURATION_URL]
    #[arg(long, value_name = "URL")]
    openid_configuration_url: Option<String>,
    /// The app's id. [env: BOTMEDIA_APP_ID]
    #[arg(long, value_name = "ID")]
    app_id: Option<String>,
    /// The app's tenant. [env: BOTMEDIA_TENANT_ID]
    #[arg(long, value_name = "ID")]
    tenant: Option<String>,
    /// The environment variable holding the app's client secret [default:
    /// BOTMEDIA_APP_SECRET; an emulator's built-in secret unless this is given].
    #[arg(long, value_name = "NAME")]
    app_secret_env: Option<String>,
    /// The webhook's public URL. [env: BOTMEDIA_CALLBACK_URL]
    #[arg(long, value_name = "URL")]
    callback_url: Option<String>,
    /// Where the bot serves its webhook (a free loopback port with an emulator).
    /// [env: BOTMEDIA_WEBHOOK_LISTEN]
    #[arg(long, value_name = "ADDR")]
    webhook_listen: Option<String>,
    /// Where the media endpoint listens. [env: BOTMEDIA_MEDIA_LISTEN]
    #[arg(long, value_name = "ADDR")]
    media_listen: Option<String>,
    /// The `mpUri` published in the call's blob. [env: BOTMEDIA_PUBLIC_MP_URI]
    #[arg(long, value_name = "URL")]
    public_mp_uri: Option<String>,
}

/// The flag each `BOTMEDIA_*` variable of [`BotSettings::from_vars`] stands for.
const FLAGS: [(&str, &str); 11] = [
    ("BOTMEDIA_EMULATOR", "--emulator"),
    ("BOTMEDIA_APP_ID", "--app-id"),
    ("BOTMEDIA_TENANT_ID", "--tenant"),
    ("BOTMEDIA_APP_SECRET", "--app-secret-env"),
    ("BOTMEDIA_CALLBACK_URL", "--callback-url"),
    ("BOTMEDIA_WEBHOOK_LISTEN", "--webhook-listen"),
    ("BOTMEDIA_GRAPH_URL", "--graph-url"),
    ("BOTMEDIA_AUTHORITY", "--authority"),
    (
        "BOTMEDIA_OPENID_CONFIGURATION_URL",
        "--openid-configuration-url",
    ),
    ("BOTMEDIA_MEDIA_LISTEN", "--media-listen"),
    ("BOTMEDIA_PUBLIC_MP_URI", "--public-mp-uri"),
];

impl CallArgs {
    fn flag(&self, var: &str) -> Option<String> {
        match var {
            "BOTMEDIA_EMULATOR" => self.emulator.clone(),
            "BOTMEDIA_APP_ID" => self.app_id.clone(),
            "BOTMEDIA_TENANT_ID" => self.tenant.clone(),
            "BOTMEDIA_CALLBACK_URL" => self.callback_url.clone(),
            "BOTMEDIA_WEBHOOK_LISTEN" => self.webhook_listen.clone(),
            "BOTMEDIA_GRAPH_URL" => self.graph_url.clone(),
            "BOTMEDIA_AUTHORITY" => self.authority.clone(),
            "BOTMEDIA_OPENID_CONFIGURATION_URL" => self.openid_configuration_url.clone(),
            "BOTMEDIA_MEDIA_LISTEN" => self.media_listen.clone(),
            "BOTMEDIA_PUBLIC_MP_URI" => self.public_mp_uri.clone(),
            _ => None,
        }
    }

    /// The bot's settings: flags over `BOTMEDIA_*` variables (none with --emulator), the
    /// secret from the variable --app-secret-env names, the local emulator when nothing
    /// names an app. Also whether they point at an emulator.
    fn settings(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(BotSettings, bool), CliError> {
        let secret_var = self
            .app_secret_env
            .as_deref()
            .unwrap_or("BOTMEDIA_APP_SECRET");
        let env_of = |var: &str| env(var).filter(|v| !v.trim().is_empty());
        let plain = |var: &str| {
            self.flag(var)
                .or_else(|| self.emulator.is_none().then(|| env_of(var)).flatten())
        };
        let local = plain("BOTMEDIA_EMULATOR").is_none() && plain("BOTMEDIA_APP_ID").is_none();
        // An emulator named here (or the local default) keeps its built-in secret unless
        // --app-secret-env names another.
        let keep_builtin = (self.emulator.is_some() || local) && self.app_secret_env.is_none();
        let given = |var: &str| {
            if var == "BOTMEDIA_APP_SECRET" {
                (!keep_builtin).then(|| env_of(secret_var)).flatten()
            } else {
                plain(var)
            }
        };
        let settings = BotSettings::from_vars(|var| {
            given(var)
                .or_else(|| (local && var == "BOTMEDIA_EMULATOR").then(|| DEFAULT_EMULATOR.into()))
        })
        .map_err(|e| {
            let flag = FLAGS.iter().find(|(v, _)| *v == e.var).map(|(_, f)| *f);
            let var = if e.var == "BOTMEDIA_APP_SECRET" {
                secret_var
            } else {
                e.var
            };
            CliError::Usage(match flag {
                Some("--app-secret-env") => format!("{var} (the app's secret): {}", e.problem),
                Some(flag) => format!("{flag} ({var}): {}", e.problem),
                None => e.to_string(),
            })
        })?;
        // The command serves its own webhook: a callback URL alone would receive nothing.
        if settings.webhook_listen.is_none() {
            return Err(CliError::Usage(
                "--webhook-listen (BOTMEDIA_WEBHOOK_LISTEN): set the address this bot serves its webhook on, where --callback-url's requests arrive".into(),
            ));
        }
        Ok((settings, local || given("BOTMEDIA_EMULATOR").is_some()))
    }

    /// The create-call request, or why there is none.
    fn request(&self, tenant: &str) -> Result<(CallRequest, String), String> {
        let (request, target) = if let Some(url) = &self.meeting_url {
            let request = CallRequest::join_meeting_url(url).ok_or_else(|| {
                format!(
                    "--meeting-url `{url}` is not a Teams join URL with its organizer (https://teams.microsoft.com/l/meetup-join/THREAD/MESSAGE?context={{\"Tid\":..,\"Oid\":..}})"
                )
            })?;
            (request, "the meeting of the join URL".to_owned())
        } else if let Some(id) = &self.meeting_id {
            if id.trim().is_empty() {
                return Err("--meeting-id is empty".into());
            }
            (
                CallRequest::join_meeting_id(id, self.passcode.as_deref()),
                format!("meeting {id}"),
            )
        } else if let Some(thread) = &self.meeting_thread {
            let organizer = self.organizer.as_deref().unwrap_or_default();
            let request = CallRequest::join_meeting(
                thread,
                &self.meeting_message,
                organizer,
                self.organizer_tenant.as_deref().unwrap_or(tenant),
            );
            (request, format!("meeting {thread}"))
        } else if let Some(phone) = &self.phone {
            let valid = phone.strip_prefix('+').is_some_and(|d| {
                (2..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit())
            });
            if !valid {
                return Err(format!(
                    "--phone `{phone}` is not an E.164 number (+ and 2 to 15 digits)"
                ));
            }
            let instance = self.app_instance.as_deref().unwrap_or_default();
            (
                CallRequest::pstn(phone, instance, tenant),
                format!("phone {phone}"),
            )
        } else if let [user] = self.users.as_slice() {
            (
                CallRequest::peer_to_peer(user, None),
                format!("user {user}"),
            )
        } else if self.users.len() > 1 {
            (
                CallRequest::group(self.users.iter().map(|u| (u.as_str(), None))),
                format!("group of {} users", self.users.len()),
            )
        } else {
            return Err("name whom to call: --user ID (repeat it for a group call), --phone +E164 --app-instance ID, --meeting-url URL, --meeting-id ID [--passcode P], or --meeting-thread ID --organizer ID".into());
        };
        if let Some(users) = self.users.iter().find(|u| u.trim().is_empty()) {
            return Err(format!("--user `{users}` is empty"));
        }
        match &self.guest {
            Some(name)
                if self.meeting_url.is_some()
                    || self.meeting_thread.is_some()
                    || self.meeting_id.is_some() =>
            {
                let id = format!(
                    "botmedia-guest-{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_millis()
                );
                Ok((
                    request.as_guest(&id, name),
                    format!("{target} as guest {name}"),
                ))
            }
            Some(_) => {
                Err("--guest joins a meeting: use it with --meeting-url, --meeting-id or --meeting-thread".into())
            }
            None => Ok((request, target)),
        }
    }
}

/// Writes events to standard output as readable lines or JSON lines. A closed standard
/// output does not stop the call.
struct Printer {
    json: bool,
    start: Instant,
}

impl Printer {
    fn emit(&self, event: &str, text: &str, mut fields: Value) {
        let t = self.start.elapsed().as_secs_f64();
        let line = if self.json {
            // `event` and `t` first, for people reading the lines.
            let mut line = serde_json::Map::new();
            line.insert("event".into(), event.into());
            line.insert("t".into(), json!((t * 1000.0).round() / 1000.0));
            if let Value::Object(map) = &mut fields {
                line.append(map);
            }
            Value::Object(line).to_string()
        } else {
            format!("{t:>7.2}s  {event:<16} {text}")
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// Who a participant is: the first identity's display name or id, and its role.
fn who(identity: Option<&IdentitySet>) -> (String, &'static str) {
    identity
        .and_then(|set| set.identities().next())
        .map(|(role, id)| {
            let name = id
                .display_name
                .get()
                .filter(|n| !n.is_empty())
                .cloned()
                .or_else(|| id.id.get().map(|i| i.as_str().to_owned()))
                .unwrap_or_else(|| "(unknown)".into());
            (name, role.as_str())
        })
        .unwrap_or_else(|| ("(unknown)".into(), "unknown"))
}

fn participant(p: &Participant) -> (String, Value) {
    let (name, role) = who(p.info.get().and_then(|i| i.identity.get()));
    let muted = p.is_muted.get().copied().unwrap_or(false);
    let lobby = p.is_in_lobby.get().copied().unwrap_or(false);
    let text = format!(
        "{name}{}{}",
        if muted { " (muted)" } else { "" },
        if lobby { " (in the lobby)" } else { "" }
    );
    let value = json!({
        "id": p.id.get(),
        "name": name,
        "role": role,
        "muted": muted,
        "in_lobby": lobby,
    });
    (text, value)
}

fn code(f: &Field<ResultCode>) -> Option<i64> {
    f.get().and_then(ResultCode::as_i64)
}

fn result_text(r: Option<&ResultInfo>) -> (String, Value) {
    let Some(r) = r else {
        return ("no result given".into(), Value::Null);
    };
    let (c, s) = (code(&r.code), code(&r.subcode));
    let message = r.message.get().cloned().unwrap_or_default();
    let show = |v: Option<i64>| v.map_or("-".to_owned(), |v| v.to_string());
    (
        format!(
            "{}/{}{}",
            show(c),
            show(s),
            if message.is_empty() {
                String::new()
            } else {
                format!(" {message}")
            }
        ),
        json!({ "code": c, "subcode": s, "message": message }),
    )
}

/// Prints a call event.
fn print_call_event(p: &Printer, e: &CallEvent) {
    match e {
        CallEvent::StateChanged { from, to } => p.emit(
            "state",
            to.as_str(),
            json!({ "from": from.as_ref().map(CallState::as_str), "to": to.as_str() }),
        ),
        CallEvent::RosterChanged(diff) => {
            let list = |ps: &[Participant]| -> (Vec<String>, Vec<Value>) {
                ps.iter().map(participant).unzip()
            };
            let (added, added_json) = list(&diff.added);
            let (updated, updated_json) = list(&diff.updated);
            let (removed, removed_json) = list(&diff.removed);
            let mut text = Vec::new();
            for (label, names) in [("joined", added), ("updated", updated), ("left", removed)] {
                if !names.is_empty() {
                    text.push(format!("{label}: {}", names.join(", ")));
                }
            }
            if !diff.in_lobby.is_empty() {
                text.push(format!("{} in the lobby", diff.in_lobby.len()));
            }
            p.emit(
                "roster",
                &text.join("; "),
                json!({
                    "added": added_json,
                    "updated": updated_json,
                    "removed": removed_json,
                    "in_lobby": diff.in_lobby.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
                }),
            );
        }
        CallEvent::Tone(info) => {
            let tone = info.tone.get().map(|t| t.as_str().to_owned());
            let seq = info.sequence_id.get().copied();
            p.emit(
                "tone",
                tone.as_deref().unwrap_or("?"),
                json!({ "tone": tone, "sequence": seq }),
            );
        }
        CallEvent::OperationUpdated { id, status, .. } => p.emit(
            "operation",
            &format!("{id} {}", status.as_str()),
            json!({ "id": id.to_string(), "status": status.as_str() }),
        ),
        CallEvent::Terminated { result } => {
            let (text, value) = result_text(result.as_ref());
            p.emit("terminated", &text, json!({ "result": value }));
        }
        other => p.emit(
            "call",
            &format!("{other:?}"),
            json!({ "debug": format!("{other:?}") }),
        ),
    }
}

fn print_media_event(p: &Printer, e: &AudioSocketEvent) {
    match e {
        AudioSocketEvent::SendStatusChanged(s) => {
            let s = format!("{s:?}").to_ascii_lowercase();
            p.emit("send-status", &s, json!({ "status": s }));
        }
        AudioSocketEvent::DominantSpeakerChanged { previous, current } => p.emit(
            "dominant-speaker",
            &current.map_or("nobody".to_owned(), |c| format!("source {c}")),
            json!({ "previous": previous, "current": current }),
        ),
        AudioSocketEvent::ToneReceived(t) => {
            p.emit("dtmf", &t.to_string(), json!({ "tone": t.to_string() }))
        }
        AudioSocketEvent::StreamFailure(r) => p.emit(
            "media-failure",
            &format!("{r:?}"),
            json!({ "reason": format!("{r:?}") }),
        ),
        AudioSocketEvent::QualityUpdated(q) => {
            let ms = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
            p.emit(
                "quality",
                &format!(
                    "in {} packets, {} lost, jitter {:.1} ms; out lost {:.1} %, rtt {}",
                    q.inbound_packets,
                    q.inbound_lost,
                    ms(q.inbound_jitter),
                    q.outbound_fraction_lost * 100.0,
                    q.round_trip
                        .map_or("-".to_owned(), |r| format!("{:.1} ms", ms(r)))
                ),
                json!({
                    "inbound_packets": q.inbound_packets,
                    "inbound_lost": q.inbound_lost,
                    "inbound_jitter_ms": ms(q.inbound_jitter),
                    "outbound_fraction_lost": q.outbound_fraction_lost,
                    "outbound_total_lost": q.outbound_total_lost,
                    "outbound_jitter_ms": ms(q.outbound_jitter),
                    "round_trip_ms": q.round_trip.map(ms),
                }),
            );
        }
        AudioSocketEvent::Ended(r) => p.emit(
            "media-ended",
            &format!("{r:?}"),
            json!({ "reason": format!("{r:?}") }),
        ),
        other => p.emit(
            "media",
            &format!("{other:?}"),
            json!({ "debug": format!("{other:?}") }),
        ),
    }
}

/// What the call command ends with.
enum Refusal {
    /// The service (or the local check of what it accepts) refused: exit 1.
    Service(String),
    /// Anything else (settings, files, network): exit 2.
    Other(String),
}

fn refusal(e: BotError) -> Refusal {
    match e {
        BotError::Create(CreateError::Invalid(e)) => {
            Refusal::Service(format!("the service would refuse the call: {e}"))
        }
        BotError::Create(CreateError::Api(e)) | BotError::Api(e) => match &e {
            ApiError::Graph(g) => Refusal::Service(format!("the service refused the call: {g}")),
            ApiError::Token(t @ TokenError::Refused { .. }) => {
                Refusal::Service(format!("no access token: {t}"))
            }
            ApiError::Token(t) => Refusal::Other(format!("no access token: {t}")),
            _ => Refusal::Other(format!("cannot reach the service: {e}")),
        },
        other => Refusal::Other(other.to_string()),
    }
}

pub(super) fn run(args: CallArgs) -> Result<ExitCode, CliError> {
    let (settings, emulated) = args.settings(|name| std::env::var(name).ok())?;
    let (request, target) = args.request(&settings.tenant).map_err(|problem| {
        if emulated
            && args.users.is_empty()
            && args.phone.is_none()
            && args.meeting_url.is_none()
            && args.meeting_thread.is_none()
        {
            CliError::Usage(format!(
                "{problem}.\nAn emulator running its built-in scenario has:\n{}",
                people(&botmedia::emulator::scenario::Scenario::default())
            ))
        } else {
            CliError::Usage(problem)
        }
    })?;
    let play = match &args.play {
        Some(path) => {
            let frames = Wav::read_frames(path)
                .map_err(|e| CliError::Usage(format!("--play {}: {e}", path.display())))?;
            Some(frames)
        }
        None => None,
    };
    let recorder = match &args.record {
        Some(path) => Some(WavRecorder::create(path).map_err(|e| {
            CliError::Usage(format!(
                "--record {}: cannot create it: {e}",
                path.display()
            ))
        })?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the async runtime: {e}")))?;
    let options = Options {
        play,
        recorder,
        echo: args.echo,
        seconds: args.seconds,
        json: args.json,
    };
    Ok(runtime.block_on(place(settings, request, target, options)))
}

/// The built-in scenario's users, phones and meetings, from its description.
fn people(sc: &botmedia::emulator::scenario::Scenario) -> String {
    sc.describe(DEFAULT_EMULATOR)
        .lines()
        .skip_while(|l| !matches!(*l, "Users" | "Phones" | "Meetings"))
        .map(|l| format!("  {l}\n"))
        .collect::<String>()
        .trim_end()
        .to_owned()
}

struct Options {
    play: Option<Vec<Pcm16K>>,
    recorder: Option<WavRecorder>,
    echo: bool,
    seconds: Option<u64>,
    json: bool,
}

/// Counters of the call's audio, for the summary.
#[derive(Default)]
struct Counts {
    frames_in: u64,
    frames_out: u64,
    concealed: u64,
    played: usize,
}

async fn place(
    settings: BotSettings,
    request: CallRequest,
    target: String,
    mut o: Options,
) -> ExitCode {
    let p = Printer {
        json: o.json,
        start: Instant::now(),
    };
    let graph_url = settings.graph_url.clone();
    let bot = match Bot::start(settings).await {
        Ok(bot) => bot,
        Err(e) => {
            eprintln!("botmedia: cannot start the bot: {e}");
            return ExitCode::from(2);
        }
    };
    p.emit(
        "bot",
        &format!(
            "calling {target} through {graph_url}; webhook {}, media {}",
            bot.callback_url(),
            bot.platform().mp_uri()
        ),
        json!({
            "target": target,
            "graph_url": graph_url,
            "callback_url": bot.callback_url(),
            "mp_uri": bot.platform().mp_uri().to_string(),
        }),
    );
    let mut call = match bot.call(request).await {
        Ok(call) => call,
        Err(e) => {
            let (code, message) = match refusal(e) {
                Refusal::Service(m) => (1, m),
                Refusal::Other(m) => (2, m),
            };
            p.emit("refused", &message, json!({ "error": message }));
            eprintln!("botmedia: {message}");
            bot.shutdown().await;
            return ExitCode::from(code);
        }
    };
    p.emit(
        "placed",
        &format!("call {}", call.id()),
        json!({ "call": call.id().to_string() }),
    );

    let mut n = Counts::default();
    let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
    let stop_at = o.seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let mut hung_up_at: Option<Instant> = None;
    let mut established = false;
    let mut result: Option<Option<ResultInfo>> = None;
    let mut record_error = None;
    loop {
        let wake = hung_up_at.map(|t| t + HANG_UP_WAIT).or(stop_at);
        let hang_up_why = tokio::select! {
            item = call.next() => {
                match item {
                    None => break,
                    Some(CallItem::Frame(f)) => {
                        n.frames_in += 1;
                        n.concealed += u64::from(f.source == FrameSource::Concealed);
                        if let Some(rec) = &mut o.recorder
                            && let Err(e) = rec.write_frame(&f.pcm)
                        {
                            record_error = Some(e.to_string());
                            p.emit("record-failed", &e.to_string(), json!({ "error": e.to_string() }));
                            o.recorder = None;
                        }
                        let out = if o.echo {
                            Some(f.pcm)
                        } else {
                            o.play.as_ref().and_then(|frames| frames.get(n.played).copied())
                        };
                        let active = call.audio_socket().is_some_and(|s| s.is_active());
                        if let Some(frame) = out.filter(|_| active)
                            && call.send(frame).is_ok()
                        {
                            n.frames_out += 1;
                            if !o.echo && let Some(frames) = &o.play {
                                n.played += 1;
                                if n.played == frames.len() {
                                    let secs = n.played as f64 * 0.02;
                                    p.emit("played", &format!("{secs:.2} s sent"), json!({ "seconds": secs }));
                                }
                            }
                        }
                        None
                    }
                    Some(CallItem::Call(e)) => {
                        print_call_event(&p, &e);
                        match e {
                            CallEvent::StateChanged { to: CallState::Established, .. } => established = true,
                            CallEvent::Terminated { result: r } => result = Some(r),
                            _ => {}
                        }
                        None
                    }
                    Some(CallItem::Media(e)) => {
                        print_media_event(&p, &e);
                        None
                    }
                    Some(_) => None,
                }
            }
            _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                if hung_up_at.is_some() {
                    p.emit("timeout", "the service did not confirm the end of the call", json!({}));
                    break;
                }
                Some(format!("after {} s", o.seconds.unwrap_or_default()))
            }
            _ = &mut ctrl_c => {
                if hung_up_at.is_some() {
                    break;
                }
                ctrl_c = Box::pin(tokio::signal::ctrl_c());
                Some("on Ctrl-C".to_owned())
            }
        };
        if let Some(why) = hang_up_why
            && hung_up_at.is_none()
        {
            p.emit("hang-up", &why, json!({ "why": why }));
            hung_up_at = Some(Instant::now());
            if let Err(e) = call.hang_up().await {
                p.emit(
                    "hang-up-failed",
                    &e.to_string(),
                    json!({ "error": e.to_string() }),
                );
            }
        }
    }
    drop(call);

    let recording = o.recorder.take().map(|rec| {
        let path = rec.path().display().to_string();
        let secs = rec.duration_secs();
        if let Err(e) = rec.finish() {
            record_error = Some(e.to_string());
        }
        (path, secs)
    });
    let (result_line, result_json) = result_text(result.as_ref().and_then(Option::as_ref));
    let mut text = format!(
        "frames in {}, out {}, concealed {}",
        n.frames_in, n.frames_out, n.concealed
    );
    if let Some((path, secs)) = &recording {
        text.push_str(&format!("; recorded {secs:.2} s to {path}"));
    }
    text.push_str(&format!(
        "; {}",
        match &result {
            Some(_) => format!("ended {result_line}"),
            None => "no end confirmed".to_owned(),
        }
    ));
    p.emit(
        "summary",
        &text,
        json!({
            "frames_in": n.frames_in,
            "frames_out": n.frames_out,
            "concealed": n.concealed,
            "recording": recording.as_ref().map(|(path, _)| path),
            "recorded_seconds": recording.as_ref().map(|(_, s)| (s * 100.0).round() / 100.0),
            "established": established,
            "result": result_json,
        }),
    );
    bot.shutdown().await;

    if let Some(e) = record_error {
        eprintln!("botmedia: the recording failed: {e}");
        return ExitCode::from(2);
    }
    let failed_code = result
        .as_ref()
        .and_then(Option::as_ref)
        .and_then(|r| code(&r.code))
        .filter(|c| *c >= 400);
    match (&result, established, failed_code) {
        (None, _, _) => {
            eprintln!("botmedia: the call's end was not confirmed by the service");
            ExitCode::from(1)
        }
        (Some(_), false, Some(_)) => {
            eprintln!(
                "botmedia: the service ended the call before it was established: {result_line}"
            );
            ExitCode::from(1)
        }
        _ => ExitCode::SUCCESS,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: CallArgs,
    }

    fn args(line: &[&str]) -> CallArgs {
        Cmd::try_parse_from(std::iter::once("call").chain(line.iter().copied()))
            .unwrap()
            .args
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn without_an_app_the_local_emulator_is_called() {
        let (s, emulated) = args(&["--user", "u"]).settings(no_env).unwrap();
        assert!(emulated);
        assert_eq!(s.graph_url, "http://127.0.0.1:8440/v1.0");
        let (s, _) = args(&["--emulator", "http://127.0.0.1:9/", "--user", "u"])
            .settings(|_| Some("http://ignored".into()))
            .unwrap();
        assert_eq!(s.graph_url, "http://127.0.0.1:9/v1.0");
        // A secret for the real service in the environment does not replace the emulator's.
        let (s, _) = args(&["--user", "u"])
            .settings(|name| (name == "BOTMEDIA_APP_SECRET").then(|| "real".into()))
            .unwrap();
        let botmedia::Credentials::Secret(secret) = &s.credentials else {
            panic!("a client secret");
        };
        assert_eq!(secret.expose(), botmedia::emulator_app::SECRET);
    }

    #[test]
    fn an_app_takes_flags_over_variables_and_its_secret_from_the_named_variable() {
        let env = |name: &str| match name {
            "BOTMEDIA_TENANT_ID" => Some("t-env".to_owned()),
            "BOTMEDIA_GRAPH_URL" => Some("https://env/v1.0".to_owned()),
            "MY_SECRET" => Some("s".to_owned()),
            _ => None,
        };
        let a = args(&[
            "--app-id",
            "a",
            "--app-secret-env",
            "MY_SECRET",
            "--graph-url",
            "https://flag/v1.0",
            "--callback-url",
            "https://bot.contoso.com/cb",
            "--webhook-listen",
            "0.0.0.0:9441",
        ]);
        let (s, emulated) = a.settings(env).unwrap();
        assert!(!emulated);
        assert_eq!(s.webhook_listen, Some("0.0.0.0:9441".parse().unwrap()));
        assert_eq!(
            (s.app_id.as_str(), s.tenant.as_str(), s.graph_url.as_str()),
            ("a", "t-env", "https://flag/v1.0")
        );
        let Err(CliError::Usage(e)) = a.settings(no_env) else {
            panic!("a missing tenant is refused");
        };
        assert!(e.starts_with("--tenant (BOTMEDIA_TENANT_ID)"), "{e}");
        let Err(CliError::Usage(e)) = args(&[
            "--app-id",
            "a",
            "--tenant",
            "t",
            "--app-secret-env",
            "MY_SECRET",
        ])
        .settings(no_env) else {
            panic!("a missing secret is refused");
        };
        assert!(e.starts_with("MY_SECRET (the app's secret)"), "{e}");
        let Err(CliError::Usage(e)) = args(&[
            "--app-id",
            "a",
            "--tenant",
            "t",
            "--callback-url",
            "https://bot.contoso.com/cb",
        ])
        .settings(|name| (name == "BOTMEDIA_APP_SECRET").then(|| "s".into())) else {
            panic!("a callback URL without a webhook address is refused");
        };
        assert!(e.starts_with("--webhook-listen"), "{e}");
        let Err(CliError::Usage(e)) = args(&["--callback-url", "ftp://x"]).settings(no_env) else {
            panic!("a bad URL is refused");
        };
        assert!(e.starts_with("--callback-url"), "{e}");
    }

    #[test]
    fn targets_become_requests_or_clear_errors() {
        let cb = "https://bot/cb";
        let target = |line: &[&str]| args(line).request("t").map(|(r, _)| r.build(cb));
        let p2p = target(&["--user", "u1"]).unwrap();
        assert_eq!(p2p.targets.get().map(Vec::len), Some(1));
        let group = target(&["--user", "u1", "--user", "u2"]).unwrap();
        assert_eq!(group.targets.get().map(Vec::len), Some(2));
        let meeting = target(&["--meeting-thread", "19:x@thread.v2", "--organizer", "o"]).unwrap();
        assert!(meeting.chat_info.get().is_some() && meeting.source.get().is_none());
        let guest = target(&[
            "--meeting-thread",
            "19:x@thread.v2",
            "--organizer",
            "o",
            "--guest",
            "Visitor",
        ])
        .unwrap();
        assert!(guest.source.get().is_some());
        let by_id = target(&["--meeting-id", "314 159 265 358", "--passcode", "demo42"]).unwrap();
        assert!(by_id.meeting_info.get().is_some() && by_id.chat_info.get().is_none());
        assert!(target(&["--phone", "+12345678901", "--app-instance", "i"]).is_ok());
        for (line, needle) in [
            (&["--phone", "12345", "--app-instance", "i"][..], "E.164"),
            (
                &["--meeting-url", "https://example.com/x"][..],
                "Teams join URL",
            ),
            (
                &["--user", "u", "--guest", "G"][..],
                "--guest joins a meeting",
            ),
            (&[][..], "name whom to call"),
            (&["--meeting-id", " "][..], "--meeting-id is empty"),
        ] {
            let e = target(line).unwrap_err();
            assert!(e.contains(needle), "{line:?}: {e}");
        }
        // Two kinds of target at once, or a phone without its instance, are usage errors.
        let two = ["call", "--user", "u", "--phone", "+1234"];
        assert!(Cmd::try_parse_from(two).is_err());
        assert!(Cmd::try_parse_from(["call", "--phone", "+1234"]).is_err());
    }

    #[test]
    fn the_built_in_people_are_listed() {
        let text = people(&botmedia::emulator::scenario::Scenario::default());
        assert!(
            text.contains("Grace") && text.contains("Meetings"),
            "{text}"
        );
        assert!(!text.contains("Graph API"), "{text}");
    }
}
