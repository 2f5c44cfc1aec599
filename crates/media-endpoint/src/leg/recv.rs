//! Batched, timestamped reads of a leg's socket: on Linux one `recvmmsg` takes up to
//! [`BATCH`] datagrams into buffers allocated once per pump, each with the time the kernel
//! received it (`SO_TIMESTAMPNS`). The time matters: the jitter buffer estimates the
//! network's jitter from arrival times, and a pump that a busy machine kept off the CPU for
//! a few milliseconds would otherwise stamp that delay on every packet it then reads.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use audio_pipeline::Ticks;

/// Most datagrams one read takes.
pub(crate) const BATCH: usize = 16;
/// Bytes per datagram slot; a longer datagram is cut and dropped (nothing a leg speaks is
/// this long: RTP audio, RTCP, STUN, DTLS records of at most the path MTU).
pub(crate) const SLOT: usize = 4096;

/// One datagram as read.
pub(crate) struct Datagram<'a> {
    pub(crate) peer: SocketAddr,
    pub(crate) data: &'a [u8],
    /// When the kernel received it, on the media clock; `None` when it did not say.
    pub(crate) arrival: Option<Ticks>,
}

/// Asks the kernel to stamp each datagram the socket receives (a no-op off Linux).
pub(crate) fn enable_timestamps(socket: &UdpSocket) -> io::Result<()> {
    imp::enable_timestamps(socket)
}

/// The pump's receive buffers, allocated once.
pub(crate) struct Receiver {
    imp: imp::Receiver,
}

impl Receiver {
    pub(crate) fn new() -> Receiver {
        Receiver {
            imp: imp::Receiver::new(),
        }
    }

    /// Reads what the socket holds, up to [`BATCH`] datagrams, calling `each` for every
    /// one; returns how many were read (0: nothing waited) and how many were cut.
    pub(crate) fn read(
        &mut self,
        socket: &mio::net::UdpSocket,
        each: impl FnMut(Datagram<'_>),
    ) -> io::Result<(usize, usize)> {
        self.imp.read(socket, each)
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;

    use audio_pipeline::Ticks;

    use super::{BATCH, Datagram, SLOT};

    /// Room for one `SCM_TIMESTAMPNS` control message (a timespec), with headroom.
    const CONTROL: usize = 64;

    pub(super) fn enable_timestamps(socket: &UdpSocket) -> io::Result<()> {
        let on: libc::c_int = 1;
        // SAFETY: a valid descriptor, and a pointer to an int of the size passed.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&raw const on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub(super) struct Receiver {
        data: Box<[[u8; SLOT]; BATCH]>,
        control: Box<[[u8; CONTROL]; BATCH]>,
        addrs: Box<[libc::sockaddr_storage; BATCH]>,
    }

    impl Receiver {
        pub(super) fn new() -> Receiver {
            Receiver {
                data: Box::new([[0; SLOT]; BATCH]),
                control: Box::new([[0; CONTROL]; BATCH]),
                // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
                addrs: Box::new(unsafe { zeroed() }),
            }
        }

        pub(super) fn read(
            &mut self,
            socket: &mio::net::UdpSocket,
            mut each: impl FnMut(Datagram<'_>),
        ) -> io::Result<(usize, usize)> {
            // SAFETY: plain C structs, all zeroes valid; every pointer set below points
            // into `self`'s buffers, which outlive the call.
            let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
            let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
            for i in 0..BATCH {
                iovs[i] = libc::iovec {
                    iov_base: self.data[i].as_mut_ptr().cast(),
                    iov_len: SLOT,
                };
                let h = &mut msgs[i].msg_hdr;
                h.msg_name = (&raw mut self.addrs[i]).cast();
                h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_iov = &raw mut iovs[i];
                h.msg_iovlen = 1;
                h.msg_control = self.control[i].as_mut_ptr().cast();
                h.msg_controllen = CONTROL as _;
            }
            let n = loop {
                // SAFETY: `msgs` holds BATCH headers whose buffers are valid for writing.
                let n = unsafe {
                    libc::recvmmsg(
                        socket.as_raw_fd(),
                        msgs.as_mut_ptr(),
                        BATCH as libc::c_uint,
                        libc::MSG_DONTWAIT,
                        std::ptr::null_mut(),
                    )
                };
                if n >= 0 {
                    break n as usize;
                }
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return Ok((0, 0)),
                    _ => return Err(e),
                }
            };
            // The two clocks read together: a realtime stamp's age is its age on the
            // monotonic media clock too.
            let (real_now, media_now) = (realtime_nanos(), audio_pipeline::now());
            let mut cut = 0;
            for (i, m) in msgs.iter().enumerate().take(n) {
                let h = &m.msg_hdr;
                if h.msg_flags & libc::MSG_TRUNC != 0 {
                    cut += 1;
                    continue;
                }
                let Some(peer) = socket_addr(&self.addrs[i]) else {
                    continue;
                };
                let arrival = stamp(h).map(|ns| {
                    let age = real_now.saturating_sub(ns);
                    media_now.saturating_sub(Ticks::from_nanos(age))
                });
                let len = (m.msg_len as usize).min(SLOT);
                each(Datagram {
                    peer,
                    data: &self.data[i][..len],
                    arrival,
                });
            }
            Ok((n, cut))
        }
    }

    fn realtime_nanos() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid, writable timespec; CLOCK_REALTIME always exists.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
        (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
    }

    /// The `SCM_TIMESTAMPNS` of a received message, ns since the epoch.
    fn stamp(h: &libc::msghdr) -> Option<u64> {
        // SAFETY: the header's control buffer was filled by the kernel for this message;
        // the CMSG macros walk it within `msg_controllen`.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts: libc::timespec =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                    return Some((ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64);
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        None
    }

    fn socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match i32::from(s.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let a = unsafe { &*(std::ptr::from_ref(s).cast::<libc::sockaddr_in>()) };
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let a = unsafe { &*(std::ptr::from_ref(s).cast::<libc::sockaddr_in6>()) };
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::net::UdpSocket;

    use super::{BATCH, Datagram, SLOT};

    pub(super) fn enable_timestamps(_socket: &UdpSocket) -> io::Result<()> {
        Ok(())
    }

    pub(super) struct Receiver {
        buf: Box<[u8; SLOT]>,
    }

    impl Receiver {
        pub(super) fn new() -> Receiver {
            Receiver {
                buf: Box::new([0; SLOT]),
            }
        }

        pub(super) fn read(
            &mut self,
            socket: &mio::net::UdpSocket,
            mut each: impl FnMut(Datagram<'_>),
        ) -> io::Result<(usize, usize)> {
            let mut n = 0;
            while n < BATCH {
                match socket.recv_from(&mut self.buf[..]) {
                    Ok((len, peer)) => {
                        n += 1;
                        each(Datagram {
                            peer,
                            data: &self.buf[..len],
                            arrival: None,
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok((n, 0))
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_batch_reads_every_waiting_datagram_with_the_time_it_arrived() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        enable_timestamps(&rx).unwrap();
        let rx = mio::net::UdpSocket::from_std(rx);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..20u8 {
            tx.send_to(&[i; 100], rx.local_addr().unwrap()).unwrap();
        }
        // The kernel takes (and stamps) loopback datagrams in its receive processing, which
        // on a busy machine may wait until the receiver's next system call: peek until the
        // first has been taken. The rest usually go with it, in the same pass of the
        // backlog, but a busy machine can split the passes (seen: 1 run in 50 beside
        // builds), so only the first is sure to have waited the whole 100 ms.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut peek = [0u8; 1];
        while rx.peek_from(&mut peek).is_err() {
            assert!(std::time::Instant::now() < deadline, "nothing arrived");
            std::thread::sleep(Duration::from_millis(1));
        }
        // A pump kept off the CPU: the datagrams wait 100 ms before they are read.
        std::thread::sleep(Duration::from_millis(100));
        let mut r = Receiver::new();
        let mut got = Vec::new();
        let mut ages = Vec::new();
        loop {
            let now = audio_pipeline::now();
            let (n, cut) = r
                .read(&rx, |d| {
                    assert_eq!(d.peer, tx.local_addr().unwrap());
                    got.push(d.data[0]);
                    assert_eq!(d.data.len(), 100);
                    ages.push(now.saturating_sub(d.arrival.expect("stamped")));
                })
                .unwrap();
            assert_eq!(cut, 0);
            if n == 0 {
                break;
            }
            assert!(n <= BATCH);
        }
        assert_eq!(got, (0..20).collect::<Vec<u8>>());
        // Stamped when the kernel took them, not when they were read.
        assert!(ages[0] >= Ticks::from_millis(90), "{ages:?}");
        for age in &ages {
            assert!(*age < Ticks::from_millis(10_000), "{ages:?}");
        }
    }

    #[test]
    fn a_datagram_longer_than_a_slot_is_cut_and_counted() {
        let rx = mio::net::UdpSocket::from_std(UdpSocket::bind("127.0.0.1:0").unwrap());
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(&vec![7u8; SLOT + 1], rx.local_addr().unwrap())
            .unwrap();
        tx.send_to(&[1u8; 10], rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let mut r = Receiver::new();
        let mut got = Vec::new();
        let (n, cut) = r.read(&rx, |d| got.push(d.data.len())).unwrap();
        assert_eq!((n, cut), (2, 1));
        assert_eq!(got, vec![10]);
    }
}
