//! Connection limits, taken in the accept loop before a connection gets a task: a total
//! (`--max-connections`) and, if configured, a number per client address (`--max-connections-per-address`).
//!
//! Every connection holds a [`Permit`] for its whole life, whatever it turns into (a stream, a keep-alive
//! run of small requests, a TLS handshake that never finishes), so no path gets around the limits. A
//! connection past a limit is answered at once, without a task: a 503 written with one non-blocking
//! `try_write` (plain HTTP) or a plain close (TLS, which cannot answer before its handshake).
//!
//! A connection from a trusted proxy (or on a PROXY protocol listener) is admitted into the total only:
//! the address it counts under is the client's, known once the proxy has named it ([`Permit::rekey`]), so
//! a crowd behind the proxy never fills the proxy's own address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Which limit refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerAddress,
}

/// Open connections, in all and per address.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_address: Option<usize>,
    open: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection's place in the counts, released on drop.
#[derive(Debug)]
pub struct Permit {
    limits: Arc<ConnectionLimits>,
    addr: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.release_address();
        self.limits.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Permit {
    fn release_address(&mut self) {
        if let Some(ip) = self.addr.take() {
            let mut map = self
                .limits
                .per_address
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }

    /// Counts this connection under `ip` from now on (the client a trusted proxy named), giving back the
    /// place it held under another address; refused if `ip` is at its limit (the connection then holds no
    /// per-address place and should be closed).
    pub fn rekey(&mut self, ip: IpAddr) -> Result<(), Refused> {
        let Some(max) = self.limits.max_per_address else {
            return Ok(());
        };
        let ip = canonical(ip);
        if self.addr == Some(ip) {
            return Ok(());
        }
        self.release_address();
        let mut map = self
            .limits
            .per_address
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            if *n == 0 {
                map.remove(&ip);
            }
            return Err(Refused::PerAddress);
        }
        *n += 1;
        self.addr = Some(ip);
        Ok(())
    }
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_address: Option<usize>) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_address,
            open: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
        })
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub fn max_total(&self) -> usize {
        self.max_total
    }

    pub fn max_per_address(&self) -> Option<usize> {
        self.max_per_address
    }

    /// Takes a place for a connection from `ip`, or says which limit is full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refused> {
        let mut permit = self.admit_unkeyed()?;
        permit.rekey(ip)?; // (on refusal, the permit's drop gives the total back)
        Ok(permit)
    }

    /// Takes a place in the total for a connection whose client is not known yet (a trusted proxy's);
    /// [`Permit::rekey`] counts it under its client's address once that is known.
    pub fn admit_unkeyed(self: &Arc<Self>) -> Result<Permit, Refused> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_total).then_some(n + 1)
            })
            .map_err(|_| Refused::Total)?;
        Ok(Permit {
            limits: self.clone(),
            addr: None,
        })
    }
}

/// An IPv4 client reached over an IPv6 socket counts as its IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The 503 sent to a connection past a limit.
pub fn refusal(why: Refused) -> &'static [u8] {
    match why {
        Refused::Total => b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 57\r\nRetry-After: 5\r\nConnection: close\r\n\r\ntoo many connections: the server is at --max-connections\n",
        Refused::PerAddress => b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 70\r\nRetry-After: 5\r\nConnection: close\r\n\r\ntoo many connections from your address: --max-connections-per-address\n",
    }
}

/// Answers a refused plain-HTTP connection (TCP or unix socket, non-blocking) with a 503 if its socket
/// takes it at once, then closes it.
pub fn refuse<S: std::os::fd::AsFd>(socket: S, why: Refused) {
    let sock = socket2::SockRef::from(&socket);
    let _ = sock.send(refusal(why));
    // A request that has already arrived is read and dropped: closing over unread bytes would reset the
    // connection instead of ending it after the 503.
    let _ = std::io::Read::read(&mut &*sock, &mut [0u8; 4096]);
    drop(socket);
}

/// Closes a connection after an error response to a request that may not have been read whole: stops
/// writing, then reads and discards what the client still sends (at most 64 KiB, for at most a second).
/// Closing with unread bytes would reset the connection, and the client could lose the response.
pub async fn linger_close<T: AsyncRead + AsyncWrite + Unpin>(io: &mut T) {
    let drain = async {
        io.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut left = 64 * 1024usize;
        while left > 0 {
            match io.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        std::io::Result::Ok(())
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_and_per_address_limits_are_kept_and_released() {
        let limits = ConnectionLimits::new(3, Some(2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        let p1 = limits.admit(a).unwrap();
        let p2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).unwrap_err(), Refused::PerAddress);
        assert_eq!(limits.open(), 2);
        let p3 = limits.admit(b).unwrap();
        assert_eq!(
            limits.admit("10.0.0.3".parse().unwrap()).unwrap_err(),
            Refused::Total
        );
        drop(p1);
        let p4 = limits.admit(a).unwrap();
        drop((p2, p3, p4));
        assert_eq!(limits.open(), 0);
        assert!(limits.per_address.lock().unwrap().is_empty());
    }

    #[test]
    fn a_proxied_connection_counts_under_the_client_it_is_for() {
        let limits = ConnectionLimits::new(10, Some(1));
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let (a, b): (IpAddr, IpAddr) = (
            "203.0.113.1".parse().unwrap(),
            "203.0.113.2".parse().unwrap(),
        );
        // Three connections from the proxy: none holds the proxy's one place.
        let mut p1 = limits.admit_unkeyed().unwrap();
        let mut p2 = limits.admit_unkeyed().unwrap();
        let _direct = limits.admit(proxy).unwrap();
        p1.rekey(a).unwrap();
        assert_eq!(p2.rekey(a).unwrap_err(), Refused::PerAddress);
        p2.rekey(b).unwrap();
        // The same connection's next request from another client moves its place.
        p1.rekey(b).unwrap_err();
        assert_eq!(limits.per_address.lock().unwrap().get(&a), None);
        p1.rekey(a).unwrap();
        p1.rekey(a).unwrap();
        assert_eq!(limits.per_address.lock().unwrap().get(&a), Some(&1));
        drop((p1, p2, _direct));
        assert_eq!(limits.open(), 0);
        assert!(limits.per_address.lock().unwrap().is_empty());
    }

    #[test]
    fn refusals_announce_their_length() {
        for why in [Refused::Total, Refused::PerAddress] {
            let text = std::str::from_utf8(refusal(why)).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(
                head.contains(&format!("Content-Length: {}\r\n", body.len())),
                "{text}"
            );
        }
    }
}
