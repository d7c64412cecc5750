//! What each URL does, and the life of one connection.
//!
//! Routes: `/stream` (aliases `/mjpeg/1`, `/?action=stream`), `/snapshot` (aliases `/jpg`,
//! `/?action=snapshot`), `/state`, `/metrics` and the page at `/`. A connection may carry several small requests
//! (keep-alive); a stream request turns it into a stream until the client leaves.
//!
//! Streams and snapshots take `?width=`, `?height=`, `?quality=` on every alias: the request names a size
//! variant ([`crate::variant`]), whose hub a stream then reads instead of the camera's. Snapshots also take
//! `?after=` and `?max_delay=` ([`crate::still`]).

use super::auth::Verdict;
use super::limits::Permit;
use super::query::{size_request, snapshot_query};
use super::request::{read_request, Request, RequestError};
use super::response::{Response, NO_CACHE};
use super::route::{route, Resource, Route};
use super::state::{state_body, Page};
use super::stream::{
    response_head, stream_frames, wants_advance_headers, StreamEnd, StreamOptions,
};
use crate::camera::Camera;
use crate::http::app::App;
use crate::hub::{ClientMeta, SharedHub};
use crate::net::{Peer, Transport};
use crate::still::{still, Ask, Waits};
use bytes::BytesMut;
use mjpegd_core::frame::format_timestamp;
use mjpegd_core::variant::{SizeRequest, VariantKey};
use mjpegd_core::Policy;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One camera's page: its stream and state.
const INDEX_HTML: &str = include_str!("index.html");
/// Every camera at once, fed by snapshot long polls (the file says why).
const WALL_HTML: &str = include_str!("wall.html");

/// Serves requests on one connection until it closes, turns into a stream that ends, or the server stops.
/// The first request head must have arrived by `first_deadline` (the accept time plus the head timeout,
/// which a TLS handshake has already spent part of).
pub async fn handle_connection<T: Transport>(
    app: Arc<App>,
    mut io: T,
    addr: Peer,
    mut permit: Permit,
    shutdown: CancellationToken,
    first_deadline: Instant,
) {
    let mut buf = BytesMut::with_capacity(1024);
    let mut first = true;
    loop {
        // A new connection has the head timeout for its first request from the moment it was accepted
        // (handshake included): idle connections that never send anything are not kept for the (longer)
        // keep-alive idle time, and TLS does not get the head timeout twice.
        let limits = &app.config.limits;
        let deadline = if first {
            first_deadline
        } else {
            Instant::now() + limits.idle_timeout + limits.head_timeout
        };
        first = false;
        let read = tokio::time::timeout_at(deadline, read_request(&mut io, &mut buf, limits));
        let request = tokio::select! {
            r = read => r.unwrap_or(Err(RequestError::Timeout)),
            _ = shutdown.cancelled() => return,
        };
        // A snapshot's max_delay counts from here, before any password check.
        let arrived = SystemTime::now();
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                let (status, reason) = match e {
                    RequestError::Closed => return,
                    RequestError::Timeout => {
                        app.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                        (408, "request head not received in time\n")
                    }
                    RequestError::TooLarge => (431, "request head too large\n"),
                    RequestError::Malformed(why) => {
                        app.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%addr, why, "bad request");
                        let _ = Response::text(400, &format!("bad request: {why}\n"))
                            .write(&mut io, false, &app.cors)
                            .await;
                        super::limits::linger_close(&mut io).await;
                        return;
                    }
                };
                if status == 431 {
                    app.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
                }
                let _ = Response::text(status, reason)
                    .write(&mut io, false, &app.cors)
                    .await;
                if status == 431 {
                    super::limits::linger_close(&mut io).await;
                }
                return;
            }
        };
        // Behind a trusted proxy, the client is the one the proxy names; it is counted under its own
        // address from here on (a refusal then is this client's, not the proxy's).
        let client = app.config.trusted_proxies.client(
            addr,
            request
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
        if let Err(why) = permit.rekey(client.ip()) {
            app.counters
                .max_connections_per_address
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(addr = %client, "too many connections from this address");
            let _ = io.write_all(super::limits::refusal(why)).await;
            super::limits::linger_close(&mut io).await;
            return;
        }
        let head_only = request.method == "HEAD";
        let verdict = match &app.auth() {
            Some(auth) => auth.check(&request, client.ip()).await,
            None => Verdict::Open,
        };
        if !verdict.admitted() {
            let refusal = if verdict == Verdict::Busy {
                app.counters
                    .password_checks_busy
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(addr = %client, path = %request.path, "password checks busy");
                Response::text(
                    503,
                    "too many password checks waiting: try again in a few seconds\n",
                )
                .header("Retry-After", "2")
            } else {
                app.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(addr = %client, path = %request.path, "unauthorized");
                Response::text(401, "authentication required\n")
                    .header("WWW-Authenticate", super::auth::CHALLENGE)
            };
            let _ = tokio::time::timeout(
                app.config.write_timeout,
                refusal.write(&mut io, head_only, &app.cors),
            )
            .await;
            return;
        }
        if request.method != "GET" && !head_only {
            let _ = Response::text(405, "only GET and HEAD are served\n")
                .header("Allow", "GET, HEAD")
                .write(&mut io, false, &app.cors)
                .await;
            return;
        }
        let keep_alive = request.keep_alive();
        // The cameras as they are now (a reload swaps the list; this request keeps the one it routed by).
        let cameras = app.cameras();
        let names: Vec<&str> = cameras.iter().map(|c| c.name()).collect();
        let route = route(&request.path, request.param("action"), &names);
        if let Route::Camera {
            index,
            resource: Resource::Stream,
        } = route
        {
            stream(&app, &cameras[index], io, client, &request, head_only).await;
            return;
        }
        if let Route::RecordingFile(name) = &route {
            // A file may take long to send: each chunk has the write timeout instead of the whole.
            // Opening is file work: off the runtime. What is served is the descriptor checked there.
            let (which, file_name) = (cameras.clone(), name.clone());
            let opened =
                tokio::task::spawn_blocking(move || super::recordings::open(&which, &file_name))
                    .await
                    .ok()
                    .flatten();
            match opened {
                Some(file) => {
                    let range = request.header("range");
                    if let Err(e) =
                        super::recordings::serve_file(&app, &mut io, file, range, head_only).await
                    {
                        tracing::debug!(addr = %client, error = %e, "recording download ended");
                    }
                }
                None => {
                    let _ = Response::text(404, "not found: no such recording\n")
                        .write(&mut io, head_only, &app.cors)
                        .await;
                }
            }
            let _ = io.shutdown().await;
            return;
        }
        // A small response has the write timeout to leave, like a frame: a client that asks and never
        // reads does not hold its connection forever. Each response says whether the connection stays
        // open, and the connection does what it said.
        let http10 = request.version == 0;
        let respond = async {
            let page;
            let body;
            let shared;
            let response = match route {
                Route::Camera {
                    index,
                    resource: Resource::Snapshot,
                } => {
                    return snapshot(&app, &cameras[index], &request, arrived, &mut io, head_only, keep_alive, http10)
                        .await
                }
                Route::State | Route::Camera { resource: Resource::State, .. } => {
                    match Page::from_query(request.param("clients_offset"), request.param("clients_limit")) {
                        Ok(page) => {
                            let camera = match route {
                                Route::Camera { index, .. } => Some(cameras[index].clone()),
                                _ => None,
                            };
                            // Built off the runtime, and shared by the pollers of a crowded camera.
                            shared = state_body(&app, camera, verdict.sees_clients(), page).await;
                            Response::json(&shared)
                        }
                        Err(why) => {
                            app.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
                            body = format!("{why}\n");
                            Response::text(400, &body)
                        }
                    }
                }
                Route::Metrics => {
                    let content_type;
                    (content_type, body) = super::metrics::render(&app, request.header("accept"));
                    Response {
                        content_type,
                        ..Response::json(&body)
                    }
                }
                Route::Page | Route::Camera { resource: Resource::Page, .. } => {
                    let base = match route {
                        Route::Camera { index, .. } => format!("/cams/{}/", cameras[index].name()),
                        _ => "/".to_string(),
                    };
                    page = if matches!(route, Route::Page) && cameras.len() > 1 {
                        WALL_HTML.to_string()
                    } else {
                        INDEX_HTML.replace("{{BASE}}", &base)
                    };
                    Response::html(&page)
                }
                Route::Recordings | Route::Camera { resource: Resource::Recordings, .. } => {
                    let which: Vec<_> = match route {
                        Route::Camera { index, .. } => vec![cameras[index].clone()],
                        _ => cameras.to_vec(),
                    };
                    // Listing folders is file work: off the runtime.
                    body = tokio::task::spawn_blocking(move || super::recordings::list(&which).to_string())
                        .await
                        .unwrap_or_default();
                    Response::json(&body)
                }
                Route::Camera { resource: Resource::Stream, .. } | Route::RecordingFile(_) => {
                    unreachable!("handled above")
                }
                Route::UnknownAction(_) => Response::text(
                    400,
                    "unknown action: use action=stream or action=snapshot (or stream_N, snapshot_N)\n",
                ),
                Route::NoSuchCamera(what) => {
                    body = format!("not found: no {what}; /state lists the cameras\n");
                    Response {
                        close: false,
                        ..Response::text(404, &body)
                    }
                }
                // A miss (a browser's /favicon.ico) does not cost the connection.
                Route::NotFound => Response {
                    close: false,
                    ..Response::text(404, "not found: try /stream, /snapshot, /state or /\n")
                },
            }
            .persist(keep_alive, http10);
            response
                .write(&mut io, head_only, &app.cors)
                .await
                .map(|_| response.close)
        };
        // A snapshot may wait for a frame (a long poll): shutdown does not wait for it.
        let outcome = tokio::select! {
            r = tokio::time::timeout(app.config.write_timeout, respond) => r,
            _ = shutdown.cancelled() => return,
        };
        let Ok(outcome) = outcome else {
            app.counters.timeouts.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match outcome {
            Ok(false) => continue,
            _ => return,
        }
    }
}

/// The variant a request's `?width=`, `?height=`, `?quality=` name on `camera` (None: the original), or
/// why they cannot be served (a 400).
fn variant_of(camera: &Camera, size: &SizeRequest) -> Result<Option<VariantKey>, String> {
    if size.is_empty() {
        return Ok(None);
    }
    size.resolve(camera.source_size(), camera.settings().options.quality)
}

/// Reads the stream options from the query, or says what is wrong with them.
fn stream_options(
    app: &App,
    camera: &Camera,
    request: &Request,
) -> Result<(Policy, StreamOptions, Option<VariantKey>), String> {
    let settings = camera.settings();
    let variant = variant_of(camera, &size_request(request)?)?;
    let policy = match request.param("delivery") {
        Some(p) => p.parse::<Policy>()?,
        None => settings.delivery,
    };
    let fps_cap = match request.param("fps") {
        None | Some("") => None,
        Some(v) => match v.parse::<f64>() {
            Ok(fps) if fps.is_finite() && fps > 0.0 && fps <= 1000.0 => Some(fps),
            _ => {
                return Err(format!(
                    "fps must be a number above 0 and up to 1000, not {v:?}"
                ))
            }
        },
    };
    if fps_cap.is_some() && policy != Policy::Latest {
        return Err(format!(
            "fps caps apply to delivery=latest; delivery={policy} sends every frame of its policy"
        ));
    }
    let advance_headers = match request.param("advance_headers") {
        Some("1" | "true") => true,
        Some("0" | "false") => false,
        Some(v) => return Err(format!("advance_headers must be 0 or 1, not {v:?}")),
        None => wants_advance_headers(
            request.header("user-agent"),
            request.header("sec-fetch-dest"),
        ),
    };
    Ok((
        policy,
        StreamOptions {
            advance_headers,
            fps_cap,
            lockstep_timeout: settings.lockstep_timeout,
            write_timeout: app.config.write_timeout,
        },
        variant,
    ))
}

async fn stream<T: Transport>(
    app: &Arc<App>,
    camera: &Camera,
    mut io: T,
    addr: Peer,
    request: &Request,
    head_only: bool,
) {
    let (policy, options, variant) = match stream_options(app, camera, request) {
        Ok(o) => o,
        Err(why) => {
            app.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            let _ = Response::text(400, &format!("{why}\n"))
                .write(&mut io, head_only, &app.cors)
                .await;
            return;
        }
    };
    let Some(_slot) = app.reserve_stream() else {
        app.counters
            .rejected_max_clients
            .fetch_add(1, Ordering::Relaxed);
        let msg = format!(
            "too many clients: all {} stream slots are in use (--max-clients)\n",
            app.config.max_clients
        );
        let _ = Response::text(503, &msg)
            .header("Retry-After", "5")
            .write(&mut io, head_only, &app.cors)
            .await;
        return;
    };
    let head = response_head(policy, options.advance_headers, &app.cors);
    if head_only {
        let _ = io.write_all(head.as_bytes()).await;
        return;
    }
    // The variant runs while this stream holds its lease.
    let lease = match variant.map(|key| camera.lease_variant(key)).transpose() {
        Ok(lease) => lease,
        Err(why) => {
            app.counters
                .rejected_max_variants
                .fetch_add(1, Ordering::Relaxed);
            let _ = Response::text(503, &format!("{why}\n"))
                .header("Retry-After", "5")
                .write(&mut io, false, &app.cors)
                .await;
            return;
        }
    };
    let hub: &Arc<SharedHub> = match &lease {
        Some(lease) => &lease.variant().hub,
        None => &camera.hub,
    };
    io.tune_for_stream(app.config.send_buffer_for(policy));
    let sub = hub.subscribe(ClientMeta {
        addr,
        policy,
        fps_cap: options.fps_cap,
        user_agent: request
            .header("user-agent")
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect(),
        stop: camera.client_token(),
    });
    // One line as the stream starts and one as it ends, with the same fields, so a log (or its JSON form)
    // tells who watched what, how long, and how it ended. The counters are the client's own atomics.
    let variant_name = variant.map_or_else(|| "original".to_string(), |k| k.to_string());
    let entry = sub.entry().clone();
    let id = entry.id;
    let started = Instant::now();
    tracing::info!(camera = camera.name(), client = %id, %addr, %policy, fps_cap = ?options.fps_cap, variant = %variant_name, "stream started");
    let end = match io.write_all(head.as_bytes()).await {
        Err(e) => StreamEnd::Disconnected(e),
        // The camera's token ends the stream as a shutdown does: at server shutdown, or when a reload
        // removes the camera.
        Ok(()) => stream_frames(&mut io, sub, &options, camera.clients_token()).await,
    };
    let error = match &end {
        StreamEnd::Disconnected(e) => Some(tracing::field::display(e)),
        _ => None,
    };
    tracing::info!(
        camera = camera.name(),
        client = %id,
        %addr,
        %policy,
        variant = %variant_name,
        duration_ms = started.elapsed().as_millis() as u64,
        frames = entry.frames_sent.load(Ordering::Relaxed),
        bytes = entry.bytes_sent.load(Ordering::Relaxed),
        skipped = entry.frames_skipped.load(Ordering::Relaxed),
        ended = end.as_str(),
        cause = end.cause(),
        error,
        "stream ended"
    );
    if let StreamEnd::Evicted(_) = end {
        // What is still queued is stale, and may be seconds of video: drop it and reset, so the client
        // sees the end now.
        io.discard_unsent_on_close();
        return;
    }
    let _ = io.shutdown().await;
}

/// Answers a snapshot request; returns whether the connection closes after it.
#[allow(clippy::too_many_arguments)]
async fn snapshot<T: Transport>(
    app: &App,
    camera: &Camera,
    request: &Request,
    arrived: SystemTime,
    io: &mut T,
    head_only: bool,
    keep_alive: bool,
    http10: bool,
) -> std::io::Result<bool> {
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
            let reason = format!("{why}\n");
            let response = Response::text(400, &reason);
            return response.write(io, head_only, &app.cors).await.map(|_| true);
        }
    };
    let waits = Waits {
        snapshot: app.config.snapshot_timeout,
        long_poll: app.config.long_poll_timeout,
    };
    let frame = match still(camera, &ask, waits).await {
        Ok(frame) => frame,
        Err(why) => {
            let reason = format!("{why}\n");
            let response = Response::text(503, &reason).header("Retry-After", "1");
            return response.write(io, head_only, &app.cors).await.map(|_| true);
        }
    };
    let headers = format!(
        "{NO_CACHE}Content-Disposition: inline; filename=snapshot.jpg\r\nX-Timestamp: {}\r\nX-Frame-Sequence: {}\r\n",
        format_timestamp(frame.timestamp_us),
        frame.seq
    );
    let response = Response {
        status: 200,
        content_type: "image/jpeg",
        headers,
        body: std::borrow::Cow::Borrowed(&frame.jpeg[..]),
        close: false,
    }
    .persist(keep_alive, http10);
    response
        .write(io, head_only, &app.cors)
        .await
        .map(|_| response.close)
}
