//! `/cams/NAME/ws`: a camera's frames over a WebSocket, each frame one binary message.
//!
//! Dashboards draw frames from a WebSocket into a canvas or an `<img>` (PhotonVision's does); a page may
//! hold many of them, where the browser allows it only six MJPEG streams per host. The client is a stream
//! client like any other: it takes a stream slot (`--max-clients`), its `?delivery=` (default: the
//! camera's) and size (`?width=`, `?height=`, `?quality=`) work as for `/stream`, and it is listed and
//! counted in `/state` and `/metrics`. A frame that the client does not take within the write timeout
//! evicts it, as a stream's would. Messages from the client are read only to answer pings and to notice a
//! close; anything else it sends is ignored, and at most 64 KiB a message.

use super::{variant_of, Ctx};
use crate::camera::Camera;
use crate::http::query::size_request;
use crate::http::response::Response;
use crate::http::websocket::{handshake, wants_upgrade, Upgrade};
use crate::hub::{ClientMeta, SharedHub};
use crate::net::Transport;
use futures_util::{SinkExt, StreamExt};
use mjpegd_core::variant::VariantKey;
use mjpegd_core::{EvictCause, Policy};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Largest message a viewer may send (it has nothing to send but pings and a close).
const MAX_FROM_VIEWER: usize = 64 << 10;

/// How a viewer's connection ended.
enum End {
    Left,
    Evicted(EvictCause),
    Stopped,
    Failed(String),
}

/// What the request asks for: the upgrade's answer, the policy and the size; or why it cannot have it.
fn checks(
    ctx: &Ctx<'_>,
    camera: &Camera,
) -> Result<(Upgrade, Policy, Option<VariantKey>), Response> {
    let request = ctx.request;
    if !wants_upgrade(request) {
        return Err(Response::text(
            426,
            "this is a WebSocket: each frame one binary message (/cams/NAME/stream is the MJPEG stream)\n",
        )
        .header("Upgrade", "websocket"));
    }
    let upgrade = handshake(request)?;
    let bad = |e: String| Response::text(400, format!("{e}\n"));
    let policy = match request.param("delivery") {
        None => camera.settings().delivery,
        Some(p) => p.parse::<Policy>().map_err(|e| bad(e.to_string()))?,
    };
    let variant = size_request(request)
        .and_then(|s| variant_of(camera, &s))
        .map_err(bad)?;
    Ok((upgrade, policy, variant))
}

/// Serves `camera`'s frames over a WebSocket until the viewer leaves, is evicted, or the camera goes.
pub async fn serve<T: Transport>(ctx: &Ctx<'_>, camera: &Camera, mut io: T, buf: bytes::BytesMut) {
    let app = ctx.app;
    let request = ctx.request;
    let (upgrade, policy, variant) = match checks(ctx, camera) {
        Ok(c) => c,
        Err(r) => {
            app.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            let _ = r.write(&mut io, false, &app.cors).await;
            return;
        }
    };
    let _slot = match super::stream_slot(app) {
        Ok(slot) => slot,
        Err(r) => {
            let _ = r.write(&mut io, false, &app.cors).await;
            return;
        }
    };
    let lease = match variant.map(|key| camera.lease_variant(key)).transpose() {
        Ok(lease) => lease,
        Err(why) => {
            app.counters
                .rejected_max_variants
                .fetch_add(1, Ordering::Relaxed);
            let r = Response::text(503, format!("{why}\n")).header("Retry-After", "5");
            let _ = r.write(&mut io, false, &app.cors).await;
            return;
        }
    };
    let write_timeout = app.config.write_timeout;
    match tokio::time::timeout(write_timeout, io.write_all(upgrade.answer().as_bytes())).await {
        Ok(Ok(())) => {}
        _ => return,
    }
    let hub: &Arc<SharedHub> = match &lease {
        Some(lease) => &lease.variant().hub,
        None => &camera.hub,
    };
    // As for a stream: no Nagle delay, and the policy's send buffer (an `all` client's is bounded).
    io.tune_for_stream(app.config.send_buffer_for(policy));
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FROM_VIEWER))
        .max_frame_size(Some(MAX_FROM_VIEWER));
    let mut ws =
        WebSocketStream::from_partially_read(io, buf.to_vec(), Role::Server, Some(config)).await;
    let mut sub = hub.subscribe(ClientMeta {
        addr: ctx.client,
        policy,
        fps_cap: None,
        user_agent: request
            .header("user-agent")
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect(),
        stop: camera.client_token(),
    });
    let entry = sub.entry().clone();
    let stop = entry.evicted.clone();
    let shutdown = camera.clients_token();
    tracing::info!(camera = camera.name(), client = %entry.id, addr = %ctx.client, %policy, "WebSocket viewer started");
    let end = loop {
        let frame = tokio::select! {
            biased;
            () = stop.cancelled() => break if shutdown.is_cancelled() { End::Stopped } else { End::Evicted(EvictCause::BufferFull) },
            m = ws.next() => match m {
                // (a ping's pong goes out with the next read or write)
                Some(Ok(Message::Close(_))) | None => break End::Left,
                Some(Ok(_)) => continue,
                Some(Err(e)) => break End::Failed(e.to_string()),
            },
            d = sub.next() => match d {
                Ok(frame) => frame,
                Err(cause) => break End::Evicted(cause),
            },
        };
        let len = frame.jpeg.len();
        let send = ws.send(Message::Binary(frame.jpeg.clone()));
        match tokio::time::timeout(write_timeout, send).await {
            Ok(Ok(())) => sub.sent(len),
            Ok(Err(e)) => break End::Failed(e.to_string()),
            Err(_) => {
                sub.evict(EvictCause::WriteTimeout);
                break End::Evicted(EvictCause::WriteTimeout);
            }
        }
    };
    let (code, reason) = match &end {
        End::Stopped => (CloseCode::Away, "the camera stopped"),
        End::Evicted(_) => (CloseCode::Again, "too far behind"),
        End::Left | End::Failed(_) => (CloseCode::Normal, ""),
    };
    if !matches!(end, End::Failed(_) | End::Evicted(EvictCause::WriteTimeout)) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(Some(frame))).await;
    }
    let ended = match &end {
        End::Left => "left".to_string(),
        End::Evicted(cause) => format!("evicted ({})", cause.as_str()),
        End::Stopped => "stopped".to_string(),
        End::Failed(e) => format!("failed: {e}"),
    };
    tracing::info!(
        camera = camera.name(),
        client = %entry.id,
        addr = %ctx.client,
        %policy,
        frames = entry.frames_sent.load(Ordering::Relaxed),
        bytes = entry.bytes_sent.load(Ordering::Relaxed),
        %ended,
        "WebSocket viewer ended"
    );
}
