//! Replays the fuzzing corpus (`tests/corpus/`) through the parsers on stable Rust: every input, whole and
//! in several chunkings, must parse or fail cleanly, within bounds.

use mjpegd_core::parse::jpeg::{check, JpegSplitter};
use mjpegd_core::parse::multipart::{boundary_from_content_type, MultipartParser};
use std::path::Path;

fn corpus(dir: &str) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", path.display());
    files
        .into_iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect()
}

#[test]
fn jpeg_corpus() {
    for data in corpus("jpeg") {
        let _ = check(&data);
        for (chunk, cap) in [
            (1, 8192),
            (7, 8192),
            (64, 256),
            (4096, 8192),
            (1 << 20, 512),
        ] {
            let mut s = JpegSplitter::new(cap);
            for piece in data.chunks(chunk) {
                s.push(piece);
                while let Some(r) = s.next_frame() {
                    if let Ok(frame) = r {
                        assert!(frame.len() <= cap, "a frame over the cap");
                        assert!(frame.starts_with(&[0xFF, 0xD8]) && frame.ends_with(&[0xFF, 0xD9]));
                    }
                }
            }
        }
    }
}

#[test]
fn multipart_corpus() {
    let mut parts_seen = 0;
    for data in corpus("multipart") {
        let (head, body) = match data.iter().position(|&b| b == b'\n') {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (&data[..0], &data[..]),
        };
        let boundary = boundary_from_content_type(&String::from_utf8_lossy(head));
        for chunk in [1, 5, 100, 1 << 20] {
            let mut p = MultipartParser::new(boundary.as_deref(), 1 << 16);
            for piece in body.chunks(chunk) {
                p.push(piece);
                while let Some(r) = p.next_part() {
                    match r {
                        Ok(part) => {
                            assert!(part.body.len() <= 1 << 16);
                            parts_seen += 1;
                        }
                        Err(_) => break,
                    }
                }
            }
        }
    }
    assert!(parts_seen > 0);
}
