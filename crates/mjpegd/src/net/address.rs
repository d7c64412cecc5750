//! What one `--listen` (or one entry of `listen = [...]` in the config file) says, checked before anything
//! is bound.
//!
//! | written | listener |
//! |---|---|
//! | `ADDRESS:PORT` | TCP; HTTPS when `--tls-cert`/`--tls-key` are given, plain HTTP otherwise (as before) |
//! | `http://ADDRESS:PORT` | TCP, always plain HTTP (e.g. loopback beside HTTPS on every address) |
//! | `https://ADDRESS:PORT` | TCP, always HTTPS (needs `--tls-cert`/`--tls-key`) |
//! | `unix:/PATH` or `unix:/PATH?mode=0660` | a unix socket for a reverse proxy on the same host, created with that mode (default 0660) |
//! | `systemd` | every socket systemd passed (socket activation), plain HTTP or as above with a scheme |
//! | `systemd:NAME` | the passed sockets whose `FileDescriptorName=` is NAME |
//!
//! Any of them may end in `?proxy-protocol=1` (joined to a unix socket's `mode=` with `&`): every
//! connection must then start with a PROXY protocol header (HAProxy's `send-proxy`), whose client address
//! is believed ([`super::proxy_protocol`]); bind such a listener where only the proxy reaches it.
//!
//! The scheme is per listener, so one server can serve plain HTTP on loopback and HTTPS on every address.
//! TLS over a unix socket is refused: a proxy on the same host terminates TLS itself.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// A unix socket path may not exceed `sun_path` (108 bytes with its NUL); mjpegd binds a temporary name
/// beside it first (up to 24 more bytes), so paths are kept shorter still.
pub const MAX_UNIX_PATH: usize = 80;
/// The mode of a unix socket when `?mode=` does not give one: the owner and its group (a proxy's user in
/// the service's group) may connect, others not.
pub const DEFAULT_UNIX_MODE: u32 = 0o660;
/// Longest `FileDescriptorName=` systemd allows.
pub const MAX_FD_NAME: usize = 255;

/// Whether a listener speaks TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Not said: HTTPS over TCP when a certificate is configured, plain HTTP otherwise.
    Default,
    Http,
    Https,
}

/// Where a listener listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Tcp(SocketAddr),
    Unix {
        path: PathBuf,
        mode: u32,
    },
    /// Sockets passed by systemd: all of them, or those of one `FileDescriptorName=`.
    Systemd {
        name: Option<String>,
    },
}

/// One listener as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenSpec {
    pub scheme: Scheme,
    pub target: Target,
    /// Every connection starts with a PROXY protocol header, which is believed.
    pub proxy_protocol: bool,
}

impl ListenSpec {
    /// The default listener: loopback, port 8080.
    pub fn default_tcp() -> ListenSpec {
        ListenSpec {
            scheme: Scheme::Default,
            target: Target::Tcp(SocketAddr::from(([127, 0, 0, 1], 8080))),
            proxy_protocol: false,
        }
    }

    /// All sockets systemd passed.
    pub fn systemd() -> ListenSpec {
        ListenSpec {
            scheme: Scheme::Default,
            target: Target::Systemd { name: None },
            proxy_protocol: false,
        }
    }

    /// Whether this listener serves HTTPS, given whether a certificate is configured.
    pub fn is_tls(&self, have_certificate: bool) -> bool {
        match (self.scheme, &self.target) {
            (Scheme::Https, _) => true,
            (Scheme::Http, _) | (_, Target::Unix { .. }) => false,
            (Scheme::Default, _) => have_certificate,
        }
    }
}

const EXPECTED: &str = "expected ADDRESS:PORT (e.g. 127.0.0.1:8080 or [::]:8080), optionally with http:// or https://, unix:/PATH[?mode=0660], or systemd[:NAME]; any of them with ?proxy-protocol=1";

impl FromStr for ListenSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<ListenSpec, String> {
        let s = text.trim();
        let (scheme, rest) = if let Some(r) = s.strip_prefix("https://") {
            (Scheme::Https, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (Scheme::Http, r)
        } else {
            (Scheme::Default, s)
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let rest = if scheme == Scheme::Default {
            rest
        } else {
            rest.strip_suffix('/').unwrap_or(rest)
        };
        let mut mode = None;
        let mut proxy_protocol = false;
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                Some(("mode", m)) if rest.starts_with("unix:") => {
                    mode = Some(parse_mode(m).map_err(|e| format!("{text:?}: {e}"))?)
                }
                Some(("proxy-protocol", "1" | "true")) => proxy_protocol = true,
                Some(("proxy-protocol", "0" | "false")) => proxy_protocol = false,
                _ => {
                    return Err(format!(
                        "{text:?}: unknown option {pair:?} (mode=0660 on a unix socket, proxy-protocol=1)"
                    ))
                }
            }
        }
        let target = if let Some(unix) = rest.strip_prefix("unix:") {
            if scheme == Scheme::Https {
                return Err(format!(
                    "{text:?}: TLS over a unix socket is not supported (the proxy in front of it terminates TLS)"
                ));
            }
            parse_unix(unix, mode.unwrap_or(DEFAULT_UNIX_MODE))
                .map_err(|e| format!("{text:?}: {e}"))?
        } else if rest == "systemd" {
            Target::Systemd { name: None }
        } else if let Some(name) = rest.strip_prefix("systemd:") {
            check_fd_name(name).map_err(|e| format!("{text:?}: {e}"))?;
            Target::Systemd {
                name: Some(name.to_string()),
            }
        } else {
            Target::Tcp(
                rest.parse::<SocketAddr>()
                    .map_err(|_| format!("{text:?}: {EXPECTED}"))?,
            )
        };
        Ok(ListenSpec {
            scheme,
            target,
            proxy_protocol,
        })
    }
}

fn parse_unix(path: &str, mode: u32) -> Result<Target, String> {
    if !path.starts_with('/') {
        return Err("a unix socket needs an absolute path (unix:/run/mjpegd/mjpegd.sock)".into());
    }
    if path.len() > MAX_UNIX_PATH {
        return Err(format!(
            "the socket path is {} bytes, more than the {MAX_UNIX_PATH} a unix socket allows here",
            path.len()
        ));
    }
    if path.contains('\0') || path.ends_with('/') {
        return Err("not a file path".into());
    }
    Ok(Target::Unix {
        path: PathBuf::from(path),
        mode,
    })
}

/// An octal permission mode of 3 or 4 digits, at most 0777, that lets the owner connect.
fn parse_mode(m: &str) -> Result<u32, String> {
    let bad = || format!("mode={m}: expected an octal mode like 0660 (at most 0777)");
    if !(3..=4).contains(&m.len()) || !m.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad());
    }
    let mode = u32::from_str_radix(m, 8).map_err(|_| bad())?;
    if mode > 0o777 {
        return Err(bad());
    }
    if mode & 0o200 == 0 {
        return Err(format!(
            "mode={m}: the owner needs write permission to connect"
        ));
    }
    Ok(mode)
}

/// A name systemd could have given with `FileDescriptorName=`: 1-255 printable ASCII characters, no `:`.
pub fn check_fd_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > MAX_FD_NAME
        || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
    {
        return Err(format!(
            "socket name {name:?}: expected 1-{MAX_FD_NAME} printable characters without ':' (FileDescriptorName=)"
        ));
    }
    Ok(())
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme {
            Scheme::Default => {}
            Scheme::Http => f.write_str("http://")?,
            Scheme::Https => f.write_str("https://")?,
        }
        match &self.target {
            Target::Tcp(addr) => addr.fmt(f),
            Target::Unix { path, mode } => write!(f, "unix:{}?mode={mode:04o}", path.display()),
            Target::Systemd { name: None } => f.write_str("systemd"),
            Target::Systemd { name: Some(n) } => write!(f, "systemd:{n}"),
        }?;
        if self.proxy_protocol {
            let join = if matches!(self.target, Target::Unix { .. }) {
                '&'
            } else {
                '?'
            };
            write!(f, "{join}proxy-protocol=1")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ListenSpec, String> {
        s.parse()
    }

    #[test]
    fn every_form_parses_and_prints_back() {
        for (text, printed) in [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("[::]:80", "[::]:80"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
            ("https://0.0.0.0:8443", "https://0.0.0.0:8443"),
            (
                "unix:/run/mjpegd/mjpegd.sock",
                "unix:/run/mjpegd/mjpegd.sock?mode=0660",
            ),
            ("unix:/tmp/a.sock?mode=0600", "unix:/tmp/a.sock?mode=0600"),
            (
                "http://unix:/tmp/a.sock?mode=666",
                "http://unix:/tmp/a.sock?mode=0666",
            ),
            ("systemd", "systemd"),
            ("https://systemd:public", "https://systemd:public"),
            (
                "127.0.0.1:8081?proxy-protocol=1",
                "127.0.0.1:8081?proxy-protocol=1",
            ),
            (
                "unix:/tmp/a.sock?proxy-protocol=1&mode=0600",
                "unix:/tmp/a.sock?mode=0600&proxy-protocol=1",
            ),
            (
                "systemd:edge?proxy-protocol=1",
                "systemd:edge?proxy-protocol=1",
            ),
        ] {
            let spec = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(spec.to_string(), printed);
            assert_eq!(parse(printed).unwrap(), spec, "{printed} round-trips");
        }
    }

    #[test]
    fn tls_follows_the_scheme_then_the_certificate() {
        let tcp = parse("0.0.0.0:1").unwrap();
        assert!(tcp.is_tls(true) && !tcp.is_tls(false));
        assert!(!parse("http://0.0.0.0:1").unwrap().is_tls(true));
        assert!(parse("https://0.0.0.0:1").unwrap().is_tls(false));
        assert!(!parse("unix:/a.sock").unwrap().is_tls(true));
        assert!(parse("systemd").unwrap().is_tls(true));
    }

    #[test]
    fn mistakes_are_refused_with_what_was_expected() {
        for (text, says) in [
            ("8080", "expected ADDRESS:PORT"),
            ("localhost:8080", "expected ADDRESS:PORT"),
            ("ftp://1.2.3.4:5", "expected ADDRESS:PORT"),
            ("unix:relative.sock", "absolute path"),
            ("unix:/a.sock?mode=0999", "octal mode"),
            ("unix:/a.sock?mode=1777", "at most 0777"),
            ("unix:/a.sock?mode=0460", "owner needs write"),
            ("unix:/a.sock?user=x", "unknown option"),
            ("127.0.0.1:1?mode=0600", "unknown option"),
            ("127.0.0.1:1?proxy-protocol=yes", "unknown option"),
            ("unix:/dir/", "not a file path"),
            ("https://unix:/a.sock", "TLS over a unix socket"),
            ("systemd:", "socket name"),
            ("systemd:a:b", "socket name"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
        let long = format!("unix:/{}", "x".repeat(MAX_UNIX_PATH));
        assert!(parse(&long).unwrap_err().contains("bytes"));
    }
}
