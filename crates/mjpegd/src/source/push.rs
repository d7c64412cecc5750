//! A pushed camera (`source = "push"`): frames that a camera sends to mjpegd instead of being fetched.
//!
//! Cameras behind NAT or a 4G router cannot be reached, so they connect out and push their JPEGs to
//! `/cams/NAME/push` ([`crate::http::handlers::push`]). The handler cuts the body into frames and hands
//! them to the camera's [`Inlet`]; the [`Push`] source takes them from there like any other source, so
//! the supervisor checks, counts and publishes them, and shows "no signal" when the pusher goes away,
//! exactly as for a camera that was pulled. The inlet also records who pushes (one pusher at a time, or the
//! newest with `push-takeover`), caps each pusher's frame rate (`push-max-fps`, read at every frame, so a
//! reload or an API write that changes it applies to the pusher already connected), and its queue is bounded:
//! a pusher faster than the supervisor loses frames, not memory. Every frame lost on the way is counted by
//! cause ([`Loss`]), for `/state` and `/metrics`.

use super::{Captured, Source, SourceError, SourceInfo};
use crate::net::Peer;
use mjpegd_core::rate_cap::RateCap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Frames queued between a pusher and the supervisor.
const QUEUE: usize = 4;

/// Fewest characters in a push key (as for access keys).
pub const MIN_KEY: usize = 16;
/// Most characters in a push key.
pub const MAX_KEY: usize = 256;

/// A camera's push key: shown nowhere (not in `Debug`, logs, `/state` or errors).
#[derive(Clone, PartialEq, Eq)]
pub struct PushKey(String);

impl PushKey {
    /// Checks a key from the configuration: printable ASCII, 16 to 256 characters.
    pub fn new(key: &str) -> Result<PushKey, String> {
        if key.len() < MIN_KEY || key.len() > MAX_KEY {
            return Err(format!(
                "push-key: {MIN_KEY} to {MAX_KEY} characters (this one has {})",
                key.len()
            ));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("push-key: printable ASCII without spaces only".into());
        }
        Ok(PushKey(key.to_string()))
    }

    /// Whether `given` is this key (compared in constant time).
    pub fn matches(&self, given: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.0.len() == given.len() && bool::from(self.0.as_bytes().ct_eq(given.as_bytes()))
    }
}

impl fmt::Debug for PushKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PushKey(***)")
    }
}

/// How a pusher sends its frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// An endless `multipart/x-mixed-replace` body (ffmpeg `-f mpjpeg -method POST`).
    Multipart,
    /// One `image/jpeg` per POST or PUT (an ESP32's HTTPClient).
    JpegPost,
    /// A WebSocket whose binary messages are the frames (an ESP32's `webSocket.sendBIN`).
    WebSocket,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Multipart => "multipart",
            Protocol::JpegPost => "jpeg-post",
            Protocol::WebSocket => "websocket",
        }
    }
}

/// What a pushed camera allows its pushers (`push-takeover`, `push-max-fps`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PushPolicy {
    /// A newer pusher wins over the one holding the camera (whose connection is closed).
    pub takeover: bool,
    /// Most frames per second taken from a pusher; those above are dropped and counted.
    pub max_fps: Option<f64>,
}

/// Highest `push-max-fps`.
pub const MAX_FPS: f64 = 1000.0;

/// Why a pushed frame did not reach the camera, or a pusher was cut: counted per camera for `/state` and
/// `/metrics`, so that nothing a pusher sends is lost silently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// The queue to the supervisor was full (the pusher sends faster than frames are checked).
    QueueFull,
    /// Above the camera's `push-max-fps`.
    FpsCap,
    /// Larger than a frame may be (16 MiB): the pusher is cut.
    TooLarge,
    /// A WebSocket text message (frames are binary messages).
    TextMessage,
}

impl Loss {
    pub const ALL: [Loss; 4] = [
        Loss::QueueFull,
        Loss::FpsCap,
        Loss::TooLarge,
        Loss::TextMessage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Loss::QueueFull => "queue_full",
            Loss::FpsCap => "fps_cap",
            Loss::TooLarge => "too_large",
            Loss::TextMessage => "text_message",
        }
    }
}

/// Who holds a pushed camera.
#[derive(Clone, Debug)]
pub struct Pusher {
    pub addr: Peer,
    pub since: SystemTime,
    /// How it pushes (None until its first request's body or upgrade is seen).
    pub protocol: Option<Protocol>,
    /// Frames it has sent (those dropped by the cap or because the supervisor was behind included).
    pub frames: u64,
    /// When the current rate window began, and the frames sent in it.
    window: (Instant, u64),
    /// Frames per second over the last whole window, once one has ended.
    last_rate: Option<f64>,
    id: u64,
    /// Cancelled when a newer pusher takes the camera over.
    cut: CancellationToken,
}

/// How long the pusher's frame rate is counted over.
const RATE_WINDOW: Duration = Duration::from_secs(2);

impl Pusher {
    /// Counts a frame sent at `now` towards the frame rate.
    fn count(&mut self, now: Instant) {
        self.frames += 1;
        let (start, n) = self.window;
        let spent = now.saturating_duration_since(start);
        if spent >= RATE_WINDOW {
            self.last_rate = Some(n as f64 / spent.as_secs_f64());
            self.window = (now, 1);
        } else {
            self.window.1 += 1;
        }
    }

    /// Frames per second lately (over the last window of about 2 s; falling towards 0 when it stops).
    pub fn fps(&self) -> f64 {
        let (start, n) = self.window;
        rate(
            Instant::now().saturating_duration_since(start),
            n,
            self.last_rate,
        )
    }
}

/// The frame rate shown, from the time spent in the current window, its frames, and the rate of the last
/// whole window: that rate while the current window is young, the current one's once it is overdue (the
/// pusher slowed down or stopped) or when there is no other.
fn rate(spent: Duration, frames: u64, last: Option<f64>) -> f64 {
    let current = frames as f64 / spent.as_secs_f64().max(0.001);
    let fps = match last {
        Some(last) if spent < RATE_WINDOW * 2 => last,
        _ => current,
    };
    (fps * 10.0).round() / 10.0
}

/// Where a pushed camera's frames come in: the sending side for the handler, the receiving side for the
/// source, the current pusher, and what was lost on the way.
pub struct Inlet {
    tx: mpsc::Sender<Captured>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Captured>>,
    holder: Mutex<Option<Pusher>>,
    next_id: AtomicU64,
    /// Per [`Loss`], in [`Loss::ALL`] order.
    losses: [AtomicU64; 4],
    /// Pushers that took the camera over from another.
    takeovers: AtomicU64,
    /// Whether a frame past the bound has been logged (once per camera, then only counted).
    too_large_logged: AtomicBool,
    /// The camera's `push-max-fps` now, as `f64` bits (0 for none: a cap is more than 0). Set when the
    /// camera starts and at every reload or API write, and read by every pusher at each frame.
    max_fps: AtomicU64,
}

/// A pusher's hold on the camera: released when dropped (the connection ended).
pub struct Hold {
    inlet: Arc<Inlet>,
    id: u64,
    cut: CancellationToken,
    /// The cap this pusher is held to: the `push-max-fps` it was made for and its state.
    cap: Option<(f64, RateCap)>,
    /// The origin of the cap's clock.
    origin: Instant,
}

/// What became of a frame handed to [`Hold::send`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    Queued,
    /// Dropped (and counted): above the camera's `push-max-fps`.
    OverCap,
    /// Dropped (and counted): the supervisor is behind.
    QueueFull,
}

impl Inlet {
    pub fn new() -> Arc<Inlet> {
        let (tx, rx) = mpsc::channel(QUEUE);
        Arc::new(Inlet {
            tx,
            rx: tokio::sync::Mutex::new(rx),
            holder: Mutex::new(None),
            next_id: Default::default(),
            losses: Default::default(),
            takeovers: Default::default(),
            too_large_logged: Default::default(),
            max_fps: Default::default(),
        })
    }

    /// Sets the camera's `push-max-fps`: from the next frame on, for the pusher holding the camera too.
    pub fn set_max_fps(&self, max_fps: Option<f64>) {
        let bits = max_fps.filter(|f| *f > 0.0).map_or(0, f64::to_bits);
        self.max_fps.store(bits, Ordering::Relaxed);
    }

    /// The camera's `push-max-fps` now.
    pub fn max_fps(&self) -> Option<f64> {
        match self.max_fps.load(Ordering::Relaxed) {
            0 => None,
            bits => Some(f64::from_bits(bits)),
        }
    }

    /// Takes the camera for the pusher at `addr`, or says who holds it. With `policy.takeover`, a pusher
    /// that holds it is cut and returned as the second value. (The pusher's frame rate is capped by the
    /// inlet's [`Inlet::max_fps`], which the camera keeps equal to its `policy.max_fps`.)
    pub fn take(
        self: &Arc<Inlet>,
        addr: Peer,
        policy: PushPolicy,
    ) -> Result<(Hold, Option<Pusher>), Pusher> {
        let mut holder = self.holder.lock().unwrap_or_else(|e| e.into_inner());
        let replaced = match holder.take() {
            Some(p) if !policy.takeover => {
                *holder = Some(p.clone());
                return Err(p);
            }
            Some(p) => {
                p.cut.cancel();
                self.takeovers.fetch_add(1, Ordering::Relaxed);
                Some(p)
            }
            None => None,
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cut = CancellationToken::new();
        *holder = Some(Pusher {
            addr,
            since: SystemTime::now(),
            protocol: None,
            frames: 0,
            window: (Instant::now(), 0),
            last_rate: None,
            id,
            cut: cut.clone(),
        });
        let hold = Hold {
            inlet: self.clone(),
            id,
            cut,
            cap: None,
            origin: Instant::now(),
        };
        Ok((hold, replaced))
    }

    /// The current pusher, if any.
    pub fn pusher(&self) -> Option<Pusher> {
        self.holder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counts something a pusher sent that did not become a frame.
    pub fn lost(&self, what: Loss) {
        self.losses[what as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// What was lost, per [`Loss`] in [`Loss::ALL`] order.
    pub fn losses(&self) -> [(Loss, u64); 4] {
        Loss::ALL.map(|l| (l, self.losses[l as usize].load(Ordering::Relaxed)))
    }

    /// Pushers that took the camera over from another.
    pub fn takeovers(&self) -> u64 {
        self.takeovers.load(Ordering::Relaxed)
    }

    /// Counts a frame past the bound; true the first time for this camera (log it then, count it after).
    pub fn too_large(&self) -> bool {
        self.lost(Loss::TooLarge);
        !self.too_large_logged.swap(true, Ordering::Relaxed)
    }
}

impl Hold {
    /// Changes this pusher's entry (if it still holds the camera).
    fn update(&self, f: impl FnOnce(&mut Pusher)) {
        let mut holder = self.inlet.holder.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = holder.as_mut().filter(|p| p.id == self.id) {
            f(p);
        }
    }

    /// Records how this pusher sends its frames, for `/state`.
    pub fn set_protocol(&self, protocol: Protocol) {
        self.update(|p| p.protocol = Some(protocol));
    }

    /// The camera's inlet (for its counters).
    pub fn inlet(&self) -> &Inlet {
        &self.inlet
    }

    /// Cancelled when a newer pusher has taken the camera over: this one's connection is to end.
    pub fn cut_token(&self) -> CancellationToken {
        self.cut.clone()
    }

    /// Hands a frame to the source, unless it is above the frame-rate cap or the queue is full (the
    /// supervisor is behind): then it is dropped and counted, and the result says which. The cap is the
    /// camera's `push-max-fps` now: when it changed since the last frame, this pusher's cap starts anew
    /// at the new rate (or is lifted).
    pub fn send(&mut self, jpeg: bytes::Bytes) -> Sent {
        let now = Instant::now();
        self.update(|p| p.count(now));
        let max_fps = self.inlet.max_fps();
        if self.cap.as_ref().map(|(fps, _)| *fps) != max_fps {
            self.cap = max_fps.map(|fps| (fps, RateCap::new(fps)));
        }
        if let Some((_, cap)) = &mut self.cap {
            let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
            if !cap.admit(now) {
                self.inlet.lost(Loss::FpsCap);
                return Sent::OverCap;
            }
        }
        let queued = self.inlet.tx.try_send(Captured {
            jpeg,
            at: SystemTime::now(),
        });
        if queued.is_ok() {
            Sent::Queued
        } else {
            self.inlet.lost(Loss::QueueFull);
            Sent::QueueFull
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut holder = self.inlet.holder.lock().unwrap_or_else(|e| e.into_inner());
        if holder.as_ref().is_some_and(|p| p.id == self.id) {
            *holder = None;
        }
    }
}

/// The source of a pushed camera: waits for what its pushers send.
pub struct Push {
    inlet: Arc<Inlet>,
    fps: f64,
}

impl Push {
    pub fn new(inlet: Arc<Inlet>, fps: f64) -> Push {
        Push { inlet, fps }
    }
}

impl Source for Push {
    fn describe(&self) -> String {
        "frames pushed to /cams/NAME/push".into()
    }

    async fn open(&mut self) -> Result<SourceInfo, SourceError> {
        Ok(SourceInfo {
            width: 0,
            height: 0,
            fps: self.fps,
            encoder: crate::hub::Encoder::None,
        })
    }

    async fn next_frame(&mut self) -> Result<Captured, SourceError> {
        let mut rx = self.inlet.rx.lock().await;
        rx.recv()
            .await
            .ok_or_else(|| SourceError::lost("the push inlet is gone"))
    }

    fn close(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_and_hidden() {
        assert!(PushKey::new("short").is_err());
        assert!(PushKey::new(&"k".repeat(300)).is_err());
        assert!(PushKey::new("has a space in it!!").is_err());
        let key = PushKey::new("0123456789abcdef").unwrap();
        assert!(key.matches("0123456789abcdef"));
        assert!(!key.matches("0123456789abcdeX"));
        assert!(!key.matches("0123456789abcde"));
        assert!(!format!("{key:?}").contains("0123"));
    }

    #[tokio::test]
    async fn one_pusher_at_a_time_and_frames_reach_the_source() {
        let inlet = Inlet::new();
        let a: Peer = "127.0.0.1:1000".parse().unwrap();
        let b: Peer = "127.0.0.1:2000".parse().unwrap();
        let keep = PushPolicy::default();
        let (mut hold, _) = inlet.take(a, keep).unwrap();
        assert_eq!(inlet.take(b, keep).err().unwrap().addr, a);
        assert_eq!(hold.send(bytes::Bytes::from_static(b"jpeg")), Sent::Queued);
        let mut source = Push::new(inlet.clone(), 10.0);
        assert_eq!(&source.next_frame().await.unwrap().jpeg[..], b"jpeg");
        drop(hold);
        assert!(inlet.pusher().is_none());
        let (mut again, replaced) = inlet.take(b, keep).unwrap();
        assert!(replaced.is_none());
        again.set_protocol(Protocol::Multipart);
        let p = inlet.pusher().unwrap();
        assert_eq!(
            (p.addr, p.protocol, p.frames),
            (b, Some(Protocol::Multipart), 0)
        );
        for _ in 0..QUEUE {
            assert_eq!(again.send(bytes::Bytes::from_static(b"x")), Sent::Queued);
        }
        assert_eq!(
            again.send(bytes::Bytes::from_static(b"x")),
            Sent::QueueFull,
            "bounded"
        );
        assert_eq!(inlet.pusher().unwrap().frames, QUEUE as u64 + 1);
        assert_eq!(inlet.losses()[0], (Loss::QueueFull, 1), "and counted");
    }

    #[tokio::test]
    async fn a_newer_pusher_takes_over_only_when_allowed() {
        let inlet = Inlet::new();
        let a: Peer = "127.0.0.1:1000".parse().unwrap();
        let b: Peer = "127.0.0.1:2000".parse().unwrap();
        let (old, _) = inlet.take(a, PushPolicy::default()).unwrap();
        let takeover = PushPolicy {
            takeover: true,
            max_fps: None,
        };
        let (new, replaced) = inlet.take(b, takeover).unwrap();
        assert_eq!(replaced.unwrap().addr, a);
        // The old connection is told to end, and its end does not free the camera of the new one.
        assert!(old.cut_token().is_cancelled());
        drop(old);
        assert_eq!(inlet.pusher().unwrap().addr, b);
        assert_eq!(inlet.takeovers(), 1);
        drop(new);
        assert!(inlet.pusher().is_none());
    }

    #[test]
    fn the_frame_rate_is_the_last_windows_and_falls_when_the_pusher_stops() {
        let s = Duration::from_secs;
        // No whole window yet: frames so far over the time so far.
        assert_eq!(rate(s(1), 15, None), 15.0);
        // The last window's rate while the current one is young...
        assert_eq!(rate(s(1), 3, Some(30.0)), 30.0);
        // ... and the current one's once it is overdue: a pusher that stopped falls towards 0.
        assert_eq!(rate(s(5), 1, Some(30.0)), 0.2);
        let mut p = Pusher {
            addr: "127.0.0.1:1".parse().unwrap(),
            since: SystemTime::now(),
            protocol: None,
            frames: 0,
            window: (Instant::now() - s(3), 0),
            last_rate: None,
            id: 0,
            cut: CancellationToken::new(),
        };
        // 60 frames in a window of 3 s: 20 fps once the next frame closes it.
        p.window.1 = 60;
        p.count(Instant::now());
        assert_eq!(p.last_rate.map(|r| r.round()), Some(20.0));
        assert_eq!((p.frames, p.window.1), (1, 1));
    }

    #[test]
    fn frames_above_the_cap_are_dropped_and_counted() {
        let inlet = Inlet::new();
        let capped = PushPolicy {
            takeover: false,
            max_fps: Some(1.0),
        };
        inlet.set_max_fps(capped.max_fps);
        let (mut hold, _) = inlet.take("127.0.0.1:1".parse().unwrap(), capped).unwrap();
        let sent: Vec<Sent> = (0..10)
            .map(|_| hold.send(bytes::Bytes::from_static(b"x")))
            .collect();
        // (a burst of 2 at 1 fps, sent within far less than a second)
        assert_eq!(&sent[..2], &[Sent::Queued, Sent::Queued]);
        assert!(sent[2..].iter().all(|s| *s == Sent::OverCap), "{sent:?}");
        assert_eq!(inlet.losses()[1], (Loss::FpsCap, 8));
        assert_eq!(inlet.pusher().unwrap().frames, 10);
    }

    #[test]
    fn a_new_cap_applies_to_the_pusher_holding_the_camera() {
        let inlet = Inlet::new();
        let (mut hold, _) = inlet
            .take("127.0.0.1:1".parse().unwrap(), PushPolicy::default())
            .unwrap();
        let burst = |hold: &mut Hold, n| {
            (0..n)
                .map(|_| hold.send(bytes::Bytes::from_static(b"x")))
                .filter(|s| *s == Sent::OverCap)
                .count()
        };
        // No cap: nothing is dropped for its rate (the queue takes 4; the rest are "queue full").
        assert_eq!(burst(&mut hold, 10), 0);
        // A cap set while the pusher holds the camera applies from its next frame...
        inlet.set_max_fps(Some(1.0));
        assert_eq!(inlet.max_fps(), Some(1.0));
        assert_eq!(burst(&mut hold, 10), 8);
        // ... and lifting it lets everything through again.
        inlet.set_max_fps(None);
        assert_eq!(burst(&mut hold, 10), 0);
        assert_eq!(inlet.losses()[1], (Loss::FpsCap, 8));
    }
}
