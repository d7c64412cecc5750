//! Turning the picture at the source (`--rotate`, `--flip`) and giving table-less frames the standard
//! Huffman tables, on the real binary. What mjpegd serves is compared, decoded, with what `jpegtran -trim`
//! (libjpeg-turbo-progs, installed by scripts/setup.sh) makes of the same source frame: lossless transforms
//! of the same coefficients decode to the same pixels.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A 4:2:0 JPEG of `w` x `h` in which neighbouring pixels differ (a turned picture cannot pass by luck).
fn detailed(w: usize, h: usize) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            pixels.extend([(x * 5) as u8, (y * 7) as u8, ((x * y) % 251) as u8]);
        }
    }
    let image = turbojpeg::Image {
        pixels: &pixels[..],
        width: w,
        pitch: w * 3,
        height: h,
        format: turbojpeg::PixelFormat::RGB,
    };
    turbojpeg::compress(image, 90, turbojpeg::Subsamp::Sub2x2)
        .unwrap()
        .to_vec()
}

fn decode(jpeg: &[u8]) -> turbojpeg::Image<Vec<u8>> {
    turbojpeg::decompress(jpeg, turbojpeg::PixelFormat::RGB).expect("a decodable JPEG")
}

fn jpegtran(args: &[&str], input: &Path) -> Vec<u8> {
    let out = Command::new("jpegtran")
        .args(args)
        .arg("-trim")
        .arg(input)
        .output()
        .expect("jpegtran runs (libjpeg-turbo-progs)");
    assert!(out.status.success(), "jpegtran {args:?}");
    out.stdout
}

/// The first frame a latest client of `server` gets.
fn served(server: &Server) -> Vec<u8> {
    let mut s = server.stream("/stream");
    s.next_part().expect("a frame").body
}

#[test]
fn each_rotation_and_flip_equals_jpegtran_trim_pixel_for_pixel() {
    let dir = TempDir::new("orient-files");
    // 200x120: neither side a multiple of the 16-pixel block, so trimming is exercised.
    let source = detailed(200, 120);
    let file = dir.0.join("frame.jpg");
    std::fs::write(&file, &source).unwrap();
    let cases: [(&[&str], &[&str]); 6] = [
        (&["--rotate", "90"], &["-rotate", "90"]),
        (&["--rotate", "180"], &["-rotate", "180"]),
        (&["--rotate", "270"], &["-rotate", "270"]),
        (&["--flip", "horizontal"], &["-flip", "horizontal"]),
        (&["--flip", "vertical"], &["-flip", "vertical"]),
        // Flipped first, then rotated: a mirror along the other diagonal.
        (
            &["--flip", "horizontal", "--rotate", "90"],
            &["-transverse"],
        ),
    ];
    for (flags, tran) in cases {
        let expected = decode(&jpegtran(tran, &file));
        let mut args = vec![
            "--source".to_string(),
            format!("files:{}", dir.0.display()),
            "--fps".into(),
            "10".into(),
            "--capture".into(),
            "always".into(),
        ];
        args.extend(flags.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Server::start(&args);
        let got = served(&server);
        let pixels = decode(&got);
        assert_eq!(
            (pixels.width, pixels.height),
            (expected.width, expected.height),
            "{flags:?}"
        );
        assert!(
            pixels.pixels == expected.pixels,
            "{flags:?}: pixels differ from jpegtran's"
        );
        assert_ne!(pixels.pixels, decode(&source).pixels, "{flags:?}: turned");
        let state = server.state();
        let r = &state["source"]["resolution"];
        assert_eq!(
            (r["width"].as_u64(), r["height"].as_u64()),
            (Some(expected.width as u64), Some(expected.height as u64)),
            "{flags:?}: /state shows the turned size"
        );
        // A snapshot is the same turned picture.
        let snap = server.get("/snapshot");
        assert_eq!(snap.status, 200);
        assert!(
            decode(&snap.body).pixels == expected.pixels,
            "{flags:?}: snapshot"
        );
    }
}

#[test]
fn bad_orientation_values_are_refused_with_a_reason() {
    for (flag, value, says) in [
        ("--rotate", "45", "0, 90, 180 or 270"),
        ("--rotate", "-90", "0, 90, 180 or 270"),
        ("--flip", "diagonal", "horizontal"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_mjpegd"))
            .arg(format!("{flag}={value}"))
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{err}");
    }
}

/// The pattern's frame counter, read after turning the frame back.
fn counter_of_turned(jpeg: &[u8]) -> u64 {
    let back = turbojpeg::transform(
        &turbojpeg::Transform::op(turbojpeg::TransformOp::Rot90),
        jpeg,
    )
    .unwrap();
    let grey = turbojpeg::decompress(&back, turbojpeg::PixelFormat::GRAY).unwrap();
    mjpegd::source::pattern::read_barcode(&grey.pixels, grey.width, grey.height)
}

#[test]
fn a_turned_camera_keeps_every_frame_for_all_clients_and_its_recording() {
    let dir = TempDir::new("orient-record");
    let mut server = Server::start(&[
        "--fps",
        "20",
        "--rotate",
        "270",
        "--capture",
        "always",
        "--record",
        dir.0.to_str().unwrap(),
    ]);
    let mut all = server.stream("/stream?delivery=all");
    let parts: Vec<Part> = (0..40).map(|_| all.next_part().unwrap()).collect();
    for w in parts.windows(2) {
        assert_eq!(w[1].seq(), w[0].seq() + 1, "an all client misses nothing");
    }
    for p in &parts {
        assert_eq!(size_of(&p.body), (240, 320), "320x240 turned a quarter");
    }
    let counters: Vec<u64> = parts.iter().map(|p| counter_of_turned(&p.body)).collect();
    for w in counters.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{counters:?}");
    }
    let state = server.state();
    assert_eq!(state["source"]["resolution"]["width"], 240, "{state}");
    assert_eq!(state["source"]["dropped_frames"], 0, "{state}");
    assert_eq!(state["source"]["orientation"]["rotate"], 270, "{state}");
    assert!(server.stop().success());
    // The recording holds the turned frames, every one of them in order.
    let files: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "mkv"))
        .collect();
    assert!(!files.is_empty());
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&files[0])
        .args(["-c", "copy", "-f", "mjpeg", "-"])
        .output()
        .expect("ffmpeg runs");
    let mut splitter = mjpegd_core::parse::jpeg::JpegSplitter::new(16 << 20);
    splitter.push(&out.stdout);
    let recorded: Vec<u64> = std::iter::from_fn(|| splitter.next_frame())
        .map(|f| {
            let f = f.unwrap();
            assert_eq!(size_of(&f), (240, 320));
            counter_of_turned(&f)
        })
        .collect();
    assert!(recorded.len() >= 40, "{} frames recorded", recorded.len());
    for w in recorded.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{recorded:?}");
    }
    for c in &counters {
        assert!(
            recorded.contains(c),
            "frame {c} sent to the client is recorded"
        );
    }
}

/// `jpeg` without its DHT segments, as many UVC cameras send their frames.
fn without_tables(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut pos = 2;
    loop {
        let marker = jpeg[pos + 1];
        if marker == 0xDA {
            out.extend_from_slice(&jpeg[pos..]);
            return out;
        }
        let len = u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]) as usize;
        if marker != 0xC4 {
            out.extend_from_slice(&jpeg[pos..pos + 2 + len]);
        }
        pos += 2 + len;
    }
}

fn has_dht(jpeg: &[u8]) -> bool {
    let sos = find(jpeg, &[0xFF, 0xDA]).unwrap();
    find(&jpeg[..sos], &[0xFF, 0xC4]).is_some()
}

#[test]
fn frames_without_tables_are_given_them_and_decode_as_the_original() {
    let dir = TempDir::new("orient-dht");
    let original = detailed(160, 96);
    let bare = without_tables(&original);
    assert!(!has_dht(&bare));
    std::fs::write(dir.0.join("a.jpg"), &bare).unwrap();
    let server = Server::start(&[
        "--source",
        &format!("files:{}", dir.0.display()),
        "--fps",
        "10",
        "--capture",
        "always",
    ]);
    let got = served(&server);
    assert!(has_dht(&got), "tables inserted before the scan");
    assert!(decode(&got).pixels == decode(&original).pixels);
    // ffmpeg reads it as the same picture too.
    let served_file = dir.0.join("served.jpg.out");
    std::fs::write(&served_file, &got).unwrap();
    let ff = |p: &Path| {
        Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(p)
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .output()
            .unwrap()
            .stdout
    };
    let original_file = dir.0.join("original.jpg.out");
    std::fs::write(&original_file, &original).unwrap();
    assert!(ff(&served_file) == ff(&original_file));
    let state = server.state();
    assert!(
        state["source"]["huffman_tables_added"].as_u64().unwrap() >= 1,
        "{state}"
    );
    drop(server);

    // A frame with its tables is served byte for byte as it came, and nothing is counted.
    let dir = TempDir::new("orient-dht-kept");
    std::fs::write(dir.0.join("a.jpg"), &original).unwrap();
    let server = Server::start(&[
        "--source",
        &format!("files:{}", dir.0.display()),
        "--fps",
        "10",
        "--capture",
        "always",
    ]);
    assert_eq!(served(&server), original);
    eventually(Duration::from_secs(5), "a frame counted", || {
        let s = server.state();
        (s["source"]["huffman_tables_added"] == 0).then_some(())
    });
}

#[test]
fn a_turned_camera_serves_table_less_frames_turned_and_whole() {
    let dir = TempDir::new("orient-dht-turned");
    let original = detailed(160, 96);
    std::fs::write(dir.0.join("a.jpg"), without_tables(&original)).unwrap();
    let server = Server::start(&[
        "--source",
        &format!("files:{}", dir.0.display()),
        "--fps",
        "10",
        "--capture",
        "always",
        "--rotate",
        "180",
    ]);
    let got = served(&server);
    let original_file = dir.0.join("original.jpg.out");
    std::fs::write(&original_file, &original).unwrap();
    let expected = decode(&jpegtran(&["-rotate", "180"], &original_file));
    assert!(has_dht(&got));
    assert!(decode(&got).pixels == expected.pixels);
}
