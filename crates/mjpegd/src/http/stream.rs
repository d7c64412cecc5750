//! The MJPEG stream writer: one per stream client, the end of the pipeline.
//!
//! It writes the response head, then for each frame its policy hands it: the frame's preformatted part
//! header, the shared JPEG bytes and the closing boundary, in one vectored write, copying nothing. The
//! body is not chunked and ends when the connection closes, as the ESP32 firmware, µStreamer and
//! mjpg-streamer do (VLC and several embedded players reject chunked MJPEG).
//!
//! Each part is followed at once by the next boundary, so a client knows the frame is complete without
//! waiting for the next one. Chromium needs more: it shows a part only when the next part's headers arrive
//! (Chromium bug 527446). For Chromium (detected from the User-Agent, or forced with `advance_headers=1`)
//! the stream sends each part's headers ahead, right after the previous boundary, as µStreamer's
//! `advance_headers` does; those early headers cannot carry a Content-Length, so such parts are delimited by
//! the boundary alone.

use crate::hub::Subscription;
use crate::net::Transport;
use bytes::Buf;
use mjpegd_core::frame::{ADVANCE_HEAD, BOUNDARY, PART_TAIL};
use mjpegd_core::{EvictCause, Frame, Policy};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How one client's stream is written.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    /// Send each part's headers ahead of its JPEG (for Chromium).
    pub advance_headers: bool,
    /// At most this many frames a second (the newest at each slot).
    pub fps_cap: Option<f64>,
    /// A lockstep client that takes longer than this for one frame is evicted.
    pub lockstep_timeout: Duration,
    /// A latest or all client that takes longer than this for one frame is disconnected.
    pub write_timeout: Duration,
}

/// Why a stream ended.
#[derive(Debug)]
pub enum StreamEnd {
    /// The client went away (or a write failed).
    Disconnected(io::Error),
    /// The hub or a timeout evicted the client.
    Evicted(EvictCause),
    /// The server is shutting down (or a reload removed the camera).
    Shutdown,
}

impl StreamEnd {
    /// Why the stream ended, in one word (the `ended` field of the log line).
    pub fn as_str(&self) -> &'static str {
        match self {
            StreamEnd::Disconnected(_) => "disconnected",
            StreamEnd::Evicted(_) => "evicted",
            StreamEnd::Shutdown => "shutdown",
        }
    }

    /// The eviction's cause, if the server evicted the client.
    pub fn cause(&self) -> Option<&'static str> {
        match self {
            StreamEnd::Evicted(cause) => Some(cause.as_str()),
            _ => None,
        }
    }
}

/// The response head of a stream, including the first boundary (and, in advance mode, the first part's
/// headers). `X-Accel-Buffering: no` tells nginx in front not to buffer it (frames would reach clients
/// late, a buffer at a time), whatever its `proxy_buffering` says.
pub fn response_head(policy: Policy, advance_headers: bool, cors: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nServer: mjpegd/{}\r\nContent-Type: multipart/x-mixed-replace;boundary={BOUNDARY}\r\n{}Connection: close\r\n{cors}X-Delivery: {policy}\r\nX-Accel-Buffering: no\r\n\r\n--{BOUNDARY}\r\n{}",
        env!("CARGO_PKG_VERSION"),
        super::response::NO_CACHE,
        if advance_headers { std::str::from_utf8(ADVANCE_HEAD).unwrap_or_default() } else { "" },
    )
}

/// Streams frames from `sub` to `w` until the client leaves, is evicted, or `shutdown` fires. The response
/// head must have been written already.
///
/// Under `latest` and `lockstep`, a frame is taken from the hub only once the kernel has handed most of the
/// previous one to the client: otherwise a slow client's socket buffers would fill with seconds of stale
/// video and it would always see the past. Under `all`, buffering is what the client asked for.
pub async fn stream_frames<W: Transport>(
    w: &mut W,
    mut sub: Subscription,
    options: &StreamOptions,
    shutdown: &CancellationToken,
) -> StreamEnd {
    // Cancelled on eviction and (a child of `shutdown`) on shutdown: one waiter per client per frame.
    let stop = sub.entry().evicted.clone();
    let ended = || {
        if shutdown.is_cancelled() {
            StreamEnd::Shutdown
        } else {
            StreamEnd::Evicted(EvictCause::BufferFull)
        }
    };
    let policy = sub.entry().policy;
    let (timeout, timeout_cause) = match policy {
        Policy::Lockstep => (options.lockstep_timeout, EvictCause::LockstepTimeout),
        _ => (options.write_timeout, EvictCause::WriteTimeout),
    };
    let period = options
        .fps_cap
        .map(|fps| Duration::from_secs_f64(1.0 / fps));
    let mut next_slot = Instant::now();
    let mut last_part = 0usize;
    loop {
        // A latest client waits for its queue to drain before it picks the newest frame.
        // A client that takes no bytes for the write timeout (vanished without a reset) is dropped.
        if policy == Policy::Latest && last_part > 0 {
            tokio::select! {
                r = tokio::time::timeout(timeout, drained(w, last_part)) => if r.is_err() {
                    sub.evict(timeout_cause);
                    return StreamEnd::Evicted(timeout_cause);
                },
                _ = stop.cancelled() => return ended(),
            }
        }
        if period.is_some() {
            tokio::select! {
                _ = tokio::time::sleep_until(next_slot) => {}
                _ = stop.cancelled() => return ended(),
            }
        }
        let frame = tokio::select! {
            r = sub.next() => match r {
                Ok(frame) => frame,
                Err(cause) => return StreamEnd::Evicted(cause),
            },
            _ = stop.cancelled() => return ended(),
        };
        let started = Instant::now();
        let written = tokio::select! {
            // A lockstep client has been handed its round's frame: draining its queue is part of the time
            // the round waits for it, under the lockstep timeout.
            r = tokio::time::timeout(timeout, async {
                if policy == Policy::Lockstep && last_part > 0 {
                    drained(w, last_part).await;
                }
                write_part(w, &frame, options.advance_headers).await
            }) => r,
            _ = stop.cancelled() => return ended(),
        };
        match written {
            Ok(Ok(bytes)) => {
                last_part = bytes;
                sub.sent(bytes)
            }
            Ok(Err(e)) => return StreamEnd::Disconnected(e),
            Err(_) => {
                sub.evict(timeout_cause);
                return StreamEnd::Evicted(timeout_cause);
            }
        }
        if let Some(period) = period {
            // Slots are kept on a grid so the average rate is the cap; a late client does not burst.
            next_slot = (next_slot + period).max(started);
        }
    }
}

/// Returns once at most `limit` bytes wait in the connection's send queue. Polls with a back-off, since
/// the kernel has no readiness event for "the queue fell below N"; only clients that are behind wait here.
async fn drained<W: Transport>(w: &W, limit: usize) {
    // Short pauses first (a client that is only a little behind is on time again within a millisecond or
    // two), longer ones for a client that stays behind, so it costs few wake-ups.
    const PAUSES_MS: [u64; 9] = [1, 1, 1, 2, 2, 4, 8, 16, 32];
    let mut tries = 0;
    while w.unsent_bytes().is_some_and(|q| q > limit) {
        tokio::time::sleep(Duration::from_millis(
            PAUSES_MS[tries.min(PAUSES_MS.len() - 1)],
        ))
        .await;
        tries += 1;
    }
}

/// Writes one part: header, JPEG, boundary (in advance mode: JPEG, boundary, next part's header).
async fn write_part<W: AsyncWrite + Unpin>(
    w: &mut W,
    frame: &Frame,
    advance_headers: bool,
) -> io::Result<usize> {
    if advance_headers {
        let mut buf = (&frame.jpeg[..]).chain(PART_TAIL).chain(ADVANCE_HEAD);
        let n = buf.remaining();
        w.write_all_buf(&mut buf).await?;
        Ok(n)
    } else {
        let mut buf = (&frame.part_head[..])
            .chain(&frame.jpeg[..])
            .chain(PART_TAIL);
        let n = buf.remaining();
        w.write_all_buf(&mut buf).await?;
        Ok(n)
    }
}

/// Whether a User-Agent is Chromium's (Chrome, Edge, Opera, Brave, headless Chrome, Android WebView), whose
/// multipart image decoder shows a part only once the next part's headers arrive.
pub fn is_chromium(user_agent: &str) -> bool {
    user_agent.contains("Chrome/")
        || user_agent.contains("Chromium/")
        || user_agent.contains("HeadlessChrome/")
}

/// Whether a request gets each part's headers ahead by default: Chromium's image decoder needs them, but
/// a page that reads the stream itself with fetch() (Mainsail's MJPEG-Streamer mode, from Chromium and
/// with its User-Agent) cuts frames by Content-Length, which headers sent ahead cannot carry. Chromium
/// tells the two apart in `Sec-Fetch-Dest`: `image` (or `document`) for what it decodes, `empty` for
/// fetch() and XMLHttpRequest.
pub fn wants_advance_headers(user_agent: Option<&str>, fetch_dest: Option<&str>) -> bool {
    user_agent.is_some_and(is_chromium)
        && !fetch_dest.is_some_and(|d| d.eq_ignore_ascii_case("empty"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_chromium_decodes_gets_headers_ahead() {
        let chrome = Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36");
        assert!(wants_advance_headers(chrome, Some("image")));
        assert!(wants_advance_headers(chrome, Some("document")));
        assert!(
            wants_advance_headers(chrome, None),
            "Chromium before Sec-Fetch-Dest"
        );
        assert!(!wants_advance_headers(chrome, Some("empty")), "fetch()");
        assert!(!wants_advance_headers(
            Some("Lavf/59.27.100"),
            Some("image")
        ));
        assert!(!wants_advance_headers(None, None));
    }

    #[test]
    fn chromium_is_recognised_and_others_are_not() {
        assert!(is_chromium("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36"));
        assert!(is_chromium("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 Edg/120.0"));
        assert!(!is_chromium(
            "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
        ));
        assert!(!is_chromium("VLC/3.0.18 LibVLC/3.0.18"));
        assert!(!is_chromium("Lavf/59.27.100"));
    }
}
