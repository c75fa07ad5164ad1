//! Syntax rules of the Kubernetes API server for the values edgeplane uses
//! (k8s.io/apimachinery/pkg/util/validation). Each returns what was expected,
//! for an `expected ..., found ...` message.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::IpNet;

fn is_alnum_lower(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn dns1123_label(s: &str) -> Result<(), &'static str> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|&c| is_alnum_lower(c) || c == b'-')
        && b.first().is_some_and(|&c| is_alnum_lower(c))
        && b.last().is_some_and(|&c| is_alnum_lower(c));
    if ok {
        Ok(())
    } else {
        Err(
            "a DNS-1123 label (at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit)",
        )
    }
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 characters (Service names).
pub fn dns1035_label(s: &str) -> Result<(), &'static str> {
    let ok = dns1123_label(s).is_ok() && s.as_bytes().first().is_some_and(u8::is_ascii_lowercase);
    if ok {
        Ok(())
    } else {
        Err(
            "a DNS-1035 label (at most 63 lowercase letters, digits or '-', starting with a letter and ending with a letter or digit)",
        )
    }
}

/// Dot-separated DNS-1123 labels, at most 253 characters.
pub fn dns1123_subdomain(s: &str) -> Result<(), &'static str> {
    let ok = !s.is_empty() && s.len() <= 253 && s.split('.').all(|l| dns1123_label(l).is_ok());
    if ok {
        Ok(())
    } else {
        Err(
            "a DNS-1123 subdomain (at most 253 characters: lowercase letters, digits, '-' and '.', each part starting and ending with a letter or digit)",
        )
    }
}

/// The name part of a qualified name: `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63.
fn qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

/// A label key: an optional DNS subdomain prefix and '/', then a name part.
pub fn label_key(s: &str) -> Result<(), &'static str> {
    const WHAT: &str = "a label key (an optional DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)";
    let ok = match s.split_once('/') {
        Some((prefix, name)) => dns1123_subdomain(prefix).is_ok() && qualified_name_part(name),
        None => qualified_name_part(s),
    };
    if ok { Ok(()) } else { Err(WHAT) }
}

/// A label value: empty, or a name part of at most 63 characters.
pub fn label_value(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || qualified_name_part(s) {
        Ok(())
    } else {
        Err(
            "a label value (empty, or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)",
        )
    }
}

/// An IANA service name (a named port): 1-15 lowercase letters, digits and
/// '-', at least one letter, no leading, trailing or double '-'.
pub fn port_name(s: &str) -> Result<(), &'static str> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 15
        && b.iter().all(|&c| is_alnum_lower(c) || c == b'-')
        && b.iter().any(u8::is_ascii_lowercase)
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--");
    if ok {
        Ok(())
    } else {
        Err(
            "a port name (1-15 lowercase letters, digits or '-', with at least one letter, no '-' at either end and no \"--\")",
        )
    }
}

/// An IP address in canonical text form (no leading zeros, no zone).
pub fn ip(s: &str) -> Result<IpAddr, &'static str> {
    s.parse::<IpAddr>().map_err(|_| "an IP address")
}

pub fn ipv4(s: &str) -> Result<Ipv4Addr, &'static str> {
    s.parse::<Ipv4Addr>().map_err(|_| "an IPv4 address")
}

pub fn ipv6(s: &str) -> Result<Ipv6Addr, &'static str> {
    s.parse::<Ipv6Addr>().map_err(|_| "an IPv6 address")
}

/// `ADDRESS/PREFIX`. Host bits may be set (the API server accepts them);
/// the second value says whether they were, and the result has them cleared.
pub fn cidr(s: &str) -> Result<(IpNet, bool), &'static str> {
    const WHAT: &str = "a CIDR (ADDRESS/PREFIX-LENGTH)";
    let (addr, prefix) = s.split_once('/').ok_or(WHAT)?;
    let addr: IpAddr = addr.parse().map_err(|_| WHAT)?;
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|c| c.is_ascii_digit()) {
        return Err(WHAT);
    }
    let prefix: u8 = prefix.parse().map_err(|_| WHAT)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(WHAT);
    }
    let net = IpNet { addr: mask(addr, prefix), prefix };
    Ok((net, net.addr != addr))
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

/// `inner` lies inside `outer` and is strictly smaller.
pub fn strictly_inside(inner: &IpNet, outer: &IpNet) -> bool {
    inner.addr.is_ipv4() == outer.addr.is_ipv4()
        && inner.prefix > outer.prefix
        && mask(inner.addr, outer.prefix) == outer.addr
}

/// Why an endpoint address is refused (the API server's ValidateEndpointIP),
/// or None when it is usable.
pub fn endpoint_ip_problem(ip: IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("may not be unspecified (0.0.0.0 or ::)");
    }
    if ip.is_loopback() {
        return Some("may not be in the loopback range (127.0.0.0/8, ::1/128)");
    }
    let link_local = match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local {
        return Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)");
    }
    let ll_multicast = match ip {
        IpAddr::V4(a) => a.octets()[..3] == [224, 0, 0],
        IpAddr::V6(a) => (a.segments()[0] & 0xff0f) == 0xff02,
    };
    if ll_multicast {
        return Some("may not be in the link-local multicast range (224.0.0.0/24, ff02::/16)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(dns1123_label("a-1").is_ok());
        assert!(dns1123_label("1a").is_ok());
        for bad in ["", "A", "-a", "a-", "a.b", &"a".repeat(64)] {
            assert!(dns1123_label(bad).is_err(), "{bad}");
        }
        assert!(dns1035_label("a1").is_ok());
        assert!(dns1035_label("1a").is_err());
        assert!(dns1123_subdomain("a.b-c.d").is_ok());
        assert!(dns1123_subdomain("a..b").is_err());
        assert!(dns1123_subdomain(&"a.".repeat(127)).is_err());
    }

    #[test]
    fn labels() {
        for good in ["app", "kubernetes.io/service-name", "A_b.c-D", "example.com/X"] {
            assert!(label_key(good).is_ok(), "{good}");
        }
        for bad in ["", "/a", "a/", "-a", "a b", "Example.com/a", "a/b/c"] {
            assert!(label_key(bad).is_err(), "{bad}");
        }
        assert!(label_value("").is_ok());
        assert!(label_value("v1.2_x").is_ok());
        assert!(label_value("-x").is_err());
        assert!(label_value(&"x".repeat(64)).is_err());
    }

    #[test]
    fn port_names() {
        assert!(port_name("http").is_ok());
        assert!(port_name("h2c-1").is_ok());
        for bad in ["", "8080", "HTTP", "-a", "a-", "a--b", "abcdefghijklmnop"] {
            assert!(port_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses() {
        assert!(ip("198.18.1.1").is_ok());
        assert!(ip("2001:db8::1").is_ok());
        assert!(ip("198.18.1.300").is_err());
        assert!(ip("010.1.1.1").is_err());
        assert!(ipv4("2001:db8::1").is_err());
        let (net, host_bits) = cidr("198.18.1.7/24").expect("cidr");
        assert_eq!(net, IpNet { addr: "198.18.1.0".parse().expect("ip"), prefix: 24 });
        assert!(host_bits);
        assert!(cidr("198.18.0.0/33").is_err());
        assert!(cidr("198.18.0.0").is_err());
        assert!(cidr("2001:db8::/129").is_err());
        let outer = cidr("198.18.0.0/16").expect("cidr").0;
        assert!(strictly_inside(&cidr("198.18.1.0/24").expect("cidr").0, &outer));
        assert!(!strictly_inside(&outer, &outer));
        assert!(!strictly_inside(&cidr("198.19.0.0/24").expect("cidr").0, &outer));
        assert!(endpoint_ip_problem("127.0.0.1".parse().expect("ip")).is_some());
        assert!(endpoint_ip_problem("fe80::1".parse().expect("ip")).is_some());
        assert!(endpoint_ip_problem("224.0.0.5".parse().expect("ip")).is_some());
        assert!(endpoint_ip_problem("198.18.1.1".parse().expect("ip")).is_none());
    }
}
