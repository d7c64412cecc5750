//! The frame hub: where one source's frames meet that source's clients.
//!
//! The hub numbers each frame the source publishes, keeps the newest for snapshots and `latest` clients,
//! and routes each client's "what do I send next?" to the delivery policy it chose. It is a plain state
//! machine, owned by whoever drives it (mjpegd wraps one per source in a mutex and wakes waiting clients
//! when [`Hub::publish`] or a completed lockstep round says so). There is no global state: one process can
//! run a hub per camera.

use crate::delivery::all::Backlog;
use crate::delivery::ids::IdMap;
use crate::delivery::lockstep::Lockstep;
use crate::delivery::{ClientId, EvictCause, Policy};
use crate::frame::Frame;
use bytes::Bytes;
use std::sync::Arc;

/// Settings of one hub.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// The most bytes of frames the `all` backlog may hold.
    pub buffer_memory: usize,
}

impl Default for HubConfig {
    fn default() -> HubConfig {
        HubConfig {
            buffer_memory: 256 << 20,
        }
    }
}

/// What the caller must act on after [`Hub::publish`].
#[derive(Debug)]
pub struct Published {
    /// The frame as the hub numbered it.
    pub frame: Arc<Frame>,
    /// `all` clients removed to keep the backlog within budget: disconnect them.
    pub evicted: Vec<ClientId>,
}

/// The answer to "what does this client send next?".
#[derive(Debug)]
pub enum Next {
    /// Send this frame; `skipped` frames were published since the client's previous one and will never be
    /// sent to it (always 0 under the `all` policy).
    Frame { frame: Arc<Frame>, skipped: u64 },
    /// Nothing to send yet: wait until the hub changes (a frame is published or a round starts).
    Wait,
    /// The hub removed this client; disconnect it.
    Evicted(EvictCause),
}

#[derive(Debug)]
struct Client {
    policy: Policy,
    /// Sequence number of the last frame handed to this client.
    last_seq: Option<u64>,
    /// Set once the hub has removed the client from its policy.
    evicted: Option<EvictCause>,
}

/// A snapshot of one client's position, for status pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientPosition {
    pub policy: Policy,
    /// Sequence number of the last frame handed to the client.
    pub last_seq: Option<u64>,
    /// Frames published after the last one handed to it.
    pub behind: u64,
}

/// Counters and sizes of a hub, for status pages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Frames published so far.
    pub published: u64,
    /// Bytes held by the `all` backlog.
    pub backlog_bytes: usize,
    /// Frames held by the `all` backlog.
    pub backlog_frames: usize,
    /// Clients under each policy: latest, all, lockstep.
    pub clients: [usize; 3],
    /// Evictions so far, by cause, in [`EvictCause::ALL`] order.
    pub evictions: [u64; 3],
    /// The current lockstep round.
    pub lockstep_round: u64,
}

/// One source's frames and clients.
#[derive(Debug)]
pub struct Hub {
    next_seq: u64,
    newest: Option<Arc<Frame>>,
    backlog: Backlog,
    lockstep: Lockstep,
    clients: IdMap<Client>,
    next_client: u64,
    evictions: [u64; 3],
}

impl Hub {
    /// An empty hub.
    pub fn new(config: HubConfig) -> Hub {
        Hub {
            next_seq: 0,
            newest: None,
            backlog: Backlog::new(config.buffer_memory),
            lockstep: Lockstep::new(),
            clients: IdMap::default(),
            next_client: 1,
            evictions: [0; 3],
        }
    }

    /// Numbers and stores a new frame captured at `timestamp_us` (µs since the Unix epoch).
    pub fn publish(&mut self, jpeg: Bytes, timestamp_us: u64) -> Published {
        self.publish_numbered(jpeg, self.next_seq, timestamp_us)
    }

    /// Stores a frame that already has a number: a variant's hub republishes the original's frames,
    /// transcoded, under their own numbers (with gaps where the transcoder skipped). Numbers only go up:
    /// one at or below a number already published is replaced by the next free one.
    pub fn publish_numbered(&mut self, jpeg: Bytes, seq: u64, timestamp_us: u64) -> Published {
        let seq = seq.max(self.next_seq);
        let frame = Arc::new(Frame::new(seq, timestamp_us, jpeg));
        self.next_seq = seq.saturating_add(1);
        self.newest = Some(frame.clone());
        let evicted = self.backlog.push(frame.clone());
        for id in &evicted {
            self.mark_evicted(*id, EvictCause::BufferFull);
        }
        self.lockstep.publish(&frame);
        Published { frame, evicted }
    }

    /// The newest frame of the source's current run, if it published one.
    pub fn newest(&self) -> Option<&Arc<Frame>> {
        self.newest.as_ref()
    }

    /// The source stopped (it failed, or closed for lack of watchers): its newest frame is history, not
    /// live video. Snapshots and clients that join from now on (`latest`, `lockstep`, and where an `all`
    /// client starts) wait for the next run's first frame instead of being handed it. Frames already in the
    /// `all` backlog stay, so `all` clients still get every frame; sequence numbers carry on.
    pub fn end_run(&mut self) {
        self.newest = None;
    }

    /// Registers a client under `policy`.
    pub fn join(&mut self, policy: Policy) -> ClientId {
        let id = ClientId(self.next_client);
        self.next_client += 1;
        match policy {
            Policy::Latest => {}
            Policy::All => self.backlog.join(id, self.newest.as_ref()),
            Policy::Lockstep => {
                self.lockstep.join(id, self.newest.as_ref());
            }
        }
        self.clients.insert(
            id,
            Client {
                policy,
                last_seq: None,
                evicted: None,
            },
        );
        id
    }

    /// Forgets a client that disconnected (or that the caller disconnected after an eviction).
    pub fn leave(&mut self, id: ClientId) {
        if let Some(client) = self.clients.remove(&id) {
            if client.evicted.is_none() {
                self.remove_from_policy(id, client.policy);
            }
        }
    }

    /// Removes a client from its policy for `cause` (for example the caller's lockstep or write timeout);
    /// its next [`Hub::next`] says [`Next::Evicted`].
    pub fn evict(&mut self, id: ClientId, cause: EvictCause) {
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        if client.evicted.is_some() {
            return;
        }
        let policy = client.policy;
        self.remove_from_policy(id, policy);
        self.mark_evicted(id, cause);
    }

    /// What `id` should be sent next.
    pub fn next(&mut self, id: ClientId) -> Next {
        let Some(client) = self.clients.get_mut(&id) else {
            return Next::Wait;
        };
        if let Some(cause) = client.evicted {
            return Next::Evicted(cause);
        }
        let frame = match client.policy {
            Policy::Latest => self
                .newest
                .as_ref()
                .filter(|f| client.last_seq.is_none_or(|last| f.seq > last))
                .cloned(),
            Policy::All => self.backlog.next(id),
            Policy::Lockstep => self.lockstep.next(id),
        };
        match frame {
            Some(frame) => {
                let skipped = client
                    .last_seq
                    .map_or(0, |last| frame.seq.saturating_sub(last + 1));
                client.last_seq = Some(frame.seq);
                Next::Frame { frame, skipped }
            }
            None => Next::Wait,
        }
    }

    /// `id` has been sent the frame it was last handed. Returns true if that started a new lockstep round
    /// (waiting lockstep clients must be woken).
    pub fn sent(&mut self, id: ClientId) -> bool {
        match self.clients.get(&id) {
            Some(c) if c.policy == Policy::Lockstep && c.evicted.is_none() => {
                self.lockstep.sent(id, self.newest.as_ref())
            }
            _ => false,
        }
    }

    /// Where `id` stands, for status pages.
    pub fn position(&self, id: ClientId) -> Option<ClientPosition> {
        let c = self.clients.get(&id)?;
        let behind = match (c.last_seq, &self.newest) {
            (Some(last), Some(newest)) => newest.seq.saturating_sub(last),
            (None, Some(newest)) => newest.seq + 1,
            (_, None) => 0,
        };
        Some(ClientPosition {
            policy: c.policy,
            last_seq: c.last_seq,
            behind,
        })
    }

    /// The next frame's sequence number (frames published so far, on a hub that numbers its own).
    pub fn published(&self) -> u64 {
        self.next_seq
    }

    /// Counters and sizes.
    pub fn stats(&self) -> HubStats {
        let mut clients = [0; 3];
        for c in self.clients.values().filter(|c| c.evicted.is_none()) {
            clients[policy_index(c.policy)] += 1;
        }
        HubStats {
            published: self.next_seq,
            backlog_bytes: self.backlog.bytes(),
            backlog_frames: self.backlog.len(),
            clients,
            evictions: self.evictions,
            lockstep_round: self.lockstep.round(),
        }
    }

    fn remove_from_policy(&mut self, id: ClientId, policy: Policy) {
        match policy {
            Policy::Latest => {}
            Policy::All => self.backlog.leave(id),
            Policy::Lockstep => {
                self.lockstep.leave(id, self.newest.as_ref());
            }
        }
    }

    fn mark_evicted(&mut self, id: ClientId, cause: EvictCause) {
        if let Some(c) = self.clients.get_mut(&id) {
            c.evicted = Some(cause);
        }
        let i = EvictCause::ALL
            .iter()
            .position(|&c| c == cause)
            .expect("listed");
        self.evictions[i] += 1;
    }
}

fn policy_index(p: Policy) -> usize {
    p.index()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(n: usize) -> Bytes {
        Bytes::from(vec![0xAB; n])
    }

    fn seq(next: Next) -> Option<u64> {
        match next {
            Next::Frame { frame, .. } => Some(frame.seq),
            _ => None,
        }
    }

    #[test]
    fn three_policies_side_by_side_on_one_hub() {
        let mut hub = Hub::new(HubConfig::default());
        let latest = hub.join(Policy::Latest);
        let all = hub.join(Policy::All);
        let lock = hub.join(Policy::Lockstep);
        for i in 0..5 {
            hub.publish(jpeg(10), i);
        }
        // latest skips to the newest.
        match hub.next(latest) {
            Next::Frame { frame, skipped } => assert_eq!((frame.seq, skipped), (4, 0)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(hub.next(latest), Next::Wait));
        // all gets every one.
        let got: Vec<u64> = std::iter::from_fn(|| seq(hub.next(all))).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        // lockstep got the round that started with frame 0, and then the newest.
        assert_eq!(seq(hub.next(lock)), Some(0));
        assert!(hub.sent(lock));
        match hub.next(lock) {
            Next::Frame { frame, skipped } => assert_eq!((frame.seq, skipped), (4, 3)),
            other => panic!("{other:?}"),
        }
        hub.publish(jpeg(10), 5);
        match hub.next(latest) {
            Next::Frame { frame, skipped } => assert_eq!((frame.seq, skipped), (5, 0)),
            other => panic!("{other:?}"),
        }
        assert_eq!(hub.stats().clients, [1, 1, 1]);
    }

    #[test]
    fn an_evicted_client_is_told_and_counted() {
        let mut hub = Hub::new(HubConfig {
            buffer_memory: 3 * Frame::new(0, 0, jpeg(1000)).size(),
        });
        let reader = hub.join(Policy::All);
        let laggard = hub.join(Policy::All);
        let mut evicted = Vec::new();
        for i in 0..10 {
            evicted.extend(hub.publish(jpeg(1000), i).evicted);
            while seq(hub.next(reader)).is_some() {}
        }
        assert_eq!(evicted, vec![laggard]);
        assert!(matches!(
            hub.next(laggard),
            Next::Evicted(EvictCause::BufferFull)
        ));
        assert_eq!(hub.stats().evictions, [1, 0, 0]);
        assert_eq!(hub.stats().clients, [0, 1, 0]);
        hub.leave(laggard);
        assert!(hub.position(laggard).is_none());
    }

    #[test]
    fn evicting_a_lockstep_straggler_releases_the_round() {
        let mut hub = Hub::new(HubConfig::default());
        let a = hub.join(Policy::Lockstep);
        let straggler = hub.join(Policy::Lockstep);
        hub.publish(jpeg(1), 0);
        assert_eq!(seq(hub.next(a)), Some(0));
        hub.sent(a);
        hub.publish(jpeg(1), 1);
        assert!(matches!(hub.next(a), Next::Wait));
        hub.evict(straggler, EvictCause::LockstepTimeout);
        assert_eq!(seq(hub.next(a)), Some(1));
        assert_eq!(hub.stats().evictions, [0, 1, 0]);
    }

    #[test]
    fn after_a_run_ends_joiners_wait_for_the_next_runs_first_frame() {
        let mut hub = Hub::new(HubConfig::default());
        let reader = hub.join(Policy::All);
        hub.publish(jpeg(1), 0);
        hub.publish(jpeg(1), 1);
        hub.end_run();
        assert!(hub.newest().is_none());
        let latest = hub.join(Policy::Latest);
        let lock = hub.join(Policy::Lockstep);
        let all = hub.join(Policy::All);
        for c in [latest, lock, all] {
            assert!(
                matches!(hub.next(c), Next::Wait),
                "{c:?} got a frame of the old run"
            );
        }
        // The earlier `all` client still gets every frame, old run included.
        assert_eq!(seq(hub.next(reader)), Some(0));
        assert_eq!(seq(hub.next(reader)), Some(1));
        hub.publish(jpeg(1), 2);
        for c in [latest, lock, all, reader] {
            assert_eq!(seq(hub.next(c)), Some(2), "{c:?}");
        }
    }

    #[test]
    fn frames_published_with_their_own_numbers_keep_them_under_every_policy() {
        let mut hub = Hub::new(HubConfig::default());
        let latest = hub.join(Policy::Latest);
        let all = hub.join(Policy::All);
        let lock = hub.join(Policy::Lockstep);
        let first = hub.publish_numbered(jpeg(1), 7, 70).frame;
        assert_eq!((first.seq, first.timestamp_us), (7, 70));
        assert!(std::str::from_utf8(&first.part_head)
            .unwrap()
            .contains("X-Frame-Sequence: 7\r\n"));
        assert_eq!(seq(hub.next(latest)), Some(7));
        assert_eq!(seq(hub.next(lock)), Some(7));
        hub.sent(lock);
        hub.publish_numbered(jpeg(1), 12, 120);
        match hub.next(latest) {
            Next::Frame { frame, skipped } => assert_eq!((frame.seq, skipped), (12, 4)),
            other => panic!("{other:?}"),
        }
        assert_eq!(seq(hub.next(lock)), Some(12));
        let got: Vec<u64> = std::iter::from_fn(|| seq(hub.next(all))).collect();
        assert_eq!(got, vec![7, 12]);
        // A number that does not go up gets the next free one.
        assert_eq!(hub.publish_numbered(jpeg(1), 5, 130).frame.seq, 13);
        assert_eq!(hub.published(), 14);
    }

    #[test]
    fn position_reports_how_far_behind() {
        let mut hub = Hub::new(HubConfig::default());
        let c = hub.join(Policy::All);
        for i in 0..4 {
            hub.publish(jpeg(1), i);
        }
        hub.next(c);
        assert_eq!(hub.position(c).map(|p| p.behind), Some(3));
    }
}
