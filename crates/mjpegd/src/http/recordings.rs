//! The recordings over HTTP: `/recordings` (and `/cams/NAME/recordings`) list the segments as JSON, and
//! `/recordings/FILE` serves one with HTTP Range (206), so a browser or VLC can seek in it. Event clips
//! and timelapse segments are listed and served the same way, each from its own folder, with a `kind`
//! (`segment`, `event`, `timelapse`).
//!
//! Only files a camera records are reachable: the name was checked by the router (a plain file name ending
//! in `.mkv`), it must be exactly a recording camera's segment name ([`segment_start`]), and what is opened
//! must be a regular file in that camera's folder. The check is made on what was opened, never on a path
//! resolved again later: the folder is opened, the name is opened relative to it with `O_NOFOLLOW` (a link
//! swapped in is refused by the kernel), and the descriptor is checked (`fstat`: a regular file on the
//! folder's device) and then served. The segment being written can be fetched too; it is served up to its
//! length when the request came. Bodies are copied in 64 KiB chunks, each with the write timeout, so a
//! download takes as long as it needs while a client that stops reading is let go.
//!
//! Replay (`/recordings/FILE/stream`, [`crate::http::handlers::replay`]) opens files the same way, and
//! reads them with the core's reader ([`mjpegd_core::mkv_read`]) through [`Disk`]. [`frame_at`] finds,
//! within one camera's recordings, the frame showing at a given time, for `snapshot?at=`.

use super::app::App;
use super::response::reason;
use crate::camera::Camera;
use crate::events::event_of;
use crate::net::Transport;
use crate::record::{list_matching, list_segments, segment_start};
use crate::timelapse::lapse_start;
use mjpegd_core::mkv_read::{self, ReadAt};
use serde_json::json;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// The segments of `cameras` (those that record), oldest first per camera.
pub fn list(cameras: &[Arc<Camera>]) -> serde_json::Value {
    let mut out = Vec::new();
    for camera in cameras {
        list_events(camera, &mut out);
        list_timelapses(camera, &mut out);
        let (Some(record), Some(status)) = (camera.settings().record, camera.recording.as_ref())
        else {
            continue;
        };
        let frames: Vec<(String, u64)> = {
            let s = status.lock().unwrap_or_else(|e| e.into_inner());
            s.frames_by_segment.iter().cloned().collect()
        };
        let current = status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .segment
            .clone();
        for (name, bytes, modified) in list_segments(&record.dir, camera.name()).unwrap_or_default()
        {
            let start = segment_start(&name, camera.name());
            out.push(json!({
                "camera": camera.name(),
                "kind": "segment",
                "name": name,
                "url": format!("/recordings/{name}"),
                "start": start.map(|t| humantime::format_rfc3339_millis(t).to_string()),
                "end": humantime::format_rfc3339_millis(modified).to_string(),
                "bytes": bytes,
                "frames": frames.iter().rev().find(|(n, _)| *n == name).map(|(_, f)| *f),
                "writing": current.as_deref() == Some(name.as_str()),
            }));
        }
    }
    json!({"ok": true, "result": {"recordings": out}})
}

fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn from_us(us: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(us)
}

/// `camera`'s event clips (`kind: "event"`), with their labels; start and end are the capture times of
/// their first and last frames when this run wrote them, else the trigger time and the file's last write.
fn list_events(camera: &Camera, out: &mut Vec<serde_json::Value>) {
    let (Some(settings), Some(events)) = (camera.settings().events, camera.events.as_ref()) else {
        return;
    };
    let (done, active) = {
        let s = events.status.lock().unwrap_or_else(|e| e.into_inner());
        (s.done.clone(), s.active.as_ref().map(|a| a.name.clone()))
    };
    let files = list_matching(&settings.dir, |f| event_of(f, camera.name()).is_some());
    for (name, bytes, modified) in files.unwrap_or_default() {
        let Some((at, label)) = event_of(&name, camera.name()) else {
            continue;
        };
        let known = done.iter().rev().find(|d| d.name == name);
        out.push(json!({
            "camera": camera.name(),
            "kind": "event",
            "name": name,
            "label": label,
            "url": format!("/recordings/{name}"),
            "trigger": stamp(at),
            "start": stamp(known.map_or(at, |d| from_us(d.first_us))),
            "end": stamp(known.map_or(modified, |d| from_us(d.last_us))),
            "bytes": bytes,
            "frames": known.map(|d| d.frames),
            "writing": active.as_deref() == Some(name.as_str()),
        }));
    }
}

/// `camera`'s timelapse segments (`kind: "timelapse"`).
fn list_timelapses(camera: &Camera, out: &mut Vec<serde_json::Value>) {
    let (Some(settings), Some(status)) = (camera.settings().timelapse, camera.timelapse.as_ref())
    else {
        return;
    };
    let (frames, current) = {
        let s = status.lock().unwrap_or_else(|e| e.into_inner());
        (s.frames_by_segment.clone(), s.segment.clone())
    };
    let files = list_matching(&settings.dir, |f| lapse_start(f, camera.name()).is_some());
    for (name, bytes, modified) in files.unwrap_or_default() {
        let start = lapse_start(&name, camera.name());
        out.push(json!({
            "camera": camera.name(),
            "kind": "timelapse",
            "name": name,
            "url": format!("/recordings/{name}"),
            "every_seconds": settings.every.as_secs_f64(),
            "start": start.map(stamp),
            "end": stamp(modified),
            "bytes": bytes,
            "frames": frames.iter().rev().find(|(n, _)| *n == name).map(|(_, f)| *f),
            "writing": current.as_deref() == Some(name.as_str()),
        }));
    }
}

/// Opens the file `name` of a camera, if it is one of its recording segments, event clips or timelapse
/// segments, in the folder of that kind (blocking file work).
pub fn open(cameras: &[Arc<Camera>], name: &str) -> Option<File> {
    open_of(cameras, name).map(|(file, _)| file)
}

/// Like [`open`], with the camera whose segment it is.
pub fn open_of(cameras: &[Arc<Camera>], name: &str) -> Option<(File, Arc<Camera>)> {
    if name.contains('/') {
        return None;
    }
    let other = cameras.iter().find_map(|camera| {
        let s = camera.settings();
        if let Some(e) = s.events.filter(|_| event_of(name, camera.name()).is_some()) {
            return open_in(&e.dir, name).ok().map(|f| (f, camera.clone()));
        }
        let t = s
            .timelapse
            .filter(|_| lapse_start(name, camera.name()).is_some())?;
        open_in(&t.dir, name).ok().map(|f| (f, camera.clone()))
    });
    if other.is_some() {
        return other;
    }
    cameras.iter().find_map(|camera| {
        let record = camera.settings().record?;
        segment_start(name, camera.name())?;
        open_in(&record.dir, name).ok().map(|f| (f, camera.clone()))
    })
}

/// A recording file as the core's reader reads it: positional reads, its length as it is now (a segment
/// being written grows).
pub struct Disk(pub File);

impl ReadAt for Disk {
    fn file_len(&self) -> u64 {
        self.0.metadata().map_or(0, |m| m.len())
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.0, buf, offset)
    }
}

impl Disk {
    /// The bytes at `range` (a frame's, bounded by the reader's [`mjpegd_core::mkv_read::MAX_BLOCK`]).
    pub fn bytes(&self, range: std::ops::Range<u64>) -> io::Result<Vec<u8>> {
        let len = usize::try_from(range.end.saturating_sub(range.start))
            .map_err(|_| io::ErrorKind::InvalidData)?;
        let mut buf = vec![0u8; len];
        std::os::unix::fs::FileExt::read_exact_at(&self.0, &mut buf, range.start)?;
        Ok(buf)
    }
}

/// A frame found in the recordings for a time.
#[derive(Debug)]
pub struct FoundFrame {
    pub jpeg: Vec<u8>,
    /// Its capture time, µs since the epoch.
    pub capture_us: u64,
    /// The segment it is in.
    pub file: String,
}

/// How far past a segment's last write a time still counts as covered by it (the recorder writes each
/// frame as it comes, so the last write is the last frame's).
const COVER_SLACK: Duration = Duration::from_secs(1);

/// Segments looked into at most for one time (the newest that start at or before it, newest first): a
/// segment without a frame yet, or one cut before its first frame, passes the search to the one before.
const MAX_TRIED: usize = 3;

/// Event clips looked into at most for one time (their headers are read to see where each starts).
const MAX_EVENTS_TRIED: usize = 64;

/// Which of a camera's folders [`frame_at`] looks in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Folder {
    /// The continuous recording's segments: they follow each other, so the newest that started at or
    /// before a time is the only one that can cover it.
    Segments,
    /// Event clips: named by their trigger, they start up to a pre-roll before it, and leave gaps
    /// between them.
    Events,
}

/// The frame of `camera`'s files of kind `folder` in `dir` showing at `at`: the one captured closest to
/// `at` at or before it, in the file that covers `at` (one that starts at or before it and was last
/// written at or after it). `Err` says why none (blocking file work).
pub fn frame_at(
    camera: &str,
    dir: &Path,
    folder: Folder,
    at: std::time::SystemTime,
) -> Result<FoundFrame, String> {
    let at_us = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "the time is before 1970".to_string())?
        .as_micros()
        .min(u64::MAX.into()) as u64;
    let what = match folder {
        Folder::Segments => "recording",
        Folder::Events => "event clip",
    };
    let files = match folder {
        Folder::Segments => list_segments(dir, camera),
        Folder::Events => list_matching(dir, |f| event_of(f, camera).is_some()),
    }
    .map_err(|e| format!("the {what}s of camera {camera} cannot be listed: {e}"))?;
    // The earliest a file's first frame can be, from its name.
    let earliest = |name: &str| match folder {
        Folder::Segments => segment_start(name, camera),
        Folder::Events => event_of(name, camera)
            .map(|(t, _)| t.checked_sub(crate::config::MAX_PRE_ROLL).unwrap_or(t)),
    };
    let mut candidates = files
        .iter()
        .rev()
        .filter(|(name, _, _)| earliest(name).is_some_and(|s| s <= at))
        .peekable();
    let nothing = format!(
        "no {what} of camera {camera} covers {}",
        humantime::format_rfc3339_millis(at)
    );
    if folder == Folder::Events {
        // Clips leave gaps: only those last written at or after `at` can cover it. Several short clips
        // triggered after `at` (within a pre-roll of it) pass this test too: their headers say they
        // start after `at`, and the search goes on to older ones, within a bound.
        let covering: Vec<_> = candidates
            .filter(|(_, _, modified)| at <= *modified + COVER_SLACK)
            .take(MAX_EVENTS_TRIED)
            .collect();
        return frame_in(dir, &covering, at_us, nothing);
    }
    if let Some((_, _, modified)) = candidates.peek() {
        if at > *modified + COVER_SLACK {
            // The newest segment that started before `at` ended before it: a gap in the recordings.
            return Err(format!(
                "{nothing}: the recordings before it end at {}",
                humantime::format_rfc3339_millis(*modified)
            ));
        }
    }
    let tried: Vec<_> = candidates.take(MAX_TRIED).collect();
    frame_in(dir, &tried, at_us, nothing)
}

/// The frame at or before `at_us` in the first of `files` (newest first) that has one.
fn frame_in(
    dir: &Path,
    files: &[&(String, u64, SystemTime)],
    at_us: u64,
    mut nothing: String,
) -> Result<FoundFrame, String> {
    for (name, _, _) in files {
        let Ok(file) = open_in(dir, name) else {
            continue;
        };
        let disk = Disk(file);
        let segment = match mkv_read::open(&disk) {
            Ok(s) => s,
            Err(e) => {
                nothing = format!("{nothing} ({name}: {e})");
                continue;
            }
        };
        if segment.info.start_unix_micros > at_us {
            // Starts after `at`: an older file may hold it.
            continue;
        }
        let since = at_us.saturating_sub(segment.info.start_unix_micros);
        let found = segment
            .frame_at(&disk, segment.us_to_ticks(since))
            .map_err(|e| format!("{name}: {e}"))?;
        let Some((frame, _)) = found else {
            continue;
        };
        if frame.capture_unix_micros > at_us {
            continue;
        }
        let jpeg = disk
            .bytes(frame.data.clone())
            .map_err(|e| format!("{name}: {e}"))?;
        return Ok(FoundFrame {
            jpeg,
            capture_us: frame.capture_unix_micros,
            file: name.clone(),
        });
    }
    Err(nothing)
}

/// Opens `name` in the folder `dir` without following a link, and checks what was opened: a regular file
/// on the folder's device. Nothing is resolved by path after the check: the descriptor is what is served.
fn open_in(dir: &Path, name: &str) -> io::Result<File> {
    let folder = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?;
    let c_name = std::ffi::CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // O_NONBLOCK: a FIFO put there does not hang the open; O_NOCTTY: nor does a terminal become ours.
    let flags =
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
    // SAFETY: a valid descriptor and a NUL-terminated name; the result is checked before it is owned.
    let fd = unsafe { libc::openat(folder.as_raw_fd(), c_name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let (meta, folder_meta) = (file.metadata()?, folder.metadata()?);
    if !meta.file_type().is_file() || meta.dev() != folder_meta.dev() {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    Ok(file)
}

/// A byte range asked for with `Range: bytes=...`, within a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    /// No Range (or one this server serves whole: several ranges, another unit, bad syntax).
    All,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// A range that starts past the end: 416.
    Unsatisfiable,
}

/// Reads a Range header against a file of `len` bytes.
pub fn wanted(range: Option<&str>, len: u64) -> Wanted {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Wanted::All;
    };
    if spec.contains(',') {
        return Wanted::All;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Wanted::All;
    };
    // RFC 9110: positions are digits only (no sign, no space); anything else is ignored as a whole.
    let parse = |s: &str| {
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match parse(b) {
            Some(0) => return Wanted::Unsatisfiable,
            Some(n) => (len.saturating_sub(n), len.saturating_sub(1)),
            None => return Wanted::All,
        },
        (false, true) => match parse(a) {
            Some(s) => (s, len.saturating_sub(1)),
            None => return Wanted::All,
        },
        (false, false) => match (parse(a), parse(b)) {
            (Some(s), Some(e)) if s <= e => (s, e.min(len.saturating_sub(1))),
            _ => return Wanted::All,
        },
        (true, true) => return Wanted::All,
    };
    if len == 0 || start >= len {
        return Wanted::Unsatisfiable;
    }
    Wanted::Part { start, end }
}

/// Serves `file` (from [`open`]) whole or in part; the connection closes after it.
pub async fn serve_file<T: Transport>(
    app: &App,
    io: &mut T,
    file: File,
    range: Option<&str>,
    head_only: bool,
) -> io::Result<()> {
    let mut file = tokio::fs::File::from_std(file);
    let len = file.metadata().await?.len();
    let (status, start, count, extra) = match wanted(range, len) {
        Wanted::All => (200, 0, len, String::new()),
        Wanted::Part { start, end } => (
            206,
            start,
            end - start + 1,
            format!("Content-Range: bytes {start}-{end}/{len}\r\n"),
        ),
        Wanted::Unsatisfiable => {
            let head = format!(
                "HTTP/1.1 416 {}\r\nServer: mjpegd/{}\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n{}\r\n",
                reason(416),
                env!("CARGO_PKG_VERSION"),
                app.cors
            );
            return io.write_all(head.as_bytes()).await;
        }
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nServer: mjpegd/{}\r\nContent-Type: video/x-matroska\r\nContent-Length: {count}\r\nAccept-Ranges: bytes\r\n{extra}Cache-Control: no-cache\r\nConnection: close\r\n{}\r\n",
        reason(status),
        env!("CARGO_PKG_VERSION"),
        app.cors
    );
    let timeout = app.config.write_timeout;
    with_timeout(timeout, io.write_all(head.as_bytes())).await?;
    if head_only || count == 0 {
        return Ok(());
    }
    file.seek(io::SeekFrom::Start(start)).await?;
    let mut left = count;
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = file.read(&mut buf[..want]).await?;
        if n == 0 {
            // The file shrank (retention deleted it mid-download): end the response short.
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        with_timeout(timeout, io.write_all(&buf[..n])).await?;
        left -= n as u64;
    }
    with_timeout(timeout, io.flush()).await
}

async fn with_timeout(
    t: Duration,
    f: impl std::future::Future<Output = io::Result<()>>,
) -> io::Result<()> {
    tokio::time::timeout(t, f)
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(wanted(None, 100), Wanted::All);
        assert_eq!(
            wanted(Some("bytes=0-9"), 100),
            Wanted::Part { start: 0, end: 9 }
        );
        assert_eq!(
            wanted(Some("bytes=90-"), 100),
            Wanted::Part { start: 90, end: 99 }
        );
        assert_eq!(
            wanted(Some("bytes=-10"), 100),
            Wanted::Part { start: 90, end: 99 }
        );
        assert_eq!(
            wanted(Some("bytes=-1000"), 100),
            Wanted::Part { start: 0, end: 99 }
        );
        assert_eq!(
            wanted(Some("bytes=50-5000"), 100),
            Wanted::Part { start: 50, end: 99 }
        );
        assert_eq!(wanted(Some("bytes=100-"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-0"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=0-1,5-6"), 100), Wanted::All);
        assert_eq!(wanted(Some("bytes=9-1"), 100), Wanted::All);
        assert_eq!(wanted(Some("items=0-1"), 100), Wanted::All);
        assert_eq!(wanted(Some("bytes=x-1"), 100), Wanted::All);
        assert_eq!(wanted(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
        // Signs and inner spaces are not the syntax: ignored, the whole file.
        for bad in [
            "bytes=+5-9",
            "bytes=-+5",
            "bytes=5-+9",
            "bytes=+5-",
            "bytes= 5-9",
            "bytes=5 -9",
            "bytes=5- 9",
            "bytes=-",
            "bytes=",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(wanted(Some(bad), 100), Wanted::All, "{bad}");
        }
    }

    #[test]
    fn only_a_regular_file_in_the_folder_is_opened_never_a_link_or_a_fifo() {
        let dir = std::env::temp_dir().join(format!("mjpegd-open-in-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("file.mkv"), b"data").unwrap();
        std::os::unix::fs::symlink(dir.join("file.mkv"), dir.join("link.mkv")).unwrap();
        let fifo = std::ffi::CString::new(dir.join("fifo.mkv").to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let mut got = String::new();
        io::Read::read_to_string(&mut open_in(&dir, "file.mkv").unwrap(), &mut got).unwrap();
        assert_eq!(got, "data");
        assert!(open_in(&dir, "link.mkv").is_err());
        assert!(open_in(&dir, "fifo.mkv").is_err());
        assert!(open_in(&dir, "sub").is_err());
        assert!(open_in(&dir, "missing.mkv").is_err());
        assert!(open_in(&dir, "nul\0.mkv").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
