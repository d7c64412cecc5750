//! Replays the request fuzzing corpus (`tests/corpus/request`) through the request parser.

use mjpegd::http::request::{parse_head, Limits};

#[test]
fn request_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/request");
    let mut parsed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        for end in [data.len(), data.len() / 2] {
            if let Ok(Some(r)) = parse_head(&data[..end], &Limits::default()) {
                assert!(r.path.starts_with('/'));
                parsed += 1;
            }
        }
    }
    assert!(parsed >= 3);
}
