//! A snapshot: `/snapshot` and its aliases answer one JPEG, the newest frame or the one the query waits
//! for (`?after=`, `?max_delay=`, a size variant); the waiting is [`crate::still`]'s.
//!
//! `?at=TIME` asks for the past instead: the frame captured closest to TIME at or before it, as it was
//! captured (no size or freshness parameters with it). Memory is looked in first (the camera's pre-roll,
//! or its newest frame when TIME is now), then the continuous recording, then the event clips; the
//! answer says which (`X-Frame-Source`: `memory`, `recording` or `event`), and a 404 says why when neither holds such a frame.

use super::{variant_of, Ctx};
use crate::camera::Camera;
use crate::http::query::snapshot_query;
use crate::http::response::{Response, NO_CACHE};
use crate::still::{still, Ask, Waits};
use mjpegd_core::frame::format_timestamp;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

/// A still of `camera` as the query asks for it.
pub async fn get(ctx: &Ctx<'_>, camera: &Camera) -> Response {
    let (app, request, arrived) = (ctx.app, ctx.request, ctx.arrived);
    if let Some(at) = request.param("at") {
        return at_time(ctx, camera, at).await;
    }
    let asked = snapshot_query(request).and_then(|q| {
        Ok(Ask {
            after: q.after,
            max_delay: q.max_delay,
            arrived,
            variant: variant_of(camera, &q.size)?,
        })
    });
    let ask = match asked {
        Ok(ask) => ask,
        Err(why) => {
            app.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            return Response::text(400, format!("{why}\n"));
        }
    };
    let waits = Waits {
        snapshot: app.config.snapshot_timeout,
        long_poll: app.config.long_poll_timeout,
    };
    let frame = match still(camera, &ask, waits).await {
        Ok(frame) => frame,
        Err(why) => return Response::text(503, format!("{why}\n")).header("Retry-After", "1"),
    };
    let headers = format!(
        "{NO_CACHE}Content-Disposition: inline; filename=snapshot.jpg\r\nX-Timestamp: {}\r\nX-Frame-Sequence: {}\r\n",
        format_timestamp(frame.timestamp_us),
        frame.seq
    );
    Response {
        status: 200,
        content_type: "image/jpeg",
        headers,
        body: frame.jpeg.clone(),
        close: false,
        server: crate::http::response::SERVER_MJPEGD,
    }
}

/// Where a frame of `?at=` came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FrameSource {
    /// The camera's pre-roll, or its newest frame.
    Memory,
    /// A segment of its continuous recording.
    Recording,
    /// One of its event clips.
    Event,
}

impl FrameSource {
    fn as_str(self) -> &'static str {
        match self {
            FrameSource::Memory => "memory",
            FrameSource::Recording => "recording",
            FrameSource::Event => "event",
        }
    }
}

/// `?at=TIME`: the frame captured closest to TIME at or before it.
async fn at_time(ctx: &Ctx<'_>, camera: &Camera, at: &str) -> Response {
    let request = ctx.request;
    let bad = |why: String| {
        ctx.app
            .counters
            .bad_requests
            .fetch_add(1, Ordering::Relaxed);
        Response::text(400, format!("{why}\n"))
    };
    if let Some(p) = ["after", "max_delay", "width", "height", "quality", "fps"]
        .into_iter()
        .find(|p| request.param(p).is_some_and(|v| !v.is_empty()))
    {
        return bad(format!(
            "at= serves a frame as it was captured: {p}= cannot go with it"
        ));
    }
    let now = SystemTime::now();
    let t = match crate::http::query::parse_at(at, now) {
        Ok(t) => t,
        Err(why) => return bad(why),
    };
    let t_us = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64;
    // 1. Memory: the pre-roll, or the newest frame.
    if let Some(frame) = camera.hub.frame_at(t_us, now) {
        let headers = format!(
            "{NO_CACHE}Content-Disposition: inline; filename=snapshot.jpg\r\nX-Timestamp: {}\r\nX-Frame-Sequence: {}\r\nX-Frame-Source: {}\r\n",
            format_timestamp(frame.timestamp_us),
            frame.seq,
            FrameSource::Memory.as_str()
        );
        return image(headers, frame.jpeg.clone());
    }
    // 2. The recordings.
    let why = match from_recordings(camera, t).await {
        Ok((source, found)) => {
            let headers = format!(
                "{NO_CACHE}Content-Disposition: inline; filename=snapshot.jpg\r\nX-Timestamp: {}\r\nX-Frame-Source: {}\r\nX-Recording: {}\r\n",
                format_timestamp(found.capture_us),
                source.as_str(),
                found.file
            );
            return image(headers, found.jpeg.into());
        }
        Err(why) => why,
    };
    Response::text(
        404,
        format!(
            "no frame at or before {} in memory or recordings: {why}\n",
            humantime::format_rfc3339_millis(t)
        ),
    )
    .keep()
}

/// The frame at or before `at` in `camera`'s continuous recording, else in its event clips, looked for
/// off the runtime; the reasons when there is none.
async fn from_recordings(
    camera: &Camera,
    at: SystemTime,
) -> Result<(FrameSource, crate::http::recordings::FoundFrame), String> {
    use crate::http::recordings::{frame_at, Folder};
    let settings = camera.settings();
    let folders: Vec<_> = [
        settings
            .record
            .map(|r| (FrameSource::Recording, Folder::Segments, r.dir)),
        settings
            .events
            .map(|e| (FrameSource::Event, Folder::Events, e.dir)),
    ]
    .into_iter()
    .flatten()
    .collect();
    if folders.is_empty() {
        return Err(format!(
            "camera {} neither records nor keeps events",
            camera.name()
        ));
    }
    let name = camera.name().to_string();
    tokio::task::spawn_blocking(move || {
        let mut why = Vec::new();
        for (source, folder, dir) in folders {
            match frame_at(&name, &dir, folder, at) {
                Ok(found) => return Ok((source, found)),
                Err(e) => why.push(e),
            }
        }
        Err(why.join("; "))
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()))
}

/// A JPEG answer with `headers`.
fn image(headers: String, body: bytes::Bytes) -> Response {
    Response {
        status: 200,
        content_type: "image/jpeg",
        headers,
        body,
        close: false,
        server: crate::http::response::SERVER_MJPEGD,
    }
}
