//! A frame-rate cap: which of a sender's frames to let through so that, over any stretch of time, no more
//! than `fps` frames per second pass (plus a small burst for network jitter).
//!
//! A pushed camera's pusher is limited this way (`push-max-fps`): a pusher that floods the server gets its
//! frames above the cap dropped (and counted by the caller), while a camera that sends at the cap with
//! uneven network timing loses nothing. It is the generic cell rate algorithm (virtual scheduling): each
//! admitted frame moves a theoretical arrival time on by one interval; a frame that arrives earlier than
//! that time minus the burst tolerance is refused. Times are passed in (nanoseconds from any origin), so
//! it is tested without a clock.

/// Frames let through at once beyond the steady rate, as a fraction of a second of frames (at least 2).
const BURST_SECONDS: f64 = 0.25;

/// The state of one sender's cap.
#[derive(Clone, Debug)]
pub struct RateCap {
    /// Nanoseconds between frames at the cap.
    interval: u64,
    /// How far ahead of schedule a frame may arrive (the burst allowance), in nanoseconds.
    tolerance: u64,
    /// When the next frame is due at the steady rate; `None` before the first.
    due: Option<u64>,
}

impl RateCap {
    /// A cap of `fps` frames per second (clamped to 0.001..=1,000,000).
    pub fn new(fps: f64) -> RateCap {
        let fps = if fps.is_finite() {
            fps.clamp(0.001, 1e6)
        } else {
            1e6
        };
        let interval = (1e9 / fps).round().max(1.0) as u64;
        let burst = (fps * BURST_SECONDS).ceil().max(2.0);
        RateCap {
            interval,
            tolerance: interval.saturating_mul(burst as u64 - 1),
            due: None,
        }
    }

    /// Whether a frame arriving at `now` (nanoseconds, never decreasing) passes; a frame that passes
    /// counts against the cap, one that does not costs nothing.
    pub fn admit(&mut self, now: u64) -> bool {
        let due = self.due.unwrap_or(now);
        if now.saturating_add(self.tolerance) < due {
            return false;
        }
        self.due = Some(due.max(now).saturating_add(self.interval));
        true
    }

    /// The most frames that pass in any stretch of `nanos` nanoseconds.
    pub fn most_in(&self, nanos: u64) -> u64 {
        nanos / self.interval + self.tolerance / self.interval + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_sender_at_the_cap_loses_nothing_even_with_jitter() {
        let mut cap = RateCap::new(10.0);
        // 10 fps for 10 s, each frame up to 80 ms early or late.
        let mut passed = 0;
        for i in 0..100u64 {
            let jitter = [0, 80, 0, 0, 60, 0][i as usize % 6] * 1_000_000;
            let at = (i * SECOND / 10 + 100_000_000).saturating_sub(jitter);
            passed += cap.admit(at) as u32;
        }
        assert_eq!(passed, 100);
    }

    #[test]
    fn a_flood_is_held_to_the_cap() {
        let mut cap = RateCap::new(5.0);
        // 1,000 frames a second for 4 s: 5 a second pass, plus the burst.
        let passed = (0..4000u64)
            .filter(|i| cap.admit(i * SECOND / 1000))
            .count() as u64;
        assert!((20..=20 + 2 + 1).contains(&passed), "{passed}");
        assert!(passed <= cap.most_in(4 * SECOND));
    }

    #[test]
    fn odd_caps_are_clamped() {
        for fps in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e12] {
            let mut cap = RateCap::new(fps);
            assert!(cap.admit(0), "{fps}: the first frame passes");
        }
        // (a cap of 0 is a frame every 1,000 s)
        let mut slow = RateCap::new(0.0);
        assert!(slow.admit(0) && slow.admit(1));
        assert!(!slow.admit(2));
    }

    proptest! {
        /// Whatever the arrivals, no window lets through more than the cap allows, and frames that
        /// arrive no faster than the cap all pass.
        #[test]
        fn never_more_than_the_cap(
            fps in 0.5f64..200.0,
            gaps in proptest::collection::vec(0u64..400_000_000, 1..400),
        ) {
            let mut cap = RateCap::new(fps);
            let mut now = 0;
            let mut passed = Vec::new();
            for gap in &gaps {
                now += gap;
                if cap.admit(now) {
                    passed.push(now);
                }
            }
            for (i, start) in passed.iter().enumerate() {
                for (j, end) in passed.iter().enumerate().skip(i) {
                    let frames = (j - i + 1) as u64;
                    prop_assert!(frames <= cap.most_in(end - start), "{frames} in {} ns", end - start);
                }
            }
            let interval = (1e9 / fps).round() as u64;
            let mut steady = RateCap::new(fps);
            let mut now = 0;
            for gap in &gaps {
                now += gap + interval;
                prop_assert!(steady.admit(now));
            }
        }
    }
}
