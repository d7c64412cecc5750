//! Who is on the other end of a connection: an IP address and port, or a local process on a unix socket.
//!
//! Logs, `/state` and the per-address limits (connections, password-check lanes) are keyed by the client's
//! address. A unix-socket client has none, so it counts as a local address ([`Peer::ip`] is 127.0.0.1):
//! a reverse proxy on the same host then shares one budget, as it would over loopback TCP. Its log name
//! says what it is, with the process id and user the kernel reports for it (SO_PEERCRED), if known.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The client of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A TCP client.
    Ip(SocketAddr),
    /// A process connected to a unix socket.
    Unix { pid: Option<i32>, uid: Option<u32> },
    /// A client a trusted proxy spoke for (`Forwarded`/`X-Forwarded-For` from a peer in
    /// `trusted-proxies`, or a PROXY protocol header on a listener that requires one); port 0 when the
    /// proxy did not say.
    Proxied { client: SocketAddr },
}

impl Peer {
    /// The address limits and password-check lanes count this client under.
    pub fn ip(&self) -> IpAddr {
        match self {
            Peer::Ip(addr) | Peer::Proxied { client: addr } => addr.ip(),
            Peer::Unix { .. } => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// The peer of a unix-socket connection, from the kernel's credentials of the connecting process.
    pub fn of_unix(stream: &tokio::net::UnixStream) -> Peer {
        match stream.peer_cred() {
            Ok(cred) => Peer::Unix {
                pid: cred.pid(),
                uid: Some(cred.uid()),
            },
            Err(_) => Peer::Unix {
                pid: None,
                uid: None,
            },
        }
    }
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Peer {
        Peer::Ip(addr)
    }
}

/// A TCP peer from `ADDRESS:PORT`.
impl std::str::FromStr for Peer {
    type Err = std::net::AddrParseError;

    fn from_str(s: &str) -> Result<Peer, Self::Err> {
        s.parse().map(Peer::Ip)
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Ip(addr) => addr.fmt(f),
            Peer::Proxied { client } if client.port() == 0 => {
                write!(f, "{} (via proxy)", client.ip())
            }
            Peer::Proxied { client } => write!(f, "{client} (via proxy)"),
            Peer::Unix { pid, uid } => {
                f.write_str("unix")?;
                let pid = pid.map(|p| format!("pid={p}"));
                let uid = uid.map(|u| format!("uid={u}"));
                let known: Vec<String> = pid.into_iter().chain(uid).collect();
                if !known.is_empty() {
                    write!(f, ":{}", known.join(","))?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_peers_count_as_local_and_say_who_they_are() {
        let unix = Peer::Unix {
            pid: Some(42),
            uid: Some(33),
        };
        assert_eq!(unix.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(unix.to_string(), "unix:pid=42,uid=33");
        let tcp = Peer::from("[::1]:80".parse::<SocketAddr>().unwrap());
        assert_eq!(tcp.to_string(), "[::1]:80");
        assert_eq!(tcp.ip(), "::1".parse::<IpAddr>().unwrap());
    }
}
