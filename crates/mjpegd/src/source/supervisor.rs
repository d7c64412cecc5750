//! Keeps a source running for as long as the server runs, whatever the source does.
//!
//! The supervisor opens the source (only while someone watches, in on-demand mode, with a short linger so a
//! reconnecting browser does not reopen a camera), checks every frame before it reaches a client (one that
//! is not a whole JPEG, or whose picture is larger than the configured maximum, is dropped and counted), and
//! publishes it. A source controls every byte it sends, so nothing it says is trusted: a frame header that
//! claims 65535x65535 pixels is dropped, not drawn.
//!
//! Clients are never left without a picture for long: when the source goes silent for the no-signal delay
//! (2 s by default) while its connection stays open, or fails (cannot open, errors, or stays silent for
//! the frame timeout), they are sent a "no signal" frame once a second while the supervisor waits or
//! retries with a back-off capped at a few seconds (and reset after a run that delivered frames);
//! streaming resumes by itself when the source comes back. The "no signal" picture is drawn at a bounded
//! size and encoded on the blocking pool, so the supervisor's other branches (frames, shutdown) stay
//! responsive.
//!
//! Frames are also made fit for every decoder and turned here, once, before the hub: a frame without
//! Huffman tables gets the standard ones ([`mjpegd_core::parse::huffman`]), and a camera with `rotate` or
//! `flip` has each frame turned losslessly on its own worker ([`super::orient`]); a frame that cannot be
//! turned is dropped and counted.
//!
//! When a run of the source ends, its newest frame stops being "live": a client that arrives later waits
//! for the next run's first frame (or "no signal") instead of being handed a picture from minutes ago.

use super::orient::{OrientError, Orientation, Orienter};
use super::{Captured, ErrorKind, Source, SourceError};
use crate::hub::{SharedHub, SourceState};
use crate::render::NoSignal;
use bytes::Bytes;
use mjpegd_core::parse::huffman::add_standard_tables;
use mjpegd_core::parse::jpeg::{check, JpegError};
use mjpegd_core::parse::thumbnail::drop_thumbnails;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::time::Instant;
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
#[derive(Clone, Debug, PartialEq)]
pub struct SupervisorConfig {
    pub capture: Capture,
    /// A source that yields no frame for this long is treated as failed, closed and reopened.
    pub frame_timeout: Duration,
    /// Clients are shown "no signal" once the source has been silent this long (while it is open, and
    /// while a first open is under way).
    pub no_signal_after: Duration,
    /// Longest wait between two attempts to reopen a failed source.
    pub max_backoff: Duration,
    /// Size of the "no signal" frame before the source has told its real size.
    pub placeholder_size: (u32, u32),
    /// How often the "no signal" frame is sent while the source is down.
    pub placeholder_interval: Duration,
    /// Frames whose picture is wider or taller than this are dropped and counted.
    pub max_picture: (u32, u32),
    /// Leave out header segments that carry a picture of their own (EXIF thumbnails), for clients that
    /// cut stills at the first FF D9 ([`mjpegd_core::parse::thumbnail`]).
    pub drop_thumbnails: bool,
    /// How the picture is turned (rotated, flipped) before anyone sees it.
    pub orientation: Orientation,
}

impl Default for SupervisorConfig {
    fn default() -> SupervisorConfig {
        SupervisorConfig {
            capture: Capture::Always,
            frame_timeout: Duration::from_secs(5),
            no_signal_after: Duration::from_secs(2),
            max_backoff: Duration::from_secs(4),
            placeholder_size: (1280, 720),
            placeholder_interval: Duration::from_secs(1),
            max_picture: (8192, 8192),
            drop_thumbnails: false,
            orientation: Orientation::default(),
        }
    }
}

/// The first wait before reopening a failed source (doubled after each failure that delivered nothing).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// A failure that repeats the previous one word for word is logged again only after this long.
const REMIND_AFTER: Duration = Duration::from_secs(600);

enum Stopped {
    /// The source failed; `delivered` says whether this run published any frame.
    Failed {
        error: SourceError,
        delivered: bool,
    },
    Idle,
    Shutdown,
}

/// Runs `source` into `hub` until `shutdown` is cancelled, then closes it.
pub async fn supervise<S: Source>(
    mut source: S,
    hub: Arc<SharedHub>,
    config: SupervisorConfig,
    shutdown: CancellationToken,
) {
    run(&mut source, &hub, &config, &shutdown).await;
    // Whatever the source holds (a child process group, a device, a connection) is released at shutdown
    // too, not left to the process's exit.
    source.close();
    hub.end_run();
    hub.update_source(|s| {
        s.state = SourceState::Idle;
        s.online = false;
    });
}

async fn run<S: Source>(
    source: &mut S,
    hub: &SharedHub,
    config: &SupervisorConfig,
    shutdown: &CancellationToken,
) {
    let mut description = source.describe();
    hub.update_source(|s| {
        s.description = description.clone();
        s.state = SourceState::Idle;
    });
    let mut watchers = hub.watchers();
    let mut placeholder = Placeholder::new(config.placeholder_size);
    let mut backoff = FIRST_BACKOFF;
    let mut failures = 0u64;
    let mut log = FailureLog::default();
    let mut orienter =
        (!config.orientation.is_identity()).then(|| Orienter::new(config.orientation));
    if !config.orientation.is_identity() {
        tracing::info!(source = %description, orientation = %config.orientation, "frames are turned losslessly at the source");
    }
    loop {
        if let Capture::OnDemand { .. } = config.capture {
            hub.update_source(|s| {
                s.state = SourceState::Idle;
                s.online = false;
                s.error = None;
            });
            tokio::select! {
                _ = wait_for_watchers(&mut watchers) => {}
                _ = shutdown.cancelled() => return,
            }
        }
        hub.update_source(|s| s.state = SourceState::Opening);
        // "No signal" during a slow open (a dead upstream's connect timeout): at once after a failure,
        // after the usual delay on a first open.
        let delay = if failures > 0 {
            Duration::ZERO
        } else {
            placeholder.reason = format!("opening {description}");
            config.no_signal_after
        };
        let opened = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            r = source.open() => r,
            _ = placeholder.run(hub, config, Instant::now() + delay, None) => unreachable!(),
        };
        let stopped = match opened {
            Ok(info) => {
                let mut info = info;
                // What opening found out (a relay that turned out to serve stills says so).
                let now = source.describe();
                if now != description {
                    description = now;
                    hub.update_source(|s| s.description = description.clone());
                }
                if config.orientation.swaps_sides() {
                    // Until the first turned frame says exactly (edge blocks may be trimmed).
                    std::mem::swap(&mut info.width, &mut info.height);
                }
                if info.width > 0 && info.height > 0 {
                    tracing::info!(source = %description, width = info.width, height = info.height, fps = info.fps, "source open");
                } else {
                    tracing::info!(source = %description, "source open; its picture size comes with the first frame");
                }
                hub.update_source(|s| {
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
                let stopped = capture(
                    source,
                    hub,
                    config,
                    orienter.as_mut(),
                    &mut placeholder,
                    &mut watchers,
                    shutdown,
                )
                .await;
                source.close();
                stopped
            }
            Err(error) => Stopped::Failed {
                error,
                delivered: false,
            },
        };
        // Whatever this run published is history now, not live video.
        hub.end_run();
        match stopped {
            Stopped::Shutdown => return,
            Stopped::Idle => {
                tracing::info!(source = %description, "no one watching: source closed");
                backoff = FIRST_BACKOFF;
                failures = 0;
            }
            Stopped::Failed { error, .. } if error.kind == ErrorKind::Finished => {
                // Nothing will ever come again (standard input closed): say so once, keep clients on
                // "no signal", and stop retrying.
                tracing::warn!(source = %description, error = %error, "source finished: it will not be reopened");
                placeholder.failed(hub, &error);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = placeholder.run(hub, config, Instant::now(), None) => unreachable!(),
                }
            }
            Stopped::Failed { error, delivered } => {
                if delivered {
                    // A source that worked and then dropped (an upstream that closes after each frame, a
                    // camera replugged) is retried quickly, not after the longest wait.
                    backoff = FIRST_BACKOFF;
                }
                failures += 1;
                log.failed(&description, &error, backoff);
                placeholder.failed(hub, &error);
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                    _ = placeholder.run(hub, config, Instant::now(), None) => unreachable!(),
                }
                backoff = (backoff * 2).min(config.max_backoff);
            }
        }
    }
}

/// Why a frame was not published.
enum Rejected {
    NotJpeg(JpegError),
    TooLarge {
        width: u32,
        height: u32,
    },
    /// libjpeg could not turn it (`rotate`, `flip`).
    Untransformable(OrientError),
}

/// Checks a frame from the source: a whole JPEG, of a picture no larger than allowed. Returns the JPEG
/// alone (cameras may pad a buffer with zeros after EOI), without embedded thumbnails if asked, with the
/// standard Huffman tables if it had none, and its size. A frame that needs none of this is not copied.
fn accept(jpeg: Bytes, config: &SupervisorConfig) -> Result<Accepted, Rejected> {
    let info = check(&jpeg).map_err(Rejected::NotJpeg)?;
    let (width, height) = (info.width as u32, info.height as u32);
    let max = config.max_picture;
    if width == 0 || height == 0 || width > max.0 || height > max.1 {
        return Err(Rejected::TooLarge { width, height });
    }
    let mut jpeg = jpeg;
    jpeg.truncate(info.len);
    let mut thumbnail_dropped = false;
    if config.drop_thumbnails {
        if let Some(slim) = drop_thumbnails(&jpeg).map_err(Rejected::NotJpeg)? {
            jpeg = Bytes::from(slim);
            thumbnail_dropped = true;
        }
    }
    let mut tables_added = false;
    if let Some(whole) = add_standard_tables(&jpeg).map_err(Rejected::NotJpeg)? {
        jpeg = Bytes::from(whole);
        tables_added = true;
    }
    Ok(Accepted {
        jpeg,
        width,
        height,
        thumbnail_dropped,
        tables_added,
    })
}

/// A frame fit to publish.
struct Accepted {
    jpeg: Bytes,
    width: u32,
    height: u32,
    thumbnail_dropped: bool,
    /// It came without Huffman tables and was given the standard ones.
    tables_added: bool,
}

/// The frame turned, and its new size (edge blocks may have been trimmed).
async fn turn(orienter: &mut Orienter, jpeg: Bytes) -> Result<(Bytes, u32, u32), Rejected> {
    let turned = orienter
        .apply(jpeg)
        .await
        .map_err(Rejected::Untransformable)?;
    let info = check(&turned).map_err(Rejected::NotJpeg)?;
    Ok((turned, info.width as u32, info.height as u32))
}

async fn capture<S: Source>(
    source: &mut S,
    hub: &SharedHub,
    config: &SupervisorConfig,
    mut orienter: Option<&mut Orienter>,
    placeholder: &mut Placeholder,
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
    let waiting_first = "source open, no frame yet".to_string();
    let silent = format!(
        "no frame for {}",
        humantime::format_duration(config.no_signal_after)
    );
    let mut last_frame = Instant::now();
    let mut delivered = 0u64;
    let mut size = (0, 0);
    let mut size_changes = SizeChanges::default();
    let mut warned = Warned::default();
    loop {
        let stall = if delivered == 0 {
            &waiting_first
        } else {
            &silent
        };
        // One "no signal" timer per accepted frame, kept across dropped ones: a source that floods
        // garbage cannot restart it (or its drawing) with every frame it sends.
        let silence = placeholder.run(
            hub,
            config,
            last_frame + config.no_signal_after,
            Some(stall),
        );
        tokio::pin!(silence);
        let (jpeg, at, width, height) = loop {
            let frame = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Stopped::Shutdown,
                _ = &mut idle => return Stopped::Idle,
                _ = &mut silence => unreachable!(),
                r = tokio::time::timeout_at(last_frame + config.frame_timeout, source.next_frame()) => r,
            };
            let captured: Captured = match frame {
                Ok(Ok(captured)) => {
                    hub.count_captured();
                    captured
                }
                Ok(Err(error)) => {
                    return Stopped::Failed {
                        error,
                        delivered: delivered > 0,
                    }
                }
                Err(_) => {
                    return Stopped::Failed {
                        error: SourceError::timeout(format!(
                            "no frame for {}",
                            humantime::format_duration(config.frame_timeout)
                        )),
                        delivered: delivered > 0,
                    }
                }
            };
            let a = match accept(captured.jpeg, config) {
                Ok(a) => a,
                Err(rejected) => {
                    warned.count(hub, rejected, config.max_picture);
                    continue;
                }
            };
            if a.thumbnail_dropped || a.tables_added {
                hub.update_source(|s| {
                    s.thumbnails_dropped += u64::from(a.thumbnail_dropped);
                    s.huffman_tables_added += u64::from(a.tables_added);
                });
            }
            let Some(orienter) = orienter.as_deref_mut() else {
                break (a.jpeg, captured.at, a.width, a.height);
            };
            match turn(orienter, a.jpeg).await {
                Ok((jpeg, width, height)) => break (jpeg, captured.at, width, height),
                Err(rejected) => warned.count(hub, rejected, config.max_picture),
            }
        };
        // The placeholder started (and marked the source stalled) only if this frame came after the
        // no-signal delay.
        let was_silent = last_frame.elapsed() >= config.no_signal_after;
        if delivered == 0 || was_silent || size != (width, height) {
            if delivered == 0 {
                tracing::info!(source = %hub.source().description, width, height, "source online");
            } else if size != (width, height) {
                size_changes.note(&hub.source().description, width, height);
            }
            size = (width, height);
            let first_seq = (delivered == 0).then(|| hub.next_seq());
            hub.update_source(|s| {
                if first_seq.is_some() {
                    s.run_first_seq = first_seq;
                }
                s.online = true;
                s.state = SourceState::Online;
                s.error = None;
                s.width = width;
                s.height = height;
            });
        }
        hub.publish(jpeg, at);
        delivered += 1;
        last_frame = Instant::now();
    }
}

/// Counts dropped frames; each cause is logged at warn the first time, at debug after.
#[derive(Default)]
struct Warned {
    not_jpeg: bool,
    too_large: bool,
    untransformable: bool,
}

impl Warned {
    fn count(&mut self, hub: &SharedHub, rejected: Rejected, max: (u32, u32)) {
        match rejected {
            Rejected::NotJpeg(e) => {
                hub.update_source(|s| s.dropped_not_jpeg += 1);
                if !std::mem::replace(&mut self.not_jpeg, true) {
                    tracing::warn!(error = %e, "dropped a frame that is not a whole JPEG (counted in /state; further ones logged at debug)");
                } else {
                    tracing::debug!(error = %e, "dropped a frame that is not a whole JPEG");
                }
            }
            Rejected::TooLarge { width, height } => {
                hub.update_source(|s| s.dropped_too_large += 1);
                let max = format!("{}x{}", max.0, max.1);
                if !std::mem::replace(&mut self.too_large, true) {
                    tracing::warn!(width, height, %max, "dropped a frame whose picture is larger than --max-picture-size (counted in /state; further ones logged at debug)");
                } else {
                    tracing::debug!(width, height, %max, "dropped a frame larger than --max-picture-size");
                }
            }
            Rejected::Untransformable(e) => {
                hub.update_source(|s| s.dropped_untransformable += 1);
                if !std::mem::replace(&mut self.untransformable, true) {
                    tracing::warn!(error = %e, "dropped a frame that could not be rotated or flipped (counted in /state; further ones logged at debug)");
                } else {
                    tracing::debug!(error = %e, "dropped a frame that could not be rotated or flipped");
                }
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

/// Logs a source's failures: each new one at warn, and one that repeats the previous word for word only
/// once per [`REMIND_AFTER`] with how often it recurred (a closed stdin or an unplugged camera fails the
/// same way at every retry).
#[derive(Default)]
struct FailureLog {
    last: Option<String>,
    repeats: u64,
    since: Option<Instant>,
}

impl FailureLog {
    fn failed(&mut self, source: &str, error: &SourceError, retry_in: Duration) {
        let message = error.to_string();
        let recent = self.since.is_some_and(|t| t.elapsed() < REMIND_AFTER);
        if self.last.as_deref() == Some(message.as_str()) && recent {
            self.repeats += 1;
            tracing::debug!(source, error = %message, retry_in = ?retry_in, "source failed again");
            return;
        }
        if self.repeats > 0 && self.last.as_deref() == Some(message.as_str()) {
            tracing::warn!(source, error = %message, retry_in = ?retry_in, repeated = self.repeats, "source still failing");
        } else {
            tracing::warn!(source, error = %message, retry_in = ?retry_in, "source failed");
        }
        self.last = Some(message);
        self.repeats = 0;
        self.since = Some(Instant::now());
    }
}

/// The "no signal" frame, drawn at the source's size (bounded) with the reason it is down.
struct Placeholder {
    fallback_size: (u32, u32),
    reason: String,
    /// Shared with the blocking pool while a frame is drawn there; None if it could not be made.
    painter: Option<Arc<Mutex<NoSignal>>>,
}

impl Placeholder {
    fn new(fallback_size: (u32, u32)) -> Placeholder {
        Placeholder {
            fallback_size,
            reason: String::from("waiting for the source"),
            painter: NoSignal::new().ok().map(|p| Arc::new(Mutex::new(p))),
        }
    }

    /// The source failed: the picture says why, and so does `/state`.
    fn failed(&mut self, hub: &SharedHub, error: &SourceError) {
        let message = error.to_string();
        self.reason = message.clone();
        hub.update_source(|s| {
            s.online = false;
            s.state = SourceState::Offline;
            s.error = Some(message.clone());
            s.last_error = Some(message);
            s.last_error_at = Some(SystemTime::now());
        });
    }

    /// From `start`, publishes the frame every interval, forever (the caller races it against what it
    /// waits for). With `stall`, the source is marked stalled for that reason when the first one goes out.
    async fn run(
        &mut self,
        hub: &SharedHub,
        config: &SupervisorConfig,
        start: Instant,
        stall: Option<&str>,
    ) {
        tokio::time::sleep_until(start).await;
        if let Some(reason) = stall {
            self.reason = reason.to_string();
            tracing::warn!(source = %hub.source().description, reason, "source silent: clients are shown \"no signal\"");
            hub.update_source(|s| {
                s.online = false;
                s.state = SourceState::Stalled;
                s.error = Some(reason.to_string());
            });
        }
        let Some(painter) = self.painter.clone() else {
            return std::future::pending().await;
        };
        let mut ticker = tokio::time::interval(config.placeholder_interval);
        loop {
            ticker.tick().await;
            // The source's last known size, so the picture does not jump when it fails.
            let status = hub.source();
            let (w, h) = if status.width > 0 && status.height > 0 {
                (status.width, status.height)
            } else {
                self.fallback_size
            };
            let reason = self.reason.clone();
            let painter = painter.clone();
            let now = SystemTime::now();
            let drawn = tokio::task::spawn_blocking(move || {
                let mut p = painter.lock().unwrap_or_else(|e| e.into_inner());
                p.frame(w, h, &reason, now)
            })
            .await;
            match drawn {
                Ok(Ok(jpeg)) => {
                    hub.publish(jpeg, now);
                }
                Ok(Err(e)) => tracing::error!(error = %e, "cannot draw the no-signal frame"),
                Err(e) => tracing::error!(error = %e, "drawing the no-signal frame failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{Canvas, JpegEncoder};

    /// A small real JPEG whose frame header claims `w` x `h`.
    fn claiming(w: u16, h: u16) -> Vec<u8> {
        let mut jpeg = JpegEncoder::new(50)
            .unwrap()
            .encode(&Canvas::new(32, 16))
            .unwrap()
            .to_vec();
        let sof = jpeg
            .windows(2)
            .position(|m| m == [0xFF, 0xC0])
            .expect("baseline SOF");
        jpeg[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
        jpeg[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
        jpeg
    }

    #[test]
    fn frames_larger_than_the_maximum_are_rejected() {
        let max = SupervisorConfig::default();
        assert_eq!(max.max_picture, (8192, 8192));
        let max = &max;
        assert!(accept(Bytes::from(claiming(640, 480)), max).is_ok());
        assert!(accept(Bytes::from(claiming(8192, 8192)), max).is_ok());
        for (w, h) in [(65535, 65535), (8193, 10), (10, 8193), (0, 480)] {
            assert!(
                matches!(
                    accept(Bytes::from(claiming(w, h)), max),
                    Err(Rejected::TooLarge { .. })
                ),
                "{w}x{h}"
            );
        }
        assert!(matches!(
            accept(Bytes::from_static(b"not a jpeg"), max),
            Err(Rejected::NotJpeg(_))
        ));
    }

    /// `jpeg` without its DHT segments.
    fn without_tables(jpeg: &[u8]) -> Vec<u8> {
        let mut out = jpeg[..2].to_vec();
        let mut pos = 2;
        loop {
            let marker = jpeg[pos + 1];
            if marker == 0xDA {
                out.extend_from_slice(&jpeg[pos..]);
                return out;
            }
            let len = u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]) as usize;
            if marker != 0xC4 {
                out.extend_from_slice(&jpeg[pos..pos + 2 + len]);
            }
            pos += 2 + len;
        }
    }

    #[test]
    fn a_frame_without_tables_gets_the_standard_ones_and_decodes_the_same() {
        let original = crate::source::orient::tests::picture(64, 48);
        let bare = without_tables(&original);
        assert!(bare.len() < original.len() && !bare.windows(2).any(|w| w == [0xFF, 0xC4]));
        let config = SupervisorConfig::default();
        let fixed = accept(Bytes::from(bare.clone()), &config).ok().unwrap();
        assert!(fixed.tables_added);
        let decode = |j: &[u8]| turbojpeg::decompress(j, turbojpeg::PixelFormat::RGB).unwrap();
        let (a, b) = (decode(&original), decode(&fixed.jpeg));
        assert_eq!((a.width, a.height), (b.width, b.height));
        assert!(
            a.pixels == b.pixels,
            "the standard tables decode to the same picture"
        );
        // A frame with its tables is passed on as it came: the same bytes, not a copy.
        let with = Bytes::from(original);
        let kept = accept(with.clone(), &config).ok().unwrap();
        assert!(!kept.tables_added);
        assert_eq!(kept.jpeg.as_ptr(), with.as_ptr());
        assert_eq!(kept.jpeg, with);
    }
}

/// Picture size changes within a run, logged at most once per [`SizeChanges::EVERY`] with how many there
/// were: a source that alternates sizes frame by frame must not write a log line per frame.
#[derive(Default)]
struct SizeChanges {
    last_log: Option<Instant>,
    unlogged: u64,
}

impl SizeChanges {
    const EVERY: Duration = Duration::from_secs(60);

    fn note(&mut self, source: &str, width: u32, height: u32) {
        self.unlogged += 1;
        if self.last_log.is_none_or(|t| t.elapsed() >= Self::EVERY) {
            tracing::info!(
                source,
                width,
                height,
                changes = self.unlogged,
                "the source's picture size changed"
            );
            self.unlogged = 0;
            self.last_log = Some(Instant::now());
        }
    }
}
