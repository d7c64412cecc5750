//! Timelapses: one frame per `timelapse-every` kept into Matroska segments, so a year of a construction
//! site fits on a small disk.
//!
//! The writer is an `all` client of the camera's hub: it looks at every frame's capture time (cheap) and
//! keeps the one captured closest to each tick of a grid `timelapse-every` apart ([`keep`]), so a write
//! that takes a while never makes it miss the frame of a tick (only the kept frames are written). Frames keep their real capture times in the file, so a player (or replay at a chosen
//! speed) sees the real spacing. A segment holds [`SEGMENT`] of capture time (a new one also starts when
//! the picture size changes); names are `NAME-20261124T170312.345Z-lapse.mkv`, a camera's timelapses being
//! exactly the names of that form ([`lapse_start`]). The retention keys (`record-keep`, `record-max-size`)
//! apply to the timelapse folder. File work is on the blocking pool; a write that fails loses that frame
//! (counted) and the next one tries a new file.

use crate::hub::{ClientMeta, SharedHub};
use crate::record::{prune_matching, segment_name, segment_start, Segment};
use mjpegd_core::parse::jpeg::check;
use mjpegd_core::Policy;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// Where and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelapseSettings {
    pub dir: PathBuf,
    pub every: Duration,
    /// `record-keep` and `record-max-size`, for this folder.
    pub keep: Option<Duration>,
    pub max_size: Option<u64>,
}

/// `timelapse-every` when the file does not say.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(10);
/// Capture time per timelapse segment.
pub const SEGMENT: Duration = Duration::from_secs(86_400);

/// `camera`'s timelapse segment whose first frame was captured at `start_us`.
pub fn lapse_name(camera: &str, start_us: u64) -> String {
    let seg = segment_name(camera, start_us);
    format!("{}-lapse.mkv", seg.strip_suffix(".mkv").unwrap_or(&seg))
}

/// The start time in `file` if it is one of `camera`'s timelapse names, exactly as [`lapse_name`] makes
/// them.
pub fn lapse_start(file: &str, camera: &str) -> Option<SystemTime> {
    let stem = file.strip_suffix("-lapse.mkv")?;
    segment_start(&format!("{stem}.mkv"), camera)
}

/// Whether a frame captured at `ts` (`gap` after the one before it) is the one to keep for the tick `due`
/// (None: the first frame, kept), and if so the next tick. Ticks are `every` apart on a fixed grid, so
/// the spacing does not drift; the frame kept for a tick is the first one captured less than half a
/// source frame before it (the one closest to it, whichever side: a source whose frames come exactly
/// `every` / n apart, with jitter, is not pushed to the frame after). A tick missed altogether (the source
/// paused) restarts the grid at the next frame.
pub fn keep(due: Option<u64>, ts: u64, gap: Option<u64>, every: u64) -> Option<u64> {
    let slack = gap.map_or(0, |g| (g / 2).min(every / 2));
    match due {
        Some(d) if ts.saturating_add(slack) < d => None,
        Some(d) if ts < d.saturating_add(every) => Some(d.saturating_add(every)),
        _ => Some(ts.saturating_add(every)),
    }
}

/// What a camera's timelapse is doing, for `/state` and `/recordings`.
#[derive(Clone, Debug, Default)]
pub struct TimelapseStatus {
    pub dir: PathBuf,
    pub segment: Option<String>,
    pub frames_written: u64,
    pub frames_lost: u64,
    pub bytes: u64,
    pub last_error: Option<String>,
    /// Frames of the segments this run wrote (the newest 1000), by name.
    pub frames_by_segment: std::collections::VecDeque<(String, u64)>,
}

fn remember(s: &mut TimelapseStatus, seg: &Segment) {
    if s.frames_by_segment.len() >= 1000 {
        s.frames_by_segment.pop_front();
    }
    s.frames_by_segment
        .push_back((seg.name().to_string(), seg.frames()));
}

/// Keeps one of `hub`'s frames per interval until `stop` is cancelled.
pub async fn run(
    camera: String,
    hub: Arc<SharedHub>,
    settings: TimelapseSettings,
    status: Arc<Mutex<TimelapseStatus>>,
    stop: CancellationToken,
) {
    let update = |f: &mut dyn FnMut(&mut TimelapseStatus)| {
        f(&mut status.lock().unwrap_or_else(|e| e.into_inner()))
    };
    update(&mut |s| s.dir = settings.dir.clone());
    let subscribe = || {
        hub.subscribe(ClientMeta {
            addr: "0.0.0.0:0".parse().expect("an address"),
            policy: Policy::All,
            fps_cap: None,
            user_agent: "mjpegd timelapse".into(),
            stop: stop.child_token(),
        })
    };
    let mut sub = subscribe();
    let every = settings.every.as_micros() as u64;
    let segment_us = SEGMENT.as_micros() as u64;
    let mut due: Option<u64> = None;
    let mut prev: Option<u64> = None;
    let mut file: Option<Segment> = None;
    loop {
        let frame = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = sub.next() => match r {
                Ok(f) => f,
                Err(cause) => {
                    // A disk behind by more than --buffer-memory: the ticks it missed are gone; it goes on
                    // with the newest frames.
                    tracing::warn!(camera = %camera, %cause, "timelapse fell behind: it resumes with the newest frames");
                    sub = subscribe();
                    continue;
                }
            },
        };
        let ts = frame.timestamp_us;
        let gap = prev.map(|p: u64| ts.saturating_sub(p));
        prev = Some(ts);
        match keep(due, ts, gap, every) {
            Some(next) => due = Some(next),
            None => continue,
        }
        let Ok(info) = check(&frame.jpeg) else {
            continue;
        };
        let size = (info.width, info.height);
        let (dir, name) = (settings.dir.clone(), camera.clone());
        let current = file.take();
        let rotate = current.as_ref().is_some_and(|s| {
            let start = lapse_start(s.name(), &camera).map_or(0, |t| {
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_micros() as u64
            });
            // (names keep milliseconds: the start is within one of the first frame's)
            frame.timestamp_us >= start.saturating_add(segment_us) || s.size() != size
        });
        let (current, old) = if rotate {
            (None, current)
        } else {
            (current, None)
        };
        if let Some(old) = &old {
            update(&mut |s| remember(s, old));
        }
        let f = frame.clone();
        let done = tokio::task::spawn_blocking(move || {
            if let Some(old) = old {
                let _ = old.close();
            }
            let (mut seg, opened) = match current {
                Some(seg) => (seg, false),
                None => {
                    let n = lapse_name(&name, f.timestamp_us);
                    let title = format!("{name} timelapse");
                    (
                        Segment::open_as(&dir, n, title, f.timestamp_us, size)?,
                        true,
                    )
                }
            };
            let n = seg.write(&f)?;
            std::io::Result::Ok((seg, n, opened))
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        match done {
            Ok((seg, n, opened)) => {
                if opened {
                    let current = seg.name().to_string();
                    update(&mut |s| s.segment = Some(current.clone()));
                    if settings.keep.is_some() || settings.max_size.is_some() {
                        let (dir, cam) = (settings.dir.clone(), camera.clone());
                        let (keep, max) = (settings.keep, settings.max_size);
                        let gone = tokio::task::spawn_blocking(move || {
                            prune_matching(
                                &dir,
                                |f| lapse_start(f, &cam).is_some(),
                                Some(&current),
                                keep,
                                max,
                                SystemTime::now(),
                            )
                        })
                        .await;
                        if let Ok(Ok(gone)) = gone {
                            if !gone.is_empty() {
                                tracing::info!(camera = %camera, deleted = ?gone, "old timelapses deleted (record-keep / record-max-size)");
                            }
                        }
                    }
                }
                file = Some(seg);
                update(&mut |s| {
                    s.frames_written += 1;
                    s.bytes += n as u64;
                });
            }
            Err(e) => {
                tracing::warn!(camera = %camera, error = %e, "timelapse: a write failed; the frame is lost");
                update(&mut |s| {
                    s.frames_lost += 1;
                    s.segment = None;
                    s.last_error = Some(e.to_string());
                });
            }
        }
    }
    if let Some(seg) = file {
        update(&mut |s| {
            remember(s, &seg);
            s.segment = None;
        });
        let _ = tokio::task::spawn_blocking(move || seg.close()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cameras_timelapses_are_its_names_of_exactly_that_form() {
        let name = lapse_name("yard", 1_795_539_792_345_000);
        assert_eq!(name, "yard-20261124T170312.345Z-lapse.mkv");
        assert!(lapse_start(&name, "yard").is_some());
        assert!(lapse_start(&name, "yar").is_none());
        assert!(lapse_start("yard-b-20261124T170312.345Z-lapse.mkv", "yard").is_none());
        assert!(segment_start(&name, "yard").is_none());
        assert!(crate::events::event_of(&name, "yard").is_none());
    }

    #[test]
    fn one_frame_per_tick_on_a_grid_that_does_not_drift() {
        // A 10 fps source whose frames come a little early or late; a 200 ms timelapse keeps every
        // second frame, never the one after the tick because its frame came 0.2 ms early.
        let times = [
            0u64, 99_800, 199_800, 299_900, 400_100, 499_700, 599_600, 700_300, 800_000,
        ];
        let (mut due, mut prev, mut kept) = (None, None, Vec::new());
        for ts in times {
            let gap = prev.map(|p| ts - p);
            prev = Some(ts);
            if let Some(next) = keep(due, ts, gap, 200_000) {
                due = Some(next);
                kept.push(ts);
            }
        }
        assert_eq!(kept, [0, 199_800, 400_100, 599_600, 800_000]);
        // A pause longer than a tick: the grid starts again at the next frame.
        assert_eq!(
            keep(Some(1_000_000), 1_650_000, Some(700_000), 200_000),
            Some(1_850_000)
        );
    }
}
