//! Per-participant recording of a meeting: one WAV file per speaker heard on the unmixed
//! speaker streams, laid out to match the mix's file, and a JSON timeline of who spoke
//! when, ready for a transcriber.
//!
//! A [`SpeakerRecorder`] goes beside the mix's file `DIR/STEM.wav` and writes:
//!
//! - `DIR/STEM.NAME.wav` for each participant heard on a speaker stream, `NAME` their
//!   display name (or participant id, or `source-N` for a source id the roster never
//!   listed) with anything but letters, digits, `-` and `_` made `_`, and `-2`, `-3`, ...
//!   after a name already taken. 16 kHz mono. Every file starts and ends with the mix's:
//!   where the participant was not on a speaker stream it holds silence, so the files can
//!   be laid over each other and over the mix. While recording they are
//!   `DIR/STEM.source-N.wav.part`; [`SpeakerRecorder::finish`] renames them, once the
//!   roster has had its say.
//! - `DIR/STEM.timeline.json` ([`SpeakerRecording::write_timeline`]): `mix` (the mix's
//!   file name), `frame_ms`, `hangover_ms`, `unmixed_streams` (how many the service
//!   sent), `participants` (`{participant, name, source_id, wav}` each) and `segments` of
//!   `{participant, name, source_id, start_ms, end_ms}` in milliseconds from the mix's
//!   start, sorted by start. `participant` is the roster's participant id, `null` when
//!   the roster never listed the source id.
//!
//! A segment starts with the first frame a speaker is on a stream with speech
//! ([`is_speech`]) and ends with the last such frame once they have been off every
//! stream or silent for [`HANGOVER_MS`].
//!
//! ```no_run
//! use botmedia::recording::SpeakerRecorder;
//! use botmedia::wav::WavRecorder;
//! use botmedia::{AudioSocketEvent, BotCall, CallItem};
//!
//! # async fn demo(mut call: BotCall) -> std::io::Result<()> {
//! let mut mix = WavRecorder::create("meeting.wav".as_ref())?;
//! let mut speakers: Option<SpeakerRecorder> = None;
//! while let Some(item) = call.next().await {
//!     match item {
//!         CallItem::Frame(frame) => {
//!             mix.write_frame(&frame.pcm)?;
//!             if let Some(s) = speakers.as_mut() {
//!                 s.write(&frame, call.speakers())?;
//!             }
//!         }
//!         CallItem::Media(AudioSocketEvent::UnmixedAudio { offered, .. }) if offered > 0 => {
//!             speakers = Some(SpeakerRecorder::beside(&mix, offered));
//!         }
//!         _ => {}
//!     }
//! }
//! mix.finish()?;
//! if let Some(s) = speakers {
//!     let recording = s.finish()?;
//!     recording.write_timeline()?; // meeting.timeline.json
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use audio_pipeline::wav::WavRecorder;
use audio_pipeline::{Pcm16K, ReceivedFrame, UnmixedFrame};

use crate::Speakers;

/// How long a speaker must be off the streams or silent for their segment to end, in
/// milliseconds: longer than the pauses between words, shorter than a turn.
pub const HANGOVER_MS: u64 = 500;
/// A frame's length in milliseconds: every file and time here moves in these steps.
pub const FRAME_MS: u64 = 20;
/// An entry whose level (-dBov) is above this is silence.
const SPEECH_LEVEL: u8 = 60;
/// An entry whose audio is below this (dBFS, RMS) is silence.
const SPEECH_DBFS: f64 = -55.0;

/// Writes one WAV file per speaker of a meeting beside the mix's and follows who speaks
/// when (see the [module](self) for the files). Feed it every frame of the call from the
/// moment the service's unmixed audio started; it writes on the caller's task (file I/O:
/// keep it off a real-time thread).
#[derive(Debug)]
pub struct SpeakerRecorder {
    /// The mix's file, beside which the participants' go.
    mix: PathBuf,
    /// Speaker streams the service sends, for the timeline.
    streams: u8,
    /// Frames written to every file so far, counted from the mix's start.
    frames: u64,
    tracks: Vec<(Track, WavRecorder)>,
    /// Open segments by source id: (first speech frame, last speech frame).
    open: HashMap<u32, (u64, u64)>,
    segments: Vec<Segment>,
}

impl SpeakerRecorder {
    /// A recorder beside the mix's file `mix` (`DIR/STEM.wav`), for a service that sends
    /// `streams` speaker streams ([`AudioSocketEvent::UnmixedAudio`]'s `offered`), whose
    /// first frame is the mix's frame `start_frame` (0 when unmixed audio came with the
    /// first frame): each participant's file starts with that many frames of silence.
    /// Creates no file until a speaker is heard.
    ///
    /// [`AudioSocketEvent::UnmixedAudio`]: crate::AudioSocketEvent::UnmixedAudio
    pub fn new(mix: &Path, streams: u8, start_frame: u64) -> SpeakerRecorder {
        SpeakerRecorder {
            mix: mix.to_owned(),
            streams,
            frames: start_frame,
            tracks: Vec::new(),
            open: HashMap::new(),
            segments: Vec::new(),
        }
    }

    /// A recorder beside `mix`, starting where it has got to: [`Self::new`] with its path
    /// and the frames written to it so far.
    pub fn beside(mix: &WavRecorder, streams: u8) -> SpeakerRecorder {
        let frames = mix.samples() / Pcm16K::SILENCE.samples.len() as u64;
        SpeakerRecorder::new(mix.path(), streams, frames)
    }

    /// Frames written to every participant's file so far, counted from the mix's start
    /// (the next frame's index).
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The participants' files so far, in the order first heard; their paths are the
    /// `.part` ones until [`Self::finish`].
    pub fn tracks(&self) -> impl ExactSizeIterator<Item = &Track> {
        self.tracks.iter().map(|(t, _)| t)
    }

    /// Writes `frame` to every participant's file (their entry, or silence), creating the
    /// file of a speaker heard for the first time, and moves the segments on. `speakers`
    /// names the source ids ([`BotCall::speakers`](crate::BotCall::speakers)); a source id
    /// the roster lists later is named then.
    pub fn write(&mut self, frame: &ReceivedFrame, speakers: &Speakers) -> std::io::Result<()> {
        let now = self.frames;
        for entry in speakers.attribute(&frame.unmixed) {
            let id = entry.frame.source_id;
            match self.tracks.iter_mut().find(|(t, _)| t.source_id == id) {
                // The roster may name a source id after its audio came.
                Some((t, _)) if t.participant.is_none() => {
                    if let Some(s) = entry.speaker {
                        t.participant = Some(s.participant.to_string());
                        t.name = s.display_name.clone();
                    }
                }
                Some(_) => {}
                None => {
                    // Named after the participant at the end, when the roster has had its
                    // say; `.part` keeps the name apart from every final one.
                    let path = beside(&self.mix, &format!("source-{id}.wav.part"));
                    let mut wav = WavRecorder::create(&path)?;
                    for _ in 0..now {
                        wav.write_frame(&Pcm16K::SILENCE)?;
                    }
                    let track = Track {
                        source_id: id,
                        participant: entry.speaker.map(|s| s.participant.to_string()),
                        name: entry.speaker.and_then(|s| s.display_name.clone()),
                        path,
                    };
                    self.tracks.push((track, wav));
                }
            }
            if is_speech(entry.frame) {
                self.open
                    .entry(id)
                    .and_modify(|(_, last)| *last = now)
                    .or_insert((now, now));
            }
        }
        for (track, wav) in &mut self.tracks {
            match frame.unmixed.get(track.source_id) {
                Some(entry) => wav.write_frame(&entry.pcm)?,
                None => wav.write_frame(&Pcm16K::SILENCE)?,
            }
        }
        let hangover = HANGOVER_MS / FRAME_MS;
        let segments = &mut self.segments;
        self.open.retain(|&source_id, &mut (first, last)| {
            let over = now - last >= hangover;
            if over {
                segments.push(segment(source_id, first, last));
            }
            !over
        });
        self.frames += 1;
        Ok(())
    }

    /// Closes the files, renames them after their participants (`STEM.NAME.wav`) and
    /// closes the open segments.
    pub fn finish(mut self) -> std::io::Result<SpeakerRecording> {
        for (source_id, (first, last)) in self.open.drain() {
            self.segments.push(segment(source_id, first, last));
        }
        self.segments.sort_by_key(|s| (s.start_ms, s.source_id));
        let mut tracks = Vec::with_capacity(self.tracks.len());
        let mut taken = Vec::new();
        for (mut track, wav) in self.tracks {
            wav.finish()?;
            let mut name = file_name_part(&track.label());
            let mut n = 1;
            while taken.contains(&name) {
                n += 1;
                name = format!("{}-{n}", file_name_part(&track.label()));
            }
            let path = beside(&self.mix, &format!("{name}.wav"));
            std::fs::rename(&track.path, &path)?;
            track.path = path;
            taken.push(name);
            tracks.push(track);
        }
        Ok(SpeakerRecording {
            mix: self.mix,
            streams: self.streams,
            tracks,
            segments: self.segments,
        })
    }
}

/// What a [`SpeakerRecorder`] wrote: the participants' files and who spoke when.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SpeakerRecording {
    /// The mix's file the others lie beside.
    pub mix: PathBuf,
    /// Speaker streams the service sent.
    pub streams: u8,
    /// One file per source id heard on a speaker stream, in the order first heard.
    pub tracks: Vec<Track>,
    /// Who spoke when, sorted by start (then source id).
    pub segments: Vec<Segment>,
}

impl SpeakerRecording {
    /// The track of source id `source_id`.
    pub fn track(&self, source_id: u32) -> Option<&Track> {
        self.tracks.iter().find(|t| t.source_id == source_id)
    }

    /// Where [`Self::write_timeline`] writes: [`timeline_path`] of the mix.
    pub fn timeline_path(&self) -> PathBuf {
        timeline_path(&self.mix)
    }

    /// Writes the timeline (see the [module](self)) to [`Self::timeline_path`]; returns
    /// that path.
    pub fn write_timeline(&self) -> std::io::Result<PathBuf> {
        let file_name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
        let json = serde_json::json!({
            "mix": file_name(&self.mix),
            "frame_ms": FRAME_MS,
            "hangover_ms": HANGOVER_MS,
            "unmixed_streams": self.streams,
            "participants": self.tracks.iter().map(|t| serde_json::json!({
                "participant": t.participant,
                "name": t.name,
                "source_id": t.source_id,
                "wav": file_name(&t.path),
            })).collect::<Vec<_>>(),
            "segments": self.segments.iter().map(|s| serde_json::json!({
                "participant": self.track(s.source_id).and_then(|t| t.participant.clone()),
                "name": self.track(s.source_id).and_then(|t| t.name.clone()),
                "source_id": s.source_id,
                "start_ms": s.start_ms,
                "end_ms": s.end_ms,
            })).collect::<Vec<_>>(),
        });
        let path = self.timeline_path();
        let text = serde_json::to_string_pretty(&json).map_err(std::io::Error::other)?;
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

/// One participant's file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Track {
    /// The media source id whose entries it holds.
    pub source_id: u32,
    /// Their participant id, when the roster listed the source id.
    pub participant: Option<String>,
    /// Their display name, when the roster has one.
    pub name: Option<String>,
    /// The WAV file.
    pub path: PathBuf,
}

impl Track {
    /// The display name, else the participant id, else `source-N`: what the file is
    /// named after.
    pub fn label(&self) -> String {
        self.name
            .clone()
            .or_else(|| self.participant.clone())
            .unwrap_or_else(|| format!("source-{}", self.source_id))
    }
}

/// A stretch of speech by one speaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Segment {
    /// The speaker's media source id.
    pub source_id: u32,
    /// From the mix's start, the first speech frame's start, in milliseconds.
    pub start_ms: u64,
    /// From the mix's start, the last speech frame's end, in milliseconds.
    pub end_ms: u64,
}

/// Whether an unmixed entry carries speech: its level, when it has one, at or above
/// -60 dBov, and its audio above -55 dBFS (RMS).
pub fn is_speech(entry: &UnmixedFrame) -> bool {
    let loud = entry.level.is_none_or(|l| l <= SPEECH_LEVEL);
    let energy: f64 = entry
        .pcm
        .samples
        .iter()
        .map(|&s| f64::from(s) * f64::from(s))
        .sum();
    let rms = (energy / entry.pcm.samples.len() as f64).sqrt() / 32_768.0;
    loud && 20.0 * rms.max(1e-9).log10() > SPEECH_DBFS
}

/// The timeline's file beside the mix's file `DIR/STEM.wav`: `DIR/STEM.timeline.json`.
pub fn timeline_path(mix: &Path) -> PathBuf {
    beside(mix, "timeline.json")
}

/// `DIR/STEM.tail` for `mix` = `DIR/STEM.wav`.
fn beside(mix: &Path, tail: &str) -> PathBuf {
    let stem = mix.file_stem().unwrap_or_default().to_string_lossy();
    mix.with_file_name(format!("{stem}.{tail}"))
}

fn segment(source_id: u32, first: u64, last: u64) -> Segment {
    Segment {
        source_id,
        start_ms: first * FRAME_MS,
        end_ms: (last + 1) * FRAME_MS,
    }
}

/// A file-name part: letters, digits, `-` and `_`, others made `_`, at most 64.
fn file_name_part(label: &str) -> String {
    let name: String = label
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() { "_".into() } else { name }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audio_pipeline::{FrameSource, Ticks, UnmixedFrames};
    use signalling::model::{Identity, IdentityRole, IdentitySet, MediaStream, Participant};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh directory, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new() -> Dir {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "botmedia-speaker-recorder-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }

        fn files(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A constant frame of `value`: loud enough to be speech when 1000, silence when 0.
    fn pcm(value: i16) -> Pcm16K {
        let mut pcm = Pcm16K::SILENCE;
        pcm.samples.fill(value);
        pcm
    }

    /// A received frame whose unmixed entries are `(source id, sample value, level)`.
    fn frame(entries: &[(u32, i16, Option<u8>)]) -> ReceivedFrame {
        let mut unmixed = UnmixedFrames::new();
        for (i, &(source_id, value, level)) in entries.iter().enumerate() {
            let entry = UnmixedFrame {
                stream: i as u8 + 1,
                source_id,
                pcm: pcm(value),
                level,
                source: FrameSource::Decoded,
            };
            unmixed.push(entry).unwrap();
        }
        ReceivedFrame {
            is_silence: false,
            source: FrameSource::Decoded,
            unmixed,
            ..ReceivedFrame::no_signal(Ticks(0))
        }
    }

    fn participant(id: &str, name: &str, source_id: u32) -> Participant {
        let mut info = signalling::model::ParticipantInfo::default();
        info.identity = IdentitySet::with(IdentityRole::User, Identity::new(id, Some(name))).into();
        let mut stream = MediaStream::default();
        stream.media_type = signalling::model::Modality::Audio.into();
        stream.source_id = source_id.to_string().into();
        let mut p = Participant::default();
        p.id = id.to_owned().into();
        p.info = info.into();
        p.media_streams = vec![stream].into();
        p
    }

    fn samples(path: &Path) -> Vec<i16> {
        audio_pipeline::wav::Wav::read(path).unwrap().samples
    }

    #[test]
    fn a_late_speaker_is_padded_and_pauses_shorter_than_the_hangover_keep_a_segment() {
        let dir = Dir::new();
        let mix = dir.0.join("call.wav");
        let speakers = Speakers::from_roster([&participant("p-ada", "Ada", 7)]);
        // Unmixed audio started when the mix had 5 frames.
        let mut r = SpeakerRecorder::new(&mix, 2, 5);
        let hangover = HANGOVER_MS / FRAME_MS;
        let mut script = Vec::new();
        script.extend([frame(&[]); 3]); // frames 5..8: nobody
        script.extend([frame(&[(7, 1000, Some(20))]); 10]); // 8..18: Ada
        script.extend([frame(&[(7, 0, Some(127))]); 10]); // 18..28: on a stream, silent
        script.extend([frame(&[(7, 1000, Some(20))]); 5]); // 28..33: Ada again
        script.extend(vec![frame(&[]); hangover as usize + 5]); // off the streams: ends
        script.extend([frame(&[(7, 1000, None)]); 4]); // a second segment to the end
        for f in &script {
            r.write(f, &speakers).unwrap();
        }
        assert_eq!(r.frames(), 5 + script.len() as u64);
        assert_eq!(r.tracks().len(), 1);
        let done = r.finish().unwrap();
        let ms = |frames: u64| frames * FRAME_MS;
        assert_eq!(
            done.segments,
            [
                segment(7, 8, 32),
                segment(7, 33 + hangover + 5, 33 + hangover + 8),
            ]
        );
        assert_eq!(done.segments[0].start_ms, ms(8));
        assert_eq!(done.segments[0].end_ms, ms(33));
        let track = &done.tracks[0];
        assert_eq!(track.path, dir.0.join("call.Ada.wav"));
        assert_eq!(track.participant.as_deref(), Some("p-ada"));
        let wav = samples(&track.path);
        // As long as the mix, silent before Ada's first frame on a stream.
        assert_eq!(wav.len() as u64, (5 + script.len() as u64) * 320);
        assert!(wav[..8 * 320].iter().all(|&s| s == 0));
        assert!(wav[8 * 320..18 * 320].iter().all(|&s| s == 1000));
        assert_eq!(dir.files(), ["call.Ada.wav"]);
    }

    #[test]
    fn files_are_named_after_the_roster_when_it_comes_and_names_do_not_clash() {
        let dir = Dir::new();
        let mix = dir.0.join("m.wav");
        let mut r = SpeakerRecorder::new(&mix, 4, 0);
        // Source 3 is heard before the roster lists it; 9 never is listed.
        let mut speakers = Speakers::new();
        let all = frame(&[
            (3, 1000, Some(10)),
            (9, 1000, Some(10)),
            (4, 1000, Some(10)),
        ]);
        r.write(&all, &speakers).unwrap();
        assert!(r.tracks().all(|t| t.participant.is_none()));
        assert_eq!(
            r.tracks().next().unwrap().path,
            dir.0.join("m.source-3.wav.part")
        );
        speakers.replace([
            &participant("p-1", "Dr. Who/x", 3),
            &participant("p-2", "Dr. Who/x", 4),
        ]);
        r.write(&all, &speakers).unwrap();
        let done = r.finish().unwrap();
        let labels: Vec<String> = done.tracks.iter().map(Track::label).collect();
        assert_eq!(labels, ["Dr. Who/x", "source-9", "Dr. Who/x"]);
        assert_eq!(
            dir.files(),
            ["m.Dr__Who_x-2.wav", "m.Dr__Who_x.wav", "m.source-9.wav"]
        );
        assert_eq!(done.track(4).unwrap().path, dir.0.join("m.Dr__Who_x-2.wav"));
        assert_eq!(file_name_part(""), "_");
        assert_eq!(file_name_part(&"é".repeat(100)).chars().count(), 64);
    }

    #[test]
    fn the_timeline_names_files_participants_and_segments() {
        let dir = Dir::new();
        let mix = dir.0.join("meeting.wav");
        let speakers = Speakers::from_roster([&participant("p-ada", "Ada", 7)]);
        let mut r = SpeakerRecorder::new(&mix, 3, 2);
        r.write(
            &frame(&[(7, 1000, Some(30)), (8, 1000, Some(30))]),
            &speakers,
        )
        .unwrap();
        let done = r.finish().unwrap();
        let path = done.write_timeline().unwrap();
        assert_eq!(path, dir.0.join("meeting.timeline.json"));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "mix": "meeting.wav",
                "frame_ms": 20,
                "hangover_ms": 500,
                "unmixed_streams": 3,
                "participants": [
                    { "participant": "p-ada", "name": "Ada", "source_id": 7, "wav": "meeting.Ada.wav" },
                    { "participant": null, "name": null, "source_id": 8, "wav": "meeting.source-8.wav" },
                ],
                "segments": [
                    { "participant": "p-ada", "name": "Ada", "source_id": 7, "start_ms": 40, "end_ms": 60 },
                    { "participant": null, "name": null, "source_id": 8, "start_ms": 40, "end_ms": 60 },
                ],
            })
        );
        // Keys in the order written, for people reading the file.
        let text = std::fs::read_to_string(&path).unwrap();
        let at = |key: &str| text.find(&format!("\"{key}\"")).unwrap();
        assert!(at("mix") < at("frame_ms") && at("unmixed_streams") < at("participants"));
    }

    #[test]
    fn speech_needs_both_level_and_energy() {
        let entry = |value, level| frame(&[(1, value, level)]).unmixed.as_slice()[0];
        assert!(is_speech(&entry(1000, Some(60))));
        assert!(is_speech(&entry(1000, None)));
        assert!(!is_speech(&entry(1000, Some(61))), "a level below -60 dBov");
        assert!(!is_speech(&entry(30, Some(10))), "-59 dBFS of audio");
        assert!(!is_speech(&entry(0, None)));
    }
}
