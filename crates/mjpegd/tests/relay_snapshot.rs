//! Cameras that only serve a still JPEG (an ESP32's `/capture`, `snapshot.jpg`) relayed as streams: polled
//! at the camera's `fps` with one request in flight on one keep-alive connection, at the camera's own
//! pace when it is slower, and forced with `snapshot+http://` when its Content-Type does not say JPEG.

mod common;
#[path = "common/stills.rs"]
mod stills;
#[path = "common/upstream.rs"]
mod upstream;
use common::*;
use std::sync::atomic::Ordering;
use std::time::Duration;
use stills::*;
use upstream::make_jpegs;

/// mjpegd relaying `cam`'s `/capture` stills, with `args`.
fn relay_capture(cam: &StillCamera, args: &[&str]) -> Server {
    let url = cam.url("/capture");
    let mut all = vec!["--source", url.as_str()];
    all.extend_from_slice(args);
    Server::start(&all)
}

/// Requests the camera answered during `secs` seconds.
fn answered_during(cam: &StillCamera, secs: u64) -> usize {
    let before = cam.ok();
    std::thread::sleep(Duration::from_secs(secs));
    cam.ok() - before
}

#[test]
fn a_snapshot_camera_is_polled_at_its_fps_on_one_connection() {
    let frames = make_jpegs(3, 160, 120);
    let mut served = frames.clone();
    served.push(b"<html>not a picture</html>".to_vec());
    let cam = StillCamera::start(StillOptions::new(served));
    let server = relay_capture(&cam, &["--capture", "always", "--fps", "10"]);
    let mut s = server.stream("/stream?delivery=all");
    for _ in 0..12 {
        let part = s.next_part().unwrap();
        assert!(
            frames.contains(&part.body),
            "each still passes through untouched, the garbage never"
        );
    }
    // About 10 a second (20 in 2 s): not as fast as the camera can answer, not a crawl.
    let n = answered_during(&cam, 2);
    assert!((8..=40).contains(&n), "{n} polls in 2 s at fps 10");
    let c = &cam.counters;
    assert_eq!(
        c.max_in_flight.load(Ordering::SeqCst),
        1,
        "one request in flight"
    );
    assert_eq!(
        c.connections.load(Ordering::Relaxed),
        1,
        "one keep-alive connection"
    );
    let state = server.state();
    let source = &state["source"];
    assert!(
        source["description"]
            .as_str()
            .unwrap()
            .contains("stills polled"),
        "{state}"
    );
    assert!(
        source["dropped"]["not_jpeg"].as_u64().unwrap() >= 1,
        "the garbage answer was dropped and counted: {state}"
    );
    let fps = source["captured_fps"].as_f64().unwrap();
    assert!((4.0..=20.0).contains(&fps), "{state}");
    assert_eq!(source["reconnects"], 0);
}

#[test]
fn a_slower_camera_sets_the_rate_without_a_pile_up() {
    let frames = make_jpegs(2, 160, 120);
    let cam = StillCamera::start(StillOptions {
        delay: Duration::from_millis(250),
        ..StillOptions::new(frames.clone())
    });
    let server = Server::start(&[
        "--source",
        &cam.url("/snapshot.jpg"),
        "--capture",
        "always",
        "--fps",
        "30",
    ]);
    let mut s = server.stream("/stream?delivery=all");
    for _ in 0..4 {
        assert!(frames.contains(&s.next_part().unwrap().body));
    }
    // At most 4 answers a second, whatever was asked: about 8 in 2 s, not 60.
    let n = answered_during(&cam, 2);
    assert!((2..=10).contains(&n), "{n} polls in 2 s");
    let c = &cam.counters;
    assert_eq!(
        c.max_in_flight.load(Ordering::SeqCst),
        1,
        "never a second request while one is unanswered"
    );
    assert_eq!(c.connections.load(Ordering::Relaxed), 1);
    let state = server.state();
    let fps = state["source"]["captured_fps"].as_f64().unwrap();
    assert!(fps < 6.0, "the measured rate follows the camera: {state}");
    assert_eq!(state["source"]["granted_fps"], 30.0, "{state}");
    assert_eq!(state["source"]["reconnects"], 0, "slow is not failed");
}

#[test]
fn snapshot_prefix_forces_polling_and_a_camera_that_closes_each_answer_is_reconnected() {
    let frames = make_jpegs(2, 160, 120);
    let cam = StillCamera::start(StillOptions {
        content_type: "application/octet-stream",
        close_each: true,
        ..StillOptions::new(frames.clone())
    });
    let url = format!("snapshot+{}", cam.url("/cgi-bin/snapshot.cgi?channel=1"));
    let server = Server::start(&["--source", &url, "--capture", "always", "--fps", "20"]);
    let mut s = server.stream("/stream?delivery=all");
    for _ in 0..10 {
        assert!(frames.contains(&s.next_part().unwrap().body));
    }
    let c = &cam.counters;
    assert!(
        c.connections.load(Ordering::Relaxed) >= 10,
        "a new connection for each answer"
    );
    assert_eq!(c.max_in_flight.load(Ordering::SeqCst), 1);
    let state = server.state();
    assert_eq!(
        state["source"]["reconnects"], 0,
        "a closed keep-alive is no failure: {state}"
    );
    assert!(
        state["source"]["description"]
            .as_str()
            .unwrap()
            .starts_with("relay of snapshot+http://"),
        "{state}"
    );
}

#[test]
fn a_still_that_does_not_come_in_time_is_a_timeout_with_back_off() {
    let frames = make_jpegs(1, 160, 120);
    let cam = StillCamera::start(StillOptions {
        delay: Duration::from_secs(3),
        ..StillOptions::new(frames)
    });
    let server = relay_capture(&cam, &["--capture", "always", "--read-timeout", "1s"]);
    let state = server.state_when_last_error("no response within");
    assert_eq!(state["source"]["online"], false, "{state}");
    let part = server.stream("/stream").next_part().unwrap();
    assert_eq!(size_of(&part.body), (320, 240), "'no signal' meanwhile");
    assert!(
        cam.counters.connections.load(Ordering::Relaxed) <= 6,
        "backed off, not hammered"
    );
}

#[test]
fn a_camera_polled_less_than_once_a_second_is_not_taken_for_dead() {
    let frames = make_jpegs(2, 160, 120);
    let cam = StillCamera::start(StillOptions::new(frames.clone()));
    // A still every 2.5 s, with a read timeout shorter than that.
    let server = relay_capture(
        &cam,
        &[
            "--capture",
            "always",
            "--fps",
            "0.4",
            "--read-timeout",
            "1s",
            "--no-signal-after",
            "5s",
        ],
    );
    let mut s = server.stream("/stream?delivery=all");
    s.set_timeout(Duration::from_secs(10));
    for _ in 0..3 {
        assert!(frames.contains(&s.next_part().unwrap().body));
    }
    let state = server.state();
    assert_eq!(state["source"]["reconnects"], 0, "{state}");
    assert!(state["source"]["last_error"].is_null(), "{state}");
    assert_eq!(cam.counters.connections.load(Ordering::Relaxed), 1);
}

#[test]
fn on_demand_nothing_is_polled_while_no_one_watches() {
    let frames = make_jpegs(2, 160, 120);
    let cam = StillCamera::start(StillOptions::new(frames.clone()));
    let server = relay_capture(
        &cam,
        &["--capture", "on-demand", "--linger", "200ms", "--fps", "20"],
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(cam.ok(), 0, "no poll before anyone watches");
    let mut s = server.stream("/stream?delivery=all");
    for _ in 0..5 {
        assert!(frames.contains(&s.next_part().unwrap().body));
    }
    drop(s);
    eventually(Duration::from_secs(5), "the source closed", || {
        (server.state()["source"]["state"] == "idle").then_some(())
    });
    assert_eq!(answered_during(&cam, 1), 0, "no poll once no one watches");
}
