//! Batched sends from one socket: on Linux one `sendmmsg` hands the kernel up to [`BATCH`]
//! datagrams, each to its own address, where a `send_to` per datagram would cost a system
//! call each. The pump of a shared socket gathers what all its legs have for the wire
//! after a pipeline tick and sends it this way.

use std::net::SocketAddr;

/// Most datagrams one system call takes.
pub(crate) const BATCH: usize = 64;

/// What a batch did: datagrams the kernel took, and those it refused (each refusal is
/// the datagram's own: a full buffer, an unreachable address; the rest still go).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sent {
    pub(crate) sent: usize,
    pub(crate) failed: usize,
    /// System calls made.
    pub(crate) calls: usize,
}

/// Sends every datagram of `out` from `socket`, in order, [`BATCH`] per system call.
pub(crate) fn send_all<T: AsRef<[u8]>>(
    socket: &mio::net::UdpSocket,
    out: &[(SocketAddr, T)],
) -> Sent {
    let mut total = Sent::default();
    let mut i = 0;
    // Each turn moves on by at least one datagram.
    while i < out.len() {
        let chunk = &out[i..(i + BATCH).min(out.len())];
        total.calls += 1;
        match imp::send_batch(socket, chunk) {
            Ok(k) if k > 0 => {
                total.sent += k;
                i += k;
            }
            // Nothing taken (not seen for a non-empty batch): the first counts as failed.
            Ok(_) => {
                total.failed += 1;
                i += 1;
            }
            // The batch's first datagram was refused (the ones before it, in an earlier
            // call, went): count it and go on after it.
            Err(e) => {
                tracing::trace!(to = %chunk[0].0, error = %e, "send error");
                total.failed += 1;
                i += 1;
            }
        }
    }
    total
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;

    use super::BATCH;

    fn sockaddr(addr: &SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
        match addr {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_storage is larger than, and aligned for, sockaddr_in.
                let sin = unsafe {
                    &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
                };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr = libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                };
                size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                // SAFETY: sockaddr_storage is larger than, and aligned for, sockaddr_in6.
                let sin6 = unsafe {
                    &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
                };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_addr = libc::in6_addr {
                    s6_addr: a.ip().octets(),
                };
                sin6.sin6_scope_id = a.scope_id();
                size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }

    /// One `sendmmsg` of `out` (at most [`BATCH`]): how many the kernel took, or the
    /// error of the first one.
    pub(super) fn send_batch<T: AsRef<[u8]>>(
        socket: &mio::net::UdpSocket,
        out: &[(SocketAddr, T)],
    ) -> io::Result<usize> {
        let n = out.len().min(BATCH);
        // SAFETY: plain C structs, all zeroes valid; every pointer set below points into
        // these arrays or into `out`, all of which outlive the call.
        let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for (i, (to, data)) in out.iter().take(n).enumerate() {
            let data = data.as_ref();
            let len = sockaddr(to, &mut addrs[i]);
            iovs[i] = libc::iovec {
                // The kernel only reads the buffer.
                iov_base: data.as_ptr().cast_mut().cast(),
                iov_len: data.len(),
            };
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = (&raw mut addrs[i]).cast();
            h.msg_namelen = len;
            h.msg_iov = &raw mut iovs[i];
            h.msg_iovlen = 1;
        }
        loop {
            // SAFETY: `msgs` holds `n` valid headers.
            let r = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r >= 0 {
                return Ok(r as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::net::SocketAddr;

    /// One datagram per call: the first's result.
    pub(super) fn send_batch<T: AsRef<[u8]>>(
        socket: &mio::net::UdpSocket,
        out: &[(SocketAddr, T)],
    ) -> io::Result<usize> {
        let Some((to, data)) = out.first() else {
            return Ok(0);
        };
        socket.send_to(data.as_ref(), *to).map(|_| 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn bound() -> std::net::UdpSocket {
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap()
    }

    #[test]
    fn every_datagram_reaches_its_own_address_in_batches() {
        let a = bound();
        let b = bound();
        a.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let from = bound();
        from.set_nonblocking(true).unwrap();
        let from = mio::net::UdpSocket::from_std(from);
        let payloads: Vec<Vec<u8>> = (0..150u16).map(|i| i.to_be_bytes().repeat(3)).collect();
        let out: Vec<(SocketAddr, &[u8])> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let to = if i % 2 == 0 { &a } else { &b };
                (to.local_addr().unwrap(), &p[..])
            })
            .collect();
        let sent = send_all(&from, &out);
        assert_eq!(sent.sent + sent.failed, 150);
        assert_eq!(sent.failed, 0);
        if cfg!(target_os = "linux") {
            assert_eq!(sent.calls, 3, "64 per call");
        }
        let mut buf = [0u8; 16];
        let deadline = Instant::now() + Duration::from_secs(5);
        for (i, p) in payloads.iter().enumerate() {
            assert!(Instant::now() < deadline);
            let sock = if i % 2 == 0 { &a } else { &b };
            let n = sock.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &p[..], "datagram {i} in order at its address");
        }
    }

    #[test]
    fn a_refused_datagram_is_counted_and_the_rest_still_go() {
        let a = bound();
        a.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let from = bound();
        from.set_nonblocking(true).unwrap();
        let from = mio::net::UdpSocket::from_std(from);
        let big = vec![0u8; 70_000];
        let to = a.local_addr().unwrap();
        // The middle one is longer than any UDP datagram: EMSGSIZE.
        let out: [(SocketAddr, &[u8]); 3] = [(to, b"one"), (to, &big), (to, b"three")];
        let sent = send_all(&from, &out);
        assert_eq!((sent.sent, sent.failed), (2, 1));
        let mut buf = [0u8; 16];
        let n = a.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
        let n = a.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"three");
    }
}
