//! Who a media source id belongs to: the roster's audio `sourceId`s mapped to participants,
//! so that a bot can tell whose voice each unmixed speaker stream carries.
//!
//! The map is built off the audio path, when roster notifications arrive; looking a source
//! id up, or pairing a frame's [`UnmixedFrames`] with their speakers, never allocates.

use std::collections::HashMap;

use audio_pipeline::{UnmixedFrame, UnmixedFrames};
use signalling::ParticipantId;
use signalling::calls::RosterDiff;
use signalling::model::{IdentityId, Modality, Participant};

/// A participant as heard on a media source: who the roster says sends audio with this
/// source id (the CSRC of their audio in the mix, and the `source_id` of their
/// [`UnmixedFrame`]s).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Speaker {
    /// The media source id (the roster's `mediaStreams[].sourceId` of an audio stream).
    pub source_id: u32,
    /// The participant's id in the call's roster; stable while they stay in the call.
    pub participant: ParticipantId,
    /// The name the roster shows: the display name of the participant's first identity
    /// that has one (user, guest, phone, application, ...), else their
    /// `preferredDisplayName`; `None` when the roster names them nowhere (anonymous
    /// joiners, say).
    pub display_name: Option<String>,
    /// The id of that identity (an Entra user or app id, a phone number; redacted in
    /// `Debug` when it looks like a phone number): stable across calls, unlike
    /// [`Self::participant`].
    pub identity: Option<IdentityId>,
}

impl std::fmt::Debug for Speaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A phone participant's display name is often their number: shown by its tail only.
        let name = self.display_name.as_deref().map(|n| {
            if n.starts_with('+') || n.starts_with("tel:") {
                let tail: String = n
                    .chars()
                    .rev()
                    .take(2)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                format!("…{tail}")
            } else {
                n.to_owned()
            }
        });
        f.debug_struct("Speaker")
            .field("source_id", &self.source_id)
            .field("participant", &self.participant)
            .field("display_name", &name)
            .field("identity", &self.identity)
            .finish()
    }
}

impl Speaker {
    /// The display name, or the participant id when there is none: something to show.
    pub fn label(&self) -> &str {
        self.display_name
            .as_deref()
            .unwrap_or(self.participant.as_str())
    }
}

/// The speakers of one call by media source id, kept in step with its roster.
///
/// [`BotCall`](super::BotCall) keeps one up to date from the call's roster events (see
/// [`BotCall::speakers`](super::BotCall::speakers)); a bot whose signalling is elsewhere
/// feeds one itself with [`Self::apply`] and [`Self::replace`].
#[derive(Clone, Debug, Default)]
pub struct Speakers {
    by_source: HashMap<u32, Speaker>,
}

impl Speakers {
    /// No speakers.
    pub fn new() -> Speakers {
        Speakers::default()
    }

    /// The speakers of a whole roster (what
    /// [`CallHandle::roster`](signalling::CallHandle::roster) returns).
    pub fn from_roster<'a>(roster: impl IntoIterator<Item = &'a Participant>) -> Speakers {
        let mut s = Speakers::new();
        s.replace(roster);
        s
    }

    /// Forgets everyone and maps the participants of `roster`.
    pub fn replace<'a>(&mut self, roster: impl IntoIterator<Item = &'a Participant>) {
        self.by_source.clear();
        for p in roster {
            self.insert(p);
        }
    }

    /// Applies a roster change: joiners are mapped, participants whose streams changed are
    /// mapped again (a source id they no longer list is dropped), and those who left are
    /// dropped.
    pub fn apply(&mut self, diff: &RosterDiff) {
        let changed = |p: &&Participant| p.id.get().is_some_and(|id| !id.is_empty());
        for p in diff.updated.iter().chain(&diff.removed).filter(changed) {
            self.remove(p);
        }
        for p in diff.added.iter().chain(&diff.updated).filter(changed) {
            self.insert(p);
        }
    }

    /// Forgets everyone (the call ended).
    pub fn clear(&mut self) {
        self.by_source.clear();
    }

    /// The speaker with media source id `source_id`; `None` for an id the roster does not
    /// list (yet: a roster notification can lag the media by a moment).
    pub fn get(&self, source_id: u32) -> Option<&Speaker> {
        self.by_source.get(&source_id)
    }

    /// The source ids of participant `id`'s audio (usually one).
    pub fn source_ids<'a>(&'a self, id: &'a ParticipantId) -> impl Iterator<Item = u32> + 'a {
        self.by_source
            .values()
            .filter(move |s| &s.participant == id)
            .map(|s| s.source_id)
    }

    /// Every mapped speaker, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Speaker> {
        self.by_source.values()
    }

    /// How many source ids are mapped.
    pub fn len(&self) -> usize {
        self.by_source.len()
    }

    /// True when no source id is mapped.
    pub fn is_empty(&self) -> bool {
        self.by_source.is_empty()
    }

    /// A frame's unmixed entries, in stream order, each with the speaker its source id
    /// belongs to. Allocates nothing.
    pub fn attribute<'a>(&'a self, unmixed: &'a UnmixedFrames) -> SpeakerFrames<'a> {
        self.pair(unmixed.as_slice())
    }

    fn pair<'a>(&'a self, entries: &'a [UnmixedFrame]) -> SpeakerFrames<'a> {
        SpeakerFrames {
            speakers: self,
            frames: entries.iter(),
        }
    }

    fn remove(&mut self, p: &Participant) {
        let Some(id) = p.id.get() else { return };
        self.by_source
            .retain(|_, s| s.participant.as_str() != id.as_str());
    }

    fn insert(&mut self, p: &Participant) {
        let Some(id) = p.id.get().filter(|id| !id.is_empty()) else {
            return;
        };
        let identity = p.info.get().and_then(|info| info.identity.get());
        let named = identity.and_then(|set| {
            set.identities()
                .find(|(_, i)| i.display_name.get().is_some_and(|n| !n.is_empty()))
                .map(|(_, i)| i)
        });
        let display_name = named
            .and_then(|i| i.display_name.get())
            .or_else(|| p.preferred_display_name.get().filter(|n| !n.is_empty()))
            .cloned();
        let identity = named
            .or_else(|| identity.and_then(|set| set.identities().next().map(|(_, i)| i)))
            .and_then(|i| i.id.get())
            .cloned();
        let audio = p.media_streams.get().into_iter().flatten().filter(|m| {
            // A stream that names no media type is taken as audio: only audio has a
            // source id the audio path can see.
            matches!(m.media_type.get(), None | Some(Modality::Audio))
        });
        for stream in audio {
            let Some(source_id) = stream
                .source_id
                .get()
                .and_then(|s| s.trim().parse::<u32>().ok())
            else {
                continue;
            };
            self.by_source.insert(
                source_id,
                Speaker {
                    source_id,
                    participant: ParticipantId::new(id.as_str()),
                    display_name: display_name.clone(),
                    identity: identity.clone(),
                },
            );
        }
    }
}

/// One unmixed entry of a frame with the participant it belongs to.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct SpeakerFrame<'a> {
    /// The entry: stream, source id, 20 ms of audio, level.
    pub frame: &'a UnmixedFrame,
    /// Whose voice it is; `None` while the roster does not list its source id.
    pub speaker: Option<&'a Speaker>,
}

/// The unmixed entries of a frame paired with their speakers, in stream order: what
/// [`Speakers::attribute`] and [`BotCall::unmixed`](super::BotCall::unmixed) return.
#[derive(Clone, Debug)]
pub struct SpeakerFrames<'a> {
    speakers: &'a Speakers,
    frames: std::slice::Iter<'a, UnmixedFrame>,
}

impl<'a> Iterator for SpeakerFrames<'a> {
    type Item = SpeakerFrame<'a>;

    fn next(&mut self) -> Option<SpeakerFrame<'a>> {
        let frame = self.frames.next()?;
        Some(SpeakerFrame {
            frame,
            speaker: self.speakers.get(frame.source_id),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.frames.size_hint()
    }
}

impl ExactSizeIterator for SpeakerFrames<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use signalling::model::{Identity, IdentityRole, IdentitySet, MediaStream, ParticipantInfo};

    fn participant(id: &str, name: Option<&str>, streams: &[(Modality, &str)]) -> Participant {
        let mut info = ParticipantInfo::default();
        info.identity = IdentitySet::with(
            IdentityRole::User,
            Identity::new(&format!("user-{id}"), name),
        )
        .into();
        let mut p = Participant::default();
        p.id = id.to_owned().into();
        p.info = info.into();
        p.media_streams = streams
            .iter()
            .map(|(kind, source)| {
                let mut m = MediaStream::default();
                m.media_type = kind.clone().into();
                m.source_id = (*source).to_owned().into();
                m
            })
            .collect::<Vec<_>>()
            .into();
        p
    }

    fn diff(
        added: Vec<Participant>,
        updated: Vec<Participant>,
        removed: Vec<Participant>,
    ) -> RosterDiff {
        let mut d = RosterDiff::default();
        d.added = added;
        d.updated = updated;
        d.removed = removed;
        d
    }

    #[test]
    fn audio_source_ids_of_the_roster_name_their_participant() {
        let ada = participant(
            "p-ada",
            Some("Ada"),
            &[(Modality::Audio, "7"), (Modality::Video, "8")],
        );
        let john = participant("p-john", Some("John"), &[(Modality::Audio, " 12 ")]);
        let s = Speakers::from_roster([&ada, &john]);
        let a = s.get(7).expect("Ada's audio");
        assert_eq!(a.participant, ParticipantId::new("p-ada"));
        assert_eq!(a.display_name.as_deref(), Some("Ada"));
        assert_eq!(
            a.identity.as_ref().map(IdentityId::as_str),
            Some("user-p-ada")
        );
        assert_eq!(a.label(), "Ada");
        assert_eq!(s.get(12).map(Speaker::label), Some("John"));
        // Video has a source id of its own that the audio path never sees.
        assert!(s.get(8).is_none());
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.source_ids(&ParticipantId::new("p-ada"))
                .collect::<Vec<_>>(),
            [7]
        );
    }

    #[test]
    fn a_phone_number_as_display_name_is_not_in_debug() {
        let caller = participant("p-pstn", Some("+12345678901"), &[(Modality::Audio, "5")]);
        let s = Speakers::from_roster([&caller]);
        let shown = format!("{:?}", s.get(5).unwrap());
        assert!(
            !shown.contains("2345678901") && shown.contains("…01"),
            "{shown}"
        );
        assert_eq!(s.get(5).unwrap().label(), "+12345678901");
    }

    #[test]
    fn unknown_and_malformed_source_ids_give_none() {
        let odd = participant(
            "p-odd",
            None,
            &[(Modality::Audio, "x12"), (Modality::Audio, "-1")],
        );
        let s = Speakers::from_roster([&odd]);
        assert!(s.is_empty());
        assert!(s.get(12).is_none() && s.get(0).is_none() && s.get(u32::MAX).is_none());
        // Nameless: the label falls back to the participant id.
        let anon = participant("p-anon", None, &[(Modality::Audio, "3")]);
        let s = Speakers::from_roster([&anon]);
        assert_eq!(s.get(3).map(Speaker::label), Some("p-anon"));
    }

    #[test]
    fn roster_changes_add_move_and_drop_source_ids() {
        let ada = participant("p-ada", Some("Ada"), &[(Modality::Audio, "7")]);
        let john = participant("p-john", Some("John"), &[(Modality::Audio, "12")]);
        let mut s = Speakers::new();
        s.apply(&diff(vec![ada.clone(), john.clone()], vec![], vec![]));
        assert_eq!(s.len(), 2);
        // Ada rejoins her audio with another source id: the old one no longer names her.
        let ada_moved = participant("p-ada", Some("Ada L."), &[(Modality::Audio, "9")]);
        s.apply(&diff(vec![], vec![ada_moved], vec![]));
        assert!(s.get(7).is_none());
        assert_eq!(s.get(9).map(Speaker::label), Some("Ada L."));
        // John leaves.
        s.apply(&diff(vec![], vec![], vec![john]));
        assert!(s.get(12).is_none());
        assert_eq!(s.len(), 1);
        s.clear();
        assert!(s.get(9).is_none());
    }

    #[test]
    fn a_frame_is_paired_with_its_speakers_in_stream_order() {
        let ada = participant("p-ada", Some("Ada"), &[(Modality::Audio, "7")]);
        let s = Speakers::from_roster([&ada]);
        assert_eq!(s.attribute(&UnmixedFrames::new()).len(), 0);
        let entry = |stream, source_id| UnmixedFrame {
            stream,
            source_id,
            pcm: audio_pipeline::Pcm16K::SILENCE,
            level: Some(30),
            source: audio_pipeline::FrameSource::Decoded,
        };
        let entries = [entry(1, 99), entry(2, 7)];
        let paired: Vec<_> = s
            .pair(&entries)
            .map(|e| (e.frame.stream, e.speaker.map(Speaker::label)))
            .collect();
        assert_eq!(paired, [(1, None), (2, Some("Ada"))]);
    }
}
