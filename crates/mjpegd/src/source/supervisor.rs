//! Keeps a source running for as long as the server runs, whatever the source does.
//!
//! The supervisor opens the source (only while someone watches, in on-demand mode, with a short linger so a
//! reconnecting browser does not reopen a camera), checks every frame is a whole JPEG before it reaches a
//! client (a broken one is dropped and counted), and publishes it. When the source fails (cannot open,
//! errors, or goes silent for longer than the frame timeout), clients stay connected: they are sent a "no
//! signal" frame once a second while the supervisor retries with a back-off capped at a few seconds, and
//! streaming resumes by itself when the source comes back.

use super::{Source, SourceError, SourceInfo};
use crate::hub::SharedHub;
use crate::render::{no_signal, JpegEncoder};
use mjpegd_core::parse::jpeg::check;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// When the source is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    /// From start to shutdown.
    Always,
    /// Only while at least one client wants frames, and for `linger` after the last leaves.
    OnDemand { linger: Duration },
}

/// How the supervisor treats its source.
#[derive(Clone, Debug)]
pub struct SupervisorConfig {
    pub capture: Capture,
    /// A source that yields no frame for this long is treated as failed.
    pub frame_timeout: Duration,
    /// Longest wait between two attempts to reopen a failed source.
    pub max_backoff: Duration,
    /// Size of the "no signal" frame before the source has told its real size.
    pub placeholder_size: (u32, u32),
    /// How often the "no signal" frame is sent while the source is down.
    pub placeholder_interval: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> SupervisorConfig {
        SupervisorConfig {
            capture: Capture::Always,
            frame_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(4),
            placeholder_size: (1280, 720),
            placeholder_interval: Duration::from_secs(1),
        }
    }
}

enum Stopped {
    Failed(SourceError),
    Idle,
    Shutdown,
}

/// Runs `source` into `hub` until `shutdown` is cancelled.
pub async fn supervise<S: Source>(
    mut source: S,
    hub: Arc<SharedHub>,
    config: SupervisorConfig,
    shutdown: CancellationToken,
) {
    let description = source.describe();
    hub.update_source(|s| {
        s.description = description.clone();
        s.state = "idle";
    });
    let mut watchers = hub.watchers();
    let mut placeholder = Placeholder::new(config.placeholder_size);
    let mut backoff = Duration::from_millis(250);
    let mut failures = 0u64;
    loop {
        if let Capture::OnDemand { .. } = config.capture {
            hub.update_source(|s| {
                s.state = "idle";
                s.online = false;
            });
            tokio::select! {
                _ = wait_for_watchers(&mut watchers) => {}
                _ = shutdown.cancelled() => return,
            }
        }
        hub.update_source(|s| s.state = "opening");
        let opened = tokio::select! {
            r = source.open() => r,
            _ = shutdown.cancelled() => return,
            // Keep "no signal" going while a slow open (a dead upstream's connect timeout) is under way.
            _ = placeholder.run(&hub, &config, failures > 0) => unreachable!(),
        };
        let stopped = match opened {
            Ok(info) => {
                tracing::info!(source = %description, width = info.width, height = info.height, fps = info.fps, "source online");
                hub.update_source(|s| {
                    s.online = true;
                    s.state = "online";
                    // Relays and pipes learn their size from the first frame (see `capture`).
                    if info.width > 0 && info.height > 0 {
                        s.width = info.width;
                        s.height = info.height;
                    }
                    s.encoder = info.encoder;
                    s.granted_fps = info.fps;
                    if failures > 0 {
                        s.reconnects += 1;
                    }
                });
                let stopped =
                    capture(&mut source, &hub, &config, &info, &mut watchers, &shutdown).await;
                source.close();
                stopped
            }
            Err(e) => Stopped::Failed(e),
        };
        match stopped {
            Stopped::Shutdown => return,
            Stopped::Idle => {
                tracing::info!(source = %description, "no one watching: source closed");
                backoff = Duration::from_millis(250);
                failures = 0;
            }
            Stopped::Failed(e) => {
                failures += 1;
                tracing::warn!(source = %description, error = %e, retry_in = ?backoff, "source failed");
                placeholder.reason = e.to_string();
                hub.update_source(|s| {
                    s.online = false;
                    s.state = "offline";
                    s.last_error = Some(e.to_string());
                });
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = placeholder.run(&hub, &config, true) => unreachable!(),
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(config.max_backoff);
            }
        }
    }
}

async fn capture<S: Source>(
    source: &mut S,
    hub: &SharedHub,
    config: &SupervisorConfig,
    _info: &SourceInfo,
    watchers: &mut watch::Receiver<usize>,
    shutdown: &CancellationToken,
) -> Stopped {
    let linger = match config.capture {
        Capture::OnDemand { linger } => Some(linger),
        Capture::Always => None,
    };
    let idle = async {
        match linger {
            Some(linger) => wait_idle(watchers, linger).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(idle);
    let mut first = true;
    loop {
        let frame = tokio::select! {
            r = tokio::time::timeout(config.frame_timeout, source.next_frame()) => r,
            _ = &mut idle => return Stopped::Idle,
            _ = shutdown.cancelled() => return Stopped::Shutdown,
        };
        match frame {
            Ok(Ok(captured)) => match check(&captured.jpeg) {
                Ok(info) => {
                    if first {
                        first = false;
                        // Sources that learn their size from the frames (relays, pipes) report it now.
                        hub.update_source(|s| {
                            s.width = info.width as u32;
                            s.height = info.height as u32;
                        });
                    }
                    // Cameras may pad a buffer with zeros after EOI: serve the JPEG alone.
                    let mut jpeg = captured.jpeg;
                    jpeg.truncate(info.len);
                    hub.publish(jpeg, captured.at);
                }
                Err(e) => {
                    hub.update_source(|s| s.dropped_frames += 1);
                    tracing::debug!(len = captured.jpeg.len(), error = %e, "dropped a frame that is not a whole JPEG");
                }
            },
            Ok(Err(e)) => return Stopped::Failed(e),
            Err(_) => {
                return Stopped::Failed(SourceError(format!(
                    "no frame for {:?}",
                    config.frame_timeout
                )))
            }
        }
    }
}

async fn wait_for_watchers(watchers: &mut watch::Receiver<usize>) {
    // An Err means the hub is gone; then there is nothing to wait for.
    let _gone = watchers.wait_for(|n| *n > 0).await.is_err();
}

/// Returns once no one has watched for `linger`.
async fn wait_idle(watchers: &mut watch::Receiver<usize>, linger: Duration) {
    loop {
        let gone = watchers.wait_for(|n| *n == 0).await.is_err();
        if gone {
            return std::future::pending().await;
        }
        let gone = tokio::select! {
            _ = tokio::time::sleep(linger) => return,
            r = watchers.wait_for(|n| *n > 0) => r.is_err(),
        };
        if gone {
            return std::future::pending().await;
        }
    }
}

/// The "no signal" frame, drawn at the source's size with the reason it is down.
struct Placeholder {
    size: (u32, u32),
    reason: String,
    encoder: Option<JpegEncoder>,
}

impl Placeholder {
    fn new(size: (u32, u32)) -> Placeholder {
        Placeholder {
            size,
            reason: String::from("waiting for the source"),
            encoder: None,
        }
    }

    /// Publishes the frame every interval, forever (the caller races it against what it waits for).
    /// Does nothing if `active` is false.
    async fn run(&mut self, hub: &SharedHub, config: &SupervisorConfig, active: bool) {
        if !active {
            return std::future::pending().await;
        }
        let mut ticker = tokio::time::interval(config.placeholder_interval);
        loop {
            ticker.tick().await;
            let encoder = match &mut self.encoder {
                Some(e) => e,
                None => match JpegEncoder::new(70) {
                    Ok(e) => self.encoder.insert(e),
                    Err(_) => return std::future::pending().await,
                },
            };
            let now = SystemTime::now();
            // The source's last known size, so the picture does not jump when it fails.
            let status = hub.source();
            let (w, h) = if status.width > 0 && status.height > 0 {
                (status.width, status.height)
            } else {
                self.size
            };
            match no_signal(encoder, w, h, &self.reason, now) {
                Ok(jpeg) => {
                    hub.publish(jpeg, now);
                }
                Err(e) => tracing::error!(error = %e, "cannot draw the no-signal frame"),
            }
        }
    }
}
