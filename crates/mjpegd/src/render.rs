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
#[derive(Clone)]
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

/// Largest "no signal" picture: whatever size a source claims, the placeholder is drawn at most this big
/// (a 1080p I420 canvas is 3 MB; a picture of 65535x65535 would be 6 GB).
pub const MAX_NO_SIGNAL: (u32, u32) = (1920, 1080);

/// The size the "no signal" picture is drawn at for a source of `size`: the same, or scaled down (keeping
/// its shape) to fit [`MAX_NO_SIGNAL`], and at least 16x16.
pub fn no_signal_size(size: (u32, u32)) -> (u32, u32) {
    let (w, h) = (size.0.max(16) as u64, size.1.max(16) as u64);
    let (mw, mh) = (MAX_NO_SIGNAL.0 as u64, MAX_NO_SIGNAL.1 as u64);
    if w <= mw && h <= mh {
        return (w as u32, h as u32);
    }
    // Scale by the tighter of the two ratios.
    let (w2, h2) = if w * mh > h * mw {
        (mw, (h * mw / w).max(16))
    } else {
        ((w * mh / h).max(16), mh)
    };
    (w2 as u32, h2 as u32)
}

/// The frame shown while a source has no picture: dark grey, "NO SIGNAL", the reason and the time, every
/// line inside the picture with a margin at any size from 16x16 up. The picture without the clock is drawn
/// once per size and reason and kept; each frame copies it, draws the clock and encodes.
pub struct NoSignal {
    encoder: JpegEncoder,
    base: Option<Base>,
}

/// The "no signal" picture of one size and reason without its clock, and where the clock goes.
struct Base {
    width: u32,
    height: u32,
    reason: String,
    canvas: Canvas,
    clock_y: i64,
    clock_scale: i64,
    /// Width the clock may take.
    room: i64,
}

/// Where the text of a "no signal" picture goes: (top, scale, text) per line.
fn no_signal_layout(width: i64, height: i64, reason: &str) -> (Vec<(i64, i64, String)>, i64, i64) {
    let room = (width - 2 * margin(width)).max(8);
    let title = "NO SIGNAL";
    // The title is the largest line: as big as fits, at most 12x, and at most a third of the height.
    let big = (room / Canvas::text_width(title, 1))
        .min(width / 160)
        .min(height / 24)
        .clamp(1, 12);
    let small = (big / 3).max(1);
    let per_line = (room / (8 * small)).max(1) as usize;
    let mut lines = vec![(big, title.to_string())];
    // The reason on at most two lines, cut with "..." beyond.
    let chars: Vec<char> = reason.chars().filter(|c| !c.is_control()).collect();
    let mut rest = &chars[..];
    for i in 0..2 {
        if rest.is_empty() {
            break;
        }
        let take = rest.len().min(per_line);
        let mut line: String = rest[..take].iter().collect();
        rest = &rest[take..];
        if i == 1 && !rest.is_empty() && per_line > 3 {
            line = rest_cut(&line, per_line);
        }
        lines.push((small, line));
    }
    // Stack the lines centred vertically; the clock line comes last.
    let gap = |scale: i64| 4 * scale;
    let total: i64 = lines.iter().map(|(s, _)| 8 * s + gap(*s)).sum::<i64>() + 8 * small;
    let mut y = ((height - total) / 2).max(0);
    let mut placed = Vec::with_capacity(lines.len());
    for (scale, text) in lines {
        placed.push((y, scale, text));
        y += 8 * scale + gap(scale);
    }
    (placed, y, small)
}

/// The blank space kept at each side of a "no signal" line of text.
fn margin(width: i64) -> i64 {
    (width / 32).max(2)
}

/// `line` ending in "..." within `max` characters.
fn rest_cut(line: &str, max: usize) -> String {
    let kept: String = line.chars().take(max.saturating_sub(3)).collect();
    format!("{kept}...")
}

/// The clock as long as fits in `room` pixels at `scale`: the full date and time, the time, or nothing.
fn clock_fitting(now: std::time::SystemTime, room: i64, scale: i64) -> String {
    let full = clock_text(now);
    if Canvas::text_width(&full, scale) <= room {
        return full;
    }
    // "YYYY-MM-DD HH:MM:SS.mmm UTC" -> "HH:MM:SS UTC" -> "HH:MM:SS"
    let time = full.get(11..19).unwrap_or("").to_string();
    let with_zone = format!("{time} UTC");
    if Canvas::text_width(&with_zone, scale) <= room {
        with_zone
    } else if Canvas::text_width(&time, scale) <= room {
        time
    } else {
        String::new()
    }
}

impl NoSignal {
    pub fn new() -> Result<NoSignal, turbojpeg::Error> {
        Ok(NoSignal {
            encoder: JpegEncoder::new(70)?,
            base: None,
        })
    }

    /// Draws the picture (without encoding it).
    pub fn draw(
        &mut self,
        width: u32,
        height: u32,
        reason: &str,
        now: std::time::SystemTime,
    ) -> Canvas {
        let (width, height) = no_signal_size((width, height));
        let fresh = !matches!(&self.base, Some(b) if b.width == width && b.height == height && b.reason == reason);
        if fresh {
            let mut canvas = Canvas::new(width, height);
            canvas.fill(Yuv::GREY);
            let w = canvas.width() as i64;
            let (lines, clock_y, clock_scale) = no_signal_layout(w, canvas.height() as i64, reason);
            for (y, scale, text) in lines {
                canvas.text_centered(y, scale, &text, Yuv::WHITE);
            }
            self.base = Some(Base {
                width,
                height,
                reason: reason.to_string(),
                canvas,
                clock_y,
                clock_scale,
                room: w - 2 * margin(w),
            });
        }
        let base = self.base.as_ref().expect("drawn above");
        let mut c = base.canvas.clone();
        let clock = clock_fitting(now, base.room, base.clock_scale);
        c.text_centered(base.clock_y, base.clock_scale, &clock, Yuv::WHITE);
        c
    }

    /// Draws and encodes the picture.
    pub fn frame(
        &mut self,
        width: u32,
        height: u32,
        reason: &str,
        now: std::time::SystemTime,
    ) -> Result<Bytes, turbojpeg::Error> {
        let c = self.draw(width, height, reason, now);
        self.encoder.encode(&c)
    }
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
        let mut ns = NoSignal::new().unwrap();
        let jpeg = ns
            .frame(321, 239, "camera unplugged", std::time::SystemTime::now())
            .unwrap();
        let header = turbojpeg::read_header(&jpeg).unwrap();
        assert_eq!((header.width, header.height), (322, 240));
    }

    #[test]
    fn no_signal_is_drawn_at_a_bounded_size_whatever_the_source_claims() {
        assert_eq!(no_signal_size((65535, 65535)), (1080, 1080));
        assert_eq!(no_signal_size((16384, 16384)), (1080, 1080));
        assert_eq!(no_signal_size((3840, 2160)), (1920, 1080));
        assert_eq!(no_signal_size((65535, 16)), (1920, 16));
        assert_eq!(no_signal_size((640, 480)), (640, 480));
        assert_eq!(no_signal_size((0, 0)), (16, 16));
        let mut ns = NoSignal::new().unwrap();
        let jpeg = ns
            .frame(65535, 65535, "huge", std::time::SystemTime::now())
            .unwrap();
        let header = turbojpeg::read_header(&jpeg).unwrap();
        assert_eq!((header.width, header.height), (1080, 1080));
    }

    /// Every text pixel is inside the picture with a margin: nothing is clipped at the edges.
    #[test]
    fn no_signal_text_fits_at_every_size() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_795_000_000_123);
        let long = "relay of http://192.168.100.200:8081/mjpeg/1?resolution=UXGA: upstream silent for 10s and then some more words that cannot fit";
        for (w, h) in [
            (160, 120),
            (176, 144),
            (320, 240),
            (640, 480),
            (800, 600),
            (1280, 720),
            (1920, 1080),
        ] {
            let mut ns = NoSignal::new().unwrap();
            let c = ns.draw(w, h, long, t);
            let (cw, ch) = (c.width(), c.height());
            let lit = |x: usize, y: usize| c.y[y * cw + x] == Yuv::WHITE.0;
            let margin = 2;
            for y in 0..ch {
                for x in (0..margin).chain(cw - margin..cw) {
                    assert!(
                        !lit(x, y),
                        "{w}x{h}: text at the left or right edge ({x},{y})"
                    );
                }
            }
            for x in 0..cw {
                for y in (0..margin).chain(ch - margin..ch) {
                    assert!(
                        !lit(x, y),
                        "{w}x{h}: text at the top or bottom edge ({x},{y})"
                    );
                }
            }
            let lit_rows = (0..ch).filter(|&y| (0..cw).any(|x| lit(x, y))).count();
            assert!(
                lit_rows >= 16,
                "{w}x{h}: the text is drawn ({lit_rows} rows)"
            );
        }
    }

    #[test]
    fn clock_is_readable() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_795_000_000_123);
        assert_eq!(clock_text(t), "2026-11-18 11:06:40.123 UTC");
    }
}
