//! What a [`Bot`](super::Bot) is built from: the app's identity and credentials, where the
//! calling service and the identity platform are, where the webhook listens and the media
//! platform's settings. From code, from environment variables, or pointed at the emulator.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use media_session::AudioSocketSettings;
use signalling::Credentials;
use signalling::token::SecretString;

use crate::{MediaPlatformSettings, SessionMediaSettings};

/// The emulator's built-in app (`botmedia emulator`, `botmedia demo`): its id, tenant and
/// client secret. A scenario file can replace them.
pub mod emulator_app {
    /// The built-in app's id.
    pub const APP_ID: &str = "2891555a-92ff-42e6-80fa-6e1300c6b5c6";
    /// The built-in app's tenant.
    pub const TENANT: &str = "aa67bd4c-8475-432d-bd41-39f255720e0a";
    /// The built-in app's client secret.
    pub const SECRET: &str = "botmedia-local-secret";
}

/// Everything a [`Bot`](super::Bot) needs. [`BotSettings::new`] points at the real
/// service; [`BotSettings::emulator`] at a local emulator; [`BotSettings::from_env`] reads
/// `BOTMEDIA_*` variables.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BotSettings {
    /// The app's id (the audience of the service's callback tokens).
    pub app_id: String,
    /// The app's tenant.
    pub tenant: String,
    /// How the bot gets tokens (a client secret, or a token provider of its own).
    pub credentials: Credentials,
    /// This instance's id in a fleet: a Kubernetes pod name (a DNS label: 1 to 63 of
    /// `a-z`, `0-9` and `-`, starting and ending with a letter or digit), such as a
    /// StatefulSet's `botmedia-0`. It replaces [`INSTANCE_PLACEHOLDER`] in
    /// [`Self::callback_url`] and `media.public_mp_uri` when the bot starts, names the
    /// instance in logs and metrics, and is [`Bot::instance_id`](super::Bot::instance_id).
    /// `None`: a bot on its own.
    pub instance_id: Option<String>,
    /// The public URL the calling service posts notifications to about the calls this bot
    /// places or answers. In a fleet, the instance's own
    /// (`https://bot.contoso.com/callback/{instance}`), so that every notification about a
    /// call reaches the instance that holds its media. May contain
    /// [`INSTANCE_PLACEHOLDER`]. `None` when the bot serves its webhook on a loopback or
    /// other concrete address: the URL is then `http://ADDR/callback` at the address it
    /// bound.
    pub callback_url: Option<String>,
    /// The app's registered calling webhook, shared by a fleet behind a load balancer
    /// (`https://bot.contoso.com/callback`): where the service delivers new incoming calls,
    /// to any instance. The bot's webhook answers at its path as well as at
    /// [`Self::callback_url`]'s; a call it answers names [`Self::callback_url`], so the
    /// call's later notifications come to this instance. `None`: incoming calls come to
    /// [`Self::callback_url`].
    pub shared_callback_url: Option<String>,
    /// Where the bot serves its webhook itself; `None` when the author mounts
    /// [`Bot::webhook_router`](super::Bot::webhook_router) into an app of their own.
    pub webhook_listen: Option<SocketAddr>,
    /// The Graph API base (`https://graph.microsoft.com/v1.0`).
    pub graph_url: String,
    /// The token endpoint, `{tenant}` substituted
    /// (`https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`).
    pub authority: String,
    /// The OpenID configuration naming the keys that sign the service's callback tokens.
    pub openid_configuration_url: String,
    /// The media platform: where its endpoint listens, its public `mpUri`, ICE addresses,
    /// pipeline threads.
    pub media: MediaPlatformSettings,
    /// The audio socket of every call the bot places or answers: direction, format, and
    /// how many unmixed speaker streams a meeting sends beside the mix
    /// ([`Self::with_unmixed_meeting_audio`]).
    pub audio: AudioSocketSettings,
    /// Hang up a call when the bot drops it before it ended.
    pub hang_up_on_drop: bool,
    /// Timeout of one Graph request.
    pub request_timeout: Duration,
}

/// The placeholder that [`BotSettings::callback_url`] and `media.public_mp_uri` may
/// contain, replaced by [`BotSettings::instance_id`] when the bot starts: one setting for
/// every instance of a fleet.
pub const INSTANCE_PLACEHOLDER: &str = "{instance}";

/// A `BOTMEDIA_*` variable that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct EnvError {
    /// The variable.
    pub var: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl BotSettings {
    /// Where `botmedia emulator` listens by default.
    pub const LOCAL_EMULATOR: &str = "http://127.0.0.1:8440";

    /// Settings for the real service: Graph v1.0, the Microsoft identity platform and the
    /// calling service's callback keys. Set [`Self::callback_url`] (the public HTTPS URL of
    /// the webhook) and [`Self::webhook_listen`] (or mount the router yourself), and the
    /// media platform's public address (`media.public_mp_uri`, `media.ice_addresses`; behind
    /// a 1:1 NAT `media.ice_public_addresses`, and `media.ice_ports` for a firewall).
    pub fn new(
        app_id: impl Into<String>,
        tenant: impl Into<String>,
        credentials: Credentials,
    ) -> Self {
        Self {
            app_id: app_id.into(),
            tenant: tenant.into(),
            credentials,
            instance_id: None,
            callback_url: None,
            shared_callback_url: None,
            webhook_listen: None,
            graph_url: signalling::client::GRAPH_V1.to_owned(),
            authority: signalling::token::DEFAULT_AUTHORITY.to_owned(),
            openid_configuration_url: signalling::webhook::DEFAULT_OPENID_CONFIGURATION.to_owned(),
            media: MediaPlatformSettings::default(),
            audio: AudioSocketSettings::default(),
            hang_up_on_drop: true,
            request_timeout: Duration::from_secs(30),
        }
    }

    /// Settings for the emulator at `base_url` (`http://127.0.0.1:8440`, what `botmedia
    /// emulator` prints) with its built-in app; the webhook on a free loopback port.
    pub fn emulator(base_url: &str) -> Self {
        let base = base_url.trim_end_matches('/');
        let mut s = Self::new(
            emulator_app::APP_ID,
            emulator_app::TENANT,
            Credentials::Secret(SecretString::new(emulator_app::SECRET)),
        );
        s.graph_url = format!("{base}/v1.0");
        s.authority = format!("{base}/{{tenant}}/oauth2/v2.0/token");
        s.openid_configuration_url = format!("{base}/v1/.well-known/OpenIdConfiguration");
        s.webhook_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        s
    }

    /// What a command-line bot usually wants: the emulator at `emulator` when one was given
    /// (an `--emulator URL` flag); else the `BOTMEDIA_*` variables when they name a service
    /// (`BOTMEDIA_EMULATOR` or `BOTMEDIA_APP_ID` is set); else the local emulator at
    /// [`Self::LOCAL_EMULATOR`].
    pub fn emulator_or_env(emulator: Option<&str>) -> Result<Self, EnvError> {
        Self::emulator_or_vars(emulator, |name| std::env::var(name).ok())
    }

    /// [`Self::emulator_or_env`] with variables looked up by `var`.
    pub fn emulator_or_vars(
        emulator: Option<&str>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, EnvError> {
        let names_a_service = ["BOTMEDIA_EMULATOR", "BOTMEDIA_APP_ID"]
            .iter()
            .any(|name| var(name).is_some_and(|v| !v.trim().is_empty()));
        match emulator {
            Some(url) => Ok(Self::emulator(url)),
            None if names_a_service => Self::from_vars(var),
            None => Ok(Self::emulator(Self::LOCAL_EMULATOR)),
        }
    }

    /// Settings from the process's `BOTMEDIA_*` environment variables (see
    /// [`Self::from_vars`] for the list).
    pub fn from_env() -> Result<Self, EnvError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Settings from variables looked up by `var`:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `BOTMEDIA_EMULATOR` | base URL of an emulator: start from [`Self::emulator`] |
    /// | `BOTMEDIA_APP_ID`, `BOTMEDIA_TENANT_ID`, `BOTMEDIA_APP_SECRET` | the app (required without `BOTMEDIA_EMULATOR`) |
    /// | `BOTMEDIA_INSTANCE_ID` | this instance's id in a fleet, a pod name (`botmedia-0`); replaces `{instance}` in the two URLs below |
    /// | `BOTMEDIA_CALLBACK_URL` | public URL of the webhook for this bot's calls; in a fleet the instance's own (`https://bot.contoso.com/callback/{instance}`) |
    /// | `BOTMEDIA_SHARED_CALLBACK_URL` | the app's registered webhook a fleet shares (`https://bot.contoso.com/callback`): new incoming calls come there, and the webhook answers at its path too |
    /// | `BOTMEDIA_WEBHOOK_LISTEN` | address the bot serves its webhook on (`0.0.0.0:9441`) |
    /// | `BOTMEDIA_GRAPH_URL`, `BOTMEDIA_AUTHORITY`, `BOTMEDIA_OPENID_CONFIGURATION_URL` | service URLs |
    /// | `BOTMEDIA_MEDIA_LISTEN` | address of the media endpoint's HTTP listener |
    /// | `BOTMEDIA_PUBLIC_MP_URI` | the `mpUri` published in blobs; may contain `{instance}` |
    /// | `BOTMEDIA_ICE_ADDRESSES` | comma-separated IP addresses ICE gathers on |
    /// | `BOTMEDIA_ICE_PORTS` | UDP ports the legs' ICE sockets bind, `40000-40999` (or one port) |
    /// | `BOTMEDIA_SHARED_UDP` | `true`: the legs share one UDP socket per network pump and ICE address (see [`MediaPlatformSettings::shared_udp`](crate::MediaPlatformSettings::shared_udp)); `false` (the default): a socket per leg |
    /// | `BOTMEDIA_ICE_PUBLIC_ADDRESSES` | comma-separated public addresses of a 1:1 NAT, advertised in place of the ICE addresses (one for all, or one per ICE address) |
    /// | `BOTMEDIA_MEDIA_TLS_CERT`, `BOTMEDIA_MEDIA_TLS_KEY` | PEM files: the media endpoint serves https (both or neither) |
    /// | `BOTMEDIA_UNMIXED_AUDIO` | unmixed meeting audio: how many dominant speakers each call receives apart, `0` (off, the default) to `4` (see [`Self::with_unmixed_meeting_audio`]) |
    ///
    /// A value that cannot be used is an [`EnvError`] naming its variable; so is a URL with
    /// `{instance}` and no `BOTMEDIA_INSTANCE_ID` (named then).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let get = |name: &'static str| var(name).filter(|v| !v.trim().is_empty());
        let required = |name: &'static str| {
            get(name).ok_or(EnvError {
                var: name,
                problem: "is not set (set it, or BOTMEDIA_EMULATOR for a local emulator)".into(),
            })
        };
        let mut s = match get("BOTMEDIA_EMULATOR") {
            Some(base) => {
                check_url("BOTMEDIA_EMULATOR", &base)?;
                Self::emulator(&base)
            }
            None => Self::new(
                required("BOTMEDIA_APP_ID")?,
                required("BOTMEDIA_TENANT_ID")?,
                Credentials::Secret(SecretString::new(required("BOTMEDIA_APP_SECRET")?)),
            ),
        };
        if get("BOTMEDIA_EMULATOR").is_some() {
            if let Some(id) = get("BOTMEDIA_APP_ID") {
                s.app_id = id;
            }
            if let Some(t) = get("BOTMEDIA_TENANT_ID") {
                s.tenant = t;
            }
            if let Some(secret) = get("BOTMEDIA_APP_SECRET") {
                s.credentials = Credentials::Secret(SecretString::new(secret));
            }
        }
        if let Some(id) = get("BOTMEDIA_INSTANCE_ID") {
            let id = id.trim().to_owned();
            check_instance_id(&id).map_err(|problem| EnvError {
                var: "BOTMEDIA_INSTANCE_ID",
                problem,
            })?;
            s.instance_id = Some(id);
        }
        if let Some(url) = get("BOTMEDIA_CALLBACK_URL") {
            check_url("BOTMEDIA_CALLBACK_URL", &url)?;
            s.callback_url = Some(url);
        }
        if let Some(url) = get("BOTMEDIA_SHARED_CALLBACK_URL") {
            check_url("BOTMEDIA_SHARED_CALLBACK_URL", &url)?;
            if url.contains(INSTANCE_PLACEHOLDER) {
                return Err(EnvError {
                    var: "BOTMEDIA_SHARED_CALLBACK_URL",
                    problem: format!(
                        "`{url}` contains {INSTANCE_PLACEHOLDER}, but every instance shares this URL"
                    ),
                });
            }
            s.shared_callback_url = Some(url);
        }
        if let Some(addr) = get("BOTMEDIA_WEBHOOK_LISTEN") {
            s.webhook_listen = Some(parse_addr("BOTMEDIA_WEBHOOK_LISTEN", &addr)?);
        }
        for (name, slot) in [
            ("BOTMEDIA_GRAPH_URL", &mut s.graph_url),
            ("BOTMEDIA_AUTHORITY", &mut s.authority),
            (
                "BOTMEDIA_OPENID_CONFIGURATION_URL",
                &mut s.openid_configuration_url,
            ),
        ] {
            if let Some(url) = get(name) {
                check_url(name, &url)?;
                *slot = url;
            }
        }
        if let Some(addr) = get("BOTMEDIA_MEDIA_LISTEN") {
            s.media.listen = parse_addr("BOTMEDIA_MEDIA_LISTEN", &addr)?;
        }
        if let Some(uri) = get("BOTMEDIA_PUBLIC_MP_URI") {
            check_url("BOTMEDIA_PUBLIC_MP_URI", &uri)?;
            s.media.public_mp_uri = Some(uri);
        }
        if let Some(list) = get("BOTMEDIA_ICE_ADDRESSES") {
            s.media.ice_addresses = list
                .split(',')
                .map(|a| {
                    a.trim().parse::<IpAddr>().map_err(|e| EnvError {
                        var: "BOTMEDIA_ICE_ADDRESSES",
                        problem: format!("`{}` is not an IP address: {e}", a.trim()),
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(text) = get("BOTMEDIA_ICE_PORTS") {
            s.media.ice_ports = Some(parse_ports("BOTMEDIA_ICE_PORTS", &text)?);
        }
        if let Some(list) = get("BOTMEDIA_ICE_PUBLIC_ADDRESSES") {
            s.media.ice_public_addresses = list
                .split(',')
                .map(|a| {
                    a.trim().parse::<IpAddr>().map_err(|e| EnvError {
                        var: "BOTMEDIA_ICE_PUBLIC_ADDRESSES",
                        problem: format!("`{}` is not an IP address: {e}", a.trim()),
                    })
                })
                .collect::<Result<_, _>>()?;
            if let Some(problem) = s.media.ice_problem() {
                return Err(EnvError {
                    var: "BOTMEDIA_ICE_PUBLIC_ADDRESSES",
                    problem,
                });
            }
        }
        if s.instance_id.is_none() {
            for (var, value) in [
                ("BOTMEDIA_CALLBACK_URL", &s.callback_url),
                ("BOTMEDIA_PUBLIC_MP_URI", &s.media.public_mp_uri),
            ] {
                if value
                    .as_deref()
                    .is_some_and(|v| v.contains(INSTANCE_PLACEHOLDER))
                {
                    return Err(EnvError {
                        var: "BOTMEDIA_INSTANCE_ID",
                        problem: format!(
                            "is not set but {var} contains {INSTANCE_PLACEHOLDER} (set it to this instance's pod name)"
                        ),
                    });
                }
            }
        }
        if let Some(on) = switch(&get, "BOTMEDIA_SHARED_UDP")? {
            s.media.shared_udp = on;
        }
        if let Some(on) = switch(&get, "BOTMEDIA_LEAN_MEDIA")? {
            s.media.lean_media = on;
        }
        if let Some(text) = get("BOTMEDIA_UNMIXED_AUDIO") {
            let max = media_session::MAX_UNMIXED_STREAMS;
            let streams = text
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| EnvError {
                    var: "BOTMEDIA_UNMIXED_AUDIO",
                    problem: format!(
                        "`{}` is not a number of speaker streams from 0 to {max}",
                        text.trim()
                    ),
                })?;
            s.audio = s.audio.with_unmixed_meeting_audio(streams);
        }
        match (
            get("BOTMEDIA_MEDIA_TLS_CERT"),
            get("BOTMEDIA_MEDIA_TLS_KEY"),
        ) {
            (Some(cert), Some(key)) => {
                s.media.tls = Some(media_endpoint::TlsConfig {
                    cert_chain_pem: cert.into(),
                    private_key_pem: key.into(),
                });
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(EnvError {
                    var: "BOTMEDIA_MEDIA_TLS_KEY",
                    problem: "is not set but BOTMEDIA_MEDIA_TLS_CERT is (set both)".into(),
                });
            }
            (None, Some(_)) => {
                return Err(EnvError {
                    var: "BOTMEDIA_MEDIA_TLS_CERT",
                    problem: "is not set but BOTMEDIA_MEDIA_TLS_KEY is (set both)".into(),
                });
            }
        }
        Ok(s)
    }

    /// These settings with this instance's id in a fleet (see [`Self::instance_id`]).
    pub fn with_instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// These settings with the app's webhook URL a fleet shares (see
    /// [`Self::shared_callback_url`]).
    pub fn with_shared_callback_url(mut self, url: impl Into<String>) -> Self {
        self.shared_callback_url = Some(url.into());
        self
    }

    /// These settings with the webhook's public URL.
    pub fn with_callback_url(mut self, url: impl Into<String>) -> Self {
        self.callback_url = Some(url.into());
        self
    }

    /// These settings with the bot serving its webhook on `addr`.
    pub fn with_webhook_listen(mut self, addr: SocketAddr) -> Self {
        self.webhook_listen = Some(addr);
        self
    }

    /// These settings with the media platform's settings.
    pub fn with_media(mut self, media: MediaPlatformSettings) -> Self {
        self.media = media;
        self
    }

    /// These settings with every session's encoder, jitter buffer and send bound.
    pub fn with_session_media(mut self, media: SessionMediaSettings) -> Self {
        self.media.session_defaults = media;
        self
    }

    /// These settings with the audio socket of every call (direction, format).
    pub fn with_audio(mut self, audio: AudioSocketSettings) -> Self {
        self.audio = audio;
        self
    }

    /// These settings asking, for every call, for unmixed meeting audio on `streams`
    /// speaker streams (the anchor's `ReceiveUnmixedMeetingAudio`; up to
    /// [`MAX_UNMIXED_STREAMS`](media_session::MAX_UNMIXED_STREAMS), 4, the anchor's
    /// default; 0 switches it off). In a meeting, each received frame then carries, beside
    /// the mix, the audio of up to `streams` dominant speakers, each tagged with its
    /// source id; [`BotCall::unmixed`](super::BotCall::unmixed) names their participants.
    /// A service without unmixed audio, or a call that is no meeting, still delivers the
    /// mix: [`AudioSocketEvent::UnmixedAudio`](crate::AudioSocketEvent::UnmixedAudio)
    /// says how many streams came. Each stream costs a jitter buffer and a decoder.
    /// More than the maximum makes [`Bot::start`](super::Bot::start) fail. For one call
    /// only, pass settings of its own to
    /// [`Bot::call_with`](super::Bot::call_with) or
    /// [`IncomingBotCall::answer_with`](super::IncomingBotCall::answer_with).
    pub fn with_unmixed_meeting_audio(mut self, streams: u8) -> Self {
        self.audio = self.audio.with_unmixed_meeting_audio(streams);
        self
    }
}

fn check_url(var: &'static str, url: &str) -> Result<(), EnvError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(EnvError {
            var,
            problem: format!("`{url}` is not an http:// or https:// URL"),
        })
    }
}

/// Why `id` is not a Kubernetes pod name (an RFC 1123 DNS label), if it is not.
pub(crate) fn check_instance_id(id: &str) -> Result<(), String> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = (1..=63).contains(&id.len())
        && id.chars().all(|c| alnum(c) || c == '-')
        && id.starts_with(alnum)
        && id.ends_with(alnum);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{id}` is not a pod name: 1 to 63 of a-z, 0-9 and '-', starting and ending with a letter or digit (botmedia-0, say)"
        ))
    }
}

/// A port range `LOW-HIGH` (or one port), both ends non-zero, `LOW <= HIGH`.
fn parse_ports(var: &'static str, text: &str) -> Result<RangeInclusive<u16>, EnvError> {
    let bad = |why: &str| EnvError {
        var,
        problem: format!(
            "`{}` is not a port range like 40000-40999: {why}",
            text.trim()
        ),
    };
    let (low, high) = text
        .trim()
        .split_once('-')
        .unwrap_or((text.trim(), text.trim()));
    let port = |p: &str| -> Result<u16, EnvError> {
        match p.trim().parse::<u16>() {
            Ok(0) => Err(bad("port 0 is not a port a peer can reach")),
            Ok(p) => Ok(p),
            Err(e) => Err(bad(&format!("`{}`: {e}", p.trim()))),
        }
    };
    let (low, high) = (port(low)?, port(high)?);
    if low > high {
        return Err(bad("the first port is above the last"));
    }
    Ok(low..=high)
}

/// An on/off variable: `true`/`1` or `false`/`0` (surrounding spaces ignored), `None` when
/// unset or blank.
fn switch(
    get: &impl Fn(&'static str) -> Option<String>,
    var: &'static str,
) -> Result<Option<bool>, EnvError> {
    let Some(text) = get(var) else {
        return Ok(None);
    };
    match text.trim() {
        "true" | "1" => Ok(Some(true)),
        "false" | "0" => Ok(Some(false)),
        other => Err(EnvError {
            var,
            problem: format!("`{other}` is not true or false"),
        }),
    }
}

fn parse_addr(var: &'static str, text: &str) -> Result<SocketAddr, EnvError> {
    text.trim().parse().map_err(|e| EnvError {
        var,
        problem: format!("`{text}` is not an address like 127.0.0.1:9441: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn env_for_the_emulator_needs_only_its_url() {
        let s = BotSettings::from_vars(vars(&[("BOTMEDIA_EMULATOR", "http://127.0.0.1:8440/")]))
            .unwrap();
        assert_eq!(s.graph_url, "http://127.0.0.1:8440/v1.0");
        assert_eq!(s.app_id, emulator_app::APP_ID);
        assert_eq!(s.webhook_listen, Some("127.0.0.1:0".parse().unwrap()));
        assert!(s.callback_url.is_none());
    }

    #[test]
    fn a_flag_wins_then_the_environment_then_the_local_emulator() {
        let none = vars(&[]);
        let s = BotSettings::emulator_or_vars(Some("http://127.0.0.1:9000"), &none).unwrap();
        assert_eq!(s.graph_url, "http://127.0.0.1:9000/v1.0");
        let s = BotSettings::emulator_or_vars(None, &none).unwrap();
        assert_eq!(s.graph_url, "http://127.0.0.1:8440/v1.0");
        let real = [
            ("BOTMEDIA_APP_ID", "a"),
            ("BOTMEDIA_TENANT_ID", "t"),
            ("BOTMEDIA_APP_SECRET", "s"),
        ];
        let s = BotSettings::emulator_or_vars(None, vars(&real)).unwrap();
        assert_eq!(s.graph_url, "https://graph.microsoft.com/v1.0");
        let s = BotSettings::emulator_or_vars(Some("http://127.0.0.1:9000"), vars(&real)).unwrap();
        assert_eq!(s.app_id, emulator_app::APP_ID);
        // A service named but incomplete is an error, not a silent fall back to the emulator.
        let e = BotSettings::emulator_or_vars(None, vars(&[("BOTMEDIA_APP_ID", "a")])).unwrap_err();
        assert_eq!(e.var, "BOTMEDIA_TENANT_ID");
    }

    #[test]
    fn env_for_the_real_service_names_what_is_missing_or_wrong() {
        let e = BotSettings::from_vars(vars(&[("BOTMEDIA_APP_ID", "a")])).unwrap_err();
        assert_eq!(e.var, "BOTMEDIA_TENANT_ID");
        let base = [
            ("BOTMEDIA_APP_ID", "a"),
            ("BOTMEDIA_TENANT_ID", "t"),
            ("BOTMEDIA_APP_SECRET", "s"),
        ];
        let s = BotSettings::from_vars(vars(&base)).unwrap();
        assert_eq!(s.graph_url, "https://graph.microsoft.com/v1.0");
        assert!(
            s.authority
                .starts_with("https://login.microsoftonline.com/")
        );
        let mut bad = base.to_vec();
        bad.push(("BOTMEDIA_CALLBACK_URL", "ftp://bot/cb"));
        assert_eq!(
            BotSettings::from_vars(vars(&bad)).unwrap_err().var,
            "BOTMEDIA_CALLBACK_URL"
        );
        let mut bad = base.to_vec();
        bad.push(("BOTMEDIA_ICE_ADDRESSES", "10.0.0.4, nope"));
        let e = BotSettings::from_vars(vars(&bad)).unwrap_err();
        assert!(e.to_string().contains("`nope` is not an IP address"), "{e}");
        let mut good = base.to_vec();
        good.extend([
            ("BOTMEDIA_ICE_ADDRESSES", "10.0.0.4, 10.0.0.5"),
            ("BOTMEDIA_WEBHOOK_LISTEN", "0.0.0.0:9441"),
            (
                "BOTMEDIA_PUBLIC_MP_URI",
                "https://media.contoso.com:8445/MediaProcessor",
            ),
        ]);
        let s = BotSettings::from_vars(vars(&good)).unwrap();
        assert_eq!(s.media.ice_addresses.len(), 2);
        assert!(s.media.tls.is_none());
        let mut half = good.clone();
        half.push(("BOTMEDIA_MEDIA_TLS_CERT", "/etc/bot/media.pem"));
        assert_eq!(
            BotSettings::from_vars(vars(&half)).unwrap_err().var,
            "BOTMEDIA_MEDIA_TLS_KEY"
        );
        assert_eq!(s.webhook_listen, Some("0.0.0.0:9441".parse().unwrap()));
    }

    const EMULATOR: (&str, &str) = ("BOTMEDIA_EMULATOR", "http://127.0.0.1:8440");

    fn with<'a>(extra: &[(&'a str, &'a str)]) -> Result<BotSettings, EnvError> {
        let mut all = vec![EMULATOR];
        all.extend_from_slice(extra);
        BotSettings::from_vars(vars(&all))
    }

    #[test]
    fn a_fleet_instance_has_an_id_its_own_callback_url_and_the_shared_one() {
        let s = with(&[
            ("BOTMEDIA_INSTANCE_ID", "botmedia-0"),
            (
                "BOTMEDIA_CALLBACK_URL",
                "https://bot.contoso.com/callback/{instance}",
            ),
            (
                "BOTMEDIA_SHARED_CALLBACK_URL",
                "https://bot.contoso.com/callback",
            ),
            (
                "BOTMEDIA_PUBLIC_MP_URI",
                "https://{instance}.media.contoso.com:8445/MediaProcessor",
            ),
        ])
        .unwrap();
        assert_eq!(s.instance_id.as_deref(), Some("botmedia-0"));
        // Replaced when the bot starts, so that settings built in code get the same.
        assert_eq!(
            s.callback_url.as_deref(),
            Some("https://bot.contoso.com/callback/{instance}")
        );
        assert_eq!(
            s.shared_callback_url.as_deref(),
            Some("https://bot.contoso.com/callback")
        );
        assert!(with(&[]).unwrap().instance_id.is_none());
    }

    #[test]
    fn an_instance_id_is_a_pod_name() {
        for good in ["botmedia-0", "a", "0", "bot-media-12", &"a".repeat(63)] {
            let s = with(&[("BOTMEDIA_INSTANCE_ID", good)]).unwrap();
            assert_eq!(s.instance_id.as_deref(), Some(good));
        }
        for bad in [
            "Botmedia-0",
            "botmedia_0",
            "-botmedia",
            "botmedia-",
            "bot.media",
            "botmédia",
            &"a".repeat(64),
        ] {
            let e = with(&[("BOTMEDIA_INSTANCE_ID", bad)]).unwrap_err();
            assert_eq!(e.var, "BOTMEDIA_INSTANCE_ID", "{bad}");
            assert!(e.to_string().contains("is not a pod name"), "{e}");
        }
    }

    #[test]
    fn a_placeholder_needs_an_instance_id_and_the_shared_url_has_none() {
        for var in ["BOTMEDIA_CALLBACK_URL", "BOTMEDIA_PUBLIC_MP_URI"] {
            let e = with(&[(var, "https://bot.contoso.com/{instance}/x")]).unwrap_err();
            assert_eq!(e.var, "BOTMEDIA_INSTANCE_ID");
            assert!(e.to_string().contains(var), "{e}");
        }
        let e = with(&[
            ("BOTMEDIA_INSTANCE_ID", "botmedia-0"),
            (
                "BOTMEDIA_SHARED_CALLBACK_URL",
                "https://bot.contoso.com/callback/{instance}",
            ),
        ])
        .unwrap_err();
        assert_eq!(e.var, "BOTMEDIA_SHARED_CALLBACK_URL");
        let e = with(&[("BOTMEDIA_SHARED_CALLBACK_URL", "bot.contoso.com/callback")]).unwrap_err();
        assert_eq!(e.var, "BOTMEDIA_SHARED_CALLBACK_URL");
    }

    #[test]
    fn unmixed_audio_is_off_by_default_and_0_to_4_streams() {
        assert_eq!(with(&[]).unwrap().audio.unmixed_streams, 0);
        let s = with(&[("BOTMEDIA_UNMIXED_AUDIO", " 4 ")]).unwrap();
        assert_eq!(s.audio.unmixed_streams, 4);
        assert_eq!(
            BotSettings::emulator(BotSettings::LOCAL_EMULATOR)
                .with_unmixed_meeting_audio(2)
                .audio
                .unmixed_streams,
            2
        );
        for bad in ["5", "-1", "all", "256"] {
            let e = with(&[("BOTMEDIA_UNMIXED_AUDIO", bad)]).unwrap_err();
            assert_eq!(e.var, "BOTMEDIA_UNMIXED_AUDIO", "{bad}");
            assert!(e.to_string().contains("from 0 to 4"), "{bad}: {e}");
        }
    }

    #[test]
    fn lean_media_is_true_or_false() {
        // On unless switched off.
        assert!(with(&[]).unwrap().media.lean_media);
        assert!(
            with(&[("BOTMEDIA_LEAN_MEDIA", "true")])
                .unwrap()
                .media
                .lean_media
        );
        assert!(
            !with(&[("BOTMEDIA_LEAN_MEDIA", " 0 ")])
                .unwrap()
                .media
                .lean_media
        );
        let e = with(&[("BOTMEDIA_LEAN_MEDIA", "lean")]).unwrap_err();
        assert_eq!(e.var, "BOTMEDIA_LEAN_MEDIA");
        assert!(e.problem.contains("lean"), "{}", e.problem);
    }

    #[test]
    fn shared_udp_is_true_or_false() {
        assert!(!with(&[]).unwrap().media.shared_udp);
        assert!(
            with(&[("BOTMEDIA_SHARED_UDP", " true ")])
                .unwrap()
                .media
                .shared_udp
        );
        assert!(
            with(&[("BOTMEDIA_SHARED_UDP", "1")])
                .unwrap()
                .media
                .shared_udp
        );
        assert!(
            !with(&[("BOTMEDIA_SHARED_UDP", "false")])
                .unwrap()
                .media
                .shared_udp
        );
        for bad in ["yes", "2", "on"] {
            let e = with(&[("BOTMEDIA_SHARED_UDP", bad)]).unwrap_err();
            assert_eq!(e.var, "BOTMEDIA_SHARED_UDP", "{bad}");
            assert!(e.problem.contains(bad), "{}", e.problem);
        }
    }

    #[test]
    fn ice_ports_are_a_range_of_non_zero_ports() {
        let s = with(&[("BOTMEDIA_ICE_PORTS", " 40000-40999 ")]).unwrap();
        assert_eq!(s.media.ice_ports, Some(40000..=40999));
        let s = with(&[("BOTMEDIA_ICE_PORTS", "40000")]).unwrap();
        assert_eq!(s.media.ice_ports, Some(40000..=40000));
        assert_eq!(with(&[]).unwrap().media.ice_ports, None);
        for (bad, why) in [
            ("40999-40000", "above the last"),
            ("0-100", "port 0"),
            ("40000-", "`40000-`"),
            ("40000-70000", "`70000`"),
            ("forty", "`forty`"),
        ] {
            let e = with(&[("BOTMEDIA_ICE_PORTS", bad)]).unwrap_err();
            assert_eq!(e.var, "BOTMEDIA_ICE_PORTS", "{bad}");
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn ice_public_addresses_pair_with_the_ice_addresses() {
        let s = with(&[
            ("BOTMEDIA_ICE_ADDRESSES", "10.0.0.4,10.0.0.5"),
            ("BOTMEDIA_ICE_PUBLIC_ADDRESSES", "52.1.2.3"),
        ])
        .unwrap();
        assert_eq!(
            s.media.ice_public_addresses,
            ["52.1.2.3".parse::<IpAddr>().unwrap()]
        );
        let s = with(&[
            ("BOTMEDIA_ICE_ADDRESSES", "10.0.0.4,10.0.0.5"),
            ("BOTMEDIA_ICE_PUBLIC_ADDRESSES", "52.1.2.3, 52.1.2.4"),
        ])
        .unwrap();
        assert_eq!(s.media.ice_public_addresses.len(), 2);
        let e = with(&[("BOTMEDIA_ICE_PUBLIC_ADDRESSES", "52.1.2.3,52.1.2.4")]).unwrap_err();
        assert_eq!(e.var, "BOTMEDIA_ICE_PUBLIC_ADDRESSES");
        assert!(
            e.to_string().contains("2 ICE public addresses for 1"),
            "{e}"
        );
        let e = with(&[("BOTMEDIA_ICE_PUBLIC_ADDRESSES", "node-1")]).unwrap_err();
        assert!(
            e.to_string().contains("`node-1` is not an IP address"),
            "{e}"
        );
    }
}
