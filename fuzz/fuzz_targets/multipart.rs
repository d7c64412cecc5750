#![no_main]
//! The multipart parser (relay input): any bytes, in any chunking, never panic and stay bounded.
use libfuzzer_sys::fuzz_target;
use mjpegd_core::parse::multipart::{boundary_from_content_type, MultipartParser};

fuzz_target!(|data: &[u8]| {
    // The first line plays the Content-Type header, the first byte the chunk size.
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let boundary = boundary_from_content_type(&String::from_utf8_lossy(head));
    let chunk = 1 + *data.first().unwrap_or(&7) as usize;
    let mut parser = MultipartParser::new(boundary.as_deref(), 4096);
    for piece in body.chunks(chunk) {
        parser.push(piece);
        while let Some(r) = parser.next_part() {
            if let Ok(part) = r {
                assert!(part.body.len() <= 4096);
            } else {
                break;
            }
        }
    }
});
