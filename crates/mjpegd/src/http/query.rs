//! What picture, and how fresh, a request asks for: `?width=`, `?height=` and `?quality=` on streams and
//! snapshots, `?after=` and `?max_delay=` on snapshots. Read from the query into typed values here, each
//! bad value with the one-line reason its 400 gives; what the values mean against the source (its size,
//! its frames) is decided where they are used. An empty value (`?width=`) counts as not given, as for
//! `?fps=`. A replay's query (`?start=`, `?speed=` or `?rate=`, `?fps=` and a size) and a snapshot's `?at=` (an RFC 3339
//! time or one relative to now, `-2s`) are read here too.

use super::request::Request;
use mjpegd_core::variant::SizeRequest;
use std::time::Duration;

/// The longest `max_delay` accepted (an hour): anything larger would mean "any frame" anyway.
pub const MAX_DELAY_LIMIT_MS: u64 = 3_600_000;

/// A snapshot's query.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotQuery {
    /// `?after=SEQ`: the first frame numbered above SEQ (a long poll).
    pub after: Option<u64>,
    /// `?max_delay=MS`: a frame captured at most this long before the request arrived.
    pub max_delay: Option<Duration>,
    pub size: SizeRequest,
}

/// A query value as it appeared, cut short for an error message.
fn shown(v: &str) -> String {
    v.chars().take(40).collect()
}

fn given<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.param(name).filter(|v| !v.is_empty())
}

/// `?width=`, `?height=`, `?quality=`. Sizes are whole numbers of pixels (their range depends on the
/// source, see [`SizeRequest::resolve`]); quality is 1 to 100.
pub fn size_request(request: &Request) -> Result<SizeRequest, String> {
    let side = |name: &str| -> Result<Option<u32>, String> {
        match given(request, name) {
            None => Ok(None),
            Some(v) => v.parse::<u32>().map(Some).map_err(|_| {
                format!(
                    "{name} must be a whole number of pixels, not {:?}",
                    shown(v)
                )
            }),
        }
    };
    let quality = match given(request, "quality") {
        None => None,
        Some(v) => match v.parse::<u8>() {
            Ok(q) if (1..=100).contains(&q) => Some(q),
            _ => {
                return Err(format!(
                    "quality must be a whole number from 1 to 100, not {:?}",
                    shown(v)
                ))
            }
        },
    };
    Ok(SizeRequest {
        width: side("width")?,
        height: side("height")?,
        quality,
    })
}

/// A snapshot's `?after=`, `?max_delay=` and size.
pub fn snapshot_query(request: &Request) -> Result<SnapshotQuery, String> {
    let after = match given(request, "after") {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            format!(
                "after must be a frame sequence number (0 to 2^64-1), not {:?}",
                shown(v)
            )
        })?),
    };
    let max_delay = match given(request, "max_delay") {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(ms) if ms <= MAX_DELAY_LIMIT_MS => Some(Duration::from_millis(ms)),
            _ => {
                return Err(format!(
                    "max_delay must be a whole number of milliseconds from 0 to {MAX_DELAY_LIMIT_MS}, not {:?}",
                    shown(v)
                ))
            }
        },
    };
    Ok(SnapshotQuery {
        after,
        max_delay,
        size: size_request(request)?,
    })
}

/// The longest `?start=` of a replay: a week of seconds (segments are shorter).
pub const MAX_START_S: f64 = 7.0 * 86_400.0;

pub use mjpegd_core::replay::Playback;

/// A replay's query: `/recordings/FILE/stream?start=&speed=|rate=&fps=&width=&height=&quality=`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReplayQuery {
    /// Where in the segment to start, from its first frame.
    pub start: Duration,
    /// The pace: 0.5 to 16 times the recorded one, or a fixed rate.
    pub playback: Playback,
    /// At most this many frames a second.
    pub fps: Option<f64>,
    pub size: SizeRequest,
}

/// Reads a replay's query.
pub fn replay_query(request: &Request) -> Result<ReplayQuery, String> {
    use mjpegd_core::replay::{MAX_RATE, MAX_SPEED, MIN_RATE, MIN_SPEED};
    let number = |name: &str| -> Result<Option<f64>, String> {
        match given(request, name) {
            None => Ok(None),
            Some(v) => match v.parse::<f64>() {
                Ok(n) if n.is_finite() => Ok(Some(n)),
                _ => Err(format!("{name} must be a number, not {:?}", shown(v))),
            },
        }
    };
    let start = match number("start")? {
        None => Duration::ZERO,
        Some(s) if (0.0..=MAX_START_S).contains(&s) => Duration::from_secs_f64(s),
        Some(s) => {
            return Err(format!(
                "start must be seconds from the segment's beginning, 0 to {MAX_START_S}, not {s}"
            ))
        }
    };
    let speed = match number("speed")? {
        None => 1.0,
        Some(s) if (MIN_SPEED..=MAX_SPEED).contains(&s) => s,
        Some(s) => {
            return Err(format!(
                "speed must be from {MIN_SPEED} to {MAX_SPEED} (times the recorded pace), not {s}"
            ))
        }
    };
    let playback = match (number("rate")?, given(request, "speed")) {
        (None, _) => Playback::Recorded { speed },
        (Some(_), Some(_)) => {
            return Err(
                "give speed= (times the recorded pace) or rate= (frames a second), not both".into(),
            )
        }
        (Some(r), None) if (MIN_RATE..=MAX_RATE).contains(&r) => Playback::Rate(r),
        (Some(r), None) => {
            return Err(format!(
                "rate must be from {MIN_RATE} to {MAX_RATE} frames a second, not {r}"
            ))
        }
    };
    let fps = match number("fps")? {
        None => None,
        Some(f) if f > 0.0 && f <= 1000.0 => Some(f),
        Some(f) => {
            return Err(format!(
                "fps must be a number above 0 and up to 1000, not {f}"
            ))
        }
    };
    Ok(ReplayQuery {
        start,
        playback,
        fps,
        size: size_request(request)?,
    })
}

/// How far past "now" a `?at=` may be and still mean the newest frame (clocks of client and server differ).
pub const AT_FUTURE_TOLERANCE: Duration = Duration::from_secs(2);

/// The longest a relative `?at=` reaches back.
pub const AT_MAX_BACK: Duration = Duration::from_secs(366 * 86_400);

/// A snapshot's `?at=TIME`, against `now`: an RFC 3339 time (`2026-11-24T17:03:12.345Z`, an offset such as
/// `+01:00`, or none: UTC), Unix seconds as `X-Timestamp` writes them (`1795539792.345000`), `now`, or a
/// time relative to now (`-2s`, `-500ms`, `-1m30s`). A time more than [`AT_FUTURE_TOLERANCE`] ahead of
/// `now` is refused.
pub fn parse_at(v: &str, now: std::time::SystemTime) -> Result<std::time::SystemTime, String> {
    use std::time::{SystemTime, UNIX_EPOCH};
    let why = |detail: &str| {
        format!(
            "at: {:?} {detail} (an RFC 3339 time like 2026-11-24T17:03:12Z, Unix seconds, now, or -2s / -500ms before now)",
            shown(v)
        )
    };
    if v.len() > 64 {
        return Err(why("is too long"));
    }
    let t = if v == "now" {
        now
    } else if let Some(back) = v.strip_prefix('-') {
        let d = humantime::parse_duration(back).map_err(|e| why(&e.to_string()))?;
        if d > AT_MAX_BACK {
            return Err(why("reaches back more than a year"));
        }
        now.checked_sub(d).ok_or_else(|| why("is before 1970"))?
    } else if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        // Exactly, as X-Timestamp wrote it (a float would miss the microsecond).
        let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
        let secs: u64 = match whole.parse() {
            Ok(s) if s <= 100_000_000_000 && whole.len() <= 12 => s,
            _ => return Err(why("is out of range")),
        };
        if frac.len() > 9 || frac.contains('.') {
            return Err(why("is not a number of seconds"));
        }
        let nanos: u32 = format!("{frac:0<9}").parse().unwrap_or(0);
        UNIX_EPOCH + Duration::new(secs, nanos)
    } else {
        // An offset (`+01:00`, `-05:00`; a `+` may arrive as a space from a form-encoded query).
        let (stamp, offset) = match v.len().checked_sub(6).map(|i| v.split_at(i)) {
            Some((head, tail)) if head.contains('T') || head.contains(' ') => {
                let b = tail.as_bytes();
                let sign = match b[0] {
                    b'+' | b' ' => Some(1i64),
                    b'-' => Some(-1),
                    _ => None,
                };
                match (
                    sign,
                    b[3] == b':',
                    tail[1..3].parse::<i64>(),
                    tail[4..6].parse::<i64>(),
                ) {
                    (Some(sign), true, Ok(h), Ok(m)) if h < 24 && m < 60 => {
                        (head, sign * (h * 3600 + m * 60))
                    }
                    _ => (v, 0),
                }
            }
            _ => (v, 0),
        };
        let t = humantime::parse_rfc3339_weak(stamp.trim_end_matches(['Z', 'z']))
            .map_err(|e| why(&e.to_string()))?;
        let shift = Duration::from_secs(offset.unsigned_abs());
        let t: Option<SystemTime> = if offset >= 0 {
            t.checked_sub(shift)
        } else {
            t.checked_add(shift)
        };
        t.ok_or_else(|| why("is out of range"))?
    };
    if t > now + AT_FUTURE_TOLERANCE {
        return Err(why("is in the future"));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str) -> Request {
        Request {
            method: "GET".into(),
            path: "/snapshot".into(),
            query: form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            version: 1,
            headers: Vec::new(),
            framing: crate::http::body::Framing::None,
        }
    }

    #[test]
    fn sizes_and_quality_are_read_and_empty_values_are_not_given() {
        let s = size_request(&request("width=320&quality=50&fps=5")).unwrap();
        assert_eq!(
            s,
            SizeRequest {
                width: Some(320),
                height: None,
                quality: Some(50)
            }
        );
        assert!(size_request(&request("width=&height=")).unwrap().is_empty());
        assert!(size_request(&request("timestamp=1")).unwrap().is_empty());
    }

    #[test]
    fn malformed_values_get_a_one_line_reason() {
        for (q, what) in [
            ("width=-5", "width must be a whole number"),
            ("width=abc", "width must be a whole number"),
            ("height=1.5", "height must be a whole number"),
            ("width=99999999999", "width must be a whole number"),
            ("quality=0", "quality must be"),
            ("quality=101", "quality must be"),
            ("quality=high", "quality must be"),
        ] {
            let e = size_request(&request(q)).unwrap_err();
            assert!(e.contains(what) && !e.contains('\n'), "{q}: {e}");
        }
        for (q, what) in [
            ("max_delay=-1", "max_delay must be"),
            ("max_delay=soon", "max_delay must be"),
            ("max_delay=3600001", "max_delay must be"),
            ("after=x", "after must be"),
            ("max_delay=0&width=x", "width must be"),
        ] {
            let e = snapshot_query(&request(q)).unwrap_err();
            assert!(e.contains(what) && !e.contains('\n'), "{q}: {e}");
        }
        let long = format!("width={}", "9".repeat(500));
        assert!(size_request(&request(&long)).unwrap_err().len() < 100);
    }

    #[test]
    fn a_snapshot_query_reads_freshness_and_size() {
        let q = snapshot_query(&request("max_delay=0&after=7&height=180")).unwrap();
        assert_eq!(q.max_delay, Some(Duration::ZERO));
        assert_eq!(q.after, Some(7));
        assert_eq!(q.size.height, Some(180));
        assert_eq!(
            snapshot_query(&request("")).unwrap(),
            SnapshotQuery::default()
        );
    }

    #[test]
    fn a_replay_query_reads_start_speed_fps_and_size_and_refuses_out_of_range() {
        let q = replay_query(&request("start=12.5&speed=2&fps=5&width=320")).unwrap();
        assert_eq!(q.start, Duration::from_millis(12_500));
        assert_eq!(q.playback, Playback::Recorded { speed: 2.0 });
        assert_eq!(q.fps, Some(5.0));
        assert_eq!(q.size.width, Some(320));
        let d = replay_query(&request("")).unwrap();
        assert_eq!(
            (d.start, d.playback, d.fps),
            (Duration::ZERO, Playback::Recorded { speed: 1.0 }, None)
        );
        let r = replay_query(&request("rate=30&fps=10")).unwrap();
        assert_eq!((r.playback, r.fps), (Playback::Rate(30.0), Some(10.0)));
        for (q, what) in [
            ("speed=0.4", "speed must be from 0.5 to 16"),
            ("speed=17", "speed must be from 0.5 to 16"),
            ("speed=fast", "speed must be a number"),
            ("speed=NaN", "speed must be a number"),
            ("start=-1", "start must be"),
            ("start=1e300", "start must be"),
            ("fps=0", "fps must be"),
            ("rate=0", "rate must be from 0.1 to 120"),
            ("rate=121", "rate must be from 0.1 to 120"),
            ("rate=x", "rate must be a number"),
            ("rate=30&speed=2", "not both"),
            ("width=x", "width must be"),
        ] {
            let e = replay_query(&request(q)).unwrap_err();
            assert!(e.contains(what) && !e.contains('\n'), "{q}: {e}");
        }
        assert!(replay_query(&request("speed=0.5")).is_ok());
        assert!(replay_query(&request("speed=16")).is_ok());
    }

    #[test]
    fn at_takes_rfc3339_unix_seconds_and_relative_times() {
        use std::time::{SystemTime, UNIX_EPOCH};
        let now = UNIX_EPOCH + Duration::from_micros(1_795_539_792_345_000);
        let at = |v: &str| {
            parse_at(v, now).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64)
        };
        let ms = 1_795_539_792_345u64;
        assert_eq!(at("now"), Ok(ms));
        assert_eq!(at("-2s"), Ok(ms - 2000));
        assert_eq!(at("-500ms"), Ok(ms - 500));
        assert_eq!(at("-1m 30s"), Ok(ms - 90_000));
        assert_eq!(at("2026-11-24T17:03:12.345Z"), Ok(ms));
        assert_eq!(at("2026-11-24T17:03:10Z"), Ok(ms - 2345));
        assert_eq!(at("2026-11-24T18:03:12.345+01:00"), Ok(ms));
        assert_eq!(at("2026-11-24T18:03:12.345 01:00"), Ok(ms));
        assert_eq!(at("2026-11-24T16:03:12.345-01:00"), Ok(ms));
        assert_eq!(at("1795539792.345"), Ok(ms));
        let exact = parse_at("1795539792.345001", now + Duration::from_secs(1)).unwrap();
        assert_eq!(
            exact.duration_since(UNIX_EPOCH).unwrap().as_micros(),
            1_795_539_792_345_001
        );
        // Within the tolerance ahead of now: accepted (the newest frame); past it, refused.
        assert_eq!(at("2026-11-24T17:03:13Z"), Ok(ms + 655));
        for (bad, why) in [
            ("2026-11-24T17:03:20Z", "in the future"),
            ("+2s", "RFC 3339"),
            ("-2 parsecs", "RFC 3339"),
            ("yesterday", "RFC 3339"),
            ("-400days", "more than a year"),
            ("99999999999999999", "out of range"),
            (&"1".repeat(65), "too long"),
        ] {
            let e = at(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let _ = SystemTime::now();
    }
}
