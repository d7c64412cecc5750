//! Reading back what mjpegd recorded, with outside tools (ffmpeg, mkvtoolnix) rather than mjpegd's own
//! code: shared by the tests of recording, events, replays and the recordings page.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files in `dir`, sorted by name (none when it does not exist).
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// The `.mkv` files in `dir`, sorted by name.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files = files(dir);
    files.retain(|p| p.extension().is_some_and(|e| e == "mkv"));
    files
}

/// The whole JPEGs in `bytes`, in order.
pub fn split_jpegs(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut splitter = mjpegd_core::parse::jpeg::JpegSplitter::new(16 << 20);
    splitter.push(bytes);
    std::iter::from_fn(|| splitter.next_frame())
        .map(|f| f.expect("whole JPEGs").to_vec())
        .collect()
}

/// ffmpeg copying the JPEGs out of `input` (a file, or a URL with `-f mpjpeg`), no re-encoding.
pub fn ffmpeg_jpegs(pre: &[&str], input: &str) -> Vec<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error"])
        .args(pre)
        .args(["-i", input, "-c", "copy", "-f", "mjpeg", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    split_jpegs(&out.stdout)
}

/// The JPEGs of a Matroska file as ffmpeg copies them out (no re-encoding).
pub fn jpegs_of(file: &Path) -> Vec<Vec<u8>> {
    ffmpeg_jpegs(&[], file.to_str().expect("a UTF-8 path"))
}

/// The test pattern's frame counter burned into a JPEG.
pub fn counter(jpeg: &[u8]) -> u64 {
    let grey = turbojpeg::decompress(jpeg, turbojpeg::PixelFormat::GRAY).unwrap();
    mjpegd::source::pattern::read_barcode(&grey.pixels, grey.width, grey.height)
}

/// Runs a mkvtoolnix tool; its exit status and what it printed.
pub fn mkvtoolnix(tool: &str, args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} runs (mkvtoolnix, from scripts/setup.sh): {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The track's timestamps (ms) as `mkvextract timestamps_v2` writes them to `out` (asserting it accepts
/// the file), and that file's text.
pub fn mkv_timestamps(file: &Path, out: &Path) -> (Vec<u64>, String) {
    let (ok, said) = mkvtoolnix(
        "mkvextract",
        &[
            file.as_os_str(),
            "timestamps_v2".as_ref(),
            format!("0:{}", out.display()).as_ref(),
        ],
    );
    assert!(ok, "mkvextract refuses {file:?}: {said}");
    // A header line, then one timestamp a line.
    let stamps = std::fs::read_to_string(out).unwrap();
    let times = stamps.lines().skip(1).map(|l| l.parse().unwrap()).collect();
    (times, stamps)
}

/// Asserts `mkvpropedit` can edit the file's title in place.
pub fn assert_mkvpropedit_edits(file: &Path) {
    let (ok, said) = mkvtoolnix(
        "mkvpropedit",
        &[
            file.as_os_str(),
            "--edit".as_ref(),
            "info".as_ref(),
            "--set".as_ref(),
            "title=x".as_ref(),
        ],
    );
    assert!(ok, "mkvpropedit refuses {file:?}: {said}");
}

/// ffprobe (counting frames) showing `entries` of `file`, one `key=value` a line.
pub fn ffprobe(file: &Path, entries: &str) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            entries,
            "-of",
            "default=nw=1",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// mjpegd on the 10 fps test pattern writing event clips into `dir/events` and a timelapse (a frame every
/// 500 ms) into `dir/lapse`; with those two folders.
pub fn events_and_timelapse(dir: &Path) -> (super::common::Server, PathBuf, PathBuf) {
    let (events, lapse) = (dir.join("events"), dir.join("lapse"));
    let server = super::common::Server::start(&[
        "--fps",
        "10",
        "--events",
        events.to_str().unwrap(),
        "--timelapse",
        lapse.to_str().unwrap(),
        "--timelapse-every",
        "500ms",
    ]);
    (server, events, lapse)
}

/// ffprobe's packet times of a file, in seconds.
pub fn pts(file: &Path) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect()
}
