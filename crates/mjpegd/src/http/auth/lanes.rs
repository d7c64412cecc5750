//! The waiting room in front of password checks: a bounded, fair queue with a deadline.
//!
//! A bcrypt check costs tens to hundreds of milliseconds of CPU, so only [`Gate::slots`] run at once. What
//! waits for a slot must not decide who gets in: with one shared first-come queue, a flood of wrong
//! passwords from one address made a real user's first login wait over a minute. So every client address
//! has its own lane, capped at a few waiting checks; free slots go round-robin between the lanes, so a
//! newcomer from another address waits for at most one check per busy address, not for the whole flood.
//! The queue as a whole is capped too, and a waiting check has a deadline: past either, the request is
//! answered at once ([`Busy`]) instead of being left hanging.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Why a check was not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Busy {
    /// This address already has its share of waiting checks.
    AddressFull,
    /// The whole queue is full.
    QueueFull,
    /// The check waited past its deadline.
    Deadline,
}

/// Waiting items, one FIFO lane per address, served round-robin between addresses. No I/O, no clock.
#[derive(Debug)]
pub struct Lanes<T> {
    per_address: usize,
    total: usize,
    lanes: HashMap<IpAddr, VecDeque<(u64, T)>>,
    /// Addresses with something waiting, in the order they will be served.
    turns: VecDeque<IpAddr>,
    len: usize,
}

impl<T> Lanes<T> {
    /// Lanes that hold at most `per_address` items per address and `total` in all.
    pub fn new(per_address: usize, total: usize) -> Lanes<T> {
        Lanes {
            per_address,
            total,
            lanes: HashMap::new(),
            turns: VecDeque::new(),
            len: 0,
        }
    }

    /// Items waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `item` (known by `id`) at the back of `ip`'s lane, or says which cap refuses it.
    pub fn push(&mut self, ip: IpAddr, id: u64, item: T) -> Result<(), Busy> {
        if self.len >= self.total {
            return Err(Busy::QueueFull);
        }
        let lane = self.lanes.entry(ip).or_default();
        if lane.len() >= self.per_address {
            return Err(Busy::AddressFull);
        }
        if lane.is_empty() {
            self.turns.push_back(ip);
        }
        lane.push_back((id, item));
        self.len += 1;
        Ok(())
    }

    /// Takes the oldest item of the address whose turn it is; that address goes to the back of the turns.
    pub fn pop(&mut self) -> Option<T> {
        let ip = self.turns.pop_front()?;
        let lane = self
            .lanes
            .get_mut(&ip)
            .expect("an address in turn has a lane");
        let (_, item) = lane.pop_front().expect("an address in turn has items");
        if lane.is_empty() {
            self.lanes.remove(&ip);
        } else {
            self.turns.push_back(ip);
        }
        self.len -= 1;
        Some(item)
    }

    /// Takes item `id` out of `ip`'s lane (it gave up waiting), if it is still there.
    pub fn remove(&mut self, ip: IpAddr, id: u64) -> Option<T> {
        let lane = self.lanes.get_mut(&ip)?;
        let at = lane.iter().position(|(i, _)| *i == id)?;
        let (_, item) = lane.remove(at).expect("position is in the lane");
        if lane.is_empty() {
            self.lanes.remove(&ip);
            self.turns.retain(|t| *t != ip);
        }
        self.len -= 1;
        Some(item)
    }
}

#[derive(Debug)]
struct State {
    running: usize,
    next_id: u64,
    waiting: Lanes<oneshot::Sender<()>>,
}

/// Runs blocking checks, at most `slots` at once, the others waiting in fair [`Lanes`] until a deadline.
#[derive(Debug)]
pub struct Gate {
    slots: usize,
    deadline: Duration,
    state: Mutex<State>,
}

/// A running check's slot; dropping it hands the slot to the next waiter, or frees it.
struct Slot(Arc<Gate>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A place in the lanes; leaving it (deadline, or the connection went away) gives back a slot that was
/// handed over in the meantime.
struct Ticket<'a> {
    gate: &'a Gate,
    ip: IpAddr,
    id: u64,
    rx: oneshot::Receiver<()>,
    granted: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.granted {
            return;
        }
        let mut state = self.gate.state.lock().unwrap();
        if state.waiting.remove(self.ip, self.id).is_none() && self.rx.try_recv().is_ok() {
            // The slot came just as we stopped waiting: pass it on.
            drop(state);
            self.gate.release();
        }
    }
}

impl Gate {
    /// A gate running `slots` checks at once, with at most `per_address` waiting per client address and
    /// `total` in all, each waiting at most `deadline`.
    pub fn new(slots: usize, per_address: usize, total: usize, deadline: Duration) -> Arc<Gate> {
        Arc::new(Gate {
            slots: slots.max(1),
            deadline,
            state: Mutex::new(State {
                running: 0,
                next_id: 0,
                waiting: Lanes::new(per_address, total),
            }),
        })
    }

    /// Checks running now.
    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.state.lock().unwrap().running
    }

    /// Checks waiting now.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.state.lock().unwrap().waiting.len()
    }

    /// Hands a slot to the next waiter, or frees it.
    fn release(&self) {
        let mut state = self.state.lock().unwrap();
        while let Some(next) = state.waiting.pop() {
            if next.send(()).is_ok() {
                return;
            }
        }
        state.running -= 1;
    }

    /// Runs `check` on the blocking pool once a slot is free (for `ip`, in its lane), or says why not.
    /// The slot is held until `check` returns, even if the caller stops waiting for it.
    pub async fn run<R: Send + 'static>(
        self: &Arc<Gate>,
        ip: IpAddr,
        check: impl FnOnce() -> R + Send + 'static,
    ) -> Result<Option<R>, Busy> {
        let ticket = {
            let mut state = self.state.lock().unwrap();
            if state.running < self.slots && state.waiting.is_empty() {
                state.running += 1;
                None
            } else {
                let (tx, rx) = oneshot::channel();
                let id = state.next_id;
                state.next_id += 1;
                state.waiting.push(ip, id, tx)?;
                Some(Ticket {
                    gate: self,
                    ip,
                    id,
                    rx,
                    granted: false,
                })
            }
        };
        if let Some(mut ticket) = ticket {
            match tokio::time::timeout(self.deadline, &mut ticket.rx).await {
                Ok(Ok(())) => ticket.granted = true,
                // (The sender is only dropped unsent when the gate itself goes away.)
                Ok(Err(_)) => return Err(Busy::QueueFull),
                Err(_) => return Err(Busy::Deadline),
            }
        }
        let slot = Slot(self.clone());
        let done = tokio::task::spawn_blocking(move || {
            let result = check();
            drop(slot);
            result
        })
        .await;
        // A check that panicked answers None.
        Ok(done.ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn lanes_take_turns_between_addresses_and_keep_order_within_one() {
        let mut lanes = Lanes::new(10, 100);
        for (id, (addr, item)) in [(1, "a1"), (1, "a2"), (1, "a3"), (2, "b1"), (3, "c1")]
            .into_iter()
            .enumerate()
        {
            lanes.push(ip(addr), id as u64, item).unwrap();
        }
        lanes.push(ip(2), 9, "b2").unwrap();
        let order: Vec<_> = std::iter::from_fn(|| lanes.pop()).collect();
        assert_eq!(order, ["a1", "b1", "c1", "a2", "b2", "a3"]);
        assert!(lanes.is_empty());
        assert!(
            lanes.lanes.is_empty() && lanes.turns.is_empty(),
            "nothing kept"
        );
    }

    #[test]
    fn lanes_refuse_past_their_caps_and_let_waiters_leave() {
        let mut lanes = Lanes::new(2, 3);
        lanes.push(ip(1), 0, 'a').unwrap();
        lanes.push(ip(1), 1, 'b').unwrap();
        assert_eq!(lanes.push(ip(1), 2, 'x'), Err(Busy::AddressFull));
        lanes.push(ip(2), 3, 'c').unwrap();
        assert_eq!(lanes.push(ip(3), 4, 'x'), Err(Busy::QueueFull));
        assert_eq!(lanes.len(), 3);
        // Leaving: the item is gone; a lane left empty loses its turn.
        assert_eq!(lanes.remove(ip(1), 0), Some('a'));
        assert_eq!(lanes.remove(ip(1), 0), None);
        assert_eq!(lanes.remove(ip(2), 3), Some('c'));
        assert_eq!(lanes.remove(ip(9), 3), None);
        assert_eq!(lanes.turns, [ip(1)]);
        lanes.push(ip(3), 5, 'd').unwrap();
        assert_eq!(lanes.pop(), Some('b'));
        assert_eq!(lanes.pop(), Some('d'));
        assert_eq!(lanes.pop(), None);
        assert!(lanes.lanes.is_empty() && lanes.turns.is_empty());
    }

    /// Waits (briefly) until `n` checks wait at the gate.
    async fn until_waiting(gate: &Gate, n: usize) {
        let t = Instant::now();
        while gate.waiting() != n {
            assert!(t.elapsed() < Duration::from_secs(5), "{n} waiting");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_gate_serves_addresses_in_turn_and_answers_the_excess_at_once() {
        let gate = Gate::new(1, 2, 4, Duration::from_secs(10));
        let order = Arc::new(Mutex::new(Vec::new()));
        let (open, hold) = std::sync::mpsc::channel::<()>();
        let first = tokio::spawn({
            let gate = gate.clone();
            async move { gate.run(ip(1), move || hold.recv().is_ok()).await }
        });
        until_waiting(&gate, 0).await;
        while gate.running() != 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut queued = Vec::new();
        let started = Instant::now();
        for (n, (addr, label)) in [(1, "a1"), (1, "a2"), (2, "b1"), (0, ""), (2, "b2")]
            .into_iter()
            .enumerate()
        {
            if addr == 0 {
                // Address 1 has its two waiting: a third is refused.
                assert_eq!(gate.run(ip(1), || ()).await, Err(Busy::AddressFull));
                continue;
            }
            let (g, order) = (gate.clone(), order.clone());
            queued.push(tokio::spawn(async move {
                g.run(ip(addr), move || order.lock().unwrap().push(label))
                    .await
            }));
            until_waiting(&gate, n.min(3) + 1).await;
        }
        assert_eq!(gate.run(ip(3), || ()).await, Err(Busy::QueueFull));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "refused at once"
        );
        open.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(Some(true)));
        for q in queued {
            assert_eq!(q.await.unwrap(), Ok(Some(())));
        }
        assert_eq!(*order.lock().unwrap(), ["a1", "b1", "a2", "b2"]);
        assert_eq!((gate.running(), gate.waiting()), (0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_check_gives_up_at_its_deadline_and_no_slot_leaks() {
        let gate = Gate::new(1, 4, 8, Duration::from_millis(200));
        let slow = tokio::spawn({
            let gate = gate.clone();
            async move {
                gate.run(ip(1), || std::thread::sleep(Duration::from_millis(1500)))
                    .await
            }
        });
        while gate.running() != 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = Instant::now();
        assert_eq!(gate.run(ip(2), || ()).await, Err(Busy::Deadline));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(150) && waited < Duration::from_millis(1200),
            "gave up at the deadline, not when the slot came free: {waited:?}"
        );
        assert_eq!(gate.waiting(), 0, "the lane was left");
        // A waiter dropped by its caller (the connection went away) leaves its lane too.
        let gone = tokio::spawn({
            let gate = gate.clone();
            async move { gate.run(ip(3), || ()).await }
        });
        until_waiting(&gate, 1).await;
        gone.abort();
        until_waiting(&gate, 0).await;
        assert_eq!(slow.await.unwrap(), Ok(Some(())));
        assert_eq!((gate.running(), gate.waiting()), (0, 0));
        assert_eq!(gate.run(ip(2), || 7).await, Ok(Some(7)));
        // A check that panics frees its slot and answers None.
        assert_eq!(gate.run(ip(2), || -> u8 { panic!("boom") }).await, Ok(None));
        assert_eq!(gate.running(), 0);
    }
}
