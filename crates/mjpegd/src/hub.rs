//! The shared, async face of one source's [`mjpegd_core::Hub`].
//!
//! The core hub is a plain state machine; this wraps it for many tasks at once. The source's task publishes
//! into it, each client's task holds a [`Subscription`] and awaits its next frame, and the status page reads
//! it. The core hub sits behind a mutex held only for the few instructions of a decision, never across an
//! await or a socket write; a `watch` channel wakes waiting clients when a frame is published or a
//! lockstep round starts. Per-client counters are atomics, so sending a frame does not touch shared locks
//! beyond the one decision.
//!
//! Each new frame's part is also written once into a sealed memfd ([`SharedPart`]) that plain-TCP writers
//! send with sendfile instead of copying the frame into every socket. Only the newest few frames keep
//! theirs ([`SHARED_PARTS`]): enough for `latest` and `lockstep` clients and for `all` clients that keep
//! up, while the `all` backlog (up to `--buffer-memory`) is not doubled in kernel memory nor held open as
//! thousands of descriptors. A client handed an older frame writes it from the frame's own bytes, the
//! same bytes on the wire.

use crate::net::shared_part::SharedPart;
use bytes::Bytes;
use mjpegd_core::hub::{ClientPosition, HubStats};
use mjpegd_core::preroll::{PreRoll, PreRollStats};
use mjpegd_core::{ClientId, EvictCause, Frame, Hub, HubConfig, Next, Policy};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A stream client and its place in the hub, as `/state` lists it.
pub type ListedClient = (Arc<ClientEntry>, Option<ClientPosition>);

/// What the source is doing, as `/state` shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SourceState {
    /// Closed: no one watches an on-demand source (or it has not started yet).
    #[default]
    Idle,
    /// Being opened (or opened, and its first frame not yet in).
    Opening,
    /// Delivering frames.
    Online,
    /// Open, but silent for longer than the no-signal delay: clients are shown "no signal" while the
    /// supervisor keeps waiting for a frame, up to the frame timeout.
    Stalled,
    /// Failed; clients are shown "no signal" while the supervisor retries with back-off.
    Offline,
}

impl SourceState {
    /// Every state, for reporting one gauge per state.
    pub const ALL: [SourceState; 5] = [
        SourceState::Idle,
        SourceState::Opening,
        SourceState::Online,
        SourceState::Stalled,
        SourceState::Offline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Idle => "idle",
            SourceState::Opening => "opening",
            SourceState::Online => "online",
            SourceState::Stalled => "stalled",
            SourceState::Offline => "offline",
        }
    }
}

/// How a source's frames become JPEGs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoder {
    /// Passed through as the source made them.
    #[default]
    None,
    /// Encoded by mjpegd.
    Cpu,
}

impl Encoder {
    /// The name µStreamer's `/state` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoder::None => "NONE",
            Encoder::Cpu => "CPU",
        }
    }
}

/// What a source reports about itself, shown in `/state`.
#[derive(Clone, Debug, Default)]
pub struct SourceStatus {
    /// What the source is (e.g. "test pattern", "/dev/video0", an upstream URL).
    pub description: String,
    /// The source delivers real frames now.
    pub online: bool,
    pub state: SourceState,
    /// The resolution the source actually delivers.
    pub width: u32,
    pub height: u32,
    /// The frame rate asked for.
    pub desired_fps: f64,
    /// The frame rate the source said it would deliver (a camera's driver may grant another than asked).
    pub granted_fps: f64,
    /// Frames from the source dropped because they were not whole JPEGs.
    pub dropped_not_jpeg: u64,
    /// Frames dropped because their picture is larger than the configured maximum.
    pub dropped_too_large: u64,
    /// Frames published without the embedded thumbnail they came with (`drop_thumbnails`).
    pub thumbnails_dropped: u64,
    /// Frames dropped because libjpeg could not rotate or flip them (`rotate`, `flip`).
    pub dropped_untransformable: u64,
    /// Frames that came without Huffman tables and were given the standard ones.
    pub huffman_tables_added: u64,
    /// Times the source was (re)opened after a failure.
    pub reconnects: u64,
    /// Why the source is down now (None while it delivers frames or is idle).
    pub error: Option<String>,
    /// The most recent failure, kept after recovery, and when it happened.
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
    pub encoder: Encoder,
    /// The sequence number of the first real frame of the source's latest run (a snapshot's warm-up
    /// counts from it).
    pub run_first_seq: Option<u64>,
}

impl SourceStatus {
    /// Frames dropped for any cause.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_not_jpeg + self.dropped_too_large + self.dropped_untransformable
    }
}

/// One connected stream client, as the status page shows it.
#[derive(Debug)]
pub struct ClientEntry {
    pub id: ClientId,
    pub addr: crate::net::Peer,
    pub policy: Policy,
    pub fps_cap: Option<f64>,
    pub since: SystemTime,
    pub user_agent: String,
    pub frames_sent: AtomicU64,
    pub frames_skipped: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Cancelled when the hub evicts the client, to interrupt a write in progress.
    pub evicted: CancellationToken,
}

/// Who a new client is, for the status page.
#[derive(Clone, Debug)]
pub struct ClientMeta {
    pub addr: crate::net::Peer,
    pub policy: Policy,
    pub fps_cap: Option<f64>,
    pub user_agent: String,
    /// Cancelled to end the stream: when the hub evicts the client, or (as a child of the server's
    /// shutdown token) when the server stops. One token per client keeps the per-frame wait off any
    /// shared waiter list.
    pub stop: CancellationToken,
}

/// How many of the newest frames keep a [`SharedPart`]: the newest, the one before (a client still on
/// it when the next arrives), and one more for a lockstep round that waits on a slow member.
pub const SHARED_PARTS: usize = 3;

/// The core hub and the shared parts of its newest frames, under one lock so a client gets its frame and
/// the frame's part in one decision.
struct Core {
    hub: Hub,
    /// Oldest first, at most [`SHARED_PARTS`].
    parts: VecDeque<Arc<SharedPart>>,
    /// The camera's last seconds of frames (`pre-roll`), fed under the same lock as the hub, so an event
    /// client gets the pre-roll and then the live frames without a gap or a frame twice.
    pre_roll: Option<PreRoll>,
}

/// What a client sends next: the frame, and its part in shared memory if it still has one.
pub struct Delivery {
    pub frame: Arc<Frame>,
    pub part: Option<Arc<SharedPart>>,
}

/// What the stream clients of one policy have been sent, all told: the clients connected now and those
/// that left (see [`SharedHub::sent_totals`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SentTotals {
    /// Stream clients connected now.
    pub clients: usize,
    /// Frames written in full.
    pub frames: u64,
    /// Bytes of those frames on the wire (part headers and boundaries included).
    pub bytes: u64,
    /// Frames skipped (`latest` clients that were not ready for them).
    pub skipped: u64,
}

/// The counters of the clients of one policy that have left, folded in once per client as it leaves.
#[derive(Debug, Default)]
struct Departed {
    frames: AtomicU64,
    bytes: AtomicU64,
    skipped: AtomicU64,
}

/// One source's hub, shared by the source task, the client tasks and the status page.
pub struct SharedHub {
    core: Mutex<Core>,
    /// Bumped whenever a waiting client may have something new to send.
    changed: watch::Sender<u64>,
    /// Number of clients that want frames now (stream clients and waiting snapshots).
    watchers: watch::Sender<usize>,
    clients: Mutex<HashMap<ClientId, Arc<ClientEntry>>>,
    /// Per policy ([`Policy::index`]), what departed clients were sent; changed only with `clients`
    /// locked, so a client moves from the live counters to these in one step (`_total`s never go down).
    departed: [Departed; 3],
    /// Frames the source delivered, before the supervisor's checks (see [`SharedHub::count_captured`]).
    captured: AtomicU64,
    source: Mutex<SourceStatus>,
    /// Publish times of recent frames, for the measured frame rate.
    recent: Mutex<VecDeque<Instant>>,
    /// A shared part could not be made (logged once; those frames are written from their bytes).
    part_failed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data behind (every critical section is a
    // single decision), so poisoning is not a reason to take the server down.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SharedHub {
    /// A hub with nothing published and no clients.
    pub fn new(config: HubConfig, source: SourceStatus) -> Arc<SharedHub> {
        Arc::new(SharedHub {
            core: Mutex::new(Core {
                hub: Hub::new(config),
                parts: VecDeque::with_capacity(SHARED_PARTS + 1),
                pre_roll: None,
            }),
            changed: watch::channel(0).0,
            watchers: watch::channel(0).0,
            clients: Mutex::new(HashMap::new()),
            departed: Default::default(),
            captured: AtomicU64::new(0),
            source: Mutex::new(source),
            recent: Mutex::new(VecDeque::new()),
            part_failed: AtomicBool::new(false),
        })
    }

    /// Publishes a frame captured at `captured`, wakes the clients waiting for one, and disconnects `all`
    /// clients the backlog's budget no longer allows.
    pub fn publish(&self, jpeg: Bytes, captured: SystemTime) -> Arc<Frame> {
        let ts = captured
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        let published = {
            let mut core = lock(&self.core);
            let published = core.hub.publish(jpeg, ts);
            if let Some(p) = &mut core.pre_roll {
                p.push(published.frame.clone());
            }
            published
        };
        self.announce(published)
    }

    /// Publishes a frame under a number and capture time it already has: a variant's transcoder
    /// republishes the camera's frames this way (see [`mjpegd_core::Hub::publish_numbered`]).
    pub fn publish_numbered(&self, jpeg: Bytes, seq: u64, timestamp_us: u64) -> Arc<Frame> {
        let published = lock(&self.core)
            .hub
            .publish_numbered(jpeg, seq, timestamp_us);
        self.announce(published)
    }

    fn announce(&self, published: mjpegd_core::hub::Published) -> Arc<Frame> {
        // Made outside the lock (a copy of the frame and a few system calls), before the clients are woken.
        match SharedPart::new(&published.frame) {
            Ok(None) => {} // as many parts are open as may be: this frame goes from its bytes
            Ok(Some(part)) => {
                let old = {
                    let mut core = lock(&self.core);
                    core.parts.push_back(Arc::new(part));
                    (core.parts.len() > SHARED_PARTS)
                        .then(|| core.parts.pop_front())
                        .flatten()
                };
                // Closing the oldest part's file (if no client still sends from it) is a system call:
                // after the lock.
                drop(old);
            }
            Err(e) => {
                if !self.part_failed.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "cannot put frames in shared memory (memfd); writing them to each client instead");
                }
            }
        }
        {
            let now = Instant::now();
            let mut recent = lock(&self.recent);
            recent.push_back(now);
            while recent
                .front()
                .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(2))
            {
                recent.pop_front();
            }
        }
        if !published.evicted.is_empty() {
            let clients = lock(&self.clients);
            for id in &published.evicted {
                if let Some(c) = clients.get(id) {
                    tracing::warn!(client = %id, addr = %c.addr, "evicting 'all' client: it fell behind by more than --buffer-memory");
                    c.evicted.cancel();
                }
            }
        }
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        published.frame
    }

    /// The next sequence number this hub will give (frames published so far).
    pub fn next_seq(&self) -> u64 {
        lock(&self.core).hub.published()
    }

    /// Whether the core hub's lock is free now: for the watchdog, which never waits on it (a lock taken
    /// for longer than a decision means a stuck hub).
    pub fn is_unlocked(&self) -> bool {
        !matches!(
            self.core.try_lock(),
            Err(std::sync::TryLockError::WouldBlock)
        )
    }

    /// Holds the core hub's lock (tests of the watchdog).
    #[cfg(test)]
    pub(crate) fn hold_lock(&self) -> impl Sized + '_ {
        lock(&self.core)
    }

    /// The newest frame of the source's current run, if any.
    pub fn newest(&self) -> Option<Arc<Frame>> {
        lock(&self.core).hub.newest().cloned()
    }

    /// Keeps the last `keep` of frames in memory from now on, within `max_bytes` (see
    /// [`mjpegd_core::preroll`]).
    pub fn keep_pre_roll(&self, keep: Duration, max_bytes: usize) {
        lock(&self.core).pre_roll = Some(PreRoll::new(keep.as_micros() as u64, max_bytes));
    }

    /// What the pre-roll holds now (None without one), its frames older than the pre-roll dropped first.
    pub fn pre_roll_stats(&self, now: SystemTime) -> Option<PreRollStats> {
        let mut core = lock(&self.core);
        let p = core.pre_roll.as_mut()?;
        p.expire(micros(now));
        Some(p.stats())
    }

    /// The frame in memory captured closest to `t_us` at or before it: from the pre-roll, or the newest
    /// frame when it was captured at or before `t_us`. None when memory holds no such frame.
    pub fn frame_at(&self, t_us: u64, now: SystemTime) -> Option<Arc<Frame>> {
        let mut core = lock(&self.core);
        if let Some(p) = &mut core.pre_roll {
            p.expire(micros(now));
            if let Some(f) = p.at_or_before(t_us) {
                return Some(f);
            }
        }
        core.hub
            .newest()
            .filter(|f| f.timestamp_us <= t_us)
            .cloned()
    }

    /// The source stopped: from now on snapshots and joining clients wait for its next run's first frame
    /// (see [`mjpegd_core::Hub::end_run`]).
    pub fn end_run(&self) {
        lock(&self.core).hub.end_run();
        // Whoever mirrors this hub (a variant's transcoder) learns of it.
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The frame a snapshot should show: the newest of the source's current run that `wanted` accepts (a
    /// real frame, or "no signal" while it is down), else the first such frame to arrive (counting the
    /// caller as a watcher meanwhile, which wakes an on-demand source), within `timeout`. A frame from an
    /// earlier run is never shown as if it were live. `wanted` is asked again at each publish (see
    /// [`crate::still`] for what snapshots ask).
    pub async fn frame_where(
        self: &Arc<Self>,
        wanted: impl Fn(&Frame) -> bool,
        timeout: Duration,
    ) -> Option<Arc<Frame>> {
        if let Some(frame) = self.newest().filter(|f| wanted(f)) {
            return Some(frame);
        }
        let mut changes = self.changes();
        let _watching = self.watch();
        let wait = async {
            loop {
                if let Some(f) = self.newest().filter(|f| wanted(f)) {
                    return f;
                }
                if changes.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }

    /// Registers a stream client.
    pub fn subscribe(self: &Arc<Self>, meta: ClientMeta) -> Subscription {
        self.subscribe_from(meta, None).1
    }

    /// Registers a stream client and, when `since_us` is given, hands it the pre-roll's frames captured
    /// from then on that come before the first frame its subscription gives (taken in one decision with
    /// the join: no frame is missing or doubled between the two).
    pub fn subscribe_from(
        self: &Arc<Self>,
        meta: ClientMeta,
        since_us: Option<u64>,
    ) -> (Vec<Arc<Frame>>, Subscription) {
        let (id, earlier) = {
            let mut core = lock(&self.core);
            // An `all` client starts with the newest frame (if the run has one), else the next published.
            let first = match core.hub.newest() {
                Some(f) => f.seq,
                None => core.hub.published(),
            };
            let earlier = match (since_us, &core.pre_roll) {
                (Some(t), Some(p)) => p.between(t, first),
                _ => Vec::new(),
            };
            (core.hub.join(meta.policy), earlier)
        };
        // A new lockstep member may have started a round: wake waiters either way (cheap, rare).
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        let entry = Arc::new(ClientEntry {
            id,
            addr: meta.addr,
            policy: meta.policy,
            fps_cap: meta.fps_cap,
            since: SystemTime::now(),
            user_agent: meta.user_agent,
            frames_sent: AtomicU64::new(0),
            frames_skipped: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            evicted: meta.stop,
        });
        lock(&self.clients).insert(id, entry.clone());
        let sub = Subscription {
            hub: self.clone(),
            entry,
            changed: self.changed.subscribe(),
            decided: false,
            woken: false,
            _watch: self.watch(),
        };
        (earlier, sub)
    }

    /// Counts the caller as someone who wants frames until the guard drops (on-demand sources capture only
    /// while someone does).
    pub fn watch(self: &Arc<Self>) -> WatchGuard {
        self.watchers.send_modify(|n| *n += 1);
        WatchGuard { hub: self.clone() }
    }

    /// A receiver of the number of watchers.
    pub fn watchers(&self) -> watch::Receiver<usize> {
        self.watchers.subscribe()
    }

    /// A receiver that changes whenever a frame is published.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Updates the source's status.
    pub fn update_source(&self, f: impl FnOnce(&mut SourceStatus)) {
        f(&mut lock(&self.source));
    }

    /// The source's status.
    pub fn source(&self) -> SourceStatus {
        lock(&self.source).clone()
    }

    /// Frames published per second, over the last two seconds.
    pub fn measured_fps(&self) -> f64 {
        let recent = lock(&self.recent);
        let now = Instant::now();
        let window: Vec<&Instant> = recent
            .iter()
            .filter(|t| now.duration_since(**t) <= Duration::from_secs(2))
            .collect();
        match (window.first(), window.last()) {
            // Intervals between the frames seen, so a source that started a moment ago is not
            // under-counted; a source that stopped drops out of the window.
            (Some(first), Some(last)) if window.len() >= 2 => {
                let span = last.duration_since(**first).as_secs_f64();
                let since_last = now.duration_since(**last).as_secs_f64();
                (window.len() - 1) as f64 / span.max(since_last).max(1e-6)
            }
            _ => 0.0,
        }
    }

    /// The source delivered a frame (counted before it is checked: whole JPEG, size), once per frame
    /// whatever the number of clients.
    pub fn count_captured(&self) {
        self.captured.fetch_add(1, Ordering::Relaxed);
    }

    /// Frames the source delivered so far: those published plus those dropped (the "no signal" frames
    /// are published but never captured).
    pub fn frames_captured(&self) -> u64 {
        self.captured.load(Ordering::Relaxed)
    }

    /// Per policy (in [`Policy::ALL`] order): the clients connected now, and what every client, connected
    /// or gone, was sent. Monotonic: a leaving client's counters are folded into the departed totals under
    /// the same lock that removes it.
    pub fn sent_totals(&self) -> [SentTotals; 3] {
        let clients = lock(&self.clients);
        let mut out = [SentTotals::default(); 3];
        for (t, d) in out.iter_mut().zip(&self.departed) {
            t.frames = d.frames.load(Ordering::Relaxed);
            t.bytes = d.bytes.load(Ordering::Relaxed);
            t.skipped = d.skipped.load(Ordering::Relaxed);
        }
        for e in clients.values() {
            let t = &mut out[e.policy.index()];
            t.clients += 1;
            t.frames += e.frames_sent.load(Ordering::Relaxed);
            t.bytes += e.bytes_sent.load(Ordering::Relaxed);
            t.skipped += e.frames_skipped.load(Ordering::Relaxed);
        }
        out
    }

    /// Hub counters.
    pub fn stats(&self) -> HubStats {
        lock(&self.core).hub.stats()
    }

    /// Every connected stream client with its position.
    pub fn clients(&self) -> Vec<(Arc<ClientEntry>, Option<ClientPosition>)> {
        let entries: Vec<Arc<ClientEntry>> = lock(&self.clients).values().cloned().collect();
        let core = lock(&self.core);
        let core = &core.hub;
        let mut out: Vec<_> = entries
            .into_iter()
            .map(|e| {
                let pos = core.position(e.id);
                (e, pos)
            })
            .collect();
        out.sort_by_key(|(e, _)| e.id);
        out
    }

    /// A page of the connected stream clients in id order (from `offset`, at most `limit`) with their
    /// positions, and how many there are in all: the positions are looked up for the page only.
    pub fn clients_page(&self, offset: usize, limit: usize) -> (usize, Vec<ListedClient>) {
        let mut entries: Vec<Arc<ClientEntry>> = lock(&self.clients).values().cloned().collect();
        let total = entries.len();
        entries.sort_by_key(|e| e.id);
        let core = lock(&self.core);
        let page = entries
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|e| {
                let pos = core.hub.position(e.id);
                (e, pos)
            })
            .collect();
        (total, page)
    }

    /// Number of connected stream clients.
    pub fn client_count(&self) -> usize {
        lock(&self.clients).len()
    }
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// Keeps a hub's watcher count up while alive.
pub struct WatchGuard {
    hub: Arc<SharedHub>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.hub.watchers.send_modify(|n| *n -= 1);
    }
}

/// One stream client's place in a hub. Dropping it leaves the hub.
pub struct Subscription {
    hub: Arc<SharedHub>,
    entry: Arc<ClientEntry>,
    changed: watch::Receiver<u64>,
    /// The hub has decided for this client at least once (under the version `changed` marks seen).
    decided: bool,
    /// [`Subscription::changed_since_last`] saw the change (and so marked it seen): the next decision must
    /// not wait for another.
    woken: bool,
    _watch: WatchGuard,
}

impl Subscription {
    /// This client's entry (id, counters, eviction token).
    pub fn entry(&self) -> &Arc<ClientEntry> {
        &self.entry
    }

    /// Waits for the next frame this client's policy gives it. Errs when the hub evicted the client.
    pub async fn next(&mut self) -> Result<Arc<Frame>, EvictCause> {
        self.next_delivery().await.map(|d| d.frame)
    }

    /// For a latest client that has had its frame: waits until the hub has changed since (a frame was
    /// published, or someone evicted), without taking anything. The stream writer waits here before it
    /// looks at a client's send queue, so the queue drains while the next frame is being captured
    /// instead of being polled for meanwhile. Returns at once for the other policies and before the first
    /// frame.
    pub async fn changed_since_last(&mut self) {
        if self.entry.policy == Policy::Latest
            && self.decided
            && !self.woken
            && !self.changed.has_changed().unwrap_or(true)
        {
            if self.changed.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            // changed() marked the version seen: without this the next decision would wait for the
            // publish after this one, and the client would get every other frame.
            self.woken = true;
        }
    }

    /// Waits for the next frame this client's policy gives it, with its shared part if it has one. Errs
    /// when the hub evicted the client.
    pub async fn next_delivery(&mut self) -> Result<Delivery, EvictCause> {
        // A latest client's last decision, made under the version it had marked seen, handed it the newest
        // frame (or nothing): while the version has not moved since, nothing has been published or evicted,
        // so the answer would be the same. Wait without asking the hub (no lock, no lookup).
        if self.entry.policy == Policy::Latest
            && self.decided
            && !std::mem::take(&mut self.woken)
            && !self.changed.has_changed().unwrap_or(true)
            && self.changed.changed().await.is_err()
        {
            std::future::pending::<()>().await;
        }
        self.decided = true;
        loop {
            // Mark the current version seen before deciding, so a publish after the decision wakes us.
            // (mark_unchanged reads the version alone; borrow_and_update would also take the value's
            // read lock, a shared cache line every client touches every frame.)
            self.changed.mark_unchanged();
            let next = {
                let mut core = lock(&self.hub.core);
                match core.hub.next(self.entry.id) {
                    Next::Frame { frame, skipped } => {
                        let part = core
                            .parts
                            .iter()
                            .rev()
                            .find(|p| p.seq == frame.seq)
                            .cloned();
                        Ok((Delivery { frame, part }, skipped))
                    }
                    Next::Evicted(cause) => Err(Some(cause)),
                    Next::Wait => Err(None),
                }
            };
            match next {
                Ok((delivery, skipped)) => {
                    if skipped > 0 {
                        self.entry
                            .frames_skipped
                            .fetch_add(skipped, Ordering::Relaxed);
                    }
                    return Ok(delivery);
                }
                Err(Some(cause)) => return Err(cause),
                Err(None) => {
                    if self.changed.changed().await.is_err() {
                        // The hub is gone: nothing more will come. Wait forever; the caller's shutdown ends us.
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }

    /// The next frame this client's policy gives it now, without waiting: `None` if there is none yet.
    /// Errs when the hub evicted the client.
    pub fn try_next(&mut self) -> Option<Result<Arc<Frame>, EvictCause>> {
        let next = lock(&self.hub.core).hub.next(self.entry.id);
        match next {
            Next::Frame { frame, skipped } => {
                if skipped > 0 {
                    self.entry
                        .frames_skipped
                        .fetch_add(skipped, Ordering::Relaxed);
                }
                Some(Ok(frame))
            }
            Next::Evicted(cause) => Some(Err(cause)),
            Next::Wait => None,
        }
    }

    /// The frame last handed out has been written in full (`bytes` on the wire).
    pub fn sent(&self, bytes: usize) {
        self.entry.frames_sent.fetch_add(1, Ordering::Relaxed);
        self.entry
            .bytes_sent
            .fetch_add(bytes as u64, Ordering::Relaxed);
        // Only a lockstep client's send can complete a round; the others need not take the lock.
        if self.entry.policy == Policy::Lockstep && lock(&self.hub.core).hub.sent(self.entry.id) {
            self.hub.changed.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// The caller gives up on this client for `cause` (e.g. the lockstep timeout); frees whatever it held
    /// the others back with.
    pub fn evict(&self, cause: EvictCause) {
        lock(&self.hub.core).hub.evict(self.entry.id, cause);
        self.hub.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        lock(&self.hub.core).hub.leave(self.entry.id);
        {
            let mut clients = lock(&self.hub.clients);
            clients.remove(&self.entry.id);
            let (e, d) = (&self.entry, &self.hub.departed[self.entry.policy.index()]);
            d.frames
                .fetch_add(e.frames_sent.load(Ordering::Relaxed), Ordering::Relaxed);
            d.bytes
                .fetch_add(e.bytes_sent.load(Ordering::Relaxed), Ordering::Relaxed);
            d.skipped
                .fetch_add(e.frames_skipped.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        // Leaving may complete a lockstep round.
        if self.entry.policy == Policy::Lockstep {
            self.hub.changed.send_modify(|v| *v = v.wrapping_add(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(policy: Policy) -> ClientMeta {
        ClientMeta {
            addr: "127.0.0.1:1".parse().unwrap(),
            policy,
            fps_cap: None,
            user_agent: String::new(),
            stop: CancellationToken::new(),
        }
    }

    #[tokio::test]
    async fn a_waiting_client_wakes_on_publish_and_leaves_on_drop() {
        let hub = SharedHub::new(HubConfig::default(), SourceStatus::default());
        let mut sub = hub.subscribe(meta(Policy::Latest));
        assert_eq!(*hub.watchers().borrow(), 1);
        let waiter = tokio::spawn(async move {
            let f = sub.next().await.unwrap();
            (f.seq, sub)
        });
        tokio::task::yield_now().await;
        hub.publish(Bytes::from_static(b"x"), SystemTime::now());
        let (seq, sub) = waiter.await.unwrap();
        assert_eq!(seq, 0);
        assert_eq!(hub.client_count(), 1);
        drop(sub);
        assert_eq!(hub.client_count(), 0);
        assert_eq!(*hub.watchers().borrow(), 0);
    }

    /// Polls `f` once: Some(output) if it is ready now.
    async fn ready_now<F: std::future::Future>(f: F) -> Option<F::Output> {
        let mut f = std::pin::pin!(f);
        std::future::poll_fn(|cx| match f.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
            std::task::Poll::Pending => std::task::Poll::Ready(None),
        })
        .await
    }

    /// A latest client that waited for the next frame without taking it (the stream writer, while its
    /// queue drains) takes that very frame next, at once: not the one after it.
    #[tokio::test]
    async fn a_latest_client_woken_by_a_publish_takes_that_frame_without_waiting_again() {
        let hub = SharedHub::new(HubConfig::default(), SourceStatus::default());
        let mut sub = hub.subscribe(meta(Policy::Latest));
        hub.publish(Bytes::from_static(b"a"), SystemTime::now());
        assert_eq!(sub.next().await.unwrap().seq, 0);
        {
            let mut waiting = std::pin::pin!(sub.changed_since_last());
            assert!(
                ready_now(waiting.as_mut()).await.is_none(),
                "nothing new yet"
            );
            hub.publish(Bytes::from_static(b"b"), SystemTime::now());
            assert!(ready_now(waiting.as_mut()).await.is_some());
        }
        let next = ready_now(sub.next_delivery()).await;
        assert_eq!(next.map(|d| d.unwrap().frame.seq), Some(1));
        // And then it waits for the next publish as before.
        assert!(ready_now(sub.next_delivery()).await.is_none());
        assert!(ready_now(sub.changed_since_last()).await.is_none());
        hub.publish(Bytes::from_static(b"c"), SystemTime::now());
        assert_eq!(sub.next().await.unwrap().seq, 2);
    }

    #[test]
    fn sent_totals_keep_what_departed_clients_were_sent() {
        let hub = SharedHub::new(HubConfig::default(), SourceStatus::default());
        let a = hub.subscribe(meta(Policy::All));
        let b = hub.subscribe(meta(Policy::All));
        let c = hub.subscribe(meta(Policy::Latest));
        a.sent(100);
        a.sent(50);
        b.sent(10);
        c.sent(7);
        let before = hub.sent_totals();
        assert_eq!(before[Policy::All.index()].clients, 2);
        assert_eq!(before[Policy::All.index()].frames, 3);
        assert_eq!(before[Policy::All.index()].bytes, 160);
        assert_eq!(before[Policy::Latest.index()].bytes, 7);
        drop(a);
        let after = hub.sent_totals();
        assert_eq!(after[Policy::All.index()].clients, 1);
        assert_eq!(
            after[Policy::All.index()].frames,
            3,
            "a's frames stay counted"
        );
        assert_eq!(after[Policy::All.index()].bytes, 160);
        drop((b, c));
        let gone = hub.sent_totals();
        assert_eq!(gone[Policy::All.index()].clients, 0);
        assert_eq!(gone[Policy::All.index()].bytes, 160);
        assert_eq!(gone[Policy::Latest.index()].frames, 1);
        assert_eq!(gone[Policy::Lockstep.index()], SentTotals::default());
    }
}
