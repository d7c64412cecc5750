//! A snapshot: `/snapshot` and its aliases answer one JPEG, the newest frame or the one the query waits
//! for (`?after=`, `?max_delay=`, a size variant); the waiting is [`crate::still`]'s.

use super::{variant_of, Ctx};
use crate::camera::Camera;
use crate::http::query::snapshot_query;
use crate::http::response::{Response, NO_CACHE};
use crate::still::{still, Ask, Waits};
use mjpegd_core::frame::format_timestamp;
use std::sync::atomic::Ordering;

/// A still of `camera` as the query asks for it.
pub async fn get(ctx: &Ctx<'_>, camera: &Camera) -> Response {
    let (app, request, arrived) = (ctx.app, ctx.request, ctx.arrived);
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
