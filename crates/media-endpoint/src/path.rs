//! A modelled network under a service leg: the RTP packets the leg sends pass through a
//! [`SendPath`] after the leg numbered and timed them and before SRTP, so whatever the path
//! does (lose, delay, reorder, duplicate) reaches the far end as a real network's faults
//! would. The leg, the [`NetworkPort`](crate::NetworkPort) and the packet types know nothing
//! of it: a test bed adds one with [`ServiceLeg::connect_over`](crate::service::ServiceLeg::connect_over).

use std::collections::VecDeque;
use std::fmt;
use std::time::Instant;

use rtc::interceptor::{AttributedPacket, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::sansio;
use rtc::shared::TransportContext;
use rtc::shared::error::Error as RtcError;

/// The network between a service leg and the endpoint it reaches, as a test bed models it.
/// Sans-IO: time is passed in, and the leg's driver calls back at [`SendPath::poll_timeout`].
pub trait SendPath: Send + Sync + 'static {
    /// The leg puts `packet` on the path at `now`.
    fn send(&mut self, now: Instant, packet: PathPacket);
    /// The next packet that reaches the far end by `now`, if any. Asked after every
    /// [`SendPath::send`] and at every timeout, until it says `None`.
    fn poll_receive(&mut self, now: Instant) -> Option<PathPacket>;
    /// When the next waiting packet is due, if one waits.
    fn poll_timeout(&self) -> Option<Instant>;
}

/// An RTP packet on a [`SendPath`], numbered and timed as the wire carries it. Cloning it
/// is how a path duplicates a packet.
#[derive(Clone)]
pub struct PathPacket {
    transport: TransportContext,
    packet: AttributedPacket,
}

impl PathPacket {
    /// The RTP sequence number.
    pub fn sequence_number(&self) -> u16 {
        match &self.packet.packet {
            Packet::Rtp(p) => p.header.sequence_number,
            _ => 0,
        }
    }
}

impl fmt::Debug for PathPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PathPacket")
            .field("sequence_number", &self.sequence_number())
            .finish_non_exhaustive()
    }
}

/// A [`SendPath`] as the wire-most interceptor of the leg's chain: RTP written by the leg
/// goes through the path, everything else (RTCP, what is read) passes untouched.
pub(crate) struct PathInterceptor {
    path: Box<dyn SendPath>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl PathInterceptor {
    pub(crate) fn new(path: Box<dyn SendPath>) -> Self {
        Self {
            path,
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }

    fn deliver(&mut self, now: Instant) {
        while let Some(p) = self.path.poll_receive(now) {
            self.write.push_back(TaggedPacket {
                now,
                transport: p.transport,
                message: p.packet,
            });
        }
    }
}

impl sansio::Protocol<TaggedPacket, TaggedPacket, ()> for PathInterceptor {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if !matches!(msg.message.packet, Packet::Rtp(_)) {
            self.write.push_back(msg);
            return Ok(());
        }
        let now = msg.now;
        self.path.send(
            now,
            PathPacket {
                transport: msg.transport,
                packet: msg.message,
            },
        );
        self.deliver(now);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        self.deliver(now);
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        self.path.poll_timeout()
    }
}

impl Interceptor for PathInterceptor {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
