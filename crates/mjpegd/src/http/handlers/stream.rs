//! A stream: `/stream` and its aliases take the connection over and send MJPEG until the client leaves.
//!
//! The query says how (`?delivery=`, `?fps=`, `?advance_headers=`, and a size variant with `?width=`,
//! `?height=`, `?quality=`); the writing itself, with its sendfile fast path, is [`crate::http::stream`].

use super::{variant_of, Ctx};
use crate::camera::Camera;
use crate::http::app::App;
use crate::http::query::size_request;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::stream::{
    response_head, stream_frames, wants_advance_headers, StreamEnd, StreamOptions,
};
use crate::hub::{ClientMeta, SharedHub};
use crate::net::Transport;
use mjpegd_core::variant::VariantKey;
use mjpegd_core::Policy;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

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

/// Serves `camera`'s stream on the connection until the client leaves, is evicted, or the camera goes.
pub async fn serve<T: Transport>(ctx: &Ctx<'_>, camera: &Camera, mut io: T) {
    let (app, request, addr, head_only) = (ctx.app, ctx.request, ctx.client, ctx.head_only());
    let (policy, options, variant) = match stream_options(app, camera, request) {
        Ok(o) => o,
        Err(why) => {
            app.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            let _ = Response::text(400, format!("{why}\n"))
                .write(&mut io, head_only, &app.cors)
                .await;
            return;
        }
    };
    let _slot = match super::stream_slot(app) {
        Ok(slot) => slot,
        Err(r) => {
            let _ = r.write(&mut io, head_only, &app.cors).await;
            return;
        }
    };
    let head = response_head(policy, options.advance_headers, &app.cors, ctx.server);
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
            let _ = Response::text(503, format!("{why}\n"))
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
