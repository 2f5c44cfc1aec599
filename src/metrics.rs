//! A bot's figures in the Prometheus text exposition format (version 0.0.4), written by
//! hand: [`render`] for the text, [`router`] for `GET /metrics`.
//!
//! Every series is an aggregate over the bot's calls, so the number of series does not
//! grow with the calls ever made; the only per-item labels are the pipeline threads
//! (fixed at start), call states, health states and refusal reasons (closed sets), and the
//! instance's own id in its info series.
//! Per-call counters are the live calls' sum plus the totals of the calls that ended
//! (folded in under the same lock that removes a call from the live set, so a call is
//! counted once and a counter never goes down).
//!
//! | families | what |
//! |---|---|
//! | `botmedia_instance_info{instance_id,mp_uri}` | 1, with the fleet instance's id and `mpUri` (only when the bot has an instance id) |
//! | `botmedia_calls{state}`, `botmedia_calls_{started,ended}_total` | the bot's calls by Graph state; placed or answered, ended |
//! | `botmedia_platform_health{state}`, `botmedia_platform_calls` | platform health (1 for the current state), calls on the pipeline |
//! | `botmedia_admission_*` | room left, cost per call and thread budget (seconds per 20 ms tick), sessions admitted, refused by reason |
//! | `botmedia_pipeline_*{thread}` | per pipeline thread: calls, ticks, late ticks, missed deadlines, worst lateness and work per tick, call cost, real-time, health |
//! | `botmedia_call_*_total` | frames received, sent, concealed; packets received, FEC-recovered, late, lost, duplicate, dropped by reason; resyncs, underruns, samples accelerated, expanded, concealed, merged... |
//! | `botmedia_call_*_max_{seconds,ratio}` | worst jitter, playout delay, standing send queue, reported loss over the live calls |
//! | `botmedia_call_{receive,send,send_queue}_latency_seconds` | histograms of the latency the pipeline adds |
//! | `botmedia_network_*` | the network pumps of the process: pumps, legs, shared sockets, wake-ups, datagrams received and sent, send system calls, send errors, datagrams dropped (cut, unrouted), path conflicts |
//! | `botmedia_webhook_*_total` | notification requests accepted, refused by reason, notifications dispatched, calls nobody here claimed |
//!
//! ```no_run
//! # async fn demo(bot: botmedia::Bot) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9464").await?;
//! axum::serve(listener, botmedia::metrics::router(bot)).await
//! # }
//! ```

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use audio_pipeline::{
    AdmissionError, CallLatency, CallObserver, CallStats, LatencyHistogram, PlatformHealth, Ticks,
};
use signalling::model::CallState;
use signalling::webhook::WebhookStats;

use crate::{Bot, SessionError};

/// The content type of the text exposition format this module writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of the latency histograms' buckets, in seconds. Each is a bucket edge of
/// [`LatencyHistogram`] (0.1 ms steps below 100 ms, 1 ms steps above), so the cumulative
/// counts are exact.
const LATENCY_BOUNDS: [f64; 15] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0,
];

/// Why admission refused a session, as the `reason` label says it.
const REFUSALS: [&str; 4] = ["overloaded", "at_capacity", "full", "other"];

fn refusal_index(e: &AdmissionError) -> usize {
    match e {
        AdmissionError::Overloaded => 0,
        AdmissionError::AtCapacity { .. } => 1,
        AdmissionError::Full { .. } => 2,
        _ => 3,
    }
}

/// What a bot keeps for its metrics: admissions, refusals and the totals of its ended
/// calls. Held by the bot; written when a session is created and when a call leaves the
/// bot's live set.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    admitted: AtomicU64,
    refused: [AtomicU64; REFUSALS.len()],
    ended: Mutex<Totals>,
}

/// Counters summed over calls, and their latency histograms merged.
#[derive(Clone, Debug, Default)]
struct Totals {
    calls: u64,
    stats: CallStats,
    latency: CallLatency,
}

impl Totals {
    fn add(&mut self, stats: &CallStats, latency: &CallLatency) {
        self.calls += 1;
        self.stats.add_counters(stats);
        self.latency.merge(latency);
    }
}

/// The largest of each gauge over the live calls.
#[derive(Clone, Copy, Debug, Default)]
struct Peaks {
    jitter: Ticks,
    playout_delay: Ticks,
    send_standing: Ticks,
    remote_loss_percent: u64,
}

impl Peaks {
    fn add(&mut self, s: &CallStats) {
        self.jitter = self.jitter.max(Ticks(s.jitter_ticks));
        self.playout_delay = self.playout_delay.max(Ticks(s.buffer_delay_ticks));
        self.send_standing = self.send_standing.max(Ticks(s.send_standing_ticks));
        self.remote_loss_percent = self.remote_loss_percent.max(s.remote_loss_percent);
    }
}

/// The bot's calls at one instant: read under the bot's calls lock.
pub(crate) struct View {
    states: Vec<Option<CallState>>,
    live: Totals,
    peaks: Peaks,
    ended: Totals,
    admitted: u64,
    refused: [u64; REFUSALS.len()],
}

impl Ledger {
    /// Counts a session admission or refusal.
    pub(crate) fn admission<T>(&self, result: &Result<T, SessionError>) {
        match result {
            Ok(_) => {
                self.admitted.fetch_add(1, Ordering::Relaxed);
            }
            Err(SessionError::Admission(e)) => {
                self.refused[refusal_index(e)].fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }

    /// Folds a call that left the bot's live set into the ended totals. Call it under the
    /// lock that guards the live set, the same one [`Ledger::view`] runs under.
    pub(crate) fn call_ended(&self, media: Option<&CallObserver>) {
        let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        match media {
            Some(m) => ended.add(&m.stats(), &m.latency()),
            None => ended.calls += 1,
        }
    }

    /// Reads the live calls and the ended totals. Call it under the lock that guards the
    /// live set: a call is then either live here or folded into the totals, never both.
    pub(crate) fn view<'a>(
        &self,
        live: impl Iterator<Item = (Option<CallState>, Option<&'a CallObserver>)>,
    ) -> View {
        let mut states = Vec::new();
        let mut totals = Totals::default();
        let mut peaks = Peaks::default();
        for (state, media) in live {
            states.push(state);
            match media {
                Some(m) => {
                    let stats = m.stats();
                    totals.add(&stats, &m.latency());
                    if !m.is_removed() {
                        peaks.add(&stats);
                    }
                }
                None => totals.calls += 1,
            }
        }
        let ended = self.ended.lock().unwrap_or_else(|p| p.into_inner()).clone();
        View {
            states,
            live: totals,
            peaks,
            ended,
            admitted: self.admitted.load(Ordering::Relaxed),
            refused: std::array::from_fn(|i| self.refused[i].load(Ordering::Relaxed)),
        }
    }
}

/// A router serving `GET /metrics` with the bot's figures (content type [`CONTENT_TYPE`]).
/// Merge it into an app of your own, or serve it alone.
///
/// Rendering runs on Tokio's blocking pool: it snapshots and merges every live call's
/// latency histograms (three of 2 001 buckets each), work that grows with the calls and
/// does not belong on a runtime worker.
pub fn router(bot: Bot) -> axum::Router {
    use axum::http::{StatusCode, header};
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let bot = bot.clone();
            async move {
                match tokio::task::spawn_blocking(move || render(&bot)).await {
                    Ok(text) => (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text),
                    Err(e) => {
                        tracing::error!(error = %e, "rendering the metrics failed");
                        (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                            String::new(),
                        )
                    }
                }
            }
        }),
    )
}

/// The bot's figures in the Prometheus text exposition format 0.0.4.
pub fn render(bot: &Bot) -> String {
    let view = bot.metrics_view();
    let platform = bot.platform();
    let mut w = Writer::default();

    if let Some(instance) = bot.instance_id() {
        w.family(
            "botmedia_instance_info",
            "This instance of a fleet: its id (a pod name) and the mpUri its media sessions name. Always 1.",
            Kind::Gauge,
        );
        w.int(
            "botmedia_instance_info",
            &[("instance_id", instance), ("mp_uri", platform.mp_uri())],
            1,
        );
    }

    w.family(
        "botmedia_calls",
        "The bot's calls that have not ended, by Graph call state (unknown: not told yet or a state this version does not know).",
        Kind::Gauge,
    );
    let mut by_state: Vec<(&str, u64)> = CallState::KNOWN.iter().map(|s| (s.as_str(), 0)).collect();
    by_state.push(("unknown", 0));
    for state in &view.states {
        let name = match state {
            Some(s) if s.is_known() => s.as_str(),
            _ => "unknown",
        };
        if let Some(entry) = by_state.iter_mut().find(|(n, _)| *n == name) {
            entry.1 += 1;
        }
    }
    for (state, n) in &by_state {
        w.int("botmedia_calls", &[("state", state)], *n);
    }
    let calls = view.live.calls + view.ended.calls;
    w.counter(
        "botmedia_calls_started_total",
        "Calls the bot placed or answered.",
        calls,
    );
    w.counter(
        "botmedia_calls_ended_total",
        "Calls of the bot that ended.",
        view.ended.calls,
    );

    let health = platform.health();
    w.family(
        "botmedia_platform_health",
        "The media platform's health: 1 for the current state, 0 for the others (overloaded: new calls are refused).",
        Kind::Gauge,
    );
    for (name, h) in [
        ("normal", PlatformHealth::Normal),
        ("heavily_loaded", PlatformHealth::HeavilyLoaded),
        ("overloaded", PlatformHealth::Overloaded),
    ] {
        w.int(
            "botmedia_platform_health",
            &[("state", name)],
            u64::from(health == h),
        );
    }
    w.gauge_int(
        "botmedia_platform_calls",
        "Calls on the media pipeline, including ones removed but not yet freed.",
        platform.active_calls() as u64,
    );

    let capacity = platform.capacity();
    w.gauge_int(
        "botmedia_admission_room_calls",
        "Calls the platform can still admit at the current cost per call.",
        capacity.room as u64,
    );
    w.gauge(
        "botmedia_admission_call_cost_seconds",
        "Work per 20 ms tick that admission counts for one call.",
        secs(capacity.call_cost),
    );
    w.gauge_int(
        "botmedia_admission_call_cost_measured",
        "1 when the cost per call was measured, 0 while it is the configured assumption.",
        u64::from(capacity.measured),
    );
    w.gauge(
        "botmedia_admission_thread_budget_seconds",
        "Work per 20 ms tick that admission may give one pipeline thread.",
        secs(capacity.budget_per_thread),
    );
    w.counter(
        "botmedia_admission_admitted_total",
        "Media sessions the bot created (admitted by the pipeline).",
        view.admitted,
    );
    w.family(
        "botmedia_admission_refused_total",
        "Media sessions of the bot the pipeline refused, by reason.",
        Kind::Counter,
    );
    for (reason, n) in REFUSALS.iter().zip(view.refused) {
        w.int("botmedia_admission_refused_total", &[("reason", reason)], n);
    }

    threads(&mut w, &platform.thread_loads());
    call_counters(&mut w, &view);
    webhook(&mut w, &bot.client().webhook_stats());
    network(&mut w, &crate::endpoint::network_stats());

    for (name, help, pick) in [
        (
            "botmedia_call_receive_latency_seconds",
            "From a packet's arrival to its frame reaching the bot (concealed and silent frames not counted); _sum estimated from 0.1 ms (1 ms above 100 ms) buckets.",
            (|l: &CallLatency| &l.receive) as fn(&CallLatency) -> &LatencyHistogram,
        ),
        (
            "botmedia_call_send_latency_seconds",
            "From the bot queueing a frame to the network side taking its packet; _sum estimated from 0.1 ms (1 ms above 100 ms) buckets.",
            |l: &CallLatency| &l.send,
        ),
        (
            "botmedia_call_send_queue_latency_seconds",
            "Of the send latency: how long a frame waited in the bot's queue; _sum estimated from 0.1 ms (1 ms above 100 ms) buckets.",
            |l: &CallLatency| &l.send_queue,
        ),
    ] {
        let mut h = pick(&view.ended.latency).clone();
        h.merge(pick(&view.live.latency));
        w.histogram(name, help, &h);
    }
    w.out
}

fn threads(w: &mut Writer, loads: &[audio_pipeline::ThreadLoad]) {
    let ids: Vec<String> = (0..loads.len()).map(|i| i.to_string()).collect();
    type Field = fn(&audio_pipeline::ThreadLoad) -> Value;
    let families: [(&str, &str, Kind, Field); 9] = [
        (
            "botmedia_pipeline_thread_calls",
            "Calls on a pipeline thread.",
            Kind::Gauge,
            |l| Value::Int(l.calls),
        ),
        (
            "botmedia_pipeline_ticks_total",
            "20 ms ticks a pipeline thread ran.",
            Kind::Counter,
            |l| Value::Int(l.ticks),
        ),
        (
            "botmedia_pipeline_late_ticks_total",
            "Ticks of a pipeline thread that started later than the late-tick threshold.",
            Kind::Counter,
            |l| Value::Int(l.late_ticks),
        ),
        (
            "botmedia_pipeline_missed_deadlines_total",
            "Tick deadlines a pipeline thread skipped after falling more than 100 ms behind.",
            Kind::Counter,
            |l| Value::Int(l.skipped_ticks),
        ),
        (
            "botmedia_pipeline_tick_lateness_max_seconds",
            "Worst wake-up lateness of a tick after its deadline over the thread's last second.",
            Kind::Gauge,
            |l| Value::Float(secs(l.max_lateness)),
        ),
        (
            "botmedia_pipeline_tick_busy_max_seconds",
            "Worst work time of one tick over the thread's last second.",
            Kind::Gauge,
            |l| Value::Float(secs(l.max_busy)),
        ),
        (
            "botmedia_pipeline_tick_busy_mean_seconds",
            "Mean work time per tick over the thread's last second.",
            Kind::Gauge,
            |l| Value::Float(secs(l.mean_busy)),
        ),
        (
            "botmedia_pipeline_call_cost_seconds",
            "Measured work of one sending call per tick on the thread (0 until measured).",
            Kind::Gauge,
            |l| Value::Float(secs(l.call_cost)),
        ),
        (
            "botmedia_pipeline_thread_realtime",
            "1 when the pipeline thread got real-time scheduling.",
            Kind::Gauge,
            |l| Value::Int(u64::from(l.realtime)),
        ),
    ];
    for (name, help, kind, field) in families {
        w.family(name, help, kind);
        for (load, id) in loads.iter().zip(&ids) {
            w.sample(name, &[("thread", id)], field(load));
        }
    }
    w.family(
        "botmedia_pipeline_thread_health",
        "A pipeline thread's own health over its last second: 1 for its state, 0 for the others.",
        Kind::Gauge,
    );
    for (load, id) in loads.iter().zip(&ids) {
        for (name, h) in [
            ("normal", PlatformHealth::Normal),
            ("heavily_loaded", PlatformHealth::HeavilyLoaded),
            ("overloaded", PlatformHealth::Overloaded),
        ] {
            w.int(
                "botmedia_pipeline_thread_health",
                &[("thread", id), ("state", name)],
                u64::from(load.health == h),
            );
        }
    }
}

fn webhook(w: &mut Writer, stats: &WebhookStats) {
    w.counter(
        "botmedia_webhook_requests_accepted_total",
        "Notification requests the webhook answered 202 (authenticated, parsed, handed to the calls).",
        stats.accepted,
    );
    w.family(
        "botmedia_webhook_requests_refused_total",
        "Notification requests the webhook refused (403, 400, 413, 503), by reason.",
        Kind::Counter,
    );
    for (reason, n) in stats.refused.iter() {
        w.int(
            "botmedia_webhook_requests_refused_total",
            &[("reason", reason.as_str())],
            n,
        );
    }
    w.counter(
        "botmedia_webhook_notifications_dispatched_total",
        "Notifications of accepted requests handed to their calls' queues.",
        stats.notifications_dispatched,
    );
    w.counter(
        "botmedia_webhook_unclaimed_calls_total",
        "Calls the service notified this bot of that it neither placed nor was offered (calls of an earlier run of this instance, typically): answered, never kept alive; each counted once.",
        stats.unclaimed_calls,
    );
}

/// The network pumps' counters: the process's, so every endpoint of the process counts
/// (a bot has one).
fn network(w: &mut Writer, s: &crate::endpoint::NetworkStats) {
    w.gauge_int(
        "botmedia_network_pumps",
        "Network pump threads driving the legs (started with the first leg).",
        s.pumps as u64,
    );
    w.gauge_int(
        "botmedia_network_legs",
        "WebRTC legs the network pumps drive now.",
        s.legs as u64,
    );
    w.gauge_int(
        "botmedia_network_lean_legs",
        "Of those, legs on the lean media path (ICE lite, DTLS and SRTP done by the leg itself).",
        s.lean_legs as u64,
    );
    w.gauge_int(
        "botmedia_network_shared_sockets",
        "UDP sockets the legs share (shared-UDP mode: one per pump and ICE address; 0 when each leg has its own).",
        s.shared_sockets as u64,
    );
    let counters: [(&str, &str, u64); 8] = [
        (
            "botmedia_network_wakeups_total",
            "Times a network pump woke from its wait (a datagram, a pipeline tick, a timer).",
            s.wakeups,
        ),
        (
            "botmedia_network_datagrams_received_total",
            "UDP datagrams the pumps read.",
            s.datagrams_in,
        ),
        (
            "botmedia_network_datagrams_sent_total",
            "UDP datagrams the pumps sent.",
            s.datagrams_out,
        ),
        (
            "botmedia_network_send_calls_total",
            "System calls that sent datagrams (one per datagram on a leg's own socket, one per batch on a shared socket).",
            s.send_calls,
        ),
        (
            "botmedia_network_send_errors_total",
            "Datagrams the kernel refused to send.",
            s.send_errors,
        ),
        (
            "botmedia_network_datagrams_cut_total",
            "Datagrams dropped for being longer than a receive slot (4 KiB).",
            s.datagrams_cut,
        ),
        (
            "botmedia_network_datagrams_unrouted_total",
            "Datagrams a shared socket received from an address no leg uses, without a Binding request for a leg: dropped.",
            s.datagrams_unrouted,
        ),
        (
            "botmedia_network_path_conflicts_total",
            "Times a peer address moved from one leg of a shared socket to another.",
            s.path_conflicts,
        ),
    ];
    for (name, help, v) in counters {
        w.counter(name, help, v);
    }
}

fn call_counters(w: &mut Writer, view: &View) {
    let mut s = view.ended.stats;
    s.add_counters(&view.live.stats);
    let counters: [(&str, &str, u64); 15] = [
        (
            "botmedia_call_packets_received_total",
            "RTP packets the pipeline took from the calls' inbound queues.",
            s.packets_received,
        ),
        (
            "botmedia_call_frames_received_total",
            "20 ms frames handed to the bot.",
            s.frames_received,
        ),
        (
            "botmedia_call_frames_sent_total",
            "20 ms frames encoded and queued for the network.",
            s.frames_sent,
        ),
        (
            "botmedia_call_frames_concealed_total",
            "Received frames mostly concealed by the decoder (lost, late or invalid packets).",
            s.concealed,
        ),
        (
            "botmedia_call_packets_fec_recovered_total",
            "Lost packets rebuilt from in-band FEC.",
            s.fec_recovered,
        ),
        (
            "botmedia_call_packets_late_total",
            "Packets that arrived after their playout time.",
            s.late_packets,
        ),
        (
            "botmedia_call_packets_lost_total",
            "Packets never received in time to play (concealed or rebuilt).",
            s.lost_packets,
        ),
        (
            "botmedia_call_packets_duplicate_total",
            "Duplicate packets.",
            s.duplicate_packets,
        ),
        (
            "botmedia_call_jitter_buffer_resyncs_total",
            "Jitter buffer resyncs (SSRC change, large jump).",
            s.resyncs,
        ),
        (
            "botmedia_call_send_underruns_total",
            "Ticks where the bot had no frame queued and silence was sent.",
            s.underruns,
        ),
        (
            "botmedia_call_frames_discarded_inactive_total",
            "Frames the bot sent while sending was inactive (discarded).",
            s.discarded_inactive,
        ),
        (
            "botmedia_call_frames_receive_queue_full_total",
            "Received frames dropped because the bot did not drain its queue.",
            s.receive_queue_full,
        ),
        (
            "botmedia_call_packets_outbound_queue_full_total",
            "Encoded packets dropped because the network side did not drain the outbound queue.",
            s.outbound_queue_full,
        ),
        (
            "botmedia_call_late_ticks_total",
            "Ticks of a call that ran later than the late-tick threshold.",
            s.late_ticks,
        ),
        (
            "botmedia_call_send_dropped_frames_total",
            "Quiet frames the bot sent that were dropped whole to absorb a standing send queue.",
            s.send_dropped_frames,
        ),
    ];
    for (name, help, v) in counters {
        w.counter(name, help, v);
    }
    w.family(
        "botmedia_call_packets_dropped_total",
        "Received packets dropped, by reason (other: too far ahead).",
        Kind::Counter,
    );
    let named = s.inbound_queue_full + s.invalid_packets;
    for (reason, v) in [
        ("inbound_queue_full", s.inbound_queue_full),
        ("invalid", s.invalid_packets),
        ("other", s.dropped_packets.saturating_sub(named)),
    ] {
        w.int(
            "botmedia_call_packets_dropped_total",
            &[("reason", reason)],
            v,
        );
    }
    w.family(
        "botmedia_call_receive_samples_total",
        "Received 16 kHz samples the jitter buffer changed, by kind: accelerated (removed to shrink the delay), expanded (inserted to grow it), concealed (by the decoder), merged (cross-faded back from concealment).",
        Kind::Counter,
    );
    for (kind, v) in [
        ("accelerated", s.accelerated_samples),
        ("expanded", s.expanded_samples),
        ("concealed", s.concealed_samples),
        ("merged", s.merged_samples),
    ] {
        w.int("botmedia_call_receive_samples_total", &[("kind", kind)], v);
    }
    w.counter(
        "botmedia_call_send_absorbed_samples_total",
        "16 kHz samples the bot sent that were cut to absorb a standing send queue.",
        s.send_absorbed_samples,
    );

    let p = view.peaks;
    w.gauge(
        "botmedia_call_jitter_max_seconds",
        "Largest inter-arrival jitter estimate (RFC 3550) over the live calls.",
        secs(p.jitter),
    );
    w.gauge(
        "botmedia_call_playout_delay_max_seconds",
        "Largest jitter buffer playout delay over the live calls.",
        secs(p.playout_delay),
    );
    w.gauge(
        "botmedia_call_send_standing_max_seconds",
        "Largest standing send queue over the live calls.",
        secs(p.send_standing),
    );
    w.gauge(
        "botmedia_call_remote_loss_max_ratio",
        "Largest loss fraction the far ends last reported over the live calls.",
        p.remote_loss_percent as f64 / 100.0,
    );
}

fn secs(t: Ticks) -> f64 {
    t.0 as f64 / Ticks::PER_SECOND as f64
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

/// Text exposition format 0.0.4.
#[derive(Default)]
struct Writer {
    out: String,
}

impl Writer {
    fn family(&mut self, name: &str, help: &str, kind: Kind) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        let _ = writeln!(self.out, "\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: Value) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        match value {
            Value::Int(v) => {
                let _ = write!(self.out, "{v}");
            }
            Value::Float(v) => write_float(&mut self.out, v),
        }
        self.out.push('\n');
    }

    fn int(&mut self, name: &str, labels: &[(&str, &str)], v: u64) {
        self.sample(name, labels, Value::Int(v));
    }

    fn counter(&mut self, name: &str, help: &str, v: u64) {
        self.family(name, help, Kind::Counter);
        self.int(name, &[], v);
    }

    fn gauge_int(&mut self, name: &str, help: &str, v: u64) {
        self.family(name, help, Kind::Gauge);
        self.int(name, &[], v);
    }

    fn gauge(&mut self, name: &str, help: &str, v: f64) {
        self.family(name, help, Kind::Gauge);
        self.sample(name, &[], Value::Float(v));
    }

    fn histogram(&mut self, name: &str, help: &str, h: &LatencyHistogram) {
        self.family(name, help, Kind::Histogram);
        let bucket = format!("{name}_bucket");
        let mut le = String::new();
        for bound in LATENCY_BOUNDS {
            let limit = Ticks((bound * Ticks::PER_SECOND as f64).round() as u64);
            let n: u64 = h
                .buckets()
                .take_while(|b| b.upper <= limit)
                .map(|b| b.count)
                .sum();
            le.clear();
            write_float(&mut le, bound);
            self.int(&bucket, &[("le", &le)], n);
        }
        let total = h.count();
        self.int(&bucket, &[("le", "+Inf")], total);
        // Each span counted at the middle of its bucket. (A fold from +0: `sum` starts
        // from -0, which would print as "-0".)
        let sum = h.buckets().fold(0.0, |sum, b| {
            let mid = Ticks(b.lower.0 + (b.upper.0 - b.lower.0) / 2);
            sum + secs(mid) * b.count as f64
        });
        self.sample(&format!("{name}_sum"), &[], Value::Float(sum));
        self.int(&format!("{name}_count"), &[], total);
    }
}

/// A float as the format spells it (`+Inf`, `-Inf`, `NaN`).
fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_help_are_escaped() {
        let mut w = Writer::default();
        w.family("m", "a \\ b\nc", Kind::Gauge);
        w.int("m", &[("l", "q\"\\\n")], 1);
        assert_eq!(
            w.out,
            "# HELP m a \\\\ b\\nc\n# TYPE m gauge\nm{l=\"q\\\"\\\\\\n\"} 1\n"
        );
    }

    #[test]
    fn floats_use_the_formats_spelling() {
        let mut s = String::new();
        for v in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 0.0005, 1.0] {
            write_float(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "+Inf -Inf NaN 0.0005 1 ");
    }

    #[test]
    fn an_empty_histogram_has_zero_buckets() {
        let mut w = Writer::default();
        w.histogram("h_seconds", "h", &LatencyHistogram::default());
        assert!(w.out.contains("h_seconds_bucket{le=\"0.0005\"} 0\n"));
        assert!(w.out.contains("h_seconds_bucket{le=\"+Inf\"} 0\n"));
        assert!(w.out.ends_with("h_seconds_sum 0\nh_seconds_count 0\n"));
    }
}
