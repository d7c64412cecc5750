//! Recording a camera to Matroska files, without losing a frame silently.
//!
//! The recorder sits where an HTTP stream client sits: a subscriber of the camera's hub under the `all`
//! policy, so it gets every frame in order and the hub's `--buffer-memory` is its budget. It writes each
//! frame's JPEG as it is (no re-encoding) into `.mkv` segments with [`mjpegd_core::mkv`], stamped with its
//! capture time. File work runs on the blocking pool, so a slow disk never stalls the runtime; while a
//! write is under way the recorder takes no frame, and the hub's backlog absorbs the wait. A disk that
//! stalls past that budget gets the recorder evicted like any slow `all` client: the frames it missed are
//! counted (`frames_lost`), the gap is logged with its sequence numbers, and recording goes on in a new
//! segment. A write that fails (disk full, read-only) counts its frame as lost, closes the segment, and the
//! next frame tries a new one. Viewers are never slowed: they do not wait for the recorder.
//!
//! Crash safety comes from the format (clusters of unknown size: a file cut anywhere plays up to its last
//! whole frame), from writing every frame to the kernel at once, from `fdatasync` about once a second,
//! and from a full `fsync` when a segment closes (after its index and duration are written in place).
//!
//! A segment holds [`RecordSettings::segment`] of capture time; the frame that crosses the boundary is the
//! first of the next file, so no frame is missing or doubled across segments. File names sort in time
//! order and carry the camera's name: `NAME-20261124T170312.345Z.mkv`. A camera's files are those of exactly
//! that form ([`segment_start`]), so cameras sharing a folder (`a` and `a-b`) never list, serve or delete
//! each other's.
//!
//! A change of picture size starts a new segment (its header says the size), but at most once per
//! [`SIZE_CHANGE_HOLD`] of a segment: a source that keeps changing sizes would otherwise make a file per
//! frame. A change within that time of the segment's start is absorbed: the frame goes into the segment as
//! it is (an MJPEG frame carries its own size, and players and ffmpeg decode each frame by its own header),
//! it is counted (`size_changes_absorbed`), and logged once per [`SIZE_LOG_EVERY`].

use crate::hub::{ClientMeta, SharedHub};
use mjpegd_core::mkv::{MkvWriter, TrackInfo};
use mjpegd_core::parse::jpeg::check;
use mjpegd_core::{Frame, Policy};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// What and where to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordSettings {
    /// The folder of this camera's segments.
    pub dir: PathBuf,
    /// Capture time per segment file.
    pub segment: Duration,
    /// Segments that ended longer ago than this are deleted.
    pub keep: Option<Duration>,
    /// The camera's segments together stay within this many bytes (oldest deleted first).
    pub max_size: Option<u64>,
}

/// Whether a recorder writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecordingState {
    #[default]
    Recording,
    /// Writes fail; retried with each frame.
    Failing,
    Stopped,
}

impl RecordingState {
    /// Every state, for reporting one gauge per state.
    pub const ALL: [RecordingState; 3] = [
        RecordingState::Recording,
        RecordingState::Failing,
        RecordingState::Stopped,
    ];

    /// The name `/state` and `/metrics` use.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingState::Recording => "recording",
            RecordingState::Failing => "failing",
            RecordingState::Stopped => "stopped",
        }
    }
}

/// What a camera's recorder is doing, for `/state`.
#[derive(Clone, Debug, Default)]
pub struct RecordingStatus {
    pub dir: PathBuf,
    pub state: RecordingState,
    pub segment: Option<String>,
    pub segment_started: Option<SystemTime>,
    pub frames_written: u64,
    pub frames_lost: u64,
    pub bytes: u64,
    pub last_error: Option<String>,
    /// Frames of the segments this run wrote, by file name (the newest [`MAX_REMEMBERED`]).
    pub frames_by_segment: std::collections::VecDeque<(String, u64)>,
    /// Picture size changes kept inside a segment because it started less than [`SIZE_CHANGE_HOLD`] before.
    pub size_changes_absorbed: u64,
}

/// Segments whose frame counts `/recordings` can tell (older ones show none).
pub const MAX_REMEMBERED: usize = 10_000;

/// How often written data is forced to the disk.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// A segment younger than this keeps frames of another picture size instead of being closed for them.
pub const SIZE_CHANGE_HOLD: Duration = Duration::from_secs(5);

/// Absorbed size changes are logged at most this often (with how many since the last line).
const SIZE_LOG_EVERY: Duration = Duration::from_secs(60);

/// The file name of `camera`'s segment whose first frame was captured at `start_us` µs since the epoch.
pub fn segment_name(camera: &str, start_us: u64) -> String {
    let started = UNIX_EPOCH + Duration::from_micros(start_us);
    let stamp = humantime::format_rfc3339_millis(started)
        .to_string()
        .replace(['-', ':'], "");
    format!("{camera}-{stamp}.mkv")
}

/// The start time in `file` if it is one of `camera`'s segment names, exactly `CAMERA-` then
/// `YYYYMMDDTHHMMSS.mmmZ.mkv` (as [`segment_name`] makes them); `None` for anything else, another
/// camera's whose name starts with `CAMERA-` included.
pub fn segment_start(file: &str, camera: &str) -> Option<SystemTime> {
    let stamp = file
        .strip_prefix(camera)?
        .strip_prefix('-')?
        .strip_suffix(".mkv")?
        .as_bytes();
    // 20261124T170312.345Z
    let shape = b"ddddddddTdddddd.dddZ";
    if stamp.len() != shape.len()
        || !stamp.iter().zip(shape).all(|(c, s)| match s {
            b'd' => c.is_ascii_digit(),
            s => c == s,
        })
    {
        return None;
    }
    let stamp = std::str::from_utf8(stamp).ok()?;
    let (d, t) = (&stamp[..8], &stamp[9..]);
    let text = format!(
        "{}-{}-{}T{}:{}:{}",
        &d[..4],
        &d[4..6],
        &d[6..8],
        &t[..2],
        &t[2..4],
        &t[4..]
    );
    humantime::parse_rfc3339(&text).ok()
}

/// One open segment file (event clips and timelapses write theirs the same way: [`Segment::open_as`]).
pub(crate) struct Segment {
    name: String,
    file: File,
    mkv: MkvWriter,
    /// Capture time of its first frame, in µs since the epoch.
    start_us: u64,
    size: (u16, u16),
    last_sync: Instant,
    /// When it was opened: a size change closes it only [`SIZE_CHANGE_HOLD`] after.
    opened: Instant,
}

impl Segment {
    /// Creates the file and writes its header.
    fn open(
        dir: &std::path::Path,
        camera: &str,
        start_us: u64,
        size: (u16, u16),
    ) -> std::io::Result<Segment> {
        Segment::open_as(
            dir,
            segment_name(camera, start_us),
            camera.to_string(),
            start_us,
            size,
        )
    }

    /// Creates the file `name` in `dir` (a name the caller made) and writes its header; `title` is the
    /// Matroska title.
    pub(crate) fn open_as(
        dir: &std::path::Path,
        name: String,
        title: String,
        start_us: u64,
        size: (u16, u16),
    ) -> std::io::Result<Segment> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(&name);
        let mut file = File::options().write(true).create_new(true).open(&path)?;
        let mkv = MkvWriter::new(TrackInfo {
            width: size.0,
            height: size.1,
            title,
            start_unix_micros: start_us,
        });
        if let Err(e) = file.write_all(mkv.header()) {
            // A full disk: no empty file left behind for every frame that tries.
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(Segment {
            name,
            file,
            mkv,
            start_us,
            size,
            last_sync: Instant::now(),
            opened: Instant::now(),
        })
    }

    /// Frames written so far.
    pub(crate) fn frames(&self) -> u64 {
        self.mkv.frames()
    }

    /// The file's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The picture size in its header.
    pub(crate) fn size(&self) -> (u16, u16) {
        self.size
    }

    /// Appends one frame; forces the data to disk about once a second.
    pub(crate) fn write(&mut self, frame: &Frame) -> std::io::Result<usize> {
        let mut head = Vec::with_capacity(64);
        self.mkv
            .frame_head_into(frame.jpeg.len(), frame.timestamp_us, &mut head);
        self.file.write_all(&head)?;
        self.file.write_all(&frame.jpeg)?;
        if self.last_sync.elapsed() >= SYNC_EVERY {
            self.file.sync_data()?;
            self.last_sync = Instant::now();
        }
        Ok(head.len() + frame.jpeg.len())
    }

    /// Writes the index and the duration, and syncs the file.
    pub(crate) fn close(self) -> std::io::Result<()> {
        let mut file = self.file;
        let finish = self.mkv.finish();
        file.write_all(&finish.tail)?;
        for patch in &finish.patches {
            file.seek(SeekFrom::Start(patch.offset))?;
            file.write_all(&patch.bytes)?;
        }
        file.sync_all()
    }
}

/// Records `hub`'s frames as camera `name` until `stop` is cancelled; reports into `status`.
pub async fn record(
    name: String,
    hub: Arc<SharedHub>,
    settings: RecordSettings,
    status: Arc<Mutex<RecordingStatus>>,
    stop: CancellationToken,
) {
    let update = |f: &mut dyn FnMut(&mut RecordingStatus)| {
        f(&mut status.lock().unwrap_or_else(|e| e.into_inner()))
    };
    update(&mut |s| {
        s.dir = settings.dir.clone();
        s.state = RecordingState::Recording;
    });
    let segment_us = settings.segment.as_micros().max(1) as u64;
    let mut segment: Option<Segment> = None;
    let mut last_seq: Option<u64> = None;
    // While writes fail: the first lost frame's number and how many since (logged once, then summed up).
    let mut failing: Option<(u64, u64)> = None;
    // The previous frame's picture size, and the absorbed size changes: when last logged, how many since.
    let mut last_size: Option<(u16, u16)> = None;
    let mut size_log: (Option<Instant>, u64) = (None, 0);
    'subscribe: loop {
        let mut sub = hub.subscribe(ClientMeta {
            addr: "0.0.0.0:0".parse().expect("an address"),
            policy: Policy::All,
            fps_cap: None,
            user_agent: "mjpegd recorder".into(),
            stop: stop.child_token(),
        });
        let evicted = sub.entry().evicted.clone();
        loop {
            let frame = tokio::select! {
                biased;
                _ = stop.cancelled() => break 'subscribe,
                _ = evicted.cancelled() => Err(mjpegd_core::EvictCause::BufferFull),
                r = sub.next() => r,
            };
            let frame = match frame {
                Ok(frame) => frame,
                Err(cause) => {
                    // Evicted (the disk fell behind the hub's budget): the gap is counted when the next frame
                    // comes, and the file goes on in a new segment.
                    tracing::warn!(camera = %name, %cause, "recorder fell behind: it resumes with the newest frames");
                    if let Some(old) = segment.take() {
                        close(old, &name, &status).await;
                    }
                    continue 'subscribe;
                }
            };
            if let Some(last) = last_seq {
                let gap = frame.seq.saturating_sub(last + 1);
                if gap > 0 {
                    tracing::warn!(camera = %name, first = last + 1, last = frame.seq - 1, frames = gap, "recording lost frames");
                    update(&mut |s| s.frames_lost += gap);
                    if let Some(old) = segment.take() {
                        close(old, &name, &status).await;
                    }
                }
            }
            last_seq = Some(frame.seq);
            let Ok(info) = check(&frame.jpeg) else {
                continue;
            };
            let size = (info.width, info.height);
            let changed = last_size.is_some_and(|l| l != size);
            last_size = Some(size);
            let rotate = segment.as_ref().is_some_and(|s| {
                frame.timestamp_us >= s.start_us.saturating_add(segment_us)
                    || (s.size != size && s.opened.elapsed() >= SIZE_CHANGE_HOLD)
            });
            if changed && !rotate && segment.is_some() {
                update(&mut |s| s.size_changes_absorbed += 1);
                size_log.1 += 1;
                if size_log.0.is_none_or(|at| at.elapsed() >= SIZE_LOG_EVERY) {
                    tracing::warn!(camera = %name, width = size.0, height = size.1, changes = size_log.1,
                        "recording: the picture size changes within {SIZE_CHANGE_HOLD:?} of the segment's start; its frames stay in the segment (logged at most every {SIZE_LOG_EVERY:?})");
                    size_log = (Some(Instant::now()), 0);
                }
            }
            if rotate {
                if let Some(old) = segment.take() {
                    close(old, &name, &status).await;
                }
            }
            // The file work, off the runtime. Only a new segment needs the folder and the name.
            let current = segment.take();
            let to_open = current
                .is_none()
                .then(|| (settings.dir.clone(), name.clone(), frame.timestamp_us));
            let f = frame.clone();
            let done = tokio::task::spawn_blocking(move || {
                let (mut seg, opened) = match (current, to_open) {
                    (Some(seg), _) => (seg, false),
                    (None, Some((dir, camera, start))) => {
                        (Segment::open(&dir, &camera, start, size)?, true)
                    }
                    (None, None) => unreachable!("a segment to open when there is none"),
                };
                let n = seg.write(&f)?;
                std::io::Result::Ok((seg, n, opened))
            })
            .await;
            match done {
                Ok(Ok((seg, n, opened))) => {
                    if let Some((first, lost)) = failing.take() {
                        tracing::warn!(camera = %name, first, last = frame.seq - 1, frames = lost, "recording resumed; frames lost while writes failed");
                    }
                    if opened {
                        let started = UNIX_EPOCH + Duration::from_micros(seg.start_us);
                        let current = seg.name.clone();
                        update(&mut |s| {
                            s.segment = Some(current.clone());
                            s.segment_started = Some(started);
                        });
                        if settings.keep.is_some() || settings.max_size.is_some() {
                            let (dir, camera) = (settings.dir.clone(), name.clone());
                            let (keep, max) = (settings.keep, settings.max_size);
                            let pruned = tokio::task::spawn_blocking(move || {
                                prune(&dir, &camera, Some(&current), keep, max, SystemTime::now())
                            })
                            .await;
                            if let Ok(Ok(gone)) = pruned {
                                if !gone.is_empty() {
                                    tracing::info!(camera = %name, deleted = ?gone, "old recordings deleted (--record-keep / --record-max-size)");
                                }
                            }
                        }
                    }
                    segment = Some(seg);
                    update(&mut |s| {
                        s.state = RecordingState::Recording;
                        s.frames_written += 1;
                        s.bytes += n as u64;
                    });
                }
                Ok(Err(e)) => {
                    match &mut failing {
                        Some((_, lost)) => *lost += 1,
                        None => {
                            tracing::warn!(camera = %name, seq = frame.seq, error = %e, "recording: writes fail; frames are counted as lost until they work again");
                            failing = Some((frame.seq, 1));
                        }
                    }
                    update(&mut |s| {
                        s.state = RecordingState::Failing;
                        s.frames_lost += 1;
                        s.segment = None;
                        s.last_error = Some(e.to_string());
                    });
                }
                Err(e) => {
                    update(&mut |s| {
                        s.frames_lost += 1;
                        s.last_error = Some(e.to_string());
                    });
                }
            }
        }
    }
    if let Some(old) = segment.take() {
        close(old, &name, &status).await;
    }
    update(&mut |s| {
        s.state = RecordingState::Stopped;
        s.segment = None;
    });
}

/// `camera`'s segments in `dir`, oldest first, with their sizes and last-write times.
pub fn list_segments(
    dir: &std::path::Path,
    camera: &str,
) -> std::io::Result<Vec<(String, u64, SystemTime)>> {
    list_matching(dir, |name| segment_start(name, camera).is_some())
}

/// Deletes the oldest of `camera`'s segments in `dir`, never `current`, until none ended more than `keep`
/// before `now` and all of them together are within `max_size`. Returns the names deleted.
pub fn prune(
    dir: &std::path::Path,
    camera: &str,
    current: Option<&str>,
    keep: Option<Duration>,
    max_size: Option<u64>,
    now: SystemTime,
) -> std::io::Result<Vec<String>> {
    prune_matching(
        dir,
        |name| segment_start(name, camera).is_some(),
        current,
        keep,
        max_size,
        now,
    )
}

/// The files in `dir` whose names `matches` accepts, oldest first (by name), with their sizes and
/// last-write times: [`list_segments`] for other kinds of file (event clips, timelapses).
pub fn list_matching(
    dir: &std::path::Path,
    matches: impl Fn(&str) -> bool,
) -> std::io::Result<Vec<(String, u64, SystemTime)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !matches(&name) {
            continue;
        }
        let meta = entry.metadata()?;
        if meta.is_file() {
            found.push((name, meta.len(), meta.modified().unwrap_or(UNIX_EPOCH)));
        }
    }
    // Names carry the start time in a sortable form.
    found.sort();
    Ok(found)
}

/// [`prune`] for the files `matches` accepts: the oldest deleted first, never `current`, until none ended
/// more than `keep` before `now` and all together are within `max_size`.
pub fn prune_matching(
    dir: &std::path::Path,
    matches: impl Fn(&str) -> bool,
    current: Option<&str>,
    keep: Option<Duration>,
    max_size: Option<u64>,
    now: SystemTime,
) -> std::io::Result<Vec<String>> {
    let files = list_matching(dir, matches)?;
    let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
    let mut deleted = Vec::new();
    for (name, len, modified) in files {
        if Some(name.as_str()) == current {
            continue;
        }
        let too_old = keep.is_some_and(|k| now.duration_since(modified).unwrap_or_default() > k);
        let too_big = max_size.is_some_and(|m| total > m);
        if !(too_old || too_big) {
            // Oldest first: once one stays for its size, the younger ones do too (unless too old).
            if keep.is_none() {
                break;
            }
            continue;
        }
        std::fs::remove_file(dir.join(&name))?;
        total -= len;
        deleted.push(name);
    }
    Ok(deleted)
}

/// Closes a segment on the blocking pool; an error is logged and shown, the frames stay written.
async fn close(segment: Segment, name: &str, status: &Mutex<RecordingStatus>) {
    let file = segment.name.clone();
    {
        let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
        if s.frames_by_segment.len() >= MAX_REMEMBERED {
            s.frames_by_segment.pop_front();
        }
        s.frames_by_segment
            .push_back((file.clone(), segment.mkv.frames()));
    }
    match tokio::task::spawn_blocking(move || segment.close()).await {
        Ok(Ok(())) => tracing::info!(camera = %name, %file, "recording segment closed"),
        Ok(Err(e)) => {
            tracing::warn!(camera = %name, %file, error = %e, "recording segment not closed cleanly");
            status.lock().unwrap_or_else(|e| e.into_inner()).last_error = Some(e.to_string());
        }
        Err(e) => tracing::error!(camera = %name, %file, error = %e, "closing a segment failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_deletes_the_oldest_first_and_never_the_current_one() {
        let dir = std::env::temp_dir().join(format!("mjpegd-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let names = [
            "cam-20261124T100000.000Z.mkv",
            "cam-20261124T100500.000Z.mkv",
            "cam-20261124T101000.000Z.mkv",
            "cam-20261124T101500.000Z.mkv",
        ];
        for n in names {
            std::fs::write(dir.join(n), vec![0u8; 1000]).unwrap();
        }
        std::fs::write(dir.join("other-20261124T090000.000Z.mkv"), vec![0u8; 5000]).unwrap();
        std::fs::write(dir.join("cam-notes.txt"), b"x").unwrap();
        // Another camera whose name starts with `cam-`, in the same folder, and a name almost of the form.
        std::fs::write(dir.join("cam-b-20261124T090000.000Z.mkv"), vec![0u8; 5000]).unwrap();
        std::fs::write(dir.join("cam-+0261124T090000.000Z.mkv"), vec![0u8; 5000]).unwrap();
        // By size: 4,000 bytes down to 2,500 deletes the two oldest.
        let gone = prune(
            &dir,
            "cam",
            Some(names[3]),
            None,
            Some(2500),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(gone, names[..2]);
        // The current segment stays even when it alone is over the limit.
        let gone = prune(
            &dir,
            "cam",
            Some(names[3]),
            None,
            Some(10),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(gone, [names[2]]);
        assert!(dir.join(names[3]).exists());
        assert!(dir.join("other-20261124T090000.000Z.mkv").exists());
        assert!(dir.join("cam-b-20261124T090000.000Z.mkv").exists());
        assert!(dir.join("cam-+0261124T090000.000Z.mkv").exists());
        // By age: everything not current older than an hour from "now".
        std::fs::write(dir.join(names[0]), vec![0u8; 10]).unwrap();
        let later = SystemTime::now() + Duration::from_secs(7200);
        let gone = prune(
            &dir,
            "cam",
            Some(names[3]),
            Some(Duration::from_secs(3600)),
            None,
            later,
        )
        .unwrap();
        assert_eq!(gone, [names[0]]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_cameras_segments_are_its_names_of_exactly_the_recorders_form() {
        let name = segment_name("front", 1_795_539_792_345_000);
        assert_eq!(name, "front-20261124T170312.345Z.mkv");
        let t = segment_start(&name, "front").unwrap();
        assert_eq!(
            humantime::format_rfc3339_millis(t).to_string(),
            "2026-11-24T17:03:12.345Z"
        );
        assert!(segment_start("front-garbage.mkv", "front").is_none());
        assert!(segment_start("back-20261124T170312.345Z.mkv", "front").is_none());
        // Camera `a` does not own camera `a-b`'s files, nor `a-` with a stamp of signs or spaces.
        assert!(segment_start("a-b-20261124T170312.345Z.mkv", "a").is_none());
        assert!(segment_start("a-b-20261124T170312.345Z.mkv", "a-b").is_some());
        assert!(segment_start("a-+0261124T170312.345Z.mkv", "a").is_none());
        assert!(segment_start("a-2026112 T170312.345Z.mkv", "a").is_none());
        assert!(segment_start("a-20261124T170312.345Z.mkv.mkv", "a").is_none());
        assert!(segment_start("a-20261324T170312.345Z.mkv", "a").is_none());
    }
}
