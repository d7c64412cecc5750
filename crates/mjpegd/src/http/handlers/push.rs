//! `/cams/NAME/push`: a camera that cannot be reached pushes its frames here (an ESP32-CAM behind NAT,
//! `ffmpeg -f mpjpeg -method POST`).
//!
//! The handler takes the connection over, because a pushed stream never ends. It accepts, from a client
//! holding the camera's push key (`?key=` or `Authorization: Bearer KEY`) or an admin:
//! - a `multipart/x-mixed-replace` body (chunked, with a length, or until the connection closes): each part
//!   is a frame, cut by the same [`MultipartParser`] as a relay's, each bounded. ffmpeg sends no
//!   Content-Type, so a body that is not declared a JPEG is read as multipart (its first line says the
//!   boundary);
//! - one `image/jpeg` per request on a keep-alive connection (an ESP32's HTTPClient), each answered 204
//!   (429 above the camera's `push-max-fps`, 503 when the frame could not be queued);
//! - a WebSocket upgrade whose binary messages are the frames ([`super::push_ws`]).
//!
//! Frames go to the camera's [`crate::source::push::Inlet`], from where the supervisor checks and
//! publishes them as it does any source's. One pusher holds a camera at a time: another gets 409 saying
//! who holds it, unless the camera has `push-takeover = true`, when the newer one wins and the older
//! connection is closed. A pusher that sends no whole frame for the camera's `read-timeout` is cut (a
//! slow-loris trickle of bytes does not keep it). A presented key that is wrong is always refused (401,
//! counted), whoever presents it; the key is never logged or shown.

use super::push_key::{presented_key, still_pushed};
use super::Ctx;
use crate::camera::Camera;
use crate::http::body::{Body, BodyError};
use crate::http::request::{read_request, Request, RequestError};
use crate::http::response::Response;
use crate::net::Transport;
use crate::source::push::{Hold, Protocol, PushKey, Sent};
use crate::source::relay::MAX_PART;
use crate::source::spec::SourceSpec;
use bytes::{Bytes, BytesMut};
use mjpegd_core::parse::multipart::{boundary_from_content_type, MultipartError, MultipartParser};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// What a request's body holds.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// One JPEG (`Content-Type: image/jpeg`).
    Jpeg,
    /// An endless multipart stream, with the boundary the Content-Type declares (if any).
    Multipart(Option<String>),
}

fn kind_of(request: &Request) -> Kind {
    let content_type = request.header("content-type").unwrap_or("");
    let lower = content_type.to_ascii_lowercase();
    if lower.starts_with("image/jpeg") || lower.starts_with("image/jpg") {
        Kind::Jpeg
    } else {
        Kind::Multipart(boundary_from_content_type(content_type))
    }
}

/// Whether `request` may push: a presented key must be the camera's; without one, only an admin may.
fn authorized(ctx: &Ctx<'_>, request: &Request, key: &PushKey) -> Result<(), Response> {
    match presented_key(request) {
        Some(given) if key.matches(given) => Ok(()),
        Some(_) => {
            ctx.app.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            tracing::info!(client = %ctx.client, "push refused: wrong push key");
            Err(Response::text(401, "wrong push key\n"))
        }
        None => crate::http::access::may_write(ctx.verdict, &ctx.client).map_err(|r| {
            if r.status == 401 {
                ctx.app.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            }
            Response::text(
                r.status,
                format!("pushing needs the camera's push key (?key= or Authorization: Bearer) or an admin: {}", r.reason),
            )
        }),
    }
}

/// Takes the connection over and feeds the camera until the pusher leaves.
pub async fn serve<T: Transport>(ctx: &Ctx<'_>, camera: &Camera, mut io: T, mut buf: BytesMut) {
    let refused = match first_checks(ctx, camera) {
        Ok((hold, upgrade)) => {
            // A camera that is removed (or a server that stops) ends its pusher's connection too.
            let stop = camera.client_token();
            let outcome = tokio::select! {
                r = async {
                    match upgrade {
                        Some(upgrade) => super::push_ws::run(ctx, camera, io, buf, hold, &upgrade).await,
                        None => run(ctx, camera, &mut io, &mut buf, hold).await,
                    }
                } => r,
                () = stop.cancelled() => Err("the camera stopped".into()),
            };
            match outcome {
                Ok(()) => {
                    tracing::info!(camera = camera.name(), client = %ctx.client, "pusher left")
                }
                Err(why) => {
                    tracing::info!(camera = camera.name(), client = %ctx.client, %why, "pusher cut")
                }
            }
            return;
        }
        Err(r) => r,
    };
    let _ = refused.write(&mut io, false, &ctx.app.cors).await;
    crate::http::limits::linger_close(&mut io).await;
}

/// The method, the camera, the key, a WebSocket handshake and the hold: the hold on the camera (with the
/// answer to a WebSocket upgrade), or the refusal.
fn first_checks(
    ctx: &Ctx<'_>,
    camera: &Camera,
) -> Result<(Hold, Option<crate::http::websocket::Upgrade>), Response> {
    let request = ctx.request;
    let upgrade = crate::http::websocket::wants_upgrade(request);
    if !upgrade && !matches!(request.method.as_str(), "POST" | "PUT") {
        return Err(Response::text(
            405,
            "push frames with POST or PUT (multipart/x-mixed-replace, or one image/jpeg per request), or a WebSocket upgrade\n",
        )
        .header("Allow", "GET, POST, PUT"));
    }
    let settings = camera.settings();
    let SourceSpec::Push(Some(key)) = &settings.source else {
        return Err(Response::text(
            404,
            format!(
                "camera {:?} is not a pushed camera (source = \"push\" with a push-key)\n",
                camera.name()
            ),
        ));
    };
    authorized(ctx, request, key)?;
    let upgrade = match upgrade {
        true => Some(crate::http::websocket::handshake(request)?),
        false => None,
    };
    let policy = settings.options.push;
    let (hold, replaced) = camera.inlet.take(ctx.client, policy).map_err(|holder| {
        Response::text(
            409,
            format!(
                "camera {:?} is being pushed by {} ({}, since {}); one pusher at a time (push-takeover = true lets a newer one win)\n",
                camera.name(),
                holder.addr,
                holder.protocol.map_or("connecting", Protocol::as_str),
                humantime::format_rfc3339_seconds(holder.since)
            ),
        )
    })?;
    if let Some(old) = replaced {
        tracing::info!(camera = camera.name(), client = %ctx.client, old = %old.addr, "pusher took the camera over");
    }
    Ok((hold, upgrade))
}

/// Feeds the camera from this connection's requests until it ends.
async fn run<T: Transport>(
    ctx: &Ctx<'_>,
    camera: &Camera,
    io: &mut T,
    buf: &mut BytesMut,
    mut hold: Hold,
) -> Result<(), String> {
    let app = ctx.app;
    let read_timeout = camera.settings().options.read_timeout;
    tracing::info!(camera = camera.name(), client = %ctx.client, "pusher connected");
    let mut owned;
    let mut request = ctx.request;
    loop {
        // (a pusher that is taken over ends at once)
        let taken = hold.cut_token();
        let step = async {
            match kind_of(request) {
                Kind::Multipart(boundary) => {
                    hold.set_protocol(Protocol::Multipart);
                    let key = presented_key(ctx.request);
                    multipart(io, buf, request, boundary, &mut hold, camera, key)
                        .await
                        .map(|()| false)
                }
                Kind::Jpeg => {
                    hold.set_protocol(Protocol::JpegPost);
                    one_jpeg(io, buf, request, &mut hold, read_timeout, &app.cors)
                        .await
                        .map(|()| request.keep_alive())
                }
            }
        };
        let more = tokio::select! {
            r = step => r?,
            () = taken.cancelled() => return Err("taken over by a newer pusher".into()),
        };
        if !more {
            return Ok(());
        }
        // The next request on a keep-alive connection: another frame for the same camera, with the key,
        // its head within the read timeout.
        let next = tokio::select! {
            r = tokio::time::timeout(read_timeout, read_request(io, buf, &app.config.limits)) => r,
            () = taken.cancelled() => return Err("taken over by a newer pusher".into()),
        };
        owned = match next {
            Ok(Ok(r)) => r,
            Ok(Err(RequestError::Closed)) => return Ok(()),
            Ok(Err(e)) => return Err(format!("a broken next request: {e:?}")),
            Err(_) => return Err(format!("sent no frame for {read_timeout:?}")),
        };
        request = &owned;
        let SourceSpec::Push(Some(key)) = camera.settings().source else {
            return Err("the camera is no longer a pushed camera".into());
        };
        let same_place =
            request.path == ctx.request.path && matches!(request.method.as_str(), "POST" | "PUT");
        let allowed = if !same_place {
            Err(Response::text(
                400,
                "this connection pushes frames: only POST or PUT to the same camera's /push\n",
            ))
        } else {
            match presented_key(request) {
                Some(given) if key.matches(given) => Ok(()),
                // (the first request's admission holds for the connection when it presented no key)
                None if presented_key(ctx.request).is_none() => Ok(()),
                _ => {
                    app.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
                    Err(Response::text(401, "wrong push key\n"))
                }
            }
        };
        if let Err(r) = allowed {
            let _ = r.write(io, false, &app.cors).await;
            return Err(format!("refused a later request ({})", r.status));
        }
    }
}

/// Reads one JPEG request body (at most [`MAX_PART`] bytes), hands it over and answers 204, or 429 when
/// it is above the camera's frame-rate cap, 503 when the supervisor is behind (both keep the connection).
async fn one_jpeg<T: Transport>(
    io: &mut T,
    buf: &mut BytesMut,
    request: &Request,
    hold: &mut Hold,
    read_timeout: Duration,
    cors: &str,
) -> Result<(), String> {
    let deadline = Instant::now() + read_timeout;
    let mut body = Body::of(io, buf, request);
    let jpeg = match body.read_to_end(MAX_PART, deadline).await {
        Ok(b) => b,
        Err(e) => {
            if matches!(e, BodyError::TooLarge { .. }) && hold.inlet().too_large() {
                tracing::warn!(
                    "a pushed frame larger than {MAX_PART} bytes was refused (logged once per camera, counted in /state)"
                );
            }
            let (status, reason) = e.status();
            let _ = Response::text(status, reason.clone())
                .write(io, false, cors)
                .await;
            return Err(reason.trim_end().to_string());
        }
    };
    if jpeg.is_empty() {
        let _ = Response::text(400, "an empty frame: send one JPEG per request\n")
            .write(io, false, cors)
            .await;
        return Err("an empty frame".into());
    }
    let close = !request.keep_alive();
    let mut response = match hold.send(jpeg) {
        Sent::Queued => {
            let mut r = Response::text(204, "");
            r.content_type = "text/plain";
            r
        }
        Sent::OverCap => Response::text(429, "frame dropped: above this camera's push-max-fps\n")
            .header("Retry-After", "1"),
        Sent::QueueFull => Response::text(503, "frame dropped: the server is behind\n"),
    };
    response.close = false;
    let response = response.persist(!close, request.version == 0);
    response
        .write(io, false, cors)
        .await
        .map_err(|e| e.to_string())
}

/// Reads an endless multipart body, cutting frames as they come; a whole frame must come at least every
/// read timeout, and the camera must still take frames from a pusher with `key`.
async fn multipart<T: Transport>(
    io: &mut T,
    buf: &mut BytesMut,
    request: &Request,
    boundary: Option<String>,
    hold: &mut Hold,
    camera: &Camera,
    key: Option<&str>,
) -> Result<(), String> {
    let read_timeout = camera.settings().options.read_timeout;
    let mut parser = MultipartParser::new(boundary.as_deref(), MAX_PART);
    let mut body = Body::of(io, buf, request).until_close();
    let mut deadline = Instant::now() + read_timeout;
    loop {
        let piece: Option<Bytes> = match body.next_piece(deadline).await {
            Ok(p) => p,
            Err(BodyError::Timeout) => return Err(format!("sent no frame for {read_timeout:?}")),
            Err(BodyError::Closed) => None,
            Err(e) => return Err(e.status().1.trim_end().to_string()),
        };
        let Some(piece) = piece else {
            return Ok(());
        };
        parser.push(&piece);
        loop {
            match parser.next_part() {
                Some(Ok(part)) => {
                    // (checked per frame, not per read: a reload may have changed the camera)
                    if !still_pushed(camera, key) {
                        return Err("the camera's source or push key changed".into());
                    }
                    let _ = hold.send(part.body);
                    deadline = Instant::now() + read_timeout;
                }
                Some(Err(e)) => {
                    if matches!(e, MultipartError::PartTooLarge(_)) && camera.inlet.too_large() {
                        tracing::warn!(
                            camera = camera.name(),
                            "a pushed frame larger than {MAX_PART} bytes cut its pusher (logged once per camera, counted in /state)"
                        );
                    }
                    return Err(format!("the pushed stream is broken: {e}"));
                }
                None => break,
            }
        }
    }
}
