//! WebSocket ingest on `/cams/NAME/push` (RFC 6455): each binary message is one JPEG, as an ESP32-CAM
//! sketch sends with `webSocket.sendBIN(fb->buf, fb->len)`.
//!
//! [`super::push`] checks the key (or admin), the handshake ([`crate::http::websocket`]) and takes the camera before
//! anything is upgraded, so every refusal is a plain HTTP answer (401, 409, 426, ...). Then this module
//! answers 101 and speaks the protocol with tungstenite (through tokio-tungstenite) over the connection
//! as it is, plain TCP or TLS. The bounds:
//! - a message (and a frame) is at most [`MAX_PART`] bytes, as any pushed frame: a larger one cuts the
//!   pusher with close code 1009, logged once per camera and counted;
//! - text messages are not frames: ignored and counted;
//! - a ping is answered with a pong (by tungstenite, on the next read); when nothing has come for a
//!   while mjpegd sends its own ping, so a NAT mapping stays open on an idle link and a peer that is gone
//!   shows up as a failed write;
//! - a pusher that sends no frame for the camera's `read-timeout` is cut (pings and text do not keep it);
//! - a connection dropped without a close frame ends the same way as a closed one: the camera is free.

use super::push_key::{presented_key, still_pushed};
use super::Ctx;
use crate::camera::Camera;
use crate::http::websocket::Upgrade;
use crate::net::Transport;
use crate::source::push::{Hold, Loss, Protocol};
use crate::source::relay::MAX_PART;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How long an idle link goes before mjpegd pings: a third of the read timeout, 1 to 30 seconds.
fn ping_interval(read_timeout: Duration) -> Duration {
    (read_timeout / 3).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// What woke the connection up.
enum Event {
    Message(Option<Result<Message, WsError>>),
    PingDue,
    NoFrame,
    TakenOver,
}

/// Answers 101 and feeds the camera from the WebSocket's binary messages until it ends.
pub async fn run<T: Transport>(
    ctx: &Ctx<'_>,
    camera: &Camera,
    mut io: T,
    buf: BytesMut,
    mut hold: Hold,
    upgrade: &Upgrade,
) -> Result<(), String> {
    let write_timeout = ctx.app.config.write_timeout;
    match tokio::time::timeout(write_timeout, io.write_all(upgrade.answer().as_bytes())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("the upgrade answer was not taken in time".into()),
    }
    hold.set_protocol(Protocol::WebSocket);
    tracing::info!(camera = camera.name(), client = %ctx.client, "pusher connected (WebSocket)");
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_PART))
        .max_frame_size(Some(MAX_PART))
        .max_write_buffer_size(1 << 20);
    let mut ws =
        WebSocketStream::from_partially_read(io, buf.to_vec(), Role::Server, Some(config)).await;
    let read_timeout = camera.settings().options.read_timeout;
    let ping_every = ping_interval(read_timeout);
    let key = presented_key(ctx.request);
    let cut = hold.cut_token();
    let mut no_frame_by = Instant::now() + read_timeout;
    let mut heard = Instant::now();
    loop {
        let event = tokio::select! {
            m = ws.next() => Event::Message(m),
            () = tokio::time::sleep_until(heard + ping_every) => Event::PingDue,
            () = tokio::time::sleep_until(no_frame_by) => Event::NoFrame,
            () = cut.cancelled() => Event::TakenOver,
        };
        let message = match event {
            Event::Message(Some(Ok(m))) => m,
            Event::Message(None) => return Ok(()),
            Event::Message(Some(Err(WsError::Capacity(CapacityError::MessageTooLong {
                size,
                ..
            })))) => {
                if camera.inlet.too_large() {
                    tracing::warn!(
                        camera = camera.name(),
                        "a pushed WebSocket message of {size} bytes (more than {MAX_PART}) cut its pusher (logged once per camera, counted in /state)"
                    );
                }
                close(
                    &mut ws,
                    CloseCode::Size,
                    "a frame is at most 16 MiB",
                    write_timeout,
                )
                .await;
                return Err(format!("a message of {size} bytes, more than {MAX_PART}"));
            }
            Event::Message(Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed))) => {
                return Ok(())
            }
            Event::Message(Some(Err(e))) => return Err(format!("WebSocket: {e}")),
            Event::PingDue => {
                heard = Instant::now();
                let ping = ws.send(Message::Ping(Bytes::new()));
                match tokio::time::timeout(write_timeout, ping).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => return Err(format!("WebSocket ping: {e}")),
                    Err(_) => return Err("a ping was not taken in time".into()),
                }
            }
            Event::NoFrame => {
                close(&mut ws, CloseCode::Away, "no frame in time", write_timeout).await;
                return Err(format!("sent no frame for {read_timeout:?}"));
            }
            Event::TakenOver => {
                close(
                    &mut ws,
                    CloseCode::Policy,
                    "taken over by a newer pusher",
                    write_timeout,
                )
                .await;
                return Err("taken over by a newer pusher".into());
            }
        };
        heard = Instant::now();
        match message {
            Message::Binary(jpeg) => {
                // (checked per frame: a reload may have changed the camera or its key)
                if !still_pushed(camera, key) {
                    close(
                        &mut ws,
                        CloseCode::Policy,
                        "the camera changed",
                        write_timeout,
                    )
                    .await;
                    return Err("the camera's source or push key changed".into());
                }
                let _ = hold.send(jpeg);
                no_frame_by = Instant::now() + read_timeout;
            }
            Message::Text(_) => camera.inlet.lost(Loss::TextMessage),
            // (tungstenite queues the pong; the next read sends it)
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            // (the answering close frame goes out on the next read, which then ends)
            Message::Close(_) => {}
        }
    }
}

/// Sends a close frame, if the peer takes it in time.
async fn close<T: Transport>(
    ws: &mut WebSocketStream<T>,
    code: CloseCode,
    reason: &'static str,
    within: Duration,
) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(within.min(Duration::from_secs(5)), ws.close(Some(frame))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_pings_come_well_within_the_read_timeout() {
        assert_eq!(
            ping_interval(Duration::from_secs(10)),
            Duration::from_secs(10) / 3
        );
        assert_eq!(
            ping_interval(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        assert_eq!(
            ping_interval(Duration::from_secs(600)),
            Duration::from_secs(30)
        );
    }
}
