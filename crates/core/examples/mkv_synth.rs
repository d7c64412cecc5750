//! Writes a long recording quickly, for benchmarks of replay and seeking (bench/replay.py): the given
//! JPEGs in turn, as a camera at FPS would have recorded them for SECONDS, finished (Cues, sizes) unless
//! `--unfinished` comes first.
//!
//!     cargo run --release -p mjpegd-core --example mkv_synth -- OUT.mkv START_UNIX_US SECONDS FPS A.jpg B.jpg ...

use mjpegd_core::mkv::{MkvWriter, TrackInfo};
use std::io::{BufWriter, Seek, SeekFrom, Write};

fn main() -> std::io::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let finish = if args.first().map(String::as_str) == Some("--unfinished") {
        args.remove(0);
        false
    } else {
        true
    };
    let usage = "mkv_synth [--unfinished] OUT START_UNIX_US SECONDS FPS JPEG...";
    let [out, start, seconds, fps, jpegs @ ..] = &args[..] else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let start: u64 = start.parse().expect("START_UNIX_US");
    let seconds: f64 = seconds.parse().expect("SECONDS");
    let fps: f64 = fps.parse().expect("FPS");
    let jpegs: Vec<Vec<u8>> = jpegs.iter().map(std::fs::read).collect::<Result<_, _>>()?;
    assert!(!jpegs.is_empty(), "{usage}");
    // Picture size from the first JPEG's SOF0/SOF2 (enough for ffmpeg's and mjpegd's own JPEGs).
    let j = &jpegs[0];
    let sof = j
        .windows(2)
        .position(|w| w[0] == 0xFF && matches!(w[1], 0xC0..=0xC2))
        .expect("a JPEG frame header");
    let height = u16::from_be_bytes([j[sof + 5], j[sof + 6]]);
    let width = u16::from_be_bytes([j[sof + 7], j[sof + 8]]);
    let mut w = MkvWriter::new(TrackInfo {
        width,
        height,
        title: "synth".into(),
        start_unix_micros: start,
    });
    let mut file = BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    file.write_all(w.header())?;
    let n = (seconds * fps) as u64;
    let mut head = Vec::new();
    for k in 0..n {
        let jpeg = &jpegs[k as usize % jpegs.len()];
        head.clear();
        w.frame_head_into(jpeg.len(), start + (k as f64 * 1e6 / fps) as u64, &mut head);
        file.write_all(&head)?;
        file.write_all(jpeg)?;
    }
    if finish {
        let fin = w.finish();
        file.write_all(&fin.tail)?;
        let mut file = file.into_inner()?;
        for p in &fin.patches {
            file.seek(SeekFrom::Start(p.offset))?;
            file.write_all(&p.bytes)?;
        }
        file.sync_all()?;
    } else {
        file.flush()?;
    }
    eprintln!("{out}: {n} frames of {width}x{height}");
    Ok(())
}
