//! Turning one JPEG into a smaller (or lower-quality) one, on a bounded pool of threads off the async
//! runtime.
//!
//! A downscale is mostly a partial decode: libjpeg-turbo decodes at 1/2, 1/4 or 1/8 in the DCT domain with
//! its reduced inverse DCTs, so the largest of those reductions that still covers the target is chosen
//! ([`mjpegd_core::variant::dct_denominator`]), and only the rest (less than a factor of 2 each way) is
//! resized, with a Hamming filter from `fast_image_resize` (SIMD); when the DCT scale lands on the target
//! (1280x720 to 320x180 at 1/4, 1280x720 to 640x360 at 1/2), or within 2 pixels of it (libjpeg rounds
//! scaled sides up: 1284x724 at 1/4 is 321x181 for 320x180), nothing is resized: the extra edge is
//! cropped. The picture goes through RGB, which works for every JPEG a camera sends (4:2:0, 4:2:2, 4:4:4,
//! greyscale); at the reduced size that costs little beside the entropy decoding of the original, which no
//! scale avoids. The result is encoded 4:2:0 at the variant's quality.
//!
//! The pool admits one transcode fewer at once than the machine has cores, at least one
//! ([`TranscodePool::global`]), whatever the number of cameras and variants, so a core stays free for the
//! sources and the stream writers: a variant waits its turn for a slot (and, being a `latest` reader of
//! the camera, skips the frames that went by meanwhile) instead of taking that core from the original
//! stream. Each slot keeps its decoder, encoder and buffers, so memory is bounded by the number
//! of slots, not of variants; a buffer that grew past [`KEEP_BUFFER`] is let go after use.

use bytes::Bytes;
use fast_image_resize::images::{Image as ResizeImage, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use mjpegd_core::variant::{dct_denominator, dct_scaled, fit, VariantKey};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use turbojpeg::{Compressor, Decompressor, Image, PixelFormat, ScalingFactor, Subsamp};

/// Decoded pixels a transcode may hold at most (4096x4096, 48 MiB of RGB; a 4K UHD picture is 8.3 Mpx): a
/// frame that would need more at its DCT scale (a quality-only variant of a huge picture, or a source that
/// claims one) is refused and counted rather than decoded, so a slot's memory stays bounded whatever
/// --max-picture-size lets through.
pub const MAX_DECODED_PIXELS: usize = 4096 * 4096;
/// A slot's buffer larger than this after a transcode is freed, so one huge frame does not pin its memory.
pub const KEEP_BUFFER: usize = 32 << 20;
/// Pixels a DCT-scaled side may exceed its target by and be cropped instead of resized.
const SETTLE: u32 = 2;
/// Most progressive scans decoded in one frame (libjpeg-turbo's guard against the progressive-JPEG
/// exploit: a few kilobytes of scans can cost seconds of CPU).
const SCAN_LIMIT: u32 = 500;

/// One decoder, encoder and resizer with their buffers, reused from frame to frame.
pub struct Transcoder {
    decompressor: Decompressor,
    compressor: Compressor,
    resizer: Resizer,
    decoded: Vec<u8>,
    resized: Vec<u8>,
}

impl Transcoder {
    pub fn new() -> Result<Transcoder, String> {
        let mut decompressor = Decompressor::new().map_err(|e| e.to_string())?;
        decompressor
            .set_scan_limit(SCAN_LIMIT)
            .map_err(|e| e.to_string())?;
        let mut compressor = Compressor::new().map_err(|e| e.to_string())?;
        compressor
            .set_subsamp(Subsamp::Sub2x2)
            .map_err(|e| e.to_string())?;
        Ok(Transcoder {
            decompressor,
            compressor,
            resizer: Resizer::new(),
            decoded: Vec::new(),
            resized: Vec::new(),
        })
    }

    /// `jpeg` fitted inside the key's box (never enlarged) and encoded at its quality.
    pub fn transcode(&mut self, jpeg: &[u8], key: VariantKey) -> Result<Bytes, String> {
        let header = self
            .decompressor
            .read_header(jpeg)
            .map_err(|e| format!("cannot read the JPEG header: {e}"))?;
        let source = (header.width as u32, header.height as u32);
        let target = fit(source, (key.width, key.height));
        // Lossless JPEGs cannot be decoded scaled.
        let d = if header.is_lossless {
            1
        } else {
            dct_denominator(source, target)
        };
        let (dw, dh) = (dct_scaled(source.0, d), dct_scaled(source.1, d));
        let pixels = dw as usize * dh as usize;
        if pixels > MAX_DECODED_PIXELS {
            return Err(format!(
                "a {}x{} picture is too large to transcode",
                source.0, source.1
            ));
        }
        self.decompressor
            .set_scaling_factor(ScalingFactor::new(1, d as usize))
            .map_err(|e| e.to_string())?;
        let need = pixels * 3;
        if self.decoded.len() < need {
            self.decoded.resize(need, 0);
        }
        self.decompressor
            .decompress(
                jpeg,
                Image {
                    pixels: &mut self.decoded[..need],
                    width: dw as usize,
                    pitch: dw as usize * 3,
                    height: dh as usize,
                    format: PixelFormat::RGB,
                },
            )
            .map_err(|e| format!("cannot decode: {e}"))?;
        let (width, height) = target;
        // Within rounding of the target (libjpeg rounds scaled sides up: 1284x724 at 1/4 is 321x181 for
        // 320x180), the scaled picture is cropped by its pitch, at no cost, rather than resized.
        let settle = dw.saturating_sub(width) <= SETTLE && dh.saturating_sub(height) <= SETTLE;
        let (rgb, pitch): (&[u8], usize) = if settle {
            (&self.decoded[..need], dw as usize * 3)
        } else {
            let out = width as usize * height as usize * 3;
            if self.resized.len() < out {
                self.resized.resize(out, 0);
            }
            let src = ImageRef::new(dw, dh, &self.decoded[..need], PixelType::U8x3)
                .map_err(|e| e.to_string())?;
            let mut dst = ResizeImage::from_slice_u8(
                width,
                height,
                &mut self.resized[..out],
                PixelType::U8x3,
            )
            .map_err(|e| e.to_string())?;
            self.resizer
                .resize(
                    &src,
                    &mut dst,
                    &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Hamming)),
                )
                .map_err(|e| format!("cannot resize: {e}"))?;
            (&self.resized[..out], width as usize * 3)
        };
        self.compressor
            .set_quality(key.quality.clamp(1, 100) as i32)
            .map_err(|e| e.to_string())?;
        let encoded = self
            .compressor
            .compress_to_vec(Image {
                pixels: rgb,
                width: width as usize,
                pitch,
                height: height as usize,
                format: PixelFormat::RGB,
            })
            .map_err(|e| format!("cannot encode: {e}"))?;
        Ok(Bytes::from(encoded))
    }

    /// Frees buffers that one large frame grew past [`KEEP_BUFFER`].
    fn trim(&mut self) {
        for buf in [&mut self.decoded, &mut self.resized] {
            if buf.capacity() > KEEP_BUFFER {
                *buf = Vec::new();
            }
        }
        if self.resizer.size_of_internal_buffers() > KEEP_BUFFER {
            self.resizer.reset_internal_buffers();
        }
    }
}

/// A bounded number of transcodes at once, each on the blocking pool with a [`Transcoder`] of its own.
pub struct TranscodePool {
    slots: Arc<Semaphore>,
    idle: Mutex<Vec<Transcoder>>,
    size: usize,
}

impl TranscodePool {
    /// A pool of `size` slots (at least 1).
    pub fn new(size: usize) -> TranscodePool {
        let size = size.max(1);
        TranscodePool {
            slots: Arc::new(Semaphore::new(size)),
            idle: Mutex::new(Vec::with_capacity(size)),
            size,
        }
    }

    /// The process's pool: a slot per core but one (at least one).
    pub fn global() -> &'static TranscodePool {
        static POOL: OnceLock<TranscodePool> = OnceLock::new();
        POOL.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            TranscodePool::new(cores.saturating_sub(1))
        })
    }

    /// Slots, i.e. transcodes that may run at once.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Waits for a free slot (first come, first served).
    pub async fn slot(&self) -> Slot<'_> {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        Slot { pool: self, permit }
    }
}

/// A turn on the pool, taken before choosing the frame, so the frame transcoded is the newest one.
pub struct Slot<'a> {
    pool: &'a TranscodePool,
    permit: tokio::sync::OwnedSemaphorePermit,
}

impl Slot<'_> {
    /// Transcodes `jpeg` for `key` on the blocking pool; returns it with the time the transcode took.
    /// The slot stays taken until the work ends, even if the caller stops waiting for it.
    pub async fn transcode(
        self,
        jpeg: Bytes,
        key: VariantKey,
    ) -> Result<(Bytes, Duration), String> {
        let idle = self
            .pool
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let permit = self.permit;
        let work = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut transcoder = match idle {
                Some(t) => t,
                None => Transcoder::new()?,
            };
            let started = Instant::now();
            let result = transcoder.transcode(&jpeg, key);
            let took = started.elapsed();
            transcoder.trim();
            Ok::<_, String>((transcoder, result.map(|b| (b, took))))
        });
        let (transcoder, result) = work
            .await
            .map_err(|e| format!("transcode task failed: {e}"))??;
        let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.pool.size {
            idle.push(transcoder);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(width: usize, height: usize, subsamp: Subsamp) -> Vec<u8> {
        let pixels: Vec<u8> = (0..width * height)
            .flat_map(|i| {
                let (x, y) = (i % width, i / width);
                [(x * 255 / width) as u8, (y * 255 / height) as u8, 128]
            })
            .collect();
        let image = Image {
            pixels: &pixels[..],
            width,
            pitch: width * 3,
            height,
            format: PixelFormat::RGB,
        };
        turbojpeg::compress(image, 90, subsamp).unwrap().to_vec()
    }

    fn size(jpeg: &[u8]) -> (usize, usize) {
        let h = turbojpeg::read_header(jpeg).unwrap();
        (h.width, h.height)
    }

    fn key(width: u32, height: u32, quality: u8) -> VariantKey {
        VariantKey {
            width,
            height,
            quality,
        }
    }

    #[test]
    fn exact_dct_scales_and_resized_remainders_give_the_fitted_size() {
        let mut t = Transcoder::new().unwrap();
        let hd = jpeg(1280, 720, Subsamp::Sub2x2);
        assert_eq!(
            size(&t.transcode(&hd, key(320, 180, 80)).unwrap()),
            (320, 180)
        );
        assert_eq!(
            size(&t.transcode(&hd, key(640, 360, 80)).unwrap()),
            (640, 360)
        );
        // 1/2 gives 640x360, then resized to 500x282 (4:2:2 source).
        let hd422 = jpeg(1280, 720, Subsamp::Sub2x1);
        assert_eq!(
            size(&t.transcode(&hd422, key(500, 500, 70)).unwrap()),
            (500, 282)
        );
        // Within rounding of the target the scaled picture is cropped: 1284x724 at 1/4 is 321x181.
        let odd = jpeg(1284, 724, Subsamp::Sub2x2);
        assert_eq!(
            size(&t.transcode(&odd, key(320, 180, 80)).unwrap()),
            (320, 180)
        );
        // A box larger than the picture does not enlarge it; greyscale comes out in colour 4:2:0.
        let grey = jpeg(320, 240, Subsamp::Gray);
        assert_eq!(
            size(&t.transcode(&grey, key(640, 480, 50)).unwrap()),
            (320, 240)
        );
    }

    #[test]
    fn a_picture_too_large_to_decode_within_the_bound_is_refused_unless_scaled_down() {
        let mut t = Transcoder::new().unwrap();
        // A small JPEG whose header claims 8000x8000: 64 Mpx at full size, 1 Mpx at 1/8.
        let mut big = jpeg(16, 16, Subsamp::Sub2x2);
        let sof = big.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
        big[sof + 5..sof + 9].copy_from_slice(&[0x1f, 0x40, 0x1f, 0x40]);
        let e = t.transcode(&big, key(8000, 8000, 50)).unwrap_err();
        assert!(e.contains("too large"), "{e}");
        // At 1/8 it is within the bound: decoding the truncated data may fail, but not for its size.
        if let Err(e) = t.transcode(&big, key(1000, 1000, 50)) {
            assert!(!e.contains("too large"), "{e}");
        }
    }

    #[test]
    fn a_lower_quality_makes_a_smaller_file_and_garbage_is_an_error() {
        let mut t = Transcoder::new().unwrap();
        let hd = jpeg(640, 480, Subsamp::Sub2x2);
        let high = t.transcode(&hd, key(640, 480, 95)).unwrap();
        let low = t.transcode(&hd, key(640, 480, 10)).unwrap();
        assert!(
            low.len() * 2 < high.len(),
            "{} vs {}",
            low.len(),
            high.len()
        );
        assert!(t
            .transcode(b"\xff\xd8not a jpeg\xff\xd9", key(16, 16, 50))
            .is_err());
        // After an error the transcoder still works.
        assert_eq!(
            size(&t.transcode(&hd, key(320, 240, 50)).unwrap()),
            (320, 240)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pool_runs_no_more_than_its_slots_at_once() {
        let pool = Arc::new(TranscodePool::new(2));
        let hd = Bytes::from(jpeg(640, 480, Subsamp::Sub2x2));
        let held_a = pool.slot().await;
        let _held_b = pool.slot().await;
        let p = pool.clone();
        let waiting =
            tokio::spawn(async move { p.slot().await.transcode(hd, key(160, 120, 50)).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "a third transcode waits for a slot");
        drop(held_a);
        let (out, took) = waiting.await.unwrap().unwrap();
        assert_eq!(size(&out), (160, 120));
        assert!(took > Duration::ZERO);
    }
}
