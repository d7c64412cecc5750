//! The `all` policy: one shared backlog of frames, walked by every `all` client at its own pace.
//!
//! The firmware's all-frames variant keeps every frame until every client has sent it, until memory runs
//! out, and then silently stops storing frames. Here the backlog holds each frame once (shared by all
//! clients), and its size is bounded: when a new frame would take it over budget, the client furthest behind
//! is evicted, so that every client still connected has received every frame in order. A gap never
//! happens; an eviction is reported to the caller, which disconnects, logs and counts it.
//!
//! Clients are placed by the frame's position in the order of publication, not by its sequence number:
//! a hub fed by a transcoder (a size variant) publishes the original's numbers, with gaps where the
//! transcoder skipped frames, and its `all` clients still get every frame it published, in order.

use super::ids::IdMap;
use super::ClientId;
use crate::frame::Frame;
use std::collections::VecDeque;
use std::sync::Arc;

/// The frames that some `all` client has not been sent yet, and where each client is.
#[derive(Debug)]
pub struct Backlog {
    /// Frames in publication order; `frames[i]` was published at position `first + i`.
    frames: VecDeque<Arc<Frame>>,
    /// For each frame in `frames`, how many clients will be sent it next.
    waiting: VecDeque<u32>,
    /// Clients that have been sent every frame and wait for the next one.
    caught_up: u32,
    /// Position of `frames[0]`.
    first: u64,
    /// Position of the next frame to be published (frames published so far).
    pushed: u64,
    /// Each client's position of the next frame to send.
    cursors: IdMap<u64>,
    /// Bytes held by `frames`.
    bytes: usize,
    /// The most bytes `frames` may hold.
    budget: usize,
}

impl Backlog {
    /// An empty backlog bounded to `budget` bytes of frames.
    pub fn new(budget: usize) -> Backlog {
        Backlog {
            frames: VecDeque::new(),
            waiting: VecDeque::new(),
            caught_up: 0,
            first: 0,
            pushed: 0,
            cursors: IdMap::default(),
            bytes: 0,
            budget,
        }
    }

    /// Bytes of frames held now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Frames held now.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when no frame is held.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Number of clients under this policy.
    pub fn clients(&self) -> usize {
        self.cursors.len()
    }

    /// Adds a client that starts with `newest` (so it has a picture at once), or with the next frame
    /// published if there is none. `newest` must be the frame last pushed.
    pub fn join(&mut self, id: ClientId, newest: Option<&Arc<Frame>>) {
        match newest.filter(|_| self.pushed > 0) {
            Some(frame) => {
                if self.frames.is_empty() {
                    self.first = self.pushed - 1;
                    self.bytes += frame.size();
                    self.frames.push_back(frame.clone());
                    self.waiting.push_back(0);
                }
                debug_assert_eq!(self.frames.back().map(|f| f.seq), Some(frame.seq));
                *self.waiting.back_mut().expect("not empty") += 1;
                self.cursors.insert(id, self.pushed - 1);
            }
            None => {
                self.caught_up += 1;
                self.cursors.insert(id, self.pushed);
            }
        }
    }

    /// Removes a client (left or evicted) and frees the frames only it still needed.
    pub fn leave(&mut self, id: ClientId) {
        let Some(cursor) = self.cursors.remove(&id) else {
            return;
        };
        match self.index_of(cursor) {
            Some(i) => self.waiting[i] -= 1,
            None => self.caught_up -= 1,
        }
        self.trim();
    }

    /// Appends a newly published frame. When that takes the backlog over budget, the clients furthest
    /// behind are removed until it fits (or only one frame is left), and returned: the caller must
    /// disconnect them.
    pub fn push(&mut self, frame: Arc<Frame>) -> Vec<ClientId> {
        let position = self.pushed;
        self.pushed += 1;
        if self.cursors.is_empty() {
            return Vec::new();
        }
        debug_assert!(self.frames.is_empty() || position == self.first + self.frames.len() as u64);
        if self.frames.is_empty() {
            self.first = position;
        }
        self.bytes += frame.size();
        self.frames.push_back(frame);
        self.waiting.push_back(std::mem::take(&mut self.caught_up));
        let mut evicted = Vec::new();
        while self.bytes > self.budget && self.frames.len() > 1 {
            // After trim() the first frame always has a waiting client: the ones furthest behind.
            let laggard = self.first;
            let laggards: Vec<ClientId> = self
                .cursors
                .iter()
                .filter(|&(_, &c)| c == laggard)
                .map(|(&id, _)| id)
                .collect();
            for id in &laggards {
                self.cursors.remove(id);
            }
            self.waiting[0] = 0;
            evicted.extend(laggards);
            self.trim();
        }
        evicted.sort();
        evicted
    }

    /// The next frame for `id`, advancing its cursor, or `None` when it has been sent every frame (or is
    /// not an `all` client).
    pub fn next(&mut self, id: ClientId) -> Option<Arc<Frame>> {
        let cursor = self.cursors.get_mut(&id)?;
        let i = (*cursor).checked_sub(self.first)? as usize;
        let frame = self.frames.get(i)?.clone();
        *cursor += 1;
        self.waiting[i] -= 1;
        match self.waiting.get_mut(i + 1) {
            Some(w) => *w += 1,
            None => self.caught_up += 1,
        }
        self.trim();
        Some(frame)
    }

    /// How many published frames `id` has not been sent yet.
    pub fn behind(&self, id: ClientId) -> Option<u64> {
        let cursor = *self.cursors.get(&id)?;
        Some(self.pushed.saturating_sub(cursor))
    }

    fn index_of(&self, position: u64) -> Option<usize> {
        let i = position.checked_sub(self.first)? as usize;
        (i < self.frames.len()).then_some(i)
    }

    /// Drops frames at the front that no client will be sent any more.
    fn trim(&mut self) {
        while self.waiting.front() == Some(&0) {
            self.waiting.pop_front();
            let frame = self.frames.pop_front().expect("frames and waiting align");
            self.bytes -= frame.size();
            self.first += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(seq: u64, len: usize) -> Arc<Frame> {
        Arc::new(Frame::new(seq, seq * 1000, Bytes::from(vec![0u8; len])))
    }

    fn drain(b: &mut Backlog, id: ClientId) -> Vec<u64> {
        std::iter::from_fn(|| b.next(id)).map(|f| f.seq).collect()
    }

    #[test]
    fn every_client_gets_every_frame_in_order_at_its_own_pace() {
        let mut b = Backlog::new(1 << 20);
        let (fast, slow) = (ClientId(1), ClientId(2));
        let f0 = frame(0, 100);
        b.join(fast, None);
        b.join(slow, None);
        b.push(f0);
        let mut fast_got = Vec::new();
        for seq in 1..50 {
            b.push(frame(seq, 100));
            fast_got.extend(drain(&mut b, fast));
        }
        assert_eq!(fast_got, (0..50).collect::<Vec<_>>());
        assert_eq!(b.len(), 50, "the slow client still needs every frame");
        assert_eq!(drain(&mut b, slow), (0..50).collect::<Vec<_>>());
        assert_eq!(b.len(), 0, "frames are freed once every client has them");
        assert_eq!(b.bytes(), 0);
    }

    #[test]
    fn a_joining_client_starts_with_the_newest_frame() {
        let mut b = Backlog::new(1 << 20);
        let newest = frame(41, 10);
        b.push(newest.clone());
        b.join(ClientId(1), Some(&newest));
        b.push(frame(42, 10));
        assert_eq!(drain(&mut b, ClientId(1)), vec![41, 42]);
    }

    #[test]
    fn over_budget_only_the_furthest_behind_is_evicted() {
        let per_frame = frame(0, 1000).size();
        let mut b = Backlog::new(per_frame * 10);
        let (a, laggard, c) = (ClientId(1), ClientId(2), ClientId(3));
        for id in [a, laggard, c] {
            b.join(id, None);
        }
        let mut evicted = Vec::new();
        let mut got_c = Vec::new();
        for seq in 0..30 {
            evicted.extend(b.push(frame(seq, 1000)));
            // a reads everything; c reads every other frame (falls behind half a frame per frame).
            drain(&mut b, a);
            if seq % 2 == 0 {
                got_c.extend(b.next(c).map(|f| f.seq));
            }
        }
        assert_eq!(
            evicted.first(),
            Some(&laggard),
            "the one that read nothing goes first"
        );
        assert!(b.bytes() <= per_frame * 10);
        // Whoever is still connected has no gap.
        if b.behind(c).is_some() {
            got_c.extend(drain(&mut b, c));
            assert_eq!(got_c, (0..got_c.len() as u64).collect::<Vec<_>>());
        }
        assert!(
            b.behind(a).is_some(),
            "the client that kept up is never evicted"
        );
    }

    #[test]
    fn leaving_frees_what_only_the_leaver_needed() {
        let mut b = Backlog::new(1 << 20);
        b.join(ClientId(1), None);
        b.join(ClientId(2), None);
        for seq in 0..5 {
            b.push(frame(seq, 10));
        }
        drain(&mut b, ClientId(1));
        assert_eq!(b.len(), 5);
        b.leave(ClientId(2));
        assert_eq!(b.len(), 0);
        b.leave(ClientId(1));
        b.push(frame(5, 10));
        assert!(b.is_empty(), "no clients, nothing kept");
    }

    #[test]
    fn numbers_with_gaps_are_walked_in_publication_order() {
        // A variant's hub publishes the original's numbers, with gaps where its transcoder skipped.
        let per_frame = frame(0, 100).size();
        let mut b = Backlog::new(per_frame * 4);
        let (reader, laggard) = (ClientId(1), ClientId(2));
        b.join(reader, None);
        b.join(laggard, None);
        let seqs = [3u64, 4, 9, 20, 21, 40];
        let mut evicted = Vec::new();
        let mut got = Vec::new();
        for &seq in &seqs {
            evicted.extend(b.push(frame(seq, 100)));
            got.extend(drain(&mut b, reader));
        }
        assert_eq!(got, seqs);
        assert_eq!(evicted, vec![laggard], "over budget the laggard goes");
        assert_eq!(b.behind(reader), Some(0));
        let late = ClientId(3);
        let newest = frame(41, 100);
        b.push(newest.clone());
        b.join(late, Some(&newest));
        b.push(frame(50, 100));
        assert_eq!(drain(&mut b, late), vec![41, 50]);
        assert_eq!(drain(&mut b, reader), vec![41, 50]);
    }
}
