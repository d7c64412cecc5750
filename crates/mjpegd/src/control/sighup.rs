//! SIGHUP: the certificate, then the configuration through the control plane, read again; systemd is
//! told when a reload starts and when it is done (`RELOADING=1` with `MONOTONIC_USEC=`, then `READY=1`), so
//! `systemctl reload` (and `Type=notify-reload`) waits until the new configuration is in place.

use super::Control;
use crate::http::app::App;
use crate::net::tls::Tls;
use crate::service::notify::Notifier;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Reloads (the certificate, then the files, through the control plane) on every SIGHUP until
/// `shutdown`, telling systemd when a reload starts and when it is done.
pub fn reload_on_sighup(
    control: Arc<Control>,
    tls: Option<Arc<Tls>>,
    app: Arc<App>,
    notifier: Arc<Notifier>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = hup.recv() => if r.is_none() { return },
                _ = shutdown.cancelled() => return,
            }
            notifier.reloading();
            if let Some(tls) = &tls {
                match tls.reload() {
                    Ok(()) => {
                        tracing::info!(cert = %tls.cert().display(), "SIGHUP: certificate reloaded")
                    }
                    Err(e) => tracing::error!(
                        error = format!("{e:#}"),
                        "SIGHUP: reload failed, keeping the current certificate"
                    ),
                }
            }
            let status = control.reload(&app).await;
            let line = match &status.error {
                None => "reloaded".to_string(),
                Some(e) => format!("reload refused, running configuration kept: {e}"),
            };
            notifier.ready(&line);
        }
    });
    Ok(())
}
