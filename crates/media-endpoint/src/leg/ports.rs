//! The UDP ports of the legs' ICE sockets, for ICE addresses with a port range.
//!
//! The table of leased ports is the process's: ports are a resource of the host, and two
//! endpoints of one process with overlapping ranges must not hand the same port to two
//! legs. A port is leased only after a test bind shows no other program holds it.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::{LazyLock, Mutex, MutexGuard};

use crate::config::IceAddress;

#[derive(Default)]
struct Table {
    leased: HashSet<SocketAddr>,
    /// Where the next search starts: after the port handed out last.
    cursor: u16,
}

static TABLE: LazyLock<Mutex<Table>> = LazyLock::new(Mutex::default);

fn table() -> MutexGuard<'static, Table> {
    // Every update is one insert, remove or assignment: a poisoned table is consistent.
    TABLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every port of the range is leased or bound by another program.
#[derive(Debug)]
pub(crate) struct NoFreePort {
    pub(crate) address: IpAddr,
    pub(crate) ports: RangeInclusive<u16>,
}

/// The addresses one leg's sockets bind; its ranged ports stay leased until it drops.
#[derive(Debug, Default)]
pub(crate) struct PortLease {
    bind: Vec<SocketAddr>,
    /// The ports taken from the table (the ranged ones).
    leased: Vec<SocketAddr>,
}

impl PortLease {
    /// A free port of each ranged address (port 0, the system's pick, for the others),
    /// all or nothing.
    pub(crate) fn take(addresses: &[IceAddress]) -> Result<PortLease, NoFreePort> {
        let mut lease = PortLease::default();
        let mut table = table();
        for a in addresses {
            let Some(range) = &a.ports else {
                lease.bind.push(SocketAddr::new(a.ip, 0));
                continue;
            };
            let Some(port) = free_port(&mut table, a.ip, range) else {
                for addr in lease.leased.drain(..) {
                    table.leased.remove(&addr);
                }
                return Err(NoFreePort {
                    address: a.ip,
                    ports: range.clone(),
                });
            };
            let addr = SocketAddr::new(a.ip, port);
            table.leased.insert(addr);
            lease.leased.push(addr);
            lease.bind.push(addr);
        }
        Ok(lease)
    }

    /// What the peer connection binds, one per ICE address.
    pub(crate) fn bind_addrs(&self) -> &[SocketAddr] {
        &self.bind
    }

    /// Whether a port of a range was leased (a bind can then fail, and be tried anew).
    pub(crate) fn is_ranged(&self) -> bool {
        !self.leased.is_empty()
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        if self.leased.is_empty() {
            return;
        }
        let mut table = table();
        for addr in &self.leased {
            table.leased.remove(addr);
        }
    }
}

/// The first port of `range` from the cursor on (wrapping) that no leg holds and that
/// binds; the cursor moves past it.
fn free_port(table: &mut Table, ip: IpAddr, range: &RangeInclusive<u16>) -> Option<u16> {
    let (low, high) = (u32::from((*range.start()).max(1)), u32::from(*range.end()));
    if low > high {
        return None;
    }
    let len = high - low + 1;
    let cursor = u32::from(table.cursor);
    let start = if (low..=high).contains(&cursor) {
        cursor - low
    } else {
        0
    };
    for i in 0..len {
        let port = u16::try_from(low + (start + i) % len).ok()?;
        let addr = SocketAddr::new(ip, port);
        if table.leased.contains(&addr) {
            continue;
        }
        // A test bind: another program may hold the port. Released at once; the
        // peer connection binds it next (a program taking it meanwhile makes the leg
        // try other ports).
        if UdpSocket::bind(addr).is_err() {
            continue;
        }
        table.cursor = port.wrapping_add(1);
        return Some(port);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    /// Two ports free now on 127.0.0.1, next to each other.
    fn two_free_ports() -> RangeInclusive<u16> {
        loop {
            let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let low = probe.local_addr().unwrap().port();
            drop(probe);
            if low < u16::MAX && std::net::UdpSocket::bind(("127.0.0.1", low + 1)).is_ok() {
                return low..=low + 1;
            }
        }
    }

    #[test]
    fn leases_take_distinct_free_ports_and_give_them_back() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let range = two_free_ports();
        let ranged = [IceAddress::new(ip).with_ports(range.clone())];
        let a = PortLease::take(&ranged).unwrap();
        let b = PortLease::take(&ranged).unwrap();
        assert!(a.is_ranged());
        let (pa, pb) = (a.bind_addrs()[0].port(), b.bind_addrs()[0].port());
        assert_ne!(pa, pb);
        assert!(range.contains(&pa) && range.contains(&pb));
        let full = PortLease::take(&ranged).unwrap_err();
        assert_eq!((full.address, full.ports), (ip, range.clone()));
        drop(a);
        let c = PortLease::take(&ranged).unwrap();
        assert_eq!(c.bind_addrs()[0].port(), pa);
        // All or nothing: a second, full address gives back the first one's port.
        drop(c);
        let both = [ranged[0].clone(), ranged[0].clone(), ranged[0].clone()];
        assert!(PortLease::take(&both).is_err());
        assert!(PortLease::take(&ranged).is_ok());
        // Without a range: the system's pick, nothing leased. Port 0 is never leased.
        let free = PortLease::take(&[IceAddress::new(ip)]).unwrap();
        assert_eq!(free.bind_addrs()[0].port(), 0);
        assert!(!free.is_ranged());
        let zero = [IceAddress::new(ip).with_ports(0..=0)];
        assert!(PortLease::take(&zero).is_err());
    }
}
