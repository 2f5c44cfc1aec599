//! The audio socket of a media session, shaped after the anchor's `AudioSocket`: send a
//! frame, receive frames, and events for send status, dominant speaker, tones, failures and
//! link quality.

use std::collections::VecDeque;
use std::time::Duration;

use audio_pipeline::{
    BotHalf, CallHandle, CallStats, FRAME_DURATION, FrameCallback, Pcm16K, ReceivedFrame,
    SendError, Ticks,
};
use media_endpoint::{
    EndReason, EndpointEvent, FailureReason, QualityData, SendStatus, SessionHandle, Tone,
    ToneError,
};
use tokio::sync::mpsc;

/// How long after a frame's tick the socket first looks for it: the pipeline thread
/// produces the frames of all its calls within about a millisecond of the tick.
const TICK_MARGIN: Ticks = Ticks::from_micros(500);

/// How received frames reach the bot.
pub(crate) enum FrameHandler {
    /// Queued for [`AudioSocket::recv_frame`].
    Queue,
    /// Handed to a callback on the pipeline thread.
    Callback(FrameCallback),
}

/// Something that happened on an audio socket.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum AudioSocketEvent {
    /// The send status changed: frames sent while `Inactive` are discarded.
    SendStatusChanged(SendStatus),
    /// The loudest participant of a mixed stream changed (its CSRC, the participant's
    /// `sourceId`), with hysteresis; `None` when nobody has spoken for a while.
    DominantSpeakerChanged {
        /// The previous dominant speaker.
        previous: Option<u32>,
        /// The new one.
        current: Option<u32>,
    },
    /// A DTMF tone arrived.
    ToneReceived(Tone),
    /// The link failed; the session is over.
    StreamFailure(FailureReason),
    /// New link quality figures.
    QualityUpdated(QualityData),
    /// The leg ended (the service hung up the media or the platform stopped).
    Ended(EndReason),
    /// The media leg of a session that asked for unmixed meeting audio was set up: how
    /// many unmixed speaker streams the service sends. Fewer than requested (0 from a
    /// service without unmixed audio) means the frames carry fewer or no
    /// [`ReceivedFrame::unmixed`] entries; the mix comes either way.
    UnmixedAudio {
        /// Streams the session asked for.
        requested: u8,
        /// Streams the service offered.
        offered: u8,
    },
}

/// What [`AudioSocket::next`] yields: a received frame or an event.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // a frame is the common case; boxing it would allocate per frame
pub enum AudioSocketItem {
    /// A received 20 ms frame.
    Frame(ReceivedFrame),
    /// An event.
    Event(AudioSocketEvent),
}

/// Loudest-speaker tracking with hysteresis over the CSRCs of received frames: a new
/// speaker must lead for `HOLD` frames in a row; after `SILENCE` frames with no CSRC the
/// dominant speaker is cleared.
#[derive(Debug, Default)]
struct Dominant {
    current: Option<u32>,
    challenger: Option<(u32, u32)>,
    quiet: u32,
}

impl Dominant {
    const HOLD: u32 = 15;
    const SILENCE: u32 = 50;

    /// Feeds one frame; returns `Some((previous, current))` on a change.
    fn observe(&mut self, frame: &ReceivedFrame) -> Option<(Option<u32>, Option<u32>)> {
        // The loudest contributor: the lowest -dBov level; the first CSRC when no levels.
        let loudest = frame
            .active_speakers
            .iter()
            .min_by_key(|(_, level)| level.unwrap_or(0))
            .map(|(id, _)| id);
        match loudest {
            None => {
                self.quiet += 1;
                self.challenger = None;
                if self.quiet >= Self::SILENCE && self.current.is_some() {
                    let prev = self.current.take();
                    return Some((prev, None));
                }
                None
            }
            Some(id) => {
                self.quiet = 0;
                if self.current == Some(id) {
                    self.challenger = None;
                    return None;
                }
                if self.current.is_none() {
                    self.current = Some(id);
                    return Some((None, Some(id)));
                }
                let count = match self.challenger {
                    Some((c, n)) if c == id => n + 1,
                    _ => 1,
                };
                self.challenger = Some((id, count));
                if count >= Self::HOLD {
                    let prev = self.current.replace(id);
                    self.challenger = None;
                    return Some((prev, Some(id)));
                }
                None
            }
        }
    }
}

/// Link and pipeline figures of one socket.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct Quality {
    /// The last figures from the peer's receiver reports and the inbound stream.
    pub link: QualityData,
    /// The pipeline's counters: frames in and out, concealment, FEC, jitter, delay.
    pub pipeline: CallStats,
    /// Inbound packets the endpoint dropped because the pipeline's queue was full.
    pub inbound_dropped: u64,
}

/// A media session's audio: 20 ms `Pcm16K` frames in and out.
pub struct AudioSocket {
    bot: BotHalf,
    call: CallHandle,
    endpoint: SessionHandle,
    events: mpsc::Receiver<EndpointEvent>,
    pending: VecDeque<AudioSocketEvent>,
    queue: bool,
    ended: bool,
    dominant: Dominant,
    link: QualityData,
    /// Media time of the last frame taken: the next one is due a tick later.
    last_tick: Option<Ticks>,
}

impl std::fmt::Debug for AudioSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioSocket")
            .field("session", self.endpoint.id())
            .field("active", &self.is_active())
            .field("ended", &self.ended)
            .finish()
    }
}

impl AudioSocket {
    pub(crate) fn new(
        bot: BotHalf,
        call: CallHandle,
        endpoint: SessionHandle,
        events: mpsc::Receiver<EndpointEvent>,
        queue: bool,
    ) -> Self {
        Self {
            bot,
            call,
            endpoint,
            events,
            pending: VecDeque::new(),
            queue,
            ended: false,
            dominant: Dominant::default(),
            link: QualityData::default(),
            last_tick: None,
        }
    }

    /// Queues one frame to send; it leaves on the next free 20 ms tick. Never blocks: a
    /// full queue hands the frame back. Frames sent before the socket is Active are
    /// discarded (and counted).
    #[allow(clippy::result_large_err)] // hands the frame back, like the pipeline; boxing would allocate
    pub fn send(&mut self, frame: Pcm16K) -> Result<(), SendError> {
        self.bot.try_send(frame)
    }

    /// Frames that can be queued now without `Full`.
    pub fn send_capacity(&self) -> usize {
        self.bot.send_capacity_left()
    }

    /// Whether the transport is connected (send status Active).
    pub fn is_active(&self) -> bool {
        self.endpoint.is_active()
    }

    /// Whether the session is over (the leg ended or failed).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Sends a DTMF tone (RFC 4733) lasting `duration`.
    pub fn send_dtmf(&self, tone: Tone, duration: Duration) -> Result<(), ToneError> {
        self.endpoint.send_tone(tone, duration)
    }

    /// A received frame if one is ready.
    pub fn try_recv_frame(&mut self) -> Option<ReceivedFrame> {
        let frame = self.bot.try_recv()?;
        self.last_tick = Some(frame.timestamp);
        if let Some((previous, current)) = self.dominant.observe(&frame) {
            self.pending
                .push_back(AudioSocketEvent::DominantSpeakerChanged { previous, current });
        }
        Some(frame)
    }

    /// The next received frame; `None` once the session is over or when frames go to a
    /// callback instead. Frames come every 20 ms; until media arrives they are silence
    /// marked [`FrameSource::NoSignal`](audio_pipeline::FrameSource::NoSignal).
    pub async fn recv_frame(&mut self) -> Option<ReceivedFrame> {
        if !self.queue {
            return None;
        }
        loop {
            if let Some(frame) = self.try_recv_frame() {
                return Some(frame);
            }
            self.drain_events();
            if self.ended {
                return self.try_recv_frame();
            }
            tokio::time::sleep(self.frame_wait()).await;
        }
    }

    /// The next frame or event, whichever comes first; `None` once the session is over and
    /// everything was read. With a frame callback, only events come here.
    pub async fn next(&mut self) -> Option<AudioSocketItem> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(AudioSocketItem::Event(e));
            }
            if self.queue
                && let Some(frame) = self.try_recv_frame()
            {
                return Some(AudioSocketItem::Frame(frame));
            }
            if self.ended {
                return None;
            }
            let wait = self.frame_wait();
            tokio::select! {
                e = self.events.recv() => match e {
                    Some(e) => self.absorb(e),
                    None => self.ended = true,
                },
                _ = tokio::time::sleep(wait), if self.queue => {}
            }
        }
    }

    /// The next event or frame if one is ready now, without waiting.
    pub fn poll_item(&mut self) -> Option<AudioSocketItem> {
        self.drain_events();
        if let Some(e) = self.pending.pop_front() {
            return Some(AudioSocketItem::Event(e));
        }
        if self.queue {
            return self.try_recv_frame().map(AudioSocketItem::Frame);
        }
        None
    }

    /// How long to sleep before polling for the next frame: until just after its tick (frames
    /// come on 20 ms ticks of the media clock and carry their tick's time), then every
    /// millisecond until it is there. Waking on the tick rather than 20 ms after the last
    /// wake-up keeps a late wake-up from delaying every later frame by as much.
    fn frame_wait(&self) -> Duration {
        match self.last_tick {
            Some(t) => (t + FRAME_DURATION + TICK_MARGIN)
                .saturating_sub(audio_pipeline::now())
                .to_duration()
                .max(Duration::from_millis(1)),
            None => Duration::from_millis(5),
        }
    }

    /// The next event; `None` once the session is over and every event was read.
    pub async fn next_event(&mut self) -> Option<AudioSocketEvent> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.ended {
                return None;
            }
            match self.events.recv().await {
                Some(e) => self.absorb(e),
                None => self.ended = true,
            }
        }
    }

    fn drain_events(&mut self) {
        while let Ok(e) = self.events.try_recv() {
            self.absorb(e);
        }
    }

    fn absorb(&mut self, event: EndpointEvent) {
        let mapped = match event {
            EndpointEvent::LegCreated => None,
            EndpointEvent::SendStatus(s) => Some(AudioSocketEvent::SendStatusChanged(s)),
            EndpointEvent::ToneReceived(t) => Some(AudioSocketEvent::ToneReceived(t)),
            EndpointEvent::Quality(q) => {
                self.link = q;
                Some(AudioSocketEvent::QualityUpdated(q))
            }
            EndpointEvent::StreamFailure(r) => {
                self.ended = true;
                Some(AudioSocketEvent::StreamFailure(r))
            }
            EndpointEvent::LegEnded(r) => {
                self.ended = true;
                Some(AudioSocketEvent::Ended(r))
            }
            EndpointEvent::UnmixedStreams { requested, offered } => {
                Some(AudioSocketEvent::UnmixedAudio { requested, offered })
            }
            _ => None,
        };
        if let Some(e) = mapped {
            self.pending.push_back(e);
        }
    }

    /// The latency the pipeline added to this socket's frames so far: packet arrival to
    /// the frame reaching the bot, and the bot's send to the packet leaving the pipeline.
    pub fn latency(&self) -> audio_pipeline::CallLatency {
        self.call.latency()
    }

    /// A reader of the pipeline's counters and latency of this socket that does not own it.
    pub fn observer(&self) -> audio_pipeline::CallObserver {
        self.call.observer()
    }

    /// A snapshot of link quality and pipeline counters.
    pub fn quality(&mut self) -> Quality {
        self.drain_events();
        Quality {
            link: self.link,
            pipeline: self.call.stats(),
            inbound_dropped: self.endpoint.inbound_dropped(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audio_pipeline::{Csrcs, FrameSource};

    fn frame(speakers: &[(u32, u8)]) -> ReceivedFrame {
        let mut csrcs = Csrcs::new();
        for (id, level) in speakers {
            csrcs.push(*id, Some(*level)).unwrap();
        }
        ReceivedFrame {
            is_silence: false,
            source: FrameSource::Decoded,
            active_speakers: csrcs,
            ..ReceivedFrame::no_signal(Ticks(0))
        }
    }

    #[test]
    fn dominant_speaker_has_hysteresis() {
        let mut d = Dominant::default();
        assert_eq!(d.observe(&frame(&[(7, 20)])), Some((None, Some(7))));
        // A louder speaker must lead for HOLD frames in a row.
        for _ in 0..Dominant::HOLD - 1 {
            assert_eq!(d.observe(&frame(&[(7, 30), (9, 10)])), None);
        }
        assert_eq!(
            d.observe(&frame(&[(7, 30), (9, 10)])),
            Some((Some(7), Some(9)))
        );
        // A brief blip does not switch back.
        for _ in 0..5 {
            assert_eq!(d.observe(&frame(&[(7, 5), (9, 30)])), None);
        }
        assert_eq!(d.observe(&frame(&[(9, 10)])), None);
        // Silence clears it.
        for _ in 0..Dominant::SILENCE - 1 {
            assert_eq!(d.observe(&frame(&[])), None);
        }
        assert_eq!(d.observe(&frame(&[])), Some((Some(9), None)));
    }
}
