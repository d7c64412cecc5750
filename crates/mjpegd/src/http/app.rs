//! The application state every connection shares: the cameras (in configuration order, swapped whole by
//! a reload), the access rules, the HTTP settings, and the counters `/state` and `/metrics` show.

use crate::camera::Camera;
use crate::http::auth::Auth;
use crate::http::limits::ConnectionLimits;
use crate::http::request::Limits;
use crate::net::forwarded::TrustedProxies;
use crate::net::tls::Tls;
use mjpegd_core::Policy;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

/// How the HTTP side behaves.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Most stream clients at once.
    pub max_clients: usize,
    pub limits: Limits,
    pub write_timeout: Duration,
    /// How long a snapshot waits for its frame (none yet, `max_delay`, warm-up).
    pub snapshot_timeout: Duration,
    /// How long a `?after=` long poll waits for the next frame.
    pub long_poll_timeout: Duration,
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
    /// Peers whose `Forwarded`/`X-Forwarded-For` name the client.
    pub trusted_proxies: TrustedProxies,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_clients: 10_000,
            limits: Limits::default(),
            write_timeout: Duration::from_secs(30),
            snapshot_timeout: Duration::from_secs(2),
            long_poll_timeout: Duration::from_secs(5),
            send_buffer: None,
            allow_origin: None,
            auth: None,
            tls: None,
            max_connections: 10_000 + 1_000,
            max_connections_per_address: None,
            trusted_proxies: TrustedProxies::default(),
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
    /// Streams refused because their camera already ran --max-variants variants.
    pub rejected_max_variants: AtomicU64,
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
    /// TLS handshakes that succeeded.
    pub tls_handshakes_completed: AtomicU64,
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
    /// When the server started (`/metrics` `process_start_time_seconds`).
    pub started: SystemTime,
    /// The CORS header line (empty when not configured).
    pub cors: String,
    /// Open connections and their limits.
    pub connections: Arc<ConnectionLimits>,
    streams: AtomicUsize,
    /// `/state` documents built lately (built off the runtime, one at a time).
    pub state_cache: super::state_cache::StateCache,
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
            started: SystemTime::now(),
            cors,
            connections,
            streams: AtomicUsize::new(0),
            state_cache: Default::default(),
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
