//! Sources that lie, stall or flap, against the real binary: a frame header claiming a gigantic picture
//! (relayed and from a child), an upstream that stays connected and silent, one that closes after every
//! frame, one that comes back after failing, and an on-demand source whose last frame must not be served
//! as live to the next client. Each upstream is written here, on loopback, and stops with the test.

mod common;
#[path = "common/upstream.rs"]
mod upstream;
use common::*;
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};
use upstream::{make_jpegs, After, Style, Upstream};

/// An upstream of `frames` in the ESP32 firmware's format, doing `after` after each frame.
fn upstream(after: After, frames: Vec<Vec<u8>>, fps: u32) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    Upstream::start_on(listener, Style::esp32(), frames, fps, after)
}

/// `jpeg` with its frame header saying `w` x `h` (the data stays a small picture).
fn claiming(jpeg: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut j = jpeg.to_vec();
    let sof = j
        .windows(2)
        .position(|m| m == [0xFF, 0xC0])
        .expect("baseline SOF");
    j[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    j[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    j
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// mjpegd under a 4 GB address-space limit (a 65535x65535 picture needs more than that).
fn start_limited(args: &[&str]) -> Server {
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg("--as=4000000000")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_mjpegd"))
        .args(["--listen", "127.0.0.1:0", "--resolution", "320x240"])
        .args(args);
    Server::spawn(&mut cmd)
}

fn x_timestamp(part: &Part) -> f64 {
    part.headers["x-timestamp"].parse().unwrap()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn a_relayed_frame_claiming_65535x65535_is_dropped_and_the_source_recovers_when_fixed() {
    let good = make_jpegs(3, 160, 120);
    let huge: Vec<Vec<u8>> = good.iter().map(|j| claiming(j, 65535, 65535)).collect();
    let up = upstream(After::Continue, huge, 20);
    let mut server = start_limited(&["--source", &up.url("/stream"), "--capture", "always"]);
    // Clients get "no signal" at the configured size, within the no-signal delay, not a 4 GB picture.
    let mut s = server.stream("/stream");
    let part = s.next_part().expect("a no-signal frame");
    assert_eq!(size_of(&part.body), (320, 240));
    assert!(part.body.len() < 100_000, "{} bytes", part.body.len());
    let state = eventually(Duration::from_secs(5), "the huge frames counted", || {
        let st = server.state();
        (st["source"]["dropped"]["picture_too_large"]
            .as_u64()
            .unwrap_or(0)
            >= 10)
            .then_some(st)
    });
    assert_eq!(state["source"]["online"], false, "{state}");
    assert!(
        rss_kib(server.child.id()) < 200 * 1024,
        "RSS {} KiB",
        rss_kib(server.child.id())
    );
    // The upstream is fixed: real frames flow again on the same client, without a restart.
    *up.frames.lock().unwrap() = good.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let part = s.next_part().expect("frames keep coming");
        if size_of(&part.body) == (160, 120) {
            assert!(good.contains(&part.body));
            break;
        }
        assert!(Instant::now() < deadline, "the relay never recovered");
    }
    let state = server.state();
    assert_eq!(state["source"]["online"], true, "{state}");
    assert_eq!(state["source"]["error"], serde_json::Value::Null, "{state}");
    assert!(server.child.try_wait().unwrap().is_none(), "mjpegd died");
    assert!(server.stop().success());
}

#[test]
fn a_child_writing_frames_that_claim_16384x16384_is_bounded_too() {
    let dir = std::env::temp_dir().join(format!("mjpegd-huge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("huge.mjpeg");
    let bytes: Vec<u8> = make_jpegs(3, 160, 120)
        .iter()
        .flat_map(|j| claiming(j, 16384, 16384))
        .collect();
    std::fs::write(&file, bytes).unwrap();
    let cmd = format!("exec:while :; do cat {}; sleep 0.05; done", file.display());
    let server = start_limited(&["--source", &cmd, "--capture", "always"]);
    let mut s = server.stream("/stream");
    for _ in 0..2 {
        let part = s.next_part().expect("a no-signal frame");
        assert_eq!(size_of(&part.body), (320, 240));
    }
    let state = server.state();
    assert!(
        state["source"]["dropped"]["picture_too_large"]
            .as_u64()
            .unwrap()
            >= 3,
        "{state}"
    );
    assert!(rss_kib(server.child.id()) < 200 * 1024);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_connected_but_silent_upstream_shows_no_signal_within_seconds_without_reconnecting() {
    let frames = make_jpegs(1, 160, 120);
    let up = upstream(After::Silence, frames.clone(), 10);
    // The read timeout stays long: "no signal" comes from --no-signal-after (2 s by default).
    let server = Server::start(&[
        "--source",
        &up.url("/stream"),
        "--capture",
        "always",
        "--read-timeout",
        "30s",
    ]);
    eventually(Duration::from_secs(5), "the one frame", || {
        (server.state()["hub"]["frames_published"].as_u64() >= Some(1)).then_some(())
    });
    let mut s = server.stream("/stream");
    s.set_timeout(Duration::from_secs(6));
    let opened = Instant::now();
    // The one real frame may come first (it is under 2 s old); then "no signal", at the source's size.
    let part = loop {
        let part = s
            .next_part()
            .expect("no signal while the upstream is silent");
        if !frames.contains(&part.body) {
            break part;
        }
    };
    assert_eq!(
        size_of(&part.body),
        (160, 120),
        "drawn at the source's last size"
    );
    assert!(
        opened.elapsed() < Duration::from_secs(4),
        "{:?}",
        opened.elapsed()
    );
    let second = s.next_part().expect("no signal repeats");
    assert!(second.seq() > part.seq());
    let state = server.state();
    assert_eq!(state["source"]["state"], "stalled", "{state}");
    assert_eq!(state["source"]["online"], false);
    assert!(
        state["source"]["error"]
            .as_str()
            .unwrap()
            .contains("no frame"),
        "{state}"
    );
    assert_eq!(
        up.connections.load(Ordering::Relaxed),
        1,
        "no reconnect before the read timeout"
    );
}

#[test]
fn an_upstream_that_closes_after_each_frame_is_reconnected_quickly_every_time() {
    let frames = make_jpegs(2, 160, 120);
    let up = upstream(After::Close, frames, 10);
    let server = Server::start(&["--source", &up.url("/stream"), "--capture", "always"]);
    let mut s = server.stream("/stream");
    let start = Instant::now();
    let mut real = 0;
    while start.elapsed() < Duration::from_secs(6) {
        let part = s.next_part().expect("parts keep coming");
        if size_of(&part.body) == (160, 120) {
            real += 1;
        }
    }
    // With the back-off growing to 4 s it was 5 frames in 6 s; reset after each good run, one every
    // ~0.25 s plus a connect.
    assert!(real >= 10, "{real} frames in 6 s");
    let state = server.state();
    assert!(
        state["source"]["reconnects"].as_u64().unwrap() >= 10,
        "{state}"
    );
}

#[test]
fn state_separates_the_current_error_from_the_last_one() {
    // A port where nothing listens yet.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/stream");
    let server = Server::start(&["--source", &url, "--capture", "always"]);
    let state = eventually(Duration::from_secs(5), "the failure", || {
        let st = server.state();
        st["source"]["error"].is_string().then_some(st)
    });
    assert_eq!(state["source"]["state"], "offline");
    assert_eq!(state["source"]["error"], state["source"]["last_error"]);
    let up = Upstream::start_on(
        TcpListener::bind(addr).unwrap(),
        Style::esp32(),
        make_jpegs(2, 160, 120),
        10,
        After::Continue,
    );
    let state = eventually(Duration::from_secs(10), "the recovery", || {
        let st = server.state();
        (st["source"]["online"] == true).then_some(st)
    });
    assert_eq!(state["source"]["error"], serde_json::Value::Null, "{state}");
    assert!(
        state["source"]["last_error"]
            .as_str()
            .unwrap()
            .contains("connect"),
        "{state}"
    );
    assert!(state["source"]["last_error_at"].is_string());
    drop(up);
}

#[test]
fn after_an_on_demand_source_went_idle_new_clients_get_a_fresh_frame_not_the_last_one() {
    let server = Server::start(&["--capture", "on-demand", "--linger", "300ms", "--fps", "10"]);
    {
        let mut s = server.stream("/stream");
        s.next_part().unwrap();
        s.next_part().unwrap();
    }
    eventually(Duration::from_secs(5), "the source closed", || {
        (server.state()["source"]["state"] == "idle").then_some(())
    });
    // Let the last frame of that run grow old.
    std::thread::sleep(Duration::from_millis(1500));
    for path in [
        "/stream",
        "/stream?delivery=all",
        "/stream?delivery=lockstep",
        "/mjpeg/1",
    ] {
        let asked = unix_now();
        let mut s = server.stream(path);
        let part = s.next_part().unwrap();
        let age = asked - x_timestamp(&part);
        assert!(
            age < 0.5,
            "{path}: the first frame is {age:.2} s older than the request"
        );
        drop(s);
        eventually(Duration::from_secs(5), "the source closed again", || {
            (server.state()["source"]["state"] == "idle").then_some(())
        });
        std::thread::sleep(Duration::from_millis(600));
    }
    let asked = unix_now();
    let snap = server.get("/snapshot");
    assert_eq!(snap.status, 200);
    let ts: f64 = snap.headers["x-timestamp"].parse().unwrap();
    assert!(asked - ts < 0.5, "the snapshot is {:.2} s old", asked - ts);
}

#[test]
fn a_source_that_only_sends_garbage_still_gives_clients_no_signal() {
    // Frames that are not JPEGs at all: dropped, counted, and clients see "no signal" within seconds.
    let up = upstream(
        After::Continue,
        vec![b"\xff\xd8 not really a jpeg".to_vec()],
        20,
    );
    let server = Server::start(&["--source", &up.url("/stream"), "--capture", "always"]);
    let mut s = server.stream("/stream");
    let opened = Instant::now();
    let part = s.next_part().unwrap();
    assert_eq!(size_of(&part.body), (320, 240));
    assert!(opened.elapsed() < Duration::from_secs(5));
    let state = server.state();
    assert!(
        state["source"]["dropped"]["not_jpeg"].as_u64().unwrap() > 0,
        "{state}"
    );
}
