//! Giving a JPEG the standard Huffman tables when it comes without any.
//!
//! The UVC payload format lets a camera send MJPEG frames with no DHT segment: the decoder is meant to
//! assume the example tables of ITU-T T.81 annex K.3, as Motion-JPEG (AVI1) did. libjpeg and ffmpeg do;
//! Safari (macOS and iOS) paints nothing for such a frame, and a snapshot saved from one fails to open in
//! strict viewers. [`add_standard_tables`] inserts those four tables as one DHT segment right before the
//! first scan, which is what the decoders that cope do implicitly, so the picture is unchanged.
//!
//! Only Huffman-coded sequential frames (SOF0 baseline, SOF1 extended) are touched: they are what UVC
//! cameras send, and a progressive or arithmetic-coded frame has its own rules. A frame that has any DHT
//! before its first scan is left alone and not copied.

use super::jpeg::{check, JpegError};

/// Class (0 DC, 1 AC) and id, code counts per length 1-16, and symbols of one table.
struct Table {
    class_id: u8,
    bits: [u8; 16],
    values: &'static [u8],
}

/// T.81 annex K.3 (libjpeg's `std_huff_tables`): luminance DC, luminance AC, chrominance DC, chrominance AC.
const STANDARD: [Table; 4] = [
    Table {
        class_id: 0x00,
        bits: [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
        values: &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    },
    Table {
        class_id: 0x10,
        bits: [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d],
        values: &[
            0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51,
            0x61, 0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1,
            0x15, 0x52, 0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18,
            0x19, 0x1a, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39,
            0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57,
            0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75,
            0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92,
            0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
            0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3,
            0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8,
            0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2,
            0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
        ],
    },
    Table {
        class_id: 0x01,
        bits: [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
        values: &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    },
    Table {
        class_id: 0x11,
        bits: [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77],
        values: &[
            0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07,
            0x61, 0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09,
            0x23, 0x33, 0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25,
            0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38,
            0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56,
            0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74,
            0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
            0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5,
            0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba,
            0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6,
            0xd7, 0xd8, 0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2,
            0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
        ],
    },
];

/// The DHT segment (marker included) carrying the four standard tables.
pub fn standard_dht() -> Vec<u8> {
    let payload: usize = STANDARD.iter().map(|t| 17 + t.values.len()).sum();
    let mut dht = Vec::with_capacity(4 + payload);
    dht.extend([0xFF, 0xC4]);
    dht.extend(((payload + 2) as u16).to_be_bytes());
    for t in &STANDARD {
        dht.push(t.class_id);
        dht.extend(t.bits);
        dht.extend(t.values);
    }
    dht
}

/// What the header segments before the first scan say about Huffman tables.
struct Headers {
    /// Offset of the first SOS marker.
    sos: usize,
    has_dht: bool,
    /// SOF0 or SOF1: sequential, Huffman-coded.
    sequential_huffman: bool,
}

/// Walks the header segments of a whole JPEG (as [`check`] proved it to be) up to the first scan.
fn headers(jpeg: &[u8], end: usize) -> Result<Headers, JpegError> {
    let mut pos = 2;
    let mut has_dht = false;
    let mut sequential_huffman = false;
    while pos + 4 <= end {
        if jpeg[pos] != 0xFF {
            return Err(JpegError::BadMarker(pos));
        }
        let marker = jpeg[pos + 1];
        if marker == 0xFF {
            pos += 1;
            continue;
        }
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            pos += 2;
            continue;
        }
        if marker == 0xDA {
            return Ok(Headers {
                sos: pos,
                has_dht,
                sequential_huffman,
            });
        }
        match marker {
            0xC4 => has_dht = true,
            0xC0 | 0xC1 => sequential_huffman = true,
            _ => {}
        }
        let len = u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]) as usize;
        if len < 2 || pos + 2 + len > end {
            return Err(JpegError::Truncated);
        }
        pos += 2 + len;
    }
    Err(JpegError::Truncated)
}

/// Whether the frame needs the standard tables: sequential Huffman-coded, with no DHT before its first
/// scan. `jpeg` must be one whole JPEG.
pub fn lacks_tables(jpeg: &[u8]) -> Result<bool, JpegError> {
    let info = check(jpeg)?;
    let h = headers(jpeg, info.len)?;
    Ok(h.sequential_huffman && !h.has_dht)
}

/// The JPEG with the standard tables inserted before its first scan, or `None` when it needs none (it
/// has a DHT, or is not a sequential Huffman-coded frame), which copies nothing. Padding after EOI is
/// left out of a new frame. `jpeg` must be one whole JPEG (see [`check`]).
pub fn add_standard_tables(jpeg: &[u8]) -> Result<Option<Vec<u8>>, JpegError> {
    let info = check(jpeg)?;
    let h = headers(jpeg, info.len)?;
    if !h.sequential_huffman || h.has_dht {
        return Ok(None);
    }
    let dht = standard_dht();
    let mut out = Vec::with_capacity(info.len + dht.len());
    out.extend_from_slice(&jpeg[..h.sos]);
    out.extend_from_slice(&dht);
    out.extend_from_slice(&jpeg[h.sos..info.len]);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::jpeg::tests::{tiny_jpeg, with_thumbnail};
    use proptest::prelude::*;

    /// `tiny_jpeg` without its DHT segment (which is 0x14 + 2 bytes long).
    fn without_dht(j: &[u8]) -> Vec<u8> {
        let at = j.windows(2).position(|w| w == [0xFF, 0xC4]).unwrap();
        let len = u16::from_be_bytes([j[at + 2], j[at + 3]]) as usize;
        let mut out = j[..at].to_vec();
        out.extend_from_slice(&j[at + 2 + len..]);
        out
    }

    #[test]
    fn the_standard_segment_has_the_annex_k_sizes() {
        let dht = standard_dht();
        // 4 x (class/id + 16 counts) + 12 + 162 + 12 + 162 symbols, plus the length field: 0x01A2.
        assert_eq!(&dht[..4], &[0xFF, 0xC4, 0x01, 0xA2]);
        assert_eq!(dht.len(), 2 + 0x01A2);
        for t in &STANDARD {
            let counted: usize = t.bits.iter().map(|&b| b as usize).sum();
            assert_eq!(counted, t.values.len());
        }
    }

    #[test]
    fn tables_are_inserted_before_the_scan_only_where_missing() {
        let with = tiny_jpeg(4);
        assert_eq!(add_standard_tables(&with), Ok(None));
        assert_eq!(lacks_tables(&with), Ok(false));
        let bare = without_dht(&with);
        assert_eq!(lacks_tables(&bare), Ok(true));
        let fixed = add_standard_tables(&bare).unwrap().unwrap();
        let sos = bare.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        assert_eq!(&fixed[..sos], &bare[..sos]);
        assert_eq!(&fixed[sos..sos + 0x01A4], &standard_dht()[..]);
        assert_eq!(&fixed[sos + 0x01A4..], &bare[sos..]);
        assert_eq!(check(&fixed).unwrap().width, 32);
        assert_eq!(add_standard_tables(&fixed), Ok(None), "idempotent");
    }

    #[test]
    fn a_thumbnail_or_padding_does_not_confuse_it() {
        // A thumbnail's own DHT sits inside APP1: the main picture still has none.
        let bare = without_dht(&tiny_jpeg(4));
        let mut framed = with_thumbnail(&bare, &tiny_jpeg(9));
        framed.extend([0, 0, 0]);
        let fixed = add_standard_tables(&framed).unwrap().unwrap();
        assert!(fixed.ends_with(&[0xFF, 0xD9]));
        assert_eq!(lacks_tables(&fixed), Ok(false));
    }

    #[test]
    fn progressive_frames_and_broken_ones_are_not_touched() {
        let mut progressive = without_dht(&tiny_jpeg(4));
        let sof = progressive
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .unwrap();
        progressive[sof + 1] = 0xC2;
        assert_eq!(add_standard_tables(&progressive), Ok(None));
        assert!(add_standard_tables(b"not a jpeg").is_err());
        let bare = without_dht(&tiny_jpeg(4));
        assert!(add_standard_tables(&bare[..bare.len() / 2]).is_err());
    }

    proptest! {
        #[test]
        fn never_panics_and_what_it_returns_is_whole_and_complete(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(Some(out)) = add_standard_tables(&bytes) {
                prop_assert!(check(&out).is_ok());
                prop_assert_eq!(add_standard_tables(&out), Ok(None));
            }
        }

        #[test]
        fn random_frames_gain_tables_once_and_frames_with_tables_stay(
            seed in any::<u8>(),
            thumb in any::<bool>(),
            pad in 0usize..4,
        ) {
            let framed = |j: Vec<u8>| if thumb { with_thumbnail(&j, &tiny_jpeg(seed ^ 0x55)) } else { j };
            let mut padded = framed(tiny_jpeg(seed));
            padded.extend(std::iter::repeat_n(0, pad));
            prop_assert_eq!(add_standard_tables(&padded), Ok(None));
            let bare = framed(without_dht(&tiny_jpeg(seed)));
            let once = add_standard_tables(&bare).unwrap().unwrap();
            prop_assert_eq!(once.len(), bare.len() + standard_dht().len());
            prop_assert_eq!(add_standard_tables(&once), Ok(None));
        }
    }
}
