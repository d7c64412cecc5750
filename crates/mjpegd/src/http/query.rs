//! What picture, and how fresh, a request asks for: `?width=`, `?height=` and `?quality=` on streams and
//! snapshots, `?after=` and `?max_delay=` on snapshots. Read from the query into typed values here, each
//! bad value with the one-line reason its 400 gives; what the values mean against the source (its size,
//! its frames) is decided where they are used. An empty value (`?width=`) counts as not given, as for
//! `?fps=`.

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
}
