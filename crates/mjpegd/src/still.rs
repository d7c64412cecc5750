//! A snapshot's frame: as fresh as the client asked, at the size it asked.
//!
//! Without conditions a snapshot is the newest frame of the source's current run (or the first to come).
//! Conditions narrow which frame will do, and the snapshot waits for the first that does:
//! - `?after=SEQ`: numbered above SEQ (the page's long polls; waits up to 5 s);
//! - `?max_delay=MS` (camera-streamer's parameter): captured at most MS before the request arrived, so
//!   `max_delay=0` is the first frame captured after it (a timelapse's frame is taken when it asked, not
//!   whenever the camera last sent one);
//! - warm-up: a snapshot that finds an on-demand camera idle starts it and lets `--warmup-frames` frames
//!   of the new run go by (a real camera's auto-exposure needs a few) before it takes one.
//!
//! These wait at most `--snapshot-timeout` (2 s), then the caller answers 503 with the reason.
//!
//! At a size or quality ([`VariantKey`]), a running variant's frame is taken as it is; otherwise the
//! chosen frame is transcoded once, on the same bounded pool the variants use, in the camera's snapshot
//! lane: when [`SNAPSHOT_QUEUE`](crate::variant::transcode::SNAPSHOT_QUEUE) snapshots of the camera already
//! wait for a turn, the reason comes back at once (a crowd of sized snapshots gets 503s, not a queue that
//! starves the variants). Either way it keeps the original's number and capture time.

use crate::camera::Camera;
use crate::hub::SourceState;
use crate::source::supervisor::Capture;
use crate::variant::transcode::TranscodePool;
use mjpegd_core::transcode_queue::Lane;
use mjpegd_core::variant::VariantKey;
use mjpegd_core::Frame;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What a snapshot asks for.
#[derive(Clone, Copy, Debug)]
pub struct Ask {
    pub after: Option<u64>,
    pub max_delay: Option<Duration>,
    /// When the request arrived (its head was read).
    pub arrived: SystemTime,
    /// A size or quality other than the original's.
    pub variant: Option<VariantKey>,
}

/// How long each kind of snapshot waits.
#[derive(Clone, Copy, Debug)]
pub struct Waits {
    /// `--snapshot-timeout`: a first frame, a `max_delay` frame, warm-up, a transcode's turn.
    pub snapshot: Duration,
    /// An `?after=` long poll.
    pub long_poll: Duration,
}

/// Frames an idle on-demand camera's new run must let go by.
#[derive(Clone, Copy, Debug)]
struct Warmup {
    /// The camera hub's next number when the snapshot arrived: the new run's first frame is at or above.
    from: u64,
    frames: u64,
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// The frame for `ask`, or the reason there is none in time (for the 503).
pub async fn still(camera: &Camera, ask: &Ask, waits: Waits) -> Result<Arc<Frame>, String> {
    let hub = &camera.hub;
    let settings = camera.settings();
    let idle = matches!(settings.supervisor.capture, Capture::OnDemand { .. })
        && hub.source().state == SourceState::Idle;
    let warmup = (idle && settings.warmup_frames > 0).then(|| Warmup {
        from: hub.next_seq(),
        frames: settings.warmup_frames as u64,
    });
    // A number this hub never issued (the page outlived a restart) counts as none seen.
    let after = ask.after.filter(|&a| a < hub.next_seq());
    let since_us = ask
        .max_delay
        .map(|d| micros(ask.arrived).saturating_sub(d.as_micros() as u64));
    let wanted = |f: &Frame| {
        after.is_none_or(|a| f.seq > a)
            && since_us.is_none_or(|since| f.timestamp_us >= since)
            && warmup.is_none_or(|w| {
                hub.source()
                    .run_first_seq
                    .is_some_and(|first| first >= w.from && f.seq >= first + w.frames)
            })
    };
    let timeout = if ask.after.is_some() && ask.max_delay.is_none() && warmup.is_none() {
        waits.long_poll
    } else {
        waits.snapshot
    };
    let running = ask.variant.and_then(|key| camera.variants.running(key));
    let source = match &running {
        Some(lease) => &lease.variant().hub,
        None => hub,
    };
    let Some(frame) = source.frame_where(wanted, timeout).await else {
        return Err(match (ask.after, ask.max_delay, warmup) {
            (_, _, Some(w)) => format!(
                "the camera did not deliver its {} warm-up frames and one more within {}",
                w.frames,
                humantime::format_duration(timeout)
            ),
            (_, Some(d), None) => format!(
                "no frame captured within max_delay={} ms of the request arrived within {}",
                d.as_millis(),
                humantime::format_duration(timeout)
            ),
            (Some(_), None, None) => {
                "no newer frame in time: the source is not delivering".to_string()
            }
            (None, None, None) => {
                "no frame available yet: the source has not delivered one".to_string()
            }
        });
    };
    let Some(key) = ask.variant.filter(|_| running.is_none()) else {
        return Ok(frame);
    };
    let transcoded = tokio::time::timeout(waits.snapshot, async {
        let slot = TranscodePool::global()
            .slot(camera.name(), Lane::Snapshots)
            .await?;
        slot.transcode(frame.jpeg.clone(), key)
            .await
            .map_err(|e| format!("the frame could not be transcoded: {e}"))
    })
    .await;
    match transcoded {
        Ok(Ok((jpeg, _))) => Ok(Arc::new(Frame::new(frame.seq, frame.timestamp_us, jpeg))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "no transcoder free within {}",
            humantime::format_duration(waits.snapshot)
        )),
    }
}
