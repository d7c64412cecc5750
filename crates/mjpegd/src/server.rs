//! The server: listening, accepting, and stopping cleanly.
//!
//! One task per connection; stream clients beyond `--max-clients` are turned away with a 503 rather than
//! left hanging. Running out of file descriptors is survived too: a spare descriptor is given up to accept
//! the waiting connection and answer it 503 (else it would hang in the accept queue), and accept errors are
//! logged at most once per 5 s with their count (an attacker cannot flood the log). On
//! shutdown the listener closes, every connection is told to end, and the process exits once they have
//! (or after a short grace period).

use crate::camera::Camera;
use crate::http::auth::Auth;
use crate::http::limits::{refuse, ConnectionLimits, Refused};
use crate::http::request::Limits;
use crate::http::routes::handle_connection;
use crate::tls::Tls;
use mjpegd_core::Policy;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
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
    pub write_timeout: Duration,
    /// How long a snapshot waits for a frame when none is fresh.
    pub snapshot_timeout: Duration,
    /// SO_SNDBUF for every stream connection (None: [`ALL_SEND_BUFFER`] for `all` streams, the kernel's
    /// autotuning for the others).
    pub send_buffer: Option<usize>,
    /// Value of Access-Control-Allow-Origin, if any.
    pub allow_origin: Option<String>,
    /// Who may connect (None: everyone).
    pub auth: Option<Arc<Auth>>,
    /// HTTPS (None: plain HTTP).
    pub tls: Option<Arc<Tls>>,
    /// Most open connections of any kind.
    pub max_connections: usize,
    /// Most open connections from one address, if limited.
    pub max_connections_per_address: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_clients: 10_000,
            limits: Limits::default(),
            write_timeout: Duration::from_secs(30),
            snapshot_timeout: Duration::from_secs(5),
            send_buffer: None,
            allow_origin: None,
            auth: None,
            tls: None,
            max_connections: 10_000 + 1_000,
            max_connections_per_address: None,
        }
    }
}

/// SO_SNDBUF of an `all` stream unless `--send-buffer` says otherwise (the kernel doubles it for its
/// bookkeeping: 256 KiB per client). An `all` client keeps every frame it has not read, and the frames in
/// user space are bounded by `--buffer-memory`; without this the kernel's autotuning would hold up to
/// `net.ipv4.tcp_wmem` (4 MiB by default) more per slow client, outside any budget. 128 KiB still carries
/// 30 fps of 50 KB frames (720p) with room for a 100 ms round trip. `latest` and `lockstep` streams keep the
/// autotuning: they never queue more than about one frame (they wait for their queue to drain).
pub const ALL_SEND_BUFFER: usize = 128 << 10;

impl ServerConfig {
    /// The SO_SNDBUF a stream of `policy` gets, if any.
    pub fn send_buffer_for(&self, policy: Policy) -> Option<usize> {
        self.send_buffer
            .or((policy == Policy::All).then_some(ALL_SEND_BUFFER))
    }
}

/// Counters of refused requests, for `/state`.
#[derive(Debug, Default)]
pub struct Counters {
    pub rejected_max_clients: AtomicU64,
    pub bad_requests: AtomicU64,
    pub timeouts: AtomicU64,
    /// Requests without valid credentials (401).
    pub unauthorized: AtomicU64,
    /// Requests answered 503 because too many password checks were waiting (from their address or in
    /// all), or theirs waited past its deadline.
    pub password_checks_busy: AtomicU64,
    /// Connections refused at --max-connections.
    pub max_connections: AtomicU64,
    /// Connections refused at --max-connections-per-address.
    pub max_connections_per_address: AtomicU64,
    /// TLS handshakes that failed or did not finish within the head timeout.
    pub tls_handshakes: AtomicU64,
}

/// What the last configuration reload did.
#[derive(Clone, Debug, Default)]
pub struct ReloadStatus {
    /// Reloads tried (SIGHUP).
    pub attempts: u64,
    /// When the last one ran, and whether it was applied.
    pub at: Option<SystemTime>,
    pub ok: bool,
    /// Why the last one was refused (file:line:column: message).
    pub error: Option<String>,
    /// Cameras the last applied reload started, stopped and restarted.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
    /// Settings the last reload changed that only a restart applies.
    pub needs_restart: Vec<String>,
}

/// Everything a connection needs: the cameras it may serve and the settings.
pub struct App {
    /// In configuration order; the first answers the single-camera URLs. A reload swaps the list.
    cameras: RwLock<Arc<Vec<Arc<Camera>>>>,
    /// Who may connect; a reload re-reads the users file.
    auth: RwLock<Option<Arc<Auth>>>,
    /// What the last reload did, for `/state`.
    pub reload: Mutex<ReloadStatus>,
    pub config: ServerConfig,
    pub counters: Counters,
    pub instance_id: String,
    /// The CORS header line (empty when not configured).
    pub cors: String,
    /// Open connections and their limits.
    pub connections: Arc<ConnectionLimits>,
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
    pub fn new(cameras: Vec<Arc<Camera>>, config: ServerConfig) -> Arc<App> {
        let cors = config
            .allow_origin
            .as_ref()
            .map(|o| format!("Access-Control-Allow-Origin: {o}\r\n"))
            .unwrap_or_default();
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let connections =
            ConnectionLimits::new(config.max_connections, config.max_connections_per_address);
        Arc::new(App {
            cameras: RwLock::new(Arc::new(cameras)),
            auth: RwLock::new(config.auth.clone()),
            reload: Mutex::new(ReloadStatus::default()),
            config,
            counters: Counters::default(),
            instance_id: format!("{:x}", nanos ^ (std::process::id() as u128) << 64),
            cors,
            connections,
            streams: AtomicUsize::new(0),
        })
    }

    /// The cameras now, in configuration order.
    pub fn cameras(&self) -> Arc<Vec<Arc<Camera>>> {
        self.cameras
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the camera list (a reload), returning the old one.
    pub fn set_cameras(&self, cameras: Vec<Arc<Camera>>) -> Arc<Vec<Arc<Camera>>> {
        std::mem::replace(
            &mut *self.cameras.write().unwrap_or_else(|e| e.into_inner()),
            Arc::new(cameras),
        )
    }

    /// Who may connect now.
    pub fn auth(&self) -> Option<Arc<Auth>> {
        self.auth.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the access rules (a reload).
    pub fn set_auth(&self, auth: Option<Arc<Auth>>) {
        *self.auth.write().unwrap_or_else(|e| e.into_inner()) = auth;
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
}

/// A connection mjpegd can serve: plain TCP (and, later, TLS over it).
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Prepares the connection for streaming: no Nagle delay, and the send buffer size if one is set.
    fn tune_for_stream(&self, _send_buffer: Option<usize>) {}

    /// Makes the coming close abortive (SO_LINGER 0): the kernel discards the send queue and resets the
    /// connection, so a client that was evicted does not go on receiving the frames queued for it.
    fn discard_unsent_on_close(&self) {}

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

    fn discard_unsent_on_close(&self) {
        let _ = socket2::SockRef::from(self).set_linger(Some(Duration::ZERO));
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

/// Accepts and serves connections until `shutdown` is cancelled, then waits (up to a few seconds) for the
/// connections to end.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let mut spare = SpareFd::open();
    let mut failures = AcceptFailures::default();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => break,
        };
        match accepted {
            Ok((socket, addr)) => {
                failures.settled();
                let permit = match app.connections.admit(addr.ip()) {
                    Ok(p) => p,
                    Err(why) => {
                        let counter = match why {
                            Refused::Total => &app.counters.max_connections,
                            Refused::PerAddress => &app.counters.max_connections_per_address,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        if app.config.tls.is_none() {
                            refuse(socket, why);
                        }
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                // One head timeout from accept covers a TLS handshake and the first request head.
                let deadline = tokio::time::Instant::now() + app.config.limits.head_timeout;
                let (app, shutdown) = (app.clone(), shutdown.clone());
                match app.config.tls.as_ref().map(|t| t.acceptor()) {
                    None => tracker.spawn(async move {
                        handle_connection(app, socket, addr, shutdown, deadline).await;
                        drop(permit);
                    }),
                    Some(acceptor) => tracker.spawn(async move {
                        let handshake = tokio::time::timeout_at(deadline, acceptor.accept(socket));
                        let tls = tokio::select! {
                            r = handshake => r,
                            _ = shutdown.cancelled() => return,
                        };
                        match tls {
                            Ok(Ok(tls)) => {
                                handle_connection(app, tls, addr, shutdown, deadline).await
                            }
                            Ok(Err(e)) => {
                                app.counters.tls_handshakes.fetch_add(1, Ordering::Relaxed);
                                tracing::debug!(%addr, error = %e, "TLS handshake failed");
                            }
                            Err(_) => {
                                app.counters.tls_handshakes.fetch_add(1, Ordering::Relaxed);
                                app.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        drop(permit);
                    }),
                };
            }
            Err(e) => {
                failures.note(&e);
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
                    && spare.shed(&listener, app.config.tls.is_none())
                {
                    app.counters.max_connections.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                // Out of descriptors with no spare, or another failure: give connections time to close.
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

/// A descriptor held in reserve so that a connection can still be accepted, answered and closed when the
/// process is out of descriptors.
struct SpareFd(Option<std::fs::File>);

impl SpareFd {
    fn open() -> SpareFd {
        SpareFd(std::fs::File::open("/dev/null").ok())
    }

    /// Frees the spare, accepts one waiting connection, answers it 503 (`answer`: plain HTTP; a TLS
    /// connection is only closed), closes it and takes the spare back. False if there was no spare or
    /// nothing could be accepted.
    fn shed(&mut self, listener: &TcpListener, answer: bool) -> bool {
        if self.0.take().is_none() {
            *self = SpareFd::open();
            return false;
        }
        // The listener is non-blocking: this takes a waiting connection or fails at once.
        let accepted = socket2::SockRef::from(listener).accept();
        if let Ok((socket, _)) = &accepted {
            if answer && socket.set_nonblocking(true).is_ok() {
                let _ = socket.send(crate::http::limits::refusal(Refused::Total));
                // (a request already there is read, so the close ends the connection, not resets it)
                let _ = std::io::Read::read(&mut &*socket, &mut [0u8; 4096]);
            }
        }
        let shed = accepted.is_ok();
        drop(accepted);
        *self = SpareFd::open();
        shed
    }
}

/// Accept failures, logged at most once per [`AcceptFailures::EVERY`] with how many there were.
#[derive(Default)]
struct AcceptFailures {
    unlogged: u64,
    last_log: Option<std::time::Instant>,
}

impl AcceptFailures {
    const EVERY: Duration = Duration::from_secs(5);

    fn note(&mut self, e: &std::io::Error) {
        self.unlogged += 1;
        let now = std::time::Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= Self::EVERY)
        {
            tracing::warn!("accept failed {} times: {e}", self.unlogged);
            self.unlogged = 0;
            self.last_log = Some(now);
        }
    }

    /// After a successful accept: reports the failures not reported yet, once their period is over.
    fn settled(&mut self) {
        if self.unlogged > 0 && self.last_log.is_some_and(|t| t.elapsed() >= Self::EVERY) {
            tracing::warn!("accept failed {} more times", self.unlogged);
            self.unlogged = 0;
            self.last_log = Some(std::time::Instant::now());
        }
    }
}

/// The address a listener is bound to, for printing URLs.
pub fn url_of(addr: SocketAddr) -> String {
    url_with_scheme("http", addr)
}

/// The same with another scheme (https).
pub fn url_with_scheme(scheme: &str, addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V6(a) => format!("{scheme}://[{}]:{}", a.ip(), a.port()),
        SocketAddr::V4(a) => format!("{scheme}://{}:{}", a.ip(), a.port()),
    }
}
