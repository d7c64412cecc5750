//! The MJPEG stream writer: one per stream client, the end of the pipeline.
//!
//! It writes the response head, then for each frame its policy hands it: the frame's preformatted part
//! header, the shared JPEG bytes and the closing boundary. On plain TCP the part goes with sendfile(2) from
//! the frame's sealed memfd ([`crate::net::shared_part`]), written once per frame for every client, so the
//! kernel takes page references rather than a copy per socket; over TLS, or for a frame too old to have
//! its file any more, the same bytes go in one vectored write from the frame's own buffers. The
//! body is not chunked and ends when the connection closes, as the ESP32 firmware, µStreamer and
//! mjpg-streamer do (VLC and several embedded players reject chunked MJPEG).
//!
//! Each part is followed at once by the next boundary, so a client knows the frame is complete without
//! waiting for the next one. Chromium needs more: it shows a part only when the next part's headers arrive
//! (Chromium bug 527446). For Chromium (detected from the User-Agent, or forced with `advance_headers=1`)
//! the stream sends each part's headers ahead, right after the previous boundary, as µStreamer's
//! `advance_headers` does; those early headers cannot carry a Content-Length, so such parts are delimited by
//! the boundary alone.
//!
//! This is the hot path (one pass per client per frame), so the common case does no more than it must:
//! every `select!` is `biased` towards the work, so the stop token's waiter and the write timeout's timer
//! are only set up when the client actually has to wait; a latest client's queue is looked at with one
//! ioctl (a reset connection is only checked for when the queue is long); a client that is behind waits
//! for the next frame before it looks again, then looks when its queue should have drained at the rate
//! it drains ([`DrainPacer`]); and only a lockstep client's completed send takes the hub's lock.

use crate::hub::{Delivery, Subscription};
use crate::net::shared_part::SharedPart;
use crate::net::Transport;
use bytes::Buf;
use mjpegd_core::frame::{ADVANCE_HEAD, BOUNDARY, PART_TAIL};
use mjpegd_core::{EvictCause, Frame, Policy};
use std::io;
use std::task::Poll;
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
pub fn response_head(policy: Policy, advance_headers: bool, cors: &str, server: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nServer: {server}\r\nContent-Type: multipart/x-mixed-replace;boundary={BOUNDARY}\r\n{}Connection: close\r\n{cors}X-Delivery: {policy}\r\nX-Accel-Buffering: no\r\n\r\n--{BOUNDARY}\r\n{}",
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
        // The selects below look at the stop token only when the work is not ready at once, so a client
        // that never has to wait (an `all` client catching up on its backlog) learns of it here.
        if stop.is_cancelled() {
            return ended();
        }
        // A latest client waits for its queue to drain before it picks the newest frame.
        // A client that takes no bytes for the write timeout (vanished without a reset) is dropped.
        // (A queue that is short already costs one ioctl, and no timer or waiter.) One that is behind
        // first waits for the next frame to exist: its queue drains meanwhile, so the polls below start
        // only when there is something to pick, and mostly find the queue short at once (over TLS, where
        // the load tool decrypts on the same cores, polling straight away made 5-6 polls per frame).
        if policy == Policy::Latest
            && last_part > 0
            && w.unsent_bytes_quick().is_none_or(|q| q > last_part)
        {
            tokio::select! {
                biased;
                _ = sub.changed_since_last() => {}
                _ = stop.cancelled() => return ended(),
            }
            tokio::select! {
                biased;
                r = tokio::time::timeout(timeout, drained(w, last_part)) => if r.is_err() {
                    sub.evict(timeout_cause);
                    return StreamEnd::Evicted(timeout_cause);
                },
                _ = stop.cancelled() => return ended(),
            }
        }
        if period.is_some() {
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(next_slot) => {}
                _ = stop.cancelled() => return ended(),
            }
        }
        let delivery = tokio::select! {
            biased;
            r = sub.next_delivery() => match r {
                Ok(delivery) => delivery,
                Err(cause) => return StreamEnd::Evicted(cause),
            },
            _ = stop.cancelled() => return ended(),
        };
        let started = period.map(|_| Instant::now());
        let mut part = Part::new(&delivery, options.advance_headers, w.sends_files());
        // The common case: the socket takes the whole part at once, with no timer and no waiter set up.
        // (A lockstep client first waits for its queue, under the timeout, below.)
        let quick = match &mut part {
            Part::Shared(cursor) if !(policy == Policy::Lockstep && last_part > 0) => {
                std::future::poll_fn(|cx| Poll::Ready(cursor.poll_send(w, cx))).await
            }
            _ => Poll::Pending,
        };
        let unsupported = matches!(&part, Part::Shared(c) if c.unsupported);
        let written = match quick {
            Poll::Ready(r) if !unsupported => Ok(r),
            _ => tokio::select! {
                biased;
                // A lockstep client has been handed its round's frame: draining its queue is part of the
                // time the round waits for it, under the lockstep timeout.
                r = tokio::time::timeout(timeout, async {
                    if policy == Policy::Lockstep && last_part > 0 {
                        drained(w, last_part).await;
                    }
                    part.send(w).await
                }) => r,
                _ = stop.cancelled() => return ended(),
            },
        };
        match written {
            Ok(Ok(bytes)) => {
                // What the part takes in the send queue (over TLS, with its records' framing).
                last_part = w.wire_len(bytes);
                sub.sent(bytes)
            }
            Ok(Err(e)) => return StreamEnd::Disconnected(e),
            Err(_) => {
                sub.evict(timeout_cause);
                return StreamEnd::Evicted(timeout_cause);
            }
        }
        if let (Some(period), Some(started)) = (period, started) {
            // Slots are kept on a grid so the average rate is the cap; a late client does not burst.
            next_slot = (next_slot + period).max(started);
        }
    }
}

/// Returns once at most `limit` bytes wait in the connection's send queue. Polls, since the kernel has no
/// readiness event for "the queue fell below N"; only clients that are behind wait here, paced by
/// [`DrainPacer`].
async fn drained<W: Transport>(w: &W, limit: usize) {
    let mut pacer = DrainPacer::default();
    let mut tries = 0;
    // The quick look each time; the full one (which also tells a reset connection, whose queue never
    // drains) every fourth.
    loop {
        let queued = if tries % 4 == 3 {
            w.unsent_bytes()
        } else {
            w.unsent_bytes_quick()
        };
        let Some(queued) = queued.filter(|&q| q > limit) else {
            return;
        };
        tokio::time::sleep(pacer.pause(Instant::now(), queued, limit)).await;
        tries += 1;
    }
}

/// When a client that is behind looks at its send queue next. While the queue shrinks, at the time it
/// should reach the limit at the rate it shrank since the last look (so a client that reads steadily is
/// looked at about twice, and picks its next frame soon after its queue drained); while it does not,
/// after pauses that grow (1, 1, 1, 2, 2, 4, 8, 16, 32 ms), so a client that stopped reading costs few
/// wake-ups until its write timeout.
#[derive(Debug, Default)]
struct DrainPacer {
    /// The last look: when, and how much was queued.
    last: Option<(Instant, usize)>,
    /// Looks in a row that found no progress.
    idle: usize,
}

impl DrainPacer {
    const IDLE_PAUSES_MS: [u64; 9] = [1, 1, 1, 2, 2, 4, 8, 16, 32];
    const MIN: Duration = Duration::from_millis(1);
    const MAX: Duration = Duration::from_millis(32);

    /// The pause after a look at `now` that found `queued` bytes (more than `limit`).
    fn pause(&mut self, now: Instant, queued: usize, limit: usize) -> Duration {
        let pause = match self.last {
            Some((then, before)) if queued < before => {
                self.idle = 0;
                let secs = now.saturating_duration_since(then).as_secs_f64().max(1e-6);
                let rate = (before - queued) as f64 / secs;
                let left_ms = queued.saturating_sub(limit) as f64 / rate * 1000.0;
                // (the timer counts whole milliseconds)
                Duration::from_millis(left_ms.min(1e6).round() as u64).clamp(Self::MIN, Self::MAX)
            }
            _ => {
                let ms = Self::IDLE_PAUSES_MS[self.idle.min(Self::IDLE_PAUSES_MS.len() - 1)];
                self.idle += 1;
                Duration::from_millis(ms)
            }
        };
        self.last = Some((now, queued));
        pause
    }
}

/// One part on its way to a client.
enum Part<'a> {
    /// From the frame's shared file, with sendfile.
    Shared(FileCursor<'a>),
    /// From the frame's own bytes, with the vectored writer (TLS, or a frame without a shared part).
    Copied(&'a Delivery, bool),
}

impl<'a> Part<'a> {
    fn new(delivery: &'a Delivery, advance_headers: bool, sends_files: bool) -> Part<'a> {
        match delivery.part.as_deref().filter(|_| sends_files) {
            Some(shared) => {
                let (offset, len) = shared.range(advance_headers);
                Part::Shared(FileCursor {
                    delivery,
                    advance_headers,
                    shared,
                    offset,
                    len,
                    done: 0,
                    unsupported: false,
                })
            }
            None => Part::Copied(delivery, advance_headers),
        }
    }

    /// Sends the rest of the part; returns its length on the wire.
    async fn send<W: Transport>(&mut self, w: &mut W) -> io::Result<usize> {
        if let Part::Shared(cursor) = self {
            if !cursor.unsupported {
                let r = std::future::poll_fn(|cx| cursor.poll_send(w, cx)).await;
                if !cursor.unsupported {
                    return r;
                }
            }
            *self = Part::Copied(cursor.delivery, cursor.advance_headers);
        }
        match self {
            Part::Copied(delivery, advance) => write_part(w, &delivery.frame, *advance).await,
            Part::Shared(_) => Err(io::ErrorKind::Unsupported.into()),
        }
    }
}

/// How far a part sent from its shared file has gone.
struct FileCursor<'a> {
    delivery: &'a Delivery,
    advance_headers: bool,
    shared: &'a SharedPart,
    offset: u64,
    len: usize,
    done: usize,
    /// sendfile refused this socket before sending anything.
    unsupported: bool,
}

impl FileCursor<'_> {
    /// Sends until the whole part has gone (its length), the socket is full (Pending, woken when it can
    /// take more), or the connection fails.
    fn poll_send<W: Transport>(
        &mut self,
        w: &mut W,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<io::Result<usize>> {
        while self.done < self.len {
            let sent = w.poll_send_file(
                cx,
                self.shared.file(),
                self.offset + self.done as u64,
                self.len - self.done,
            );
            match sent {
                Poll::Ready(Ok(n)) => self.done += n,
                // A kernel that cannot sendfile from a memfd into this socket: nothing of the part has gone
                // yet, so the whole part can still go from the frame's bytes ([`Part::send`] switches).
                Poll::Ready(Err(e))
                    if self.done == 0
                        && matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) =>
                {
                    self.unsupported = true;
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(self.len))
    }
}

/// Writes one part: header, JPEG, boundary (in advance mode: JPEG, boundary, next part's header).
pub async fn write_part<W: AsyncWrite + Unpin>(
    w: &mut W,
    frame: &Frame,
    advance_headers: bool,
) -> io::Result<usize> {
    if advance_headers {
        let mut buf = (&frame.jpeg[..]).chain(PART_TAIL).chain(ADVANCE_HEAD);
        let n = buf.remaining();
        w.write_all_buf(&mut buf).await?;
        w.flush().await?;
        Ok(n)
    } else {
        let mut buf = (&frame.part_head[..])
            .chain(&frame.jpeg[..])
            .chain(PART_TAIL);
        let n = buf.remaining();
        w.write_all_buf(&mut buf).await?;
        // Over TLS the writer returns once rustls has taken the plaintext: the last records may still
        // wait in its buffer for a socket that was full. Without the flush they left only with the next
        // frame (a frame interval late), and the send queue the policies look at missed them.
        w.flush().await?;
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

    /// A queue that shrinks is looked at again when it should have drained; one that does not, after
    /// pauses that grow to 32 ms; progress after a stall starts the estimate afresh.
    #[test]
    fn the_drain_pacer_follows_a_draining_queue_and_backs_off_a_stalled_one() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut p = DrainPacer::default();
        // No history: the shortest pause.
        assert_eq!(p.pause(t0, 150_000, 50_000), ms(1));
        // 10,000 bytes went in 1 ms; 90,000 are left above the limit: 9 ms.
        assert_eq!(p.pause(t0 + ms(1), 140_000, 50_000), ms(9));
        // Fast progress: never under 1 ms; slow progress: never over 32 ms.
        assert_eq!(p.pause(t0 + ms(10), 51_000, 50_000), ms(1));
        assert_eq!(p.pause(t0 + ms(11), 50_999, 50_000), ms(32));
        // A stall: 1, 1, 1, 2, 2, 4, 8, 16, 32, 32 ms.
        let mut now = t0 + ms(50);
        let mut pauses = Vec::new();
        for _ in 0..10 {
            pauses.push(p.pause(now, 50_999, 50_000).as_millis());
            now += ms(1);
        }
        assert_eq!(pauses, [1, 1, 1, 2, 2, 4, 8, 16, 32, 32]);
        // Reading again: back to the estimate.
        assert_eq!(p.pause(now, 50_499, 50_000), ms(1));
    }

    /// Over TLS a part reaches a client that reads only later in full, with no further write behind it:
    /// the records rustls still held when the socket was full are flushed with the part, not left for the
    /// next frame (which, at 30 fps, made every HTTPS frame arrive a frame interval late).
    #[tokio::test]
    async fn a_part_over_tls_leaves_whole_without_waiting_for_the_next_one() {
        use std::sync::Arc;
        use tokio::io::AsyncReadExt;
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![ck.cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap(),
            )
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ck.cert.der().clone()).unwrap();
        let client_config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(8192).unwrap();
        let (tcp, accepted) = tokio::join!(socket.connect(addr), listener.accept());
        let (tcp, (server_tcp, _)) = (tcp.unwrap(), accepted.unwrap());
        server_tcp.tune_for_stream(Some(8192));
        let (client, server) = tokio::join!(
            tokio_rustls::TlsConnector::from(Arc::new(client_config))
                .connect("localhost".try_into().unwrap(), tcp),
            tokio_rustls::TlsAcceptor::from(Arc::new(server_config)).accept(server_tcp)
        );
        let (mut client, mut server) = (client.unwrap(), server.unwrap());
        let jpeg: Vec<u8> = (0..300_000u32).map(|i| (i * 31 + i / 7) as u8).collect();
        let frame = Frame::new(3, 1_700_000_000_000_003, bytes::Bytes::from(jpeg));
        let mut expected = Vec::new();
        write_part(&mut expected, &frame, false).await.unwrap();
        let (done, hold) = tokio::sync::oneshot::channel::<()>();
        let writer = tokio::spawn(async move {
            let n = write_part(&mut server, &frame, false).await.unwrap();
            // The connection stays open and nothing more is written until the client has read.
            let _ = hold.await;
            n
        });
        // Read only once the writer has filled the socket and (without the flush) returned.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut got = vec![0; expected.len()];
        tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut got))
            .await
            .expect("the whole part arrives without another write")
            .unwrap();
        assert!(got == expected);
        drop(done);
        assert_eq!(writer.await.unwrap(), expected.len());
    }

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
