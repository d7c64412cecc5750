//! The arithmetic of a size variant: which box a picture is fitted in, what size comes out, and at which
//! of libjpeg's DCT scales to decode the original so that little more than the needed pixels are made.
//!
//! A client asks for `?width=`, `?height=` or both (and `?quality=`); mjpegd resolves that once, against
//! the source's size, into a [`VariantKey`]: the box every frame is fitted inside, and the quality. Clients
//! whose URLs resolve to the same key share one transcode. Sizes are even (4:2:0 chroma is half the luma
//! each way, so an odd size would leave the encoder a half chroma sample to pad); a picture is never made
//! larger than the original. Pure functions, unit- and property-tested, no I/O.

use std::fmt;

/// One variant of a camera's pictures: fitted inside `width` x `height` (keeping the aspect ratio), encoded
/// at `quality`. Clients of one key share its transcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VariantKey {
    pub width: u32,
    pub height: u32,
    /// JPEG quality, 1-100.
    pub quality: u8,
}

impl fmt::Display for VariantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{} q{}", self.width, self.height, self.quality)
    }
}

/// Rounds down to an even number, at least 2.
fn even_floor(n: u64) -> u32 {
    (n & !1).clamp(2, u32::MAX as u64 - 1) as u32
}

/// Rounds to the nearest even number, at least 2.
fn even_round(n: u64, d: u64) -> u32 {
    // round(n / d / 2) * 2
    let halves = (n + d) / (2 * d);
    (halves * 2).clamp(2, u32::MAX as u64 - 1) as u32
}

/// The size of `source` fitted inside `bounds` keeping its aspect ratio: never larger than `source`
/// (pictures are not enlarged), even each way, at least 2x2. Of the two candidates (the box's width with
/// the height that follows, or the box's height with the width that follows, each rounded to the nearest
/// even size) the larger one that fits is taken, which makes fitting idempotent: a fitted size fitted
/// again, into itself, stays what it is (each frame of a variant is fitted into its key's box).
pub fn fit(source: (u32, u32), bounds: (u32, u32)) -> (u32, u32) {
    let (sw, sh) = (source.0.max(1) as u64, source.1.max(1) as u64);
    let bw = even_floor((bounds.0 as u64).min(sw));
    let bh = even_floor((bounds.1 as u64).min(sh));
    let by_width = (bw, even_round(sh * bw as u64, sw));
    let by_height = (even_round(sw * bh as u64, sh), bh);
    let fits = |(w, h): (u32, u32)| w <= bw && h <= bh;
    let area = |(w, h): (u32, u32)| w as u64 * h as u64;
    match (fits(by_width), fits(by_height)) {
        (true, true) if area(by_height) > area(by_width) => by_height,
        (true, _) => by_width,
        (false, true) => by_height,
        // Not reachable (the exact sizes multiply to the box's area, so rounding cannot push both out);
        // the box itself is the safe answer.
        (false, false) => (bw, bh),
    }
}

/// What a URL asked for, before it meets the source's size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SizeRequest {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub quality: Option<u8>,
}

/// Smallest width or height a client may ask for.
pub const MIN_SIDE: u32 = 16;

impl SizeRequest {
    /// True when the URL asked for nothing: the original pictures.
    pub fn is_empty(&self) -> bool {
        *self == SizeRequest::default()
    }

    /// The variant this request names for a source of `source` size, or `None` for the original (nothing
    /// asked, or a size equal to the source's without a quality). `default_quality` is the quality of a
    /// variant whose URL does not give one. Errs, with a one-line reason, for a size outside
    /// [`MIN_SIDE`]..=the source's.
    pub fn resolve(
        &self,
        source: (u32, u32),
        default_quality: u8,
    ) -> Result<Option<VariantKey>, String> {
        let (sw, sh) = source;
        for (name, asked, side) in [("width", self.width, sw), ("height", self.height, sh)] {
            if let Some(v) = asked {
                if v < MIN_SIDE || v > side {
                    return Err(format!(
                        "{name}={v} is outside {MIN_SIDE}..={side}: the source is {sw}x{sh} and pictures are not enlarged"
                    ));
                }
            }
        }
        let size = match (self.width, self.height) {
            (None, None) => (sw, sh),
            (Some(w), None) => fit(source, (w, sh)),
            (None, Some(h)) => fit(source, (sw, h)),
            (Some(w), Some(h)) => fit(source, (w, h)),
        };
        if size == source && self.quality.is_none() {
            return Ok(None);
        }
        Ok(Some(VariantKey {
            width: size.0,
            height: size.1,
            quality: self.quality.unwrap_or(default_quality).clamp(1, 100),
        }))
    }
}

/// The DCT scales libjpeg-turbo decodes at with its fast reduced inverse DCTs: 1/1, 1/2, 1/4, 1/8.
pub const DCT_DENOMINATORS: [u32; 4] = [1, 2, 4, 8];

/// A side of `n` pixels decoded at 1/`denominator`, rounded up as libjpeg does.
pub fn dct_scaled(n: u32, denominator: u32) -> u32 {
    n.div_ceil(denominator.max(1))
}

/// The largest reduction (1, 2, 4 or 8) at which `source` decodes to a picture still at least `target`
/// each way: the decoder then makes at most about twice the pixels needed, and a resize does the rest
/// (none when the scaled size is the target, as 1280x720 to 320x180 at 1/4).
pub fn dct_denominator(source: (u32, u32), target: (u32, u32)) -> u32 {
    DCT_DENOMINATORS
        .iter()
        .rev()
        .copied()
        .find(|&d| dct_scaled(source.0, d) >= target.0 && dct_scaled(source.1, d) >= target.1)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(width: u32, height: u32, quality: u8) -> Option<VariantKey> {
        Some(VariantKey {
            width,
            height,
            quality,
        })
    }

    #[test]
    fn one_side_keeps_the_aspect_ratio_and_both_fit_inside_the_box() {
        let src = (1280, 720);
        let r = |width, height, quality| SizeRequest {
            width,
            height,
            quality,
        };
        assert_eq!(
            r(Some(320), None, None).resolve(src, 80),
            Ok(key(320, 180, 80))
        );
        assert_eq!(
            r(None, Some(180), None).resolve(src, 80),
            Ok(key(320, 180, 80))
        );
        // The box 320x320 is limited by the width; 1000x180 by the height.
        assert_eq!(
            r(Some(320), Some(320), None).resolve(src, 80),
            Ok(key(320, 180, 80))
        );
        assert_eq!(
            r(Some(1000), Some(180), Some(50)).resolve(src, 80),
            Ok(key(320, 180, 50))
        );
        // Rounded to even: 321 wide gives 320; 1920x1080 at 641 wide gives 640x360.
        assert_eq!(
            r(Some(321), None, None).resolve(src, 80),
            Ok(key(320, 180, 80))
        );
        assert_eq!(
            r(Some(641), None, None).resolve((1920, 1080), 80),
            Ok(key(640, 360, 80))
        );
        // 4:3 at 100 wide: 75 rounds to 76.
        assert_eq!(
            r(Some(100), None, None).resolve((640, 480), 80),
            Ok(key(100, 76, 80))
        );
    }

    #[test]
    fn the_original_needs_no_variant_unless_a_quality_is_asked() {
        let src = (1280, 720);
        assert_eq!(SizeRequest::default().resolve(src, 80), Ok(None));
        let full = SizeRequest {
            width: Some(1280),
            ..SizeRequest::default()
        };
        assert_eq!(full.resolve(src, 80), Ok(None));
        let q = SizeRequest {
            quality: Some(30),
            ..SizeRequest::default()
        };
        assert_eq!(q.resolve(src, 80), Ok(key(1280, 720, 30)));
    }

    #[test]
    fn sizes_beyond_the_source_or_too_small_are_refused_with_a_reason() {
        let src = (640, 480);
        for (w, h) in [
            (Some(641), None),
            (None, Some(481)),
            (Some(15), None),
            (Some(0), None),
        ] {
            let e = SizeRequest {
                width: w,
                height: h,
                quality: None,
            }
            .resolve(src, 80)
            .unwrap_err();
            assert!(e.contains("640x480") && !e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn the_dct_scale_is_the_largest_reduction_that_still_covers_the_target() {
        assert_eq!(dct_denominator((1280, 720), (320, 180)), 4);
        assert_eq!(dct_denominator((1280, 720), (640, 360)), 2);
        assert_eq!(dct_denominator((1920, 1080), (640, 360)), 2);
        assert_eq!(dct_denominator((1280, 720), (1000, 562)), 1);
        assert_eq!(dct_denominator((8192, 8192), (16, 16)), 8);
        // Odd sides round up, as libjpeg's TJSCALED does.
        assert_eq!(dct_scaled(1281, 8), 161);
        assert_eq!(dct_denominator((1281, 721), (161, 90)), 8);
    }

    proptest! {
        #[test]
        fn a_fitted_size_is_even_inside_the_box_and_the_source_and_keeps_the_shape(
            sw in 16u32..8193, sh in 16u32..8193, bw in 16u32..8193, bh in 16u32..8193,
        ) {
            let (w, h) = fit((sw, sh), (bw, bh));
            prop_assert!(w % 2 == 0 && h % 2 == 0 && w >= 2 && h >= 2);
            prop_assert!(w <= bw.min(sw).max(2) && h <= bh.min(sh).max(2));
            // The aspect ratio is kept to within the rounding (2 pixels on the derived side).
            let exact_h = sh as f64 * w as f64 / sw as f64;
            let exact_w = sw as f64 * h as f64 / sh as f64;
            prop_assert!((h as f64 - exact_h).abs() <= 2.0 || (w as f64 - exact_w).abs() <= 2.0,
                "{sw}x{sh} in {bw}x{bh} gave {w}x{h}");
            prop_assert_eq!(fit((sw, sh), (w, h)), (w, h), "fitting is idempotent");
            let d = dct_denominator((sw, sh), (w, h));
            prop_assert!(dct_scaled(sw, d) >= w && dct_scaled(sh, d) >= h);
            if d < 8 {
                // The next reduction would not cover the target.
                prop_assert!(dct_scaled(sw, d * 2) < w || dct_scaled(sh, d * 2) < h);
            }
        }
    }
}
