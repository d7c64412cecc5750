//! The PROXY protocol (HAProxy's `send-proxy` / `send-proxy-v2`): a header a proxy writes first on each
//! connection, naming the client it forwards, before any HTTP or TLS byte.
//!
//! A listener with `?proxy-protocol=1` requires the header on every connection and believes it, so it
//! must be bound where only the proxy reaches it. Versions 1 (text) and 2 (binary) are both accepted; the
//! parsing is the `ppp` crate's. The header is read with `MSG_PEEK` first and then consumed to its exact
//! length, so what follows (a request head, or a TLS ClientHello) stays in the socket for the next reader
//! and no bytes need to be carried over. A missing, malformed or oversized header closes the connection;
//! a `LOCAL` header (the proxy's own health check) or an `UNKNOWN` one leaves the peer as it is.

use super::peer::Peer;
use ppp::{v1, v2, HeaderResult, PartialResult};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Duration;
use tokio::io::Interest;
use tokio::time::Instant;

/// Longest header accepted. A version 1 header is at most 107 bytes; version 2 allows up to 64 KiB of
/// extensions, of which proxies in front of mjpegd send a few dozen bytes at most.
pub const MAX_HEADER: usize = 1024;

/// Why a connection was closed before its first request.
#[derive(Debug, PartialEq, Eq)]
pub enum ProxyHeaderError {
    /// The connection closed (or failed) before a whole header.
    Closed,
    /// No whole header by the deadline.
    Timeout,
    /// The first bytes are not a PROXY header, or a malformed one.
    Invalid(String),
    /// The header claims more than [`MAX_HEADER`] bytes.
    TooLarge,
}

impl std::fmt::Display for ProxyHeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyHeaderError::Closed => f.write_str("closed before its PROXY header"),
            ProxyHeaderError::Timeout => f.write_str("no PROXY header in time"),
            ProxyHeaderError::Invalid(why) => write!(f, "not a PROXY header: {why}"),
            ProxyHeaderError::TooLarge => {
                write!(f, "PROXY header longer than {MAX_HEADER} bytes")
            }
        }
    }
}

/// What a whole header says: its length, and the client it names (None: `LOCAL`/`UNKNOWN`, keep the
/// peer). Incomplete input is `Ok(None)` from [`parse`].
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    pub len: usize,
    pub client: Option<SocketAddr>,
}

/// Parses the start of a connection: a whole header, `Ok(None)` if more bytes are needed, or why not.
pub fn parse(bytes: &[u8]) -> Result<Option<Header>, ProxyHeaderError> {
    if bytes.len() >= 16 && bytes.starts_with(b"\r\n\r\n\0\r\nQUIT\n") {
        let declared = 16 + u16::from_be_bytes([bytes[14], bytes[15]]) as usize;
        if declared > MAX_HEADER {
            return Err(ProxyHeaderError::TooLarge);
        }
    }
    let result = HeaderResult::parse(bytes);
    if result.is_incomplete() {
        return if bytes.len() >= MAX_HEADER {
            Err(ProxyHeaderError::TooLarge)
        } else {
            Ok(None)
        };
    }
    match result {
        HeaderResult::V1(Ok(h)) => Ok(Some(Header {
            len: h.header.len(),
            client: match h.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            },
        })),
        HeaderResult::V2(Ok(h)) => Ok(Some(Header {
            len: h.len(),
            client: match (h.command, h.addresses) {
                (v2::Command::Local, _) => None,
                (_, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, v2::Addresses::Unix(_) | v2::Addresses::Unspecified) => None,
            },
        })),
        HeaderResult::V1(Err(e)) => Err(ProxyHeaderError::Invalid(e.to_string())),
        HeaderResult::V2(Err(e)) => Err(ProxyHeaderError::Invalid(e.to_string())),
    }
}

/// A connected socket a header can be peeked from: TCP or unix.
pub trait Peekable: AsFd {
    fn ready_to_read(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
    fn try_read_io<R>(&self, f: impl FnOnce() -> std::io::Result<R>) -> std::io::Result<R>;
}

impl Peekable for tokio::net::TcpStream {
    async fn ready_to_read(&self) -> std::io::Result<()> {
        self.readable().await
    }
    fn try_read_io<R>(&self, f: impl FnOnce() -> std::io::Result<R>) -> std::io::Result<R> {
        self.try_io(Interest::READABLE, f)
    }
}

impl Peekable for tokio::net::UnixStream {
    async fn ready_to_read(&self) -> std::io::Result<()> {
        self.readable().await
    }
    fn try_read_io<R>(&self, f: impl FnOnce() -> std::io::Result<R>) -> std::io::Result<R> {
        self.try_io(Interest::READABLE, f)
    }
}

/// Reads the PROXY header a connection must start with, by `deadline`, leaving every byte after it
/// unread; returns the client it names, as a [`Peer::Proxied`], or `peer` for `LOCAL`/`UNKNOWN`.
pub async fn read_header<S: Peekable>(
    socket: &S,
    peer: Peer,
    deadline: Instant,
) -> Result<Peer, ProxyHeaderError> {
    let mut buf = [0u8; MAX_HEADER];
    let mut seen = 0usize;
    let header = loop {
        let wait = tokio::time::timeout_at(deadline, socket.ready_to_read());
        match wait.await {
            Err(_) => return Err(ProxyHeaderError::Timeout),
            Ok(Err(_)) => return Err(ProxyHeaderError::Closed),
            Ok(Ok(())) => {}
        }
        let peeked = socket.try_read_io(|| recv(socket, &mut buf, libc::MSG_PEEK));
        let n = match peeked {
            Ok(0) => return Err(ProxyHeaderError::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return Err(ProxyHeaderError::Closed),
        };
        match parse(&buf[..n])? {
            Some(h) => break h,
            None if n == seen => {
                // Part of a header, and nothing new since the last look: the socket stays readable
                // while bytes wait, so pause instead of spinning.
                tokio::time::sleep(Duration::from_millis(5)).await;
                if Instant::now() >= deadline {
                    return Err(ProxyHeaderError::Timeout);
                }
            }
            None => seen = n,
        }
    };
    // Consume exactly the header: the bytes after it belong to HTTP (or TLS).
    let mut left = header.len;
    while left > 0 {
        let read = socket.try_read_io(|| recv(socket, &mut buf[..left], 0));
        match read {
            Ok(0) => return Err(ProxyHeaderError::Closed),
            Ok(n) => left -= n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if tokio::time::timeout_at(deadline, socket.ready_to_read())
                    .await
                    .is_err()
                {
                    return Err(ProxyHeaderError::Timeout);
                }
            }
            Err(_) => return Err(ProxyHeaderError::Closed),
        }
    }
    Ok(match header.client {
        Some(client) => Peer::Proxied {
            client: SocketAddr::new(canonical(client.ip()), client.port()),
        },
        None => peer,
    })
}

/// One non-blocking `recv` from the socket into `buf` (with `MSG_PEEK`: leaving the bytes queued).
fn recv<S: AsFd>(socket: &S, buf: &mut [u8], flags: libc::c_int) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let fd = socket.as_fd().as_raw_fd();
    // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes for the duration of the call, and
    // `fd` is borrowed from a socket that outlives it.
    let n = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn canonical(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_headers() {
        let h = b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 8080\r\nGET / HTTP/1.1\r\n";
        let got = parse(h).unwrap().unwrap();
        assert_eq!(
            &h[got.len..got.len + 3],
            b"GET",
            "the header ends where the request starts"
        );
        assert_eq!(got.client, Some("203.0.113.7:51234".parse().unwrap()));
        let h = b"PROXY TCP6 2001:db8::1 ::1 4000 8080\r\n";
        assert_eq!(
            parse(h).unwrap().unwrap().client,
            Some("[2001:db8::1]:4000".parse().unwrap())
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap().client, None);
        assert_eq!(parse(b"PROXY TCP4 203.0.").unwrap(), None, "incomplete");
        assert_eq!(parse(b"PRO").unwrap(), None, "incomplete");
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n\r\n"),
            Err(ProxyHeaderError::Invalid(_))
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\n"),
            Err(ProxyHeaderError::Invalid(_))
        ));
    }

    #[test]
    fn version_2_headers() {
        let addrs: v2::Addresses = (
            "198.51.100.9:6000".parse::<SocketAddr>().unwrap(),
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap(),
        )
            .into();
        let bytes = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            addrs,
        )
        .build()
        .unwrap();
        let mut with_request = bytes.clone();
        with_request.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let got = parse(&with_request).unwrap().unwrap();
        assert_eq!(got.len, bytes.len());
        assert_eq!(got.client, Some("198.51.100.9:6000".parse().unwrap()));
        assert_eq!(parse(&bytes[..20]).unwrap(), None, "incomplete");
        // LOCAL: the proxy's own connection.
        let local = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Local,
            v2::Protocol::Stream,
            addrs,
        )
        .build()
        .unwrap();
        assert_eq!(parse(&local).unwrap().unwrap().client, None);
        // A declared length past the bound is refused before waiting for it.
        let mut big = bytes[..16].to_vec();
        big[14..16].copy_from_slice(&60000u16.to_be_bytes());
        assert_eq!(parse(&big), Err(ProxyHeaderError::TooLarge));
    }

    #[test]
    fn endless_garbage_that_looks_like_a_start_is_bounded() {
        let mut v = b"PROXY TCP4 ".to_vec();
        v.resize(MAX_HEADER, b'1');
        assert!(parse(&v).is_err());
    }
}
