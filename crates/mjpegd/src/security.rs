//! The security flags (access, TLS, connection limits) and what the startup log says about exposure.

use crate::http::app::ServerConfig;
use crate::http::auth::Auth;
use crate::net::tls::Tls;
use crate::net::Listener;
use std::path::PathBuf;
use std::sync::Arc;

/// Who may connect, over what, and how many at once.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SecurityArgs {
    /// Require HTTP Basic auth on every URL with this USER:PASSWORD (visible to local users in the process
    /// list: prefer --auth-file or the MJPEGD_AUTH environment variable).
    #[arg(long, env = "MJPEGD_AUTH", hide_env_values = true)]
    pub auth: Option<String>,
    /// Require HTTP Basic auth with the users of this file: `user:bcrypt-hash` lines, as written by
    /// `mjpegd hash-password` or `htpasswd -nB USER`.
    #[arg(long)]
    pub auth_file: Option<PathBuf>,
    /// Also let in any request with `?key=KEY` (for players that cannot send a header). At least 16
    /// characters. The key travels in the URL: it leaks into logs, history and Referer headers.
    #[arg(long = "access-key", env = "MJPEGD_ACCESS_KEY", hide_env_values = true)]
    pub access_keys: Vec<String>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key). SIGHUP reloads both files.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Most open connections of any kind; more are answered 503 at once. Default: --max-clients + 1000, at
    /// most what the open-file limit (ulimit -n) leaves after a reserve of 64 for the source, the listener
    /// and logs.
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Most open connections from one client address (default: no limit).
    #[arg(long)]
    pub max_connections_per_address: Option<usize>,
    /// A reverse proxy whose `Forwarded` / `X-Forwarded-For` headers name the client: an address
    /// (127.0.0.1), a network (10.0.0.0/8) or `unix` (unix-socket peers); repeat or separate with commas.
    /// The client's address then counts for --max-connections-per-address, password checks, logs and
    /// /state. From any other peer these headers are ignored.
    #[arg(long = "trusted-proxy", value_delimiter = ',')]
    pub trusted_proxies: Vec<crate::net::forwarded::TrustedProxy>,
    /// A user (of --auth or --auth-file) who may change things: cameras over the API. Repeat for more;
    /// in the file `admins = ["alice"]`. Other users, and access keys, only watch. Without any
    /// credentials configured, changes are accepted from this machine only (loopback, unix sockets).
    #[arg(long = "admin")]
    pub admins: Vec<String>,
}

impl SecurityArgs {
    /// Loads credentials and certificates into `config`, and sizes its connection limits from the flags
    /// (`max_clients`: --max-clients, if given) and the open-file limit.
    pub fn apply(
        &self,
        config: &mut ServerConfig,
        max_clients: Option<usize>,
        fd_limit: u64,
    ) -> anyhow::Result<()> {
        config.auth = Auth::from_flags(
            self.auth.as_deref(),
            self.auth_file.as_deref(),
            &self.access_keys,
            &self.admins,
        )?
        .map(Arc::new);
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config.tls = Some(Tls::load(cert, key)?);
        }
        let budget = ConnectionBudget::new(fd_limit, max_clients, self.max_connections);
        budget.warn(fd_limit);
        config.max_clients = budget.max_clients;
        config.max_connections = budget.max_connections;
        config.max_connections_per_address = self.max_connections_per_address.filter(|&n| n > 0);
        config.trusted_proxies = crate::net::forwarded::TrustedProxies::new(&self.trusted_proxies)
            .map_err(anyhow::Error::msg)?;
        Ok(())
    }
}

/// File descriptors kept back from connections: standard streams, the runtime's epoll and wakers, the
/// listeners and their spare descriptors (one each), the source (a socket, a child's pipes, a camera, a file), a TLS
/// reload reading its files, frames' shared parts (at most [`crate::net::shared_part::MAX_OPEN`]).
pub const FD_RESERVE: u64 = 64;
/// --max-clients when neither it nor the open-file limit says less.
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;
/// Connections beyond the stream slots by default (for `/state`, snapshots, the page, new arrivals).
const ROOM: usize = 1_000;

/// How many connections and stream clients the server takes: the one place their defaults are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionBudget {
    pub max_clients: usize,
    pub max_connections: usize,
    /// Connections the open-file limit leaves room for (usize::MAX when unlimited or unknown).
    pub fd_room: usize,
}

impl ConnectionBudget {
    /// The limits for an open-file limit of `fd_limit` (0: unknown) and the flags, if given. By default
    /// connections stay within the descriptors left after [`FD_RESERVE`], and stream slots leave an
    /// eighth of them (at most 1000) to everything else, so `/state` and snapshots still answer when
    /// streams have taken every slot.
    pub fn new(
        fd_limit: u64,
        max_clients: Option<usize>,
        max_connections: Option<usize>,
    ) -> ConnectionBudget {
        let fd_room = match fd_limit {
            0 => usize::MAX,
            n => usize::try_from(n.saturating_sub(FD_RESERVE))
                .unwrap_or(usize::MAX)
                .max(16),
        };
        let room = (fd_room / 8).clamp(4, ROOM);
        let max_clients = max_clients
            .unwrap_or_else(|| DEFAULT_MAX_CLIENTS.min(fd_room.saturating_sub(room)).max(1));
        let max_connections =
            max_connections.unwrap_or_else(|| fd_room.min(max_clients.saturating_add(ROOM)));
        ConnectionBudget {
            max_clients,
            max_connections,
            fd_room,
        }
    }

    /// Says (once, at startup) when the open-file limit sets the limits, and where the flags ask for more
    /// than it allows.
    fn warn(&self, fd_limit: u64) {
        if self.fd_room < DEFAULT_MAX_CLIENTS + ROOM {
            tracing::info!(
                fd_limit,
                max_connections = self.max_connections,
                max_clients = self.max_clients,
                "the open-file limit bounds connections (raise ulimit -n for more)"
            );
        }
        if self.max_connections > self.fd_room {
            tracing::warn!(
                fd_limit,
                max_connections = self.max_connections,
                "--max-connections is above what the open-file limit leaves for connections ({}): past it, new connections are answered 503 with a spare descriptor (raise ulimit -n)",
                self.fd_room
            );
        }
        if self.max_clients >= self.max_connections {
            tracing::warn!(
                max_clients = self.max_clients,
                max_connections = self.max_connections,
                "streams can take every connection: /state and snapshots are refused while they do (lower --max-clients)"
            );
        }
    }
}

/// Says plainly who can reach the server and whether they need credentials; warns when a listener is
/// reachable from other machines without them, or with passwords over plain HTTP. Returns the access
/// entry of the startup banner.
pub fn announce(listeners: &[Listener], config: &ServerConfig) -> String {
    let access = match &config.auth {
        Some(auth) => {
            let (users, keys) = auth.summary();
            format!("Basic auth ({users} user(s)), {keys} access key(s)")
        }
        None => "open: no credentials asked".to_string(),
    };
    let exposed: Vec<&Listener> = listeners.iter().filter(|l| !l.local.is_local()).collect();
    let scope = if exposed.is_empty() {
        "this machine only (loopback or unix socket)"
    } else {
        "EXPOSED: reachable from other machines (--listen)"
    };
    let scheme = match (
        listeners.iter().any(|l| l.tls),
        listeners.iter().any(|l| !l.tls),
    ) {
        (true, false) => "HTTPS",
        (true, true) => "HTTPS and plain HTTP",
        _ => "plain HTTP",
    };
    let line = format!("{access}; {scope}; {scheme}");
    for l in &exposed {
        let addr = l.url();
        if config.auth.is_none() {
            tracing::warn!(%addr, "exposed without auth: anyone who can reach {addr} can watch; set --auth or --auth-file");
        } else {
            tracing::info!(%addr, "listening beyond this machine");
            if !l.tls {
                tracing::warn!(%addr, "Basic auth over plain HTTP: passwords cross the network in clear; set --tls-cert/--tls-key");
            }
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_budget_follows_the_open_file_limit_and_the_flags() {
        // A low limit: connections within it, streams leaving room for the rest.
        let low = ConnectionBudget::new(256, None, None);
        assert_eq!(low.max_connections, 192);
        assert_eq!(low.max_clients, 192 - 24);
        // A high or unknown limit: the usual defaults.
        for fd_limit in [1 << 20, 0, u64::MAX] {
            let high = ConnectionBudget::new(fd_limit, None, None);
            assert_eq!((high.max_clients, high.max_connections), (10_000, 11_000));
        }
        // Middle: 4096 descriptors.
        let mid = ConnectionBudget::new(4096, None, None);
        assert_eq!((mid.max_clients, mid.max_connections), (4032 - 504, 4032));
        // Flags win; an explicit --max-clients moves the default --max-connections.
        let flags = ConnectionBudget::new(256, Some(500), Some(1000));
        assert_eq!((flags.max_clients, flags.max_connections), (500, 1000));
        assert_eq!(
            ConnectionBudget::new(1 << 20, Some(50), None).max_connections,
            1050
        );
        // Absurdly low limits still leave a few connections (the spare descriptor covers the rest).
        let tiny = ConnectionBudget::new(10, None, None);
        assert!(tiny.max_clients >= 1 && tiny.max_connections >= tiny.max_clients);
    }
}
