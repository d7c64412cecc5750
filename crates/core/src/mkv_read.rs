//! Reading a recording back: the header (track, start time), the Cues, the clusters' timestamps, the byte
//! position of the cluster for a time, and the frames (where each JPEG lies in the file, and its time) from
//! a position on. It is what replay (`/recordings/FILE/stream`) and `snapshot?at=` seek and read with.
//!
//! It reads what [`crate::mkv::MkvWriter`] writes, finished or not: a finished file has Cues and every
//! size; a file still being written (or cut by a crash) has neither, so the reader scans its clusters,
//! taking an unknown-size cluster to end where the next level-1 element begins, and stops cleanly at the
//! last whole element: an element cut by the end of the file is "no more yet", never an error, so a reader
//! can come back when the file has grown. Other Matroska writers' MJPEG files (ffmpeg's, mkvmerge's) read
//! too as far as they use SimpleBlocks; BlockGroups and laced blocks are skipped.
//!
//! Sans-IO: the file is a [`ReadAt`], which the server implements for a file (positional reads) and the
//! tests for a byte slice. Everything taken from the file is bounded before it is used: the header's
//! bytes ([`MAX_HEADER`]), each header element ([`MAX_HEADER_ELEMENT`]), a block ([`MAX_BLOCK`]), the cue
//! points ([`MAX_CUE_POINTS`]); times are computed with saturating arithmetic. Garbled input gives an
//! [`MkvError`], never a panic.

use crate::mkv::{id, TrackInfo};
use std::fmt;
use std::ops::Range;

/// Bytes at the start of a file the header (EBML header, Info, Tracks, SeekHead) must fit in.
pub const MAX_HEADER: u64 = 1 << 20;

/// Bytes of one header element (SeekHead, Info, Tracks) read at most.
pub const MAX_HEADER_ELEMENT: u64 = 256 << 10;

/// The largest block taken as a frame; a larger size is a garbled file.
pub const MAX_BLOCK: u64 = 64 << 20;

/// Cue points read at most (four times what the writer indexes, [`crate::mkv::MAX_CUES`]).
pub const MAX_CUE_POINTS: usize = crate::mkv::MAX_CUES * 4;

/// Bytes of a Cues element read at most (about 24 bytes a point).
pub const MAX_CUES_BYTES: u64 = MAX_CUE_POINTS as u64 * 32;

/// A file, read at positions.
pub trait ReadAt {
    /// Its length now (a file being written grows).
    fn file_len(&self) -> u64;
    /// Reads into `buf` from `offset`; the bytes read (fewer at the end of the file).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize>;
}

impl ReadAt for [u8] {
    fn file_len(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        let Some(rest) = self.get(start..) else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

/// Why a file cannot be read.
#[derive(Debug)]
pub enum MkvError {
    /// Reading the file failed.
    Io(std::io::Error),
    /// The file ends before its header does (a file just created).
    Truncated,
    /// Not a Matroska file, or one whose bytes contradict themselves (the reason).
    Invalid(String),
    /// A Matroska file without an MJPEG video track.
    Unsupported(String),
}

impl fmt::Display for MkvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MkvError::Io(e) => write!(f, "reading the recording failed: {e}"),
            MkvError::Truncated => write!(f, "the recording has no complete header yet"),
            MkvError::Invalid(why) => write!(f, "the recording is not valid Matroska: {why}"),
            MkvError::Unsupported(why) => write!(f, "the recording cannot be replayed: {why}"),
        }
    }
}

impl std::error::Error for MkvError {}

impl From<std::io::Error> for MkvError {
    fn from(e: std::io::Error) -> MkvError {
        MkvError::Io(e)
    }
}

fn invalid(why: impl Into<String>) -> MkvError {
    MkvError::Invalid(why.into())
}

/// An element's head: its ID, where its content starts, and its size (`None`: unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Head {
    id: u32,
    at: u64,
    data: u64,
    size: Option<u64>,
}

impl Head {
    /// Where the content ends, if the size is known.
    fn end(&self) -> Option<u64> {
        self.size.map(|s| self.data.saturating_add(s))
    }
}

/// What a parse of bytes that may end early found.
enum Parsed<T> {
    Got(T),
    /// The bytes end before the value does.
    Short,
}

/// A variable-length integer: (value without the marker, or `None` for all ones (unknown); length).
fn vint(b: &[u8]) -> Result<Parsed<(Option<u64>, usize)>, MkvError> {
    let Some(&first) = b.first() else {
        return Ok(Parsed::Short);
    };
    if first == 0 {
        return Err(invalid("a variable-length integer longer than 8 bytes"));
    }
    let len = first.leading_zeros() as usize + 1;
    let Some(bytes) = b.get(..len) else {
        return Ok(Parsed::Short);
    };
    let mut v = u64::from(first) & (0xFF >> len);
    for &x in &bytes[1..] {
        v = v << 8 | u64::from(x);
    }
    let unknown = v == (1u64 << (7 * len)) - 1;
    Ok(Parsed::Got(((!unknown).then_some(v), len)))
}

/// An element ID (with its marker bits, as [`crate::mkv::id`] lists them) and its length.
fn read_id(b: &[u8]) -> Result<Parsed<(u32, usize)>, MkvError> {
    let Some(&first) = b.first() else {
        return Ok(Parsed::Short);
    };
    let len = first.leading_zeros() as usize + 1;
    if len > 4 {
        return Err(invalid("an element ID longer than 4 bytes"));
    }
    let Some(bytes) = b.get(..len) else {
        return Ok(Parsed::Short);
    };
    Ok(Parsed::Got((
        bytes.iter().fold(0u32, |a, &x| a << 8 | u32::from(x)),
        len,
    )))
}

/// The head of the element starting at `b[0]`, which is file offset `at`.
fn head_in(b: &[u8], at: u64) -> Result<Parsed<Head>, MkvError> {
    let (id, il) = match read_id(b)? {
        Parsed::Got(v) => v,
        Parsed::Short => return Ok(Parsed::Short),
    };
    let (size, sl) = match vint(&b[il..])? {
        Parsed::Got(v) => v,
        Parsed::Short => return Ok(Parsed::Short),
    };
    Ok(Parsed::Got(Head {
        id,
        at,
        data: at + (il + sl) as u64,
        size,
    }))
}

/// The head of the element at file offset `at`; `None` when the file ends before it does.
fn head_at<S: ReadAt + ?Sized>(src: &S, at: u64) -> Result<Option<Head>, MkvError> {
    let mut b = [0u8; 12];
    let n = read_full(src, at, &mut b)?;
    match head_in(&b[..n], at)? {
        Parsed::Got(h) => Ok(Some(h)),
        Parsed::Short => Ok(None),
    }
}

/// Reads as much of `buf` as the file has from `at`.
fn read_full<S: ReadAt + ?Sized>(src: &S, at: u64, buf: &mut [u8]) -> Result<usize, MkvError> {
    let mut got = 0;
    while got < buf.len() {
        let n = src.read_at(at.saturating_add(got as u64), &mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// The content of an element of known size, at most `max` bytes; `None` if the file ends before it does.
fn content<S: ReadAt + ?Sized>(src: &S, h: &Head, max: u64) -> Result<Option<Vec<u8>>, MkvError> {
    let size = h
        .size
        .ok_or_else(|| invalid(format!("element {:#x} of unknown size", h.id)))?;
    if size > max {
        return Err(invalid(format!(
            "element {:#x} of {size} bytes (at most {max})",
            h.id
        )));
    }
    let mut buf = vec![0u8; size as usize];
    let n = read_full(src, h.data, &mut buf)?;
    Ok((n == buf.len()).then_some(buf))
}

/// The children of a master element's content, as (head, content) with offsets relative to it.
fn children(body: &[u8]) -> Result<Vec<(u32, &[u8])>, MkvError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < body.len() {
        let h = match head_in(&body[pos..], pos as u64)? {
            Parsed::Got(h) => h,
            Parsed::Short => return Err(invalid("a child element cut short")),
        };
        let size = h
            .size
            .ok_or_else(|| invalid("a child element of unknown size"))?;
        let start = h.data as usize;
        let end = usize::try_from(size)
            .ok()
            .and_then(|s| start.checked_add(s))
            .filter(|&e| e <= body.len())
            .ok_or_else(|| invalid("a child element larger than its parent"))?;
        out.push((h.id, &body[start..end]));
        pos = end;
    }
    Ok(out)
}

fn uint(b: &[u8]) -> Result<u64, MkvError> {
    if b.len() > 8 {
        return Err(invalid("an unsigned integer of more than 8 bytes"));
    }
    Ok(b.iter().fold(0u64, |a, &x| a << 8 | u64::from(x)))
}

fn float(b: &[u8]) -> Option<f64> {
    match b.len() {
        4 => Some(f32::from_bits(u32::from_be_bytes(b.try_into().ok()?)).into()),
        8 => Some(f64::from_bits(u64::from_be_bytes(b.try_into().ok()?))),
        _ => None,
    }
}

/// Level-1 elements: each ends an unknown-size Cluster.
fn is_top_level(id: u32) -> bool {
    matches!(
        id,
        id::CLUSTER
            | id::CUES
            | id::SEEK_HEAD
            | id::INFO
            | id::TRACKS
            | 0x1254_C367 // Tags
            | 0x1043_A770 // Chapters
            | 0x1941_A469 // Attachments
    ) || id == id::SEGMENT
        || id == id::EBML
}

/// Unix time of the Matroska epoch, 2001-01-01T00:00:00 UTC, in microseconds.
const MATROSKA_EPOCH_UNIX_US: i128 = 978_307_200 * 1_000_000;

/// What a recording's header says, and where its parts are.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// Picture size, title and start time (DateUTC; 0 when the file has none).
    pub info: TrackInfo,
    /// The MJPEG track's number.
    pub track: u64,
    /// Nanoseconds per timestamp tick.
    pub timestamp_scale_ns: u64,
    /// The Info Duration, in microseconds (a finished file has one).
    pub duration_us: Option<u64>,
    /// File offset of the Segment's content (positions in SeekHead and Cues count from here).
    pub data_start: u64,
    /// File offset where the Segment ends, if its size is known (a finished file).
    pub data_end: Option<u64>,
    /// File offset of the first element after the header: the first Cluster, or where it will be.
    pub first_cluster: u64,
    /// File offset of the Cues, if the SeekHead points at them.
    pub cues_at: Option<u64>,
}

/// A cue point: a cluster's time and where it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cue {
    /// Media time in ticks (see [`Segment::timestamp_scale_ns`]).
    pub ticks: u64,
    /// File offset of the Cluster.
    pub cluster_at: u64,
}

/// One frame of a recording: where its JPEG is in the file, and when it was captured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameRef {
    /// Media time (since the segment's start) in ticks.
    pub ticks: u64,
    /// Media time in microseconds.
    pub media_us: u64,
    /// Capture time, in microseconds since the Unix epoch (the segment's start plus the media time).
    pub capture_unix_micros: u64,
    /// File offsets of the JPEG's bytes.
    pub data: Range<u64>,
    /// File offset of the Cluster the frame is in.
    pub cluster_at: u64,
}

/// Reads a recording's header: the EBML header, then the Segment's elements up to its first Cluster.
pub fn open<S: ReadAt + ?Sized>(src: &S) -> Result<Segment, MkvError> {
    // A header is a few hundred bytes: the first read is small, a second one reads up to the limit.
    match open_within(src, FIRST_READ) {
        Err(MkvError::Invalid(why)) if why == HEADER_TOO_LONG => open_within(src, MAX_HEADER),
        r => r,
    }
}

/// Bytes read for a header at first.
const FIRST_READ: u64 = 16 << 10;

/// What [`open_within`] says when the header did not fit in what it read.
const HEADER_TOO_LONG: &str = "a header longer than the bytes read";

fn open_within<S: ReadAt + ?Sized>(src: &S, limit: u64) -> Result<Segment, MkvError> {
    let file_len = src.file_len();
    let mut buf = vec![0u8; file_len.min(limit) as usize];
    let n = read_full(src, 0, &mut buf)?;
    buf.truncate(n);
    let whole = (n as u64) >= file_len;
    let short = || {
        if whole {
            MkvError::Truncated
        } else {
            invalid(HEADER_TOO_LONG)
        }
    };
    // EBML header.
    let ebml = match head_in(&buf, 0)? {
        Parsed::Got(h) => h,
        Parsed::Short => return Err(short()),
    };
    if ebml.id != id::EBML {
        return Err(invalid("no EBML header"));
    }
    let ebml_end = ebml
        .end()
        .filter(|&e| e <= MAX_HEADER_ELEMENT)
        .ok_or_else(|| invalid("an EBML header of unknown or huge size"))?;
    let body = buf
        .get(ebml.data as usize..ebml_end as usize)
        .ok_or_else(short)?;
    let doc_type = children(body)?
        .into_iter()
        .find(|(i, _)| *i == id::DOC_TYPE)
        .map(|(_, v)| v);
    if !matches!(doc_type, Some(b"matroska") | Some(b"webm")) {
        return Err(invalid("the DocType is not matroska"));
    }
    // Segment.
    let seg = match head_in(&buf[ebml_end as usize..], ebml_end)? {
        Parsed::Got(h) => h,
        Parsed::Short => return Err(short()),
    };
    if seg.id != id::SEGMENT {
        return Err(invalid("no Segment after the EBML header"));
    }
    let data_start = seg.data;
    let data_end = seg.end();
    let mut segment = Segment {
        info: TrackInfo {
            width: 0,
            height: 0,
            title: String::new(),
            start_unix_micros: 0,
        },
        track: 0,
        timestamp_scale_ns: crate::mkv::TIMESTAMP_SCALE_NS,
        duration_us: None,
        data_start,
        data_end,
        first_cluster: data_start,
        cues_at: None,
    };
    let mut duration_ticks: Option<f64> = None;
    let mut found_tracks = false;
    let mut saw_tracks = false;
    let mut pos = data_start;
    loop {
        let rel = pos as usize;
        if rel >= buf.len() {
            if !whole {
                return Err(short());
            }
            // The file ends after the header: no cluster yet.
            break;
        }
        let h = match head_in(&buf[rel..], pos)? {
            Parsed::Got(h) => h,
            Parsed::Short if whole => break,
            Parsed::Short => return Err(short()),
        };
        if h.id == id::CLUSTER {
            break;
        }
        let end = h
            .end()
            .ok_or_else(|| invalid(format!("element {:#x} of unknown size", h.id)))?;
        let known = |i: u32| matches!(i, id::SEEK_HEAD | id::INFO | id::TRACKS);
        if known(h.id) {
            if end - h.data > MAX_HEADER_ELEMENT {
                return Err(invalid(format!(
                    "a header element of {} bytes",
                    end - h.data
                )));
            }
            let Some(body) = buf.get(h.data as usize..end as usize) else {
                if whole {
                    // The header is still being written.
                    return Err(MkvError::Truncated);
                }
                return Err(short());
            };
            match h.id {
                id::SEEK_HEAD => {
                    for (i, seek) in children(body)? {
                        if i != id::SEEK {
                            continue;
                        }
                        let c = children(seek)?;
                        let target = c.iter().find(|(i, _)| *i == id::SEEK_ID).map(|(_, v)| *v);
                        let at = c.iter().find(|(i, _)| *i == id::SEEK_POSITION);
                        if let (Some(target), Some((_, at))) = (target, at) {
                            if uint(target)? == u64::from(id::CUES) {
                                segment.cues_at = Some(data_start.saturating_add(uint(at)?));
                            }
                        }
                    }
                }
                id::INFO => {
                    for (i, v) in children(body)? {
                        match i {
                            id::TIMESTAMP_SCALE => {
                                let s = uint(v)?;
                                if s == 0 {
                                    return Err(invalid("a TimestampScale of 0"));
                                }
                                segment.timestamp_scale_ns = s;
                            }
                            id::DURATION => duration_ticks = float(v),
                            id::DATE_UTC => {
                                let ns = i64::from_be_bytes(
                                    v.try_into().map_err(|_| invalid("a DateUTC not 8 bytes"))?,
                                );
                                let us = i128::from(ns) / 1000 + MATROSKA_EPOCH_UNIX_US;
                                segment.info.start_unix_micros =
                                    us.clamp(0, u64::MAX as i128) as u64;
                            }
                            id::TITLE => {
                                segment.info.title = String::from_utf8_lossy(
                                    &v[..v.len().min(crate::mkv::MAX_TITLE)],
                                )
                                .into_owned()
                            }
                            _ => {}
                        }
                    }
                }
                _ => {
                    saw_tracks = true;
                    for (i, entry) in children(body)? {
                        if i != id::TRACK_ENTRY || found_tracks {
                            continue;
                        }
                        let mut number = None;
                        let mut codec: &[u8] = b"";
                        let mut size = (0u64, 0u64);
                        for (i, v) in children(entry)? {
                            match i {
                                id::TRACK_NUMBER => number = Some(uint(v)?),
                                id::CODEC_ID => codec = v,
                                id::VIDEO => {
                                    for (i, v) in children(v)? {
                                        match i {
                                            id::PIXEL_WIDTH => size.0 = uint(v)?,
                                            id::PIXEL_HEIGHT => size.1 = uint(v)?,
                                            _ => {}
                                        }
                                    }
                                }
                                _ => {}
                            }
                        }
                        if codec == b"V_MJPEG" {
                            segment.track = number
                                .filter(|&n| n > 0)
                                .ok_or_else(|| invalid("the MJPEG track has no track number"))?;
                            segment.info.width = size.0.min(u16::MAX.into()) as u16;
                            segment.info.height = size.1.min(u16::MAX.into()) as u16;
                            found_tracks = true;
                        }
                    }
                }
            }
        }
        pos = end;
        if data_end.is_some_and(|e| pos >= e) {
            break;
        }
    }
    if !saw_tracks && whole {
        // The header is still being written.
        return Err(MkvError::Truncated);
    }
    if !found_tracks {
        return Err(MkvError::Unsupported("no MJPEG video track".into()));
    }
    segment.first_cluster = pos;
    segment.duration_us = duration_ticks
        .filter(|d| d.is_finite() && *d >= 0.0)
        .map(|d| (d * segment.timestamp_scale_ns as f64 / 1000.0).min(u64::MAX as f64) as u64);
    Ok(segment)
}

impl Segment {
    /// Media time in microseconds of `ticks`.
    pub fn ticks_to_us(&self, ticks: u64) -> u64 {
        let us = u128::from(ticks) * u128::from(self.timestamp_scale_ns) / 1000;
        us.min(u128::from(u64::MAX)) as u64
    }

    /// Ticks of a media time in microseconds (rounded down).
    pub fn us_to_ticks(&self, us: u64) -> u64 {
        let t = u128::from(us) * 1000 / u128::from(self.timestamp_scale_ns.max(1));
        t.min(u128::from(u64::MAX)) as u64
    }

    /// Where the Segment's content ends now: its size, or the file's length while it is written.
    fn end<S: ReadAt + ?Sized>(&self, src: &S) -> u64 {
        self.data_end.unwrap_or(u64::MAX).min(src.file_len())
    }

    /// The cue points, in file order (at most [`MAX_CUE_POINTS`]); none for a file without Cues.
    pub fn cues<S: ReadAt + ?Sized>(&self, src: &S) -> Result<Vec<Cue>, MkvError> {
        let Some(at) = self.cues_at else {
            return Ok(Vec::new());
        };
        let Some(h) = head_at(src, at)? else {
            return Ok(Vec::new());
        };
        if h.id != id::CUES {
            return Err(invalid("the SeekHead's Cues position holds something else"));
        }
        let Some(body) = content(src, &h, MAX_CUES_BYTES)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (i, point) in children(&body)? {
            if i != id::CUE_POINT {
                continue;
            }
            if out.len() >= MAX_CUE_POINTS {
                break;
            }
            let mut time = None;
            let mut cluster = None;
            for (i, v) in children(point)? {
                match i {
                    id::CUE_TIME => time = Some(uint(v)?),
                    id::CUE_TRACK_POSITIONS => {
                        for (i, v) in children(v)? {
                            if i == id::CUE_CLUSTER_POSITION {
                                cluster = Some(uint(v)?);
                            }
                        }
                    }
                    _ => {}
                }
            }
            if let (Some(ticks), Some(pos)) = (time, cluster) {
                out.push(Cue {
                    ticks,
                    cluster_at: self.data_start.saturating_add(pos),
                });
            }
        }
        Ok(out)
    }

    /// The Cluster at file offset `at`: its timestamp (ticks) and where the next level-1 element begins.
    /// `None` if the file ends before the cluster's timestamp (or, for an unknown-size cluster being
    /// written, that is all there is yet: then `next` is the file's end).
    pub fn cluster_at<S: ReadAt + ?Sized>(
        &self,
        src: &S,
        at: u64,
    ) -> Result<Option<ClusterHead>, MkvError> {
        let Some(h) = head_at(src, at)? else {
            return Ok(None);
        };
        if h.id != id::CLUSTER {
            return Err(invalid(format!("no Cluster at {at}")));
        }
        let end = self.end(src);
        let limit = h.end().map_or(end, |e| e.min(end));
        let mut pos = h.data;
        let mut ticks = None;
        // Walk the children: the Timestamp comes first in practice; an unknown-size cluster ends at the
        // next level-1 element.
        while pos < limit {
            let Some(c) = head_at(src, pos)? else {
                break;
            };
            if h.size.is_none() && is_top_level(c.id) {
                break;
            }
            let Some(c_end) = c.end() else {
                return Err(invalid("an element of unknown size in a Cluster"));
            };
            if c.id == id::TIMESTAMP && ticks.is_none() {
                match content(src, &c, 8)? {
                    Some(v) => ticks = Some(uint(&v)?),
                    None => return Ok(None),
                }
                if h.size.is_some() {
                    // A sized cluster's end is known: no need to walk its blocks.
                    pos = limit;
                    break;
                }
            }
            if c_end > end {
                // Cut by the end of the file (being written).
                pos = end;
                break;
            }
            pos = c_end;
        }
        let Some(ticks) = ticks else {
            return Ok(None);
        };
        let next = h.end().unwrap_or(pos);
        Ok(Some(ClusterHead { at, ticks, next }))
    }

    /// Every cluster from file offset `from` (a Cluster's), in order, by scanning: for a file without Cues.
    /// Stops at the end of the segment, or of what is written.
    pub fn scan<'a, S: ReadAt + ?Sized>(&'a self, src: &'a S, from: u64) -> Scan<'a, S> {
        Scan {
            segment: self,
            src,
            pos: from,
            done: false,
        }
    }

    /// File offset of the cluster to read from to reach media time `ticks`: the last cluster starting at or
    /// before it (the first cluster if `ticks` is before it); `None` when the file has no cluster yet.
    /// Uses the Cues when there are some, then scans forward from the last cue at or before `ticks` (which
    /// also covers clusters past the Cues' limit).
    pub fn seek<S: ReadAt + ?Sized>(&self, src: &S, ticks: u64) -> Result<Option<u64>, MkvError> {
        // A garbled index is not fatal: the clusters can still be scanned.
        let cues = self.cues(src).unwrap_or_default();
        let from = cues
            .iter()
            .take_while(|c| c.ticks <= ticks)
            .last()
            .map_or(self.first_cluster, |c| c.cluster_at);
        let mut best = None;
        for cluster in self.scan(src, from) {
            let cluster = cluster?;
            if cluster.ticks > ticks && best.is_some() {
                break;
            }
            best = Some(cluster.at);
            if cluster.ticks > ticks {
                break;
            }
        }
        Ok(best)
    }

    /// A cursor over the frames from file offset `at` (a Cluster's, or [`Segment::first_cluster`]).
    pub fn frames(&self, at: u64) -> Frames {
        Frames {
            segment: self.clone(),
            pos: at,
            cluster: None,
        }
    }

    /// The frame showing at media time `ticks`: the last one at or before it (the first frame if `ticks` is
    /// before it), and a cursor at the frame after it. `None` when the file has no frame yet.
    pub fn frame_at<S: ReadAt + ?Sized>(
        &self,
        src: &S,
        ticks: u64,
    ) -> Result<Option<(FrameRef, Frames)>, MkvError> {
        let Some(at) = self.seek(src, ticks)? else {
            return Ok(None);
        };
        let mut frames = self.frames(at);
        let mut shown: Option<(FrameRef, Frames)> = None;
        while let Some(f) = frames.next(src)? {
            if f.ticks > ticks {
                if shown.is_none() {
                    return Ok(Some((f, frames)));
                }
                // The shown frame's cursor is right before this one.
                break;
            }
            shown = Some((f, frames.clone()));
        }
        Ok(shown)
    }
}

/// A cluster's start, timestamp and where the element after it begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterHead {
    /// File offset of the Cluster.
    pub at: u64,
    /// Its timestamp, in ticks.
    pub ticks: u64,
    /// File offset of the next element after it (the end of what is written, for the last one).
    pub next: u64,
}

/// The clusters of a segment, by scanning (see [`Segment::scan`]).
pub struct Scan<'a, S: ?Sized> {
    segment: &'a Segment,
    src: &'a S,
    pos: u64,
    done: bool,
}

impl<S: ReadAt + ?Sized> Iterator for Scan<'_, S> {
    type Item = Result<ClusterHead, MkvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let end = self.segment.end(self.src);
        loop {
            if self.pos >= end {
                self.done = true;
                return None;
            }
            let h = match head_at(self.src, self.pos) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            if h.id != id::CLUSTER {
                // Cues, Tags, Voids...: skipped whole.
                match h.end() {
                    Some(e) if e > self.pos => {
                        self.pos = e;
                        continue;
                    }
                    _ => {
                        self.done = true;
                        return Some(Err(invalid(format!(
                            "element {:#x} of unknown size between clusters",
                            h.id
                        ))));
                    }
                }
            }
            return match self.segment.cluster_at(self.src, self.pos) {
                Ok(Some(c)) => {
                    if c.next <= self.pos {
                        self.done = true;
                    }
                    self.pos = c.next;
                    Some(Ok(c))
                }
                Ok(None) => {
                    self.done = true;
                    None
                }
                Err(e) => {
                    self.done = true;
                    Some(Err(e))
                }
            };
        }
    }
}

/// The cluster a [`Frames`] cursor is in.
#[derive(Clone, Copy, Debug)]
struct InCluster {
    at: u64,
    ticks: u64,
    /// Where it ends, if its size is known.
    end: Option<u64>,
}

/// A cursor over a segment's frames (see [`Segment::frames`]). At the end of what is written it returns
/// `None` and stays where it is, so that calling [`Frames::next`] again later reads what was added since.
#[derive(Clone, Debug)]
pub struct Frames {
    segment: Segment,
    pos: u64,
    cluster: Option<InCluster>,
}

impl Frames {
    /// The file offset it reads from next.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next frame, or `None` at the end of the segment or of what is written so far.
    pub fn next<S: ReadAt + ?Sized>(&mut self, src: &S) -> Result<Option<FrameRef>, MkvError> {
        loop {
            let end = self.segment.end(src);
            if let Some(c) = self.cluster {
                if c.end.is_some_and(|e| self.pos >= e) {
                    self.cluster = None;
                }
            }
            if self.pos >= end {
                return Ok(None);
            }
            let Some(h) = head_at(src, self.pos)? else {
                return Ok(None);
            };
            match h.id {
                id::CLUSTER => {
                    // A sized cluster's end must lie within the segment's.
                    if let (Some(e), Some(seg_end)) = (h.end(), self.segment.data_end) {
                        if e > seg_end {
                            return Err(invalid("a Cluster past the Segment's end"));
                        }
                    }
                    self.cluster = Some(InCluster {
                        at: h.at,
                        ticks: 0,
                        end: h.end(),
                    });
                    self.pos = h.data;
                    continue;
                }
                _ if self.cluster.is_some_and(|c| c.end.is_none()) && is_top_level(h.id) => {
                    // The end of an unknown-size cluster.
                    self.cluster = None;
                }
                _ => {}
            }
            let Some(h_end) = h.end() else {
                return Err(invalid(format!("element {:#x} of unknown size", h.id)));
            };
            if let Some(c_end) = self.cluster.and_then(|c| c.end) {
                if h_end > c_end {
                    return Err(invalid("an element past its Cluster's end"));
                }
            }
            if h_end > end {
                if self.segment.data_end.is_some_and(|e| h_end > e) {
                    return Err(invalid("an element past the Segment's end"));
                }
                // Not all written yet.
                return Ok(None);
            }
            let Some(cluster) = self.cluster.as_mut() else {
                // Between clusters (Cues, Tags, Void): skipped.
                self.pos = h_end;
                continue;
            };
            match h.id {
                id::TIMESTAMP => {
                    let v = content(src, &h, 8)?.ok_or(MkvError::Truncated)?;
                    cluster.ticks = uint(&v)?;
                }
                id::SIMPLE_BLOCK => {
                    let size = h_end - h.data;
                    if size > MAX_BLOCK {
                        return Err(invalid(format!("a block of {size} bytes")));
                    }
                    let mut b = [0u8; 11];
                    let n = read_full(src, h.data, &mut b[..(size as usize).min(11)])?;
                    let (track, tl) = match vint(&b[..n])? {
                        Parsed::Got((Some(t), tl)) => (t, tl),
                        _ => return Err(invalid("a block without a track number")),
                    };
                    let Some(rest) = b[..n].get(tl..tl + 3) else {
                        return Err(invalid("a block shorter than its header"));
                    };
                    let rel = i16::from_be_bytes([rest[0], rest[1]]);
                    let laced = rest[2] & 0x06 != 0;
                    self.pos = h_end;
                    if track != self.segment.track || laced {
                        continue;
                    }
                    let ticks = if rel >= 0 {
                        cluster.ticks.saturating_add(rel as u64)
                    } else {
                        cluster.ticks.saturating_sub(rel.unsigned_abs().into())
                    };
                    let media_us = self.segment.ticks_to_us(ticks);
                    return Ok(Some(FrameRef {
                        ticks,
                        media_us,
                        capture_unix_micros: self
                            .segment
                            .info
                            .start_unix_micros
                            .saturating_add(media_us),
                        data: h.data + tl as u64 + 3..h_end,
                        cluster_at: cluster.at,
                    }));
                }
                _ => {}
            }
            self.pos = h_end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mkv::{MkvWriter, CLUSTER_SPAN_MS};
    use proptest::prelude::*;

    const START: u64 = 1_700_000_000_123_000;

    fn info() -> TrackInfo {
        TrackInfo {
            width: 640,
            height: 480,
            title: "yard".into(),
            start_unix_micros: START,
        }
    }

    /// A file of `frames` (payload, capture time), finished or not, and each frame's ticks as written.
    fn file(frames: &[(Vec<u8>, u64)], finish: bool) -> (Vec<u8>, Vec<u64>) {
        let mut w = MkvWriter::new(info());
        let mut out = w.header().to_vec();
        let mut ticks = Vec::new();
        let mut last = 0;
        for (jpeg, t) in frames {
            out.extend(w.frame(jpeg, *t));
            last = (t.saturating_sub(START) / 1000).max(last);
            ticks.push(last);
        }
        if finish {
            let fin = w.finish();
            out.extend_from_slice(&fin.tail);
            for p in fin.patches {
                out[p.offset as usize..p.offset as usize + p.bytes.len()].copy_from_slice(&p.bytes);
            }
        }
        (out, ticks)
    }

    fn all_frames(src: &[u8], seg: &Segment) -> Result<Vec<FrameRef>, MkvError> {
        let mut f = seg.frames(seg.first_cluster);
        let mut out = Vec::new();
        while let Some(x) = f.next(src)? {
            out.push(x);
        }
        Ok(out)
    }

    /// 30 fps for `seconds`, payloads of varied sizes.
    fn steady(seconds: u64) -> Vec<(Vec<u8>, u64)> {
        (0..seconds * 30)
            .map(|k| {
                (
                    vec![k as u8; 100 + (k as usize * 7) % 300],
                    START + k * 33_333,
                )
            })
            .collect()
    }

    #[test]
    fn the_header_reads_back_what_the_writer_wrote() {
        for finish in [false, true] {
            let frames = steady(3);
            let (f, _) = file(&frames, finish);
            let seg = open(&f[..]).unwrap();
            assert_eq!(seg.info, info());
            assert_eq!(seg.track, 1);
            assert_eq!(seg.timestamp_scale_ns, 1_000_000);
            assert_eq!(
                f[seg.first_cluster as usize..][..4],
                [0x1F, 0x43, 0xB6, 0x75]
            );
            assert_eq!(seg.cues_at.is_some(), finish);
            assert_eq!(seg.data_end.map(|e| e as usize), finish.then_some(f.len()));
            // Duration: the last frame (2966 ms) plus one interval.
            assert_eq!(seg.duration_us, finish.then_some((2966 + 33) * 1000));
        }
    }

    #[test]
    fn frames_read_back_byte_for_byte_with_their_times_finished_or_not() {
        let frames = steady(4);
        for finish in [false, true] {
            let (f, ticks) = file(&frames, finish);
            let seg = open(&f[..]).unwrap();
            let got = all_frames(&f, &seg).unwrap();
            assert_eq!(got.len(), frames.len());
            for ((g, (jpeg, _)), t) in got.iter().zip(&frames).zip(&ticks) {
                assert_eq!(&f[g.data.start as usize..g.data.end as usize], &jpeg[..]);
                assert_eq!(g.ticks, *t);
                assert_eq!(g.capture_unix_micros, START + t * 1000);
            }
        }
    }

    #[test]
    fn cues_point_at_every_cluster_and_scanning_finds_the_same() {
        let (f, _) = file(&steady(5), true);
        let seg = open(&f[..]).unwrap();
        let cues = seg.cues(&f[..]).unwrap();
        assert_eq!(cues.len(), 5);
        let scanned: Vec<ClusterHead> = seg
            .scan(&f[..], seg.first_cluster)
            .collect::<Result<_, _>>()
            .unwrap();
        let from_cues: Vec<(u64, u64)> = cues.iter().map(|c| (c.ticks, c.cluster_at)).collect();
        let from_scan: Vec<(u64, u64)> = scanned.iter().map(|c| (c.ticks, c.at)).collect();
        assert_eq!(from_cues, from_scan);
        // Unfinished: no Cues; the scan still finds the clusters.
        let (f, _) = file(&steady(5), false);
        let seg = open(&f[..]).unwrap();
        assert!(seg.cues(&f[..]).unwrap().is_empty());
        assert_eq!(seg.scan(&f[..], seg.first_cluster).count(), 5);
    }

    #[test]
    fn seeking_finds_the_frame_showing_at_a_time_and_reads_on_from_it() {
        let frames = steady(6);
        for finish in [false, true] {
            let (f, ticks) = file(&frames, finish);
            let seg = open(&f[..]).unwrap();
            for target in [0, 1, 33, 34, 999, 1000, 2500, 3033, 5966, 9999] {
                let want = ticks.iter().rposition(|&t| t <= target).unwrap_or(0);
                let (frame, mut rest) = seg.frame_at(&f[..], target).unwrap().unwrap();
                assert_eq!(frame.ticks, ticks[want], "{target}");
                let next = rest.next(&f[..]).unwrap().map(|n| n.ticks);
                assert_eq!(next, ticks.get(want + 1).copied(), "{target}");
            }
        }
    }

    #[test]
    fn a_growing_file_is_read_up_to_its_last_whole_frame_and_on_as_it_grows() {
        let frames = steady(3);
        let (whole, ticks) = file(&frames, false);
        let header = MkvWriter::new(info()).header().len();
        // Just the header: a segment with no frame yet.
        let seg = open(&whole[..header]).unwrap();
        assert!(seg.frame_at(&whole[..header], 0).unwrap().is_none());
        let mut cursor = seg.frames(seg.first_cluster);
        let mut got = Vec::new();
        // The file grows by uneven steps; the cursor resumes where it stopped.
        let mut len = header;
        while len < whole.len() {
            len = (len + 977).min(whole.len());
            while let Some(f) = cursor.next(&whole[..len]).unwrap() {
                assert!(f.data.end as usize <= len);
                got.push(f.ticks);
            }
        }
        assert_eq!(got, ticks);
    }

    #[test]
    fn a_file_cut_in_its_header_is_truncated_and_garbage_is_invalid() {
        let (f, _) = file(&steady(1), false);
        for cut in [0, 1, 4, 30, 60] {
            assert!(matches!(open(&f[..cut]), Err(MkvError::Truncated)), "{cut}");
        }
        assert!(matches!(
            open(&b"GIF89a......"[..]),
            Err(MkvError::Invalid(_))
        ));
        assert!(matches!(open(&[0u8; 64][..]), Err(MkvError::Invalid(_))));
        // Another codec: not ours to replay.
        let mut other = f.clone();
        let at = other.windows(7).position(|w| w == b"V_MJPEG").unwrap();
        other[at..at + 7].copy_from_slice(b"V_OTHER");
        assert!(matches!(open(&other[..]), Err(MkvError::Unsupported(_))));
    }

    #[test]
    fn a_header_longer_than_the_first_read_is_read_whole() {
        let frames = steady(2);
        let (f, ticks) = file(&frames, false);
        let seg = open(&f[..]).unwrap();
        // A 40 KB Void between the Segment's start and the Info.
        let mut big = f[..seg.data_start as usize].to_vec();
        crate::mkv::ebml::write_void(&mut big, 40_000);
        big.extend_from_slice(&f[seg.data_start as usize..]);
        let seg = open(&big[..]).unwrap();
        assert_eq!(seg.info, info());
        let got: Vec<u64> = all_frames(&big, &seg)
            .unwrap()
            .iter()
            .map(|g| g.ticks)
            .collect();
        assert_eq!(got, ticks);
    }

    #[test]
    fn sizes_and_times_from_the_file_are_bounded() {
        let (mut f, _) = file(&steady(1), true);
        let seg = open(&f[..]).unwrap();
        // A block claiming 2^40 bytes inside a sized segment: an error, not an allocation.
        let block = seg.frames(seg.first_cluster).next(&f[..]).unwrap().unwrap();
        let head = block.data.start as usize - 4;
        let size_at = f[..head].iter().rposition(|&b| b == 0xA3).unwrap() + 1;
        f[size_at] = 0x01;
        f[size_at + 1..size_at + 8].copy_from_slice(&[0, 0, 1, 0, 0, 0, 0]);
        let mut frames = seg.frames(seg.first_cluster);
        assert!(frames.next(&f[..]).is_err());
    }

    proptest! {
        #[test]
        fn any_recording_reads_back_and_seeks_right(
            steps in proptest::collection::vec((0u64..1_500_000, 1usize..600), 1..150),
            finish in any::<bool>(),
            targets in proptest::collection::vec(0u64..200_000, 1..8),
        ) {
            let mut t = START;
            let frames: Vec<_> = steps.iter().enumerate().map(|(k, &(d, len))| {
                t += d;
                (vec![k as u8; len], t)
            }).collect();
            let (f, ticks) = file(&frames, finish);
            let seg = open(&f[..]).unwrap();
            let got = all_frames(&f, &seg).unwrap();
            prop_assert_eq!(got.len(), frames.len());
            for (g, (jpeg, _)) in got.iter().zip(&frames) {
                prop_assert_eq!(&f[g.data.start as usize..g.data.end as usize], &jpeg[..]);
            }
            prop_assert_eq!(got.iter().map(|g| g.ticks).collect::<Vec<_>>(), ticks.clone());
            for target in targets {
                let want = ticks.iter().rposition(|&t| t <= target).unwrap_or(0);
                let (frame, _) = seg.frame_at(&f[..], target).unwrap().unwrap();
                prop_assert_eq!(frame.ticks, ticks[want]);
            }
            // Clusters are at most a span apart in media time, so a scan reads little per cluster.
            let clusters: Vec<_> = seg.scan(&f[..], seg.first_cluster).collect::<Result<_, _>>().unwrap();
            prop_assert!(clusters.windows(2).all(|c| c[1].ticks >= c[0].ticks + CLUSTER_SPAN_MS));
        }

        #[test]
        fn a_cut_file_reads_a_prefix_of_its_frames(
            n in 1u64..90,
            cut in 0.0f64..1.0,
            finish in any::<bool>(),
        ) {
            let frames = steady(3)[..n as usize].to_vec();
            let (f, ticks) = file(&frames, finish);
            let cut = (f.len() as f64 * cut) as usize;
            let part = &f[..cut];
            match open(part) {
                Ok(seg) => {
                    let got = all_frames(part, &seg).unwrap();
                    prop_assert!(got.len() <= frames.len());
                    for (g, (jpeg, _)) in got.iter().zip(&frames) {
                        prop_assert_eq!(&part[g.data.start as usize..g.data.end as usize], &jpeg[..]);
                    }
                    if let Some((frame, _)) = seg.frame_at(part, 1500).unwrap() {
                        prop_assert!(ticks.contains(&frame.ticks));
                    }
                }
                Err(MkvError::Truncated) => {}
                Err(e) => prop_assert!(false, "{e}"),
            }
        }

        #[test]
        fn garbled_bytes_never_panic(
            flips in proptest::collection::vec((0.0f64..1.0, any::<u8>()), 1..20),
            finish in any::<bool>(),
        ) {
            let (mut f, _) = file(&steady(2), finish);
            for (at, b) in flips {
                let i = (f.len() as f64 * at) as usize;
                f[i] = b;
            }
            if let Ok(seg) = open(&f[..]) {
                let _ = seg.cues(&f[..]);
                let _ = seg.scan(&f[..], seg.first_cluster).take(10_000).count();
                let _ = seg.frame_at(&f[..], 700);
                let mut frames = seg.frames(seg.first_cluster);
                for _ in 0..10_000 {
                    match frames.next(&f[..]) {
                        Ok(Some(fr)) => prop_assert!(fr.data.end as usize <= f.len()),
                        _ => break,
                    }
                }
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut f = MkvWriter::new(info()).header()[..40].to_vec();
            f.extend_from_slice(&bytes);
            for src in [&bytes[..], &f[..]] {
                if let Ok(seg) = open(src) {
                    let _ = seg.seek(src, 10);
                    let mut frames = seg.frames(seg.first_cluster);
                    for _ in 0..1000 {
                        if !matches!(frames.next(src), Ok(Some(_))) { break; }
                    }
                }
            }
        }
    }
}
