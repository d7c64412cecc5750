//! The listeners of one server, bound from their [`ListenSpec`]s: TCP (plain or TLS), unix sockets, and
//! the sockets systemd passed. Each is accepted from by its own loop (`server.rs`); a connection comes out
//! as a [`Conn`] with its [`Peer`], whatever the listener.

use super::activation::{self, PassedSocket};
use super::address::{ListenSpec, Target};
use super::peer::Peer;
use super::unix::SocketFile;
use std::fmt;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::task::{Context, Poll};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// Where a bound listener listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Local {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Local {
    /// Whether only this machine can reach it.
    pub fn is_local(&self) -> bool {
        match self {
            Local::Tcp(addr) => addr.ip().is_loopback(),
            Local::Unix(_) => true,
        }
    }
}

/// A bound listener.
#[derive(Debug)]
pub struct Listener {
    socket: Socket,
    pub local: Local,
    /// Serves HTTPS.
    pub tls: bool,
    /// Passed by systemd (with its name), rather than bound by mjpegd.
    pub passed: Option<String>,
    /// Every connection starts with a PROXY protocol header (`?proxy-protocol=1`).
    pub proxy_protocol: bool,
}

#[derive(Debug)]
enum Socket {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        /// The socket file, removed when the listener is dropped (None: systemd made it).
        _file: Option<SocketFile>,
    },
}

/// An accepted connection.
#[derive(Debug)]
pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsFd for Conn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Conn::Tcp(s) => s.as_fd(),
            Conn::Unix(s) => s.as_fd(),
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.socket {
            Socket::Tcp(l) => l.as_fd(),
            Socket::Unix { listener, .. } => listener.as_fd(),
        }
    }
}

impl Listener {
    /// Accepts a waiting connection, or registers `cx` to be woken when one arrives. (One system call,
    /// no await: the accept loop makes it under a lock shared by every listener, see `server.rs`.)
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<(Conn, Peer)>> {
        match &self.socket {
            Socket::Tcp(l) => l
                .poll_accept(cx)
                .map_ok(|(s, addr)| (Conn::Tcp(s), Peer::Ip(addr))),
            Socket::Unix { listener, .. } => listener.poll_accept(cx).map_ok(|(s, _)| {
                let peer = Peer::of_unix(&s);
                (Conn::Unix(s), peer)
            }),
        }
    }

    /// The base URL of this listener, for the startup banner.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        match &self.local {
            Local::Tcp(addr) => url_with_scheme(scheme, *addr),
            Local::Unix(path) => format!("unix:{}", path.display()),
        }
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())?;
        if let Some(name) = &self.passed {
            write!(f, " (systemd: {name})")?;
        }
        Ok(())
    }
}

/// Binds every listener `specs` name; `have_certificate`: whether TLS files are configured (listeners
/// without a scheme then serve HTTPS). Sockets systemd passed are taken once, for the `systemd` specs.
pub fn bind_all(specs: &[ListenSpec], have_certificate: bool) -> anyhow::Result<Vec<Listener>> {
    if specs.is_empty() {
        anyhow::bail!("no listener configured");
    }
    let mut passed: Vec<Option<PassedSocket>> = Vec::new();
    let wants_passed = specs
        .iter()
        .any(|s| matches!(s.target, Target::Systemd { .. }));
    if wants_passed {
        passed = activation::take()?.into_iter().map(Some).collect();
        if passed.is_empty() {
            anyhow::bail!(
                "--listen systemd: no sockets were passed (LISTEN_FDS and LISTEN_PID are not set for this process; start it from a .socket unit or systemd-socket-activate)"
            );
        }
    } else if activation::offered()? {
        tracing::warn!("systemd passed sockets, but no --listen names them (--listen systemd); they are not served");
    }
    let all_names: Vec<String> = passed.iter().flatten().map(|p| p.name.clone()).collect();
    let mut listeners = Vec::new();
    let mut seen = Vec::new();
    // Named systemd specs first, so that a bare `systemd` takes the rest; the listeners are then put
    // back in the order given.
    let mut order: Vec<(usize, &ListenSpec)> = specs.iter().enumerate().collect();
    order.sort_by_key(|(_, s)| !matches!(&s.target, Target::Systemd { name: Some(_) }));
    let mut given: Vec<usize> = Vec::new();
    for (index, spec) in order {
        // (port 0 asks for any free port: twice is two listeners)
        let any_port = matches!(spec.target, Target::Tcp(a) if a.port() == 0);
        if seen.contains(&spec.target) && !any_port {
            anyhow::bail!("--listen {spec} is given twice");
        }
        seen.push(spec.target.clone());
        let tls = spec.is_tls(have_certificate);
        match &spec.target {
            Target::Tcp(addr) => {
                let l = super::listen(*addr)
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
                listeners.push(Listener {
                    local: Local::Tcp(l.local_addr()?),
                    socket: Socket::Tcp(l),
                    tls,
                    passed: None,
                    proxy_protocol: spec.proxy_protocol,
                });
            }
            Target::Unix { path, mode } => {
                let (l, file) = super::unix::bind(path, *mode).map_err(|e| {
                    anyhow::anyhow!("cannot listen on unix:{}: {e:#}", path.display())
                })?;
                listeners.push(Listener {
                    local: Local::Unix(file.path().to_path_buf()),
                    socket: Socket::Unix {
                        listener: l,
                        _file: Some(file),
                    },
                    tls,
                    passed: None,
                    proxy_protocol: spec.proxy_protocol,
                });
            }
            Target::Systemd { name } => {
                let mut any = false;
                for slot in passed.iter_mut() {
                    let matches = slot
                        .as_ref()
                        .is_some_and(|p| name.as_ref().is_none_or(|n| *n == p.name));
                    if !matches {
                        continue;
                    }
                    if let Some(p) = slot.take() {
                        listeners.push(Listener {
                            proxy_protocol: spec.proxy_protocol,
                            ..from_passed(p, tls)?
                        });
                        any = true;
                    }
                }
                if !any {
                    anyhow::bail!(
                        "--listen {spec}: no passed socket left for it (names passed: {})",
                        all_names.join(", ")
                    );
                }
            }
        }
        given.resize(listeners.len(), index);
    }
    for p in passed.into_iter().flatten() {
        tracing::warn!(fd = p.fd, name = %p.name, "a socket systemd passed is not served (no --listen systemd:NAME names it)");
    }
    let mut ordered: Vec<(usize, Listener)> = given.into_iter().zip(listeners).collect();
    ordered.sort_by_key(|(i, _)| *i);
    Ok(ordered.into_iter().map(|(_, l)| l).collect())
}

/// `scheme://address:port`, with IPv6 addresses in brackets.
pub fn url_with_scheme(scheme: &str, addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V6(a) => format!("{scheme}://[{}]:{}", a.ip(), a.port()),
        SocketAddr::V4(a) => format!("{scheme}://{}:{}", a.ip(), a.port()),
    }
}

fn from_passed(p: PassedSocket, tls: bool) -> anyhow::Result<Listener> {
    let what = format!("descriptor {} passed by systemd ({})", p.fd, p.name);
    let name = Some(p.name);
    if p.socket.domain()? == socket2::Domain::UNIX {
        if tls {
            anyhow::bail!("{what} is a unix socket: TLS is not served on unix sockets (use http://systemd:NAME for it)");
        }
        let path = p
            .socket
            .local_addr()?
            .as_pathname()
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|| PathBuf::from("(unnamed)"));
        let l = UnixListener::from_std(p.socket.into())?;
        return Ok(Listener {
            socket: Socket::Unix {
                listener: l,
                _file: None,
            },
            local: Local::Unix(path),
            tls,
            passed: name,
            proxy_protocol: false,
        });
    }
    let l = TcpListener::from_std(p.socket.into())?;
    Ok(Listener {
        local: Local::Tcp(l.local_addr()?),
        socket: Socket::Tcp(l),
        tls,
        passed: name,
        proxy_protocol: false,
    })
}
