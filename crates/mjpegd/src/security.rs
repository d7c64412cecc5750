//! The security flags (access, TLS, connection limits) and what the startup log says about exposure.

use crate::http::auth::Auth;
use crate::server::ServerConfig;
use crate::tls::Tls;
use std::net::SocketAddr;
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
    /// Most open connections of any kind (default: --max-clients + 1000); more are refused at once.
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Most open connections from one client address (default: no limit).
    #[arg(long)]
    pub max_connections_per_address: Option<usize>,
}

impl SecurityArgs {
    /// Loads credentials and certificates into `config`.
    pub fn apply(&self, config: &mut ServerConfig) -> anyhow::Result<()> {
        config.auth = Auth::from_flags(
            self.auth.as_deref(),
            self.auth_file.as_deref(),
            &self.access_keys,
        )?
        .map(Arc::new);
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config.tls = Some(Tls::load(cert, key)?);
        }
        config.max_connections = self
            .max_connections
            .unwrap_or(config.max_clients.saturating_add(1000));
        config.max_connections_per_address = self.max_connections_per_address.filter(|&n| n > 0);
        Ok(())
    }
}

/// Says plainly who can reach the server and whether they need credentials; warns when it is reachable
/// from other machines without them. Returns the line for the startup banner.
pub fn announce(addr: SocketAddr, config: &ServerConfig) -> String {
    let exposed = !addr.ip().is_loopback();
    let access = match &config.auth {
        Some(auth) => {
            let (users, keys) = auth.summary();
            format!("Basic auth ({users} user(s)), {keys} access key(s)")
        }
        None => "open: no credentials asked".to_string(),
    };
    let scope = if exposed {
        "EXPOSED: reachable from other machines (--listen)"
    } else {
        "this machine only (loopback)"
    };
    let scheme = if config.tls.is_some() {
        "HTTPS"
    } else {
        "plain HTTP"
    };
    let line = format!("  access:   {access}; {scope}; {scheme}\n");
    if exposed && config.auth.is_none() {
        tracing::warn!(%addr, "exposed without auth: anyone who can reach {addr} can watch; set --auth or --auth-file");
    } else if exposed {
        tracing::info!(%addr, "listening beyond this machine");
    }
    if exposed && config.auth.is_some() && config.tls.is_none() {
        tracing::warn!("Basic auth over plain HTTP: passwords cross the network in clear; set --tls-cert/--tls-key");
    }
    line
}
