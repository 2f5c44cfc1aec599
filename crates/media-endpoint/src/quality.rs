//! Link quality: what the peer's receiver reports say about the stream the endpoint sends
//! (loss, jitter, round trip), and the endpoint's own view of the stream it receives.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Link quality of one leg, as last measured.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
#[non_exhaustive]
pub struct QualityData {
    /// Fraction of the endpoint's packets the peer lost in its last report interval (0..=1).
    pub outbound_fraction_lost: f32,
    /// Packets of the endpoint's stream the peer counts as lost in total.
    pub outbound_total_lost: u32,
    /// Inter-arrival jitter the peer measures on the endpoint's stream.
    pub outbound_jitter: Duration,
    /// Round trip from the last report (RFC 3550 §6.4.1), when the peer echoed a sender report.
    pub round_trip: Option<Duration>,
    /// Packets the endpoint received from the peer.
    pub inbound_packets: u64,
    /// Packets of the peer's stream that never arrived (by sequence number).
    pub inbound_lost: u64,
    /// Inter-arrival jitter of the peer's stream, measured here.
    pub inbound_jitter: Duration,
}

/// The middle 32 bits of an NTP timestamp of `now`, the unit of LSR and DLSR.
pub(crate) fn ntp_mid32(now: SystemTime) -> u32 {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (((secs & 0xffff) << 16) | (frac >> 16)) as u32
}

/// The 64-bit NTP timestamp of `now` (seconds since 1900 and their binary fraction), as a
/// sender report carries it.
pub(crate) fn ntp64(now: SystemTime) -> u64 {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// Round trip per RFC 3550 §6.4.1: arrival - LSR - DLSR, in 1/65536 s; `None` when the
/// peer has not received a sender report yet (LSR 0) or the clocks disagree.
pub(crate) fn round_trip(arrival_mid32: u32, lsr: u32, dlsr: u32) -> Option<Duration> {
    if lsr == 0 {
        return None;
    }
    let rtt = arrival_mid32.wrapping_sub(lsr).wrapping_sub(dlsr);
    // A "negative" round trip wraps to a huge value; more than a minute means a bad report.
    if rtt > 60 << 16 {
        return None;
    }
    Some(Duration::from_nanos((u64::from(rtt) * 1_000_000_000) >> 16))
}

/// RFC 3550 receive statistics of the peer's stream (§6.4.1 jitter, §A.3 loss).
#[derive(Debug, Default)]
pub(crate) struct InboundStats {
    base_seq: Option<u16>,
    /// Highest extended sequence number seen.
    max_ext_seq: u32,
    cycles: u32,
    received: u64,
    /// Expected and received packets at the last reception report (RFC 3550 §A.3).
    expected_prior: u64,
    received_prior: u64,
    /// Transit time of the previous packet in clock units, and the jitter estimate (×16).
    last_transit: Option<i64>,
    jitter_x16: u64,
}

impl InboundStats {
    /// Records one audio packet; `arrival_units` is the arrival time in the stream's clock
    /// units.
    pub(crate) fn on_packet(&mut self, seq: u16, rtp_timestamp: u32, arrival_units: i64) {
        self.on_sequence(seq);
        let transit = arrival_units - i64::from(rtp_timestamp);
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs();
            // J += (|D| - J) / 16, kept scaled by 16 as in RFC 3550 §A.8.
            self.jitter_x16 = self.jitter_x16 + d - ((self.jitter_x16 + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }

    /// Records a packet of the same stream that carries no audio timing (a telephone
    /// event keeps one timestamp for its whole duration), so it counts for loss only.
    pub(crate) fn on_sequence(&mut self, seq: u16) {
        self.received += 1;
        match self.base_seq {
            None => {
                self.base_seq = Some(seq);
                self.max_ext_seq = u32::from(seq);
            }
            Some(_) => {
                let max = self.max_ext_seq as u16;
                let delta = seq.wrapping_sub(max);
                if delta != 0 && delta < 0x8000 {
                    if seq < max {
                        self.cycles = self.cycles.wrapping_add(1 << 16);
                    }
                    self.max_ext_seq = self.cycles | u32::from(seq);
                }
            }
        }
    }

    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    pub(crate) fn lost(&self) -> u64 {
        let Some(base) = self.base_seq else {
            return 0;
        };
        let expected = u64::from(self.max_ext_seq - u32::from(base)) + 1;
        expected.saturating_sub(self.received)
    }

    /// A reception report of this stream for `ssrc` (RFC 3550 §6.4.1): the loss since the
    /// previous one, the totals, and the jitter in the stream's clock units; `lsr` and
    /// `dlsr` as the sender's last report and the time since it arrived.
    pub(crate) fn report_block(
        &mut self,
        ssrc: u32,
        lsr: u32,
        dlsr: u32,
    ) -> rtc::rtcp::reception_report::ReceptionReport {
        let expected = self
            .base_seq
            .map_or(0, |base| u64::from(self.max_ext_seq - u32::from(base)) + 1);
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8);
        // RFC 3550: the cumulative count is 24 bits.
        let total_lost = self.lost().min(0x7f_ffff) as u32;
        rtc::rtcp::reception_report::ReceptionReport {
            ssrc,
            fraction_lost,
            total_lost,
            last_sequence_number: self.max_ext_seq,
            jitter: (self.jitter_x16 >> 4).min(u64::from(u32::MAX)) as u32,
            last_sender_report: lsr,
            delay: dlsr,
        }
    }

    pub(crate) fn jitter(&self, clock_rate: u32) -> Duration {
        let units = self.jitter_x16 >> 4;
        Duration::from_nanos(units * 1_000_000_000 / u64::from(clock_rate.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_follows_rfc3550_example() {
        // RFC 3550 §6.4.1: arrival 46864.500 s, LSR 46853.125 s, DLSR 5.250 s -> 6.125 s.
        let rtt = round_trip(0xb710_8000, 0xb705_2000, 0x0005_4000).expect("rtt");
        assert_eq!(rtt, Duration::from_millis(6125));
        assert_eq!(round_trip(0xb710_8000, 0, 0), None);
        assert_eq!(round_trip(0x0000_0000, 0x0010_0000, 0), None);
    }

    #[test]
    fn ntp_mid32_of_a_known_instant() {
        // 1970-01-01T00:00:01.5Z is NTP 2208988801.5: low 16 bits of seconds 0x8381+1, frac 0x8000.
        let t = UNIX_EPOCH + Duration::from_millis(1500);
        let secs = (NTP_UNIX_OFFSET + 1) & 0xffff;
        assert_eq!(ntp_mid32(t), ((secs as u32) << 16) | 0x8000);
    }

    #[test]
    fn inbound_loss_and_jitter() {
        let mut s = InboundStats::default();
        // 48 kHz, 20 ms packets, perfectly paced except every 10th missing, across a wrap.
        let mut seq = 65_530u16;
        for i in 0..100i64 {
            if i % 10 != 3 {
                s.on_packet(seq, (i * 960) as u32, 1_000 + i * 960);
            }
            seq = seq.wrapping_add(1);
        }
        assert_eq!(s.received(), 90);
        assert_eq!(s.lost(), 10);
        // Event packets in the same sequence space fill the gaps they occupy.
        let mut e = InboundStats::default();
        e.on_packet(1, 0, 0);
        e.on_sequence(2);
        e.on_sequence(3);
        e.on_packet(4, 960, 960);
        assert_eq!((e.received(), e.lost()), (4, 0));
        assert_eq!(s.jitter(48_000), Duration::ZERO);
        // Alternating 0 / 10 ms late arrivals give a jitter near 10 ms.
        let mut j = InboundStats::default();
        for i in 0..500i64 {
            let late = if i % 2 == 0 { 0 } else { 480 };
            j.on_packet(i as u16, (i * 960) as u32, i * 960 + late);
        }
        let ms = j.jitter(48_000).as_secs_f64() * 1000.0;
        assert!((9.0..=10.5).contains(&ms), "jitter {ms} ms");
    }

    #[test]
    fn report_blocks_count_the_loss_of_each_interval() {
        let mut s = InboundStats::default();
        // 10 expected, 8 received (2 and 5 lost).
        for seq in (0u16..10).filter(|q| *q != 2 && *q != 5) {
            s.on_sequence(seq);
        }
        let r = s.report_block(42, 0x1234_5678, 65_536);
        assert_eq!(r.ssrc, 42);
        // 2 of 10 in 1/256 units.
        assert_eq!(r.fraction_lost, 51);
        assert_eq!((r.total_lost, r.last_sequence_number), (2, 9));
        assert_eq!((r.last_sender_report, r.delay), (0x1234_5678, 65_536));
        // The next 10 all arrive: no loss in that interval.
        for seq in 10u16..20 {
            s.on_sequence(seq);
        }
        let r = s.report_block(42, 0, 0);
        assert_eq!((r.fraction_lost, r.total_lost), (0, 2));
        // An interval with nothing expected reports no loss.
        assert_eq!(s.report_block(42, 0, 0).fraction_lost, 0);
        // Before any packet, an empty report.
        let r = InboundStats::default().report_block(1, 0, 0);
        assert_eq!((r.fraction_lost, r.total_lost), (0, 0));
    }
}
