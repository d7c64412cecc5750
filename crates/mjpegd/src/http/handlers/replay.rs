//! Replay: `/recordings/FILE/stream` takes the connection over and sends a recorded segment as an MJPEG
//! stream, the way a live stream is sent, so an `<img>`, VLC, ffmpeg or OpenCV plays it.
//!
//! - The frames are the recorded JPEGs, byte for byte, each part with `X-Timestamp` (its original capture
//!   time, as live streams write it) and `X-Frame-Sequence` (the frame's number in this replay, from 1;
//!   frames skipped for `?fps=` are counted, so a gap shows them).
//! - They are paced by their recorded capture times, scaled by `?speed=` (0.5 to 16), with at most
//!   `?fps=` a second; a hole in the recording is a wait of at most two seconds
//!   ([`mjpegd_core::replay`]). `?rate=` (0.1 to 120) plays every frame that many a second instead,
//!   whatever their capture spacing: a timelapse taken every 10 s plays as a movie, each part still
//!   labelled with its capture time. A client or a transcode slower than the pace slows the replay down; no
//!   frame is skipped for it.
//! - `?start=SECONDS` (from the segment's first frame) seeks through the segment's Cues, or by scanning
//!   its clusters while it is being written; the first frame sent is the one showing at that time.
//! - `?width=`, `?height=` and `?quality=` are resolved against the segment's picture size as on a live
//!   stream, and each frame is transcoded on the shared transcode pool, where each replay queues as a
//!   lane of its own (one frame at a time), taking turns with the cameras' variants.
//! - A segment being written is replayed up to its newest frame: the replay reads the file as it goes,
//!   so it ends when it catches up with the recorder (or at the end of a finished segment).
//!
//! The file is found and opened as `/recordings/FILE` is ([`crate::http::recordings::open_of`]), under
//! the same access rules; a replay takes a stream slot (`--max-clients`) like a live stream, and is listed
//! in its camera's `/state` and counted in `/metrics` while it runs ([`crate::replays`]).

use super::Ctx;
use crate::http::query::replay_query;
use crate::http::recordings::{self, Disk};
use crate::http::response::{Response, NO_CACHE};
use crate::http::stream::{wants_advance_headers, write_part};
use crate::net::Transport;
use crate::replays::ReplayEntry;
use crate::variant::transcode::TranscodePool;
use bytes::Bytes;
use mjpegd_core::frame::{ADVANCE_HEAD, BOUNDARY};
use mjpegd_core::mkv_read::{self, FrameRef, Frames, MkvError};
use mjpegd_core::replay::{Pace, Slot};
use mjpegd_core::transcode_queue::Lane;
use mjpegd_core::{Frame, Policy};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// The longest User-Agent kept for `/state`'s list of replays.
const MAX_USER_AGENT: usize = 200;

/// Numbers replays, for their transcode lanes, log lines and `/state`'s list.
static REPLAYS: AtomicU64 = AtomicU64::new(1);

/// The next frame of a cursor and its JPEG (blocking file work).
fn read_next(disk: &Disk, frames: &mut Frames) -> Result<Option<(FrameRef, Vec<u8>)>, String> {
    let Some(frame) = frames.next(disk).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let jpeg = disk.bytes(frame.data.clone()).map_err(|e| e.to_string())?;
    Ok(Some((frame, jpeg)))
}

/// Why a replay ended.
enum End {
    /// The last frame (of the segment, or of what was written) was sent.
    Done,
    Disconnected(std::io::Error),
    /// Reading the file failed mid-way (it was deleted, or garbled).
    ReadFailed(String),
    Shutdown,
}

impl End {
    fn as_str(&self) -> &'static str {
        match self {
            End::Done => "done",
            End::Disconnected(_) => "disconnected",
            End::ReadFailed(_) => "read_failed",
            End::Shutdown => "shutdown",
        }
    }
}

/// Serves the replay of segment `name`, then closes the connection.
pub async fn serve<T: Transport>(ctx: &Ctx<'_>, name: &str, mut io: T) {
    let (app, request, head_only) = (ctx.app, ctx.request, ctx.head_only());
    let refuse = |status: u16, why: String| Response::text(status, format!("{why}\n"));
    let advance = match request.param("advance_headers") {
        Some("1" | "true") => Ok(true),
        Some("0" | "false") => Ok(false),
        Some(v) => Err(format!(
            "advance_headers must be 0 or 1, not {:?}",
            v.chars().take(20).collect::<String>()
        )),
        None => Ok(wants_advance_headers(
            request.header("user-agent"),
            request.header("sec-fetch-dest"),
        )),
    };
    let query = match replay_query(request).and_then(|q| Ok((q, advance?))) {
        Ok(q) => q,
        Err(why) => {
            app.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            let _ = refuse(400, why).write(&mut io, head_only, &app.cors).await;
            return;
        }
    };
    let (query, advance) = query;
    // Finding, opening and reading the header is file work: off the runtime.
    let (which, file_name) = (ctx.cameras.to_vec(), name.to_string());
    let opened = tokio::task::spawn_blocking(move || {
        let (file, camera) = recordings::open_of(&which, &file_name)?;
        let disk = Disk(file);
        let segment = mkv_read::open(&disk);
        Some((disk, camera, segment))
    })
    .await
    .ok()
    .flatten();
    let Some((disk, camera, segment)) = opened else {
        let _ = refuse(404, "not found: no such recording".into())
            .write(&mut io, head_only, &app.cors)
            .await;
        return;
    };
    let segment = match segment {
        Ok(s) => s,
        Err(MkvError::Truncated) => {
            let _ = refuse(503, "the recording has no frame yet".into())
                .header("Retry-After", "1")
                .write(&mut io, head_only, &app.cors)
                .await;
            return;
        }
        Err(e) => {
            let _ = refuse(422, e.to_string())
                .write(&mut io, head_only, &app.cors)
                .await;
            return;
        }
    };
    let picture = (
        u32::from(segment.info.width),
        u32::from(segment.info.height),
    );
    let variant = if query.size.is_empty() {
        None
    } else {
        match query
            .size
            .resolve(picture, camera.settings().options.quality)
        {
            Ok(v) => v,
            Err(why) => {
                app.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
                let _ = refuse(400, why).write(&mut io, head_only, &app.cors).await;
                return;
            }
        }
    };
    let _slot = match super::stream_slot(app) {
        Ok(slot) => slot,
        Err(r) => {
            let _ = r.write(&mut io, head_only, &app.cors).await;
            return;
        }
    };
    // Seek: the frame showing at `start`, and a cursor after it.
    let disk = Arc::new(disk);
    let start_ticks = segment.us_to_ticks(query.start.as_micros().min(u64::MAX.into()) as u64);
    let first = {
        let (disk, segment) = (disk.clone(), segment.clone());
        tokio::task::spawn_blocking(move || {
            let Some((frame, frames)) = segment
                .frame_at(&*disk, start_ticks)
                .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            let jpeg = disk.bytes(frame.data.clone()).map_err(|e| e.to_string())?;
            Ok::<_, String>(Some((frame, jpeg, frames)))
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
    };
    let (first, frames) = match first {
        Ok(Some((frame, jpeg, frames))) => ((frame, jpeg), frames),
        Ok(None) => {
            let _ = refuse(503, "the recording has no frame yet".into())
                .header("Retry-After", "1")
                .write(&mut io, head_only, &app.cors)
                .await;
            return;
        }
        Err(why) => {
            let _ = refuse(422, format!("the recording cannot be read: {why}"))
                .write(&mut io, head_only, &app.cors)
                .await;
            return;
        }
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nServer: {}\r\nContent-Type: multipart/x-mixed-replace;boundary={BOUNDARY}\r\n{NO_CACHE}Connection: close\r\n{}X-Accel-Buffering: no\r\nX-Replay-Start: {}\r\n\r\n--{BOUNDARY}\r\n{}",
        ctx.server,
        app.cors,
        mjpegd_core::frame::format_timestamp(first.0.capture_unix_micros),
        if advance { std::str::from_utf8(ADVANCE_HEAD).unwrap_or_default() } else { "" },
    );
    if head_only {
        let _ = io.write_all(head.as_bytes()).await;
        return;
    }
    io.tune_for_stream(app.config.send_buffer_for(Policy::All));
    let id = REPLAYS.fetch_add(1, Ordering::Relaxed);
    let addr = ctx.client;
    let started = Instant::now();
    tracing::info!(camera = camera.name(), replay = id, %addr, file = name, start_s = query.start.as_secs_f64(), playback = ?query.playback, fps_cap = ?query.fps, variant = ?variant.map(|k| k.to_string()), "replay started");
    let mut sent = 0u64;
    let end = match tokio::time::timeout(app.config.write_timeout, io.write_all(head.as_bytes()))
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    {
        Err(e) => End::Disconnected(e),
        Ok(()) => {
            // Listed in /state and counted in /metrics while it runs.
            let listed = camera.replays.start(ReplayEntry {
                id,
                file: name.to_string(),
                addr,
                user_agent: request
                    .header("user-agent")
                    .map(|u| u.chars().take(MAX_USER_AGENT).collect()),
                playback: query.playback,
                fps_cap: query.fps,
                start_seconds: query.start.as_secs_f64(),
                since: std::time::SystemTime::now(),
                frames_sent: AtomicU64::new(0),
                bytes_sent: AtomicU64::new(0),
            });
            let lane = format!("{} replay {id}", camera.name());
            let mut pace = Pace::of(query.playback, query.fps);
            let shutdown = camera.clients_token().clone();
            let mut next = Some(first);
            let mut frames = frames;
            let mut seq = 0u64;
            loop {
                let (frame, jpeg) = match next.take() {
                    Some(f) => f,
                    None => {
                        let d = disk.clone();
                        let read = tokio::task::spawn_blocking(move || {
                            let r = read_next(&d, &mut frames);
                            (frames, r)
                        })
                        .await;
                        match read {
                            Ok((f, Ok(Some(x)))) => {
                                frames = f;
                                x
                            }
                            Ok((_, Ok(None))) => break End::Done,
                            Ok((_, Err(e))) => break End::ReadFailed(e),
                            Err(e) => break End::ReadFailed(e.to_string()),
                        }
                    }
                };
                seq += 1;
                let due = match pace.next(frame.media_us) {
                    Slot::Skip => continue,
                    Slot::At(due) => started + std::time::Duration::from_micros(due),
                };
                let jpeg = match variant {
                    None => Bytes::from(jpeg),
                    Some(key) => {
                        let slot = match TranscodePool::global()
                            .slot(&lane, Lane::Variant(key))
                            .await
                        {
                            Ok(s) => s,
                            Err(e) => break End::ReadFailed(e),
                        };
                        match slot.transcode(Bytes::from(jpeg), key).await {
                            Ok((b, _)) => b,
                            Err(e) => {
                                // A frame the decoder refuses is left out, as a live variant does.
                                tracing::debug!(replay = id, error = %e, "replay: a frame not transcoded");
                                continue;
                            }
                        }
                    }
                };
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break End::Shutdown,
                    _ = tokio::time::sleep_until(due) => {}
                }
                let part = Frame::new(seq, frame.capture_unix_micros, jpeg);
                let wrote = tokio::time::timeout(
                    app.config.write_timeout,
                    write_part(&mut io, &part, advance),
                )
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
                match wrote {
                    Ok(n) => listed.sent(n as u64),
                    Err(e) => break End::Disconnected(e),
                }
                sent += 1;
            }
        }
    };
    let error = match &end {
        End::Disconnected(e) => Some(e.to_string()),
        End::ReadFailed(e) => Some(e.clone()),
        _ => None,
    };
    tracing::info!(
        camera = camera.name(),
        replay = id,
        %addr,
        file = name,
        duration_ms = started.elapsed().as_millis() as u64,
        frames = sent,
        ended = end.as_str(),
        error,
        "replay ended"
    );
    let _ = io.shutdown().await;
}
