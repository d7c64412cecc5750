//! Pipe sources (a child process, stdin) and file replay, with real ffmpeg and EXIF-thumbnail JPEGs.

mod common;
#[path = "common/upstream.rs"]
mod upstream;
use common::*;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use upstream::make_jpegs;

/// A JPEG whose APP1 (EXIF) segment carries a whole thumbnail JPEG, FF D8 .. FF D9 included, as cameras
/// write them.
fn with_exif_thumbnail(main: &[u8], thumb: &[u8]) -> Vec<u8> {
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(thumb);
    let len = (app1.len() + 2) as u16;
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&main[2..]);
    out
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mjpegd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn exec_ffmpeg_testsrc_streams_to_clients() {
    let server = Server::start(&[
        "--source",
        "exec:ffmpeg -loglevel error -re -f lavfi -i testsrc=size=320x240:rate=20 -f mjpeg -q:v 5 -",
        "--capture",
        "always",
    ]);
    let mut s = server.stream("/stream");
    for _ in 0..15 {
        let part = s.next_part().unwrap();
        let h = turbojpeg::read_header(&part.body).expect("whole JPEGs from ffmpeg");
        assert_eq!((h.width, h.height), (320, 240));
    }
    let state = server.state();
    assert_eq!(state["source"]["online"], true);
    assert_eq!(state["source"]["dropped_frames"], 0);
}

#[test]
fn exif_thumbnails_do_not_split_frames_and_a_dying_child_is_restarted() {
    let dir = temp_dir("exif");
    let mains = make_jpegs(3, 160, 120);
    let thumbs = make_jpegs(3, 32, 24);
    let frames: Vec<Vec<u8>> = mains
        .iter()
        .zip(&thumbs)
        .map(|(m, t)| with_exif_thumbnail(m, t))
        .collect();
    let file = dir.join("exif.mjpeg");
    std::fs::write(&file, frames.concat()).unwrap();
    // The child writes three frames and exits: the supervisor restarts it.
    let cmd = format!("exec:cat {} ; sleep 0.2", file.display());
    let server = Server::start(&[
        "--source",
        &cmd,
        "--capture",
        "always",
        "--resolution",
        "160x120",
    ]);
    let mut s = server.stream("/stream?delivery=all");
    let mut real = 0;
    while real < 6 {
        let part = s.next_part().unwrap();
        if frames.contains(&part.body) {
            real += 1;
        } else {
            // Between runs of the child, the "no signal" frame may show; never a thumbnail or half a frame.
            assert!(!thumbs.contains(&part.body) && !mains.contains(&part.body));
            assert_whole_jpeg(&part.body);
        }
    }
    let state = server.state();
    assert!(
        state["source"]["reconnects"].as_u64().unwrap() >= 1,
        "the child was restarted"
    );
    assert_eq!(state["source"]["dropped_frames"], 0);
}

#[test]
fn garbled_frames_from_a_pipe_are_dropped_and_counted() {
    let jpegs = make_jpegs(2, 160, 120);
    let mut stream = Vec::new();
    stream.extend_from_slice(&jpegs[0]);
    stream.extend_from_slice(&jpegs[1][..jpegs[1].len() / 2]); // truncated: no EOI...
    stream.extend_from_slice(&jpegs[0]); // ...then a whole frame again
    let mut server = Server::spawn(
        Command::new(env!("CARGO_BIN_EXE_mjpegd"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--source",
                "-",
                "--capture",
                "always",
            ])
            .stdin(Stdio::piped()),
    );
    let mut stdin = server.child.stdin.take().unwrap();
    stdin.write_all(&stream).unwrap();
    let addr = server.addr;
    let state = eventually(Duration::from_secs(5), "frames counted", || {
        let r = request(
            addr,
            "GET /state HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        (v["result"]["hub"]["frames_published"].as_u64().unwrap() >= 2).then_some(v)
    });
    assert_eq!(state["result"]["source"]["dropped_frames"], 1, "{state}");
    let snap = request(
        addr,
        "GET /snapshot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(snap.body, jpegs[0], "only whole frames are served");
    // A closed stdin is the end for good: reported once, never "reopened".
    drop(stdin);
    let source = |addr| {
        let r = request(
            addr,
            "GET /state HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["result"]["source"].clone()
    };
    eventually(Duration::from_secs(5), "the end of stdin", || {
        (source(addr)["error"] == "standard input closed").then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    let after = source(addr);
    assert_eq!(after["error"], "standard input closed", "{after}");
    assert_eq!(after["reconnects"], 0, "{after}");
    assert!(server.stop().success());
}

#[test]
fn files_replay_a_folder_in_name_order_and_an_mjpeg_file_looping() {
    let dir = temp_dir("files");
    let jpegs = make_jpegs(4, 160, 120);
    for (i, j) in jpegs.iter().enumerate() {
        std::fs::write(dir.join(format!("frame{i:03}.jpg")), j).unwrap();
    }
    std::fs::write(dir.join("notes.txt"), "not a frame").unwrap();
    let server = Server::start(&[
        "--source",
        &format!("files:{}", dir.display()),
        "--fps",
        "30",
        "--capture",
        "always",
    ]);
    let mut s = server.stream("/stream?delivery=all");
    let got: Vec<Vec<u8>> = (0..9).map(|_| s.next_part().unwrap().body).collect();
    let start = jpegs
        .iter()
        .position(|j| *j == got[0])
        .expect("a file's bytes");
    for (k, frame) in got.iter().enumerate() {
        assert_eq!(*frame, jpegs[(start + k) % 4], "name order, looping");
    }
    let state = server.state();
    assert_eq!(state["source"]["resolution"]["width"], 160);
    drop(server);

    let file = dir.join("clip.mjpeg");
    std::fs::write(&file, jpegs.concat()).unwrap();
    let server = Server::start(&[
        "--source",
        file.to_str().unwrap(),
        "--fps",
        "30",
        "--capture",
        "always",
    ]);
    let mut s = server.stream("/stream?delivery=all");
    let got: Vec<Vec<u8>> = (0..9).map(|_| s.next_part().unwrap().body).collect();
    let start = jpegs.iter().position(|j| *j == got[0]).unwrap();
    for (k, frame) in got.iter().enumerate() {
        assert_eq!(*frame, jpegs[(start + k) % 4]);
    }
}
