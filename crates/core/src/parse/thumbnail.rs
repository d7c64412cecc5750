//! Taking embedded pictures (EXIF thumbnails and the like) out of a JPEG's header segments.
//!
//! Some cameras put a whole small JPEG, FF D8 .. FF D9, inside an APP1 (EXIF) segment of every frame. A
//! decoder skips it by the segment's length, but several MJPEG clients do not decode: they cut a still out
//! of a stream as the bytes from the first FF D8 to the first FF D9 (Home Assistant's MJPEG camera does
//! when it has no still-image URL), and get the frame's headers plus the thumbnail, a broken picture.
//!
//! [`drop_thumbnails`] walks the header segments (never the entropy-coded data) and leaves out every
//! application (APP0-APP15) or comment segment whose payload holds the byte pair FF D9, which is what such
//! clients cut at. Segments a decoder needs (tables, frame and scan headers) are never touched, so the
//! picture is unchanged; the EXIF fields that travelled in the same segment (orientation among them) go
//! with the thumbnail, which is why it is a per-camera choice.

use super::jpeg::{check, JpegError};

/// Application segments APP0-APP15 and comments: metadata a decoder may ignore.
fn is_metadata(marker: u8) -> bool {
    (0xE0..=0xEF).contains(&marker) || marker == 0xFE
}

fn holds_eoi(payload: &[u8]) -> bool {
    payload.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// The JPEG without its metadata segments that hold an FF D9 pair, or `None` when it has none (the
/// common case, which copies nothing). `jpeg` must be one whole JPEG (see [`check`]).
pub fn drop_thumbnails(jpeg: &[u8]) -> Result<Option<Vec<u8>>, JpegError> {
    let info = check(jpeg)?;
    let end = info.len;
    // Byte ranges of the segments to leave out, found by the same walk `check` made (which proved every
    // length below stays inside the buffer and that a scan header follows).
    let mut cut: Vec<(usize, usize)> = Vec::new();
    let mut pos = 2;
    while pos + 4 <= end {
        let marker = jpeg[pos + 1];
        if jpeg[pos] != 0xFF {
            return Err(JpegError::BadMarker(pos));
        }
        if marker == 0xFF {
            pos += 1;
            continue;
        }
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            pos += 2;
            continue;
        }
        if marker == 0xDA {
            break;
        }
        let len = u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]) as usize;
        let next = pos + 2 + len;
        if len < 2 || next > end {
            return Err(JpegError::Truncated);
        }
        if is_metadata(marker) && holds_eoi(&jpeg[pos + 4..next]) {
            cut.push((pos, next));
        }
        pos = next;
    }
    if cut.is_empty() {
        return Ok(None);
    }
    let removed: usize = cut.iter().map(|(a, b)| b - a).sum();
    let mut out = Vec::with_capacity(end - removed);
    let mut from = 0;
    for (a, b) in cut {
        out.extend_from_slice(&jpeg[from..a]);
        from = b;
    }
    out.extend_from_slice(&jpeg[from..end]);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::jpeg::tests::{tiny_jpeg, with_thumbnail};
    use proptest::prelude::*;

    /// What a client that cuts at the first FF D9 takes as the picture.
    fn naive_still(stream: &[u8]) -> &[u8] {
        let end = stream.windows(2).position(|w| w == [0xFF, 0xD9]).unwrap() + 2;
        let start = stream[..end]
            .windows(2)
            .position(|w| w == [0xFF, 0xD8])
            .unwrap();
        &stream[start..end]
    }

    #[test]
    fn a_thumbnail_is_dropped_and_the_rest_is_kept_byte_for_byte() {
        let main = tiny_jpeg(3);
        let framed = with_thumbnail(&main, &tiny_jpeg(9));
        assert_ne!(
            naive_still(&framed),
            &framed[..],
            "the naive cut is wrong first"
        );
        let out = drop_thumbnails(&framed).unwrap().unwrap();
        assert_eq!(out, main);
        assert_eq!(naive_still(&out), &out[..]);
        assert_eq!(check(&out).unwrap().width, 32);
    }

    #[test]
    fn a_jpeg_without_one_is_left_alone() {
        assert_eq!(drop_thumbnails(&tiny_jpeg(1)), Ok(None));
        // An APP1 without an embedded picture stays.
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x08];
        j.extend(b"Exif\0\0");
        j.extend_from_slice(&tiny_jpeg(1)[2..]);
        assert_eq!(drop_thumbnails(&j), Ok(None));
    }

    #[test]
    fn padding_after_eoi_is_left_out_and_a_broken_jpeg_is_an_error() {
        let mut framed = with_thumbnail(&tiny_jpeg(3), &tiny_jpeg(9));
        framed.extend([0, 0]);
        assert_eq!(drop_thumbnails(&framed).unwrap().unwrap(), tiny_jpeg(3));
        assert!(drop_thumbnails(&framed[..framed.len() / 2]).is_err());
    }

    proptest! {
        #[test]
        fn never_panics_and_what_it_returns_is_a_whole_jpeg(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(Some(out)) = drop_thumbnails(&bytes) {
                prop_assert!(check(&out).is_ok());
            }
        }
    }
}
