//! The pre-roll: the last few seconds of a camera's frames, kept in memory for event clips and for
//! `snapshot?at=`.
//!
//! It holds the hub's own frames by reference (`Arc<Frame>`: nothing is copied, a frame a client is
//! sending or the `all` backlog holds costs nothing more here), oldest first, under two bounds:
//! - time: frames captured more than `keep` before the newest (or before "now", see [`PreRoll::expire`])
//!   go;
//! - bytes: the frames together stay within `max_bytes` (mjpegd gives it the camera's `buffer-memory`);
//!   frames dropped for this bound, before their time was up, are counted ([`PreRollStats::trimmed`]), so a
//!   pre-roll shorter than asked is visible rather than silent.
//!
//! No clock: times are the frames' capture times and the `now` the caller passes in.

use crate::frame::Frame;
use std::collections::VecDeque;
use std::sync::Arc;

/// The last `keep` of frames, within `max_bytes`.
#[derive(Debug)]
pub struct PreRoll {
    keep_us: u64,
    max_bytes: usize,
    frames: VecDeque<Arc<Frame>>,
    bytes: usize,
    trimmed: u64,
}

/// What a pre-roll holds, for status pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PreRollStats {
    pub frames: usize,
    pub bytes: usize,
    /// Capture time from the oldest frame held to the newest, in µs.
    pub span_us: u64,
    /// Frames dropped by the byte bound before their time was up.
    pub trimmed: u64,
}

impl PreRoll {
    /// An empty pre-roll of `keep_us` µs of capture time, at most `max_bytes` (as [`Frame::size`] counts).
    pub fn new(keep_us: u64, max_bytes: usize) -> PreRoll {
        PreRoll {
            keep_us,
            max_bytes,
            frames: VecDeque::new(),
            bytes: 0,
            trimmed: 0,
        }
    }

    /// How much capture time it keeps, in µs.
    pub fn keep_us(&self) -> u64 {
        self.keep_us
    }

    /// Adds the newest frame, then drops what falls outside either bound. The newest frame always stays,
    /// even when it alone is over the byte bound (a snapshot of "now" must have it).
    pub fn push(&mut self, frame: Arc<Frame>) {
        let now = frame.timestamp_us;
        self.bytes += frame.size();
        self.frames.push_back(frame);
        self.expire(now);
        while self.bytes > self.max_bytes && self.frames.len() > 1 {
            self.pop();
            self.trimmed += 1;
        }
    }

    /// Drops the frames captured more than `keep` before `now_us` (µs since the epoch), newest included:
    /// a source that stopped leaves nothing behind once its frames are older than the pre-roll.
    pub fn expire(&mut self, now_us: u64) {
        let oldest_kept = now_us.saturating_sub(self.keep_us);
        while self
            .frames
            .front()
            .is_some_and(|f| f.timestamp_us < oldest_kept)
        {
            self.pop();
        }
    }

    fn pop(&mut self) {
        if let Some(f) = self.frames.pop_front() {
            self.bytes -= f.size();
        }
    }

    /// The frame captured closest to `t_us` at or before it (on a tie, the one published last). A binary
    /// search (the lookup holds the hub's lock): capture times go up with publication; where a clock stepped
    /// back, the answer is a frame next to the one asked for.
    pub fn at_or_before(&self, t_us: u64) -> Option<Arc<Frame>> {
        let i = self.frames.partition_point(|f| f.timestamp_us <= t_us);
        i.checked_sub(1).map(|i| self.frames[i].clone())
    }

    /// The frames captured at or after `t_us` and numbered before `before_seq`, oldest first.
    pub fn between(&self, t_us: u64, before_seq: u64) -> Vec<Arc<Frame>> {
        let from = self.frames.partition_point(|f| f.timestamp_us < t_us);
        self.frames
            .range(from..)
            .take_while(|f| f.seq < before_seq)
            .cloned()
            .collect()
    }

    /// What it holds now.
    pub fn stats(&self) -> PreRollStats {
        let span_us = match (self.frames.front(), self.frames.back()) {
            (Some(a), Some(b)) => b.timestamp_us.saturating_sub(a.timestamp_us),
            _ => 0,
        };
        PreRollStats {
            frames: self.frames.len(),
            bytes: self.bytes,
            span_us,
            trimmed: self.trimmed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn frame(seq: u64, ts: u64, len: usize) -> Arc<Frame> {
        Arc::new(Frame::new(seq, ts, Bytes::from(vec![0xAB; len])))
    }

    #[test]
    fn keeps_the_last_seconds_and_finds_the_frame_at_or_before() {
        let mut p = PreRoll::new(1_000_000, usize::MAX);
        for i in 0..50u64 {
            p.push(frame(i, 1_000_000_000 + i * 100_000, 10));
        }
        // 5 s published at 10 fps, 1 s kept: the frames from 3.9 s to 4.9 s.
        let s = p.stats();
        assert_eq!((s.frames, s.span_us, s.trimmed), (11, 1_000_000, 0));
        assert_eq!(
            p.at_or_before(1_000_000_000 + 4_450_000).map(|f| f.seq),
            Some(44)
        );
        assert_eq!(
            p.at_or_before(1_000_000_000 + 4_400_000).map(|f| f.seq),
            Some(44)
        );
        assert_eq!(p.at_or_before(u64::MAX).map(|f| f.seq), Some(49));
        // Before the oldest frame held: nothing.
        assert!(p.at_or_before(1_000_000_000 + 3_850_000).is_none());
        let seqs: Vec<u64> = p
            .between(1_000_000_000 + 4_500_000, 48)
            .iter()
            .map(|f| f.seq)
            .collect();
        assert_eq!(seqs, [45, 46, 47]);
        // Time passes with no frame: all of them expire.
        p.expire(1_000_000_000 + 7_000_000);
        assert_eq!(p.stats(), PreRollStats::default());
    }

    #[test]
    fn the_byte_bound_trims_early_and_counts_it() {
        let size = frame(0, 0, 1000).size();
        let mut p = PreRoll::new(60_000_000, 3 * size);
        for i in 0..10u64 {
            p.push(frame(i, i * 1000, 1000));
        }
        let s = p.stats();
        assert_eq!((s.frames, s.bytes, s.trimmed), (3, 3 * size, 7));
        // A frame larger than the whole bound stays, alone.
        p.push(frame(10, 11_000, 10_000));
        assert_eq!(p.stats().frames, 1);
        assert_eq!(p.stats().trimmed, 10);
    }

    proptest! {
        #[test]
        fn bounds_hold_and_lookups_agree_with_a_scan(
            steps in proptest::collection::vec((0u64..400_000, 0usize..5000), 1..300),
            keep in 0u64..3_000_000,
            max in 0usize..60_000,
            probe in 0u64..100_000_000,
        ) {
            let mut p = PreRoll::new(keep, max);
            let mut all = Vec::new();
            let mut ts = 1_000_000u64;
            for (i, (dt, len)) in steps.into_iter().enumerate() {
                ts += dt;
                let f = frame(i as u64, ts, len);
                all.push(f.clone());
                p.push(f);
                let s = p.stats();
                prop_assert!(s.frames >= 1);
                prop_assert!(s.bytes <= max || s.frames == 1);
                prop_assert!(s.span_us <= keep);
            }
            let t = 1_000_000 + probe;
            // Whatever is held is a tail of what was published, and the lookup is the scan's answer over it.
            let held = p.between(0, u64::MAX);
            prop_assert_eq!(held.last().map(|f| f.seq), all.last().map(|f| f.seq));
            let first = held[0].seq as usize;
            prop_assert!(held.iter().zip(&all[first..]).all(|(a, b)| Arc::ptr_eq(a, b)));
            let scan = held.iter().rfind(|f| f.timestamp_us <= t).map(|f| f.seq);
            prop_assert_eq!(p.at_or_before(t).map(|f| f.seq), scan);
            let before = (all.len() as u64).saturating_sub(probe % 3);
            let want: Vec<u64> = held
                .iter()
                .filter(|f| f.timestamp_us >= t && f.seq < before)
                .map(|f| f.seq)
                .collect();
            let got: Vec<u64> = p.between(t, before).iter().map(|f| f.seq).collect();
            prop_assert_eq!(got, want);
        }
    }
}
