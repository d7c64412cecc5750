//! Several cameras in one server, from a config file: a test pattern, a relay of a firmware emulator, a
//! folder of files and the fake V4L2 camera, each told apart by its picture size. Every URL dialect must
//! reach the right camera; each camera has its own hub; a broken file is refused with line:column.
//! Needs /dev/fuse and fusermount3 (package fuse3, installed by scripts/setup.sh) for the V4L2 camera.

mod common;
#[path = "common/upstream.rs"]
mod upstream;
use common::*;
use fakecam::{FakeCam, Format, FrameSource, Options};
use std::process::Command;
use std::time::Duration;
use upstream::{make_jpegs, Style, Upstream};

const PATTERN: (usize, usize) = (640, 480);
const RELAY: (usize, usize) = (160, 120);
const FILES: (usize, usize) = (200, 150);
const USB: (usize, usize) = (320, 240);

#[test]
fn every_url_dialect_reaches_the_right_camera_of_a_config_file() {
    let dir = TempDir::new("cams-dialects");
    let files = dir.0.join("files");
    std::fs::create_dir_all(&files).unwrap();
    for (i, f) in make_jpegs(4, FILES.0 as u32, FILES.1 as u32)
        .iter()
        .enumerate()
    {
        std::fs::write(files.join(format!("{i:03}.jpg")), f).unwrap();
    }
    let cam_frames = dir.0.join("cam-frames");
    std::fs::create_dir_all(&cam_frames).unwrap();
    for (i, f) in make_jpegs(4, USB.0 as u32, USB.1 as u32).iter().enumerate() {
        std::fs::write(cam_frames.join(format!("{i:03}.jpg")), f).unwrap();
    }
    let mount = dir.0.join("v4l");
    std::fs::create_dir_all(&mount).unwrap();
    let fake = FakeCam::mount(
        &mount,
        Options {
            width: USB.0 as u32,
            height: USB.1 as u32,
            fps: 15,
            format: Format::Mjpeg,
            frames: FrameSource::Dir(cam_frames),
            bad_every: None,
        },
    )
    .expect("the fake camera mounts (needs /dev/fuse and fusermount3)");
    let esp = Upstream::start(
        Style::esp32(),
        make_jpegs(3, RELAY.0 as u32, RELAY.1 as u32),
        15,
    );
    let config = dir.0.join("cams.toml");
    std::fs::write(
        &config,
        format!(
            r#"# four cameras of four kinds
[cameras.pat]
source = "pattern"
resolution = "640x480"
fps = 10

[cameras.esp]
source = "{}"

[cameras.rec]
source = "files:{}"
fps = 10

[cameras.usb]
device = "{}"
resolution = "320x240"
fps = 15
"#,
            esp.url("/mjpeg/1"),
            files.display(),
            fake.device_path().display()
        ),
    )
    .unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);

    let streams = [
        ("/stream", PATTERN),
        ("/mjpeg/1", PATTERN),
        ("/?action=stream", PATTERN),
        ("/?action=stream?nonce_dashboard=123", PATTERN),
        ("/?action=stream_0", PATTERN),
        ("/webcam/?action=stream", PATTERN),
        ("/cams/pat/stream", PATTERN),
        ("/cams/esp/stream", RELAY),
        ("/?action=stream_1", RELAY),
        ("/webcam2/?action=stream", RELAY),
        ("/cams/rec/stream?delivery=all", FILES),
        ("/?action=stream_2", FILES),
        ("/webcam3/?action=stream&timestamp=1", FILES),
        ("/cams/usb/stream", USB),
        ("/?action=stream_3", USB),
        ("/webcam4/?action=stream", USB),
    ];
    for (path, size) in streams {
        let mut s = server.stream(path);
        assert_eq!(s.head.status, 200, "{path}");
        let part = s.next_part().unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(size_of(&part.body), size, "{path}");
    }
    let snapshots = [
        ("/snapshot", PATTERN),
        ("/snapshot?1700000000", PATTERN),
        ("/jpg", PATTERN),
        ("/?action=snapshot", PATTERN),
        ("/cams/esp/snapshot?bypassCache=1&cacheBust=2", RELAY),
        ("/?action=snapshot_1", RELAY),
        ("/webcam3/?action=snapshot", FILES),
        ("/cams/usb/snapshot", USB),
    ];
    for (path, size) in snapshots {
        let r = server.get(path);
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(size_of(&r.body), size, "{path}");
    }
    for path in [
        "/cams/attic/stream",
        "/?action=stream_4",
        "/webcam5/?action=snapshot",
    ] {
        let r = server.get(path);
        assert_eq!(r.status, 404, "{path}");
        assert!(
            String::from_utf8_lossy(&r.body).contains("no camera"),
            "{path}"
        );
    }
    assert_eq!(server.get("/?action=record").status, 400);

    // /state lists every camera in file order with its URLs; each camera has its own hub.
    let mut watcher = server.stream("/cams/esp/stream");
    watcher.next_part().unwrap();
    // (The streams opened above leave as the server notices their connections closed.)
    let state = eventually(
        Duration::from_secs(10),
        "one client on esp, none elsewhere",
        || {
            let st = server.state();
            let counts: Vec<u64> = (0..4)
                .map(|i| st["cameras"][i]["clients"].as_u64().unwrap())
                .collect();
            (counts == [0, 1, 0, 0]).then_some(st)
        },
    );
    assert_eq!(camera_names(&state), ["pat", "esp", "rec", "usb"]);
    assert_eq!(state["cameras"][1]["urls"]["stream"], "/cams/esp/stream");
    assert_eq!(
        state["cameras"][1]["urls"]["mjpg_streamer"]["stream"],
        "/?action=stream_1"
    );
    assert_eq!(
        state["cameras"][1]["urls"]["crowsnest"]["snapshot"],
        "/webcam2/?action=snapshot"
    );
    // The top level is the first camera's document, as with one camera.
    assert_eq!(state["name"], "pat");
    let esp_state = server.get("/cams/esp/state");
    let esp_state: serde_json::Value = serde_json::from_slice(&esp_state.body).unwrap();
    assert_eq!(esp_state["result"]["name"], "esp");
    assert_eq!(esp_state["result"]["stream"]["clients"], 1);
    assert_eq!(
        esp_state["result"]["source"]["resolution"]["width"],
        RELAY.0
    );
    // A camera's page streams that camera.
    let page = String::from_utf8(server.get("/cams/usb/").body).unwrap();
    assert!(page.contains(r#"data-base="/cams/usb/""#), "{page}");
    drop(watcher);
    drop(server);
    drop(fake);
}

#[test]
fn a_broken_config_is_refused_with_file_line_and_column() {
    let dir = TempDir::new("cams-broken");
    let bad = dir.0.join("bad.toml");
    std::fs::write(
        &bad,
        "listen = \"127.0.0.1:0\"\n\n[cameras.a]\nsource = \"pattern\"\nfsp = 10\n",
    )
    .unwrap();
    for args in [
        vec!["check-config".to_string(), bad.display().to_string()],
        vec!["--config".to_string(), bad.display().to_string()],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_mjpegd"))
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("{}:5:1:", bad.display())) && err.contains("unknown field `fsp`"),
            "{args:?}: {err}"
        );
    }
    let good = dir.0.join("good.toml");
    std::fs::write(
        &good,
        "[cameras.front]\nsource = \"pattern\"\n[cameras.back]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mjpegd"))
        .args(["check-config", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for url in [
        "/cams/front/stream",
        "/?action=stream_1",
        "/webcam2/?action=snapshot",
    ] {
        assert!(text.contains(url), "{text}");
    }
}

#[test]
fn one_camera_from_flags_answers_at_its_default_name_too() {
    let server = Server::start(&[]);
    let mut s = server.stream("/cams/default/stream");
    assert_eq!(size_of(&s.next_part().unwrap().body), (320, 240));
    eventually(Duration::from_secs(5), "the camera listed", || {
        let st = server.state();
        (st["cameras"][0]["name"] == "default" && st["cameras"][0]["clients"] == 1).then_some(())
    });
}
