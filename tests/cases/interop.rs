// The scenario of tests/interop_chromium.rs and tests/interop_firefox.rs, which include this
// file with `BROWSER`, `SHARED_UDP` and `LEAN_MEDIA` set and a launcher for their browser.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use botmedia::session::AudioSocketSettings;
use botmedia::{
    AudioSocketEvent, AudioSocketItem, EndReason, FrameSource, MediaSession, SendStatus,
};
use common::browser::Browser;
use common::join::{self, dbfs, tone_frame, tone_share};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

const PAGE: &str = include_str!("../interop.html");
/// What each bot plays, and what the page plays on that bot's leg.
const BOT_HZ: [f64; 4] = [500.0, 700.0, 900.0, 1_100.0];
const SERVICE_HZ: [f64; 4] = [600.0, 800.0, 1_000.0, 1_200.0];
/// The DTMF digits the page sends on each leg before hanging up.
const DIGITS: [&str; 4] = ["159#", "260*", "37A", "48D"];
/// How long the page measures, after a first second it skips.
const MEASURE_S: u32 = 5;

/// What one bot saw on its socket.
#[derive(Default)]
struct BotLog {
    samples: Vec<i16>,
    sources: Vec<FrameSource>,
    events: Vec<AudioSocketEvent>,
    /// The DTMF tones received, in order.
    tones: String,
    /// When the socket first said Active, from the test's start.
    active_after: Option<Duration>,
}

/// Plays `hz` (one frame out per frame in) and records what comes in, until the socket
/// ends or `stop`; hands the session back so the test decides when it is dropped.
async fn run_bot(
    mut session: MediaSession,
    hz: f64,
    start: Instant,
    mut stop: watch::Receiver<bool>,
) -> (MediaSession, BotLog) {
    let socket = session.audio_socket();
    let mut log = BotLog::default();
    let mut phase = 0.0f64;
    loop {
        tokio::select! {
            item = socket.next() => match item {
                Some(AudioSocketItem::Frame(f)) => {
                    let out = tone_frame(hz, &mut phase);
                    // Discarded before Active; a full queue drops the frame.
                    let _ = socket.send(out);
                    log.samples.extend_from_slice(&f.pcm.samples);
                    log.sources.push(f.source);
                }
                Some(AudioSocketItem::Event(e)) => {
                    if e == AudioSocketEvent::SendStatusChanged(SendStatus::Active)
                        && log.active_after.is_none()
                    {
                        log.active_after = Some(start.elapsed());
                    }
                    match e {
                        AudioSocketEvent::QualityUpdated(_) => {}
                        AudioSocketEvent::ToneReceived(t) => log.tones.push_str(&t.to_string()),
                        e => log.events.push(e),
                    }
                }
                None => break,
            },
            _ = stop.changed() => break,
        }
    }
    (session, log)
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The page's server: the page, its log lines (printed) and its report.
async fn serve_page(report: mpsc::Sender<Value>) -> (String, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/log",
            post(|line: String| async move { println!("page: {line}") }),
        )
        .route(
            "/report",
            post(
                |State(tx): State<mpsc::Sender<Value>>, body: axum::Json<Value>| async move {
                    let _ = tx.send(body.0).await;
                },
            ),
        )
        .with_state(report);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the page's server");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), server)
}

/// The attribute lines of an SDP that say what a peer negotiates (no ICE, DTLS or SSRC
/// details), for the test's output.
fn sdp_summary(sdp: &str) -> String {
    sdp.lines()
        .filter(|l| {
            [
                "m=",
                "a=group",
                "a=rtpmap",
                "a=fmtp",
                "a=rtcp-fb",
                "a=extmap",
                "a=setup",
                "a=rtcp-mux",
                "a=mid",
            ]
            .iter()
            .any(|p| l.starts_with(p))
                || ["a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"].contains(l)
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The whole scenario: four bot sessions on the platform `platform()` starts (with
/// `SHARED_UDP` and `LEAN_MEDIA`), the page opened by `launch(url)` in the browser.
async fn scenario(launch: impl FnOnce(&str) -> Browser) {
    let start = Instant::now();
    let platform = platform().await;

    // The bots: one session each, its tone and recorder running from the start.
    let (stop, stopped) = watch::channel(false);
    let mut legs = Vec::new();
    let mut bots = Vec::new();
    let mut contexts = Vec::new();
    for ((&bot_hz, &service_hz), digits) in BOT_HZ.iter().zip(&SERVICE_HZ).zip(DIGITS) {
        let session = platform
            .create_session(AudioSocketSettings::default(), None)
            .expect("session");
        // What the calling service reads from the blob it was given.
        let blob = session.blob();
        legs.push(format!(
            "leg={}",
            encode(&format!(
                "{},{},{service_hz},{bot_hz},{digits}",
                blob.mp_uri,
                blob.mp_media_session_id.expose()
            ))
        ));
        contexts.push(session.audio_source_context().expect("a source context"));
        bots.push(tokio::spawn(run_bot(
            session,
            bot_hz,
            start,
            stopped.clone(),
        )));
    }
    assert_eq!(platform.active_calls(), BOT_HZ.len());

    let (report_tx, mut report_rx) = mpsc::channel(1);
    let (base, server) = serve_page(report_tx).await;
    let url = format!("{base}/?measure={MEASURE_S}&{}", legs.join("&"));
    let browser = launch(&url);

    // The page connects, measures for 1 + MEASURE_S s, deletes its legs and reports.
    let report = match tokio::time::timeout(Duration::from_secs(60), report_rx.recv()).await {
        Ok(Some(r)) => r,
        _ => panic!(
            "no report from the page; {BROWSER} said:\n{}",
            browser.output()
        ),
    };
    let browser_log = browser.output();
    drop(browser);

    // After the DELETEs each socket ends by itself (bounded).
    let mut ended = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    for bot in bots {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, bot).await {
            Ok(r) => ended.push(r.expect("bot task")),
            Err(_) => {
                let _ = stop.send(true);
                panic!("a bot's socket did not end after its leg was deleted: {report:#}");
            }
        }
    }
    let calls_with_sessions = platform.active_calls();
    // Once a leg has ended its Location is gone: a second DELETE finds nothing. (Sent here,
    // after the socket said Ended: a DELETE right after the first may still find the leg
    // stopping and answer 200 again.)
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut second_delete = Vec::new();
    for i in 0..BOT_HZ.len() {
        let status = match report["legs"][i]["location"].as_str() {
            Some(location) => http
                .delete(location)
                .send()
                .await
                .map_or(0, |r| r.status().as_u16()),
            None => 0,
        };
        second_delete.push(status);
    }

    println!("{BROWSER}: {}", report["userAgent"]);
    // What the browser's WebRTC complained about, if anything (printed, not judged). With
    // the endpoint's answer libwebrtc warns once per leg that a candidate has an unknown
    // component: webrtc-rs lists each host candidate for RTCP (component 2) too, although
    // rtcp-mux is negotiated; libwebrtc ignores those lines.
    for line in browser_log.lines().filter(|l| {
        (l.contains("ERROR:") || l.contains("WARNING:"))
            && (l.contains("third_party/webrtc") || l.contains("WebRTC"))
    }) {
        println!("{BROWSER} log: {line}");
    }
    println!("page's AudioContext: {}", report["audioContext"]);
    let mut failures = Vec::new();
    if let Some(e) = report.get("error") {
        failures.push(format!("the page failed: {e}"));
    }
    for (i, (_, log)) in ended.iter().enumerate() {
        let leg = &report["legs"][i];
        let (bot_hz, service_hz) = (BOT_HZ[i], SERVICE_HZ[i]);
        if i == 0 {
            println!(
                "{BROWSER}'s offer: {}",
                sdp_summary(leg["offer"].as_str().unwrap_or(""))
            );
            println!(
                "endpoint's answer: {}",
                sdp_summary(leg["answer"].as_str().unwrap_or(""))
            );
        }
        // What the bot heard: 4 s after the first second of decoded audio (the page plays
        // its tone for 6 s before its DTMF digits).
        let decoded: Vec<usize> = log
            .sources
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, FrameSource::Decoded | FrameSource::FecRecovered))
            .map(|(i, _)| i)
            .collect();
        let (share, level, frames) = match (decoded.first(), decoded.last()) {
            (Some(&first), Some(&last)) if last >= first + 250 => {
                let w = &log.samples[(first + 50) * 320..(first + 250) * 320];
                (tone_share(w, service_hz), dbfs(w), 200)
            }
            _ => (0.0, -120.0, 0),
        };
        let concealed = log
            .sources
            .iter()
            .filter(|s| matches!(s, FrameSource::Concealed))
            .count();
        println!(
            "leg {i}: POST {} answer {} ms, connected {} ms after POST ({} ms after page start), \
             bot Active at {:?}; ICE {} DTLS {} ({}, {}), {} / {}; \
             page heard bot's {bot_hz} Hz: median share {:.3} (min {:.3}), {} of {} windows, \
             {:.1} dBFS, {} packets, {} lost; \
             bot heard page's {service_hz} Hz: share {share:.3}, {level:.1} dBFS over {frames} frames \
             ({} decoded, {concealed} concealed); DTMF sent {} received {:?}; \
             DELETE {} then {}; bot events {:?}",
            leg["postStatus"],
            leg["answerMs"],
            leg["connectMs"],
            leg["sinceStartMs"],
            log.active_after,
            leg["iceState"],
            leg["dtlsState"],
            leg["dtlsRole"],
            leg["srtpCipher"],
            leg["inboundCodec"],
            leg["outboundCodec"],
            leg["medianShare"].as_f64().unwrap_or(0.0),
            leg["minShare"].as_f64().unwrap_or(0.0),
            leg["windowsWithTone"],
            leg["windows"],
            leg["medianDbfs"].as_f64().unwrap_or(-120.0),
            leg["packetsReceived"],
            leg["packetsLost"],
            decoded.len(),
            leg["dtmfSent"],
            log.tones,
            leg["deleteStatus"],
            second_delete[i],
            log.events,
        );
        if leg["connected"] != true {
            failures.push(format!("leg {i} did not connect: {}", leg["error"]));
            continue;
        }
        if leg["dtlsState"] != "connected" {
            failures.push(format!("leg {i}: DTLS {}", leg["dtlsState"]));
        }
        if share <= 0.7 || frames < 150 {
            failures.push(format!(
                "bot {i} heard the page's {service_hz} Hz with share {share:.3} over {frames} frames"
            ));
        }
        let page_share = leg["medianShare"].as_f64().unwrap_or(0.0);
        if page_share <= 0.7 || leg["analysed"] != true {
            failures.push(format!(
                "the page heard bot {i}'s {bot_hz} Hz with median share {page_share:.3}"
            ));
        }
        // The answer names the session's source context as its track (a=msid).
        let answer = leg["answer"].as_str().unwrap_or("");
        let context = contexts[i].to_string();
        if !answer
            .lines()
            .any(|l| l.starts_with("a=msid:") && l.trim_end().ends_with(&context))
        {
            failures.push(format!(
                "leg {i}: the answer's a=msid is not the source context {context}"
            ));
        }
        if leg["dtmfSent"] != DIGITS[i] || log.tones != DIGITS[i] {
            failures.push(format!(
                "leg {i}: the page sent DTMF {} (canInsertDTMF {}), bot {i} received {:?}",
                leg["dtmfSent"], leg["canInsertDTMF"], log.tones
            ));
        }
        if leg["deleteStatus"] != 200 || second_delete[i] != 404 {
            failures.push(format!(
                "leg {i}: DELETE answered {} then, once the leg had ended, {}",
                leg["deleteStatus"], second_delete[i]
            ));
        }
        if !log
            .events
            .contains(&AudioSocketEvent::SendStatusChanged(SendStatus::Active))
        {
            failures.push(format!("bot {i}'s socket never became Active"));
        }
        if log.events.last() != Some(&AudioSocketEvent::Ended(EndReason::Deleted)) {
            failures.push(format!(
                "bot {i}'s socket did not end with Ended(Deleted): {:?}",
                log.events
            ));
        }
    }
    // In shared-UDP mode the answers' host candidates name the pumps' shared sockets, no
    // more addresses than pumps for four legs.
    let net = botmedia::endpoint::network_stats();
    let mut hosts: Vec<String> = (0..BOT_HZ.len())
        .flat_map(|i| {
            let answer = report["legs"][i]["answer"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            answer
                .lines()
                .filter(|l| l.starts_with("a=candidate:") && l.contains(" typ host"))
                .map(|l| l.split(' ').skip(4).take(2).collect::<Vec<_>>().join(":"))
                .collect::<Vec<_>>()
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    println!("host candidates of the four answers: {hosts:?}; network: {net:?}");
    if SHARED_UDP && (hosts.is_empty() || hosts.len() > net.pumps || net.shared_sockets == 0) {
        failures.push(format!(
            "the legs did not share the pumps' sockets: hosts {hosts:?}, {net:?}"
        ));
    }
    for i in 0..BOT_HZ.len() {
        let answer = report["legs"][i]["answer"].as_str().unwrap_or("");
        if LEAN_MEDIA != (answer.contains("a=ice-lite") && answer.contains("a=setup:passive")) {
            failures.push(format!(
                "leg {i}'s answer is not the {} path's: {answer}",
                if LEAN_MEDIA { "lean" } else { "whole stack" }
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nreport: {report:#}\n{BROWSER} said:\n{browser_log}",
        failures.join("\n")
    );

    // Dropping the sessions frees their calls (bounded wait).
    println!("calls after the legs ended, sessions still held: {calls_with_sessions}");
    drop(ended);
    let deadline = Instant::now() + Duration::from_secs(5);
    while platform.active_calls() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} calls left after the sessions were dropped",
            platform.active_calls()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.abort();
    let _ = server.await;
    tokio::time::timeout(Duration::from_secs(10), platform.shutdown())
        .await
        .expect("the platform shut down");
}
