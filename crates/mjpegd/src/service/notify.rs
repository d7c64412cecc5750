//! sd_notify(3): state changes sent as datagrams to the unix socket systemd names in `NOTIFY_SOCKET`.
//!
//! `READY=1` once every listener is bound and every camera started (a `Type=notify` unit is "started"
//! then, and units ordered after it may connect); `RELOADING=1` with `MONOTONIC_USEC=` when a SIGHUP
//! reload begins and `READY=1` when it is done (what `Type=notify-reload`, systemd 253 and later, waits
//! for; harmless under `Type=notify`); `WATCHDOG=1` from the [`super::watchdog`]; `STOPPING=1` at
//! shutdown; `STATUS=` lines for `systemctl status`.
//!
//! `NOTIFY_SOCKET` is checked once at startup: an absolute path or an abstract name (`@name`) that fits a
//! unix socket address; anything else is an error at startup rather than a service that never becomes
//! ready. Messages are formatted and, for a path, sent by the `sd-notify` crate; abstract names (which
//! systemd's own libsystemd accepts, and some containers use) are sent here, since the crate only connects
//! to paths. A failed send is logged once, never fatal: the server serves on.

use sd_notify::NotifyState;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// Longest socket address: `sun_path` is 108 bytes, with the final NUL.
const MAX_SOCKET_NAME: usize = 107;

/// Where notifications go, if anywhere.
#[derive(Debug)]
pub struct Notifier {
    target: Option<Target>,
    warned: AtomicBool,
}

#[derive(Debug, PartialEq, Eq)]
enum Target {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` asks for (none when it is not set).
    pub fn from_env() -> anyhow::Result<Notifier> {
        let target = match std::env::var_os("NOTIFY_SOCKET") {
            None => None,
            Some(v) => Some(
                parse(v.as_encoded_bytes())
                    .map_err(|e| anyhow::anyhow!("NOTIFY_SOCKET={:?}: {e}", v.to_string_lossy()))?,
            ),
        };
        Ok(Notifier {
            target,
            warned: AtomicBool::new(false),
        })
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            target: None,
            warned: AtomicBool::new(false),
        }
    }

    /// Whether a service manager listens.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The server serves (at startup, or after a reload), with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A reload begins.
    pub fn reloading(&self) {
        let mut states = vec![NotifyState::Reloading, NotifyState::Status("reloading")];
        match NotifyState::monotonic_usec_now() {
            Ok(now) => states.push(now),
            Err(e) => tracing::debug!(error = %e, "no monotonic clock for MONOTONIC_USEC"),
        }
        self.send(&states);
    }

    /// The server is alive (see [`super::watchdog`]).
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// The server is shutting down.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    fn send(&self, states: &[NotifyState]) {
        let Some(target) = &self.target else {
            return;
        };
        let sent = match target {
            Target::Path(_) => sd_notify::notify(states),
            Target::Abstract(name) => send_abstract(name, states),
        };
        if let Err(e) = sent {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET); reported once");
            }
        }
    }
}

fn parse(v: &[u8]) -> Result<Target, String> {
    if v.is_empty() || v.len() > MAX_SOCKET_NAME {
        return Err(format!(
            "expected a socket path or @name of 1-{MAX_SOCKET_NAME} bytes"
        ));
    }
    match v[0] {
        b'/' => {
            use std::os::unix::ffi::OsStrExt;
            Ok(Target::Path(PathBuf::from(std::ffi::OsStr::from_bytes(v))))
        }
        b'@' if v.len() > 1 => Ok(Target::Abstract(v[1..].to_vec())),
        _ => Err(
            "expected an absolute socket path or an abstract @name (vsock: is not supported)"
                .into(),
        ),
    }
}

fn send_abstract(name: &[u8], states: &[NotifyState]) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let msg: String = states.iter().map(|s| format!("{s}\n")).collect();
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    let sock = UnixDatagram::unbound()?;
    let n = sock.send_to_addr(msg.as_bytes(), &addr)?;
    if n != msg.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "notification cut short",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_socket_values_are_checked() {
        assert_eq!(
            parse(b"/run/systemd/notify"),
            Ok(Target::Path("/run/systemd/notify".into()))
        );
        assert_eq!(parse(b"@abc"), Ok(Target::Abstract(b"abc".to_vec())));
        for bad in [&b""[..], b"@", b"relative", b"vsock:2:1234"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse(format!("/{}", "x".repeat(200)).as_bytes()).is_err());
    }

    #[test]
    fn abstract_sockets_receive_the_messages() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("mjpegd-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier {
            target: Some(Target::Abstract(name.into_bytes())),
            warned: AtomicBool::new(false),
        };
        n.ready("serving");
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving\n");
    }
}
