//! The `lockstep` policy: the firmware's queue variant, where every client is sent the same frame in one
//! round and the next round waits for the slowest.
//!
//! A round starts with the newest frame when the previous round is complete and a newer frame exists; it is
//! complete when every member has been sent its frame (or has left). Clients joining mid-round wait for the
//! next one. The lockstep timeout is the caller's: a member that takes too long is removed with
//! [`Lockstep::leave`], which may complete the round.

use super::ids::{IdMap, IdSet};
use super::ClientId;
use crate::frame::Frame;
use std::sync::Arc;

/// The lockstep group of one hub.
#[derive(Debug, Default)]
pub struct Lockstep {
    /// Each member and the last round it was handed.
    members: IdMap<u64>,
    /// The current round number (0: none yet).
    round: u64,
    /// The current round's frame.
    frame: Option<Arc<Frame>>,
    /// Members still being sent the current round's frame.
    pending: IdSet,
}

impl Lockstep {
    /// An empty group.
    pub fn new() -> Lockstep {
        Lockstep::default()
    }

    /// Number of members.
    pub fn clients(&self) -> usize {
        self.members.len()
    }

    /// The current round number.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// Adds a member; returns true if that started a round (the group was idle and `newest` is newer than
    /// the last round's frame).
    pub fn join(&mut self, id: ClientId, newest: Option<&Arc<Frame>>) -> bool {
        self.members.insert(id, self.round);
        self.try_start(newest)
    }

    /// Removes a member (left, or evicted by the caller's timeout). Returns true if that completed the
    /// round and started the next one.
    pub fn leave(&mut self, id: ClientId, newest: Option<&Arc<Frame>>) -> bool {
        if self.members.remove(&id).is_none() {
            return false;
        }
        self.pending.remove(&id) && self.try_start(newest)
    }

    /// A new frame was published; returns true if it started a round.
    pub fn publish(&mut self, newest: &Arc<Frame>) -> bool {
        self.try_start(Some(newest))
    }

    /// The current round's frame for `id`, if it has not been handed it yet.
    pub fn next(&mut self, id: ClientId) -> Option<Arc<Frame>> {
        let last = self.members.get_mut(&id)?;
        if *last < self.round && self.pending.contains(&id) {
            *last = self.round;
            self.frame.clone()
        } else {
            None
        }
    }

    /// `id` has been sent the current round's frame. Returns true if that completed the round and started
    /// the next one.
    pub fn sent(&mut self, id: ClientId, newest: Option<&Arc<Frame>>) -> bool {
        self.pending.remove(&id) && self.try_start(newest)
    }

    /// True while `id` has been handed the current round's frame but not finished sending it, or has yet to
    /// be handed it: it is what the group waits for.
    pub fn is_pending(&self, id: ClientId) -> bool {
        self.pending.contains(&id)
    }

    fn try_start(&mut self, newest: Option<&Arc<Frame>>) -> bool {
        let Some(newest) = newest else { return false };
        let fresh = self.frame.as_ref().is_none_or(|f| newest.seq > f.seq);
        if !self.pending.is_empty() || self.members.is_empty() || !fresh {
            return false;
        }
        self.round += 1;
        self.frame = Some(newest.clone());
        self.pending.extend(self.members.keys().copied());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(seq: u64) -> Arc<Frame> {
        Arc::new(Frame::new(seq, 0, Bytes::from_static(b"jpeg")))
    }

    #[test]
    fn the_next_round_waits_for_the_slowest_member() {
        let mut g = Lockstep::new();
        let (a, b) = (ClientId(1), ClientId(2));
        let f1 = frame(1);
        g.join(a, None);
        g.join(b, None);
        assert!(g.publish(&f1));
        assert_eq!(g.next(a).map(|f| f.seq), Some(1));
        assert_eq!(g.next(a).map(|f| f.seq), None, "one frame per round");
        assert!(!g.sent(a, Some(&f1)));
        let f2 = frame(2);
        assert!(!g.publish(&f2), "b has not been sent round 1");
        assert_eq!(g.next(a).map(|f| f.seq), None, "a waits for b");
        let f3 = frame(3);
        assert_eq!(g.next(b).map(|f| f.seq), Some(1));
        assert!(
            g.sent(b, Some(&f3)),
            "b done: the next round starts with the newest frame"
        );
        assert_eq!(g.next(a).map(|f| f.seq), Some(3));
        assert_eq!(g.next(b).map(|f| f.seq), Some(3));
    }

    #[test]
    fn removing_the_straggler_releases_the_others() {
        let mut g = Lockstep::new();
        let (a, straggler) = (ClientId(1), ClientId(2));
        g.join(a, None);
        g.join(straggler, None);
        let f1 = frame(1);
        g.publish(&f1);
        g.next(a);
        g.next(straggler);
        g.sent(a, Some(&f1));
        let f2 = frame(2);
        g.publish(&f2);
        assert!(g.is_pending(straggler));
        assert!(g.leave(straggler, Some(&f2)));
        assert_eq!(g.next(a).map(|f| f.seq), Some(2));
    }

    #[test]
    fn a_member_joining_mid_round_waits_for_the_next() {
        let mut g = Lockstep::new();
        let (a, late) = (ClientId(1), ClientId(2));
        g.join(a, None);
        let f1 = frame(1);
        g.publish(&f1);
        assert!(!g.join(late, Some(&f1)));
        assert_eq!(g.next(late).map(|f| f.seq), None);
        g.next(a);
        let f2 = frame(2);
        assert!(g.sent(a, Some(&f2)));
        assert_eq!(g.next(late).map(|f| f.seq), Some(2));
    }

    #[test]
    fn an_idle_group_starts_at_once_for_a_newcomer() {
        let mut g = Lockstep::new();
        assert!(g.join(ClientId(1), Some(&frame(5))));
        assert_eq!(g.next(ClientId(1)).map(|f| f.seq), Some(5));
    }
}
