//! Lost handshake flights on the whole stack.
//!
//! A DTLS 1.2 handshake goes in flights: the client's `ClientHello` (1), the server's
//! `HelloVerifyRequest` (2), the `ClientHello` with the cookie (3), the server's hello,
//! certificate and key exchange (4), the client's certificate, key exchange,
//! `ChangeCipherSpec` and `Finished` (5), and the server's `ChangeCipherSpec` and `Finished`
//! (6). Each side must send its last flight again when the peer's answer does not come
//! (RFC 6347 §4.2.4): on a timer, and when the peer repeats its own flight. The `rtc`
//! stack's DTLS endpoint stops its retransmission timer once part of the peer's next
//! flight arrived, even when the rest never does: in the traced stalls a whole-stack server
//! did not send flight 4 again while the client repeated its `ClientHello`, and a client
//! did not send flight 5 again while the server repeated flight 4. In simulated time at
//! 10 % loss with jitter about one handshake in sixteen stalled until the connect timeout.
//!
//! [`FlightRepeat`] watches a whole-stack leg's handshake and does it for the stack. Until
//! the handshake completes on this side, the leg's last flight goes again when nothing
//! came for a retransmission timeout (1 s, doubling to 8 s). Until the peer's media shows
//! that the peer completed too, it goes again when the peer repeats a flight in the clear
//! that the stack left unanswered (at most once per half second: a repeated flight spans
//! several datagrams). At most 8 times in all. A flight goes again as it was sent, which
//! helps exactly when it was lost: records the peer got already are dropped by its replay
//! window. The lean path's DTLS server answers repeated flights the same way
//! (`lean::LeanLink`); its DTLS endpoint's own timer covers the rest.

use std::time::{Duration, Instant};

use super::core::Transmit;

/// Most times the last flight is sent again.
const MAX_REPEATS: u8 = 8;
/// The first retransmission timeout (RFC 6347's initial value).
const FIRST_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest retransmission timeout (RFC 6347 allows 60 s; a leg's connect watchdog
/// gives up long before that).
const LONGEST_TIMEOUT: Duration = Duration::from_secs(8);

/// RFC 7983's range of first bytes for DTLS records.
fn is_dtls(data: &[u8]) -> bool {
    matches!(data.first(), Some(20..=63))
}

/// A handshake record of epoch 0: part of a flight in the clear, which a peer sends again
/// when our answer to it was lost (a `Finished` after `ChangeCipherSpec` is of epoch 1).
pub(crate) fn is_clear_handshake(data: &[u8]) -> bool {
    data.len() >= 13 && data[0] == 22 && data[3] == 0 && data[4] == 0
}

/// The shortest time between two repeats the peer's datagrams ask for.
const REPEAT_SPACING: Duration = Duration::from_millis(500);

/// A DTLS record of the handshake: `ChangeCipherSpec` (20) or handshake (22). Alerts and
/// application data are never part of a flight that goes again.
fn is_handshake_flight(data: &[u8]) -> bool {
    matches!(data.first(), Some(20 | 22))
}

/// The DTLS datagrams a leg's stack sent last, and when DTLS was last heard or sent.
pub(crate) struct FlightRepeat {
    /// The datagrams of this side's last flight.
    last: Vec<Transmit>,
    /// The peer sent nothing since the flight started: more datagrams belong to it.
    open: bool,
    /// Times the last flight went again.
    repeats: u8,
    /// When DTLS last went either way; the timer runs from there.
    active_at: Option<Instant>,
    /// When the last flight last went again.
    repeated_at: Option<Instant>,
    /// The retransmission timeout now.
    timeout: Duration,
    /// The handshake completed on this side: the timer stops, repeats the peer asks for go
    /// on (our final flight may be what was lost).
    completed: bool,
    /// The peer's media came: nothing more is watched.
    done: bool,
}

impl Default for FlightRepeat {
    fn default() -> Self {
        FlightRepeat {
            last: Vec::new(),
            open: false,
            repeats: 0,
            active_at: None,
            repeated_at: None,
            timeout: FIRST_TIMEOUT,
            completed: false,
            done: false,
        }
    }
}

impl FlightRepeat {
    /// Whether the handshake is still watched.
    pub(crate) fn watching(&self) -> bool {
        !self.done
    }

    /// A datagram the peer sent, before the stack takes it: whatever the stack sends next
    /// is a new flight.
    pub(crate) fn peer_sent(&mut self, now: Instant, data: &[u8]) {
        if self.done || !is_dtls(data) {
            return;
        }
        self.open = false;
        self.active_at = Some(now);
    }

    /// The stack's own timer fired: what it sends now replaces the flight kept (it sent
    /// its flight again itself, under new record numbers).
    pub(crate) fn stack_timer(&mut self) {
        self.open = false;
    }

    /// A datagram the stack sends; whether it is DTLS.
    pub(crate) fn sent(&mut self, now: Instant, t: &Transmit) -> bool {
        if !is_dtls(&t.data) {
            return false;
        }
        if self.done || !is_handshake_flight(&t.data) {
            return true;
        }
        if !self.open {
            self.open = true;
            self.repeats = 0;
            self.timeout = FIRST_TIMEOUT;
            self.last.clear();
        }
        self.active_at = Some(now);
        self.last.push(Transmit {
            from: t.from,
            to: t.to,
            data: t.data.clone(),
        });
        true
    }

    /// The peer's datagram `data` after the stack took it; `answered`: the stack sent DTLS
    /// in reply. The datagrams to send again: this side's last flight, when the peer
    /// repeated a flight in the clear and the stack let it go unanswered.
    pub(crate) fn repeat(&mut self, now: Instant, data: &[u8], answered: bool) -> &[Transmit] {
        if self.done
            || answered
            || !is_clear_handshake(data)
            || self
                .repeated_at
                .is_some_and(|t| now.saturating_duration_since(t) < REPEAT_SPACING)
        {
            return &[];
        }
        self.again(now)
    }

    /// When [`Self::on_timeout`] is due: a retransmission timeout after DTLS last went
    /// either way, while a flight is kept and the handshake has not completed here.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.done || self.completed || self.last.is_empty() || self.repeats >= MAX_REPEATS {
            return None;
        }
        self.active_at.map(|t| t + self.timeout)
    }

    /// The datagrams to send again at `now`: the last flight, when nothing went either way
    /// for a retransmission timeout (which then doubles).
    pub(crate) fn on_timeout(&mut self, now: Instant) -> &[Transmit] {
        if self.poll_timeout().is_none_or(|t| t > now) {
            return &[];
        }
        self.timeout = (self.timeout * 2).min(LONGEST_TIMEOUT);
        self.again(now)
    }

    fn again(&mut self, now: Instant) -> &[Transmit] {
        if self.last.is_empty() || self.repeats >= MAX_REPEATS {
            return &[];
        }
        self.repeats += 1;
        self.active_at = Some(now);
        self.repeated_at = Some(now);
        &self.last
    }

    /// The handshake completed on this side: no more repeats on the timer.
    pub(crate) fn complete(&mut self) {
        self.completed = true;
    }

    /// The peer's media came: its handshake is over as well as ours.
    pub(crate) fn finish(&mut self) {
        self.done = true;
        self.last = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn transmit(data: &[u8]) -> Transmit {
        Transmit {
            from: "127.0.0.1:1".parse().unwrap(),
            to: "127.0.0.1:2".parse().unwrap(),
            data: BytesMut::from(data),
        }
    }

    /// A DTLS record header of `content_type` and `epoch`, and a byte of body.
    fn record(content_type: u8, epoch: u8) -> Vec<u8> {
        vec![
            content_type,
            0xfe,
            0xfd,
            0,
            epoch,
            0,
            0,
            0,
            0,
            0,
            1,
            0,
            1,
            0xaa,
        ]
    }

    /// What the leg does with one peer datagram at `now`: tell, let the stack answer, ask.
    fn exchange(f: &mut FlightRepeat, now: Instant, peer: &[u8], replies: &[Vec<u8>]) -> usize {
        f.peer_sent(now, peer);
        let mut answered = false;
        for r in replies {
            answered |= f.sent(now, &transmit(r));
        }
        f.repeat(now, peer, answered).len()
    }

    #[test]
    fn the_last_flight_goes_again_when_the_peer_repeats_its_own_unanswered() {
        let t0 = Instant::now();
        let mut f = FlightRepeat::default();
        assert!(f.sent(t0, &transmit(&record(22, 0)))); // ClientHello
        // HelloVerifyRequest, answered by the ClientHello with the cookie.
        assert_eq!(exchange(&mut f, t0, &record(22, 0), &[record(22, 0)]), 0);
        // Flight 4, answered by flight 5 in two datagrams.
        let flight5 = [record(22, 0), record(20, 0)];
        assert_eq!(exchange(&mut f, t0, &record(22, 0), &flight5), 0);
        // Flight 4 again, unanswered: flight 5 (both datagrams, not the earlier ones) goes
        // again.
        f.peer_sent(t0, &record(22, 0));
        let again = f.repeat(t0, &record(22, 0), false);
        assert_eq!(again.len(), 2);
        assert_eq!(again[1].data[0], 20);
        // Flight 6 starts with ChangeCipherSpec: no repeat.
        assert_eq!(exchange(&mut f, t0, &record(20, 0), &[]), 0);
        f.finish();
        assert_eq!(exchange(&mut f, t0, &record(22, 0), &[]), 0);
        assert_eq!(f.poll_timeout(), None);
    }

    #[test]
    fn the_last_flight_goes_again_on_a_doubling_timer_while_nothing_comes() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut f = FlightRepeat::default();
        assert_eq!(f.poll_timeout(), None, "no flight yet");
        f.sent(t0, &transmit(&record(22, 0)));
        assert_eq!(f.poll_timeout(), Some(t0 + s(1)));
        assert!(f.on_timeout(t0 + Duration::from_millis(999)).is_empty());
        assert_eq!(f.on_timeout(t0 + s(1)).len(), 1);
        assert_eq!(f.poll_timeout(), Some(t0 + s(3)), "2 s after the repeat");
        // The peer's answer restarts the timer; the stack's next flight resets it to 1 s.
        f.peer_sent(t0 + s(2), &record(22, 0));
        assert_eq!(f.poll_timeout(), Some(t0 + s(4)));
        f.sent(t0 + s(2), &transmit(&record(22, 0)));
        assert_eq!(f.poll_timeout(), Some(t0 + s(3)));
        // At most 8 repeats, at most 8 s apart.
        let mut now = t0 + s(2);
        let mut repeats = 0;
        while let Some(t) = f.poll_timeout() {
            assert!(t - now <= LONGEST_TIMEOUT);
            now = t;
            repeats += f.on_timeout(now).len();
        }
        assert_eq!(repeats, usize::from(MAX_REPEATS));
    }

    #[test]
    fn other_traffic_repeats_nothing() {
        let t0 = Instant::now();
        let mut f = FlightRepeat::default();
        assert!(f.sent(t0, &transmit(&record(22, 0))));
        // STUN (first byte 0 or 1) and SRTP (128..=191) are not DTLS.
        assert!(!f.sent(t0, &transmit(&[0, 1, 0, 0])));
        assert_eq!(exchange(&mut f, t0, &[0, 1, 0, 0], &[]), 0);
        assert_eq!(exchange(&mut f, t0, &[0x80; 20], &[]), 0);
        // An encrypted handshake record (epoch 1) is no flight in the clear.
        assert_eq!(exchange(&mut f, t0, &record(22, 1), &[]), 0);
        // Truncated input is no handshake record.
        assert_eq!(exchange(&mut f, t0, &[22, 0xfe], &[]), 0);
    }

    #[test]
    fn repeats_are_bounded_and_spaced() {
        let t0 = Instant::now();
        let mut f = FlightRepeat::default();
        f.sent(t0, &transmit(&record(22, 0)));
        // The datagrams of one repeated flight ask once.
        let burst: usize = (0..5)
            .map(|i| exchange(&mut f, t0 + Duration::from_millis(i), &record(22, 0), &[]))
            .sum();
        assert_eq!(burst, 1);
        let total: usize = (1..100)
            .map(|i| exchange(&mut f, t0 + Duration::from_secs(i), &record(22, 0), &[]))
            .sum();
        assert_eq!(1 + total, usize::from(MAX_REPEATS));
        assert_eq!(f.poll_timeout(), None);
    }

    #[test]
    fn the_stacks_own_resends_replace_the_flight_and_alerts_are_no_flight() {
        let t0 = Instant::now();
        let mut f = FlightRepeat::default();
        f.sent(t0, &transmit(&record(22, 0)));
        // The stack's timer sends the flight again itself: still one flight, not two.
        f.stack_timer();
        f.sent(t0, &transmit(&record(22, 0)));
        // An alert is DTLS (it answers) but never part of a flight.
        assert!(f.sent(t0, &transmit(&record(21, 0))));
        f.peer_sent(t0, &record(22, 0));
        assert_eq!(f.repeat(t0, &record(22, 0), false).len(), 1);
    }

    #[test]
    fn after_completing_only_the_peer_asks_for_the_final_flight() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut f = FlightRepeat::default();
        // A server's flight 6 completes the handshake on its side.
        assert_eq!(exchange(&mut f, t0, &record(22, 0), &[record(20, 0)]), 0);
        f.complete();
        assert_eq!(f.poll_timeout(), None, "no timer once completed");
        // The client did not get it and repeats its flight 5 (its replay is dropped by the
        // stack, which answers nothing): flight 6 goes again.
        assert_eq!(exchange(&mut f, t0 + s(1), &record(22, 0), &[]), 1);
        f.finish();
        assert_eq!(exchange(&mut f, t0 + s(2), &record(22, 0), &[]), 0);
    }
}
