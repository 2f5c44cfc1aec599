//! The conference server: one thread ticking every app-hosted call each 20 ms on absolute
//! deadlines. Per call and tick it builds each participant's frame, mixes the ones the bot
//! hears, sends the mix to the bot with the active speakers as CSRCs (and their levels),
//! feeds echo participants with the bot's audio, and publishes everyone's level.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use audio_pipeline::mix::{AudioLevel, MixError, Mixer, MixerConfig, SourceId};
use audio_pipeline::{BotHalf, Csrcs, Pcm16K, SAMPLES_PER_FRAME, SendError};

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

/// What the call's owner shares with the conference thread.
#[derive(Debug, Default)]
pub(crate) struct ConferenceShared {
    /// The latest roster, taken by the thread at its next tick.
    roster: Mutex<Option<Vec<ParticipantSpec>>>,
    closed: AtomicBool,
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
}

/// One call's mixing state, owned by the conference thread.
pub(crate) struct Conference {
    shared: Arc<ConferenceShared>,
    bot: BotHalf,
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
    pub(crate) fn new(bot: BotHalf, roster: Vec<ParticipantSpec>) -> Result<Self, MixError> {
        let mut c = Self {
            shared: Arc::new(ConferenceShared::default()),
            bot,
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
        // A full queue (the pipeline is behind) drops this frame; a removed call ends here.
        !matches!(sent, Err(SendError::Removed(_)))
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
        let mut c = Conference::new(halves.bot, roster).expect("conference");
        let mut now = audio_pipeline::now();
        // The pipeline tick and packet draining may allocate in the test; only the
        // conference's own ticks are counted.
        for _ in 0..200 {
            COUNTING.with(|f| f.set(true));
            let alive = c.tick();
            COUNTING.with(|f| f.set(false));
            assert!(alive);
            call.tick(now, false);
            now += Ticks::from_millis(20);
            while net.pop_packet().is_some() {}
        }
        assert_eq!(
            ALLOCS.load(Ordering::Relaxed),
            0,
            "allocations in conference ticks"
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
        let mut c = Conference::new(halves.bot, roster).expect("conference");
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
