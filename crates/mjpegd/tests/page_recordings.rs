//! A camera's recordings on its page, in headless Chromium driven by playwright
//! (tests/page_recordings.py): the timeline lists the segments, a click on it plays the replay from that
//! time and the picture shown is the frame of that time, the scrub bar seeks, each item downloads.
//! Needs Debian's `chromium` and Python's `playwright` (both installed by scripts/setup.sh).

mod common;
#[path = "common/recordings.rs"]
mod recordings;
use common::*;
use recordings::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs page_recordings.py (headless Chromium) with `args`; asserts it ends with `PAGE OK`.
fn run_page_script(args: &[String]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/page_recordings.py");
    let started = Instant::now();
    let out = Command::new("timeout")
        .arg("120")
        .arg("python3")
        .arg(&script)
        .args(args)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "page_recordings.py {args:?} ({:.1} s):\n{stdout}{stderr}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success() && stdout.contains("PAGE OK"),
        "page_recordings.py {args:?} failed"
    );
}

#[test]
fn the_timeline_and_the_scrub_bar_show_the_frame_of_the_time_asked_for() {
    let dir = TempDir::new("page-recordings");
    let server = Server::start(&[
        "--fps",
        "10",
        "--record",
        dir.0.to_str().unwrap(),
        "--record-segment",
        "6s",
    ]);
    let name = eventually(Duration::from_secs(20), "a finished segment", || {
        let v: serde_json::Value = serde_json::from_slice(&server.get("/recordings").body).ok()?;
        let list = v["result"]["recordings"].as_array()?.clone();
        (list.len() == 2).then(|| list[0]["name"].as_str().unwrap().to_string())
    });
    // The first frame's counter, from the replay itself.
    let mut s = server.stream(&format!("/recordings/{name}/stream"));
    let first = counter(&s.next_part().unwrap().body);
    drop(s);
    run_page_script(&[
        format!("http://{}/cams/default/", server.addr),
        name,
        first.to_string(),
    ]);
}

#[test]
fn events_show_their_labels_and_timelapses_play_as_a_movie() {
    let dir = TempDir::new("page-recordings-kinds");
    let (server, _, _) = events_and_timelapse(&dir.0);
    let r = request(
        server.addr,
        "POST /cams/default/events HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 38\r\n\r\n{\"label\": \"doorbell\", \"post\": \"500ms\"}",
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let event = serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["result"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let lapse_name = eventually(
        Duration::from_secs(20),
        "the event and timelapse frames",
        || {
            let state = server.state();
            if !state["events"]["active"].is_null()
                || state["timelapse"]["frames_written"].as_u64()? < 4
            {
                return None;
            }
            state["timelapse"]["segment"].as_str().map(String::from)
        },
    );
    run_page_script(&[
        "kinds".to_string(),
        format!("http://{}/cams/default/", server.addr),
        event,
        lapse_name,
    ]);
}
