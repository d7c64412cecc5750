//! Drawing and JPEG-encoding the pictures mjpegd makes itself: the test pattern and the "no signal" frame.
//!
//! Pictures are drawn straight into I420 planes (full-resolution luma, quarter-resolution chroma), which
//! libjpeg-turbo compresses without a colour conversion: the cheapest way to a JPEG. Text uses the public
//! domain 8x8 bitmap font from `font8x8`, scaled up by whole pixels.

use bytes::Bytes;
use font8x8::legacy::BASIC_LEGACY;

/// A colour in YCbCr (BT.601, full range, as JPEG uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Yuv(pub u8, pub u8, pub u8);

impl Yuv {
    pub const BLACK: Yuv = Yuv(16, 128, 128);
    pub const WHITE: Yuv = Yuv(235, 128, 128);
    pub const GREY: Yuv = Yuv(90, 128, 128);

    /// Converts an RGB colour.
    pub fn rgb(r: u8, g: u8, b: u8) -> Yuv {
        let (r, g, b) = (r as i32, g as i32, b as i32);
        let y = (77 * r + 150 * g + 29 * b) >> 8;
        let u = ((-43 * r - 85 * g + 128 * b) >> 8) + 128;
        let v = ((128 * r - 107 * g - 21 * b) >> 8) + 128;
        Yuv(
            y.clamp(0, 255) as u8,
            u.clamp(0, 255) as u8,
            v.clamp(0, 255) as u8,
        )
    }
}

/// An I420 picture of even width and height.
pub struct Canvas {
    width: usize,
    height: usize,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl Canvas {
    /// A black canvas. Odd sizes are rounded up to even.
    pub fn new(width: u32, height: u32) -> Canvas {
        let width = (width.max(2) as usize + 1) & !1;
        let height = (height.max(2) as usize + 1) & !1;
        let mut c = Canvas {
            width,
            height,
            y: vec![0; width * height],
            u: vec![0; width * height / 4],
            v: vec![0; width * height / 4],
        };
        c.fill(Yuv::BLACK);
        c
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// Paints the whole canvas.
    pub fn fill(&mut self, c: Yuv) {
        self.y.fill(c.0);
        self.u.fill(c.1);
        self.v.fill(c.2);
    }

    /// Paints every row with the same `row` of colours (one per pixel column, `row.len() == width`).
    pub fn fill_rows(&mut self, row: &[Yuv]) {
        let w = self.width;
        let (yrow, urow, vrow): (Vec<u8>, Vec<u8>, Vec<u8>) = (
            row.iter().map(|c| c.0).collect(),
            row.iter().step_by(2).map(|c| c.1).collect(),
            row.iter().step_by(2).map(|c| c.2).collect(),
        );
        for line in self.y.chunks_exact_mut(w) {
            line.copy_from_slice(&yrow);
        }
        for line in self.u.chunks_exact_mut(w / 2) {
            line.copy_from_slice(&urow);
        }
        for line in self.v.chunks_exact_mut(w / 2) {
            line.copy_from_slice(&vrow);
        }
    }

    /// Paints a rectangle, clipped to the canvas.
    pub fn rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: Yuv) {
        let (x0, y0) = (x.max(0) as usize, y.max(0) as usize);
        let x1 = ((x + w).max(0) as usize).min(self.width);
        let y1 = ((y + h).max(0) as usize).min(self.height);
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        for row in y0..y1 {
            self.y[row * self.width + x0..row * self.width + x1].fill(c.0);
        }
        let cw = self.width / 2;
        for row in y0 / 2..y1.div_ceil(2) {
            self.u[row * cw + x0 / 2..row * cw + x1.div_ceil(2)].fill(c.1);
            self.v[row * cw + x0 / 2..row * cw + x1.div_ceil(2)].fill(c.2);
        }
    }

    /// Draws `text` with its top-left corner at (x, y), each font pixel `scale` pixels wide.
    pub fn text(&mut self, x: i64, y: i64, scale: i64, text: &str, c: Yuv) {
        for (i, ch) in text.chars().enumerate() {
            let glyph = BASIC_LEGACY[(ch as usize).min(127)];
            let gx = x + i as i64 * 8 * scale;
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        self.rect(gx + col * scale, y + row as i64 * scale, scale, scale, c);
                    }
                }
            }
        }
    }

    /// Draws `text` centred horizontally, its top at `y`.
    pub fn text_centered(&mut self, y: i64, scale: i64, text: &str, c: Yuv) {
        let x = (self.width as i64 - Canvas::text_width(text, scale)) / 2;
        self.text(x, y, scale, text, c);
    }

    /// Width in pixels of `text` drawn at `scale`.
    pub fn text_width(text: &str, scale: i64) -> i64 {
        text.chars().count() as i64 * 8 * scale
    }
}

/// A reusable JPEG encoder for canvases.
pub struct JpegEncoder {
    compressor: turbojpeg::Compressor,
}

impl JpegEncoder {
    /// An encoder at `quality` (1-100).
    pub fn new(quality: u8) -> Result<JpegEncoder, turbojpeg::Error> {
        let mut compressor = turbojpeg::Compressor::new()?;
        compressor.set_quality(quality.clamp(1, 100) as i32)?;
        compressor.set_subsamp(turbojpeg::Subsamp::Sub2x2)?;
        Ok(JpegEncoder { compressor })
    }

    /// Compresses the canvas.
    pub fn encode(&mut self, canvas: &Canvas) -> Result<Bytes, turbojpeg::Error> {
        let image = turbojpeg::YuvPlanesImage {
            y_plane: &canvas.y[..],
            u_plane: &canvas.u[..],
            v_plane: &canvas.v[..],
            width: canvas.width,
            height: canvas.height,
            y_stride: canvas.width,
            u_stride: canvas.width / 2,
            v_stride: canvas.width / 2,
            subsamp: turbojpeg::Subsamp::Sub2x2,
        };
        Ok(Bytes::from(
            self.compressor.compress_yuv_planes_to_vec(&image)?,
        ))
    }
}

/// The frame shown while a source has no picture: dark grey, "NO SIGNAL", the reason and the time.
pub fn no_signal(
    encoder: &mut JpegEncoder,
    width: u32,
    height: u32,
    reason: &str,
    now: std::time::SystemTime,
) -> Result<Bytes, turbojpeg::Error> {
    let mut c = Canvas::new(width, height);
    c.fill(Yuv::GREY);
    let w = c.width() as i64;
    let h = c.height() as i64;
    let big = (w / 160).clamp(1, 12);
    let title = "NO SIGNAL";
    c.text_centered(h / 2 - 12 * big, big, title, Yuv::WHITE);
    let small = (big / 3).max(1);
    let max_chars = (w / (8 * small)).max(1) as usize;
    let reason: String = reason.chars().take(max_chars).collect();
    c.text_centered(h / 2 + 2 * big, small, &reason, Yuv::WHITE);
    let clock = clock_text(now);
    c.text_centered(h / 2 + 2 * big + 12 * small, small, &clock, Yuv::WHITE);
    encoder.encode(&c)
}

/// `YYYY-MM-DD HH:MM:SS.mmm UTC`.
pub fn clock_text(t: std::time::SystemTime) -> String {
    let s = humantime::format_rfc3339_millis(t).to_string();
    // 2026-11-24T02:17:22.123Z -> 2026-11-24 02:17:22.123 UTC
    format!("{} UTC", s.trim_end_matches('Z').replacen('T', " ", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_whole_jpeg_of_the_canvas_size() {
        let mut enc = JpegEncoder::new(80).unwrap();
        let mut c = Canvas::new(64, 48);
        c.text(0, 0, 1, "Hi", Yuv::WHITE);
        c.rect(-5, 40, 100, 100, Yuv::rgb(255, 0, 0));
        let jpeg = enc.encode(&c).unwrap();
        assert_eq!(&jpeg[..2], b"\xff\xd8");
        assert_eq!(&jpeg[jpeg.len() - 2..], b"\xff\xd9");
        let header = turbojpeg::read_header(&jpeg).unwrap();
        assert_eq!((header.width, header.height), (64, 48));
    }

    #[test]
    fn no_signal_frame_is_a_jpeg_even_at_odd_sizes() {
        let mut enc = JpegEncoder::new(70).unwrap();
        let jpeg = no_signal(
            &mut enc,
            321,
            239,
            "camera unplugged",
            std::time::SystemTime::now(),
        )
        .unwrap();
        let header = turbojpeg::read_header(&jpeg).unwrap();
        assert_eq!((header.width, header.height), (322, 240));
    }

    #[test]
    fn clock_is_readable() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_795_000_000_123);
        assert_eq!(clock_text(t), "2026-11-18 11:06:40.123 UTC");
    }
}
