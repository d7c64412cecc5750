//! A snapshot: `/snapshot` and its aliases answer one JPEG, the newest frame or the one the query waits
//! for (`?after=`, `?max_delay=`, a size variant); the waiting is [`crate::still`]'s. `?at=TIME` asks for
//! the frame captured closest to TIME at or before it, found in the camera's recordings ([`at`]).

use super::{variant_of, Ctx};
use crate::camera::Camera;
use crate::http::query::{parse_at, snapshot_query};
use crate::http::response::{Response, NO_CACHE};
use crate::still::{still, Ask, Waits};
use mjpegd_core::frame::format_timestamp;
use std::sync::atomic::Ordering;

/// A still of `camera` as the query asks for it.
pub async fn get(ctx: &Ctx<'_>, camera: &Camera) -> Response {
    let (app, request, arrived) = (ctx.app, ctx.request, ctx.arrived);
    if let Some(at) = request.param("at").filter(|v| !v.is_empty()) {
        return match parse_at(at, arrived) {
            Ok(at) => from_recordings(camera, at).await,
            Err(why) => {
                app.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
                Response::text(400, format!("{why}\n"))
            }
        };
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

/// `?at=`: the frame showing at `at` in `camera`'s recordings, with its capture time and where it came
/// from (`X-Frame-Source: recording`, `X-Recording: FILE`); a 404 with the reason when no recording
/// covers `at`. (Frames still in memory are looked at before the disk when the camera keeps some.)
async fn from_recordings(camera: &Camera, at: std::time::SystemTime) -> Response {
    let Some(record) = camera.settings().record else {
        return Response::text(
            404,
            format!(
                "not found: camera {} does not record, and keeps no frames in memory\n",
                camera.name()
            ),
        )
        .keep();
    };
    let name = camera.name().to_string();
    let found = tokio::task::spawn_blocking(move || {
        crate::http::recordings::frame_at(&name, &record.dir, at)
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match found {
        Ok(frame) => {
            let headers = format!(
                "{NO_CACHE}Content-Disposition: inline; filename=snapshot.jpg\r\nX-Timestamp: {}\r\nX-Frame-Source: recording\r\nX-Recording: {}\r\n",
                format_timestamp(frame.capture_us),
                frame.file
            );
            Response {
                status: 200,
                content_type: "image/jpeg",
                headers,
                body: frame.jpeg.into(),
                close: false,
                server: crate::http::response::SERVER_MJPEGD,
            }
        }
        Err(why) => Response::text(404, format!("not found: {why}\n")).keep(),
    }
}
