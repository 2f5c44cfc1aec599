//! The conference server: one thread ticking every app-hosted call each 20 ms on absolute
//! deadlines. Per call and tick it builds each participant's frame, mixes the ones the bot
//! hears, sends the mix to the bot with the active speakers as CSRCs (and their levels),
//! feeds echo participants with the bot's audio, and publishes everyone's level.
//!
//! A bot that asked for unmixed meeting audio also gets each active speaker on a speaker
//! stream of its own (one pipeline call each, so one encoder each), its CSRC the speaker's
//! source id. A speaker keeps their stream while the mixer counts them active (its smoothed
//! level bridges the gaps between words); a stream freed by a speaker who stopped goes to
//! the next one who starts. A stream without a speaker sends nothing (its packets carry no
//! CSRC and the port drops them).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use audio_pipeline::mix::{AudioLevel, MixError, Mixer, MixerConfig, SourceId};
use audio_pipeline::{BotHalf, Csrcs, MAX_UNMIXED_STREAMS, Pcm16K, SAMPLES_PER_FRAME, SendError};

use super::voice::Generator;
use super::{Meter, ParticipantSpec};

const FRAME: Duration = Duration::from_millis(20);
/// Falling further behind than this skips deadlines instead of catching up.
const MAX_CATCH_UP: Duration = Duration::from_millis(100);
/// Bot frames kept for echo participants; older ones are dropped so the echo stays prompt
/// when the pipeline's and the conference's ticks drift apart.
const HEARD_MAX: usize = 2;
/// When the pipeline's tick lands close to the conference's, two bot frames sometimes
/// arrive in one tick and one then waits a whole tick longer, for good. A backlog that
/// lasts this many ticks loses a frame: the echo stays one tick behind the bot, not two.
const BACKLOG_TICKS: u32 = 25;

/// No speaker on a speaker stream, in [`ConferenceShared::speaker_streams`].
const NO_SPEAKER: u64 = u64::MAX;

/// What the call's owner shares with the conference thread.
#[derive(Debug)]
pub(crate) struct ConferenceShared {
    /// The latest roster, taken by the thread at its next tick.
    roster: Mutex<Option<Vec<ParticipantSpec>>>,
    closed: AtomicBool,
    /// The source id on each unmixed speaker stream, [`NO_SPEAKER`] when it has none.
    speakers: [AtomicU64; MAX_UNMIXED_STREAMS],
}

impl Default for ConferenceShared {
    fn default() -> Self {
        Self {
            roster: Mutex::new(None),
            closed: AtomicBool::new(false),
            speakers: std::array::from_fn(|_| AtomicU64::new(NO_SPEAKER)),
        }
    }
}

impl ConferenceShared {
    pub(crate) fn set_roster(&self, roster: Vec<ParticipantSpec>) {
        *crate::state::lock(&self.roster) = Some(roster);
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The speaker on each of the call's first `streams` unmixed speaker streams (stream 1
    /// first), as of the last tick.
    pub(crate) fn speaker_streams(&self, streams: usize) -> Vec<Option<u32>> {
        self.speakers
            .iter()
            .take(streams)
            .map(|s| u32::try_from(s.load(Ordering::Relaxed)).ok())
            .collect()
    }
}

struct Participant {
    key: String,
    source_id: SourceId,
    generator: Generator,
    hears: bool,
    heard: bool,
    meter: Meter,
    /// This tick's frame, kept for a remote participant's mix minus themself.
    own: [i16; SAMPLES_PER_FRAME],
    /// This tick's frame as heard (silence when not heard), for a speaker stream.
    said: [i16; SAMPLES_PER_FRAME],
}

/// One unmixed speaker stream towards the bot.
struct SpeakerStream {
    /// Its own pipeline call: what is sent here is encoded onto the stream.
    bot: BotHalf,
    /// Who is on it.
    speaker: Option<SourceId>,
}

/// One call's mixing state, owned by the conference thread.
pub(crate) struct Conference {
    shared: Arc<ConferenceShared>,
    bot: BotHalf,
    /// The bot's unmixed speaker streams, stream 1 first (none unless it asked for them).
    streams: Vec<SpeakerStream>,
    participants: Vec<Participant>,
    /// The bot hears the mix and is heard (not in the lobby, not muted).
    bot_hears: bool,
    bot_heard: bool,
    bot_meter: Option<Meter>,
    mixer: Mixer,
    heard: VecDeque<[i16; SAMPLES_PER_FRAME]>,
    /// Consecutive ticks that started with more than one bot frame waiting.
    backlog: u32,
    frame: [i16; SAMPLES_PER_FRAME],
    mix: [i16; SAMPLES_PER_FRAME],
    /// Everything heard this tick (the bot and every heard participant), for remote
    /// participants' mixes.
    total: [i32; SAMPLES_PER_FRAME],
}

impl std::fmt::Debug for Conference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conference")
            .field("participants", &self.participants.len())
            .finish_non_exhaustive()
    }
}

impl Conference {
    /// A conference sending the mix to `bot` and, when `speaker_streams` are given, each
    /// active speaker on one of them.
    pub(crate) fn new(
        bot: BotHalf,
        speaker_streams: Vec<BotHalf>,
        roster: Vec<ParticipantSpec>,
    ) -> Result<Self, MixError> {
        let mut c = Self {
            shared: Arc::new(ConferenceShared::default()),
            bot,
            streams: speaker_streams
                .into_iter()
                .take(MAX_UNMIXED_STREAMS)
                .map(|bot| SpeakerStream { bot, speaker: None })
                .collect(),
            participants: Vec::new(),
            bot_hears: false,
            bot_heard: false,
            bot_meter: None,
            mixer: Mixer::new(MixerConfig::default())?,
            heard: VecDeque::with_capacity(HEARD_MAX + 1),
            backlog: 0,
            frame: [0; SAMPLES_PER_FRAME],
            mix: [0; SAMPLES_PER_FRAME],
            total: [0; SAMPLES_PER_FRAME],
        };
        c.apply_roster(roster);
        Ok(c)
    }

    pub(crate) fn shared(&self) -> Arc<ConferenceShared> {
        Arc::clone(&self.shared)
    }

    /// Follows a roster change: newcomers start their voice from the beginning, those who
    /// stay keep theirs, the mixer's sources are exactly the participants the bot hears.
    fn apply_roster(&mut self, roster: Vec<ParticipantSpec>) {
        let mut old = std::mem::take(&mut self.participants);
        self.bot_hears = false;
        self.bot_heard = false;
        self.bot_meter = None;
        for spec in roster {
            if spec.is_bot {
                self.bot_hears = spec.hears;
                self.bot_heard = spec.heard;
                self.bot_meter = Some(spec.meter);
                continue;
            }
            let source_id = SourceId(spec.source_id);
            let generator = match old.iter().position(|p| {
                p.key == spec.key && p.source_id == source_id && p.generator.speaks(&spec.voice)
            }) {
                Some(i) => old.swap_remove(i).generator,
                None => Generator::new(spec.voice),
            };
            self.participants.push(Participant {
                key: spec.key,
                source_id,
                generator,
                hears: spec.hears,
                heard: spec.heard,
                meter: spec.meter,
                own: [0; SAMPLES_PER_FRAME],
                said: [0; SAMPLES_PER_FRAME],
            });
        }
        for gone in old {
            gone.meter.clear();
            let _ = self.mixer.remove_source(gone.source_id);
        }
        for p in &self.participants {
            let present = self.mixer.level(p.source_id).is_some();
            if p.heard && !present {
                // Full: more participants than mixer slots; the extra ones are not heard.
                let _ = self.mixer.add_source(p.source_id);
            } else if !p.heard && present {
                let _ = self.mixer.remove_source(p.source_id);
            }
        }
    }

    /// One 20 ms step; false once the call is gone.
    fn tick(&mut self) -> bool {
        if self.shared.is_closed() {
            return false;
        }
        let update = match self.shared.roster.try_lock() {
            Ok(mut slot) => slot.take(),
            Err(_) => None,
        };
        if let Some(roster) = update {
            self.apply_roster(roster);
        }
        while let Some(f) = self.bot.try_recv() {
            if self.heard.len() == HEARD_MAX {
                self.heard.pop_front();
            }
            self.heard.push_back(f.pcm.samples);
        }
        if self.heard.len() > 1 {
            self.backlog += 1;
            if self.backlog >= BACKLOG_TICKS {
                self.heard.pop_front();
                self.backlog = 0;
            }
        } else {
            self.backlog = 0;
        }
        let bot_frame = self.heard.pop_front();
        if let Some(m) = &self.bot_meter {
            m.set(bot_frame.map_or(AudioLevel::SILENCE, |f| AudioLevel::of_samples(&f)));
        }
        let bot_audio = bot_frame.as_ref().filter(|_| self.bot_heard);
        match bot_audio {
            Some(b) => add(&mut self.total, b, true),
            None => self.total.fill(0),
        }
        for p in &mut self.participants {
            p.generator
                .next(bot_audio.filter(|_| p.hears), &mut self.frame);
            if p.heard {
                add(&mut self.total, &self.frame, false);
            }
            if p.generator.remote().is_some() {
                p.own = if p.heard {
                    self.frame
                } else {
                    [0; SAMPLES_PER_FRAME]
                };
            }
            if !self.streams.is_empty() {
                p.said = if p.heard {
                    self.frame
                } else {
                    [0; SAMPLES_PER_FRAME]
                };
            }
            let level = if p.heard {
                self.mixer
                    .push(p.source_id, &self.frame)
                    .unwrap_or_else(|_| AudioLevel::of_samples(&self.frame))
            } else {
                AudioLevel::SILENCE
            };
            p.meter.set(level);
        }
        self.mixer.finish(&mut self.mix);
        for p in &mut self.participants {
            let hears = p.hears;
            if let Some(ear) = p.generator.remote() {
                // Everyone but themself; in the lobby, silence.
                for ((o, &t), &own) in self.frame.iter_mut().zip(&self.total).zip(&p.own) {
                    let v = if hears { t - i32::from(own) } else { 0 };
                    *o = v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
                }
                ear.send(&self.frame);
            }
        }
        let sent = if self.bot_hears {
            let mut csrcs = Csrcs::new();
            for s in self.mixer.active_speakers() {
                // At most 15 by the mixer's own limit (4 by default): push cannot fail.
                let _ = csrcs.push(s.id.0, Some(s.level.value()));
            }
            self.bot.try_send_with(Pcm16K { samples: self.mix }, csrcs)
        } else {
            self.bot.try_send(Pcm16K::SILENCE)
        };
        self.send_speaker_streams();
        // A full queue (the pipeline is behind) drops this frame; a removed call ends here.
        !matches!(sent, Err(SendError::Removed(_)))
    }

    /// Puts each active speaker on a speaker stream (keeping those already on one) and
    /// sends their frame there, with their source id as the CSRC.
    fn send_speaker_streams(&mut self) {
        if self.streams.is_empty() {
            return;
        }
        let active = if self.bot_hears {
            self.mixer.active_speakers()
        } else {
            &[]
        };
        for s in &mut self.streams {
            if s.speaker
                .is_some_and(|id| !active.iter().any(|a| a.id == id))
            {
                s.speaker = None;
            }
        }
        for a in active {
            if self.streams.iter().any(|s| s.speaker == Some(a.id)) {
                continue;
            }
            if let Some(free) = self.streams.iter_mut().find(|s| s.speaker.is_none()) {
                free.speaker = Some(a.id);
            }
        }
        for (s, shown) in self.streams.iter_mut().zip(&self.shared.speakers) {
            shown.store(
                s.speaker.map_or(NO_SPEAKER, |id| u64::from(id.0)),
                Ordering::Relaxed,
            );
            let said = s.speaker.and_then(|id| {
                let p = self.participants.iter().find(|p| p.source_id == id)?;
                let level = active.iter().find(|a| a.id == id)?.level;
                Some((p.said, id, level))
            });
            // Nothing to say: silence without a CSRC, which the port does not send.
            let _ = match said {
                Some((samples, id, level)) => {
                    let mut csrcs = Csrcs::new();
                    let _ = csrcs.push(id.0, Some(level.value()));
                    s.bot.try_send_with(Pcm16K { samples }, csrcs)
                }
                None => s.bot.try_send(Pcm16K::SILENCE),
            };
        }
    }
}

/// `total = frame` (`reset`) or `total += frame`.
fn add(total: &mut [i32; SAMPLES_PER_FRAME], frame: &[i16; SAMPLES_PER_FRAME], reset: bool) {
    for (t, &s) in total.iter_mut().zip(frame) {
        *t = if reset { 0 } else { *t } + i32::from(s);
    }
}

/// The conference thread; stopped (and joined) on drop.
pub(crate) struct ConferenceThread {
    incoming: Arc<Mutex<Vec<Conference>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl ConferenceThread {
    pub(crate) fn start() -> std::io::Result<Self> {
        let incoming = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = std::thread::Builder::new()
            .name("emulator-conference".into())
            .spawn({
                let incoming = Arc::clone(&incoming);
                let stop = Arc::clone(&stop);
                move || run(&incoming, &stop)
            })?;
        Ok(Self {
            incoming,
            stop,
            handle: Some(handle),
        })
    }

    /// Hands a conference to the thread; it is ticked from the next deadline on.
    pub(crate) fn add(&self, conference: Conference) {
        crate::state::lock(&self.incoming).push(conference);
    }
}

impl Drop for ConferenceThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(incoming: &Mutex<Vec<Conference>>, stop: &AtomicBool) {
    let mut conferences: Vec<Conference> = Vec::with_capacity(64);
    let mut deadline = Instant::now();
    while !stop.load(Ordering::Acquire) {
        if let Ok(mut new) = incoming.try_lock() {
            conferences.append(&mut new);
        }
        conferences.retain_mut(Conference::tick);
        deadline += FRAME;
        let now = Instant::now();
        if now > deadline + MAX_CATCH_UP {
            deadline = now;
        } else if deadline > now {
            std::thread::sleep(deadline - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::VoiceSource;
    use audio_pipeline::{CallConfig, ManualCall, Ticks};
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::sync::atomic::AtomicU64;

    thread_local! {
        static COUNTING: Cell<bool> = const { Cell::new(false) };
    }
    static ALLOCS: AtomicU64 = AtomicU64::new(0);

    struct Counting;

    fn counting() -> bool {
        COUNTING.try_with(Cell::get).unwrap_or(false)
    }

    // SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
    // counting touches an atomic and a const-initialised thread-local, neither allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if counting() {
                ALLOCS.fetch_add(1, Ordering::Relaxed);
            }
            // SAFETY: forwarded with the caller's valid layout.
            unsafe { System.alloc(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if counting() {
                ALLOCS.fetch_add(1, Ordering::Relaxed);
            }
            // SAFETY: `ptr` came from `System` (through this allocator) with `layout`.
            unsafe { System.realloc(ptr, layout, new_size) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            if counting() {
                ALLOCS.fetch_add(1, Ordering::Relaxed);
            }
            // SAFETY: `ptr` came from `System` (through this allocator) with `layout`.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    #[test]
    fn steady_ticks_do_not_allocate() {
        let (mut call, halves) = ManualCall::new(CallConfig::default()).expect("call");
        let mut net = halves.network;
        let wav: Arc<[i16]> = (0..4_000).map(|n| (n % 300) as i16).collect();
        let roster = vec![
            spec("bot", 1, VoiceSource::Silence, true),
            spec("john", 2, tone(440.0), false),
            spec("grace", 3, VoiceSource::Echo, false),
            spec("reader", 4, VoiceSource::Wav(wav), false),
        ];
        let (mut speaker_calls, speaker_nets, speaker_bots) = speaker_streams(2);
        let mut c = Conference::new(halves.bot, speaker_bots, roster).expect("conference");
        let mut speaker_nets = speaker_nets;
        let mut now = audio_pipeline::now();
        // The pipeline tick and packet draining may allocate in the test; only the
        // conference's own ticks are counted.
        for _ in 0..200 {
            COUNTING.with(|f| f.set(true));
            let alive = c.tick();
            COUNTING.with(|f| f.set(false));
            assert!(alive);
            call.tick(now, false);
            for ((sc, _), sn) in speaker_calls.iter_mut().zip(&mut speaker_nets) {
                sc.tick(now, false);
                while sn.pop_packet().is_some() {}
            }
            now += Ticks::from_millis(20);
            while net.pop_packet().is_some() {}
        }
        assert_eq!(
            ALLOCS.load(Ordering::Relaxed),
            0,
            "allocations in conference ticks"
        );
        assert!(
            c.shared().speaker_streams(2).iter().all(Option::is_some),
            "both streams carry a speaker: {:?}",
            c.shared().speaker_streams(2)
        );
    }

    /// The test's side (each call with its handle, which keeps it in its pipeline), the
    /// network halves and the bot halves.
    type SpeakerCalls = (
        Vec<(ManualCall, audio_pipeline::CallHandle)>,
        Vec<audio_pipeline::NetworkHalf>,
        Vec<BotHalf>,
    );

    /// `n` pipeline calls for speaker streams, split into what the test ticks, what it
    /// reads packets from and what the conference sends into.
    fn speaker_streams(n: usize) -> SpeakerCalls {
        let mut calls = Vec::new();
        let mut nets = Vec::new();
        let mut bots = Vec::new();
        for _ in 0..n {
            let (call, halves) = ManualCall::new(CallConfig::default()).expect("call");
            calls.push((call, halves.handle));
            nets.push(halves.network);
            bots.push(halves.bot);
        }
        (calls, nets, bots)
    }

    /// Three speakers with different tones and one silent participant, on four speaker
    /// streams: each speaker is on a stream of their own, with their source id as its
    /// only CSRC, the silent one never; a speaker who stops frees their stream, which the
    /// next one who starts takes, while the others keep theirs.
    #[test]
    fn each_active_speaker_gets_a_stream_of_their_own_and_keeps_it() {
        let (mut call, halves) = ManualCall::new(CallConfig::default()).expect("call");
        let mut net = halves.network;
        let (mut speaker_calls, mut speaker_nets, speaker_bots) = speaker_streams(4);
        let roster = |ada_heard: bool, grace: bool| {
            let mut r = vec![
                spec("bot", 1, VoiceSource::Silence, true),
                spec("john", 2, tone(440.0), false),
                ParticipantSpec {
                    heard: ada_heard,
                    ..spec("ada", 3, tone(660.0), false)
                },
                spec("linus", 4, tone(880.0), false),
                spec("silent", 5, VoiceSource::Silence, false),
            ];
            if grace {
                r.push(spec("grace", 6, tone(550.0), false));
            }
            r
        };
        let mut c =
            Conference::new(halves.bot, speaker_bots, roster(true, false)).expect("conference");
        let shared = c.shared();
        let mut now = audio_pipeline::now();
        let mut run = |c: &mut Conference, ticks: usize| {
            let mut seen: Vec<Vec<Vec<u32>>> = vec![Vec::new(); 4];
            for _ in 0..ticks {
                assert!(c.tick());
                call.tick(now, false);
                while net.pop_packet().is_some() {}
                for (((sc, _), sn), seen) in speaker_calls
                    .iter_mut()
                    .zip(&mut speaker_nets)
                    .zip(&mut seen)
                {
                    sc.tick(now, false);
                    while let Some(p) = sn.pop_packet() {
                        seen.push(p.meta.csrcs.ids().to_vec());
                    }
                }
                now += Ticks::from_millis(20);
            }
            seen
        };
        // Settled after a few ticks: the three speakers on three streams, each alone.
        run(&mut c, 10);
        let seen = run(&mut c, 20);
        let on: Vec<Option<u32>> = shared.speaker_streams(4);
        let mut speakers: Vec<u32> = on.iter().flatten().copied().collect();
        speakers.sort_unstable();
        assert_eq!(speakers, [2, 3, 4], "{on:?}");
        for (stream, lists) in on.iter().zip(&seen) {
            let expected: Vec<u32> = stream.iter().copied().collect();
            assert!(
                lists.iter().all(|l| *l == expected),
                "stream of {stream:?}: {lists:?}"
            );
        }
        let ada_stream = on.iter().position(|s| *s == Some(3)).expect("ada's stream");

        // Ada is muted: once her level has decayed her stream is free; the others stay.
        shared.set_roster(roster(false, false));
        run(&mut c, 60);
        let after = shared.speaker_streams(4);
        assert_eq!(after[ada_stream], None, "{after:?}");
        for (i, s) in on.iter().enumerate().filter(|(i, _)| *i != ada_stream) {
            assert_eq!(after[i], *s, "the others keep their streams");
        }
        // Grace starts: she takes the first free stream.
        shared.set_roster(roster(false, true));
        run(&mut c, 5);
        let now_on = shared.speaker_streams(4);
        let first_free = after
            .iter()
            .position(Option::is_none)
            .expect("a free stream");
        assert_eq!(now_on[first_free], Some(6), "{now_on:?}");
        assert!(
            !now_on.contains(&Some(5)),
            "the silent one never gets a stream"
        );
    }

    fn spec(key: &str, source_id: u32, voice: VoiceSource, is_bot: bool) -> ParticipantSpec {
        ParticipantSpec {
            key: key.into(),
            source_id,
            voice,
            hears: true,
            heard: true,
            is_bot,
            meter: Meter::default(),
            faults: None,
        }
    }

    fn tone(hz: f64) -> VoiceSource {
        VoiceSource::Tone {
            hz,
            amplitude: 8_000.0,
        }
    }

    /// Runs `ticks` conference and pipeline ticks; returns the packets' CSRC lists.
    fn run_ticks(
        c: &mut Conference,
        call: &mut ManualCall,
        net: &mut audio_pipeline::NetworkHalf,
        ticks: usize,
        now: &mut Ticks,
    ) -> Vec<Vec<u32>> {
        let mut lists = Vec::new();
        for _ in 0..ticks {
            assert!(c.tick());
            call.tick(*now, false);
            *now += Ticks::from_millis(20);
            while let Some(p) = net.pop_packet() {
                lists.push(p.meta.csrcs.ids().to_vec());
            }
        }
        lists
    }

    #[test]
    fn the_bot_hears_the_speakers_listed_as_csrcs_and_the_lobby_hears_nothing() {
        let (mut call, halves) = ManualCall::new(CallConfig::default()).expect("call");
        let mut net = halves.network;
        let bot_meter = Meter::default();
        let roster = vec![
            ParticipantSpec {
                meter: bot_meter.clone(),
                ..spec("bot", 1, VoiceSource::Silence, true)
            },
            spec("john", 2, tone(440.0), false),
            spec("ada", 3, tone(660.0), false),
            spec("linus", 4, VoiceSource::Silence, false),
        ];
        let meters: Vec<Meter> = roster.iter().map(|s| s.meter.clone()).collect();
        let mut c = Conference::new(halves.bot, Vec::new(), roster).expect("conference");
        let shared = c.shared();
        let mut now = audio_pipeline::now();
        let lists = run_ticks(&mut c, &mut call, &mut net, 10, &mut now);
        let last = lists.last().expect("packets");
        let mut sorted = last.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![2, 3], "the two speakers, not the silent one");
        assert!(meters[1].level() > 0.7 && meters[2].level() > 0.7);
        assert_eq!(meters[3].level(), 0.0);

        // Ada goes to the lobby: she is no longer heard; the bot to the lobby: silence.
        let mut roster = vec![
            spec("bot", 1, VoiceSource::Silence, true),
            spec("john", 2, tone(440.0), false),
            ParticipantSpec {
                hears: false,
                heard: false,
                ..spec("ada", 3, tone(660.0), false)
            },
        ];
        shared.set_roster(roster.clone());
        let lists = run_ticks(&mut c, &mut call, &mut net, 40, &mut now);
        assert_eq!(lists.last().expect("packets"), &vec![2]);
        roster[0].hears = false;
        shared.set_roster(roster);
        let lists = run_ticks(&mut c, &mut call, &mut net, 5, &mut now);
        assert!(lists.last().expect("packets").is_empty());

        shared.close();
        assert!(!c.tick(), "a closed conference stops");
        let _ = bot_meter;
    }
}
