//! Who gets the next transcode slot: a fair share per camera, then per variant, and a bounded queue of
//! snapshot transcodes.
//!
//! The server has a few transcode slots (one fewer than its cores) for every camera's variants and every
//! snapshot asked at a size. Served first come, first served, one camera's crowd (100 snapshots at
//! distinct widths, or four variants of an 8K picture) takes the slots from every other camera's variants.
//! So waiters queue in lanes: each camera has one lane per variant, which holds at most one waiter (a
//! variant transcodes one frame at a time and, given a turn, takes its newest frame, skipping the ones it
//! could not keep up with), and one lane for its snapshots, bounded by the caller (the excess is refused at
//! once, to be answered 503). A freed slot goes round-robin to the next camera with a waiter, and within it
//! round-robin to its next lane; a lane's waiters are served in order. A camera with many lanes thus gets
//! no more turns than one with a single variant while both wait.
//!
//! Pure bookkeeping, generic over the camera's name and the waiter (the server's is a channel that hands
//! the slot over); no clock, no thread, no I/O.

use crate::variant::VariantKey;
use std::collections::{BTreeMap, VecDeque};

/// A camera's queue of waiters for one kind of transcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    /// The camera's snapshots at a size or quality (one-off transcodes).
    Snapshots,
    /// One running variant's transcoder.
    Variant(VariantKey),
}

/// What [`TranscodeQueue::admit`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit<W> {
    /// A slot was free and is now the caller's (the waiter is not kept).
    Now,
    /// No slot is free: the waiter is queued and [`TranscodeQueue::release`] will name it.
    Queued,
    /// The lane is full: the waiter, given back; the caller refuses the transcode.
    Full(W),
}

#[derive(Debug)]
struct Camera<W> {
    lanes: BTreeMap<Lane, VecDeque<W>>,
    /// The lane served last, so the next turn goes to the one after it.
    last: Option<Lane>,
}

/// The slots and the waiters for them.
#[derive(Debug)]
pub struct TranscodeQueue<C, W> {
    free: usize,
    cameras: BTreeMap<C, Camera<W>>,
    /// The camera served last.
    last: Option<C>,
    queued: usize,
}

/// The first key after `after` (wrapping around) whose value satisfies `ok`.
fn next_after<K: Ord + Clone, V>(
    map: &BTreeMap<K, V>,
    after: Option<&K>,
    ok: impl Fn(&V) -> bool,
) -> Option<K> {
    let later = match after {
        Some(a) => map
            .range::<K, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
            .find(|(_, v)| ok(v)),
        None => None,
    };
    later
        .or_else(|| map.iter().find(|(_, v)| ok(v)))
        .map(|(k, _)| k.clone())
}

impl<C: Ord + Clone, W> TranscodeQueue<C, W> {
    /// A queue for `slots` slots (at least 1), all free.
    pub fn new(slots: usize) -> Self {
        TranscodeQueue {
            free: slots.max(1),
            cameras: BTreeMap::new(),
            last: None,
            queued: 0,
        }
    }

    /// Slots free now.
    pub fn free(&self) -> usize {
        self.free
    }

    /// Waiters queued, in every lane.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Waiters queued in one lane of one camera.
    pub fn queued_in(&self, camera: &C, lane: Lane) -> usize {
        self.cameras
            .get(camera)
            .and_then(|c| c.lanes.get(&lane))
            .map_or(0, VecDeque::len)
    }

    /// Asks for a slot for `camera`'s `lane`: taken at once if one is free, else `waiter` is queued in the
    /// lane, unless it already holds `capacity` waiters (at least 1).
    pub fn admit(&mut self, camera: C, lane: Lane, capacity: usize, waiter: W) -> Admit<W> {
        if self.free > 0 {
            // Slots are freed to waiters first, so a free slot means nobody waits.
            self.free -= 1;
            return Admit::Now;
        }
        let c = self.cameras.entry(camera).or_insert_with(|| Camera {
            lanes: BTreeMap::new(),
            last: None,
        });
        let q = c.lanes.entry(lane).or_default();
        if q.len() >= capacity.max(1) {
            return Admit::Full(waiter);
        }
        q.push_back(waiter);
        self.queued += 1;
        Admit::Queued
    }

    /// A slot was given back: the waiter it goes to (the next camera's next lane's first), or `None`
    /// when nobody waits and the slot is free again. A waiter that turns out to be gone is the caller's to
    /// skip: it calls `release` again.
    pub fn release(&mut self) -> Option<W> {
        let Some(camera) = next_after(&self.cameras, self.last.as_ref(), |c: &Camera<W>| {
            c.lanes.values().any(|q| !q.is_empty())
        }) else {
            self.free += 1;
            return None;
        };
        let c = self.cameras.get_mut(&camera).expect("found above");
        let lane = next_after(&c.lanes, c.last.as_ref(), |q: &VecDeque<W>| !q.is_empty())
            .expect("the camera has a waiter");
        let q = c.lanes.get_mut(&lane).expect("found above");
        let waiter = q.pop_front().expect("the lane has a waiter");
        if q.is_empty() {
            c.lanes.remove(&lane);
        }
        c.last = Some(lane);
        if c.lanes.is_empty() {
            self.cameras.remove(&camera);
        }
        self.last = Some(camera);
        self.queued -= 1;
        Some(waiter)
    }

    /// Drops the waiters for which `keep` is false (those that stopped waiting), so they hold no place.
    pub fn retain(&mut self, mut keep: impl FnMut(&W) -> bool) {
        let mut removed = 0;
        for c in self.cameras.values_mut() {
            for q in c.lanes.values_mut() {
                let before = q.len();
                q.retain(&mut keep);
                removed += before - q.len();
            }
            c.lanes.retain(|_, q| !q.is_empty());
        }
        self.cameras.retain(|_, c| !c.lanes.is_empty());
        self.queued -= removed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(width: u32) -> Lane {
        Lane::Variant(VariantKey {
            width,
            height: width * 3 / 4,
            quality: 80,
        })
    }

    /// Releases until nobody waits; the waiters in the order they got the slot.
    fn drain<W>(q: &mut TranscodeQueue<&'static str, W>) -> Vec<W> {
        std::iter::from_fn(|| q.release()).collect()
    }

    #[test]
    fn a_free_slot_is_taken_at_once_and_given_back_when_nobody_waits() {
        let mut q = TranscodeQueue::<&str, u32>::new(2);
        assert_eq!(q.admit("a", v(320), 1, 1), Admit::Now);
        assert_eq!(q.admit("a", v(160), 1, 2), Admit::Now);
        assert_eq!(q.free(), 0);
        assert_eq!(q.admit("a", v(320), 1, 3), Admit::Queued);
        assert_eq!(q.release(), Some(3));
        assert_eq!(q.release(), None);
        assert_eq!(q.release(), None);
        assert_eq!((q.free(), q.queued()), (2, 0));
        assert_eq!(TranscodeQueue::<&str, u32>::new(0).free(), 1);
    }

    #[test]
    fn a_variant_waits_once_and_the_snapshot_lane_is_bounded() {
        let mut q = TranscodeQueue::<&str, u32>::new(1);
        assert_eq!(q.admit("a", v(320), 1, 0), Admit::Now);
        assert_eq!(q.admit("a", v(320), 1, 1), Admit::Queued);
        assert_eq!(q.admit("a", v(320), 1, 2), Admit::Full(2));
        for i in 10..13 {
            assert_eq!(q.admit("a", Lane::Snapshots, 3, i), Admit::Queued);
        }
        assert_eq!(q.admit("a", Lane::Snapshots, 3, 13), Admit::Full(13));
        // Another camera's snapshots have their own bound.
        assert_eq!(q.admit("b", Lane::Snapshots, 3, 20), Admit::Queued);
        assert_eq!(q.queued_in(&"a", Lane::Snapshots), 3);
        assert_eq!(q.queued(), 5);
        // Waiters that stopped waiting give their places back.
        q.retain(|&w| w != 11 && w != 20);
        assert_eq!((q.queued(), q.queued_in(&"b", Lane::Snapshots)), (3, 0));
        assert_eq!(q.admit("a", Lane::Snapshots, 3, 14), Admit::Queued);
        // The camera's lanes take turns; a lane's waiters keep their order.
        assert_eq!(drain(&mut q), vec![10, 1, 12, 14]);
        assert_eq!((q.free(), q.queued()), (1, 0));
    }

    #[test]
    fn a_crowd_on_one_camera_gets_no_more_turns_than_a_lone_variant_on_another() {
        let mut q = TranscodeQueue::<&str, String>::new(1);
        assert_eq!(q.admit("busy", v(100), 1, "first".into()), Admit::Now);
        for i in 0..50 {
            assert_eq!(
                q.admit("busy", Lane::Snapshots, 64, format!("snap{i}")),
                Admit::Queued
            );
        }
        for w in [100, 200, 300, 400] {
            q.admit("busy", v(w), 1, format!("busy{w}"));
        }
        q.admit("quiet", v(320), 1, "quiet".to_string());
        // The lone variant is served by the second turn at the latest, whatever waits on the busy camera.
        let first_two: Vec<String> = (0..2).map(|_| q.release().unwrap()).collect();
        assert!(first_two.contains(&"quiet".to_string()), "{first_two:?}");
        // It comes back after each of its transcodes: every other turn is its.
        for _ in 0..10 {
            q.admit("quiet", v(320), 1, "quiet".to_string());
            let turns: Vec<String> = (0..2).map(|_| q.release().unwrap()).collect();
            assert!(turns.contains(&"quiet".to_string()), "{turns:?}");
        }
    }

    proptest! {
        /// Whatever the arrivals, every waiter is served exactly once, the slots are conserved, and while
        /// two cameras both wait neither gets two turns in a row.
        #[test]
        fn waiters_are_served_once_and_cameras_alternate(
            ops in proptest::collection::vec((0u8..3, 0u8..4, any::<bool>()), 1..200),
        ) {
            let mut q = TranscodeQueue::<u8, u32>::new(2);
            let mut held = 0usize;
            let mut waiting = std::collections::BTreeSet::new();
            let mut next = 0u32;
            let mut last_served: Option<u8> = None;
            let mut enc = std::collections::HashMap::new();
            for (camera, lane, release) in ops {
                if release && held > 0 {
                    let contended: std::collections::BTreeSet<u8> =
                        waiting.iter().map(|w| enc[w]).collect();
                    match q.release() {
                        Some(w) => {
                            prop_assert!(waiting.remove(&w));
                            let c = enc[&w];
                            if contended.len() > 1 {
                                prop_assert_ne!(Some(c), last_served);
                            }
                            last_served = Some(c);
                        }
                        None => {
                            held -= 1;
                            prop_assert!(waiting.is_empty());
                        }
                    }
                } else {
                    let l = if lane == 0 { Lane::Snapshots } else { v(lane as u32 * 100) };
                    next += 1;
                    enc.insert(next, camera);
                    match q.admit(camera, l, 3, next) {
                        Admit::Now => held += 1,
                        Admit::Queued => { waiting.insert(next); }
                        Admit::Full(w) => prop_assert_eq!(w, next),
                    }
                }
                prop_assert_eq!(held + q.free(), 2);
                prop_assert_eq!(q.queued(), waiting.len());
            }
        }
    }
}
