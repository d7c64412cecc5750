//! The built-in test pattern: a source that runs anywhere.
//!
//! Each frame shows scrolling colour bars, a bouncing box, a large frame counter, the capture clock to the
//! millisecond, and a strip of cells with one lit per frame, so a frozen, repeated or skipped frame is
//! visible to the eye. It is drawn and encoded once per frame on a blocking thread, whatever the number of
//! clients.

use super::{Captured, Source, SourceError, SourceInfo};
use crate::render::{clock_text, Canvas, JpegEncoder, Yuv};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::time::{Instant, Interval, MissedTickBehavior};

/// The test pattern source.
pub struct Pattern {
    width: u32,
    height: u32,
    fps: f64,
    quality: u8,
    painter: Arc<Mutex<Painter>>,
    ticker: Option<Interval>,
}

struct Painter {
    canvas: Canvas,
    encoder: Option<JpegEncoder>,
    count: u64,
    row: Vec<Yuv>,
}

const BARS: [(u8, u8, u8); 8] = [
    (192, 192, 192),
    (192, 192, 0),
    (0, 192, 192),
    (0, 192, 0),
    (192, 0, 192),
    (192, 0, 0),
    (0, 0, 192),
    (32, 32, 32),
];

impl Pattern {
    /// A pattern of `width` x `height` at `fps`, JPEG `quality` 1-100.
    pub fn new(width: u32, height: u32, fps: f64, quality: u8) -> Pattern {
        Pattern {
            width,
            height,
            fps,
            quality,
            painter: Arc::new(Mutex::new(Painter {
                canvas: Canvas::new(width, height),
                encoder: None,
                count: 0,
                row: Vec::new(),
            })),
            ticker: None,
        }
    }
}

impl Painter {
    fn paint(
        &mut self,
        at: SystemTime,
        fps: f64,
        quality: u8,
    ) -> Result<bytes::Bytes, SourceError> {
        let n = self.count;
        self.count += 1;
        let c = &mut self.canvas;
        let (w, h) = (c.width() as i64, c.height() as i64);
        // Scrolling colour bars.
        let bar_w = (w / 8).max(1);
        let offset = (n as i64 * 4) % w;
        self.row.clear();
        self.row.extend((0..w).map(|x| {
            let (r, g, b) = BARS[(((x + offset) / bar_w) % 8) as usize];
            Yuv::rgb(r, g, b)
        }));
        c.fill_rows(&self.row);
        // A box bouncing around.
        let size = (h / 6).max(4);
        let span_x = (w - size).max(1);
        let span_y = (h - size).max(1);
        let bx = bounce(n as i64 * 7, span_x);
        let by = bounce(n as i64 * 5, span_y);
        c.rect(bx, by, size, size, Yuv::WHITE);
        // Frame counter and clock on a dark band.
        let scale = (w / 160).clamp(1, 8);
        let small = (scale / 2).max(1);
        c.rect(0, h / 2 - 6 * scale, w, 17 * scale, Yuv::BLACK);
        let counter = format!("#{n:06}");
        c.text_centered(h / 2 - 5 * scale, scale, &counter, Yuv::WHITE);
        let clock = clock_text(at);
        c.text_centered(h / 2 + 5 * scale, small, &clock, Yuv::WHITE);
        // One lit cell per frame: a skipped or repeated frame shows as a jump or a stall.
        let cells = (fps.round() as i64).clamp(1, 60);
        let cell = (w / cells).max(1);
        for i in 0..cells {
            let color = if i == n as i64 % cells {
                Yuv::rgb(255, 255, 0)
            } else {
                Yuv::BLACK
            };
            c.rect(
                i * cell + 1,
                h - 2 * small * 8 - 2,
                cell - 2,
                small * 8,
                color,
            );
        }
        let label = format!("mjpegd test pattern {}x{} @ {fps} fps", w, h);
        c.text(small * 4, small * 4, small, &label, Yuv::WHITE);
        draw_barcode(c, n);
        let encoder = match &mut self.encoder {
            Some(e) => e,
            None => self
                .encoder
                .insert(JpegEncoder::new(quality).map_err(|e| SourceError::broken(e.to_string()))?),
        };
        encoder
            .encode(c)
            .map_err(|e| SourceError::broken(format!("JPEG encoding failed: {e}")))
    }
}

/// Bits of the frame counter in the machine-readable band.
pub const BARCODE_BITS: u32 = 24;

/// Burns the frame counter into a band along the top edge, most significant bit first, one white (1) or
/// black (0) cell per bit across the full width, so a program (a test, a browser canvas) can read which
/// frame a picture is without OCR. Read the luma at the centre of cell i: x = (i + 0.5) * width / 24,
/// y = band height / 2.
fn draw_barcode(c: &mut Canvas, n: u64) {
    let (w, h) = (c.width() as i64, c.height() as i64);
    let band = barcode_height(h);
    for i in 0..BARCODE_BITS as i64 {
        let x0 = i * w / BARCODE_BITS as i64;
        let x1 = (i + 1) * w / BARCODE_BITS as i64;
        let bit = (n >> (BARCODE_BITS as i64 - 1 - i)) & 1;
        c.rect(
            x0,
            0,
            x1 - x0,
            band,
            if bit == 1 { Yuv::WHITE } else { Yuv::BLACK },
        );
    }
}

/// Height of the barcode band for a picture `height` pixels high.
pub fn barcode_height(height: i64) -> i64 {
    (height / 60).max(4) & !1
}

/// Reads the frame counter back from a decoded luma (grey) picture.
pub fn read_barcode(luma: &[u8], width: usize, height: usize) -> u64 {
    let y = (barcode_height(height as i64) / 2) as usize;
    (0..BARCODE_BITS as usize).fold(0, |n, i| {
        let x = (2 * i + 1) * width / (2 * BARCODE_BITS as usize);
        (n << 1) | u64::from(luma[y * width + x] > 128)
    })
}

fn bounce(pos: i64, span: i64) -> i64 {
    let p = pos % (2 * span);
    if p < span {
        p
    } else {
        2 * span - p
    }
}

impl Source for Pattern {
    fn describe(&self) -> String {
        format!(
            "test pattern {}x{} at {} fps",
            self.width, self.height, self.fps
        )
    }

    async fn open(&mut self) -> Result<SourceInfo, SourceError> {
        let period = Duration::from_secs_f64(1.0 / self.fps.max(0.001));
        let mut ticker = tokio::time::interval_at(Instant::now(), period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        self.ticker = Some(ticker);
        let c = Canvas::new(self.width, self.height);
        Ok(SourceInfo {
            width: c.width() as u32,
            height: c.height() as u32,
            fps: self.fps,
            encoder: crate::hub::Encoder::Cpu,
        })
    }

    async fn next_frame(&mut self) -> Result<Captured, SourceError> {
        let ticker = self
            .ticker
            .as_mut()
            .ok_or_else(|| SourceError::broken("not open"))?;
        ticker.tick().await;
        let at = SystemTime::now();
        let painter = self.painter.clone();
        let (fps, quality) = (self.fps, self.quality);
        let jpeg = tokio::task::spawn_blocking(move || {
            let mut p = painter.lock().unwrap_or_else(|e| e.into_inner());
            p.paint(at, fps, quality)
        })
        .await
        .map_err(|e| SourceError::broken(format!("pattern painter failed: {e}")))??;
        Ok(Captured { jpeg, at })
    }

    fn close(&mut self) {
        self.ticker = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_jpegs_of_the_asked_size_and_differ() {
        let mut p = Pattern::new(320, 240, 50.0, 70);
        let info = p.open().await.unwrap();
        assert_eq!((info.width, info.height), (320, 240));
        let a = p.next_frame().await.unwrap();
        let b = p.next_frame().await.unwrap();
        assert_ne!(a.jpeg, b.jpeg);
        let header = turbojpeg::read_header(&b.jpeg).unwrap();
        assert_eq!((header.width, header.height), (320, 240));
    }

    #[tokio::test]
    async fn the_frame_counter_can_be_read_back_from_the_jpeg() {
        let mut p = Pattern::new(320, 240, 50.0, 60);
        p.open().await.unwrap();
        for n in 0..3 {
            let f = p.next_frame().await.unwrap();
            let grey = turbojpeg::decompress(&f.jpeg, turbojpeg::PixelFormat::GRAY).unwrap();
            assert_eq!(read_barcode(&grey.pixels, grey.width, grey.height), n);
        }
        p.painter.lock().unwrap().count = 0xA5A5A5;
        let f = p.next_frame().await.unwrap();
        let grey = turbojpeg::decompress(&f.jpeg, turbojpeg::PixelFormat::GRAY).unwrap();
        assert_eq!(
            read_barcode(&grey.pixels, grey.width, grey.height),
            0xA5A5A5
        );
    }
}
