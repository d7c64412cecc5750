//! A pushed camera (`source = "push"`): frames that a camera sends to mjpegd instead of being fetched.
//!
//! Cameras behind NAT or a 4G router cannot be reached, so they connect out and push their JPEGs to
//! `/cams/NAME/push` ([`crate::http::handlers::push`]). The handler cuts the body into frames and hands
//! them to the camera's [`Inlet`]; the [`Push`] source takes them from there like any other source, so
//! the supervisor checks, counts and publishes them, and shows "no signal" when the pusher goes away,
//! exactly as for a camera that was pulled. The inlet also records who pushes (one pusher at a time), and
//! its queue is bounded: a pusher faster than the supervisor loses its oldest frames, not memory.

use super::{Captured, Source, SourceError, SourceInfo};
use crate::net::Peer;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::mpsc;

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

/// Who holds a pushed camera.
#[derive(Clone, Debug)]
pub struct Pusher {
    pub addr: Peer,
    pub since: SystemTime,
    /// How it pushes: `multipart` or `jpeg-per-request` (None until its first body is seen).
    pub protocol: Option<&'static str>,
    /// Frames it has sent (those dropped because the supervisor was behind included).
    pub frames: u64,
    id: u64,
}

impl Pusher {
    /// Frames per second since it connected.
    pub fn fps(&self, now: SystemTime) -> f64 {
        let secs = now
            .duration_since(self.since)
            .unwrap_or_default()
            .as_secs_f64()
            .max(0.001);
        (self.frames as f64 / secs * 10.0).round() / 10.0
    }
}

/// Where a pushed camera's frames come in: the sending side for the handler, the receiving side for the
/// source, and the current pusher.
pub struct Inlet {
    tx: mpsc::Sender<Captured>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Captured>>,
    holder: Mutex<Option<Pusher>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// A pusher's hold on the camera: released when dropped (the connection ended).
pub struct Hold {
    inlet: Arc<Inlet>,
    id: u64,
}

impl Inlet {
    pub fn new() -> Arc<Inlet> {
        let (tx, rx) = mpsc::channel(QUEUE);
        Arc::new(Inlet {
            tx,
            rx: tokio::sync::Mutex::new(rx),
            holder: Mutex::new(None),
            next_id: Default::default(),
        })
    }

    /// Takes the camera for the pusher at `addr`, or says who holds it.
    pub fn take(self: &Arc<Inlet>, addr: Peer) -> Result<Hold, Pusher> {
        let mut holder = self.holder.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = holder.as_ref() {
            return Err(p.clone());
        }
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *holder = Some(Pusher {
            addr,
            since: SystemTime::now(),
            protocol: None,
            frames: 0,
            id,
        });
        Ok(Hold {
            inlet: self.clone(),
            id,
        })
    }

    /// The current pusher, if any.
    pub fn pusher(&self) -> Option<Pusher> {
        self.holder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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
    pub fn set_protocol(&self, protocol: &'static str) {
        self.update(|p| p.protocol = Some(protocol));
    }

    /// Hands a frame to the source; when the queue is full (the supervisor is behind) the frame is
    /// dropped, and `false` says so.
    pub fn send(&self, jpeg: bytes::Bytes) -> bool {
        self.update(|p| p.frames += 1);
        self.inlet
            .tx
            .try_send(Captured {
                jpeg,
                at: SystemTime::now(),
            })
            .is_ok()
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
        let hold = inlet.take(a).unwrap();
        assert_eq!(inlet.take(b).err().unwrap().addr, a);
        assert!(hold.send(bytes::Bytes::from_static(b"jpeg")));
        let mut source = Push::new(inlet.clone(), 10.0);
        assert_eq!(&source.next_frame().await.unwrap().jpeg[..], b"jpeg");
        drop(hold);
        assert!(inlet.pusher().is_none());
        let again = inlet.take(b).unwrap();
        again.set_protocol("multipart");
        let p = inlet.pusher().unwrap();
        assert_eq!((p.addr, p.protocol, p.frames), (b, Some("multipart"), 0));
        for _ in 0..QUEUE {
            assert!(again.send(bytes::Bytes::from_static(b"x")));
        }
        assert!(!again.send(bytes::Bytes::from_static(b"x")), "bounded");
        assert_eq!(inlet.pusher().unwrap().frames, QUEUE as u64 + 1);
    }
}
