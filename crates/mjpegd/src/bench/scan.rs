//! Reading an MJPEG stream as fast as a load tool must: counting parts without keeping them.
//!
//! A load test with thousands of clients reads gigabytes a second on loopback; buffering each JPEG only to
//! look at four of its bytes would make the tool, not the server, the bottleneck. [`PartScanner`] walks the
//! stream in place: it collects each part's header lines (skipping the boundary line), then skips
//! Content-Length bytes of body, remembering only the first and last two to check the part is a whole JPEG.
//! A part without Content-Length cannot be skipped this way; the scanner reports it so the caller can fall
//! back to a full parser.

use mjpegd_core::parse::multipart::find_blank_line;

/// What the scanner learned about one part.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartInfo {
    pub len: usize,
    /// Starts with SOI and ends with EOI.
    pub whole_jpeg: bool,
    /// `X-Timestamp`, seconds since the Unix epoch.
    pub timestamp: Option<f64>,
    /// `X-Frame-Sequence`.
    pub sequence: Option<u64>,
}

#[derive(Debug)]
enum State {
    /// Collecting header bytes until a blank line ends a header block.
    Head,
    /// Skipping `remaining` body bytes.
    Body { remaining: usize },
}

/// Why scanning stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum ScanError {
    /// A part without Content-Length.
    NoContentLength,
    /// Header lines grew past the limit without a blank line.
    HeadTooLarge,
}

/// The streaming part scanner.
#[derive(Debug)]
pub struct PartScanner {
    state: State,
    head: Vec<u8>,
    part: PartInfo,
    first: [u8; 2],
    first_len: usize,
    last: [u8; 2],
}

impl Default for PartScanner {
    fn default() -> Self {
        PartScanner {
            state: State::Head,
            head: Vec::with_capacity(256),
            part: PartInfo::default(),
            first: [0; 2],
            first_len: 0,
            last: [0; 2],
        }
    }
}

impl PartScanner {
    /// Feeds bytes; calls `on_part` for each part completed.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        mut on_part: impl FnMut(PartInfo),
    ) -> Result<(), ScanError> {
        while !data.is_empty() {
            match &mut self.state {
                State::Head => {
                    // Copy a bounded piece (headers are small; the body after them is not copied).
                    let before = self.head.len();
                    let take = data.len().min(1024);
                    self.head.extend_from_slice(&data[..take]);
                    let search_from = before.saturating_sub(3);
                    match find_blank_line(&self.head[search_from..]) {
                        Some(end) => {
                            let end = search_from + end;
                            let consumed = end - before;
                            data = &data[consumed..];
                            self.head.truncate(end);
                            let parsed = parse_head(&self.head);
                            self.head.clear();
                            match parsed {
                                // A block of only boundary/blank lines: keep reading headers.
                                None => {}
                                Some((len, ts, seq)) => {
                                    let Some(len) = len else {
                                        return Err(ScanError::NoContentLength);
                                    };
                                    self.part = PartInfo {
                                        len,
                                        whole_jpeg: false,
                                        timestamp: ts,
                                        sequence: seq,
                                    };
                                    self.first_len = 0;
                                    self.state = State::Body { remaining: len };
                                    if len == 0 {
                                        self.finish(&mut on_part);
                                    }
                                }
                            }
                        }
                        None => {
                            if self.head.len() > 16 * 1024 {
                                return Err(ScanError::HeadTooLarge);
                            }
                            data = &data[take..];
                        }
                    }
                }
                State::Body { remaining } => {
                    let take = (*remaining).min(data.len());
                    let chunk = &data[..take];
                    for &b in chunk.iter().take(2 - self.first_len.min(2)) {
                        self.first[self.first_len] = b;
                        self.first_len += 1;
                    }
                    match chunk.len() {
                        0 => {}
                        1 => self.last = [self.last[1], chunk[0]],
                        n => self.last = [chunk[n - 2], chunk[n - 1]],
                    }
                    *remaining -= take;
                    data = &data[take..];
                    if *remaining == 0 {
                        self.finish(&mut on_part);
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, on_part: &mut impl FnMut(PartInfo)) {
        self.part.whole_jpeg =
            self.first_len == 2 && self.first == [0xFF, 0xD8] && self.last == [0xFF, 0xD9];
        on_part(std::mem::take(&mut self.part));
        self.state = State::Head;
    }
}

/// Parses a header block; `None` if it holds no header at all (only boundary or blank lines).
#[allow(clippy::type_complexity)]
fn parse_head(head: &[u8]) -> Option<(Option<usize>, Option<f64>, Option<u64>)> {
    let text = String::from_utf8_lossy(head);
    let mut any = false;
    let (mut len, mut ts, mut seq) = (None, None, None);
    for line in text.split('\n').map(|l| l.trim()) {
        if line.is_empty() || line.starts_with("--") {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        any = true;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => len = value.parse().ok(),
            "x-timestamp" => ts = value.parse().ok(),
            "x-frame-sequence" => seq = value.parse().ok(),
            _ => {}
        }
    }
    any.then_some((len, ts, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(parts: &[&[u8]]) -> Vec<u8> {
        let mut s = b"--b\r\n".to_vec();
        for (i, p) in parts.iter().enumerate() {
            s.extend(format!("Content-Type: image/jpeg\r\nContent-Length:  {}\r\nX-Timestamp: 12.5\r\nX-Frame-Sequence: {i}\r\n\r\n", p.len()).bytes());
            s.extend_from_slice(p);
            s.extend(b"\r\n--b\r\n");
        }
        s
    }

    #[test]
    fn parts_are_found_in_any_chunking() {
        let jpeg: &[u8] = b"\xff\xd8 body \r\n\r\n with blank lines \xff\xd9";
        let bad: &[u8] = b"\xff\xd8 truncated";
        let s = stream(&[jpeg, bad, jpeg]);
        for chunk in [1, 2, 3, 7, 64, s.len()] {
            let mut scanner = PartScanner::default();
            let mut parts = Vec::new();
            for c in s.chunks(chunk) {
                scanner.feed(c, |p| parts.push(p)).unwrap();
            }
            let summary: Vec<(bool, Option<u64>)> =
                parts.iter().map(|p| (p.whole_jpeg, p.sequence)).collect();
            assert_eq!(
                summary,
                vec![(true, Some(0)), (false, Some(1)), (true, Some(2))],
                "chunk {chunk}"
            );
            assert_eq!(parts[0].timestamp, Some(12.5));
        }
    }

    #[test]
    fn a_part_without_length_is_reported() {
        let mut scanner = PartScanner::default();
        let r = scanner.feed(b"--b\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8", |_| {});
        assert_eq!(r, Err(ScanError::NoContentLength));
    }
}
