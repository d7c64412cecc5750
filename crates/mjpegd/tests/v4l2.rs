//! V4L2 capture against the project's fake camera (a FUSE file that behaves as a V4L2 device): MJPEG
//! passthrough, YUYV encoding, on-demand capture, unplug and replug, broken buffers, honest negotiation.
//! Needs /dev/fuse and fusermount3 (package fuse3, installed by scripts/setup.sh).

mod common;
#[path = "common/upstream.rs"]
mod upstream;
use common::*;
use fakecam::{FakeCam, Format, FrameSource, Options};
use std::time::Duration;
use upstream::make_jpegs;

struct Cam {
    cam: FakeCam,
    _dir: TempDir,
    frames: Vec<Vec<u8>>,
}

fn temp_dir(name: &str) -> TempDir {
    TempDir::new(&format!("v4l2-{name}"))
}

fn camera(name: &str, format: Format, bad_every: Option<u32>) -> Cam {
    let dir = temp_dir(name);
    let frames = make_jpegs(6, 320, 240);
    let frames_dir = dir.0.join("frames");
    std::fs::create_dir_all(&frames_dir).unwrap();
    for (i, f) in frames.iter().enumerate() {
        std::fs::write(frames_dir.join(format!("{i:03}.jpg")), f).unwrap();
    }
    let mount = dir.0.join("cam");
    std::fs::create_dir_all(&mount).unwrap();
    let cam = FakeCam::mount(
        &mount,
        Options {
            width: 320,
            height: 240,
            fps: 30,
            format,
            frames: FrameSource::Dir(frames_dir),
            bad_every,
        },
    )
    .expect("the fake camera mounts (needs /dev/fuse and fusermount3)");
    Cam {
        cam,
        _dir: dir,
        frames,
    }
}

fn serve(cam: &Cam, extra: &[&str]) -> Server {
    let device = cam.cam.device_path();
    let mut args = vec![
        "--device",
        device.to_str().unwrap(),
        "--resolution",
        "320x240",
        "--fps",
        "30",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[test]
fn mjpeg_frames_pass_through_byte_identical() {
    let cam = camera("mjpeg", Format::Mjpeg, None);
    let server = serve(&cam, &["--format", "mjpeg", "--capture", "always"]);
    let mut s = server.stream("/stream?delivery=all");
    for _ in 0..20 {
        let part = s.next_part().unwrap();
        assert!(cam.frames.contains(&part.body), "a camera frame, untouched");
    }
    let state = server.state();
    assert_eq!(state["source"]["online"], true);
    assert_eq!(state["source"]["resolution"]["width"], 320);
    assert_eq!(state["encoder"]["type"], "NONE");
}

#[test]
fn yuyv_frames_are_encoded_to_the_camera_size() {
    let cam = camera("yuyv", Format::Yuyv, None);
    let server = serve(
        &cam,
        &["--format", "auto", "--capture", "always", "--encoders", "2"],
    );
    let mut s = server.stream("/stream");
    for _ in 0..15 {
        let part = s.next_part().unwrap();
        let h = turbojpeg::read_header(&part.body).expect("a JPEG");
        assert_eq!((h.width, h.height), (320, 240));
    }
    let state = server.state();
    assert_eq!(state["encoder"]["type"], "CPU");
    assert!(
        state["source"]["captured_fps"].as_f64().unwrap() > 20.0,
        "{state}"
    );
}

#[test]
fn negotiation_reports_what_the_driver_granted() {
    let cam = camera("negotiate", Format::Mjpeg, None);
    // Ask for a size the camera does not have and a rate it does: it keeps 320x240, grants 15 fps.
    let device = cam.cam.device_path();
    let server = Server::start(&[
        "--device",
        device.to_str().unwrap(),
        "--resolution",
        "1920x1080",
        "--fps",
        "15",
        "--capture",
        "always",
    ]);
    let mut s = server.stream("/stream");
    s.next_part().unwrap();
    let state = server.state();
    assert_eq!(
        state["source"]["resolution"],
        serde_json::json!({"width": 320, "height": 240})
    );
    assert_eq!(state["source"]["granted_fps"], 15.0);
    assert_eq!(cam.cam.stats().fps, 15, "S_PARM reached the camera");
}

#[test]
fn the_camera_is_open_only_while_someone_watches() {
    let cam = camera("ondemand", Format::Mjpeg, None);
    let server = serve(&cam, &["--capture", "on-demand", "--linger", "300ms"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        cam.cam.stats().open_handles,
        0,
        "closed while no one watches"
    );
    assert_eq!(cam.cam.stats().total_opens, 0);
    let mut s = server.stream("/stream");
    s.next_part().unwrap();
    assert!(cam.cam.stats().streaming, "open while a client watches");
    drop(s);
    eventually(
        Duration::from_secs(5),
        "the camera closed after the linger",
        || (cam.cam.stats().open_handles == 0).then_some(()),
    );
    assert_eq!(server.state()["source"]["state"], "idle");
}

#[test]
fn unplug_shows_no_signal_to_connected_clients_and_replug_resumes() {
    let cam = camera("unplug", Format::Mjpeg, None);
    let server = serve(&cam, &["--format", "mjpeg", "--capture", "always"]);
    let mut s = server.stream("/stream");
    for _ in 0..5 {
        assert!(cam.frames.contains(&s.next_part().unwrap().body));
    }
    cam.cam.unplug();
    eventually(Duration::from_secs(10), "a 'no signal' frame", || {
        let part = s.next_part().expect("the client stays connected");
        let h = turbojpeg::read_header(&part.body).expect("a JPEG");
        (!cam.frames.contains(&part.body) && (h.width, h.height) == (320, 240)).then_some(())
    });
    let state = server.state();
    assert_eq!(state["source"]["online"], false);
    assert!(state["source"]["last_error"].as_str().is_some(), "{state}");
    cam.cam.replug();
    eventually(Duration::from_secs(15), "real frames again", || {
        let part = s.next_part().expect("the client stays connected");
        cam.frames.contains(&part.body).then_some(())
    });
    let state = server.state();
    assert_eq!(state["source"]["online"], true);
    assert!(state["source"]["reconnects"].as_u64().unwrap() >= 1);
}

#[test]
fn broken_buffers_are_dropped_and_counted() {
    let cam = camera("broken", Format::Mjpeg, Some(3));
    let server = serve(&cam, &["--format", "mjpeg", "--capture", "always"]);
    let mut s = server.stream("/stream?delivery=all");
    for _ in 0..20 {
        let part = s.next_part().unwrap();
        assert!(
            cam.frames.contains(&part.body),
            "only whole frames reach clients"
        );
    }
    let dropped = server.state()["source"]["dropped_frames"].as_u64().unwrap();
    assert!(dropped >= 5, "dropped {dropped}");
}

#[test]
fn devices_lists_formats_sizes_and_rates() {
    let cam = camera("list", Format::Mjpeg, None);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mjpegd"))
        .arg("devices")
        .arg(cam.cam.device_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("MJPG"), "{text}");
    assert!(text.contains("320x240 @ 30 fps"), "{text}");
}
