//! `/cams/NAME/control?var=&val=` and `/cams/NAME/status`: a relayed ESP32-CAM's settings, forwarded to
//! its firmware ([`crate::source::esp32`]). `control` changes the camera, so it needs what every write
//! needs (an admin, not made cross-site), though it comes as a GET as the firmware's own page sends it;
//! `status` is a read.

use super::Ctx;
use crate::camera::Camera;
use crate::http::access;
use crate::http::response::Response;
use crate::source::esp32::{check_control, control_address, forward, Answer, ForwardError};

/// Forwards a setting to the camera.
pub async fn control(ctx: &Ctx<'_>, camera: &Camera) -> Response {
    let checked =
        access::may_write(ctx.verdict, &ctx.client).and_then(|()| access::same_origin(ctx.request));
    if let Err(refusal) = checked {
        let r = Response::text(refusal.status, refusal.reason);
        return if refusal.status == 401 {
            r.header("WWW-Authenticate", crate::http::auth::CHALLENGE)
        } else {
            r
        };
    }
    let settings = camera.settings();
    if control_address(&settings).is_none() {
        return not_esp32(camera);
    }
    let path = match check_control(ctx.request.param("var"), ctx.request.param("val")) {
        Ok(p) => p,
        Err(why) => return Response::text(400, format!("{why}\n")),
    };
    passed_on(forward(&settings, &path).await)
}

/// The camera's own status document.
pub async fn status(_ctx: &Ctx<'_>, camera: &Camera) -> Response {
    let settings = camera.settings();
    if control_address(&settings).is_none() {
        return not_esp32(camera);
    }
    passed_on(forward(&settings, "status").await)
}

fn not_esp32(camera: &Camera) -> Response {
    Response::text(
        404,
        format!(
            "camera {:?} is not a relayed ESP32-CAM: give it control-url = \"http://ADDRESS/\" (or relay its stream from port 81)\n",
            camera.name()
        ),
    )
    .keep()
}

/// The camera's answer as it came (status, type, body), or why there is none.
fn passed_on(answer: Result<Answer, ForwardError>) -> Response {
    match answer {
        Ok(a) => Response {
            status: a.status,
            content_type: match a.content_type.as_deref() {
                Some(t) if t.starts_with("application/json") => "application/json",
                Some(t) if t.starts_with("text/html") => "text/html; charset=utf-8",
                _ if a.body.is_empty() => "text/plain; charset=utf-8",
                _ => "application/octet-stream",
            },
            headers: String::new(),
            body: a.body,
            close: a.status >= 400,
            server: crate::http::response::SERVER_MJPEGD,
        },
        Err(ForwardError::Busy) => Response::text(
            503,
            "a request to this camera is in flight: try again in a moment\n",
        )
        .header("Retry-After", "1"),
        Err(ForwardError::Unreachable(why)) => {
            Response::text(502, format!("the camera did not answer: {why}\n"))
        }
        Err(ForwardError::TimedOut) => {
            Response::text(504, "the camera did not answer in time (5 s)\n")
        }
    }
}
