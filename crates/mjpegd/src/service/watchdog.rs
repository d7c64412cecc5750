//! The systemd watchdog (`WatchdogSec=`): `WATCHDOG=1` every half interval, but only while the server
//! really works.
//!
//! A timer thread pinging on its own would keep a wedged server alive forever. So each ping is earned by
//! a liveness check that goes through what serving needs: the check runs as a task on the runtime (a
//! runtime that no longer schedules tasks sends nothing), each listener's accept loop must answer a probe
//! between two connections (a loop stuck anywhere misses it), and each camera's hub lock must be free
//! (taken only for the few instructions of a decision, so a lock that stays taken means a stuck hub).
//! Each part has a quarter of the interval to answer; when one does not, the ping is withheld, the cause
//! logged, and systemd restarts the service at the end of the interval (`Restart=on-failure`).
//!
//! `WATCHDOG_USEC` is checked at startup: a whole number of microseconds from [`MIN_INTERVAL`] to
//! [`MAX_INTERVAL`]; a `WATCHDOG_PID` naming another process means the watchdog is not this process's.

use crate::http::app::App;
use crate::hub::SharedHub;
use crate::service::notify::Notifier;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Shortest watchdog interval accepted (pings every 50 ms).
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Longest watchdog interval accepted.
pub const MAX_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The watchdog interval systemd asks for, if any.
pub fn interval_from_env() -> anyhow::Result<Option<Duration>> {
    let var = |name: &str| match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(anyhow::anyhow!("{name} is not valid text")),
    };
    let Some(usec) = var("WATCHDOG_USEC")? else {
        return Ok(None);
    };
    if let Some(pid) = var("WATCHDOG_PID")? {
        let pid: u32 = pid
            .parse()
            .map_err(|_| anyhow::anyhow!("WATCHDOG_PID={pid:?}: expected a process id"))?;
        if pid != std::process::id() {
            return Ok(None);
        }
    }
    let interval = usec
        .parse::<u64>()
        .ok()
        .map(Duration::from_micros)
        .filter(|d| (MIN_INTERVAL..=MAX_INTERVAL).contains(d))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "WATCHDOG_USEC={usec:?}: expected microseconds from {} to {}",
                MIN_INTERVAL.as_micros(),
                MAX_INTERVAL.as_micros()
            )
        })?;
    Ok(Some(interval))
}

/// The accept loop's end of a probe: answer each request between two connections.
pub struct AcceptProbe(mpsc::Receiver<oneshot::Sender<()>>);

impl AcceptProbe {
    /// The next probe to answer (never, once the watchdog is gone).
    pub async fn recv(&mut self) -> Option<oneshot::Sender<()>> {
        self.0.recv().await
    }
}

/// The watchdog's end of an accept loop's probe.
pub struct AcceptProber {
    listener: String,
    tx: mpsc::Sender<oneshot::Sender<()>>,
}

/// A probe pair for the accept loop of `listener` (its name in the log).
pub fn accept_probe(listener: String) -> (AcceptProber, AcceptProbe) {
    let (tx, rx) = mpsc::channel(1);
    (AcceptProber { listener, tx }, AcceptProbe(rx))
}

/// Everything a ping goes through.
pub struct Liveness {
    pub accept_loops: Vec<AcceptProber>,
    pub app: Arc<App>,
}

impl Liveness {
    /// Whether every accept loop answers and every camera's hub lock is free within `within`; the error
    /// says what did not.
    pub async fn check(&self, within: Duration) -> Result<(), String> {
        let hubs: Vec<(String, Arc<SharedHub>)> = self
            .app
            .cameras()
            .iter()
            .map(|c| (c.name().to_string(), c.hub.clone()))
            .collect();
        check(&self.accept_loops, &hubs, within).await
    }
}

/// The liveness check itself (see the module doc).
pub async fn check(
    accept_loops: &[AcceptProber],
    hubs: &[(String, Arc<SharedHub>)],
    within: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + within;
    let mut answers = Vec::with_capacity(accept_loops.len());
    for probe in accept_loops {
        let (reply, answer) = oneshot::channel();
        // A full queue is a probe from an earlier check still unanswered.
        if probe.tx.try_send(reply).is_err() {
            return Err(format!(
                "the accept loop of {} has not answered an earlier probe",
                probe.listener
            ));
        }
        answers.push((probe, answer));
    }
    for (probe, answer) in answers {
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(format!("the accept loop of {} is gone", probe.listener)),
            Err(_) => {
                return Err(format!(
                    "the accept loop of {} did not answer within {within:?}",
                    probe.listener
                ))
            }
        }
    }
    for (name, hub) in hubs {
        while !hub.is_unlocked() {
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "camera {name}: its hub stayed locked for {within:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok(())
}

/// Pings systemd every half `interval` while [`Liveness::check`] passes, until `shutdown`.
pub fn spawn(
    notifier: Arc<Notifier>,
    interval: Duration,
    liveness: Liveness,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            match liveness.check(interval / 4).await {
                Ok(()) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("liveness check passes again: watchdog pings resume");
                    }
                    notifier.watchdog();
                }
                Err(why) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::error!(%why, "liveness check failed: watchdog ping withheld (systemd restarts the service if this lasts)");
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use mjpegd_core::HubConfig;

    fn hub() -> Arc<SharedHub> {
        SharedHub::new(HubConfig::default(), Default::default())
    }

    #[tokio::test]
    async fn a_ping_needs_every_accept_loop_to_answer() {
        let (answered, mut probe) = accept_probe("http://127.0.0.1:1".into());
        let (stuck, _unserved) = accept_probe("unix:/stuck.sock".into());
        tokio::spawn(async move {
            while let Some(reply) = probe.recv().await {
                let _ = reply.send(());
            }
        });
        let within = Duration::from_millis(100);
        assert_eq!(
            check(std::slice::from_ref(&answered), &[], within).await,
            Ok(())
        );
        assert_eq!(
            check(std::slice::from_ref(&answered), &[], within).await,
            Ok(())
        );
        let both = [answered, stuck];
        let e = check(&both, &[], within).await.unwrap_err();
        assert!(
            e.contains("unix:/stuck.sock") && e.contains("did not answer"),
            "{e}"
        );
        // The stuck loop still holds the first probe: the next check fails at once.
        let e = check(&both, &[], within).await.unwrap_err();
        assert!(e.contains("earlier probe"), "{e}");
    }

    #[tokio::test]
    async fn a_ping_needs_every_hub_lock_to_be_free() {
        let (free, busy) = (hub(), hub());
        let hubs = [("a".to_string(), free), ("b".to_string(), busy.clone())];
        let within = Duration::from_millis(100);
        assert_eq!(check(&[], &hubs, within).await, Ok(()));
        let held = busy.clone();
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _guard = held.hold_lock();
            locked_tx.send(()).unwrap();
            let _ = release_rx.recv();
        });
        locked_rx.recv().unwrap();
        let e = check(&[], &hubs, within).await.unwrap_err();
        assert!(e.contains("camera b") && e.contains("locked"), "{e}");
        release_tx.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(check(&[], &hubs, within).await, Ok(()));
    }
}
