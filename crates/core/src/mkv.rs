//! Matroska (`.mkv`) bytes for recording a camera: one MJPEG video track whose blocks are the camera's
//! JPEGs, byte for byte, stamped with their capture times.
//!
//! The layout is chosen so that a file cut anywhere, as after `kill -9` or a power cut, plays up to its
//! last whole frame without a repair step:
//!
//! - the Segment and every Cluster have the EBML *unknown size*, so nothing written earlier has to be
//!   rewritten when the file grows: a reader takes a cluster to end where the next Cluster (or Cues)
//!   begins, or where the file ends;
//! - a new Cluster starts at least every [`CLUSTER_SPAN_MS`] of media time, so that a reader seeking in a
//!   file without Cues scans at most that much per cluster;
//! - everything a finished file adds (Cues, the SeekHead that points at them, the Info Duration) is
//!   optional: the header reserves their space with EBML Void elements, which [`MkvWriter::finish`] asks the
//!   caller to overwrite in place. A file that was never finished still has valid Voids there;
//! - when the file is finished, every Cluster's and the Segment's real size is written in place over the
//!   unknown-size marker (8 bytes wide, so the width never changes). Players accept unknown sizes, but
//!   stricter tools do not (mkvtoolnix's `mkvextract` and `mkvpropedit` call such a file "corrupted"), so a
//!   finished file has none; a file cut before it was finished keeps them and still plays. The patches are
//!   ordered clusters first and the Segment last, so a file cut between two of them is valid too (known and
//!   unknown sizes may be mixed).
//!
//! Like the rest of this crate the writer is sans-IO: it returns the bytes to append (and, at the end, the
//! bytes to overwrite at given offsets); the caller writes them and decides when to flush. It counts the
//! bytes it hands out to know where each cluster starts, so the caller must write all of them, in order,
//! starting with [`MkvWriter::header`].
//!
//! Why our own EBML writer rather than a crate (surveyed 2026-11): `webm` wraps C++ libwebm and names only
//! VP8/VP9/AV1 codec ids; `mkv` is an unfinished 2016 parser; the young `oxideav-mkv` muxes whole files
//! for its own media framework. None writes unknown-size clusters for a live file, and the part needed here
//! (one track, keyframe SimpleBlocks, Cues) is a few hundred lines, proven against ffprobe and ffmpeg in
//! `tests/mkv_ffprobe.rs`.
//!
//! Timestamps are in milliseconds (a TimestampScale of 1,000,000 ns, the default ffmpeg and mkvmerge
//! write and every player is tested with): finer than the jitter of a camera's capture times, and it keeps
//! the 16-bit block timestamps 32 s wide, far beyond the one-second clusters.

/// Nanoseconds per Matroska timestamp tick (Info TimestampScale).
pub const TIMESTAMP_SCALE_NS: u64 = 1_000_000;

/// Media time after which the next frame starts a new Cluster, in ticks (milliseconds).
pub const CLUSTER_SPAN_MS: u64 = 1_000;

/// Clusters indexed in Cues at most: 18 hours of one-second clusters, 16 bytes each. Later clusters are
/// still written, and a reader still finds them by scanning.
pub const MAX_CUES: usize = 1 << 16;

/// Clusters whose sizes [`MkvWriter::finish`] writes at most (12 days of one-second clusters, 8 bytes
/// each). A file with more keeps every cluster's unknown size (players still read it).
pub const MAX_SIZED_CLUSTERS: usize = 1 << 20;

/// Bytes of a track or segment title kept (cut at a character boundary).
pub const MAX_TITLE: usize = 256;

/// Bytes reserved after the Segment start for the SeekHead [`MkvWriter::finish`] writes there.
const SEEK_RESERVE: usize = 96;

/// Bytes of a Duration element with an 8-byte float: ID (2), size (1), value (8).
const DURATION_LEN: usize = 11;

/// Unix time of the Matroska epoch, 2001-01-01T00:00:00 UTC, in seconds.
const MATROSKA_EPOCH_UNIX_S: i128 = 978_307_200;

/// Element IDs, with their length marker bits, as the Matroska specification lists them.
pub mod id {
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const EBML_VERSION: u32 = 0x4286;
    pub const EBML_READ_VERSION: u32 = 0x42F7;
    pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
    pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
    pub const DOC_TYPE: u32 = 0x4282;
    pub const DOC_TYPE_VERSION: u32 = 0x4287;
    pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;
    pub const VOID: u32 = 0xEC;
    pub const SEGMENT: u32 = 0x1853_8067;
    pub const SEEK_HEAD: u32 = 0x114D_9B74;
    pub const SEEK: u32 = 0x4DBB;
    pub const SEEK_ID: u32 = 0x53AB;
    pub const SEEK_POSITION: u32 = 0x53AC;
    pub const INFO: u32 = 0x1549_A966;
    pub const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
    pub const DURATION: u32 = 0x4489;
    pub const DATE_UTC: u32 = 0x4461;
    pub const TITLE: u32 = 0x7BA9;
    pub const MUXING_APP: u32 = 0x4D80;
    pub const WRITING_APP: u32 = 0x5741;
    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_UID: u32 = 0x73C5;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const FLAG_LACING: u32 = 0x9C;
    pub const NAME: u32 = 0x536E;
    pub const CODEC_ID: u32 = 0x86;
    pub const VIDEO: u32 = 0xE0;
    pub const PIXEL_WIDTH: u32 = 0xB0;
    pub const PIXEL_HEIGHT: u32 = 0xBA;
    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const TIMESTAMP: u32 = 0xE7;
    pub const SIMPLE_BLOCK: u32 = 0xA3;
    pub const CUES: u32 = 0x1C53_BB6B;
    pub const CUE_POINT: u32 = 0xBB;
    pub const CUE_TIME: u32 = 0xB3;
    pub const CUE_TRACK_POSITIONS: u32 = 0xB7;
    pub const CUE_TRACK: u32 = 0xF7;
    pub const CUE_CLUSTER_POSITION: u32 = 0xF1;
}

/// EBML encoding: element IDs, variable-length sizes and the element types this muxer writes.
pub mod ebml {
    /// The largest size a variable-length integer of 8 bytes can carry (all ones means "unknown").
    pub const MAX_SIZE: u64 = (1 << 56) - 2;

    /// The unknown-size marker, 8 bytes wide (the width every reader recognises).
    pub const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

    /// Appends an element ID. IDs carry their own length marker, so this writes the value's bytes without
    /// leading zeros.
    pub fn write_id(out: &mut Vec<u8>, id: u32) {
        let bytes = id.to_be_bytes();
        let skip = (id.leading_zeros() / 8).min(3) as usize;
        out.extend_from_slice(&bytes[skip..]);
    }

    /// Bytes of the shortest variable-length integer that carries `n` as a size (1 to 8).
    pub fn size_len(n: u64) -> usize {
        (1..=8).find(|&w| n < (1u64 << (7 * w)) - 1).unwrap_or(8)
    }

    /// Appends `n` as a variable-length size exactly `width` bytes wide (1 to 8), for sizes that must keep
    /// their width when rewritten. `n` must fit (see [`size_len`]); larger values are cut to [`MAX_SIZE`]
    /// in 8 bytes, which no caller of this crate can reach (a buffer of 2^56 bytes).
    pub fn write_size_width(out: &mut Vec<u8>, n: u64, width: usize) {
        let width = width.clamp(size_len(n), 8);
        let n = n.min(MAX_SIZE);
        let marked = n | (1u64 << (7 * width));
        out.extend_from_slice(&marked.to_be_bytes()[8 - width..]);
    }

    /// Appends `n` as the shortest variable-length size.
    pub fn write_size(out: &mut Vec<u8>, n: u64) {
        write_size_width(out, n, size_len(n));
    }

    /// Appends an element's ID and size; its `len` bytes of content follow.
    pub fn write_head(out: &mut Vec<u8>, id: u32, len: u64) {
        write_id(out, id);
        write_size(out, len);
    }

    /// Appends an unsigned integer element in as few bytes as hold the value (at least one).
    pub fn write_uint(out: &mut Vec<u8>, id: u32, v: u64) {
        let len = (8 - v.leading_zeros() as usize / 8).max(1);
        write_head(out, id, len as u64);
        out.extend_from_slice(&v.to_be_bytes()[8 - len..]);
    }

    /// Appends a date element: signed nanoseconds since 2001-01-01T00:00:00 UTC, always 8 bytes.
    pub fn write_date(out: &mut Vec<u8>, id: u32, ns_since_2001: i64) {
        write_head(out, id, 8);
        out.extend_from_slice(&ns_since_2001.to_be_bytes());
    }

    /// Appends a float element as an 8-byte IEEE double.
    pub fn write_float(out: &mut Vec<u8>, id: u32, v: f64) {
        write_head(out, id, 8);
        out.extend_from_slice(&v.to_bits().to_be_bytes());
    }

    /// Appends a string (ASCII or UTF-8) element.
    pub fn write_str(out: &mut Vec<u8>, id: u32, s: &str) {
        write_bytes(out, id, s.as_bytes());
    }

    /// Appends an element whose content is `body`: binary data or already-encoded children.
    pub fn write_bytes(out: &mut Vec<u8>, id: u32, body: &[u8]) {
        write_head(out, id, body.len() as u64);
        out.extend_from_slice(body);
    }

    /// Appends a Void element exactly `total` bytes long, ID and size included (`total` is at least 2; a
    /// smaller value writes 2).
    pub fn write_void(out: &mut Vec<u8>, total: usize) {
        let total = total.max(2);
        // One byte of ID, then a size of 1 byte if the content fits it, else of 8.
        let width = if total - 2 < 127 { 1 } else { 8 };
        let content = total.saturating_sub(1 + width);
        write_id(out, super::id::VOID);
        write_size_width(out, content as u64, width);
        out.resize(out.len() + content, 0);
    }
}

/// What the recording is of, fixed for the whole file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackInfo {
    /// Frame size in pixels, as in the JPEGs' frame headers.
    pub width: u16,
    pub height: u16,
    /// The camera's name: the segment Title and the track Name (cut to [`MAX_TITLE`] bytes).
    pub title: String,
    /// Capture time of media time zero, in microseconds since the Unix epoch: the segment's DateUTC, and
    /// what every frame's capture time is counted from.
    pub start_unix_micros: u64,
}

/// Bytes to overwrite in place in a file already written: `bytes` go at byte `offset` of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patch {
    pub offset: u64,
    pub bytes: Vec<u8>,
}

/// What [`MkvWriter::finish`] asks of the caller: append `tail`, then apply the `patches`. Either may be
/// skipped (the file stays playable); together they give players the duration and an index for seeking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finish {
    pub tail: Vec<u8>,
    pub patches: Vec<Patch>,
}

/// Writes one MJPEG track into a Matroska file, frame by frame. See the module docs.
#[derive(Debug)]
pub struct MkvWriter {
    header: Vec<u8>,
    /// File offset of the Segment's content, which SeekHead and Cues positions count from.
    segment_start: u64,
    /// Segment positions of Info and Tracks.
    info_pos: u64,
    tracks_pos: u64,
    /// File offset of the Void that the Duration replaces.
    duration_at: u64,
    start_unix_micros: u64,
    /// Bytes handed out so far, header included: the file offset of the next byte.
    written: u64,
    /// Timestamp of the current cluster, once there is one.
    cluster: Option<u64>,
    /// Timestamp of the last frame, and the gap before it.
    last: Option<u64>,
    last_gap: u64,
    frames: u64,
    /// Cluster timestamps and segment positions, for the Cues.
    cues: Vec<(u64, u64)>,
    /// File offsets of every Cluster, to write their sizes at the end (empty once over
    /// [`MAX_SIZED_CLUSTERS`]).
    clusters: Vec<u64>,
    clusters_overflowed: bool,
}

/// `s` cut to at most `max` bytes at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl MkvWriter {
    /// A writer for a new file; its first bytes are [`MkvWriter::header`].
    pub fn new(info: TrackInfo) -> MkvWriter {
        use ebml::*;
        let title = cut(&info.title, MAX_TITLE);

        let mut h = Vec::with_capacity(256 + SEEK_RESERVE);
        let mut ebml_head = Vec::new();
        write_uint(&mut ebml_head, id::EBML_VERSION, 1);
        write_uint(&mut ebml_head, id::EBML_READ_VERSION, 1);
        write_uint(&mut ebml_head, id::EBML_MAX_ID_LENGTH, 4);
        write_uint(&mut ebml_head, id::EBML_MAX_SIZE_LENGTH, 8);
        write_str(&mut ebml_head, id::DOC_TYPE, "matroska");
        // SimpleBlock needs version 2; nothing here needs more.
        write_uint(&mut ebml_head, id::DOC_TYPE_VERSION, 2);
        write_uint(&mut ebml_head, id::DOC_TYPE_READ_VERSION, 2);
        write_bytes(&mut h, id::EBML, &ebml_head);

        write_id(&mut h, id::SEGMENT);
        h.extend_from_slice(&UNKNOWN_SIZE);
        let segment_start = h.len();
        write_void(&mut h, SEEK_RESERVE);

        let info_pos = h.len() - segment_start;
        let mut body = Vec::new();
        write_uint(&mut body, id::TIMESTAMP_SCALE, TIMESTAMP_SCALE_NS);
        write_str(&mut body, id::MUXING_APP, "mjpegd");
        write_str(&mut body, id::WRITING_APP, "mjpegd");
        let ns = (info.start_unix_micros as i128 - MATROSKA_EPOCH_UNIX_S * 1_000_000) * 1_000;
        write_date(
            &mut body,
            id::DATE_UTC,
            ns.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        );
        if !title.is_empty() {
            write_str(&mut body, id::TITLE, title);
        }
        let duration_in_body = body.len();
        write_void(&mut body, DURATION_LEN);
        write_head(&mut h, id::INFO, body.len() as u64);
        let duration_at = (h.len() + duration_in_body) as u64;
        h.extend_from_slice(&body);

        let tracks_pos = h.len() - segment_start;
        let mut video = Vec::new();
        write_uint(&mut video, id::PIXEL_WIDTH, info.width.into());
        write_uint(&mut video, id::PIXEL_HEIGHT, info.height.into());
        let mut entry = Vec::new();
        write_uint(&mut entry, id::TRACK_NUMBER, 1);
        // Unique per file is enough: the start time, mixed so that neighbouring starts differ in every
        // byte, and never zero (which the specification forbids).
        let uid = info.start_unix_micros.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        write_uint(&mut entry, id::TRACK_UID, uid);
        write_uint(&mut entry, id::TRACK_TYPE, 1);
        write_uint(&mut entry, id::FLAG_LACING, 0);
        if !title.is_empty() {
            write_str(&mut entry, id::NAME, title);
        }
        write_str(&mut entry, id::CODEC_ID, "V_MJPEG");
        write_bytes(&mut entry, id::VIDEO, &video);
        let mut tracks = Vec::new();
        write_bytes(&mut tracks, id::TRACK_ENTRY, &entry);
        write_bytes(&mut h, id::TRACKS, &tracks);

        MkvWriter {
            written: h.len() as u64,
            header: h,
            segment_start: segment_start as u64,
            info_pos: info_pos as u64,
            tracks_pos: tracks_pos as u64,
            duration_at,
            start_unix_micros: info.start_unix_micros,
            cluster: None,
            last: None,
            last_gap: 0,
            frames: 0,
            cues: Vec::new(),
            clusters: Vec::new(),
            clusters_overflowed: false,
        }
    }

    /// The first bytes of the file: EBML header, Segment start, Info and Tracks.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Bytes handed out so far, header included.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The bytes of one frame: a keyframe SimpleBlock holding `jpeg`, preceded by a new Cluster when one is
    /// due. `capture_unix_micros` is the frame's capture time; one before the start or before the previous
    /// frame's counts as the later of the two, so timestamps never go backwards.
    pub fn frame(&mut self, jpeg: &[u8], capture_unix_micros: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(jpeg.len() + 64);
        self.frame_head_into(jpeg.len(), capture_unix_micros, &mut out);
        out.extend_from_slice(jpeg);
        out
    }

    /// Like [`MkvWriter::frame`] without copying the JPEG: appends to `out` the bytes that go right before a
    /// JPEG of `jpeg_len` bytes, which the caller writes next (with a vectored write, say).
    pub fn frame_head_into(
        &mut self,
        jpeg_len: usize,
        capture_unix_micros: u64,
        out: &mut Vec<u8>,
    ) {
        let before = out.len();
        let us_per_tick = TIMESTAMP_SCALE_NS / 1_000;
        let mut t = capture_unix_micros.saturating_sub(self.start_unix_micros) / us_per_tick;
        if let Some(last) = self.last {
            t = t.max(last);
            self.last_gap = t - last;
        }
        self.last = Some(t);
        self.frames += 1;

        let cluster = match self.cluster {
            Some(c) if t - c < CLUSTER_SPAN_MS && t - c <= i16::MAX as u64 => c,
            _ => {
                let pos = self.written - self.segment_start;
                if self.cues.len() < MAX_CUES {
                    self.cues.push((t, pos));
                }
                if self.clusters.len() < MAX_SIZED_CLUSTERS && !self.clusters_overflowed {
                    self.clusters.push(self.written);
                } else {
                    self.clusters_overflowed = true;
                    self.clusters = Vec::new();
                }
                ebml::write_id(out, id::CLUSTER);
                out.extend_from_slice(&ebml::UNKNOWN_SIZE);
                ebml::write_uint(out, id::TIMESTAMP, t);
                self.cluster = Some(t);
                t
            }
        };
        // Track number 1 (as a 1-byte vint), the timestamp relative to the cluster, flags: keyframe.
        ebml::write_head(out, id::SIMPLE_BLOCK, 4 + jpeg_len as u64);
        out.push(0x81);
        out.extend_from_slice(&((t - cluster) as i16).to_be_bytes());
        out.push(0x80);
        self.written += (out.len() - before + jpeg_len) as u64;
    }

    /// Ends the file: Cues to append, and in-place patches for the Duration, a SeekHead, the size of every
    /// Cluster and, last, the size of the Segment. A file that never gets them still plays (see the module
    /// docs).
    pub fn finish(self) -> Finish {
        use ebml::*;
        let mut patches = Vec::new();
        let mut tail = Vec::new();
        let Some(last) = self.last else {
            return Finish { tail, patches };
        };
        // The last frame lasts as long as the gap before it (bounded by a cluster's span).
        let duration = last + self.last_gap.min(CLUSTER_SPAN_MS);
        let mut d = Vec::with_capacity(DURATION_LEN);
        write_float(&mut d, id::DURATION, duration as f64);
        patches.push(Patch {
            offset: self.duration_at,
            bytes: d,
        });

        let cues_pos = self.written - self.segment_start;
        let mut points = Vec::with_capacity(self.cues.len() * 20);
        for &(time, pos) in &self.cues {
            let mut tp = Vec::new();
            write_uint(&mut tp, id::CUE_TRACK, 1);
            write_uint(&mut tp, id::CUE_CLUSTER_POSITION, pos);
            let mut point = Vec::new();
            write_uint(&mut point, id::CUE_TIME, time);
            write_bytes(&mut point, id::CUE_TRACK_POSITIONS, &tp);
            write_bytes(&mut points, id::CUE_POINT, &point);
        }
        write_bytes(&mut tail, id::CUES, &points);

        let mut seeks = Vec::new();
        for (target, pos) in [
            (id::INFO, self.info_pos),
            (id::TRACKS, self.tracks_pos),
            (id::CUES, cues_pos),
        ] {
            let mut seek = Vec::new();
            let mut target_id = Vec::new();
            write_id(&mut target_id, target);
            write_bytes(&mut seek, id::SEEK_ID, &target_id);
            write_uint(&mut seek, id::SEEK_POSITION, pos);
            write_bytes(&mut seeks, id::SEEK, &seek);
        }
        let mut head = Vec::with_capacity(SEEK_RESERVE);
        write_bytes(&mut head, id::SEEK_HEAD, &seeks);
        // At most 68 bytes (three seeks with 8-byte positions): the rest stays Void.
        let rest = SEEK_RESERVE - head.len();
        write_void(&mut head, rest);
        patches.push(Patch {
            offset: self.segment_start,
            bytes: head,
        });

        // Real sizes over the unknown-size markers: each Cluster ends where the next begins, the last where
        // the Cues begin; the Segment ends with the Cues.
        let marker = UNKNOWN_SIZE.len() as u64;
        let cluster_id_len = 4;
        for (k, &at) in self.clusters.iter().enumerate() {
            let end = self.clusters.get(k + 1).copied().unwrap_or(self.written);
            let size = end.saturating_sub(at + cluster_id_len + marker);
            let mut b = Vec::with_capacity(8);
            write_size_width(&mut b, size, 8);
            patches.push(Patch {
                offset: at + cluster_id_len,
                bytes: b,
            });
        }
        let mut b = Vec::with_capacity(8);
        write_size_width(
            &mut b,
            self.written + tail.len() as u64 - self.segment_start,
            8,
        );
        patches.push(Patch {
            offset: self.segment_start - marker,
            bytes: b,
        });
        Finish { tail, patches }
    }
}

#[cfg(test)]
mod tests {
    use super::ebml::*;
    use super::*;
    use proptest::prelude::*;

    fn bytes(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut v = Vec::new();
        f(&mut v);
        v
    }

    #[test]
    fn ids_are_written_with_their_marker_bits_and_no_leading_zeros() {
        assert_eq!(bytes(|o| write_id(o, id::EBML)), [0x1A, 0x45, 0xDF, 0xA3]);
        assert_eq!(
            bytes(|o| write_id(o, id::TIMESTAMP_SCALE)),
            [0x2A, 0xD7, 0xB1]
        );
        assert_eq!(bytes(|o| write_id(o, id::DOC_TYPE)), [0x42, 0x82]);
        assert_eq!(bytes(|o| write_id(o, id::SIMPLE_BLOCK)), [0xA3]);
    }

    #[test]
    fn sizes_are_shortest_vints_and_avoid_the_all_ones_marker() {
        assert_eq!(bytes(|o| write_size(o, 0)), [0x80]);
        assert_eq!(bytes(|o| write_size(o, 1)), [0x81]);
        assert_eq!(bytes(|o| write_size(o, 126)), [0xFE]);
        // 127 in one byte would be 0xFF, "unknown".
        assert_eq!(bytes(|o| write_size(o, 127)), [0x40, 0x7F]);
        assert_eq!(bytes(|o| write_size(o, 128)), [0x40, 0x80]);
        assert_eq!(bytes(|o| write_size(o, 16_382)), [0x7F, 0xFE]);
        assert_eq!(bytes(|o| write_size(o, 16_383)), [0x20, 0x3F, 0xFF]);
        assert_eq!(
            bytes(|o| write_size(o, MAX_SIZE)),
            [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE]
        );
        // Too large to encode: cut to the largest size, never the unknown marker, never a panic.
        assert_eq!(
            bytes(|o| write_size(o, u64::MAX)),
            bytes(|o| write_size(o, MAX_SIZE))
        );
        assert_eq!(
            bytes(|o| write_size_width(o, 5, 8)),
            [0x01, 0, 0, 0, 0, 0, 0, 5]
        );
        // A width too small for the value is widened.
        assert_eq!(bytes(|o| write_size_width(o, 200, 1)), [0x40, 200]);
    }

    #[test]
    fn typed_elements_match_hand_encoded_bytes() {
        assert_eq!(bytes(|o| write_uint(o, 0xD7, 1)), [0xD7, 0x81, 0x01]);
        assert_eq!(bytes(|o| write_uint(o, 0xD7, 0)), [0xD7, 0x81, 0x00]);
        assert_eq!(
            bytes(|o| write_uint(o, 0xD7, 256)),
            [0xD7, 0x82, 0x01, 0x00]
        );
        assert_eq!(
            bytes(|o| write_uint(o, id::TIMESTAMP_SCALE, 1_000_000)),
            [0x2A, 0xD7, 0xB1, 0x83, 0x0F, 0x42, 0x40]
        );
        assert_eq!(
            bytes(|o| write_uint(o, 0xE7, u64::MAX)),
            [0xE7, 0x88, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        // 2000.0 = 0x409F_4000_0000_0000
        assert_eq!(
            bytes(|o| write_float(o, id::DURATION, 2000.0)),
            [0x44, 0x89, 0x88, 0x40, 0x9F, 0x40, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            bytes(|o| write_str(o, id::DOC_TYPE, "matroska")),
            b"\x42\x82\x88matroska"
        );
        // One second after the Matroska epoch.
        assert_eq!(
            bytes(|o| write_date(o, id::DATE_UTC, 1_000_000_000)),
            [0x44, 0x61, 0x88, 0, 0, 0, 0, 0x3B, 0x9A, 0xCA, 0x00]
        );
        assert_eq!(
            bytes(|o| write_bytes(o, id::VIDEO, &[0xB0, 0x81, 0x10])),
            [0xE0, 0x83, 0xB0, 0x81, 0x10]
        );
    }

    #[test]
    fn voids_have_exactly_the_requested_length() {
        assert_eq!(bytes(|o| write_void(o, 0)), [0xEC, 0x80]);
        assert_eq!(bytes(|o| write_void(o, 2)), [0xEC, 0x80]);
        let v = bytes(|o| write_void(o, DURATION_LEN));
        assert_eq!(v.len(), DURATION_LEN);
        assert_eq!(v[..2], [0xEC, 0x89]);
        for total in 2..400 {
            let v = bytes(|o| write_void(o, total));
            assert_eq!(v.len(), total);
            let (size, len) = read_vint(&v[1..]);
            assert_eq!(1 + len + size as usize, total);
        }
    }

    // A reader for what this muxer writes, enough to check it: the Segment and Clusters are entered,
    // every other element is skipped whole.

    /// A variable-length integer without its marker, and its length; `u64::MAX` for unknown.
    fn read_vint(b: &[u8]) -> (u64, usize) {
        let len = b[0].leading_zeros() as usize + 1;
        assert!(len <= 8, "bad vint");
        let mut v = (b[0] as u64) & (0xFF >> len);
        for &x in &b[1..len] {
            v = v << 8 | x as u64;
        }
        if v == (1u64 << (7 * len)) - 1 {
            v = u64::MAX;
        }
        (v, len)
    }

    fn read_id(b: &[u8]) -> (u32, usize) {
        let len = b[0].leading_zeros() as usize + 1;
        (b[..len].iter().fold(0, |a, &x| a << 8 | x as u32), len)
    }

    #[derive(Debug, Default)]
    struct Parsed {
        /// Segment position and timestamp of each cluster.
        clusters: Vec<(u64, u64)>,
        /// Cluster timestamp, relative timestamp and payload of each block.
        blocks: Vec<(u64, i16, Vec<u8>)>,
        /// Segment position of each top-level element, by ID.
        top: Vec<(u32, u64)>,
        segment_start: usize,
        /// Whether the Segment and the Clusters had their sizes (all of them, or none).
        sized: Option<bool>,
    }

    /// Parses a file of this muxer. A Segment or Cluster of known size must end exactly where the file or
    /// the next Cluster (or the Cues) begins.
    fn parse(file: &[u8]) -> Parsed {
        let mut p = Parsed::default();
        let mut pos = 0;
        // Where the open Cluster of known size must end.
        let mut cluster_end: Option<usize> = None;
        let sized = |p: &mut Parsed, known: bool| {
            assert_eq!(
                *p.sized.get_or_insert(known),
                known,
                "sizes all known or all unknown"
            );
        };
        while pos < file.len() {
            let at = pos;
            if matches!(read_id(&file[pos..]).0, id::CLUSTER | id::CUES) {
                if let Some(end) = cluster_end.take() {
                    assert_eq!(end, at, "a cluster's size reaches the next one");
                }
            }
            let (id, il) = read_id(&file[pos..]);
            let (size, sl) = read_vint(&file[pos + il..]);
            pos += il + sl;
            let seg_pos = at.wrapping_sub(p.segment_start) as u64;
            match id {
                id::SEGMENT => {
                    sized(&mut p, size != u64::MAX);
                    if size != u64::MAX {
                        assert_eq!(pos + size as usize, file.len(), "the segment's size");
                    }
                    p.segment_start = pos;
                    continue;
                }
                id::CLUSTER => {
                    sized(&mut p, size != u64::MAX);
                    cluster_end = (size != u64::MAX).then(|| pos + size as usize);
                    p.top.push((id, seg_pos));
                    p.clusters.push((seg_pos, u64::MAX));
                    continue;
                }
                id::TIMESTAMP => {
                    let v = file[pos..pos + size as usize]
                        .iter()
                        .fold(0, |a, &x| a << 8 | x as u64);
                    p.clusters.last_mut().unwrap().1 = v;
                }
                id::SIMPLE_BLOCK => {
                    let b = &file[pos..pos + size as usize];
                    assert_eq!(b[0], 0x81, "track 1");
                    assert_eq!(b[3], 0x80, "keyframe, no lacing");
                    let cluster = p.clusters.last().unwrap().1;
                    p.blocks
                        .push((cluster, i16::from_be_bytes([b[1], b[2]]), b[4..].to_vec()));
                }
                id::VOID => {}
                _ => p.top.push((id, seg_pos)),
            }
            pos += size as usize;
        }
        assert_eq!(pos, file.len(), "elements end with the file");
        if let Some(end) = cluster_end {
            assert_eq!(end, file.len(), "the last cluster's size");
        }
        p
    }

    /// `file` with `fin` applied: the tail appended, the patches written in place. Checks that the Void
    /// patches fill their Voids exactly and the size patches replace unknown-size markers.
    fn apply(file: &mut Vec<u8>, fin: &Finish) {
        file.extend_from_slice(&fin.tail);
        for p in &fin.patches {
            let at = p.offset as usize;
            if file[at] == 0xEC {
                let (size, len) = read_vint(&file[at + 1..]);
                assert_eq!(1 + len + size as usize, p.bytes.len());
            } else {
                assert_eq!(
                    file[at..at + 8],
                    UNKNOWN_SIZE,
                    "a size over the unknown marker"
                );
                assert_eq!(p.bytes.len(), 8);
            }
            file[at..at + p.bytes.len()].copy_from_slice(&p.bytes);
        }
    }

    const START: u64 = 1_700_000_000_000_000;

    fn writer() -> MkvWriter {
        MkvWriter::new(TrackInfo {
            width: 320,
            height: 240,
            title: "cam".into(),
            start_unix_micros: START,
        })
    }

    /// Header, then each (jpeg, capture time) as one frame.
    fn write_all(w: &mut MkvWriter, frames: &[(Vec<u8>, u64)]) -> Vec<u8> {
        let mut file = w.header().to_vec();
        for (jpeg, t) in frames {
            file.extend(w.frame(jpeg, *t));
        }
        assert_eq!(w.written(), file.len() as u64);
        file
    }

    fn absolute(p: &Parsed) -> Vec<u64> {
        p.blocks.iter().map(|b| b.0 + b.1 as u64).collect()
    }

    #[test]
    fn header_holds_info_and_one_mjpeg_track() {
        let w = writer();
        let h = w.header();
        assert_eq!(h[..4], [0x1A, 0x45, 0xDF, 0xA3]);
        let find = |needle: &[u8]| h.windows(needle.len()).any(|x| x == needle);
        assert!(find(b"\x42\x82\x88matroska"));
        assert!(find(b"\x86\x87V_MJPEG"));
        assert!(find(&[0xB0, 0x82, 0x01, 0x40])); // PixelWidth 320
        assert!(find(&[0xBA, 0x81, 0xF0])); // PixelHeight 240
        assert!(find(&[0x2A, 0xD7, 0xB1, 0x83, 0x0F, 0x42, 0x40])); // 1 ms
        assert!(find(b"\x4D\x80\x86mjpegd"));
        assert!(find(b"\x57\x41\x86mjpegd"));
        assert!(find(b"\x7B\xA9\x83cam"));
        // DateUTC: 1_700_000_000 s after 1970 is 721_692_800 s after 2001.
        let mut date = vec![0x44, 0x61, 0x88];
        date.extend((721_692_800i64 * 1_000_000_000).to_be_bytes());
        assert!(find(&date));
        let p = parse(h);
        let ids: Vec<u32> = p.top.iter().map(|t| t.0).collect();
        assert_eq!(ids, [id::EBML, id::INFO, id::TRACKS]);
        assert!(p.blocks.is_empty());
    }

    #[test]
    fn a_new_cluster_starts_after_one_second_of_media_time() {
        let mut w = writer();
        // 30 fps for 3.5 s.
        let frames: Vec<_> = (0..105u64)
            .map(|k| (vec![k as u8; 10], START + k * 33_333))
            .collect();
        let p = parse(&write_all(&mut w, &frames));
        assert_eq!(p.blocks.len(), 105);
        let times: Vec<u64> = p.clusters.iter().map(|c| c.1).collect();
        // Frame 30 is at 999.99 ms, counted as 999: still in the first cluster.
        assert_eq!(times, [0, 1033, 2033, 3033]);
        for b in &p.blocks {
            assert!((0..CLUSTER_SPAN_MS as i16).contains(&b.1), "{b:?}");
        }
        let abs = absolute(&p);
        assert!(abs.windows(2).all(|x| x[0] < x[1]));
        assert_eq!(abs[104], 104 * 33_333 / 1000);
        for (k, b) in p.blocks.iter().enumerate() {
            assert_eq!(b.2, vec![k as u8; 10], "payload copied as is");
        }
    }

    #[test]
    fn backwards_capture_times_are_clamped() {
        let mut w = writer();
        let ms = |m: u64| START + m * 1000;
        let frames = [
            (vec![1], START - 5_000_000), // before the start: 0
            (vec![2], ms(100)),
            (vec![3], ms(50)),
            (vec![4], 0),
            (vec![5], ms(200)),
        ];
        let p = parse(&write_all(&mut w, &frames));
        assert_eq!(absolute(&p), [0, 100, 100, 100, 200]);
        assert_eq!(p.clusters.len(), 1);
    }

    #[test]
    fn jumps_and_extreme_times_start_clusters_without_overflow() {
        let mut w = writer();
        let frames = [
            (vec![1], START),
            (vec![2], START + 3_600_000_000), // an hour later
            (vec![3], u64::MAX),
            (vec![4], u64::MAX),
        ];
        let p = parse(&write_all(&mut w, &frames));
        let end = (u64::MAX - START) / 1000;
        assert_eq!(absolute(&p), [0, 3_600_000, end, end]);
        let times: Vec<u64> = p.clusters.iter().map(|c| c.1).collect();
        assert_eq!(times, [0, 3_600_000, end]);
    }

    #[test]
    fn frame_head_plus_jpeg_is_frame() {
        let mut a = writer();
        let mut b = writer();
        for k in 0..70u64 {
            let jpeg = vec![0xAB; 300 + k as usize];
            let t = START + k * 20_000;
            let mut head = Vec::new();
            b.frame_head_into(jpeg.len(), t, &mut head);
            head.extend_from_slice(&jpeg);
            assert_eq!(a.frame(&jpeg, t), head);
        }
        assert_eq!(a.written(), b.written());
        assert_eq!(a.frames(), 70);
    }

    #[test]
    fn finish_appends_cues_and_patches_duration_and_seek_head() {
        let mut w = writer();
        let frames: Vec<_> = (0..60u64)
            .map(|k| (vec![k as u8; 50], START + k * 33_333))
            .collect();
        let mut file = write_all(&mut w, &frames);
        let unfinished = parse(&file);
        assert_eq!(unfinished.sized, Some(false));
        let fin = w.finish();
        // Duration, SeekHead, one size per cluster, the Segment's size last.
        assert_eq!(fin.patches.len(), 2 + unfinished.clusters.len() + 1);
        let segment_size_at = unfinished.segment_start as u64 - 8;
        assert_eq!(fin.patches.last().unwrap().offset, segment_size_at);
        apply(&mut file, &fin);
        let p = parse(&file);
        assert_eq!(p.sized, Some(true));
        assert_eq!(p.blocks, unfinished.blocks);
        let seg = p.segment_start;
        // The SeekHead comes first and points at Info, Tracks and Cues.
        assert_eq!(p.top[1], (id::SEEK_HEAD, 0));
        for target in [id::INFO, id::TRACKS, id::CUES] {
            let (_, pos) = *p.top.iter().find(|t| t.0 == target).unwrap();
            let mut seek = vec![0x53, 0xAB, 0x84];
            write_id(&mut seek, target);
            let sh = &file[seg..seg + SEEK_RESERVE];
            let i = sh.windows(7).position(|x| x == seek).unwrap();
            let (len, _) = read_vint(&sh[i + 9..]);
            let v = sh[i + 10..i + 10 + len as usize]
                .iter()
                .fold(0, |a, &x| a << 8 | x as u64);
            assert_eq!(v, pos);
        }
        // Duration: the last frame's time plus one frame interval.
        let d = bytes(|o| write_float(o, id::DURATION, (1966 + 33) as f64));
        assert!(file.windows(d.len()).any(|x| x == d));
        // One cue per cluster, pointing at it.
        let cues_at = seg + p.top.iter().find(|t| t.0 == id::CUES).unwrap().1 as usize;
        let cues = &file[cues_at..];
        for (pos, time) in &p.clusters {
            let mut tp = Vec::new();
            write_uint(&mut tp, id::CUE_TRACK, 1);
            write_uint(&mut tp, id::CUE_CLUSTER_POSITION, *pos);
            let mut point = Vec::new();
            write_uint(&mut point, id::CUE_TIME, *time);
            write_bytes(&mut point, id::CUE_TRACK_POSITIONS, &tp);
            assert!(cues.windows(point.len()).any(|x| x == point));
            assert_eq!(read_id(&file[seg + *pos as usize..]).0, id::CLUSTER);
        }
    }

    #[test]
    fn finishing_an_empty_file_changes_nothing() {
        let fin = writer().finish();
        assert!(fin.tail.is_empty() && fin.patches.is_empty());
    }

    #[test]
    fn long_titles_are_cut_at_a_character_boundary() {
        let w = MkvWriter::new(TrackInfo {
            width: 1,
            height: 1,
            title: "é".repeat(1000),
            start_unix_micros: 0,
        });
        let p = parse(w.header());
        assert_eq!(p.top.len(), 3);
        assert_eq!(cut("aé", 2), "a");
        assert!(w.header().len() < 1000);
    }

    proptest! {
        #[test]
        fn any_capture_times_give_monotonic_bounded_blocks(
            steps in proptest::collection::vec((-3_000_000i64..40_000_000, 0usize..2000), 1..120),
            start in 0u64..u64::MAX / 2,
        ) {
            let mut w = MkvWriter::new(TrackInfo { width: 640, height: 480, title: String::new(), start_unix_micros: start });
            let mut t = start as i64;
            let frames: Vec<_> = steps
                .iter()
                .enumerate()
                .map(|(k, &(d, len))| {
                    t = t.saturating_add(d);
                    (vec![k as u8; len], t.max(0) as u64)
                })
                .collect();
            let p = parse(&write_all(&mut w, &frames));
            prop_assert_eq!(p.blocks.len(), frames.len());
            let abs = absolute(&p);
            prop_assert!(abs.windows(2).all(|x| x[0] <= x[1]));
            for (b, f) in p.blocks.iter().zip(&frames) {
                prop_assert!((0..CLUSTER_SPAN_MS as i16).contains(&b.1));
                prop_assert_eq!(&b.2, &f.0);
            }
            prop_assert!(p.clusters.windows(2).all(|c| c[1].1 >= c[0].1 + CLUSTER_SPAN_MS));
            let mut file = write_all(&mut MkvWriter::new(TrackInfo { width: 640, height: 480, title: String::new(), start_unix_micros: start }), &frames);
            let fin = w.finish();
            prop_assert_eq!(fin.patches.len(), 2 + p.clusters.len() + 1);
            prop_assert_eq!(fin.patches[1].bytes.len(), SEEK_RESERVE);
            // Finished, every size is known and exact, and the blocks are the same.
            apply(&mut file, &fin);
            let done = parse(&file);
            prop_assert_eq!(done.sized, Some(true));
            prop_assert_eq!(done.blocks, p.blocks);
        }
    }
}
