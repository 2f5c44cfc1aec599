//! RFC 4733 `telephone-event` payloads: parsing, de-duplication of received events and the
//! packet schedule of a sent event. Sans-IO: callers pass RTP timestamps and clock rates in.

use std::fmt;

/// A DTMF tone (RFC 4733 events 0 to 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Tone {
    /// Digit 0.
    Tone0,
    /// Digit 1.
    Tone1,
    /// Digit 2.
    Tone2,
    /// Digit 3.
    Tone3,
    /// Digit 4.
    Tone4,
    /// Digit 5.
    Tone5,
    /// Digit 6.
    Tone6,
    /// Digit 7.
    Tone7,
    /// Digit 8.
    Tone8,
    /// Digit 9.
    Tone9,
    /// `*`.
    Star,
    /// `#`.
    Pound,
    /// `A`.
    A,
    /// `B`.
    B,
    /// `C`.
    C,
    /// `D`.
    D,
    /// Hook flash.
    Flash,
}

const TONES: [Tone; 17] = [
    Tone::Tone0,
    Tone::Tone1,
    Tone::Tone2,
    Tone::Tone3,
    Tone::Tone4,
    Tone::Tone5,
    Tone::Tone6,
    Tone::Tone7,
    Tone::Tone8,
    Tone::Tone9,
    Tone::Star,
    Tone::Pound,
    Tone::A,
    Tone::B,
    Tone::C,
    Tone::D,
    Tone::Flash,
];

impl Tone {
    /// The RFC 4733 event code of this tone.
    pub fn event_code(self) -> u8 {
        // TONES lists every variant in event-code order.
        TONES.iter().position(|t| *t == self).unwrap_or(0) as u8
    }

    /// The tone of an RFC 4733 event code, `None` for codes that are not DTMF.
    pub fn from_event_code(code: u8) -> Option<Self> {
        TONES.get(usize::from(code)).copied()
    }

    /// The tone of a keypad character (`0-9`, `*`, `#`, `A-D`, case-insensitive).
    pub fn from_char(c: char) -> Option<Self> {
        let code = match c.to_ascii_uppercase() {
            d @ '0'..='9' => d as u8 - b'0',
            '*' => 10,
            '#' => 11,
            l @ 'A'..='D' => l as u8 - b'A' + 12,
            _ => return None,
        };
        Self::from_event_code(code)
    }
}

impl fmt::Display for Tone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 17] = [
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#", "A", "B", "C", "D", "flash",
        ];
        f.write_str(NAMES[usize::from(self.event_code())])
    }
}

/// One decoded `telephone-event` payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EventPayload {
    pub(crate) event: u8,
    pub(crate) end: bool,
    pub(crate) volume: u8,
    /// Duration so far, in units of the payload type's clock.
    pub(crate) duration: u16,
}

/// Why a `telephone-event` payload was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum EventPayloadError {
    /// RFC 4733 payloads are at least 4 bytes.
    #[error("telephone-event payload of {len} bytes, expected at least 4")]
    TooShort {
        /// The payload's length.
        len: usize,
    },
}

impl EventPayload {
    pub(crate) const LEN: usize = 4;

    pub(crate) fn parse(payload: &[u8]) -> Result<Self, EventPayloadError> {
        let [event, flags, d0, d1, ..] = *payload else {
            return Err(EventPayloadError::TooShort { len: payload.len() });
        };
        Ok(Self {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    pub(crate) fn to_bytes(self) -> [u8; Self::LEN] {
        let flags = (if self.end { 0x80 } else { 0 }) | (self.volume & 0x3f);
        let d = self.duration.to_be_bytes();
        [self.event, flags, d[0], d[1]]
    }
}

/// Turns the packets of received events into one notification per event: an event is the
/// set of packets sharing an RTP timestamp (RFC 4733 §2.5.1.2), so its retransmitted end
/// packets and any lost first packet do not change how often it is reported.
#[derive(Debug, Default)]
pub(crate) struct EventReceiver {
    last: Option<(u32, u8)>,
}

impl EventReceiver {
    /// Feeds one packet; returns the tone the first time an event is seen.
    pub(crate) fn on_packet(&mut self, rtp_timestamp: u32, payload: &[u8]) -> Option<Tone> {
        let p = EventPayload::parse(payload).ok()?;
        let key = (rtp_timestamp, p.event);
        if self.last == Some(key) {
            return None;
        }
        self.last = Some(key);
        Tone::from_event_code(p.event)
    }
}

/// The packets of one sent event: one every 20 ms carrying the duration so far, the first
/// marked, then the final duration three times with the end bit (RFC 4733 §2.5.1.4).
#[derive(Debug)]
pub(crate) struct EventSender {
    event: u8,
    /// Total duration in clock units.
    total: u32,
    step: u32,
    elapsed: u32,
    ends_sent: u8,
}

/// One packet of a sent event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EventPacket {
    pub(crate) payload: [u8; EventPayload::LEN],
    pub(crate) marker: bool,
}

/// Volume of sent tones: -10 dBm0, as most implementations send.
const SEND_VOLUME: u8 = 10;

impl EventSender {
    /// `duration_ms` is clamped to 40..=5000 ms (long events would need the segmenting of
    /// RFC 4733 §2.5.1.3, which no DTMF use needs).
    pub(crate) fn new(tone: Tone, duration_ms: u32, clock_rate: u32) -> Self {
        let ms = duration_ms.clamp(40, 5000);
        let total = (u64::from(ms) * u64::from(clock_rate) / 1000).min(u64::from(u16::MAX)) as u32;
        Self {
            event: tone.event_code(),
            total,
            step: clock_rate / 50,
            elapsed: 0,
            ends_sent: 0,
        }
    }

    /// The next packet, one per 20 ms; `None` when the event is complete.
    pub(crate) fn next_packet(&mut self) -> Option<EventPacket> {
        if self.ends_sent >= 3 {
            return None;
        }
        let marker = self.elapsed == 0;
        self.elapsed = (self.elapsed + self.step).min(self.total);
        let end = self.elapsed >= self.total;
        if end {
            self.ends_sent += 1;
        }
        Some(EventPacket {
            payload: EventPayload {
                event: self.event,
                end,
                volume: SEND_VOLUME,
                duration: self.elapsed as u16,
            }
            .to_bytes(),
            marker,
        })
    }

    /// Whether every packet has been produced.
    pub(crate) fn is_done(&self) -> bool {
        self.ends_sent >= 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_codes_round_trip() {
        for code in 0..=16u8 {
            let t = Tone::from_event_code(code).expect("DTMF code");
            assert_eq!(t.event_code(), code);
        }
        assert_eq!(Tone::from_event_code(17), None);
        assert_eq!(Tone::from_char('#'), Some(Tone::Pound));
        assert_eq!(Tone::from_char('b'), Some(Tone::B));
        assert_eq!(Tone::from_char('7'), Some(Tone::Tone7));
        assert_eq!(Tone::from_char('x'), None);
        assert_eq!(Tone::Star.to_string(), "*");
    }

    #[test]
    fn payload_parses_and_rejects_short() {
        let p = EventPayload::parse(&[5, 0x8a, 0x03, 0x20]).expect("valid");
        assert_eq!(
            p,
            EventPayload {
                event: 5,
                end: true,
                volume: 10,
                duration: 800
            }
        );
        assert_eq!(p.to_bytes(), [5, 0x8a, 0x03, 0x20]);
        assert_eq!(
            EventPayload::parse(&[1, 2, 3]),
            Err(EventPayloadError::TooShort { len: 3 })
        );
    }

    #[test]
    fn sender_schedule_and_receiver_dedupe() {
        // 100 ms at 48 kHz: 5 packets of growing duration, the last one ending, then 2 more ends.
        let mut s = EventSender::new(Tone::Tone9, 100, 48_000);
        let packets: Vec<_> = std::iter::from_fn(|| s.next_packet()).collect();
        assert_eq!(packets.len(), 7);
        assert!(s.is_done());
        assert!(packets[0].marker);
        assert!(packets[1..].iter().all(|p| !p.marker));
        let parsed: Vec<_> = packets
            .iter()
            .map(|p| EventPayload::parse(&p.payload).expect("own payload"))
            .collect();
        assert_eq!(parsed[0].duration, 960);
        assert!(!parsed[3].end);
        assert!(parsed[4..].iter().all(|p| p.end && p.duration == 4800));

        let mut r = EventReceiver::default();
        let seen: Vec<_> = packets
            .iter()
            .filter_map(|p| r.on_packet(1234, &p.payload))
            .collect();
        assert_eq!(seen, vec![Tone::Tone9]);
        // The same digit again is a new event with a new timestamp.
        assert_eq!(r.on_packet(9999, &packets[0].payload), Some(Tone::Tone9));
        assert_eq!(r.on_packet(9999, &[1]), None);
    }

    proptest::proptest! {
        #[test]
        fn payloads_round_trip_and_garbage_is_harmless(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..16),
            ts in proptest::num::u32::ANY,
        ) {
            if let Ok(p) = EventPayload::parse(&bytes) {
                let back = EventPayload::parse(&p.to_bytes()).expect("own bytes");
                proptest::prop_assert_eq!(back, p);
            }
            let mut r = EventReceiver::default();
            let first = r.on_packet(ts, &bytes);
            proptest::prop_assert_eq!(r.on_packet(ts, &bytes), None);
            proptest::prop_assert_eq!(first.is_some(), bytes.len() >= 4 && bytes[0] <= 16);
        }

        #[test]
        fn sent_events_are_well_formed(code in 0u8..=16, ms in 0u32..10_000, rate in proptest::sample::select(vec![8_000u32, 48_000])) {
            let tone = Tone::from_event_code(code).expect("code");
            let mut s = EventSender::new(tone, ms, rate);
            let packets: Vec<_> = std::iter::from_fn(|| s.next_packet()).take(1000).collect();
            proptest::prop_assert!(s.is_done());
            let parsed: Vec<_> = packets.iter().map(|p| EventPayload::parse(&p.payload).expect("parse")).collect();
            proptest::prop_assert!(parsed.windows(2).all(|w| w[0].duration <= w[1].duration));
            proptest::prop_assert_eq!(parsed.iter().filter(|p| p.end).count(), 3);
            proptest::prop_assert!(parsed.iter().all(|p| p.event == code));
        }
    }
}
