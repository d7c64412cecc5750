//! The fuzz targets of mjpegd's parsers, as plain functions of one byte slice.
//!
//! The same functions run in two places: under libFuzzer (`fuzz/`, nightly, `bash fuzz/run.sh`), and as an
//! ordinary test on stable (`tests/corpus.rs`) that replays every input kept in `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/`. Each target panics only when an invariant breaks.
//!
//! The request parser is mjpegd's own `src/http/request.rs`, compiled here as a module (it depends on
//! nothing else in mjpegd), so fuzzing it does not build the whole server with instrumentation.

#[path = "../../mjpegd/src/http/request.rs"]
#[allow(dead_code)]
pub mod request;

use bytes::BytesMut;
use mjpegd_core::parse::jpeg::{check, JpegSplitter};
use mjpegd_core::parse::multipart::MultipartParser;
use request::{parse, Limits, RequestError};

/// Splits `data` into chunks whose sizes come from `sizes` (cycled; 0 means 1), as a network would.
fn chunks<'a>(data: &'a [u8], sizes: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = data;
    let mut i = 0;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = sizes
            .get(i % sizes.len().max(1))
            .map_or(rest.len(), |&s| s.max(1) as usize * 7);
        i += 1;
        let (now, later) = rest.split_at(size.min(rest.len()));
        rest = later;
        Some(now)
    })
}

/// Request heads, pipelined: every parsed request is well-formed (origin-form path without NUL; a body
/// only on a method other than GET and HEAD, framed as its headers say), parsing consumes bytes, and the
/// same bytes arriving in pieces give the same requests as arriving at once. Parsing stops at a request
/// with a body (what follows is its body, not a head).
pub fn request(data: &[u8]) {
    let limits = Limits {
        max_head: 2048,
        max_headers: 16,
        ..Limits::default()
    };
    let whole = parse_all(&[data], &limits);
    let split = data.len().min(data.first().copied().unwrap_or(0) as usize);
    let (a, b) = data.split_at(split);
    let pieces = parse_all(&[a, b], &limits);
    assert_eq!(whole, pieces, "chunking changed the requests");
}

fn parse_all(pieces: &[&[u8]], limits: &Limits) -> Vec<Result<request::Request, RequestError>> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match parse(&mut buf, limits) {
                Ok(Some(r)) => {
                    assert!(buf.len() < before, "a parsed request consumes bytes");
                    assert!(r.path.starts_with('/') && !r.path.contains('\0'), "{r:?}");
                    assert!(matches!(r.version, 0 | 1));
                    let chunked = r.headers.iter().any(|(n, _)| n == "transfer-encoding");
                    assert_eq!(chunked, r.framing == request::Framing::Chunked, "{r:?}");
                    assert!(r.headers.iter().all(|(n, _)| *n == n.to_ascii_lowercase()));
                    if r.framing != request::Framing::None {
                        assert!(r.method != "GET" && r.method != "HEAD", "{r:?}");
                        out.push(Ok(r));
                        return out;
                    }
                    out.push(Ok(r));
                }
                Ok(None) => {
                    if buf.len() >= limits.max_head {
                        out.push(Err(RequestError::TooLarge));
                        return out;
                    }
                    break;
                }
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

/// A multipart body (first byte: boundary declared or not, and chunk sizes): every part fits the cap,
/// a part with a Content-Length has that many bytes, memory stays bounded, and nothing panics.
pub fn multipart(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (sizes, body) = rest.split_at(rest.len().min(4));
    let cap = 64 * 1024;
    let boundary = match mode % 3 {
        0 => None,
        1 => Some("boundarydonotcross"),
        _ => Some("x"),
    };
    let mut p = MultipartParser::new(boundary, cap);
    for chunk in chunks(body, sizes) {
        p.push(chunk);
        while let Some(r) = p.next_part() {
            if let Ok(part) = r {
                assert!(part.body.len() <= cap, "part over the cap");
                if let Some(len) = part.headers.content_length {
                    assert_eq!(part.body.len(), len, "Content-Length honoured");
                }
            }
        }
    }
}

/// Concatenated JPEGs in chunks: every frame the splitter returns starts with SOI and fits the cap, no
/// byte is counted twice, and `check` never panics.
pub fn jpeg(data: &[u8]) {
    let _ = check(data);
    let Some((&cap_sel, rest)) = data.split_first() else {
        return;
    };
    let (sizes, body) = rest.split_at(rest.len().min(4));
    let cap = 256 + cap_sel as usize * 256;
    let mut s = JpegSplitter::new(cap);
    let mut out = 0usize;
    for chunk in chunks(body, sizes) {
        s.push(chunk);
        while let Some(r) = s.next_frame() {
            if let Ok(frame) = r {
                assert!(frame.len() <= cap, "frame over the cap");
                assert!(frame.starts_with(&[0xFF, 0xD8]));
                out += frame.len();
            }
        }
    }
    assert!(
        out as u64 + s.skipped_bytes() <= body.len() as u64,
        "bytes accounted"
    );
}

/// `WWW-Authenticate` values (one per line, as a response may carry several) read as a relay reads a 401:
/// whatever they say, every value kept is bounded, and the `Authorization` answered to a Digest challenge is
/// one header line (no control character: no header injection) of bounded length.
pub fn digest(data: &[u8]) {
    use mjpegd_core::digest::{offer, Offer, Session, MAX_VALUE};
    let headers: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    if let Offer::Digest(c) = offer(headers.iter().copied()) {
        for v in [&c.realm, &c.nonce].into_iter().chain(c.opaque.as_ref()) {
            assert!(v.len() <= MAX_VALUE * 3, "{} bytes kept", v.len());
        }
        let mut s = Session::new(c, "0123456789abcdef");
        for _ in 0..2 {
            let a = s.authorization("user", "pass", "GET", "/x?y=1");
            assert!(!a.bytes().any(|b| b.is_ascii_control()), "{a:?}");
            assert!(a.len() < 8 * MAX_VALUE, "{} bytes", a.len());
        }
        assert_eq!(s.nonce_count(), 2);
    }
}
