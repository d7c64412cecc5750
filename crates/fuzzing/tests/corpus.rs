//! Replays every kept fuzz input (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) through its
//! target on stable Rust, so what the fuzzers found stays fixed.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut count = 0;
    for dir in ["corpus", "regressions"] {
        let dir = root.join(dir).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                panic!("{target}: {} fails", path.display());
            }
            count += 1;
        }
    }
    assert!(
        count >= 5,
        "{target}: only {count} inputs kept: the corpus is missing"
    );
    println!("{target}: {count} inputs replayed");
}

#[test]
fn request_corpus() {
    replay("request", mjpegd_fuzzing::request);
}

#[test]
fn multipart_corpus() {
    replay("multipart", mjpegd_fuzzing::multipart);
}

#[test]
fn jpeg_corpus() {
    replay("jpeg", mjpegd_fuzzing::jpeg);
}

#[test]
fn digest_corpus() {
    replay("digest", mjpegd_fuzzing::digest);
}
