//! The replays a camera is serving (`/recordings/FILE/stream`), so they are visible as its live clients
//! are: `/state` lists them (`result.replays`) and `/metrics` counts them (`mjpegd_replays`,
//! `mjpegd_replays_started_total`, `mjpegd_replay_frames_total`, `mjpegd_replay_sent_bytes_total`).
//!
//! A replay registers when its stream starts and is removed when its [`ReplayGuard`] drops, however it
//! ends. The list is bounded by the stream slots (`--max-clients`) a replay must hold first; the totals
//! are counters that only grow.

use crate::net::Peer;
use mjpegd_core::replay::Playback;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// One replay being served.
#[derive(Debug)]
pub struct ReplayEntry {
    pub id: u64,
    /// The file replayed.
    pub file: String,
    pub addr: Peer,
    pub user_agent: Option<String>,
    pub playback: Playback,
    pub fps_cap: Option<f64>,
    /// Where it started, in seconds from the file's first frame.
    pub start_seconds: f64,
    pub since: SystemTime,
    pub frames_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    active: Mutex<BTreeMap<u64, Arc<ReplayEntry>>>,
    started: AtomicU64,
    frames: AtomicU64,
    bytes: AtomicU64,
}

/// A camera's replays: those running now and the totals since it started.
#[derive(Clone, Debug, Default)]
pub struct Replays(Arc<Inner>);

/// Totals of a camera's replays, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayTotals {
    pub active: u64,
    pub started: u64,
    pub frames: u64,
    pub bytes: u64,
}

impl Replays {
    /// Registers a replay; it is listed until the guard drops.
    pub fn start(&self, entry: ReplayEntry) -> ReplayGuard {
        let entry = Arc::new(entry);
        self.0.started.fetch_add(1, Ordering::Relaxed);
        self.0
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.id, entry.clone());
        ReplayGuard {
            replays: self.clone(),
            entry,
        }
    }

    /// The replays running now, in id order, from `offset`, at most `limit`; and how many run.
    pub fn page(&self, offset: usize, limit: usize) -> (usize, Vec<Arc<ReplayEntry>>) {
        let active = self.0.active.lock().unwrap_or_else(|e| e.into_inner());
        let list = active.values().skip(offset).take(limit).cloned().collect();
        (active.len(), list)
    }

    pub fn totals(&self) -> ReplayTotals {
        ReplayTotals {
            active: self.0.active.lock().map_or(0, |a| a.len() as u64),
            started: self.0.started.load(Ordering::Relaxed),
            frames: self.0.frames.load(Ordering::Relaxed),
            bytes: self.0.bytes.load(Ordering::Relaxed),
        }
    }
}

/// A running replay: counts what it sends; unlists it when dropped.
#[derive(Debug)]
pub struct ReplayGuard {
    replays: Replays,
    entry: Arc<ReplayEntry>,
}

impl ReplayGuard {
    /// One part of `bytes` sent.
    pub fn sent(&self, bytes: u64) {
        self.entry.frames_sent.fetch_add(1, Ordering::Relaxed);
        self.entry.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
        self.replays.0.frames.fetch_add(1, Ordering::Relaxed);
        self.replays.0.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Drop for ReplayGuard {
    fn drop(&mut self) {
        self.replays
            .0
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.entry.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64) -> ReplayEntry {
        ReplayEntry {
            id,
            file: format!("f{id}.mkv"),
            addr: Peer::Ip("127.0.0.1:1".parse().unwrap()),
            user_agent: None,
            playback: Playback::Rate(30.0),
            fps_cap: None,
            start_seconds: 0.0,
            since: SystemTime::now(),
            frames_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
        }
    }

    #[test]
    fn a_replay_is_listed_while_it_runs_and_its_sends_are_counted_for_good() {
        let r = Replays::default();
        let a = r.start(entry(1));
        let b = r.start(entry(2));
        a.sent(100);
        a.sent(50);
        b.sent(7);
        let (n, list) = r.page(0, 10);
        assert_eq!((n, list.len()), (2, 2));
        assert_eq!(list[0].frames_sent.load(Ordering::Relaxed), 2);
        assert_eq!(list[0].bytes_sent.load(Ordering::Relaxed), 150);
        assert_eq!(r.page(1, 10).1[0].id, 2);
        assert_eq!(r.page(0, 1).1.len(), 1);
        drop(a);
        assert_eq!(r.page(0, 10).0, 1);
        drop(b);
        assert_eq!(
            r.totals(),
            ReplayTotals {
                active: 0,
                started: 2,
                frames: 3,
                bytes: 157
            }
        );
    }
}
