//! Files from the Matroska muxer, read back by the real ffprobe and ffmpeg: the stream is what was
//! written, every frame decodes, a file cut mid-cluster (as by `kill -9`) still plays up to the cut, and
//! the JPEGs come back out byte for byte.

use mjpegd_core::mkv::{MkvWriter, TrackInfo};
use mjpegd_core::parse::jpeg::JpegSplitter;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const START: u64 = 1_700_000_000_000_000;
const FRAMES: usize = 60;

/// A folder under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("mjpegd-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("ffmpeg and ffprobe are installed");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// 60 real 320x240 JPEGs from ffmpeg's test source.
fn jpegs() -> Vec<Vec<u8>> {
    let out = run(Command::new("ffmpeg").args([
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=30",
        "-frames:v",
        "60",
        "-f",
        "image2pipe",
        "-vcodec",
        "mjpeg",
        "-",
    ]));
    split(&out.stdout)
}

fn split(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut s = JpegSplitter::new(1 << 22);
    s.push(stream);
    let frames: Vec<Vec<u8>> = std::iter::from_fn(|| s.next_frame())
        .map(|f| f.expect("whole JPEGs").to_vec())
        .collect();
    assert_eq!(s.skipped_bytes(), 0);
    frames
}

/// Header and the frames at 30 fps capture times, with the finishing tail and patches if `finish`.
fn mkv(jpegs: &[Vec<u8>], finish: bool) -> Vec<u8> {
    mkv_and_frame_ends(jpegs, finish).0
}

/// [`mkv`], and the file offset where each frame ends.
fn mkv_and_frame_ends(jpegs: &[Vec<u8>], finish: bool) -> (Vec<u8>, Vec<usize>) {
    let mut w = MkvWriter::new(TrackInfo {
        width: 320,
        height: 240,
        title: "test camera".into(),
        start_unix_micros: START,
    });
    let mut file = w.header().to_vec();
    let mut ends = Vec::new();
    for (k, jpeg) in jpegs.iter().enumerate() {
        file.extend(w.frame(jpeg, START + k as u64 * 33_333));
        ends.push(file.len());
    }
    if finish {
        let fin = w.finish();
        file.extend(fin.tail);
        for p in fin.patches {
            let at = p.offset as usize;
            file[at..at + p.bytes.len()].copy_from_slice(&p.bytes);
        }
    }
    (file, ends)
}

/// ffprobe's fields of the (only) stream and of the format, as `stream.NAME` and `format.NAME`.
fn probe(path: &Path) -> HashMap<String, String> {
    let out = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_streams",
            "-show_format",
            "-count_frames",
            "-of",
            "flat",
        ])
        .arg(path));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let k = k.replace("streams.stream.0.", "stream.");
            (k, v.trim_matches('"').to_string())
        })
        .collect()
}

/// ffmpeg decoding every frame to nothing.
fn decode(path: &Path) -> Output {
    Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg is installed")
}

#[test]
fn ffprobe_and_ffmpeg_read_a_finished_file() {
    let dir = TempDir::new("mkv-finished");
    let jpegs = jpegs();
    assert_eq!(jpegs.len(), FRAMES);
    let path = dir.0.join("finished.mkv");
    std::fs::write(&path, mkv(&jpegs, true)).unwrap();

    let p = probe(&path);
    assert_eq!(p["stream.codec_name"], "mjpeg", "{p:?}");
    assert_eq!(p["stream.width"], "320");
    assert_eq!(p["stream.height"], "240");
    assert_eq!(p["stream.nb_read_frames"], FRAMES.to_string());
    assert_eq!(p["format.format_name"], "matroska,webm");
    let duration: f64 = p["format.duration"].parse().expect("a duration");
    assert!((duration - 2.0).abs() < 0.05, "duration {duration}");

    let out = decode(&path);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_file_cut_mid_cluster_still_plays_up_to_the_cut() {
    let dir = TempDir::new("mkv-cut");
    let jpegs = jpegs();
    let (whole, ends) = mkv_and_frame_ends(&jpegs, false);
    let unfinished = dir.0.join("unfinished.mkv");
    std::fs::write(&unfinished, &whole).unwrap();
    let p = probe(&unfinished);
    assert_eq!(p["stream.nb_read_frames"], FRAMES.to_string(), "{p:?}");
    assert!(decode(&unfinished).stderr.is_empty());

    // Cut 10% from the end, inside a JPEG, as a crash leaves it: every whole frame is there.
    let at = whole.len() * 9 / 10;
    let cut = dir.0.join("cut.mkv");
    std::fs::write(&cut, &whole[..at]).unwrap();
    let p = probe(&cut);
    assert_eq!(p["stream.codec_name"], "mjpeg", "{p:?}");
    let frames: usize = p["stream.nb_read_frames"].parse().unwrap();
    assert!(frames >= 50, "{frames} frames");
    assert_eq!(frames, ends.iter().filter(|&&e| e <= at).count());
    let out = decode(&cut);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().all(|l| l.contains("File ended prematurely")),
        "{err}"
    );

    // Other cuts: in a block's head, in a cluster's head (frame 31 starts the second cluster), right
    // after a frame, and all along the file.
    let mut cuts = vec![ends[29] + 3, ends[30] + 10, ends[40]];
    cuts.extend((1..10).map(|tenth| whole.len() * tenth / 10 + 1));
    for at in cuts {
        std::fs::write(&cut, &whole[..at]).unwrap();
        let p = probe(&cut);
        let whole_frames = ends.iter().filter(|&&e| e <= at).count();
        assert_eq!(
            p["stream.nb_read_frames"],
            whole_frames.to_string(),
            "cut at {at}"
        );
    }
}

/// The JPEGs of `path`, copied out by ffmpeg without decoding, from `seek` seconds on.
fn copy_out(path: &Path, seek: &str) -> Vec<Vec<u8>> {
    let out = run(Command::new("ffmpeg")
        .args(["-v", "error", "-ss", seek, "-i"])
        .arg(path)
        .args(["-c", "copy", "-f", "mjpeg", "-"]));
    split(&out.stdout)
}

#[test]
fn frames_come_back_out_byte_for_byte_and_seeking_finds_them() {
    let dir = TempDir::new("mkv-copy");
    let jpegs = jpegs();
    for finish in [true, false] {
        // Seeking in the unfinished file works without Cues, by scanning clusters.
        let path = dir.0.join(format!("copy-{finish}.mkv"));
        std::fs::write(&path, mkv(&jpegs, finish)).unwrap();
        let all = copy_out(&path, "0");
        assert_eq!(all.len(), FRAMES);
        assert!(all == jpegs, "every JPEG comes back byte for byte");
        assert_eq!(all[10], jpegs[10]);
        // Frame 45 was captured at 1.499 s, 46 at 1.533 s.
        let from = copy_out(&path, "1.51");
        assert!(
            from[..] == jpegs[45..],
            "finish {finish}: {} frames",
            from.len()
        );
    }
}

/// The reader (`mkv_read`) on files other tools wrote: ffmpeg's remux (CRC-32 elements, its own Cues and
/// SeekHead) and mkvmerge's. Every frame comes back byte for byte at its time, and seeking finds it.
#[test]
fn the_reader_reads_what_ffmpeg_and_mkvmerge_write() {
    use mjpegd_core::mkv_read::{open, ReadAt};
    let dir = TempDir::new("mkv-read-others");
    let jpegs = jpegs();
    let ours = dir.0.join("ours.mkv");
    std::fs::write(&ours, mkv(&jpegs, true)).unwrap();
    let by_ffmpeg = dir.0.join("ffmpeg.mkv");
    run(Command::new("ffmpeg")
        .args(["-loglevel", "error", "-i"])
        .arg(&ours)
        .args(["-c", "copy"])
        .arg(&by_ffmpeg));
    let by_mkvmerge = dir.0.join("mkvmerge.mkv");
    let merged = Command::new("mkvmerge")
        .arg("-o")
        .arg(&by_mkvmerge)
        .arg(&ours)
        .output()
        .expect("mkvmerge runs (mkvtoolnix, from scripts/setup.sh)");
    assert!(merged.status.code().is_some_and(|c| c <= 1), "{merged:?}");
    for file in [&ours, &by_ffmpeg, &by_mkvmerge] {
        let bytes = std::fs::read(file).unwrap();
        let src: &[u8] = &bytes;
        let seg = open(src).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!((seg.info.width, seg.info.height), (320, 240));
        let mut frames = seg.frames(seg.first_cluster);
        let mut got = Vec::new();
        while let Some(f) = frames.next(src).unwrap() {
            got.push(f);
        }
        assert_eq!(got.len(), jpegs.len(), "{}", file.display());
        for (f, j) in got.iter().zip(&jpegs) {
            assert_eq!(&bytes[f.data.start as usize..f.data.end as usize], &j[..]);
        }
        // Frame k captured k * 33,333 µs after the first, kept in whole milliseconds.
        for (k, f) in got.iter().enumerate() {
            assert_eq!(
                f.media_us,
                k as u64 * 33_333 / 1000 * 1000,
                "{}",
                file.display()
            );
        }
        // At 1 s the frame showing is frame 30, captured at 999 ms.
        let (at, _) = seg.frame_at(src, 1000).unwrap().unwrap();
        assert_eq!(at.media_us, 999_000, "{}", file.display());
        assert!(src.file_len() > 0);
    }
}
