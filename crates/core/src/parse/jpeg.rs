//! JPEG structure: checking that a buffer is one whole JPEG, and cutting a byte stream of concatenated
//! JPEGs into frames.
//!
//! The splitter follows the marker structure: after SOI, each segment's length says where the next marker
//! is, so an EXIF APP1 segment that carries a whole thumbnail (FF D8 .. FF D9) is skipped as one piece;
//! only entropy-coded data is scanned byte by byte, where FF is always followed by a stuffed 00, a restart
//! marker, or the marker that ends the scan. Searching for FF D9 instead would cut every camera JPEG with a
//! thumbnail in two.

use bytes::{Buf, Bytes, BytesMut};
use std::fmt;

/// What [`check`] learned about a whole JPEG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JpegInfo {
    pub width: u16,
    pub height: u16,
    /// Bytes up to and including EOI (a buffer may carry zero padding after it, as some cameras' do).
    pub len: usize,
}

/// Why a buffer is not one whole JPEG.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JpegError {
    Empty,
    NoSoi,
    /// The buffer ends inside a segment.
    Truncated,
    /// A byte where a marker should be, or a segment length below 2.
    BadMarker(usize),
    /// No start-of-frame segment before the scan.
    NoFrameHeader,
    /// The buffer does not end with EOI (after any zero padding).
    NoEoi,
    /// A frame was longer than the splitter's cap.
    TooLarge(usize),
    /// A new SOI appeared before the previous frame ended.
    Interrupted,
}

impl fmt::Display for JpegError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JpegError::Empty => f.write_str("empty frame"),
            JpegError::NoSoi => f.write_str("does not start with a JPEG SOI marker"),
            JpegError::Truncated => f.write_str("truncated JPEG"),
            JpegError::BadMarker(at) => write!(f, "bad JPEG marker at byte {at}"),
            JpegError::NoFrameHeader => f.write_str("JPEG without a frame header"),
            JpegError::NoEoi => f.write_str("JPEG does not end with an EOI marker"),
            JpegError::TooLarge(cap) => write!(f, "JPEG larger than {cap} bytes"),
            JpegError::Interrupted => f.write_str("JPEG interrupted by the start of another"),
        }
    }
}

impl std::error::Error for JpegError {}

/// Markers that stand alone, without a length: TEM, RST0-7, SOI, EOI.
fn standalone(marker: u8) -> bool {
    marker == 0x01 || (0xD0..=0xD9).contains(&marker)
}

/// SOF0-15 except DHT (C4), JPG (C8) and DAC (CC).
fn is_sof(marker: u8) -> bool {
    (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

/// Checks that `jpeg` is one whole JPEG: SOI, well-formed segments up to the first scan, a frame header,
/// and EOI at the end (zero padding after it is allowed and reported in `len`). Cheap: it walks the
/// headers and looks at the end, not through the entropy-coded data.
pub fn check(jpeg: &[u8]) -> Result<JpegInfo, JpegError> {
    if jpeg.is_empty() {
        return Err(JpegError::Empty);
    }
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return Err(JpegError::NoSoi);
    }
    let mut end = jpeg.len();
    while end > 2 && jpeg[end - 1] == 0 {
        end -= 1;
    }
    if end < 4 || jpeg[end - 2..end] != [0xFF, 0xD9] {
        return Err(JpegError::NoEoi);
    }
    let mut pos = 2;
    let mut size = None;
    loop {
        if pos + 2 > end {
            return Err(JpegError::Truncated);
        }
        if jpeg[pos] != 0xFF {
            return Err(JpegError::BadMarker(pos));
        }
        let marker = jpeg[pos + 1];
        if marker == 0xFF {
            pos += 1; // fill byte
            continue;
        }
        if standalone(marker) {
            if marker == 0xD9 || marker == 0xD8 {
                return Err(JpegError::BadMarker(pos));
            }
            pos += 2;
            continue;
        }
        if pos + 4 > end {
            return Err(JpegError::Truncated);
        }
        let len = u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]) as usize;
        if len < 2 {
            return Err(JpegError::BadMarker(pos));
        }
        if pos + 2 + len > end {
            return Err(JpegError::Truncated);
        }
        if is_sof(marker) && len >= 7 {
            let h = u16::from_be_bytes([jpeg[pos + 5], jpeg[pos + 6]]);
            let w = u16::from_be_bytes([jpeg[pos + 7], jpeg[pos + 8]]);
            size = Some((w, h));
        }
        if marker == 0xDA {
            let (width, height) = size.ok_or(JpegError::NoFrameHeader)?;
            return Ok(JpegInfo {
                width,
                height,
                len: end,
            });
        }
        pos += 2 + len;
    }
}

/// Where the splitter is inside the current frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Looking for SOI.
    Seek,
    /// At `pos` a marker is expected.
    Marker,
    /// Inside entropy-coded data, scanning from `pos`.
    Entropy,
}

/// Cuts a stream of concatenated JPEGs into whole frames by their marker structure.
///
/// Memory stays below the cap plus one read: a frame that grows past the cap is dropped (reported as an
/// error) and the splitter resynchronises at the next SOI. Bytes between frames are skipped and counted.
#[derive(Debug)]
pub struct JpegSplitter {
    buf: BytesMut,
    /// Parse position inside `buf` (the frame starts at 0 once SOI is found).
    pos: usize,
    state: State,
    cap: usize,
    skipped: u64,
    /// Drop the current frame's bytes until the next SOI (after an oversized frame).
    discarding: bool,
}

impl JpegSplitter {
    /// A splitter that accepts frames of at most `cap` bytes.
    pub fn new(cap: usize) -> JpegSplitter {
        JpegSplitter {
            buf: BytesMut::new(),
            pos: 0,
            state: State::Seek,
            cap,
            skipped: 0,
            discarding: false,
        }
    }

    /// Bytes skipped outside frames so far (garbage between frames, dropped frames).
    pub fn skipped_bytes(&self) -> u64 {
        self.skipped
    }

    /// Adds bytes from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Drops everything up to `at` and looks for the next SOI from there.
    fn resync(&mut self, at: usize) {
        self.skipped += at as u64;
        self.buf.advance(at);
        self.pos = 0;
        self.state = State::Seek;
    }

    /// The next whole frame, an error for a frame that had to be dropped, or `None` until more bytes come.
    pub fn next_frame(&mut self) -> Option<Result<Bytes, JpegError>> {
        loop {
            match self.state {
                State::Seek => {
                    let found = memchr::memmem::find(&self.buf[self.pos..], &[0xFF, 0xD8])
                        .map(|i| self.pos + i);
                    match found {
                        Some(i) => {
                            self.discarding = false;
                            self.resync(i);
                            self.pos = 2;
                            self.state = State::Marker;
                        }
                        None => {
                            // Keep a trailing FF: it may be the first half of an SOI.
                            let keep = usize::from(self.buf.last() == Some(&0xFF));
                            let drop = self.buf.len() - keep;
                            self.skipped += drop as u64;
                            self.buf.advance(drop);
                            self.pos = 0;
                            return None;
                        }
                    }
                }
                State::Marker => {
                    if self.pos + 2 > self.buf.len() {
                        return self.need_more();
                    }
                    if self.buf[self.pos] != 0xFF {
                        let at = self.pos;
                        self.resync(1);
                        return Some(Err(JpegError::BadMarker(at)));
                    }
                    let marker = self.buf[self.pos + 1];
                    match marker {
                        0xFF => self.pos += 1,
                        0xD9 => {
                            if self.pos + 2 > self.cap {
                                // Whole in one read, but over the cap all the same (found by fuzzing).
                                self.resync(2);
                                self.discarding = true;
                                return Some(Err(JpegError::TooLarge(self.cap)));
                            }
                            let frame = self.buf.split_to(self.pos + 2).freeze();
                            self.pos = 0;
                            self.state = State::Seek;
                            return Some(Ok(frame));
                        }
                        0xD8 => {
                            // Another frame starts before this one ended.
                            let at = self.pos;
                            self.resync(at);
                            return Some(Err(JpegError::Interrupted));
                        }
                        m if standalone(m) => self.pos += 2,
                        _ => {
                            if self.pos + 4 > self.buf.len() {
                                return self.need_more();
                            }
                            let len = u16::from_be_bytes([
                                self.buf[self.pos + 2],
                                self.buf[self.pos + 3],
                            ]) as usize;
                            if len < 2 {
                                let at = self.pos;
                                self.resync(1);
                                return Some(Err(JpegError::BadMarker(at)));
                            }
                            if self.pos + 2 + len > self.buf.len() {
                                return self.need_more();
                            }
                            self.pos += 2 + len;
                            if marker == 0xDA {
                                self.state = State::Entropy;
                            }
                        }
                    }
                }
                State::Entropy => {
                    let Some(i) = memchr::memchr(0xFF, &self.buf[self.pos..]) else {
                        self.pos = self.buf.len();
                        return self.need_more();
                    };
                    let at = self.pos + i;
                    if at + 1 >= self.buf.len() {
                        self.pos = at;
                        return self.need_more();
                    }
                    match self.buf[at + 1] {
                        0x00 | 0xD0..=0xD7 => self.pos = at + 2,
                        0xFF => self.pos = at + 1,
                        _ => {
                            self.pos = at;
                            self.state = State::Marker;
                        }
                    }
                }
            }
        }
    }

    /// Waits for more bytes, unless the frame so far is over the cap.
    fn need_more(&mut self) -> Option<Result<Bytes, JpegError>> {
        if self.buf.len() > self.cap {
            // Drop the oversized frame and look for the next SOI after its start.
            self.resync(2);
            self.discarding = true;
            return Some(Err(JpegError::TooLarge(self.cap)));
        }
        None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A small, structurally valid baseline JPEG (not decodable to a picture, but every marker is right):
    /// entropy data with stuffed FF00 and a restart marker.
    pub fn tiny_jpeg(seed: u8) -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        j.extend([
            0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0,
        ]);
        j.extend([0xFF, 0xDB, 0x00, 0x43, 0x00]);
        j.extend((0..64).map(|i| (i as u8).wrapping_add(seed) | 1));
        j.extend([
            0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x10, 0x00, 0x20, 0x01, 0x01, 0x11, 0x00,
        ]);
        j.extend([0xFF, 0xC4, 0x00, 0x14, 0x00]);
        j.extend([0u8; 16]);
        j.push(0x00);
        j.extend([0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00]);
        j.extend([
            seed, 0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, seed, 0xFF, 0x00, 0x78,
        ]);
        j.extend([0xFF, 0xD9]);
        j
    }

    /// `main` with an EXIF APP1 segment carrying `thumb`, a whole JPEG.
    pub fn with_thumbnail(main: &[u8], thumb: &[u8]) -> Vec<u8> {
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(thumb);
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xE1];
        j.extend(((app1.len() + 2) as u16).to_be_bytes());
        j.extend(app1);
        j.extend_from_slice(&main[2..]);
        j
    }

    fn split_all(s: &mut JpegSplitter) -> Vec<Result<Bytes, JpegError>> {
        std::iter::from_fn(|| s.next_frame()).collect()
    }

    #[test]
    fn check_accepts_whole_jpegs_and_says_what_is_wrong_with_others() {
        let j = tiny_jpeg(1);
        assert_eq!(
            check(&j),
            Ok(JpegInfo {
                width: 32,
                height: 16,
                len: j.len()
            })
        );
        let mut padded = j.clone();
        padded.extend([0, 0, 0]);
        assert_eq!(check(&padded).unwrap().len, j.len());
        assert_eq!(check(&[]), Err(JpegError::Empty));
        assert_eq!(check(&j[1..]), Err(JpegError::NoSoi));
        assert_eq!(check(&j[..j.len() / 2]), Err(JpegError::NoEoi));
        assert!(check(&with_thumbnail(&j, &tiny_jpeg(2))).is_ok());
        let mut bad_len = j.clone();
        bad_len[5] = 0xF0; // the APP0 length now runs past the end
        assert!(check(&bad_len).is_err());
    }

    #[test]
    fn frames_with_exif_thumbnails_come_out_whole() {
        let a = with_thumbnail(&tiny_jpeg(1), &tiny_jpeg(9));
        let b = tiny_jpeg(2);
        let mut s = JpegSplitter::new(1 << 20);
        s.push(b"garbage");
        s.push(&a);
        s.push(&b);
        let frames = split_all(&mut s);
        assert_eq!(frames, vec![Ok(Bytes::from(a)), Ok(Bytes::from(b))]);
        assert_eq!(s.skipped_bytes(), 7);
    }

    #[test]
    fn a_truncated_frame_is_reported_and_the_next_one_survives() {
        let a = tiny_jpeg(1);
        let b = tiny_jpeg(2);
        let mut s = JpegSplitter::new(1 << 20);
        s.push(&a[..a.len() - 6]);
        s.push(&b);
        let frames = split_all(&mut s);
        assert_eq!(
            frames,
            vec![Err(JpegError::Interrupted), Ok(Bytes::from(b))]
        );
    }

    /// A valid JPEG padded with `extra` bytes of entropy-coded data before its EOI.
    fn padded_jpeg(extra: usize) -> Vec<u8> {
        let mut big = tiny_jpeg(1);
        let eoi = big.split_off(big.len() - 2);
        big.extend(std::iter::repeat_n(0x11, extra));
        big.extend(eoi);
        big
    }

    #[test]
    fn an_oversized_frame_is_dropped_and_memory_stays_bounded() {
        let big = padded_jpeg(10_000);
        let small = tiny_jpeg(3);
        let mut s = JpegSplitter::new(1000);
        let mut out = Vec::new();
        for chunk in big.chunks(100).chain(small.chunks(100)) {
            s.push(chunk);
            out.extend(split_all(&mut s));
            assert!(s.buf.len() <= 1100, "buffer {}", s.buf.len());
        }
        assert_eq!(out.first(), Some(&Err(JpegError::TooLarge(1000))));
        assert_eq!(out.last(), Some(&Ok(Bytes::from(small))));
    }

    #[test]
    fn an_oversized_frame_arriving_in_one_read_is_still_refused() {
        // Found by fuzzing: the whole frame, over the cap, in a single push.
        let big = padded_jpeg(2_000);
        let small = tiny_jpeg(3);
        let mut s = JpegSplitter::new(1000);
        s.push(&big);
        s.push(&small);
        let out = split_all(&mut s);
        assert_eq!(out.first(), Some(&Err(JpegError::TooLarge(1000))));
        assert_eq!(out.last(), Some(&Ok(Bytes::from(small))));
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_frames(cuts in proptest::collection::vec(1usize..300, 1..40), garbage in proptest::collection::vec(any::<u8>(), 0..50)) {
            let frames = vec![tiny_jpeg(1), with_thumbnail(&tiny_jpeg(2), &tiny_jpeg(3)), tiny_jpeg(4)];
            let mut stream = Vec::new();
            for f in &frames {
                stream.extend_from_slice(f);
            }
            // Garbage without FF cannot fake a marker; it only has to be skipped.
            let garbage: Vec<u8> = garbage.into_iter().filter(|b| *b != 0xFF).collect();
            stream.extend_from_slice(&garbage);
            stream.extend_from_slice(&frames[0]);
            let mut whole = JpegSplitter::new(1 << 20);
            whole.push(&stream);
            let expected = split_all(&mut whole);
            let mut s = JpegSplitter::new(1 << 20);
            let mut got = Vec::new();
            let mut rest = &stream[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                s.push(&rest[..n]);
                rest = &rest[n..];
                got.extend(split_all(&mut s));
                i += 1;
            }
            prop_assert_eq!(&got, &expected);
            prop_assert_eq!(got.len(), 4);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(data in proptest::collection::vec(any::<u8>(), 0..4000)) {
            let mut s = JpegSplitter::new(512);
            for chunk in data.chunks(37) {
                s.push(chunk);
                while s.next_frame().is_some() {}
                prop_assert!(s.buf.len() <= 512 + 37);
            }
            let _ = check(&data);
        }
    }
}
