//! The handlers: what each route does, one function per route in a module of its own concern.
//!
//! A routed request ([`Route`]) is given to exactly one handler, of one of two kinds, and the kind is in
//! the type ([`Handler`]):
//! - [`Answer`]: answers with one [`Response`] (reading the request body if it takes one); the connection
//!   then carries the next request;
//! - [`TakeOver`]: takes the connection over (a stream, a download) and ends it.
//!
//! [`handler`] is the table from routes to handlers; [`answer`] and [`take_over`] call them.

pub mod api;
pub mod camera_streamer;
pub mod controls;
pub mod download;
pub mod esp32;
pub mod events;
pub mod metrics;
pub mod mjpg_streamer;
pub mod page;
pub mod push;
mod push_key;
pub mod push_ws;
pub mod recordings;
pub mod replay;
pub mod snapshot;
pub mod state;
pub mod stream;
pub mod ws_view;

use super::auth::Verdict;
use super::body::Body;
use super::request::Request;
use super::response::Response;
use super::route::{Resource, Route};
use crate::camera::Camera;
use crate::control::Control;
use crate::http::app::{App, StreamSlot};
use crate::net::{Peer, Transport};
use mjpegd_core::variant::{SizeRequest, VariantKey};
use std::sync::Arc;
use std::time::SystemTime;

/// One request as its handler sees it.
pub struct Ctx<'a> {
    pub app: &'a Arc<App>,
    /// Where changes to the configuration go.
    pub control: &'a Control,
    pub request: &'a Request,
    /// The client (behind a trusted proxy, the one the proxy names).
    pub client: Peer,
    /// How the request got in (and whether it may see clients, or write).
    pub verdict: Verdict,
    /// The cameras as they were when the request was routed (a reload swaps the list; this request
    /// keeps the one it was routed by).
    pub cameras: &'a [Arc<Camera>],
    /// When the request head arrived (a snapshot's `max_delay` counts from here).
    pub arrived: SystemTime,
    /// The `Server` header its answer carries (mjpg-streamer's URLs answer as mjpg-streamer:
    /// [`super::route::server_of`]).
    pub server: &'static str,
}

impl Ctx<'_> {
    /// A HEAD request: the answer's body is left out.
    pub fn head_only(&self) -> bool {
        self.request.method == "HEAD"
    }
}

/// A handler that answers with one response.
pub enum Answer {
    Snapshot(Arc<Camera>),
    /// `/state` (None: every camera, the first at the top level) or a camera's.
    State(Option<Arc<Camera>>),
    Metrics,
    /// The page: a camera's, or the wall of every camera.
    Page(Option<Arc<Camera>>),
    /// The segments of a camera, or of all of them.
    Recordings(Option<Arc<Camera>>),
    Api(api::Target),
    /// A relayed ESP32-CAM's `/control?var=&val=` (a write) and `/status`.
    Esp32Control(Arc<Camera>),
    Esp32Status(Arc<Camera>),
    /// A V4L2 camera's controls (reads and writes: the method decides).
    Controls(Arc<Camera>, controls::Which),
    /// `POST /cams/NAME/events`: an event clip.
    Events(Arc<Camera>),
    /// mjpg-streamer's `?action=command` and `input.json`.
    MjpgCommand(Arc<Camera>),
    MjpgInput(Arc<Camera>),
    /// camera-streamer's `/status` and `/option` (of one camera, or of all).
    CameraStreamer(Option<Arc<Camera>>, camera_streamer::Which),
    UnknownAction,
    NoSuchCamera(String),
    NotFound,
    /// A method other than GET or HEAD on a route that only reads.
    MethodNotAllowed,
}

/// A handler that takes the connection over.
pub enum TakeOver {
    Stream(Arc<Camera>),
    Download(String),
    /// `/recordings/FILE/stream`: a segment replayed.
    Replay(String),
    /// `/cams/NAME/push`, whatever the method (the handler answers those it does not take).
    Push(Arc<Camera>),
    /// `/cams/NAME/ws`: the frames over a WebSocket.
    WsView(Arc<Camera>),
}

/// What serves a request.
pub enum Handler {
    Answer(Answer),
    TakeOver(TakeOver),
}

/// The table: which handler serves `route` for `method`. (`cameras` are those `route` was made from.)
pub fn handler(route: Route, method: &str, cameras: &[Arc<Camera>]) -> Handler {
    let reads = matches!(method, "GET" | "HEAD");
    let camera = |index: usize| cameras[index].clone();
    let answer = match route {
        Route::Api(target) => Answer::Api(target),
        Route::Camera {
            index,
            resource: Resource::Controls(which),
        } => Answer::Controls(camera(index), which),
        Route::CameraStreamer { camera: c, which } => Answer::CameraStreamer(c.map(camera), which),
        Route::Camera {
            index,
            resource: Resource::Events,
        } => Answer::Events(camera(index)),
        Route::Camera {
            index,
            resource: Resource::Push,
        } => return Handler::TakeOver(TakeOver::Push(camera(index))),
        _ if !reads => Answer::MethodNotAllowed,
        Route::Camera { index, resource } => match resource {
            Resource::Stream => return Handler::TakeOver(TakeOver::Stream(camera(index))),
            Resource::Ws => return Handler::TakeOver(TakeOver::WsView(camera(index))),
            Resource::Snapshot => Answer::Snapshot(camera(index)),
            Resource::State => Answer::State(Some(camera(index))),
            Resource::Page => Answer::Page(Some(camera(index))),
            Resource::Recordings => Answer::Recordings(Some(camera(index))),
            Resource::Control => Answer::Esp32Control(camera(index)),
            Resource::Status => Answer::Esp32Status(camera(index)),
            Resource::Controls(which) => Answer::Controls(camera(index), which),
            Resource::MjpgCommand => Answer::MjpgCommand(camera(index)),
            Resource::MjpgInput => Answer::MjpgInput(camera(index)),
            Resource::Push => return Handler::TakeOver(TakeOver::Push(camera(index))),
            Resource::Events => Answer::Events(camera(index)),
        },
        Route::RecordingFile(name) => return Handler::TakeOver(TakeOver::Download(name)),
        Route::RecordingStream(name) => return Handler::TakeOver(TakeOver::Replay(name)),
        Route::State => Answer::State(None),
        Route::Metrics => Answer::Metrics,
        Route::Page => Answer::Page(None),
        Route::Recordings => Answer::Recordings(None),
        Route::NoSuchCamera(what) => Answer::NoSuchCamera(what),
        Route::UnknownAction(_) => Answer::UnknownAction,
        Route::NotFound => Answer::NotFound,
    };
    Handler::Answer(answer)
}

/// The variant a request's `?width=`, `?height=`, `?quality=` name on `camera` (None: the original), or
/// why they cannot be served (a 400).
pub(crate) fn variant_of(
    camera: &Camera,
    size: &SizeRequest,
) -> Result<Option<VariantKey>, String> {
    if size.is_empty() {
        return Ok(None);
    }
    size.resolve(camera.source_size(), camera.settings().options.quality)
}

/// A refused write as a response: the status and reason, with the Basic challenge on a 401.
pub(crate) fn refused(refusal: crate::http::access::Refusal) -> Response {
    let response = Response::text(refusal.status, refusal.reason);
    if refusal.status == 401 {
        response.header("WWW-Authenticate", crate::http::auth::CHALLENGE)
    } else {
        response
    }
}

/// A JSON error answer: `{"error": message}` with `status`.
pub(crate) fn json_error(status: u16, message: String) -> Response {
    Response::json_value(status, &serde_json::json!({ "error": message }))
}

/// A write's body, read whole (at most `limit` bytes, by the head timeout) as a JSON object; or the answer
/// that says why not (`expected`: what the object should look like, for the 400).
pub(crate) async fn json_object<R: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    ctx: &Ctx<'_>,
    body: &mut Body<'_, R>,
    limit: usize,
    expected: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, Response> {
    let app = ctx.app;
    let deadline = tokio::time::Instant::now() + app.config.limits.head_timeout;
    let bytes = match body.read_to_end(limit, deadline).await {
        Ok(b) => b,
        Err(e) => {
            let (status, reason) = e.status();
            let mut r = json_error(status, reason.trim_end().to_string());
            // (what is left of the body is not read: the connection ends after the answer)
            r.close = true;
            if matches!(e, crate::http::body::BodyError::TooLarge { .. }) {
                app.counters
                    .bad_requests
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            return Err(r);
        }
    };
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(json_error(400, format!("expected {expected}"))),
        Err(e) => Err(json_error(400, format!("the body is not JSON: {e}"))),
    }
}

/// Runs an answering handler.
pub async fn answer<T: Transport>(
    ctx: &Ctx<'_>,
    answer: Answer,
    body: &mut Body<'_, T>,
) -> Response {
    match answer {
        Answer::Snapshot(camera) => snapshot::get(ctx, &camera).await,
        Answer::State(camera) => state::get(ctx, camera).await,
        Answer::Metrics => metrics::get(ctx),
        Answer::Page(camera) => page::get(ctx, camera.as_deref()),
        Answer::Recordings(camera) => recordings::list(ctx, camera).await,
        Answer::Api(target) => api::answer(ctx, target, body).await,
        Answer::Esp32Control(camera) => esp32::control(ctx, &camera).await,
        Answer::Esp32Status(camera) => esp32::status(ctx, &camera).await,
        Answer::Controls(camera, which) => controls::answer(ctx, &camera, which, body).await,
        Answer::Events(camera) => events::trigger(ctx, &camera, body).await,
        Answer::MjpgCommand(camera) => mjpg_streamer::command(ctx, &camera).await,
        Answer::MjpgInput(camera) => mjpg_streamer::input(&camera).await,
        Answer::CameraStreamer(camera, which) => camera_streamer::answer(ctx, camera, which).await,
        Answer::UnknownAction => Response::text(
            400,
            "unknown action: use action=stream, snapshot (or stream_N, snapshot_N) or command\n",
        ),
        Answer::NoSuchCamera(what) => Response::text(
            404,
            format!("not found: no {what}; /state lists the cameras\n"),
        )
        .keep(),
        Answer::NotFound => {
            Response::text(404, "not found: try /stream, /snapshot, /state or /\n").keep()
        }
        Answer::MethodNotAllowed => {
            Response::text(405, "only GET and HEAD are served here\n").header("Allow", "GET, HEAD")
        }
    }
}

/// Runs a handler that takes the connection over; `buf` holds what was read past the request head.
pub async fn take_over<T: Transport>(
    ctx: &Ctx<'_>,
    take_over: TakeOver,
    io: T,
    buf: bytes::BytesMut,
) {
    match take_over {
        TakeOver::Stream(camera) => stream::serve(ctx, &camera, io).await,
        TakeOver::Download(name) => download::serve(ctx, &name, io).await,
        TakeOver::Replay(name) => replay::serve(ctx, &name, io).await,
        TakeOver::Push(camera) => push::serve(ctx, &camera, io, buf).await,
        TakeOver::WsView(camera) => ws_view::serve(ctx, &camera, io, buf).await,
    }
}

/// A stream slot (`--max-clients`) for a handler that streams, or the counted 503 that says none is free.
pub(crate) fn stream_slot(app: &App) -> Result<StreamSlot<'_>, Response> {
    app.reserve_stream().ok_or_else(|| {
        app.counters
            .rejected_max_clients
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let msg = format!(
            "too many clients: all {} stream slots are in use (--max-clients)\n",
            app.config.max_clients
        );
        Response::text(503, msg).header("Retry-After", "5")
    })
}
