//! What this node's network namespace says about addresses: its own
//! addresses (getifaddrs) and which interface the main routing table sends
//! an IPv4 address through (an RTM_GETROUTE dump). Used to decide which pods
//! are local (their route goes through a workload interface) and which
//! sources are the node itself (kubelet probes).

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result, bail};

/// One IPv4 route of the main table: destination prefix and output interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Addr,
    pub len: u8,
    pub oif: u32,
}

impl Route {
    fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.len == 0 { 0 } else { u32::MAX << (32 - u32::from(self.len)) };
        u32::from(ip) & mask == u32::from(self.dst) & mask
    }
}

/// The longest-prefix route for `ip` among `routes`.
pub fn lookup(routes: &[Route], ip: Ipv4Addr) -> Option<&Route> {
    routes.iter().filter(|r| r.contains(ip)).max_by_key(|r| r.len)
}

/// Every address configured in this network namespace.
pub fn host_addresses() -> Result<BTreeSet<IpAddr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a linked list freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getifaddrs");
    }
    let mut out = BTreeSet::new();
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points at a sockaddr of the family it names.
            match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
                libc::AF_INET => {
                    let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    out.insert(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
                }
                libc::AF_INET6 => {
                    let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    out.insert(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                }
                _ => {}
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: list came from getifaddrs.
    unsafe { libc::freeifaddrs(list) };
    Ok(out)
}

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u32 = 254;

/// The IPv4 unicast routes of the main table.
pub fn routes_v4() -> Result<Vec<Route>> {
    // SAFETY: plain socket(2); owned right away.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("netlink socket");
    }
    // SAFETY: fd is fresh and valid.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // nlmsghdr (16) + rtmsg (12): dump every AF_INET route.
    let mut req = [0u8; 28];
    req[0..4].copy_from_slice(&28u32.to_ne_bytes());
    req[4..6].copy_from_slice(&libc::RTM_GETROUTE.to_ne_bytes());
    req[6..8].copy_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[16] = libc::AF_INET as u8;
    // SAFETY: req is a readable buffer of its length.
    if unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(std::io::Error::last_os_error()).context("netlink route dump request");
    }
    let mut routes = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error()).context("netlink route dump");
        }
        let mut msgs = &buf[..n as usize];
        while msgs.len() >= 16 {
            let len = u32::from_ne_bytes([msgs[0], msgs[1], msgs[2], msgs[3]]) as usize;
            let kind = u16::from_ne_bytes([msgs[4], msgs[5]]);
            if len < 16 || len > msgs.len() {
                bail!("netlink route dump: malformed message");
            }
            match i32::from(kind) {
                libc::NLMSG_DONE => return Ok(routes),
                libc::NLMSG_ERROR => bail!("netlink route dump: kernel returned an error"),
                _ if kind == libc::RTM_NEWROUTE => {
                    if let Some(r) = parse_route(&msgs[16..len]) {
                        routes.push(r);
                    }
                }
                _ => {}
            }
            msgs = &msgs[len.next_multiple_of(4).min(msgs.len())..];
        }
    }
}

/// rtmsg + attributes → a main-table unicast route with an output interface.
fn parse_route(body: &[u8]) -> Option<Route> {
    if body.len() < 12 {
        return None;
    }
    let (dst_len, mut table, rtype) = (body[1], u32::from(body[4]), body[7]);
    if rtype != libc::RTN_UNICAST {
        return None;
    }
    let (mut dst, mut oif) = (Ipv4Addr::UNSPECIFIED, None);
    let mut attrs = &body[12..];
    while attrs.len() >= 4 {
        let alen = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let atype = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if alen < 4 || alen > attrs.len() {
            break;
        }
        let data = &attrs[4..alen];
        match atype {
            RTA_DST if data.len() == 4 => dst = Ipv4Addr::new(data[0], data[1], data[2], data[3]),
            RTA_OIF if data.len() == 4 => oif = Some(u32::from_ne_bytes([data[0], data[1], data[2], data[3]])),
            RTA_TABLE if data.len() == 4 => table = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]),
            _ => {}
        }
        attrs = &attrs[alen.next_multiple_of(4).min(attrs.len())..];
    }
    (table == RT_TABLE_MAIN).then_some(Route { dst, len: dst_len, oif: oif? })
}

/// The addresses among `candidates` whose route leaves through an interface
/// matching one of `globs` (pods behind this node's workload interfaces).
pub fn routed_via(candidates: impl IntoIterator<Item = IpAddr>, globs: &[String]) -> Result<BTreeSet<IpAddr>> {
    let routes = routes_v4()?;
    let names: std::collections::BTreeMap<u32, String> =
        super::interfaces()?.into_iter().map(|(name, idx)| (idx, name)).collect();
    let workload = |oif: u32| names.get(&oif).is_some_and(|name| globs.iter().any(|g| super::glob_match(g, name)));
    Ok(candidates
        .into_iter()
        .filter(|ip| match ip {
            IpAddr::V4(v4) => lookup(&routes, *v4).is_some_and(|r| workload(r.oif)),
            IpAddr::V6(_) => false,
        })
        .collect())
}

/// The name of an interface index, for logs.
pub fn ifname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    Some(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let routes = [
            Route { dst: Ipv4Addr::new(0, 0, 0, 0), len: 0, oif: 1 },
            Route { dst: Ipv4Addr::new(198, 18, 0, 0), len: 16, oif: 2 },
            Route { dst: Ipv4Addr::new(198, 18, 1, 10), len: 32, oif: 3 },
        ];
        assert_eq!(lookup(&routes, Ipv4Addr::new(198, 18, 1, 10)).map(|r| r.oif), Some(3));
        assert_eq!(lookup(&routes, Ipv4Addr::new(198, 18, 1, 11)).map(|r| r.oif), Some(2));
        assert_eq!(lookup(&routes, Ipv4Addr::new(10, 0, 0, 1)).map(|r| r.oif), Some(1));
    }
}
