//! Turning raw camera frames (YUYV, NV12) into JPEGs on a pool of threads, in capture order.
//!
//! One libjpeg-turbo encoder handles about 400 720p frames a second on this class of machine, but a
//! 1080p YUYV camera at 60 fps, or a slower CPU, needs more than one core. Frames are handed to whichever
//! worker is free; the pool numbers them as it hands them out and a small reorder buffer at the exit puts
//! them back in capture order. When every worker is busy the frame is dropped at the door (and counted)
//! rather than queued: a backlog would only add latency.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::time::SystemTime;
use turbojpeg::{Compressor, Subsamp, YuvPlanesImage};

/// A raw pixel layout mjpegd can encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawFormat {
    /// Packed 4:2:2, Y0 U Y1 V.
    Yuyv,
    /// Planar Y, then interleaved UV at half resolution (4:2:0).
    Nv12,
}

impl RawFormat {
    /// Bytes of one frame of `width` x `height`.
    pub fn frame_len(self, width: usize, height: usize) -> usize {
        match self {
            RawFormat::Yuyv => width * height * 2,
            RawFormat::Nv12 => width * height * 3 / 2,
        }
    }
}

/// Encodes raw frames of one size and layout; reuses its plane buffers between frames.
pub struct RawEncoder {
    format: RawFormat,
    width: usize,
    height: usize,
    compressor: Compressor,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl RawEncoder {
    pub fn new(
        format: RawFormat,
        width: u32,
        height: u32,
        quality: u8,
    ) -> Result<RawEncoder, String> {
        let (width, height) = (width as usize, height as usize);
        if width % 2 != 0 || height % 2 != 0 || width == 0 || height == 0 {
            return Err(format!(
                "cannot encode a {width}x{height} frame: sizes must be even"
            ));
        }
        let mut compressor = Compressor::new().map_err(|e| e.to_string())?;
        compressor
            .set_quality(quality.clamp(1, 100) as i32)
            .map_err(|e| e.to_string())?;
        let chroma = match format {
            RawFormat::Yuyv => width / 2 * height,
            RawFormat::Nv12 => width / 2 * height / 2,
        };
        Ok(RawEncoder {
            format,
            width,
            height,
            compressor,
            y: vec![0; width * height],
            u: vec![0; chroma],
            v: vec![0; chroma],
        })
    }

    /// Encodes one frame. A buffer shorter than a whole frame is an error (a truncated capture).
    pub fn encode(&mut self, raw: &[u8]) -> Result<Bytes, String> {
        let need = self.format.frame_len(self.width, self.height);
        if raw.len() < need {
            return Err(format!("raw frame of {} bytes, {need} expected", raw.len()));
        }
        let (w, h) = (self.width, self.height);
        let subsamp = match self.format {
            RawFormat::Yuyv => {
                for (i, px) in raw[..need].chunks_exact(4).enumerate() {
                    self.y[2 * i] = px[0];
                    self.u[i] = px[1];
                    self.y[2 * i + 1] = px[2];
                    self.v[i] = px[3];
                }
                Subsamp::Sub2x1
            }
            RawFormat::Nv12 => {
                self.y.copy_from_slice(&raw[..w * h]);
                for (i, uv) in raw[w * h..need].chunks_exact(2).enumerate() {
                    self.u[i] = uv[0];
                    self.v[i] = uv[1];
                }
                Subsamp::Sub2x2
            }
        };
        let image = YuvPlanesImage {
            y_plane: &self.y[..],
            u_plane: &self.u[..],
            v_plane: &self.v[..],
            width: w,
            height: h,
            y_stride: w,
            u_stride: w / 2,
            v_stride: w / 2,
            subsamp,
        };
        self.compressor
            .compress_yuv_planes_to_vec(&image)
            .map(Bytes::from)
            .map_err(|e| format!("JPEG encoding failed: {e}"))
    }
}

/// A raw frame waiting for an encoder.
struct Job {
    seq: u64,
    raw: Vec<u8>,
    at: SystemTime,
}

/// An encoded frame (or why it could not be encoded), in its capture position.
pub type Encoded = (SystemTime, Result<Bytes, String>);

/// A pool of encoder threads. Feed it with [`EncoderPool::submit`] from the capture thread; read frames in
/// order with an [`Reorder`] on the receiving side of the output channel.
pub struct EncoderPool {
    workers: Vec<SyncSender<Job>>,
    next_worker: usize,
    next_seq: u64,
}

impl EncoderPool {
    /// Starts `threads` encoders whose results go to `out` as (sequence, frame).
    pub fn start(
        threads: usize,
        format: RawFormat,
        width: u32,
        height: u32,
        quality: u8,
        out: tokio::sync::mpsc::Sender<(u64, Encoded)>,
    ) -> Result<EncoderPool, String> {
        let mut workers = Vec::new();
        for i in 0..threads.max(1) {
            let mut encoder = RawEncoder::new(format, width, height, quality)?;
            let (tx, rx) = sync_channel::<Job>(1);
            let out = out.clone();
            std::thread::Builder::new()
                .name(format!("jpeg-encoder-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        let jpeg = encoder.encode(&job.raw);
                        if out.blocking_send((job.seq, (job.at, jpeg))).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| e.to_string())?;
            workers.push(tx);
        }
        Ok(EncoderPool {
            workers,
            next_worker: 0,
            next_seq: 0,
        })
    }

    /// Hands a frame to a free encoder. Returns false (the frame is dropped) when all are busy or gone.
    pub fn submit(&mut self, raw: Vec<u8>, at: SystemTime) -> bool {
        let mut job = Job {
            seq: self.next_seq,
            raw,
            at,
        };
        for k in 0..self.workers.len() {
            let i = (self.next_worker + k) % self.workers.len();
            match self.workers[i].try_send(job) {
                Ok(()) => {
                    self.next_worker = (i + 1) % self.workers.len();
                    self.next_seq += 1;
                    return true;
                }
                Err(TrySendError::Full(j)) | Err(TrySendError::Disconnected(j)) => job = j,
            }
        }
        false
    }
}

/// Puts pool output back in capture order.
#[derive(Default)]
pub struct Reorder {
    next: u64,
    waiting: BTreeMap<u64, Encoded>,
}

impl Reorder {
    /// Adds a finished frame; returns the frames now ready, in order.
    pub fn push(&mut self, seq: u64, frame: Encoded) -> Vec<Encoded> {
        self.waiting.insert(seq, frame);
        let mut ready = Vec::new();
        while let Some(f) = self.waiting.remove(&self.next) {
            ready.push(f);
            self.next += 1;
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn yuyv(w: usize, h: usize, shade: u8) -> Vec<u8> {
        (0..w * h / 2)
            .flat_map(|_| [shade, 128, shade, 128])
            .collect()
    }

    #[test]
    fn yuyv_and_nv12_encode_to_jpegs_of_the_frame_size() {
        let mut e = RawEncoder::new(RawFormat::Yuyv, 64, 32, 80).unwrap();
        let jpeg = e.encode(&yuyv(64, 32, 200)).unwrap();
        let h = turbojpeg::read_header(&jpeg).unwrap();
        assert_eq!((h.width, h.height), (64, 32));
        let mut e = RawEncoder::new(RawFormat::Nv12, 64, 32, 80).unwrap();
        let jpeg = e.encode(&vec![100; 64 * 32 * 3 / 2]).unwrap();
        assert_eq!(turbojpeg::read_header(&jpeg).unwrap().width, 64);
        assert!(e.encode(&[0; 10]).is_err(), "a truncated frame is refused");
    }

    #[test]
    fn reorder_releases_frames_in_capture_order() {
        let mut r = Reorder::default();
        let f = |n: u64| (UNIX_EPOCH, Ok(Bytes::from(vec![n as u8])));
        assert!(r.push(1, f(1)).is_empty());
        assert!(r.push(2, f(2)).is_empty());
        let out: Vec<u8> = r
            .push(0, f(0))
            .into_iter()
            .map(|(_, b)| b.unwrap()[0])
            .collect();
        assert_eq!(out, vec![0, 1, 2]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pool_keeps_capture_order() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let mut pool = EncoderPool::start(3, RawFormat::Yuyv, 64, 32, 80, tx).unwrap();
        let feeder = std::thread::spawn(move || {
            let mut sent = 0;
            for shade in 0..60u8 {
                if pool.submit(
                    yuyv(64, 32, shade * 4),
                    UNIX_EPOCH + std::time::Duration::from_secs(shade as u64),
                ) {
                    sent += 1;
                } else {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            sent
        });
        let sent = tokio::task::spawn_blocking(move || feeder.join().unwrap())
            .await
            .unwrap();
        let mut reorder = Reorder::default();
        let mut times = Vec::new();
        while times.len() < sent {
            let (seq, frame) = rx.recv().await.unwrap();
            times.extend(reorder.push(seq, frame).into_iter().map(|(t, _)| t));
        }
        assert!(times.windows(2).all(|w| w[0] < w[1]), "in capture order");
    }
}
