//! The server: listening, accepting, and stopping cleanly.
//!
//! One task per connection; stream clients beyond `--max-clients` are turned away with a 503 rather than
//! left hanging; accept errors (such as running out of file descriptors) are logged and survived. On
//! shutdown the listener closes, every connection is told to end, and the process exits once they have
//! (or after a short grace period).

use crate::http::request::Limits;
use crate::http::routes::handle_connection;
use crate::hub::SharedHub;
use mjpegd_core::{Frame, Policy};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How the HTTP side behaves.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Most stream clients at once.
    pub max_clients: usize,
    pub limits: Limits,
    /// Policy of a stream request that does not name one.
    pub default_policy: Policy,
    pub lockstep_timeout: Duration,
    pub write_timeout: Duration,
    /// How long a snapshot waits for a frame when none is fresh.
    pub snapshot_timeout: Duration,
    /// SO_SNDBUF for stream connections (None: the kernel's autotuning).
    pub send_buffer: Option<usize>,
    /// Value of Access-Control-Allow-Origin, if any.
    pub allow_origin: Option<String>,
    /// Shown in `/state`.
    pub quality: u8,
    pub buffer_memory: usize,
    /// Most connections at once (streams, idle keep-alives, requests in progress).
    pub max_connections: usize,
    /// Most connections from one address (0: no limit).
    pub max_connections_per_ip: usize,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_clients: 10_000,
            limits: Limits::default(),
            default_policy: Policy::Latest,
            lockstep_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(30),
            snapshot_timeout: Duration::from_secs(5),
            send_buffer: None,
            allow_origin: None,
            quality: 80,
            buffer_memory: 256 << 20,
            max_connections: 10_000 + 1024,
            max_connections_per_ip: 0,
        }
    }
}

/// Counters of refused requests, for `/state`.
#[derive(Debug, Default)]
pub struct Counters {
    pub rejected_max_clients: AtomicU64,
    /// Connections refused by --max-connections.
    pub rejected_connections: AtomicU64,
    /// Connections refused by --max-connections-per-ip.
    pub rejected_per_address: AtomicU64,
    /// Requests refused for want of valid credentials.
    pub unauthorized: AtomicU64,
    pub bad_requests: AtomicU64,
    pub timeouts: AtomicU64,
}

/// Everything a connection needs: the hub it serves and the settings.
pub struct App {
    pub hub: Arc<SharedHub>,
    pub config: ServerConfig,
    pub counters: Counters,
    pub instance_id: String,
    /// The CORS header line (empty when not configured).
    pub cors: String,
    /// Who may watch (None: everyone).
    pub access: Option<crate::http::auth::Access>,
    /// HTTPS, if configured.
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// Open connections.
    pub connections: Arc<Connections>,
    streams: AtomicUsize,
}

/// A stream slot, released on drop.
pub struct StreamSlot<'a>(&'a AtomicUsize);

impl Drop for StreamSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl App {
    pub fn new(
        hub: Arc<SharedHub>,
        config: ServerConfig,
        access: Option<crate::http::auth::Access>,
        tls: Option<Arc<crate::tls::Tls>>,
    ) -> Arc<App> {
        let cors = config
            .allow_origin
            .as_ref()
            .map(|o| format!("Access-Control-Allow-Origin: {o}\r\n"))
            .unwrap_or_default();
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let connections = Connections::new(config.max_connections, config.max_connections_per_ip);
        Arc::new(App {
            hub,
            config,
            counters: Counters::default(),
            instance_id: format!("{:x}", nanos ^ (std::process::id() as u128) << 64),
            cors,
            access,
            tls,
            connections,
            streams: AtomicUsize::new(0),
        })
    }

    /// Takes a stream slot if one is free.
    pub fn reserve_stream(&self) -> Option<StreamSlot<'_>> {
        self.streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.config.max_clients).then_some(n + 1)
            })
            .ok()
            .map(|_| StreamSlot(&self.streams))
    }

    /// The frame a snapshot should show: the newest while the source is running, else the next one to
    /// arrive (waking an on-demand source), within the snapshot timeout.
    pub async fn fresh_frame(&self) -> Option<Arc<Frame>> {
        let state = self.hub.source().state;
        let newest = self.hub.newest();
        if matches!(state, "online" | "offline") && newest.is_some() {
            return newest;
        }
        let after = newest.map(|f| f.seq);
        let mut changes = self.hub.changes();
        let _watching = self.hub.watch();
        let wait = async {
            loop {
                if let Some(f) = self
                    .hub
                    .newest()
                    .filter(|f| after.is_none_or(|a| f.seq > a))
                {
                    return f;
                }
                if changes.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        };
        tokio::time::timeout(self.config.snapshot_timeout, wait)
            .await
            .ok()
    }
}

/// A connection mjpegd can serve: plain TCP (and, later, TLS over it).
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Prepares the connection for streaming: no Nagle delay, and the send buffer size if one is set.
    fn tune_for_stream(&self, _send_buffer: Option<usize>) {}

    /// Bytes written but not yet acknowledged by the client (the kernel's send queue), if known.
    fn unsent_bytes(&self) -> Option<usize> {
        None
    }
}

impl Transport for TcpStream {
    fn tune_for_stream(&self, send_buffer: Option<usize>) {
        let _ = self.set_nodelay(true);
        if let Some(size) = send_buffer {
            let _ = socket2::SockRef::from(self).set_send_buffer_size(size);
        }
    }

    fn unsent_bytes(&self) -> Option<usize> {
        use std::os::fd::AsRawFd;
        let mut queued: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int through the pointer.
        let rc = unsafe { libc::ioctl(self.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
        if rc != 0 {
            return None;
        }
        // A reset connection keeps its unacknowledged count forever: report nothing, so the caller's next
        // write fails and ends the stream. (Asked only when something is queued: the common case costs one
        // system call.)
        if queued > 0 && !matches!(self.take_error(), Ok(None)) {
            return None;
        }
        Some(queued.max(0) as usize)
    }
}

impl Transport for tokio_rustls::server::TlsStream<TcpStream> {
    fn tune_for_stream(&self, send_buffer: Option<usize>) {
        self.get_ref().0.tune_for_stream(send_buffer);
    }

    fn unsent_bytes(&self) -> Option<usize> {
        self.get_ref().0.unsent_bytes()
    }
}

/// Open connections, in total and per client address, to keep idle and hostile connections bounded.
pub struct Connections {
    max_total: usize,
    max_per_ip: usize,
    open: std::sync::Mutex<(usize, std::collections::HashMap<std::net::IpAddr, usize>)>,
}

/// One counted connection; uncounted on drop.
pub struct ConnectionSlot {
    connections: Arc<Connections>,
    ip: std::net::IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

/// Why a connection was refused at the door.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerAddress,
}

impl Connections {
    /// `max_per_ip` 0: no per-address limit.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Connections> {
        Arc::new(Connections {
            max_total,
            max_per_ip,
            open: Default::default(),
        })
    }

    /// Counts a new connection from `ip`, or says which limit it would break.
    pub fn admit(self: &Arc<Self>, ip: std::net::IpAddr) -> Result<ConnectionSlot, Refused> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.0 >= self.max_total {
            return Err(Refused::Total);
        }
        let per = open.1.entry(ip).or_insert(0);
        if self.max_per_ip > 0 && *per >= self.max_per_ip {
            return Err(Refused::PerAddress);
        }
        *per += 1;
        open.0 += 1;
        Ok(ConnectionSlot {
            connections: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

/// Accepts and serves connections until `shutdown` is cancelled, then waits (up to a few seconds) for the
/// connections to end.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => break,
        };
        match accepted {
            Ok((socket, addr)) => {
                let slot = match app.connections.admit(addr.ip()) {
                    Ok(slot) => slot,
                    Err(why) => {
                        refuse(&app, socket, why);
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                let (app, shutdown) = (app.clone(), shutdown.clone());
                tracker.spawn(async move {
                    let _slot = slot;
                    match app.tls.clone() {
                        None => handle_connection(app, socket, addr, shutdown).await,
                        Some(tls) => {
                            let handshake = tokio::time::timeout(
                                app.config.limits.head_timeout,
                                tls.acceptor().accept(socket),
                            );
                            match handshake.await {
                                Ok(Ok(stream)) => {
                                    handle_connection(app, stream, addr, shutdown).await
                                }
                                Ok(Err(e)) => {
                                    tracing::debug!(%addr, error = %e, "TLS handshake failed")
                                }
                                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                            }
                        }
                    }
                });
            }
            Err(e) => {
                // EMFILE/ENFILE and friends: keep the server alive, give connections time to close.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(3), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
}

/// Answers a connection over the limits with a one-line 503 (without waiting on the client) and closes it.
fn refuse(app: &App, socket: TcpStream, why: Refused) {
    let (counter, reason) = match why {
        Refused::Total => (
            &app.counters.rejected_connections,
            "too many connections (--max-connections)",
        ),
        Refused::PerAddress => (
            &app.counters.rejected_per_address,
            "too many connections from your address (--max-connections-per-ip)",
        ),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\nRetry-After: 5\r\n\r\n{reason}\n",
        reason.len() + 1
    );
    // Plain TCP only: a TLS client could not read it anyway, and no handshake is worth its cost here.
    if app.tls.is_none() {
        let _ = socket.try_write(response.as_bytes());
    }
}

/// The address a listener is bound to, for printing URLs.
pub fn url_of(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    match addr {
        SocketAddr::V6(a) => format!("{scheme}://[{}]:{}", a.ip(), a.port()),
        SocketAddr::V4(a) => format!("{scheme}://{}:{}", a.ip(), a.port()),
    }
}
