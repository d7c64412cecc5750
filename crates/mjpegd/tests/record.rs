//! Recording against the real binary, read back by ffprobe and ffmpeg (not by mjpegd's own code): segments
//! whose frames are the source's, in order, across boundaries; a recording that survives `kill -9`.
//! Needs ffmpeg and ffprobe (installed by scripts/setup.sh).

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "mkv"));
    files.sort();
    files
}

/// The JPEGs of a recording, as ffmpeg copies them out (no re-encoding).
fn jpegs_of(file: &Path) -> Vec<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-c", "copy", "-f", "mjpeg", "-"])
        .output()
        .expect("ffmpeg runs");
    let mut splitter = mjpegd_core::parse::jpeg::JpegSplitter::new(16 << 20);
    splitter.push(&out.stdout);
    std::iter::from_fn(|| splitter.next_frame())
        .map(|f| f.expect("whole JPEGs").to_vec())
        .collect()
}

/// The pattern's frame counter burned into a JPEG.
fn counter(jpeg: &[u8]) -> u64 {
    let grey = turbojpeg::decompress(jpeg, turbojpeg::PixelFormat::GRAY).unwrap();
    mjpegd::source::pattern::read_barcode(&grey.pixels, grey.width, grey.height)
}

fn ffprobe(file: &Path, entries: &str) -> String {
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

#[test]
fn segments_hold_every_frame_in_order_across_their_boundaries() {
    let dir = TempDir::new("record-segments");
    let mut server = Server::start(&[
        "--fps",
        "10",
        "--record",
        dir.0.to_str().unwrap(),
        "--record-segment",
        "1s",
    ]);
    // On-demand capture: the recorder alone keeps the source running.
    eventually(Duration::from_secs(10), "4 segments", || {
        (segments(&dir.0).len() >= 4).then_some(())
    });
    let state = server.state();
    let rec = &state["recording"];
    assert_eq!(rec["state"], "recording", "{state}");
    assert!(rec["frames_written"].as_u64().unwrap() >= 20, "{rec}");
    assert_eq!(rec["frames_lost"], 0, "{rec}");
    assert!(server.stop().success());
    let files = segments(&dir.0);
    assert!(files[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("default-"));
    let mut counters = Vec::new();
    for file in &files {
        let probe = ffprobe(file, "stream=codec_name,width,height");
        assert!(
            probe.contains("codec_name=mjpeg") && probe.contains("width=320"),
            "{probe}"
        );
        let jpegs = jpegs_of(file);
        assert!(!jpegs.is_empty(), "{}", file.display());
        counters.extend(jpegs.iter().map(|j| counter(j)));
    }
    // The pattern counts every frame it makes: consecutive across every boundary, nothing doubled.
    for w in counters.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{counters:?}");
    }
    // Timestamps step at the source's rate: ffprobe's packet times 0.1 s apart.
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(&files[1])
        .output()
        .unwrap();
    let times: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(times.len() >= 5, "{times:?}");
    for w in times.windows(2) {
        let step = w[1] - w[0];
        assert!((0.05..0.2).contains(&step), "{times:?}");
    }
}

#[test]
fn after_kill_9_the_segment_being_written_plays_to_within_a_second() {
    let dir = TempDir::new("record-kill");
    let mut server = Server::start(&["--fps", "10", "--record", dir.0.to_str().unwrap()]);
    eventually(Duration::from_secs(10), "3 s recorded", || {
        (server.state()["recording"]["frames_written"]
            .as_u64()
            .unwrap()
            >= 30)
            .then_some(())
    });
    let written = server.state()["recording"]["frames_written"]
        .as_u64()
        .unwrap();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGKILL) };
    let _ = server.child.wait();
    let files = segments(&dir.0);
    assert_eq!(files.len(), 1);
    let jpegs = jpegs_of(&files[0]);
    // Everything written to the kernel survives a process crash; at 10 fps a second is 10 frames.
    assert!(
        jpegs.len() as u64 + 10 >= written,
        "{} of {written}",
        jpegs.len()
    );
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&files[0])
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(decode.status.success());
}
