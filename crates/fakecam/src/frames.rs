//! Frame sources: what the producer thread writes into a buffer for frame number `n`.

use std::fs;
use std::io;
use std::path::Path;

use crate::{Format, FrameSource, Options};

/// Loads the `*.jpg` / `*.jpeg` files of `dir` (case-insensitive), sorted by file name.
pub(crate) fn load_jpegs(dir: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut names: Vec<_> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg")
                })
        })
        .collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for p in names {
        let data = fs::read(&p)?;
        if !data.is_empty() {
            out.push(data);
        }
    }
    if out.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no non-empty *.jpg files in {}", dir.display()),
        ));
    }
    Ok(out)
}

/// Produces the bytes of frame `n` (counted from STREAMON) for the configured format.
pub(crate) enum Source {
    /// MJPEG served byte-identical from files.
    JpegFiles(Vec<Vec<u8>>),
    /// MJPEG encoded from a generated RGB pattern.
    GeneratedJpeg(Pattern),
    /// YUYV decoded (and scaled if needed) from files; decoded lazily, then cached.
    YuyvFiles {
        jpegs: Vec<Vec<u8>>,
        decoded: Vec<Option<Vec<u8>>>,
    },
    /// YUYV generated directly.
    GeneratedYuyv(Pattern),
}

impl Source {
    pub(crate) fn new(opts: &Options) -> io::Result<Source> {
        Ok(match (&opts.format, &opts.frames) {
            (Format::Mjpeg, FrameSource::Dir(d)) => Source::JpegFiles(load_jpegs(d)?),
            (Format::Mjpeg, FrameSource::Generated) => {
                Source::GeneratedJpeg(Pattern::new(opts.width, opts.height, PixelKind::Rgb))
            }
            (Format::Yuyv, FrameSource::Dir(d)) => {
                let jpegs = load_jpegs(d)?;
                let decoded = vec![None; jpegs.len()];
                Source::YuyvFiles { jpegs, decoded }
            }
            (Format::Yuyv, FrameSource::Generated) => {
                Source::GeneratedYuyv(Pattern::new(opts.width, opts.height, PixelKind::Yuyv))
            }
        })
    }

    /// The largest frame this source can produce, to size the buffers.
    pub(crate) fn max_len(&self, width: u32, height: u32) -> usize {
        let yuyv = width as usize * height as usize * 2;
        match self {
            Source::JpegFiles(f) => f.iter().map(Vec::len).max().unwrap_or(0),
            // A JPEG of a synthetic pattern stays far below the raw size.
            Source::GeneratedJpeg(_) | Source::YuyvFiles { .. } | Source::GeneratedYuyv(_) => yuyv,
        }
    }

    /// Writes frame `n` into `out` and returns its length. `brightness` (the control's value, 0 by
    /// default) shifts the generated pattern's luma by that much; files are served as they are.
    pub(crate) fn render(
        &mut self,
        n: u64,
        width: u32,
        height: u32,
        brightness: i32,
        out: &mut [u8],
    ) -> usize {
        match self {
            Source::JpegFiles(files) => {
                let f = &files[(n % files.len() as u64) as usize];
                out[..f.len()].copy_from_slice(f);
                f.len()
            }
            Source::GeneratedJpeg(p) => {
                p.render(n, brightness);
                let img = turbojpeg::Image {
                    pixels: &p.pixels[..],
                    width: width as usize,
                    pitch: width as usize * 3,
                    height: height as usize,
                    format: turbojpeg::PixelFormat::RGB,
                };
                match turbojpeg::compress(img, 80, turbojpeg::Subsamp::Sub2x2) {
                    Ok(jpeg) => {
                        let len = jpeg.len().min(out.len());
                        out[..len].copy_from_slice(&jpeg[..len]);
                        len
                    }
                    Err(e) => {
                        eprintln!("fakecam: JPEG encoding failed: {e}");
                        0
                    }
                }
            }
            Source::YuyvFiles { jpegs, decoded } => {
                let i = (n % jpegs.len() as u64) as usize;
                let frame =
                    decoded[i].get_or_insert_with(|| jpeg_to_yuyv(&jpegs[i], width, height));
                out[..frame.len()].copy_from_slice(frame);
                frame.len()
            }
            Source::GeneratedYuyv(p) => {
                p.render(n, brightness);
                out[..p.pixels.len()].copy_from_slice(&p.pixels);
                p.pixels.len()
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum PixelKind {
    Rgb,
    Yuyv,
}

/// 75% colour bars (white, yellow, cyan, green, magenta, red, blue, black) as RGB.
const BARS: [[u8; 3]; 8] = [
    [191, 191, 191],
    [191, 191, 0],
    [0, 191, 191],
    [0, 191, 0],
    [191, 0, 191],
    [191, 0, 0],
    [0, 0, 191],
    [0, 0, 0],
];

/// A moving test pattern: colour bars scrolling right to left by 8 pixels a frame, and the frame
/// number drawn large in the top-left corner, so consecutive frames always differ.
///
/// Every row of the bars is the same, so one "strip" twice the frame width is built once and each
/// frame is made of plain row copies from an offset into it (fast even in debug builds).
pub(crate) struct Pattern {
    width: usize,
    height: usize,
    kind: PixelKind,
    strip: Vec<u8>,
    pub(crate) pixels: Vec<u8>,
}

impl Pattern {
    pub(crate) fn new(width: u32, height: u32, kind: PixelKind) -> Pattern {
        let (w, h) = (width as usize, height as usize);
        let bar_w = w.div_ceil(8).max(1);
        let mut strip = Vec::with_capacity(2 * w * 3);
        let mut x = 0;
        while x < 2 * w {
            let rgb = BARS[(x / bar_w) % 8];
            match kind {
                PixelKind::Rgb => strip.extend_from_slice(&rgb),
                PixelKind::Yuyv => {
                    // Two pixels of the same colour per YUYV macropixel.
                    let (y, u, v) = rgb_to_yuv(rgb);
                    strip.extend_from_slice(&[y, u, y, v]);
                    x += 1;
                }
            }
            x += 1;
        }
        let bpp = if kind == PixelKind::Rgb { 3 } else { 2 };
        Pattern {
            width: w,
            height: h,
            kind,
            strip,
            pixels: vec![0; w * h * bpp],
        }
    }

    fn bpp(&self) -> usize {
        if self.kind == PixelKind::Rgb {
            3
        } else {
            2
        }
    }

    pub(crate) fn render(&mut self, n: u64, brightness: i32) {
        let bpp = self.bpp();
        let row = self.width * bpp;
        // Offset in pixels, kept even so YUYV macropixels stay aligned.
        let shift = ((n as usize * 8) % self.width) & !1;
        let mut src = self.strip[shift * bpp..shift * bpp + row].to_vec();
        if brightness != 0 {
            // One row shifted, then copied: as cheap as the plain pattern.
            let luma = |v: &mut u8| *v = (*v as i32 + brightness).clamp(0, 255) as u8;
            match self.kind {
                PixelKind::Rgb => src.iter_mut().for_each(luma),
                PixelKind::Yuyv => src.iter_mut().step_by(2).for_each(luma),
            }
        }
        for r in self.pixels.chunks_exact_mut(row) {
            r.copy_from_slice(&src);
        }
        self.draw_number(n);
    }

    /// Draws `n` in a 3x5 pixel font, scaled, black on a white box.
    fn draw_number(&mut self, n: u64) {
        let digits: Vec<u8> = n.to_string().bytes().map(|b| b - b'0').collect();
        let scale = (self.height / 40).max(2);
        let box_w = (digits.len() * 4 + 1) * scale;
        let box_h = 7 * scale;
        for y in 0..box_h.min(self.height) {
            for x in 0..box_w.min(self.width) {
                let (gx, gy) = (x / scale, y / scale);
                let mut on = false;
                if gx >= 1 && (1..=5).contains(&gy) {
                    let d = (gx - 1) / 4;
                    let col = (gx - 1) % 4;
                    if d < digits.len() && col < 3 {
                        on = FONT[digits[d] as usize][gy - 1] & (0b100 >> col) != 0;
                    }
                }
                self.put(x, y, !on);
            }
        }
    }

    fn put(&mut self, x: usize, y: usize, white: bool) {
        match self.kind {
            PixelKind::Rgb => {
                let i = (y * self.width + x) * 3;
                let v = if white { 255 } else { 0 };
                self.pixels[i..i + 3].fill(v);
            }
            PixelKind::Yuyv => {
                let i = (y * self.width + x) * 2;
                self.pixels[i] = if white { 235 } else { 16 };
                self.pixels[i + 1] = 128;
            }
        }
    }
}

/// Digits 0-9, 3 pixels wide (bit 2 = left), 5 rows.
const FONT: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b010, 0b010, 0b010],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];

/// BT.601 limited range, as cameras send YUYV.
fn rgb_to_yuv([r, g, b]: [u8; 3]) -> (u8, u8, u8) {
    let (r, g, b) = (r as i32, g as i32, b as i32);
    let y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16;
    let u = ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128;
    let v = ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128;
    (
        y.clamp(0, 255) as u8,
        u.clamp(0, 255) as u8,
        v.clamp(0, 255) as u8,
    )
}

/// Decodes a JPEG and converts it to YUYV at `width`x`height` (nearest-neighbour scaling when the
/// JPEG has another size). An undecodable file becomes a mid-grey frame.
pub(crate) fn jpeg_to_yuyv(jpeg: &[u8], width: u32, height: u32) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let mut out = vec![0u8; w * h * 2];
    let img = match turbojpeg::decompress(jpeg, turbojpeg::PixelFormat::RGB) {
        Ok(img) => img,
        Err(e) => {
            eprintln!("fakecam: cannot decode a JPEG frame: {e}");
            for px in out.chunks_exact_mut(2) {
                px.copy_from_slice(&[128, 128]);
            }
            return out;
        }
    };
    let at = |x: usize, y: usize| -> [u8; 3] {
        let sx = x * img.width / w;
        let sy = y * img.height / h;
        let i = sy * img.pitch + sx * 3;
        [img.pixels[i], img.pixels[i + 1], img.pixels[i + 2]]
    };
    for y in 0..h {
        for x in (0..w).step_by(2) {
            let (y0, u0, v0) = rgb_to_yuv(at(x, y));
            let (y1, u1, v1) = rgb_to_yuv(at((x + 1).min(w - 1), y));
            let i = (y * w + x) * 2;
            out[i] = y0;
            out[i + 1] = ((u0 as u16 + u1 as u16) / 2) as u8;
            if i + 3 < out.len() {
                out[i + 2] = y1;
                out[i + 3] = ((v0 as u16 + v1 as u16) / 2) as u8;
            }
        }
    }
    out
}
