//! Mixing N sources, per-source levels, active and dominant speakers.
//!
//! Sans-IO and tick-driven: each 20 ms frame, [`Mixer::push`] the frames that arrived (a
//! source that pushes nothing this tick counts as silent), then [`Mixer::finish`] writes the
//! mix and advances the speaker logic by one tick. Sums are f32, then a [`Limiter`] with
//! per-frame look-ahead scales the mix under full scale, so N loud sources never wrap or hard
//! clip. Levels are RFC 6464 audio levels (0..=127 = 0..=-127 dBov), the unit of the
//! `ssrc-audio-level`/`csrc-audio-level` header extensions. Everything is allocated in
//! [`Mixer::new`]; nothing allocates per frame.
//!
//! ```
//! use audio_pipeline::mix::{AudioLevel, Mixer, MixerConfig, SourceId, FRAME_SAMPLES};
//! let mut mixer = Mixer::new(MixerConfig::default())?;
//! mixer.add_source(SourceId(1))?;
//! mixer.add_source(SourceId(2))?;
//! let loud = [8_000i16; FRAME_SAMPLES];
//! let level = mixer.push(SourceId(1), &loud)?;
//! assert_eq!(level, AudioLevel::new(12).unwrap()); // 8000/32768 RMS = -12.2 dBov
//! let mut out = [0i16; FRAME_SAMPLES];
//! let tick = mixer.finish(&mut out);
//! assert_eq!(out[0], 8_000);
//! assert_eq!(mixer.active_speakers()[0].id, SourceId(1));
//! # let _ = tick;
//! # Ok::<(), audio_pipeline::mix::MixError>(())
//! ```

/// Samples in one 20 ms mono frame at 16 kHz (`Pcm16K`).
pub const FRAME_SAMPLES: usize = 320;

/// Identifies a source in a [`Mixer`] (an SSRC, a CSRC, a participant index: the caller's
/// choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub u32);

/// An RFC 6464 audio level: `0..=127` meaning `0..=-127` dBov (0 is loudest, 127 is silence).
///
/// dBov is the RMS relative to the overload point: a full-scale square wave is 0 dBov, a
/// full-scale sine -3 dBov. Ordering follows loudness: `a > b` means `a` is louder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AudioLevel(u8);

impl AudioLevel {
    /// Digital silence (-127 dBov or below).
    pub const SILENCE: AudioLevel = AudioLevel(127);
    /// Full scale.
    pub const MAX: AudioLevel = AudioLevel(0);

    /// A level from its wire value `0..=127`; `None` above 127.
    pub fn new(minus_dbov: u8) -> Option<AudioLevel> {
        (minus_dbov <= 127).then_some(AudioLevel(minus_dbov))
    }

    /// The wire value, `0..=127` (= -dBov).
    pub fn value(self) -> u8 {
        self.0
    }

    /// The level in dBov (`0` to `-127`).
    pub fn dbov(self) -> i32 {
        -i32::from(self.0)
    }

    /// The level of a dBov value, rounded to the nearest dB and clamped to `0..=-127`.
    pub fn from_dbov(dbov: f32) -> AudioLevel {
        if dbov.is_nan() {
            return AudioLevel::SILENCE;
        }
        AudioLevel((-dbov).round().clamp(0.0, 127.0) as u8)
    }

    /// The level of a frame of samples.
    pub fn of_samples(samples: &[i16]) -> AudioLevel {
        AudioLevel::from_dbov(rms_dbov(samples))
    }
}

impl PartialOrd for AudioLevel {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for AudioLevel {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // A smaller wire value is a louder level.
        other.0.cmp(&self.0)
    }
}

/// RMS of `samples` in dBov (relative to full scale 32768); `-inf` for silence or no samples.
pub fn rms_dbov(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return f32::NEG_INFINITY;
    }
    let energy: i64 = samples.iter().map(|&s| i64::from(s) * i64::from(s)).sum();
    let mean = energy as f64 / samples.len() as f64;
    (10.0 * (mean / (32_768.0 * 32_768.0)).log10()) as f32
}

/// A linear gain applied to one source before summing.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Gain(f32);

impl Gain {
    /// No change.
    pub const UNITY: Gain = Gain(1.0);
    /// Silence the source (it still has a level and can still be a speaker).
    pub const MUTE: Gain = Gain(0.0);

    /// A gain of `db` decibels (clamped to -120..=+24 dB; NaN is unity).
    pub fn from_db(db: f32) -> Gain {
        if db.is_nan() {
            return Gain::UNITY;
        }
        let db = db.clamp(-120.0, 24.0);
        Gain(10f32.powf(db / 20.0))
    }

    /// The linear factor.
    pub fn linear(self) -> f32 {
        self.0
    }
}

/// What went wrong in a [`Mixer`] call.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MixError {
    /// All `capacity` source slots are in use.
    #[error("the mixer is full ({capacity} sources)")]
    Full {
        /// Sources the mixer was built for.
        capacity: usize,
    },
    /// The source is already in the mixer.
    #[error("source {id:?} is already in the mixer")]
    Duplicate {
        /// The source.
        id: SourceId,
    },
    /// The source is not in the mixer.
    #[error("source {id:?} is not in the mixer")]
    UnknownSource {
        /// The source.
        id: SourceId,
    },
    /// The source already pushed a frame this tick.
    #[error("source {id:?} already pushed a frame this tick")]
    AlreadyPushed {
        /// The source.
        id: SourceId,
    },
    /// A configuration value out of range.
    #[error("mixer configuration: {field} out of range")]
    Config {
        /// The offending field of [`MixerConfig`].
        field: &'static str,
    },
}

/// Mixer settings. `Default` gives a conference-server setup.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixerConfig {
    /// Most sources at once (slots allocated up front). Default 16.
    pub max_sources: usize,
    /// Most active speakers reported, at most 15 (the RTP CSRC limit). Default 4.
    pub max_active: usize,
    /// A source is an active speaker while its smoothed level is at least this loud.
    /// Default 50 (-50 dBov).
    pub active_threshold: AudioLevel,
    /// How fast a smoothed level falls when a source gets quieter, in dB per tick; it rises at
    /// once. Bridges the gaps between words. Default 1.5 dB per 20 ms.
    pub decay_db_per_tick: f32,
    /// A challenger must be louder than the dominant speaker by this much... Default 3 dB.
    pub dominant_margin_db: f32,
    /// ...for this many consecutive ticks to take over. Default 15 (300 ms).
    pub dominant_hold_ticks: u32,
    /// Peak the limiter keeps the mix under, as a fraction of full scale. Default 0.95.
    pub limiter_ceiling: f32,
}

impl Default for MixerConfig {
    fn default() -> Self {
        MixerConfig {
            max_sources: 16,
            max_active: 4,
            active_threshold: AudioLevel(50),
            decay_db_per_tick: 1.5,
            dominant_margin_db: 3.0,
            dominant_hold_ticks: 15,
            limiter_ceiling: 0.95,
        }
    }
}

/// One entry of the active-speaker list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActiveSpeaker {
    /// The source.
    pub id: SourceId,
    /// Its level in the last frame.
    pub level: AudioLevel,
    /// Its smoothed level in dBov, which the ordering uses.
    pub smoothed_dbov: f32,
}

/// A change of dominant speaker, reported by the tick that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DominantChange {
    /// The previous dominant speaker, if any.
    pub from: Option<SourceId>,
    /// The new one.
    pub to: SourceId,
}

/// What one [`Mixer::finish`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixTick {
    /// Ticks finished so far, this one included.
    pub tick: u64,
    /// Sources that pushed a frame this tick.
    pub contributors: usize,
    /// Limiter gain at the end of the frame (1.0: untouched).
    pub limiter_gain: f32,
    /// Set when the dominant speaker changed on this tick.
    pub dominant_changed: Option<DominantChange>,
}

/// Keeps a mix under full scale without wrap-around or hard clipping.
///
/// It sees a whole frame before writing it (20 ms of look-ahead for free): the gain needed for
/// the frame's peak is reached by a short ramp, never overshooting any sample, and recovers
/// towards 1 with a release time constant of about 100 ms. One limiter per output stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limiter {
    gain: f32,
    ceiling: f32,
}

impl Limiter {
    /// Fraction of the distance to unity gain recovered per 20 ms frame (~100 ms constant).
    const RELEASE: f32 = 0.18;

    /// A limiter keeping peaks under `ceiling` x full scale (clamped to 0.1..=1.0).
    pub fn new(ceiling: f32) -> Limiter {
        let ceiling = if ceiling.is_nan() {
            0.95
        } else {
            ceiling.clamp(0.1, 1.0)
        };
        Limiter { gain: 1.0, ceiling }
    }

    /// Current gain.
    pub fn gain(&self) -> f32 {
        self.gain
    }

    /// Scale `mix` (f32 in i16 units, any magnitude) into `out`; returns the gain at the end
    /// of the frame.
    pub fn process(&mut self, mix: &[f32], out: &mut [i16]) -> f32 {
        let limit = self.ceiling * 32_767.0;
        let peak = mix.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
        let needed = if peak > limit { limit / peak } else { 1.0 };
        let target = if needed < self.gain {
            needed
        } else {
            (self.gain + (1.0 - self.gain) * Self::RELEASE).min(needed)
        };
        let start = self.gain;
        let len = mix.len().max(1) as f32;
        for (n, (o, &x)) in out.iter_mut().zip(mix).enumerate() {
            let ramp = start + (target - start) * ((n + 1) as f32 / len);
            // Never above what keeps this very sample under the ceiling: a falling ramp must
            // not let an early peak through.
            let g = if x.abs() * ramp > limit {
                limit / x.abs()
            } else {
                ramp
            };
            *o = (x * g).round() as i16;
        }
        self.gain = target;
        target
    }
}

struct Slot {
    id: SourceId,
    gain: Gain,
    pushed: bool,
    level: AudioLevel,
    smoothed_dbov: f32,
    /// This tick's frame, kept for mix-minus.
    frame: [i16; FRAME_SAMPLES],
}

/// Mixes up to `max_sources` 20 ms frames per tick; see the [module docs](self).
pub struct Mixer {
    config: MixerConfig,
    slots: Vec<Slot>,
    acc: [f32; FRAME_SAMPLES],
    /// Set by `finish`: the next push starts a new frame.
    frame_done: bool,
    limiter: Limiter,
    active: Vec<ActiveSpeaker>,
    dominant: Option<SourceId>,
    challenger: Option<(SourceId, u32)>,
    tick: u64,
}

impl std::fmt::Debug for Mixer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mixer")
            .field("sources", &self.slots.len())
            .field("capacity", &self.config.max_sources)
            .field("tick", &self.tick)
            .field("dominant", &self.dominant)
            .finish_non_exhaustive()
    }
}

impl Mixer {
    /// A mixer with every slot allocated.
    ///
    /// # Errors
    /// [`MixError::Config`] naming the field if `max_sources` is 0, `max_active` is not in
    /// `1..=15`, or a float is not finite and non-negative.
    pub fn new(config: MixerConfig) -> Result<Mixer, MixError> {
        if config.max_sources == 0 {
            return Err(MixError::Config {
                field: "max_sources",
            });
        }
        if !(1..=15).contains(&config.max_active) {
            return Err(MixError::Config {
                field: "max_active",
            });
        }
        for (field, v) in [
            ("decay_db_per_tick", config.decay_db_per_tick),
            ("dominant_margin_db", config.dominant_margin_db),
            ("limiter_ceiling", config.limiter_ceiling),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(MixError::Config { field });
            }
        }
        Ok(Mixer {
            config,
            slots: Vec::with_capacity(config.max_sources),
            acc: [0.0; FRAME_SAMPLES],
            frame_done: false,
            limiter: Limiter::new(config.limiter_ceiling),
            active: Vec::with_capacity(config.max_active + 1),
            dominant: None,
            challenger: None,
            tick: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MixerConfig {
        &self.config
    }

    /// Add a source (unity gain, silent).
    ///
    /// # Errors
    /// [`MixError::Full`] or [`MixError::Duplicate`].
    pub fn add_source(&mut self, id: SourceId) -> Result<(), MixError> {
        if self.find(id).is_some() {
            return Err(MixError::Duplicate { id });
        }
        if self.slots.len() == self.config.max_sources {
            return Err(MixError::Full {
                capacity: self.config.max_sources,
            });
        }
        self.slots.push(Slot {
            id,
            gain: Gain::UNITY,
            pushed: false,
            level: AudioLevel::SILENCE,
            smoothed_dbov: -127.0,
            frame: [0; FRAME_SAMPLES],
        });
        Ok(())
    }

    /// Remove a source; if it was dominant, there is no dominant speaker until another
    /// source qualifies. A frame it pushed this tick stays in this tick's mix.
    ///
    /// # Errors
    /// [`MixError::UnknownSource`].
    pub fn remove_source(&mut self, id: SourceId) -> Result<(), MixError> {
        let i = self.find(id).ok_or(MixError::UnknownSource { id })?;
        self.slots.swap_remove(i);
        self.active.retain(|a| a.id != id);
        if self.dominant == Some(id) {
            self.dominant = None;
        }
        if self.challenger.is_some_and(|(c, _)| c == id) {
            self.challenger = None;
        }
        Ok(())
    }

    /// Set a source's gain (applied from its next push).
    ///
    /// # Errors
    /// [`MixError::UnknownSource`].
    pub fn set_gain(&mut self, id: SourceId, gain: Gain) -> Result<(), MixError> {
        let i = self.find(id).ok_or(MixError::UnknownSource { id })?;
        self.slots[i].gain = gain;
        Ok(())
    }

    fn find(&self, id: SourceId) -> Option<usize> {
        self.slots.iter().position(|s| s.id == id)
    }

    fn start_frame_if_needed(&mut self) {
        if self.frame_done {
            self.acc = [0.0; FRAME_SAMPLES];
            for s in &mut self.slots {
                s.pushed = false;
                s.level = AudioLevel::SILENCE;
            }
            self.frame_done = false;
        }
    }

    /// Add a source's frame to this tick's mix and return its level (before its gain).
    ///
    /// # Errors
    /// [`MixError::UnknownSource`], or [`MixError::AlreadyPushed`] for a second frame from
    /// the same source in one tick (the first one stays).
    pub fn push(
        &mut self,
        id: SourceId,
        frame: &[i16; FRAME_SAMPLES],
    ) -> Result<AudioLevel, MixError> {
        self.start_frame_if_needed();
        let i = self.find(id).ok_or(MixError::UnknownSource { id })?;
        let slot = &mut self.slots[i];
        if slot.pushed {
            return Err(MixError::AlreadyPushed { id });
        }
        slot.pushed = true;
        slot.frame = *frame;
        slot.level = AudioLevel::of_samples(frame);
        let g = slot.gain.linear();
        for (a, &x) in self.acc.iter_mut().zip(frame) {
            *a += f32::from(x) * g;
        }
        Ok(slot.level)
    }

    /// Write this tick's mix into `out`, update levels, active and dominant speakers, and
    /// advance one tick. Call once per 20 ms, also when nothing was pushed.
    pub fn finish(&mut self, out: &mut [i16; FRAME_SAMPLES]) -> MixTick {
        self.start_frame_if_needed();
        let limiter_gain = self.limiter.process(&self.acc, out);
        let mut contributors = 0;
        for s in &mut self.slots {
            contributors += usize::from(s.pushed);
            let now = s.level.dbov() as f32;
            s.smoothed_dbov = now.max(s.smoothed_dbov - self.config.decay_db_per_tick);
        }
        self.update_active();
        let dominant_changed = self.update_dominant();
        self.frame_done = true;
        self.tick += 1;
        MixTick {
            tick: self.tick,
            contributors,
            limiter_gain,
            dominant_changed,
        }
    }

    /// The mix of this tick without `id`'s own contribution (what a conference server sends
    /// back to `id`), through the caller's limiter for that output. Valid between
    /// [`finish`](Self::finish) and the next [`push`](Self::push).
    ///
    /// # Errors
    /// [`MixError::UnknownSource`].
    pub fn mix_minus(
        &self,
        id: SourceId,
        limiter: &mut Limiter,
        out: &mut [i16; FRAME_SAMPLES],
    ) -> Result<f32, MixError> {
        let i = self.find(id).ok_or(MixError::UnknownSource { id })?;
        let slot = &self.slots[i];
        let mut minus = self.acc;
        if slot.pushed {
            let g = slot.gain.linear();
            for (m, &x) in minus.iter_mut().zip(&slot.frame) {
                *m -= f32::from(x) * g;
            }
        }
        Ok(limiter.process(&minus, out))
    }

    fn update_active(&mut self) {
        self.active.clear();
        let threshold = self.config.active_threshold.dbov() as f32;
        for s in &self.slots {
            if s.smoothed_dbov < threshold {
                continue;
            }
            let entry = ActiveSpeaker {
                id: s.id,
                level: s.level,
                smoothed_dbov: s.smoothed_dbov,
            };
            // Insertion into a list kept sorted, loudest first, ties by id: at most
            // max_active + 1 entries, within the capacity reserved in `new`.
            let at = self
                .active
                .iter()
                .position(|a| {
                    a.smoothed_dbov < entry.smoothed_dbov
                        || (a.smoothed_dbov == entry.smoothed_dbov && a.id > entry.id)
                })
                .unwrap_or(self.active.len());
            if at < self.config.max_active {
                self.active.insert(at, entry);
                self.active.truncate(self.config.max_active);
            }
        }
    }

    fn update_dominant(&mut self) -> Option<DominantChange> {
        let loudest = self.active.first().copied();
        let Some(loudest) = loudest else {
            self.challenger = None;
            return None;
        };
        let current = self
            .dominant
            .and_then(|d| self.slots.iter().find(|s| s.id == d));
        let wins = match current {
            None => true,
            Some(_) if self.dominant == Some(loudest.id) => false,
            Some(d) => {
                let threshold = self.config.active_threshold.dbov() as f32;
                d.smoothed_dbov < threshold
                    || loudest.smoothed_dbov >= d.smoothed_dbov + self.config.dominant_margin_db
            }
        };
        if !wins {
            self.challenger = None;
            return None;
        }
        let count = match self.challenger {
            Some((c, n)) if c == loudest.id => n + 1,
            _ => 1,
        };
        if count >= self.config.dominant_hold_ticks.max(1) {
            let change = DominantChange {
                from: self.dominant,
                to: loudest.id,
            };
            self.dominant = Some(loudest.id);
            self.challenger = None;
            Some(change)
        } else {
            self.challenger = Some((loudest.id, count));
            None
        }
    }

    /// Active speakers after the last tick: at most `max_active`, loudest first, all at or
    /// above the threshold.
    pub fn active_speakers(&self) -> &[ActiveSpeaker] {
        &self.active
    }

    /// The dominant speaker, if any.
    pub fn dominant_speaker(&self) -> Option<SourceId> {
        self.dominant
    }

    /// A source's level in the current (or last finished) tick; silence if it pushed nothing.
    pub fn level(&self, id: SourceId) -> Option<AudioLevel> {
        self.find(id).map(|i| self.slots[i].level)
    }

    /// Sources in the mixer.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the mixer has no sources.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Ticks finished so far.
    pub fn ticks(&self) -> u64 {
        self.tick
    }
}
