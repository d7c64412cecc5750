//! Cost per frame of turning the picture at the source (`rotate`, `flip`: libjpeg-turbo's lossless
//! transform) and of giving a table-less frame the standard Huffman tables, at 720p and 1080p: camera-like
//! 4:2:2 JPEGs at quality 80 of a detailed picture; median of 5 runs of 1 s each, per frame. Run with
//! `cargo bench -p mjpegd --bench orient` (libjpeg-turbo is optimised in every profile, so
//! `--profile dev` measures the same transform).

use mjpegd::source::orient::{turn_blocking, Flip, Orientation};
use mjpegd_core::parse::huffman::add_standard_tables;
use std::time::{Duration, Instant};

/// A 4:2:2 JPEG of a picture (gradients, a checkerboard and light noise: about the size of a camera frame).
fn frame(w: usize, h: usize) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let n = (((x * 31 + y * 17) ^ (x * y)) % 8) + ((x / 64 + y / 64) % 2) * 48;
            pixels.extend([
                ((x * 255 / w) + n) as u8,
                ((y * 255 / h) + n) as u8,
                (((x + y) / 3 + n) % 256) as u8,
            ]);
        }
    }
    let image = turbojpeg::Image {
        pixels: &pixels[..],
        width: w,
        pitch: w * 3,
        height: h,
        format: turbojpeg::PixelFormat::RGB,
    };
    turbojpeg::compress(image, 80, turbojpeg::Subsamp::Sub2x1)
        .unwrap()
        .to_vec()
}

/// Median over 5 runs of the time per call of `f`, each run lasting about a second.
fn median_per_call(mut f: impl FnMut()) -> Duration {
    let mut runs: Vec<Duration> = (0..5)
        .map(|_| {
            let started = Instant::now();
            let mut n = 0u32;
            while started.elapsed() < Duration::from_secs(1) {
                f();
                n += 1;
            }
            started.elapsed() / n
        })
        .collect();
    runs.sort();
    runs[2]
}

fn main() {
    let mut transformer = turbojpeg::Transformer::new().unwrap();
    for (w, h) in [(1280, 720), (1920, 1080)] {
        let jpeg = frame(w, h);
        println!("{w}x{h}, {} KiB:", jpeg.len() / 1024);
        for (name, o) in [
            (
                "rotate 90",
                Orientation {
                    rotate: 90,
                    flip: None,
                },
            ),
            (
                "rotate 180",
                Orientation {
                    rotate: 180,
                    flip: None,
                },
            ),
            (
                "rotate 270",
                Orientation {
                    rotate: 270,
                    flip: None,
                },
            ),
            (
                "flip horizontal",
                Orientation {
                    rotate: 0,
                    flip: Some(Flip::Horizontal),
                },
            ),
            (
                "flip vertical",
                Orientation {
                    rotate: 0,
                    flip: Some(Flip::Vertical),
                },
            ),
        ] {
            let t = median_per_call(|| {
                let out = turn_blocking(&mut transformer, o, &jpeg).unwrap();
                std::hint::black_box(out);
            });
            println!("  {name:16} {:6.2} ms/frame", t.as_secs_f64() * 1e3);
        }
        let sos = jpeg.windows(2).position(|p| p == [0xFF, 0xDA]).unwrap();
        let mut bare = jpeg[..2].to_vec();
        let mut pos = 2;
        while pos < sos {
            let len = u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]) as usize;
            if jpeg[pos + 1] != 0xC4 {
                bare.extend_from_slice(&jpeg[pos..pos + 2 + len]);
            }
            pos += 2 + len;
        }
        bare.extend_from_slice(&jpeg[sos..]);
        let t = median_per_call(|| {
            std::hint::black_box(add_standard_tables(&bare).unwrap());
        });
        println!(
            "  {:16} {:6.3} ms/frame",
            "huffman tables",
            t.as_secs_f64() * 1e3
        );
    }
}
