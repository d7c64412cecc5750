//! Reloading the configuration without a restart: SIGHUP re-reads the config file and the users file.
//!
//! A reload is all or nothing: a file with an error changes nothing (the error is logged with
//! file:line:column and shown in `/state` `result.config`), and every running camera goes on exactly as
//! it was. Everything that can fail happens first, with no effect: the file is read (off the async
//! runtime, bounded, a regular file only) and parsed, which checks everything a source needs (a relay's
//! URL whole: starting a camera cannot fail), and the users file is read. Then a [`plan`] says what
//! happens to each camera, and applying it cannot fail. [`Reloader::apply`] is that one step, for
//! whatever asks for a new configuration: a SIGHUP or an API write, both through [`crate::control`]. By name:
//! - an unchanged camera is not touched: its clients keep their connections and sequence numbers, and an
//!   `all` client sees no gap;
//! - an added camera starts; a removed one stops, and its clients' streams end cleanly;
//! - a changed camera restarts its source on the same hub while its clients stay connected ("no signal" in
//!   between, as on any source failure), unless the change is to its hub's own budget (`buffer-memory`),
//!   which replaces it.
//!
//! Server-wide settings that only take effect at start (the listeners, limits, TLS file paths, timeouts)
//! are reported as needing a restart; the users file and access keys apply at once, and the TLS
//! certificate and key are read again from their paths (a renewed certificate serves new connections; a
//! broken one is logged and the old one stays).
//!
//! Under systemd, each reload is framed by `RELOADING=1` (with `MONOTONIC_USEC=`) and `READY=1`, so
//! `systemctl reload` (and `Type=notify-reload`) waits until the new configuration is in place.

pub mod plan;

use crate::camera::Camera;
use crate::config::{CameraSettings, FileConfig, ServerKeys};
use crate::http::app::{App, ReloadStatus};
use crate::http::auth::Auth;
use crate::security::SecurityArgs;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Held while a configuration is applied.
static APPLYING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a reload starts from: the file, and what the command line gave.
#[derive(Clone, Debug)]
pub struct Reloader {
    /// The config file, if the server runs from one.
    pub path: Option<PathBuf>,
    /// Every camera key the file leaves out.
    pub base: CameraSettings,
    /// The access flags of the command line (the file's keys are added to them).
    pub security: SecurityArgs,
    /// The file's server keys when the server started.
    pub started_with: ServerKeys,
}

impl Reloader {
    /// Without a config file, all a reload re-reads is the users file.
    pub fn reload_users(&self, app: &App) -> anyhow::Result<()> {
        let auth = self.auth(&ServerKeys::default(), app)?;
        app.set_auth(auth);
        Ok(())
    }

    /// Applies a parsed configuration to `app`, all or nothing: on an error nothing has changed. Cameras
    /// it starts stop with `shutdown`.
    pub async fn apply(
        &self,
        app: &App,
        file: FileConfig,
        shutdown: &CancellationToken,
        status: &mut ReloadStatus,
    ) -> anyhow::Result<()> {
        // One configuration is applied at a time: a second caller waits for the first to finish, then
        // plans against what the first left running.
        let _one_at_a_time = APPLYING.lock().await;
        // Everything that can fail is done before anything changes.
        let auth = self.auth(&file.server, app)?;
        let old = app.cameras();
        let running: Vec<CameraSettings> = old.iter().map(|c| c.settings()).collect();
        let plan = plan::Plan::new(&running, file.cameras);
        status.needs_restart = needs_restart(&self.started_with, &file.server);
        status.added = plan.added();
        status.restarted = plan.restarted();
        status.removed = plan.removed.clone();
        for key in &status.needs_restart {
            tracing::warn!(key, "changed in the file: takes effect at the next restart");
        }
        // From here on nothing can fail.
        let by_name = |name: &str| old.iter().find(|c| c.name() == name).cloned();
        let mut next: Vec<Arc<Camera>> = Vec::with_capacity(plan.cameras.len());
        let mut gone: Vec<Arc<Camera>> = Vec::new();
        for (name, step) in plan.cameras {
            match step {
                plan::Step::Keep => next.extend(by_name(&name)),
                plan::Step::Restart(settings) => {
                    if let Some(camera) = by_name(&name) {
                        camera.restart(settings).await;
                        next.push(camera);
                    }
                }
                plan::Step::Replace(settings) => {
                    gone.extend(by_name(&name));
                    next.push(Camera::start(settings, shutdown));
                }
                plan::Step::Add(settings) => next.push(Camera::start(settings, shutdown)),
            }
        }
        gone.extend(plan.removed.iter().filter_map(|n| by_name(n)));
        app.set_cameras(next);
        app.set_auth(auth);
        for camera in gone {
            camera.stop().await;
        }
        Ok(())
    }

    /// The access rules from the command line's flags plus the file's keys, keeping what the running
    /// rules verified for unchanged password hashes.
    fn auth(&self, keys: &ServerKeys, app: &App) -> anyhow::Result<Option<Arc<Auth>>> {
        let auth = keys.auth.as_deref().or(self.security.auth.as_deref());
        let file = keys
            .auth_file
            .as_deref()
            .or(self.security.auth_file.as_deref());
        let mut access_keys = self.security.access_keys.clone();
        access_keys.extend(keys.access_keys.iter().cloned());
        let mut admins = self.security.admins.clone();
        admins.extend(keys.admins.iter().cloned());
        let Some(mut rules) = Auth::from_flags(auth, file, &access_keys, &admins)? else {
            return Ok(None);
        };
        if let Some(old) = app.auth() {
            rules.keep_verified_from(&old);
        }
        Ok(Some(Arc::new(rules)))
    }
}

/// The server keys that differ between `before` and `after` and apply only at start.
fn needs_restart(before: &ServerKeys, after: &ServerKeys) -> Vec<String> {
    let mut keys = Vec::new();
    let mut check = |name: &str, changed: bool| {
        if changed {
            keys.push(name.to_string());
        }
    };
    check("listen", before.listen != after.listen);
    check("max-clients", before.max_clients != after.max_clients);
    check(
        "max-connections",
        before.max_connections != after.max_connections,
    );
    check(
        "max-connections-per-address",
        before.max_connections_per_address != after.max_connections_per_address,
    );
    check("head-timeout", before.head_timeout != after.head_timeout);
    check("write-timeout", before.write_timeout != after.write_timeout);
    check(
        "snapshot-timeout",
        before.snapshot_timeout != after.snapshot_timeout,
    );
    check("send-buffer", before.send_buffer != after.send_buffer);
    check("allow-origin", before.allow_origin != after.allow_origin);
    check("tls-cert", before.tls_cert != after.tls_cert);
    check("tls-key", before.tls_key != after.tls_key);
    check(
        "trusted-proxies",
        before.trusted_proxies != after.trusted_proxies,
    );
    keys
}
