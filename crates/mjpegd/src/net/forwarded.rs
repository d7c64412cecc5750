//! Who the client is when a reverse proxy stands in front: `trusted-proxies` and the `Forwarded` /
//! `X-Forwarded-For` headers.
//!
//! Behind nginx, Caddy or HAProxy every connection comes from the proxy, so without this every client
//! would share the proxy's address: its per-address connection limit, its password-check lane, its log
//! name. A proxy names the client it speaks for in a header, but anybody can send that header, so it is
//! believed only from a peer listed in `trusted-proxies` (addresses, networks such as `10.0.0.0/8`, and
//! `unix` for unix-socket peers). Each proxy appends the address it received the request from, so the
//! list is read from the right: the first address that is not itself a trusted proxy is the client.
//! Addresses further left were written by someone mjpegd does not trust and are never used. From any
//! other peer the headers are ignored, so nobody can choose the address they are counted under.
//!
//! `Forwarded` (RFC 7239) wins over `X-Forwarded-For` when both are present. Nothing here does I/O.

use super::peer::Peer;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Most proxies listed in `trusted-proxies`.
pub const MAX_TRUSTED: usize = 256;
/// Most hops of a forwarding header looked at (from the right); a longer chain is cut there.
pub const MAX_HOPS: usize = 32;

/// The peers whose forwarding headers are believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    /// Unix-socket peers (a proxy on the same host).
    unix: bool,
}

/// One entry of `trusted-proxies`: `127.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8` or `unix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustedProxy {
    Net(IpNet),
    Unix,
}

impl FromStr for TrustedProxy {
    type Err = String;

    fn from_str(s: &str) -> Result<TrustedProxy, String> {
        let s = s.trim();
        if s == "unix" {
            return Ok(TrustedProxy::Unix);
        }
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(TrustedProxy::Net(net.trunc()));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(TrustedProxy::Net(IpNet::from(ip)));
        }
        Err(format!(
            "trusted proxy {s:?}: expected an address (127.0.0.1, ::1), a network (10.0.0.0/8) or unix"
        ))
    }
}

impl TrustedProxies {
    /// The proxies from their entries (at most [`MAX_TRUSTED`]).
    pub fn new(entries: &[TrustedProxy]) -> Result<TrustedProxies, String> {
        if entries.len() > MAX_TRUSTED {
            return Err(format!(
                "trusted-proxies: {} entries, at most {MAX_TRUSTED}",
                entries.len()
            ));
        }
        let mut t = TrustedProxies::default();
        for e in entries {
            match e {
                TrustedProxy::Net(n) => t.nets.push(*n),
                TrustedProxy::Unix => t.unix = true,
            }
        }
        Ok(t)
    }

    /// Parses a list of entries as written in the file or on the command line.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<TrustedProxies, String> {
        let parsed = entries
            .iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<Vec<TrustedProxy>, _>>()?;
        TrustedProxies::new(&parsed)
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty() && !self.unix
    }

    fn trusts_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Whether `peer` is a trusted proxy (its forwarding headers are believed).
    pub fn trusts(&self, peer: &Peer) -> bool {
        match peer {
            Peer::Ip(addr) => self.trusts_ip(addr.ip()),
            Peer::Unix { .. } => self.unix,
            Peer::Proxied { .. } => false,
        }
    }

    /// The client a request on a connection from `peer` comes from, given the request's headers
    /// (`(name, value)`, names in lower case). `peer` itself unless it is a trusted proxy that names one.
    pub fn client<'a>(
        &self,
        peer: Peer,
        headers: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
    ) -> Peer {
        if !self.trusts(&peer) {
            return peer;
        }
        let forwarded: Vec<&str> = headers
            .clone()
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("forwarded"))
            .map(|(_, v)| v)
            .collect();
        let hops = if !forwarded.is_empty() {
            hops_of(&forwarded, forwarded_for)
        } else {
            let xff: Vec<&str> = headers
                .into_iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-for"))
                .map(|(_, v)| v)
                .collect();
            if xff.is_empty() {
                return peer;
            }
            hops_of(&xff, |s| Some(s.trim()))
        };
        // From the right: skip the trusted proxies; the first other hop is the client. A hop that is not
        // an address (`unknown`, an obfuscated name, garbage) ends the walk: the client cannot be named
        // further, so the last trusted hop (the peer, if none) stands for it.
        let mut client = peer;
        for hop in hops.iter().rev().take(MAX_HOPS) {
            let Some(addr) = hop else { break };
            client = Peer::Proxied { client: *addr };
            if !self.trusts_ip(addr.ip()) {
                break;
            }
        }
        client
    }
}

/// Every hop of a comma-separated forwarding header's lines, in order, each an address if it is one.
fn hops_of<'a>(
    lines: &[&'a str],
    element: impl Fn(&'a str) -> Option<&'a str>,
) -> Vec<Option<SocketAddr>> {
    lines
        .iter()
        .flat_map(|l| l.split(','))
        .map(|e| element(e).and_then(node))
        .collect()
}

/// The `for=` node of one `Forwarded` element (`for=192.0.2.60;proto=http;by=203.0.113.43`).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("for")
            .then(|| v.trim().trim_matches('"'))
    })
}

/// An address as a forwarding header writes it: `192.0.2.60`, `192.0.2.60:4711`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:4711`. Port 0 when none is given.
fn node(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some(SocketAddr::new(canonical(addr.ip()), addr.port()));
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(canonical(ip), 0))
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(s: &str) -> Peer {
        Peer::Ip(s.parse().unwrap())
    }

    fn proxied(s: &str) -> Peer {
        Peer::Proxied {
            client: s.parse().unwrap(),
        }
    }

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(list).unwrap()
    }

    #[test]
    fn entries_parse_and_bad_ones_are_named() {
        let t = trusted(&["127.0.0.1", "10.0.0.0/8", "::1", "unix", "192.168.1.7/24"]);
        assert!(t.trusts(&tcp("10.9.8.7:1")));
        assert!(t.trusts(&tcp("192.168.1.200:1")));
        assert!(t.trusts(&tcp("[::ffff:127.0.0.1]:5")));
        assert!(t.trusts(&Peer::Unix {
            pid: None,
            uid: None
        }));
        assert!(!t.trusts(&tcp("11.0.0.1:1")));
        let e = TrustedProxies::parse(&["10.0.0.0/33"]).unwrap_err();
        assert!(e.contains("10.0.0.0/33"), "{e}");
        assert!(TrustedProxies::parse(&["localhost"]).is_err());
        assert!(!trusted(&["127.0.0.1"]).trusts(&Peer::Unix {
            pid: None,
            uid: None
        }));
    }

    #[test]
    fn headers_from_an_untrusted_peer_change_nothing() {
        let t = trusted(&["127.0.0.1"]);
        let peer = tcp("198.51.100.7:4000");
        let h = [("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")];
        assert_eq!(t.client(peer, h), peer);
        assert_eq!(TrustedProxies::default().client(peer, h), peer);
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let t = trusted(&["127.0.0.1", "10.0.0.0/8"]);
        let peer = tcp("127.0.0.1:9000");
        // A client that sends its own X-Forwarded-For cannot choose its address: the proxy appends the
        // real one.
        let h = [("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.1.1")];
        assert_eq!(t.client(peer, h), proxied("203.0.113.9:0"));
        // Several header lines are one list.
        let h = [
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.9:1234"),
        ];
        assert_eq!(t.client(peer, h), proxied("203.0.113.9:1234"));
        // Every hop trusted: the leftmost is the client.
        let h = [("x-forwarded-for", "10.0.0.5, 10.0.0.6")];
        assert_eq!(t.client(peer, h), proxied("10.0.0.5:0"));
        // No header: the proxy itself.
        assert_eq!(t.client(peer, []), peer);
        // Garbage where the client should be: the last trusted hop stands for it.
        let h = [("x-forwarded-for", "1.2.3.4, nonsense, 10.0.0.7")];
        assert_eq!(t.client(peer, h), proxied("10.0.0.7:0"));
        let h = [("x-forwarded-for", "nonsense")];
        assert_eq!(t.client(peer, h), peer);
    }

    #[test]
    fn forwarded_wins_and_its_forms_parse() {
        let t = trusted(&["unix"]);
        let peer = Peer::Unix {
            pid: Some(1),
            uid: Some(0),
        };
        let h = [
            ("x-forwarded-for", "1.1.1.1"),
            (
                "Forwarded",
                "for=192.0.2.43, for=\"[2001:db8:cafe::17]:4711\";proto=https",
            ),
        ];
        assert_eq!(t.client(peer, h), proxied("[2001:db8:cafe::17]:4711"));
        let h = [("forwarded", "proto=http;For=198.51.100.17;by=10.0.0.1")];
        assert_eq!(t.client(peer, h), proxied("198.51.100.17:0"));
        let h = [("forwarded", "for=unknown")];
        assert_eq!(t.client(peer, h), peer);
        let h = [("forwarded", "for=\"[::ffff:192.0.2.1]\"")];
        assert_eq!(t.client(peer, h), proxied("192.0.2.1:0"));
    }

    #[test]
    fn a_long_chain_is_cut() {
        let t = trusted(&["10.0.0.0/8"]);
        let chain = vec!["10.0.0.1"; 1000].join(",");
        let h = [("x-forwarded-for", chain.as_str())];
        assert_eq!(
            t.client(tcp("10.0.0.2:1"), h),
            proxied("10.0.0.1:0"),
            "a chain of trusted hops longer than MAX_HOPS ends at the last one looked at"
        );
    }
}
