//! When each frame of a replay is sent: the pacing of `/recordings/FILE/stream`, as pure arithmetic.
//!
//! A replay sends a recording's frames at the pace they were captured, scaled by `?speed=`: a frame
//! recorded `d` after the first one is due `d / speed` after the replay started. `?fps=` caps the frames
//! sent per second of the replay (as it caps a live stream): a frame due less than `1/fps` after the last
//! one sent is skipped. A recording with a hole in it (the recorder stopped, a source that went silent)
//! is not replayed as a long wait: the replay waits at most [`MAX_WAIT_US`] between two frames and goes on
//! from there. A timelapse is played as a movie instead: [`Pace::at_rate`] sends its frames a fixed
//! `?rate=` a second, whatever their capture spacing (ten seconds apart, or a hole of a day). No clock here: the caller passes media times and gets the wall-clock offsets (in µs since
//! the replay started) at which to send.

/// The longest wait between two frames of a replay, in microseconds of the replay's time.
pub const MAX_WAIT_US: u64 = 2_000_000;

/// How early a frame may be and still count as on time for the fps cap: the recording's precision.
const TOLERANCE_US: u64 = 1_000;

/// Replay speeds accepted: half to sixteen times the recorded pace.
pub const MIN_SPEED: f64 = 0.5;
pub const MAX_SPEED: f64 = 16.0;

/// Playback rates accepted by [`Pace::at_rate`], in frames a second.
pub const MIN_RATE: f64 = 0.1;
pub const MAX_RATE: f64 = 120.0;

/// How a replay is paced, as asked for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Playback {
    /// At the recorded pace times this speed ([`MIN_SPEED`] to [`MAX_SPEED`]): `?speed=`, 1 when neither
    /// is given.
    Recorded { speed: f64 },
    /// This many frames a second whatever their capture spacing, as a movie plays a timelapse: `?rate=`.
    Rate(f64),
}

/// The schedule of one replay.
#[derive(Clone, Debug)]
pub struct Pace {
    speed: f64,
    /// At a fixed rate: the gap between two frames looked at, in µs, whatever their media times.
    rate_gap_us: Option<u64>,
    /// The shortest gap between two frames sent, in µs (from `?fps=`).
    min_gap_us: Option<u64>,
    /// The media time and due time of the previous frame looked at, if any.
    previous: Option<(u64, u64)>,
    /// The due time of the last frame sent.
    last_sent: Option<u64>,
}

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Send it this many µs after the replay started.
    At(u64),
    /// Skip it: it comes too soon after the last one sent for the fps cap.
    Skip,
}

impl Pace {
    /// A schedule at `speed` (clamped to [`MIN_SPEED`]..=[`MAX_SPEED`]) with at most `fps_cap` frames a
    /// second (a cap that is not a positive number is none).
    pub fn new(speed: f64, fps_cap: Option<f64>) -> Pace {
        let speed = if speed.is_finite() {
            speed.clamp(MIN_SPEED, MAX_SPEED)
        } else {
            1.0
        };
        Pace {
            speed,
            rate_gap_us: None,
            min_gap_us: fps_cap
                .filter(|f| f.is_finite() && *f > 0.0)
                .map(|f| (1e6 / f).min(u64::MAX as f64) as u64),
            previous: None,
            last_sent: None,
        }
    }

    /// The schedule `playback` asks for, with at most `fps_cap` frames a second.
    pub fn of(playback: Playback, fps_cap: Option<f64>) -> Pace {
        match playback {
            Playback::Recorded { speed } => Pace::new(speed, fps_cap),
            Playback::Rate(rate) => Pace::at_rate(rate, fps_cap),
        }
    }

    /// A schedule that plays the frames `rate` a second (clamped to [`MIN_RATE`]..=[`MAX_RATE`]; not a
    /// number: 1) whatever their media times, as a movie plays a timelapse, with at most `fps_cap` a second.
    pub fn at_rate(rate: f64, fps_cap: Option<f64>) -> Pace {
        let rate = if rate.is_finite() {
            rate.clamp(MIN_RATE, MAX_RATE)
        } else {
            1.0
        };
        Pace {
            rate_gap_us: Some((1e6 / rate) as u64),
            ..Pace::new(1.0, fps_cap)
        }
    }

    /// The slot of the next frame, recorded at `media_us` (frames come in file order; a time before the
    /// previous one's counts as the previous one's).
    pub fn next(&mut self, media_us: u64) -> Slot {
        let due = match self.previous {
            None => 0,
            Some((_, due)) if self.rate_gap_us.is_some() => {
                due.saturating_add(self.rate_gap_us.unwrap_or_default())
            }
            Some((media, due)) => {
                let step = media_us.saturating_sub(media) as f64 / self.speed;
                due.saturating_add((step as u64).min(MAX_WAIT_US))
            }
        };
        self.previous = Some((media_us.max(self.previous.map_or(0, |p| p.0)), due));
        if let (Some(gap), Some(last)) = (self.min_gap_us, self.last_sent) {
            // Within a millisecond (the recording's precision) counts as on time.
            if due.saturating_add(TOLERANCE_US) < last.saturating_add(gap) {
                return Slot::Skip;
            }
        }
        self.last_sent = Some(due);
        Slot::At(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn slots(p: &mut Pace, media: &[u64]) -> Vec<Slot> {
        media.iter().map(|&m| p.next(m)).collect()
    }

    #[test]
    fn frames_are_due_at_their_recorded_pace_scaled_by_the_speed() {
        let media = [5_000_000, 5_100_000, 5_200_000, 5_300_000];
        let at = |v: &[u64]| v.iter().map(|&x| Slot::At(x)).collect::<Vec<_>>();
        assert_eq!(
            slots(&mut Pace::new(1.0, None), &media),
            at(&[0, 100_000, 200_000, 300_000])
        );
        assert_eq!(
            slots(&mut Pace::new(2.0, None), &media),
            at(&[0, 50_000, 100_000, 150_000])
        );
        assert_eq!(
            slots(&mut Pace::new(0.5, None), &media),
            at(&[0, 200_000, 400_000, 600_000])
        );
        // Out of range or not a number: clamped, or the recorded pace.
        assert_eq!(
            slots(&mut Pace::new(100.0, None), &media[..2]),
            at(&[0, 6_250])
        );
        assert_eq!(
            slots(&mut Pace::new(f64::NAN, None), &media[..2]),
            at(&[0, 100_000])
        );
    }

    #[test]
    fn a_hole_in_the_recording_is_a_bounded_wait() {
        let mut p = Pace::new(1.0, None);
        assert_eq!(
            slots(&mut p, &[0, 100_000, 3_600_000_000, 3_600_100_000]),
            [
                Slot::At(0),
                Slot::At(100_000),
                Slot::At(100_000 + MAX_WAIT_US),
                Slot::At(200_000 + MAX_WAIT_US)
            ]
        );
        // Backwards times wait nothing.
        assert_eq!(
            slots(&mut Pace::new(1.0, None), &[500, 100]),
            [Slot::At(0), Slot::At(0)]
        );
    }

    #[test]
    fn the_fps_cap_skips_frames_that_come_too_soon() {
        // 30 fps recorded, 10 fps asked: every third frame.
        let media: Vec<u64> = (0..9).map(|k| k * 33_333).collect();
        let sent: Vec<usize> = slots(&mut Pace::new(1.0, Some(10.0)), &media)
            .iter()
            .enumerate()
            .filter(|(_, s)| **s != Slot::Skip)
            .map(|(k, _)| k)
            .collect();
        assert_eq!(sent, [0, 3, 6]);
    }

    #[test]
    fn at_a_rate_frames_are_evenly_spaced_whatever_their_capture_times() {
        // A timelapse: one frame per 10 s, with a hole of an hour; at 30 a second.
        let media = [0, 10_000_000, 20_000_000, 3_620_000_000, 3_630_000_000];
        assert_eq!(
            slots(&mut Pace::at_rate(30.0, None), &media),
            [0, 33_333, 66_666, 99_999, 133_332].map(Slot::At)
        );
        // Clamped; not a number: one a second; the fps cap still applies.
        assert_eq!(
            slots(&mut Pace::at_rate(1000.0, None), &media[..2]),
            [Slot::At(0), Slot::At(8_333)]
        );
        assert_eq!(
            slots(&mut Pace::at_rate(f64::NAN, None), &media[..2]),
            [Slot::At(0), Slot::At(1_000_000)]
        );
        assert_eq!(
            slots(&mut Pace::at_rate(30.0, Some(10.0)), &media[..4]),
            [Slot::At(0), Slot::Skip, Slot::Skip, Slot::At(99_999)]
        );
    }

    proptest! {
        #[test]
        fn due_times_never_go_backwards_and_respect_the_cap(
            steps in proptest::collection::vec(0u64..5_000_000, 1..200),
            speed in 0.1f64..40.0,
            fps in proptest::option::of(0.5f64..120.0),
        ) {
            let mut p = Pace::new(speed, fps);
            let mut media = 0u64;
            let mut last: Option<u64> = None;
            for s in steps {
                media += s;
                if let Slot::At(due) = p.next(media) {
                    if let Some(l) = last {
                        prop_assert!(due >= l);
                        prop_assert!(due - l <= MAX_WAIT_US * 200);
                        if let Some(f) = fps {
                            prop_assert!((due - l) as f64 >= (1e6 / f).floor() - 1001.0);
                        }
                    }
                    last = Some(due);
                }
            }
        }
    }
}
