//! An endless multipart/x-mixed-replace body, cut into parts, as the MJPEG servers and cameras of the
//! field really write it.
//!
//! Quirks handled: the boundary declared quoted or not, with or without a leading `--`; a body that starts
//! with or without CRLF or a boundary line; part headers with odd spacing (`Content-Length:     12345`) or
//! none at all; parts with Content-Length (trusted, then the boundary is looked for after it) or without
//! (the part ends at the next boundary line); and a declared boundary that the body never uses, in which
//! case the first `--token` line of the body is taken as the real one (a known camera quirk).
//!
//! Memory is bounded: a part over the byte cap, a header block over 16 KiB, or that many bytes with no
//! boundary in sight is an error, after which the caller should drop the connection and reconnect.

use bytes::{Buf, Bytes, BytesMut};
use std::fmt;

const MAX_HEAD: usize = 16 * 1024;

/// `multipart/x-mixed-replace; boundary=X` -> `X` (unquoted, without a leading `--`).
pub fn boundary_from_content_type(value: &str) -> Option<String> {
    let mut params = value.split(';');
    let mime = params.next()?.trim();
    if !mime.to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    params.find_map(|p| {
        let (name, v) = p.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"').trim();
        let v = v.strip_prefix("--").unwrap_or(v);
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// The headers of one part that mjpegd uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartHeaders {
    pub content_type: Option<String>,
    pub content_length: Option<usize>,
    /// `X-Timestamp`, as sent.
    pub x_timestamp: Option<String>,
    /// `X-Frame-Sequence`.
    pub x_frame_sequence: Option<u64>,
}

/// One part of the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub headers: PartHeaders,
    pub body: Bytes,
}

/// Why the body cannot be parsed further.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MultipartError {
    /// A part (or the bytes before a boundary) exceeded the cap.
    PartTooLarge(usize),
    /// A part's header block exceeded 16 KiB.
    HeadersTooLarge,
    /// Part headers that are not headers.
    BadHeaders,
}

impl fmt::Display for MultipartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MultipartError::PartTooLarge(cap) => write!(
                f,
                "a part (or the bytes before a boundary) exceeds {cap} bytes"
            ),
            MultipartError::HeadersTooLarge => f.write_str("part headers exceed 16 KiB"),
            MultipartError::BadHeaders => f.write_str("malformed part headers"),
        }
    }
}

impl std::error::Error for MultipartError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the first boundary (which may be wrong, or missing).
    Start,
    /// Expecting a boundary line, after optional blank lines.
    Delimiter,
    /// Reading a part's header block.
    Headers,
    /// Reading a body of known length.
    Body(usize),
    /// Reading a body that ends at the next boundary.
    BodyToBoundary,
    /// After the closing boundary, or after an error: nothing more.
    Done,
}

/// The push-based parser.
#[derive(Debug)]
pub struct MultipartParser {
    /// The delimiter line without CRLF: `--boundary`. `None` until known.
    delimiter: Option<Vec<u8>>,
    /// The boundary declared in the Content-Type, if any, tried first.
    declared: Option<Vec<u8>>,
    buf: BytesMut,
    state: State,
    headers: PartHeaders,
    cap: usize,
    /// Where the search for a boundary inside the current body resumes.
    scan_from: usize,
}

impl MultipartParser {
    /// A parser for a body whose Content-Type declared `boundary` (without `--`; `None` if it declared
    /// none), accepting parts of at most `cap` bytes.
    pub fn new(boundary: Option<&str>, cap: usize) -> MultipartParser {
        MultipartParser {
            delimiter: None,
            declared: boundary.map(|b| format!("--{b}").into_bytes()),
            buf: BytesMut::new(),
            state: State::Start,
            headers: PartHeaders::default(),
            cap,
            scan_from: 0,
        }
    }

    /// The boundary in use, once known (`--` included).
    pub fn delimiter(&self) -> Option<&[u8]> {
        self.delimiter.as_deref()
    }

    /// Adds body bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.state != State::Done {
            self.buf.extend_from_slice(data);
        }
    }

    fn fail(&mut self, e: MultipartError) -> Option<Result<Part, MultipartError>> {
        self.state = State::Done;
        self.buf = BytesMut::new();
        Some(Err(e))
    }

    /// Skips blank lines at the front of the buffer; false if it ends inside them.
    fn skip_blank_lines(&mut self) -> bool {
        let n = self
            .buf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
            .count();
        self.buf.advance(n);
        !self.buf.is_empty()
    }

    /// The next part, an error (after which there is nothing more), or `None` until more bytes come.
    pub fn next_part(&mut self) -> Option<Result<Part, MultipartError>> {
        loop {
            match self.state {
                State::Done => return None,
                State::Start => {
                    if !self.skip_blank_lines() {
                        return None;
                    }
                    let Some(eol) = memchr::memchr(b'\n', &self.buf) else {
                        if self.buf.len() > MAX_HEAD {
                            return self.fail(MultipartError::HeadersTooLarge);
                        }
                        return None;
                    };
                    let line = trim_line(&self.buf[..eol]);
                    if line.starts_with(b"--") && line.len() > 2 {
                        // The first boundary line is the boundary in use: the declared one, or the real
                        // one when a camera declares one boundary and writes another (or adds dashes).
                        let used = line.to_vec();
                        self.delimiter = Some(used);
                        self.buf.advance(eol + 1);
                        self.state = State::Headers;
                    } else if line.contains(&b':') {
                        // Headers straight away, no opening boundary.
                        self.delimiter = self.declared.clone();
                        self.state = State::Headers;
                    } else {
                        // Preamble text: skip the line.
                        self.buf.advance(eol + 1);
                    }
                }
                State::Delimiter => {
                    if !self.skip_blank_lines() {
                        return None;
                    }
                    let delimiter = self.delimiter.clone().unwrap_or_default();
                    let Some(eol) = memchr::memchr(b'\n', &self.buf) else {
                        if self.buf.len() > MAX_HEAD {
                            return self.fail(MultipartError::HeadersTooLarge);
                        }
                        return None;
                    };
                    let line = trim_line(&self.buf[..eol]);
                    if line.starts_with(&delimiter) && !delimiter.is_empty() {
                        if line[delimiter.len()..].starts_with(b"--") {
                            self.state = State::Done; // closing boundary
                            return None;
                        }
                        self.buf.advance(eol + 1);
                        self.state = State::Headers;
                    } else if line.contains(&b':') {
                        // A part with no boundary before its headers (tolerated).
                        self.state = State::Headers;
                    } else {
                        // Stray bytes after a part (e.g. a Content-Length that was short): look for the
                        // boundary, within the cap.
                        match find(&self.buf, &delimiter) {
                            Some(i) if !delimiter.is_empty() => self.buf.advance(i),
                            _ => {
                                if self.buf.len() > self.cap {
                                    return self.fail(MultipartError::PartTooLarge(self.cap));
                                }
                                return None;
                            }
                        }
                    }
                }
                State::Headers => {
                    let Some(end) = find_blank_line(&self.buf) else {
                        if self.buf.len() > MAX_HEAD {
                            return self.fail(MultipartError::HeadersTooLarge);
                        }
                        return None;
                    };
                    if end > MAX_HEAD {
                        return self.fail(MultipartError::HeadersTooLarge);
                    }
                    let head = self.buf.split_to(end);
                    match parse_headers(&head) {
                        Some(h) => self.headers = h,
                        None => return self.fail(MultipartError::BadHeaders),
                    }
                    self.scan_from = 0;
                    self.state = match self.headers.content_length {
                        Some(len) if len > self.cap => {
                            return self.fail(MultipartError::PartTooLarge(self.cap))
                        }
                        Some(len) => State::Body(len),
                        None => State::BodyToBoundary,
                    };
                }
                State::Body(len) => {
                    if self.buf.len() < len {
                        return None;
                    }
                    let body = self.buf.split_to(len).freeze();
                    self.state = State::Delimiter;
                    return Some(Ok(Part {
                        headers: std::mem::take(&mut self.headers),
                        body,
                    }));
                }
                State::BodyToBoundary => {
                    let Some(delimiter) = self.delimiter.clone() else {
                        // No boundary known at all: nothing marks the end of a part.
                        return self.fail(MultipartError::BadHeaders);
                    };
                    // The part ends at "\n--boundary" (the CRLF before it belongs to the boundary).
                    let from = self.scan_from;
                    let mut needle = b"\n".to_vec();
                    needle.extend_from_slice(&delimiter);
                    match find(&self.buf[from..], &needle) {
                        Some(i) => {
                            let at = from + i;
                            let mut end = at;
                            if end > 0 && self.buf[end - 1] == b'\r' {
                                end -= 1;
                            }
                            let body = self.buf.split_to(end).freeze();
                            self.state = State::Delimiter;
                            return Some(Ok(Part {
                                headers: std::mem::take(&mut self.headers),
                                body,
                            }));
                        }
                        None => {
                            if self.buf.len() > self.cap + needle.len() {
                                return self.fail(MultipartError::PartTooLarge(self.cap));
                            }
                            self.scan_from = self.buf.len().saturating_sub(needle.len());
                            return None;
                        }
                    }
                }
            }
        }
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut l = line;
    while let [rest @ .., b'\r' | b' ' | b'\t'] = l {
        l = rest;
    }
    l
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    memchr::memmem::find(hay, needle)
}

/// Index just past the blank line that ends a header block ("\r\n\r\n" or "\n\n").
pub fn find_blank_line(buf: &[u8]) -> Option<usize> {
    let crlf = memchr::memmem::find(buf, b"\r\n\r\n").map(|i| i + 4);
    let lf = memchr::memmem::find(buf, b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn parse_headers(head: &[u8]) -> Option<PartHeaders> {
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let parsed = match httparse::parse_headers(head, &mut fields) {
        Ok(httparse::Status::Complete((_, fields))) => fields,
        _ => return None,
    };
    let mut h = PartHeaders::default();
    for f in parsed {
        let value = std::str::from_utf8(f.value).ok()?.trim();
        if f.name.eq_ignore_ascii_case("content-type") {
            h.content_type = Some(value.to_string());
        } else if f.name.eq_ignore_ascii_case("content-length") {
            h.content_length = Some(value.parse().ok()?);
        } else if f.name.eq_ignore_ascii_case("x-timestamp") {
            h.x_timestamp = Some(value.to_string());
        } else if f.name.eq_ignore_ascii_case("x-frame-sequence") {
            h.x_frame_sequence = value.parse().ok();
        }
    }
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::jpeg::tests::tiny_jpeg;
    use proptest::prelude::*;

    fn parse_all(p: &mut MultipartParser) -> Vec<Result<Part, MultipartError>> {
        std::iter::from_fn(|| p.next_part()).collect()
    }

    fn bodies(stream: &[u8], boundary: Option<&str>) -> Vec<Vec<u8>> {
        let mut p = MultipartParser::new(boundary, 1 << 20);
        p.push(stream);
        parse_all(&mut p)
            .into_iter()
            .map(|r| r.unwrap().body.to_vec())
            .collect()
    }

    fn frames() -> Vec<Vec<u8>> {
        vec![tiny_jpeg(1), tiny_jpeg(2), tiny_jpeg(3)]
    }

    /// Builds a stream: `open` before the first part, `head(len)` before each body, `tail` after it.
    fn build(open: &str, head: impl Fn(usize) -> String, tail: &str) -> Vec<u8> {
        let mut s = open.as_bytes().to_vec();
        for f in frames() {
            s.extend(head(f.len()).bytes());
            s.extend(&f);
            s.extend(tail.bytes());
        }
        s
    }

    #[test]
    fn boundary_parameter_forms() {
        let b = |v| boundary_from_content_type(v);
        assert_eq!(
            b("multipart/x-mixed-replace; boundary=123456789000000000000987654321").as_deref(),
            Some("123456789000000000000987654321")
        );
        assert_eq!(
            b("multipart/x-mixed-replace;boundary=boundarydonotcross").as_deref(),
            Some("boundarydonotcross")
        );
        assert_eq!(
            b("multipart/x-mixed-replace; boundary=\"frame\"").as_deref(),
            Some("frame")
        );
        assert_eq!(
            b("multipart/x-mixed-replace; BOUNDARY=--myboundary").as_deref(),
            Some("myboundary")
        );
        assert_eq!(
            b("multipart/x-mixed-replace; boundary=+++===123454321===+++").as_deref(),
            Some("+++===123454321===+++")
        );
        assert_eq!(b("image/jpeg"), None);
        assert_eq!(b("multipart/x-mixed-replace"), None);
    }

    #[test]
    fn esp32_firmware_streams() {
        for b in ["123456789000000000000987654321", "+++===123454321===+++"] {
            let s = build(
                &format!("--{b}\r\n"),
                |n| format!("Content-Type: image/jpeg\r\nContent-Length: {n}\r\n\r\n"),
                &format!("\r\n--{b}\r\n"),
            );
            assert_eq!(bodies(&s, Some(b)), frames(), "{b}");
        }
    }

    #[test]
    fn ustreamer_and_mjpg_streamer_streams() {
        let s = build(
            "\r\n--boundarydonotcross\r\n",
            |n| {
                format!("Content-Type: image/jpeg\r\nContent-Length: {n}\r\nX-Timestamp: 1700000000.123456\r\n\r\n")
            },
            "\r\n--boundarydonotcross\r\n",
        );
        let mut p = MultipartParser::new(Some("boundarydonotcross"), 1 << 20);
        p.push(&s);
        let parts = parse_all(&mut p);
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts[0].as_ref().unwrap().headers.x_timestamp.as_deref(),
            Some("1700000000.123456")
        );
    }

    #[test]
    fn go2rtc_motion_and_ffmpeg_streams() {
        // go2rtc: boundary=frame, boundary line before each part.
        let s = build(
            "",
            |n| format!("--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {n}\r\n\r\n"),
            "\r\n",
        );
        assert_eq!(bodies(&s, Some("frame")), frames());
        // Motion: space-padded Content-Length.
        let s = build(
            "",
            |n| {
                format!(
                    "--BoundaryString\r\nContent-type: image/jpeg\r\nContent-Length: {n:9}\r\n\r\n"
                )
            },
            "\r\n\r\n",
        );
        assert_eq!(bodies(&s, Some("BoundaryString")), frames());
        // ffmpeg -f mpjpeg.
        let s = build(
            "",
            |n| format!("--ffmpeg\r\nContent-type: image/jpeg\r\nContent-length: {n}\r\n\r\n"),
            "\r\n",
        );
        assert_eq!(bodies(&s, Some("ffmpeg")), frames());
    }

    #[test]
    fn parts_without_content_length_end_at_the_boundary() {
        let s = build(
            "--b\r\n",
            |_| "Content-Type: image/jpeg\r\n\r\n".to_string(),
            "\r\n--b\r\n",
        );
        assert_eq!(bodies(&s, Some("b")), frames());
    }

    #[test]
    fn a_wrong_declared_boundary_is_replaced_by_the_real_one() {
        let s = build(
            "--realboundary\r\n",
            |_| "Content-Type: image/jpeg\r\n\r\n".to_string(),
            "\r\n--realboundary\r\n",
        );
        assert_eq!(bodies(&s, Some("myboundary")), frames());
        assert_eq!(bodies(&s, None), frames());
        // Declared with dashes, written with two more.
        let s = build(
            "----x\r\n",
            |_| "Content-Type: image/jpeg\r\n\r\n".to_string(),
            "\r\n----x\r\n",
        );
        assert_eq!(bodies(&s, Some("--x")), frames());
    }

    #[test]
    fn oversized_parts_and_endless_headers_are_errors_not_growth() {
        let mut p = MultipartParser::new(Some("b"), 1000);
        p.push(b"--b\r\nContent-Length: 5000\r\n\r\n");
        assert_eq!(p.next_part(), Some(Err(MultipartError::PartTooLarge(1000))));
        assert_eq!(p.next_part(), None);
        let mut p = MultipartParser::new(Some("b"), 1000);
        p.push(b"--b\r\n");
        for _ in 0..2000 {
            p.push(b"X-Junk: aaaaaaaaaaaa\r\n");
            if let Some(r) = p.next_part() {
                assert_eq!(r, Err(MultipartError::HeadersTooLarge));
                return;
            }
        }
        panic!("endless headers were accepted");
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_parts(cuts in proptest::collection::vec(1usize..200, 1..30), with_len in any::<bool>()) {
            let s = if with_len {
                build("\r\n--boundarydonotcross\r\n", |n| format!("Content-Type: image/jpeg\r\nContent-Length:   {n}\r\n\r\n"), "\r\n--boundarydonotcross\r\n")
            } else {
                build("--x\r\n", |_| "Content-Type: image/jpeg\r\n\r\n".to_string(), "\r\n--x\r\n")
            };
            let boundary = if with_len { "boundarydonotcross" } else { "x" };
            let expected = bodies(&s, Some(boundary));
            prop_assert_eq!(&expected, &frames());
            let mut p = MultipartParser::new(Some(boundary), 1 << 20);
            let mut got = Vec::new();
            let mut rest = &s[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                p.push(&rest[..n]);
                rest = &rest[n..];
                got.extend(parse_all(&mut p).into_iter().map(|r| r.unwrap().body.to_vec()));
                i += 1;
            }
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(data in proptest::collection::vec(any::<u8>(), 0..5000), boundary in proptest::option::of("[a-z]{1,8}")) {
            let mut p = MultipartParser::new(boundary.as_deref(), 512);
            for chunk in data.chunks(41) {
                p.push(chunk);
                while let Some(r) = p.next_part() {
                    if r.is_err() { break; }
                }
                prop_assert!(p.buf.len() <= 512 + MAX_HEAD + 64);
            }
        }
    }
}
