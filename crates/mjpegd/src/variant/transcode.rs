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
//! sources and the stream writers. Its turns are shared by [`TranscodeQueue`]: round-robin between
//! cameras, then between a camera's variants and its snapshots, so one camera's crowd (100 snapshots at
//! distinct sizes, four variants of an 8K picture) never slows another camera's variants. A variant waits
//! for one turn at a time and, being a `latest` reader of the camera, transcodes the newest frame when it
//! gets it, skipping the ones that went by; at most [`SNAPSHOT_QUEUE`] snapshots wait per camera, and one
//! more is refused at once.
//!
//! Transcodes run on the pool's own threads, one per slot, each keeping its decoder, encoder and buffers
//! for its life. Run on the async runtime's blocking pool instead, whose threads come and go, each
//! transcode's allocations landed in whichever thread's malloc arena ran it, and glibc kept them all: an
//! 8K snapshot flood grew the server by hundreds of MiB that stayed. On fixed threads, memory is bounded by
//! the number of slots, not of variants or requests; a buffer that grew past [`KEEP_BUFFER`] is let go
//! after use.

use bytes::Bytes;
use fast_image_resize::images::{Image as ResizeImage, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use mjpegd_core::transcode_queue::{Admit, Lane, TranscodeQueue};
use mjpegd_core::variant::{dct_denominator, dct_scaled, fit, VariantKey};
use std::panic::AssertUnwindSafe;
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
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

/// Snapshot transcodes one camera may have waiting for a slot; one more is refused at once (a 503).
pub const SNAPSHOT_QUEUE: usize = 8;

/// Work for a transcode thread: the frame, the variant, the slot it holds until done, and where the result
/// goes.
struct Job {
    jpeg: Bytes,
    key: VariantKey,
    slot: Slot,
    reply: oneshot::Sender<Result<(Bytes, Duration), String>>,
}

type Waiter = oneshot::Sender<Slot>;

struct Inner {
    queue: Mutex<TranscodeQueue<String, Waiter>>,
    jobs: mpsc::Sender<Job>,
}

/// A bounded number of transcodes at once, each on one of the pool's own threads, which keeps its
/// [`Transcoder`]; the turns are shared fairly between cameras and their variants ([`TranscodeQueue`]).
pub struct TranscodePool {
    inner: Arc<Inner>,
    size: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TranscodePool {
    /// A pool of `size` slots (at least 1), and as many threads.
    pub fn new(size: usize) -> TranscodePool {
        let size = size.max(1);
        let (jobs, rx) = mpsc::channel();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..size {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("transcode-{i}"))
                .spawn(move || work(&rx))
                .expect("cannot start a transcode thread");
        }
        TranscodePool {
            inner: Arc::new(Inner {
                queue: Mutex::new(TranscodeQueue::new(size)),
                jobs,
            }),
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

    /// Waits for a slot for `camera`'s `lane`, its fair turn. A variant's lane holds its one waiter; a
    /// camera's snapshots wait at most [`SNAPSHOT_QUEUE`] at once, and one more gets the reason at once.
    pub async fn slot(&self, camera: &str, lane: Lane) -> Result<Slot, String> {
        let capacity = match lane {
            Lane::Snapshots => SNAPSHOT_QUEUE,
            Lane::Variant(_) => 1,
        };
        let (tx, rx) = oneshot::channel();
        let admitted = {
            let mut queue = lock(&self.inner.queue);
            match queue.admit(camera.to_string(), lane, capacity, tx) {
                Admit::Full(tx) => {
                    // Waiters that stopped waiting (a snapshot that timed out) give their places back.
                    queue.retain(|w| !w.is_closed());
                    queue.admit(camera.to_string(), lane, capacity, tx)
                }
                a => a,
            }
        };
        match admitted {
            Admit::Now => Ok(Slot {
                inner: self.inner.clone(),
                armed: true,
            }),
            Admit::Queued => rx
                .await
                .map_err(|_| "the transcode pool stopped".to_string()),
            Admit::Full(_) => Err(match lane {
                Lane::Snapshots => format!(
                    "too many snapshots at a size: camera {camera} already has {SNAPSHOT_QUEUE} waiting for a transcoder; try again shortly, or ask for the original size"
                ),
                Lane::Variant(key) => format!("variant {key} of camera {camera} already waits for a transcoder"),
            }),
        }
    }
}

/// A pool thread: takes the next job, transcodes it with the thread's own [`Transcoder`] (whose buffers
/// are allocated, reused and freed on this thread, so memory stays with the slot), frees the slot, answers.
fn work(jobs: &Mutex<mpsc::Receiver<Job>>) {
    let mut transcoder: Option<Transcoder> = None;
    loop {
        let Ok(job) = lock(jobs).recv() else {
            return;
        };
        if job.reply.is_closed() {
            // Nobody waits for it any more (a snapshot that timed out): dropping the job frees the slot.
            continue;
        }
        let t = match &mut transcoder {
            Some(t) => t,
            None => match Transcoder::new() {
                Ok(t) => transcoder.insert(t),
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                    continue;
                }
            },
        };
        let started = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| t.transcode(&job.jpeg, job.key)));
        let took = started.elapsed();
        let result = match result {
            Ok(r) => {
                t.trim();
                r
            }
            Err(_) => {
                transcoder = None;
                Err("the transcoder failed on this frame".to_string())
            }
        };
        drop(job.slot);
        let _ = job.reply.send(result.map(|b| (b, took)));
    }
}

/// A turn on the pool, taken before choosing the frame, so the frame transcoded is the newest one. Given
/// back when dropped: by the caller that did not use it, or by the thread once the transcode is done.
pub struct Slot {
    inner: Arc<Inner>,
    armed: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut queue = lock(&self.inner.queue);
        while let Some(waiter) = queue.release() {
            let slot = Slot {
                inner: self.inner.clone(),
                armed: true,
            };
            match waiter.send(slot) {
                Ok(()) => return,
                // That waiter is gone: the slot (disarmed, it is still this one) goes to the next.
                Err(mut slot) => slot.armed = false,
            }
        }
    }
}

impl Slot {
    /// Transcodes `jpeg` for `key` on a pool thread; returns it with the time the transcode took.
    /// The slot stays taken until the work ends, even if the caller stops waiting for it.
    pub async fn transcode(
        self,
        jpeg: Bytes,
        key: VariantKey,
    ) -> Result<(Bytes, Duration), String> {
        let (reply, result) = oneshot::channel();
        let jobs = self.inner.jobs.clone();
        jobs.send(Job {
            jpeg,
            key,
            slot: self,
            reply,
        })
        .map_err(|_| "the transcode threads stopped".to_string())?;
        result
            .await
            .map_err(|_| "the transcode thread stopped".to_string())?
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

    fn snapshots() -> Lane {
        Lane::Snapshots
    }

    fn variant(width: u32) -> Lane {
        Lane::Variant(key(width, width * 3 / 4, 50))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pool_runs_no_more_than_its_slots_at_once() {
        let pool = Arc::new(TranscodePool::new(2));
        let hd = Bytes::from(jpeg(640, 480, Subsamp::Sub2x2));
        let held_a = pool.slot("a", variant(320)).await.unwrap();
        let _held_b = pool.slot("a", variant(160)).await.unwrap();
        let p = pool.clone();
        let waiting = tokio::spawn(async move {
            p.slot("b", snapshots())
                .await
                .unwrap()
                .transcode(hd, key(160, 120, 50))
                .await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "a third transcode waits for a slot");
        drop(held_a);
        let (out, took) = waiting.await.unwrap().unwrap();
        assert_eq!(size(&out), (160, 120));
        assert!(took > Duration::ZERO);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn excess_snapshots_are_refused_at_once_and_abandoned_waits_free_their_places() {
        let pool = Arc::new(TranscodePool::new(1));
        let held = pool.slot("a", variant(320)).await.unwrap();
        let mut waiting = Vec::new();
        for _ in 0..SNAPSHOT_QUEUE {
            let p = pool.clone();
            waiting.push(tokio::spawn(async move {
                p.slot("a", snapshots()).await.map(drop)
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let refused = pool.slot("a", snapshots()).await.err().unwrap();
        assert!(refused.contains("too many snapshots"), "{refused}");
        // Another camera's snapshots have places of their own.
        let p = pool.clone();
        let other = tokio::spawn(async move { p.slot("b", snapshots()).await.map(drop) });
        // Snapshots that stopped waiting give their places back.
        for w in &waiting {
            w.abort();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let p = pool.clone();
        let again = tokio::spawn(async move { p.slot("a", snapshots()).await.map(drop) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!again.is_finished(), "it waits, it is not refused");
        // The slot goes past the abandoned waiters to the live ones, and comes back free.
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), async {
            other.await.unwrap().unwrap();
            again.await.unwrap().unwrap();
        })
        .await
        .expect("the live waiters got the slot");
        let hd = Bytes::from(jpeg(640, 480, Subsamp::Sub2x2));
        let slot = tokio::time::timeout(Duration::from_secs(5), pool.slot("c", snapshots()))
            .await
            .expect("the slot is free again")
            .unwrap();
        assert_eq!(
            size(&slot.transcode(hd, key(320, 240, 50)).await.unwrap().0),
            (320, 240)
        );
    }
}
