//! Throughput of the YUYV -> JPEG encoder pool: frames a second at 720p and 1080p for 1, 2 and 4 encoder
//! threads (quality 80), median of 3 runs of 3 s each. Run with `cargo bench -p mjpegd --bench encode_pool`.

use mjpegd::source::encode::{EncoderPool, RawFormat, Reorder};
use std::time::{Duration, Instant, SystemTime};

fn yuyv_frame(w: usize, h: usize, shift: usize) -> Vec<u8> {
    // A moving gradient: realistic enough that the encoder does real work.
    let mut f = vec![0u8; w * h * 2];
    for y in 0..h {
        for x in (0..w).step_by(2) {
            let i = (y * w + x) * 2;
            let l = ((x + y + shift) % 256) as u8;
            f[i] = l;
            f[i + 1] = ((x * 3 + shift) % 256) as u8;
            f[i + 2] = l.wrapping_add(3);
            f[i + 3] = ((y * 5 + shift) % 256) as u8;
        }
    }
    f
}

fn run(w: usize, h: usize, encoders: usize, secs: f64) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let mut pool =
        EncoderPool::start(encoders, RawFormat::Yuyv, w as u32, h as u32, 80, tx).unwrap();
    let frames: Vec<Vec<u8>> = (0..4).map(|i| yuyv_frame(w, h, i * 17)).collect();
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let feeder = std::thread::spawn(move || {
        let mut i = 0;
        while Instant::now() < end {
            if !pool.submit(frames[i % 4].clone(), SystemTime::now()) {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            i += 1;
        }
    });
    let started = Instant::now();
    let done = rt.block_on(async move {
        let mut reorder = Reorder::default();
        let mut done = 0u64;
        while let Some((seq, frame)) = rx.recv().await {
            for (_, jpeg) in reorder.push(seq, frame) {
                assert!(jpeg.is_ok());
                done += 1;
            }
            if Instant::now() >= end {
                break;
            }
        }
        done
    });
    let elapsed = started.elapsed().as_secs_f64();
    feeder.join().unwrap();
    done as f64 / elapsed
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let secs = if quick { 0.2 } else { 3.0 };
    let runs = if quick { 1 } else { 3 };
    println!("YUYV -> JPEG encoder pool, quality 80 (median of {runs} runs of {secs} s)");
    println!("| resolution | encoders | frames/s |");
    println!("|---|---|---|");
    for (w, h) in [(1280, 720), (1920, 1080)] {
        for encoders in [1, 2, 4] {
            let mut results: Vec<f64> = (0..runs).map(|_| run(w, h, encoders, secs)).collect();
            results.sort_by(f64::total_cmp);
            println!(
                "| {w}x{h} | {encoders} | {:.0} |",
                results[results.len() / 2]
            );
        }
    }
}
