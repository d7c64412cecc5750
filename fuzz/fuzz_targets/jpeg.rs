#![no_main]
//! The JPEG splitter (pipe input) and checker: any bytes, in any chunking, never panic and stay bounded.
use libfuzzer_sys::fuzz_target;
use mjpegd_core::parse::jpeg::{check, JpegSplitter};

fuzz_target!(|data: &[u8]| {
    let _ = check(data);
    let chunk = 1 + *data.first().unwrap_or(&13) as usize;
    let mut splitter = JpegSplitter::new(8192);
    for piece in data.chunks(chunk) {
        splitter.push(piece);
        while let Some(r) = splitter.next_frame() {
            if let Ok(frame) = r {
                assert!(frame.len() <= 8192, "a frame over the cap");
                assert!(frame.starts_with(&[0xFF, 0xD8]) && frame.ends_with(&[0xFF, 0xD9]));
            }
        }
    }
});
