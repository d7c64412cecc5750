//! The recordings over HTTP: `/recordings` (and `/cams/NAME/recordings`) list the segments as JSON, and
//! `/recordings/FILE` serves one with HTTP Range (206), so a browser or VLC can seek in it.
//!
//! Only files a camera records are reachable: the name was checked by the router (a plain file name ending
//! in `.mkv`), it must start with a recording camera's name, and it must be a regular file (not a link) in
//! that camera's folder. The segment being written can be fetched too; it is served up to its length when
//! the request came. Bodies are copied in 64 KiB chunks, each with the write timeout, so a download takes
//! as long as it needs while a client that stops reading is let go.

use super::app::App;
use super::response::reason;
use crate::camera::Camera;
use crate::net::Transport;
use crate::record::list_segments;
use serde_json::json;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// The segments of `cameras` (those that record), oldest first per camera.
pub fn list(cameras: &[Arc<Camera>]) -> serde_json::Value {
    let mut out = Vec::new();
    for camera in cameras {
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
            let start = start_of(&name, camera.name());
            out.push(json!({
                "camera": camera.name(),
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

/// The start time in a segment's name (`NAME-20261124T170312.345Z.mkv`).
fn start_of(file: &str, camera: &str) -> Option<SystemTime> {
    let stamp = file
        .strip_prefix(camera)?
        .strip_prefix('-')?
        .strip_suffix(".mkv")?;
    if stamp.len() != 20 {
        return None;
    }
    // 20261124T170312.345Z -> 2026-11-24T17:03:12.345Z
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

/// Where the file `name` of a recording camera is, if it is one.
pub fn locate(cameras: &[Arc<Camera>], name: &str) -> Option<PathBuf> {
    cameras.iter().find_map(|camera| {
        let record = camera.settings().record?;
        let rest = name.strip_prefix(camera.name())?.strip_prefix('-')?;
        if rest.is_empty() {
            return None;
        }
        let path = record.dir.join(name);
        let meta = std::fs::symlink_metadata(&path).ok()?;
        meta.file_type().is_file().then_some(path)
    })
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
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
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

/// Serves the file at `path` whole or in part; the connection closes after it.
pub async fn serve_file<T: Transport>(
    app: &App,
    io: &mut T,
    path: &std::path::Path,
    range: Option<&str>,
    head_only: bool,
) -> io::Result<()> {
    let mut file = tokio::fs::File::open(path).await?;
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
    }

    #[test]
    fn start_times_come_from_names() {
        let t = start_of("front-20261124T170312.345Z.mkv", "front").unwrap();
        assert_eq!(
            humantime::format_rfc3339_millis(t).to_string(),
            "2026-11-24T17:03:12.345Z"
        );
        assert!(start_of("front-garbage.mkv", "front").is_none());
        assert!(start_of("back-20261124T170312.345Z.mkv", "front").is_none());
    }
}
