//! `POST /cams/NAME/events`: an event clip ([`crate::events`]), answered at once with its file's name.
//!
//! Who may trigger: an admin (as for every write), or a client presenting the camera's `event-key`
//! (`?key=` or `Authorization: Bearer KEY`), which opens this route and no other (the connection lets a
//! request with an unknown key through to this handler only, as it does a pusher's). A presented key that
//! is wrong is refused (401) whoever presents it. Cross-site requests are refused as every write's are,
//! and a body, when there is one, must be declared JSON: `{"label": "doorbell", "pre": "10s", "post":
//! "20s"}`, every key optional. A new event is 202 Accepted (the file is complete when its post-roll
//! ends); a trigger during an event extends it and is 200 with the same name.

use super::{json_error, json_object, refused, Ctx};
use crate::camera::Camera;
use crate::events::{parse_trigger, Triggered};
use crate::http::access;
use crate::http::body::Body;
use crate::http::request::Request;
use crate::http::response::Response;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::{Duration, UNIX_EPOCH};

/// Largest trigger body.
const MAX_BODY: usize = 4096;

/// The key the request presents, if any: `?key=` or `Authorization: Bearer KEY`.
fn presented_key(request: &Request) -> Option<&str> {
    request.param("key").or_else(|| {
        request
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer ").or(a.strip_prefix("bearer ")))
            .map(str::trim)
    })
}

fn stamp(us: u64) -> String {
    humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_micros(us)).to_string()
}

/// Starts or extends an event of `camera`.
pub async fn trigger<R: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    ctx: &Ctx<'_>,
    camera: &Camera,
    body: &mut Body<'_, R>,
) -> Response {
    let request = ctx.request;
    if request.method != "POST" {
        return Response::text(405, "trigger an event with POST\n").header("Allow", "POST");
    }
    let key = camera
        .events
        .as_ref()
        .and_then(|e| e.settings().key.clone());
    match (presented_key(request), &key) {
        (Some(given), Some(key)) if key.matches(given) => {}
        (Some(_), _) => {
            ctx.app
                .counters
                .unauthorized
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(client = %ctx.client, camera = %camera.name(), "event refused: wrong event key");
            return Response::text(401, "wrong event key\n");
        }
        (None, _) => {
            if let Err(r) = access::may_write(ctx.verdict, &ctx.client) {
                if r.status == 401 {
                    ctx.app
                        .counters
                        .unauthorized
                        .fetch_add(1, Ordering::Relaxed);
                }
                return refused(r);
            }
        }
    }
    let Some(events) = &camera.events else {
        return json_error(
            404,
            format!(
                "camera {:?} writes no events: give it events = \"DIR\" (or --events DIR)",
                camera.name()
            ),
        );
    };
    if let Err(r) = access::same_origin(request) {
        return refused(r);
    }
    let declared = request
        .header("content-length")
        .is_some_and(|l| l.trim() != "0")
        || request.header("transfer-encoding").is_some();
    let fields = if declared {
        if let Err(r) = access::json_body(request) {
            return refused(r);
        }
        match json_object(
            ctx,
            body,
            MAX_BODY,
            "a JSON object like {\"label\": \"doorbell\", \"pre\": \"10s\", \"post\": \"20s\"}",
        )
        .await
        {
            Ok(map) => map,
            Err(r) => return r,
        }
    } else {
        serde_json::Map::new()
    };
    let t = match parse_trigger(&fields, camera.settings().pre_roll) {
        Ok(t) => t,
        Err(why) => {
            ctx.app
                .counters
                .bad_requests
                .fetch_add(1, Ordering::Relaxed);
            return json_error(400, why);
        }
    };
    let Triggered {
        name,
        label,
        extended,
        start_us,
        end_us,
    } = events.trigger(&t, ctx.arrived);
    Response::json_value(
        if extended { 200 } else { 202 },
        &json!({"ok": true, "result": {
            "camera": camera.name(),
            "name": name,
            "url": format!("/recordings/{name}"),
            "label": label,
            "extended": extended,
            "start": stamp(start_us),
            "end": stamp(end_us),
        }}),
    )
}
