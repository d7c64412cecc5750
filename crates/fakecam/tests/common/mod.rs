//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

/// Writes `n` small, distinct JPEGs (solid colours, each with a different size in bytes) named
/// `frame-00.jpg`, ... into `dir` and returns their bytes in name order.
pub fn write_jpegs(dir: &Path, n: usize, width: usize, height: usize) -> Vec<Vec<u8>> {
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let mut rgb = vec![0u8; width * height * 3];
            for (p, px) in rgb.chunks_exact_mut(3).enumerate() {
                // A colour per file plus a diagonal stripe whose position depends on the file.
                let (x, y) = (p % width, p / width);
                let stripe = (x + y + i * 7) % 16 < 4;
                px.copy_from_slice(&if stripe {
                    [255, 255, 255]
                } else {
                    [
                        (i * 80 % 256) as u8,
                        (255 - i * 50 % 256) as u8,
                        (i * 120 % 256) as u8,
                    ]
                });
            }
            let img = turbojpeg::Image {
                pixels: &rgb[..],
                width,
                pitch: width * 3,
                height,
                format: turbojpeg::PixelFormat::RGB,
            };
            let jpeg = turbojpeg::compress(img, 85, turbojpeg::Subsamp::Sub2x2)
                .unwrap()
                .to_vec();
            std::fs::write(dir.join(format!("frame-{i:02}.jpg")), &jpeg).unwrap();
            jpeg
        })
        .collect()
}
