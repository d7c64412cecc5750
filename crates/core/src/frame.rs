//! A captured frame as every client shares it.
//!
//! A frame is built once, when the source hands it to the hub: its JPEG bytes and the multipart part header
//! that announces it (length, capture time, sequence number) are fixed from then on, so that sending it to
//! any number of clients copies nothing and formats nothing. Clients hold it as `Arc<Frame>`.

use bytes::Bytes;
use std::fmt::Write as _;

/// The multipart boundary of every stream mjpegd serves: the one of µStreamer and mjpg-streamer, which
/// clients written against either already accept.
pub const BOUNDARY: &str = "boundarydonotcross";

/// What follows each JPEG: the next boundary, sent at once so that a client can tell the part is complete
/// without waiting for the next frame.
pub const PART_TAIL: &[u8] = b"\r\n--boundarydonotcross\r\n";

/// The headers sent right after each boundary in "advance headers" mode (see [`Frame::part_head`]).
pub const ADVANCE_HEAD: &[u8] = b"Content-Type: image/jpeg\r\n\r\n";

/// One JPEG from the source, numbered and stamped by the hub.
#[derive(Debug)]
pub struct Frame {
    /// Capture sequence number: increases by one for every frame the hub accepts, so a gap is visible.
    pub seq: u64,
    /// Capture time in microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// The JPEG itself, shared with every client and the snapshot endpoint.
    pub jpeg: Bytes,
    /// The part header that precedes the JPEG in a stream.
    pub part_head: Bytes,
}

impl Frame {
    /// Builds a frame and formats its part header once.
    pub fn new(seq: u64, timestamp_us: u64, jpeg: Bytes) -> Frame {
        let mut head = String::with_capacity(128);
        let _ = write!(
            head,
            "Content-Type: image/jpeg\r\nContent-Length: {}\r\nX-Timestamp: {}\r\nX-Frame-Sequence: {}\r\n\r\n",
            jpeg.len(),
            format_timestamp(timestamp_us),
            seq
        );
        Frame {
            seq,
            timestamp_us,
            jpeg,
            part_head: Bytes::from(head),
        }
    }

    /// Bytes this frame keeps alive (JPEG and header).
    pub fn size(&self) -> usize {
        self.jpeg.len() + self.part_head.len()
    }
}

/// Formats microseconds since the epoch as µStreamer's `X-Timestamp`: seconds with six decimals.
pub fn format_timestamp(timestamp_us: u64) -> String {
    format!(
        "{}.{:06}",
        timestamp_us / 1_000_000,
        timestamp_us % 1_000_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_head_announces_exact_length_time_and_sequence() {
        let f = Frame::new(
            7,
            1_700_000_000_000_042,
            Bytes::from_static(b"\xff\xd8abc\xff\xd9"),
        );
        assert_eq!(
            &f.part_head[..],
            b"Content-Type: image/jpeg\r\nContent-Length: 7\r\nX-Timestamp: 1700000000.000042\r\nX-Frame-Sequence: 7\r\n\r\n"
        );
        assert_eq!(f.size(), 7 + f.part_head.len());
    }

    #[test]
    fn tail_carries_the_boundary() {
        assert_eq!(PART_TAIL, format!("\r\n--{BOUNDARY}\r\n").as_bytes());
    }
}
