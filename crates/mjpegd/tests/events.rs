//! The pre-roll, `snapshot?at=`, event clips and timelapses against the real binary, the files read back
//! by ffmpeg and ffprobe (not by mjpegd's own code). Needs ffmpeg and ffprobe (scripts/setup.sh).

mod common;
#[path = "common/recordings.rs"]
mod recordings;
use common::*;
use recordings::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

const JSON: &str = "Content-Type: application/json\r\n";

/// Sends one request with `body` and returns the status and the body.
fn call(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let r = request(
        addr,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

fn rfc3339_micros(v: &serde_json::Value) -> u64 {
    humantime::parse_rfc3339(v.as_str().unwrap())
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// What an `all` viewer was sent: capture time, sequence number and JPEG of every frame.
type Seen = Arc<Mutex<Vec<(u64, u64, Vec<u8>)>>>;

/// Watches `path` with `delivery=all` on a thread until `stop` is set.
fn all_viewer(server: &Server, path: &str) -> (Seen, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut stream = server.stream(path);
    let (s, st) = (seen.clone(), stop.clone());
    let t = std::thread::spawn(move || {
        while !st.load(Ordering::Relaxed) {
            let part = stream
                .next_part()
                .expect("the all viewer reads every frame");
            let ts = micros(&part.headers["x-timestamp"]);
            s.lock().unwrap().push((ts, part.seq(), part.body));
        }
    });
    (seen, stop, t)
}

/// POSTs the JSON `body` to `path` (an events URL) without credentials, asserts the answer's `status` and
/// returns the answer.
fn post_event(server: &Server, path: &str, body: &str, status: u16) -> serde_json::Value {
    let (got, answer) = call(server.addr, "POST", path, JSON, body);
    assert_eq!(got, status, "{answer}");
    serde_json::from_str(&answer).unwrap()
}

/// GET `path` (a snapshot URL) with `?at=` the time `at_us` (µs since the epoch) as `secs.micros`.
fn snapshot_at(server: &Server, path: &str, at_us: u64) -> Response {
    server.get(&format!(
        "{path}?at={}.{:06}",
        at_us / 1_000_000,
        at_us % 1_000_000
    ))
}

/// Waits until the camera's event is written (no event active).
fn event_done(server: &Server, camera: Option<&str>) {
    eventually(Duration::from_secs(30), "the event written", || {
        let state = match camera {
            Some(c) => {
                let r = server.get(&format!("/cams/{c}/state"));
                serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["result"].clone()
            }
            None => server.state(),
        };
        state["events"]["active"].is_null().then_some(())
    });
}

/// The frames the viewer saw captured within `start..=end`, in order.
fn seen_between(seen: &Seen, start: u64, end: u64) -> Vec<(u64, u64, Vec<u8>)> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(ts, _, _)| (start..=end).contains(ts))
        .map(|(ts, seq, j)| (*seq, *ts, j.clone()))
        .collect()
}

fn assert_same_frames(file: &Path, expected: &[(u64, u64, Vec<u8>)]) {
    let got = jpegs_of(file);
    let seqs: Vec<u64> = expected.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "frames in the file; expected seqs {seqs:?}"
    );
    for (i, ((seq, _, want), got)) in expected.iter().zip(&got).enumerate() {
        assert!(
            want == got,
            "frame {i} of the file is not frame {seq} as viewers got it"
        );
    }
    // Consecutive frames: nothing skipped.
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{seqs:?}");
    }
    // ffprobe reads their capture times: each packet's time from the first is the viewers' X-Timestamp
    // difference (Matroska keeps milliseconds).
    let times = pts(file);
    assert_eq!(times.len(), expected.len(), "{times:?}");
    let t0 = expected[0].1;
    for (t, (_, ts, _)) in times.iter().zip(expected) {
        let want = (ts - t0) as f64 / 1e6;
        assert!(
            (t - times[0] - want).abs() < 0.0015,
            "{t} vs {want}: {times:?}"
        );
    }
}

#[test]
fn the_pre_roll_serves_the_frame_at_or_before_a_time() {
    let (server, _log) = Server::start_logged(&["--fps", "10", "--pre-roll", "5s"]);
    let (seen, stop, t) = all_viewer(&server, "/stream?delivery=all");
    eventually(Duration::from_secs(10), "30 frames", || {
        (seen.lock().unwrap().len() >= 30).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    let frames = seen.lock().unwrap().clone();
    // A frame's own time, and a time between it and the next: that frame, from memory.
    let (ts, seq, jpeg) = frames[frames.len() - 10].clone();
    for at in [ts, ts + 50_000] {
        let r = snapshot_at(&server, "/snapshot", at);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.headers["x-frame-source"], "memory");
        assert_eq!(r.headers["x-frame-sequence"], seq.to_string());
        assert_eq!(micros(&r.headers["x-timestamp"]), ts);
        assert!(r.body == jpeg);
    }
    // The same as RFC 3339 (microseconds) on a camera's own URL.
    let stamp = humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_micros(ts));
    let r = server.get(&format!("/cams/default/snapshot?at={stamp}"));
    assert_eq!(r.headers["x-frame-sequence"], seq.to_string());
    // Relative: a frame captured at least 500 ms before the request.
    let r = server.get("/snapshot?at=-500ms");
    let after = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    assert_eq!(r.status, 200);
    assert!(micros(&r.headers["x-timestamp"]) <= after - 500_000);
    // Now: the newest frame.
    let r = server.get("/snapshot?at=now");
    assert_eq!(
        (r.status, r.headers["x-frame-source"].as_str()),
        (200, "memory")
    );
    // Older than the pre-roll: nothing in memory (and no recordings), a 404 with the reason.
    let r = server.get("/snapshot?at=-1m");
    assert_eq!(r.status, 404);
    assert!(String::from_utf8_lossy(&r.body).contains("no frame at or before"));
    // Bad times and parameters that cannot go with at=: 400 with a reason.
    for (q, why) in [
        ("at=yesterday", "RFC 3339"),
        ("at=%2B5s", "RFC 3339"),
        ("at=2999-01-01T00:00:00Z", "in the future"),
        ("at=-2s&width=100", "cannot go with it"),
    ] {
        let r = server.get(&format!("/snapshot?{q}"));
        assert_eq!(r.status, 400, "{q}");
        assert!(
            String::from_utf8_lossy(&r.body).contains(why),
            "{q}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // /state says what memory holds: within the 5 s asked, nothing trimmed for memory.
    let p = &server.state()["pre_roll"];
    assert_eq!(p["keep_seconds"], 5.0, "{p}");
    assert!(p["seconds"].as_f64().unwrap() <= 5.0, "{p}");
    assert!(p["frames"].as_u64().unwrap() >= 10, "{p}");
    assert!(p["bytes"].as_u64().unwrap() > 0, "{p}");
    assert_eq!(p["trimmed_for_memory"], 0, "{p}");
    assert!(
        server
            .metric("mjpegd_pre_roll_bytes{camera=\"default\"}")
            .unwrap()
            > 0.0
    );
    assert!(
        server
            .metric("mjpegd_pre_roll_frames{camera=\"default\"}")
            .unwrap()
            >= 10.0
    );
    assert_eq!(
        server.metric("mjpegd_pre_roll_trimmed_total{camera=\"default\"}"),
        Some(0.0)
    );
}

#[test]
fn the_pre_roll_stays_within_the_byte_bound_and_counts_what_it_trimmed() {
    let server = Server::start(&[
        "--fps",
        "10",
        "--pre-roll",
        "60s",
        "--buffer-memory",
        "100KiB",
    ]);
    let p = eventually(Duration::from_secs(20), "frames trimmed for memory", || {
        let p = server.state()["pre_roll"].clone();
        (p["trimmed_for_memory"].as_u64().unwrap() > 0).then_some(p)
    });
    assert!(p["bytes"].as_u64().unwrap() <= 100 * 1024, "{p}");
    assert_eq!(p["max_bytes"], 100 * 1024, "{p}");
}

#[test]
fn an_event_holds_exactly_the_frames_from_pre_before_to_post_after_and_a_second_trigger_extends_it()
{
    let dir = TempDir::new("events-clip");
    let events = dir.0.join("events");
    let (mut server, _log) = Server::start_logged(&[
        "--fps",
        "10",
        "--pre-roll",
        "5s",
        "--events",
        events.to_str().unwrap(),
    ]);
    let (seen, stop, t) = all_viewer(&server, "/stream?delivery=all");
    eventually(Duration::from_secs(10), "3 s of frames", || {
        (seen.lock().unwrap().len() >= 30).then_some(())
    });
    let body = r#"{"label": "doorbell", "pre": "2s", "post": "1500ms"}"#;
    let first = post_event(&server, "/cams/default/events", body, 202);
    let name = first["result"]["name"].as_str().unwrap().to_string();
    assert!(
        name.starts_with("default-") && name.ends_with("-event-doorbell.mkv"),
        "{name}"
    );
    assert_eq!(first["result"]["extended"], false);
    let start = rfc3339_micros(&first["result"]["start"]);
    // A second trigger during the event: the same file, its end moved.
    let second = post_event(
        &server,
        "/cams/default/events?",
        r#"{"label": "again", "post": "2s"}"#,
        200,
    );
    assert_eq!(second["result"]["name"], name.as_str());
    assert_eq!(second["result"]["extended"], true);
    assert_eq!(second["result"]["label"], "doorbell");
    let end = rfc3339_micros(&second["result"]["end"]);
    assert!(end > rfc3339_micros(&first["result"]["end"]));
    event_done(&server, None);
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    let file = events.join(&name);
    let expected = seen_between(&seen, start, end);
    assert!(expected.len() >= 35, "{} frames", expected.len());
    assert_same_frames(&file, &expected);
    // Listed with its kind, label, times and frames; served whole.
    let list: serde_json::Value = serde_json::from_slice(&server.get("/recordings").body).unwrap();
    let item = list["result"]["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{list}"))
        .clone();
    assert_eq!(item["kind"], "event", "{item}");
    assert_eq!(item["label"], "doorbell", "{item}");
    assert_eq!(item["frames"], expected.len() as u64, "{item}");
    assert_eq!(item["writing"], false, "{item}");
    let r = server.get(&format!("/recordings/{name}"));
    assert_eq!(r.status, 200);
    assert!(r.body == std::fs::read(&file).unwrap());
    let state = server.state();
    assert_eq!(state["events"]["frames_lost"], 0, "{state}");
    let d = "{camera=\"default\"}";
    assert_eq!(server.metric(&format!("mjpegd_events_total{d}")), Some(1.0));
    assert_eq!(
        server.metric(&format!("mjpegd_event_frames_total{d}")),
        Some(expected.len() as f64)
    );
    assert_eq!(
        server.metric(&format!("mjpegd_event_frames_lost_total{d}")),
        Some(0.0)
    );
    assert!(server.stop().success());
    // The label survives a restart (it is in the file's name).
    let server = Server::start(&["--fps", "10", "--events", events.to_str().unwrap()]);
    let list: serde_json::Value =
        serde_json::from_slice(&server.get("/cams/default/recordings").body).unwrap();
    let item = &list["result"]["recordings"][0];
    assert_eq!(
        (item["kind"].as_str(), item["label"].as_str()),
        (Some("event"), Some("doorbell")),
        "{list}"
    );
}

#[test]
fn an_event_across_a_segment_boundary_of_continuous_recording_is_one_whole_file() {
    let dir = TempDir::new("events-across");
    let (events, record) = (dir.0.join("events"), dir.0.join("record"));
    let mut server = Server::start(&[
        "--fps",
        "10",
        "--pre-roll",
        "3s",
        "--events",
        events.to_str().unwrap(),
        "--record",
        record.to_str().unwrap(),
        "--record-segment",
        "1s",
    ]);
    let (seen, stop, t) = all_viewer(&server, "/stream?delivery=all");
    eventually(Duration::from_secs(10), "2 s of frames", || {
        (seen.lock().unwrap().len() >= 20).then_some(())
    });
    let v = post_event(
        &server,
        "/cams/default/events",
        r#"{"pre": "1500ms", "post": "2s"}"#,
        202,
    );
    let name = v["result"]["name"].as_str().unwrap().to_string();
    assert!(name.ends_with("-event-event.mkv"), "{name}");
    let (start, end) = (
        rfc3339_micros(&v["result"]["start"]),
        rfc3339_micros(&v["result"]["end"]),
    );
    event_done(&server, None);
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    assert!(server.stop().success());
    let expected = seen_between(&seen, start, end);
    assert_same_frames(&events.join(&name), &expected);
    // The recording holds the same frames, across at least three of its 1 s segments.
    let segments: Vec<PathBuf> = files(&record);
    let recorded: Vec<Vec<u8>> = segments.iter().flat_map(|f| jpegs_of(f)).collect();
    let holding = segments
        .iter()
        .filter(|f| {
            jpegs_of(f)
                .iter()
                .any(|j| expected.iter().any(|(_, _, e)| e == j))
        })
        .count();
    assert!(holding >= 3, "the event spans {holding} segments");
    assert!(expected.iter().all(|(_, _, e)| recorded.contains(e)));
    // The recordings list says which is which.
    assert!(files(&events).len() == 1);
}

#[test]
fn who_may_trigger_an_event_and_what_an_event_key_cannot_do() {
    let dir = TempDir::new("events-roles");
    let (event_key, push_key) = ("0123456789abcdef-event", "0123456789abcdef-push");
    let file = dir.0.join("cams.toml");
    std::fs::write(
        &file,
        format!(
            "[cameras.front]\nsource = \"pattern\"\nfps = 10\npre-roll = \"2s\"\nevents = \"{}\"\nevent-key = \"{event_key}\"\n\
             [cameras.door]\nsource = \"push\"\npush-key = \"{push_key}\"\n",
            dir.0.join("events").display()
        ),
    )
    .unwrap();
    let server = start_with_roles(&file, &dir.0, &[]);
    let trigger = |path: &str, headers: &str| {
        call(
            server.addr,
            "POST",
            path,
            &format!("{JSON}{headers}"),
            r#"{"post": "100ms", "pre": "0s"}"#,
        )
    };
    let bearer = format!("Authorization: Bearer {event_key}\r\n");
    assert_eq!(trigger("/cams/front/events", "").0, 401, "anonymous");
    assert_eq!(
        trigger("/cams/front/events", &basic_auth_header("bob:bob pw")).0,
        403,
        "a viewer"
    );
    assert_eq!(
        trigger("/cams/front/events", &basic_auth_header("bob:wrong")).0,
        401,
        "a wrong password"
    );
    assert_eq!(
        trigger("/cams/front/events?key=0123456789abcdef-wrong", "").0,
        401,
        "a wrong key"
    );
    let (status, body) = trigger(&format!("/cams/front/events?key={event_key}"), "");
    assert!(
        status == 202 || status == 200,
        "the event key: {status} {body}"
    );
    event_done_as(&server, &basic_auth_header("alice:alice pw"));
    let (status, body) = trigger("/cams/front/events", &bearer);
    assert!(
        status == 202 || status == 200,
        "the event key as a bearer: {status} {body}"
    );
    event_done_as(&server, &basic_auth_header("alice:alice pw"));
    let (status, body) = trigger("/cams/front/events", &basic_auth_header("alice:alice pw"));
    assert!(status == 202 || status == 200, "an admin: {status} {body}");
    // Another site's page cannot trigger with an admin's cached credentials.
    let (status, _) = trigger(
        "/cams/front/events",
        &format!(
            "{}Origin: http://evil.example\r\n",
            basic_auth_header("alice:alice pw")
        ),
    );
    assert_eq!(status, 403);
    // The event key does nothing else: not watch, not read state or recordings, not push, not configure.
    for path in [
        "/cams/front/stream",
        "/cams/front/snapshot",
        "/state",
        "/recordings",
        "/cams/front/",
    ] {
        let r = request(
            server.addr,
            &format!("GET {path}?key={event_key} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{bearer}\r\n"),
        );
        assert_eq!(r.status, 401, "GET {path} with the event key");
    }
    let (status, _) = call(
        server.addr,
        "POST",
        &format!("/cams/door/push?key={event_key}"),
        "Content-Type: image/jpeg\r\n",
        "x",
    );
    assert_eq!(status, 401, "pushing with the event key");
    let (status, _) = call(
        server.addr,
        "PUT",
        "/api/cameras/front",
        &format!("{JSON}{bearer}"),
        r#"{"source": "pattern"}"#,
    );
    assert_eq!(status, 401, "configuring with the event key");
    let (status, _) = call(
        server.addr,
        "POST",
        "/cams/door/events",
        &format!("{JSON}{bearer}"),
        "{}",
    );
    assert_eq!(status, 401, "another camera's events with this one's key");
    let (status, _) = call(
        server.addr,
        "POST",
        "/cams/door/events",
        &format!("{JSON}{}", basic_auth_header("alice:alice pw")),
        "{}",
    );
    assert_eq!(status, 404, "a camera without events");
}

fn event_done_as(server: &Server, auth: &str) {
    eventually(Duration::from_secs(30), "the event written", || {
        let r = request(
            server.addr,
            &format!(
                "GET /cams/front/state HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{auth}\r\n"
            ),
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["result"]["events"]["active"].is_null().then_some(())
    });
}

#[test]
fn a_timelapse_keeps_one_frame_per_interval_with_real_capture_times() {
    let dir = TempDir::new("timelapse");
    let lapse = dir.0.join("lapse");
    let mut server = Server::start(&[
        "--fps",
        "10",
        "--timelapse",
        lapse.to_str().unwrap(),
        "--timelapse-every",
        "200ms",
    ]);
    eventually(Duration::from_secs(20), "12 timelapse frames", || {
        (server.state()["timelapse"]["frames_written"]
            .as_u64()
            .unwrap()
            >= 12)
            .then_some(())
    });
    let list: serde_json::Value = serde_json::from_slice(&server.get("/recordings").body).unwrap();
    let item = &list["result"]["recordings"][0];
    assert_eq!(item["kind"], "timelapse", "{list}");
    assert_eq!(item["writing"], true, "{list}");
    assert!(
        server
            .metric("mjpegd_timelapse_frames_total{camera=\"default\"}")
            .unwrap()
            >= 12.0
    );
    assert!(server.stop().success());
    let files = files(&lapse);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_str().unwrap().ends_with("-lapse.mkv"));
    let times = pts(&files[0]);
    assert!(times.len() >= 12, "{times:?}");
    // One frame per 200 ms of capture time: each the 10 fps source's frame closest to its tick, never two for
    // one tick nor a tick without one (a step between one and three frames of the source), on a grid that
    // does not drift.
    for w in times.windows(2) {
        let step = w[1] - w[0];
        assert!(step > 0.1 && step < 0.3, "{times:?}");
    }
    let mean = (times[times.len() - 1] - times[0]) / (times.len() - 1) as f64;
    assert!((0.19..0.21).contains(&mean), "{mean} {times:?}");
    assert_eq!(jpegs_of(&files[0]).len(), times.len());
}

#[test]
fn the_retention_keys_apply_to_the_events_folder_without_continuous_recording() {
    let dir = TempDir::new("events-retention");
    let events = dir.0.join("events");
    let server = Server::start(&[
        "--fps",
        "10",
        "--events",
        events.to_str().unwrap(),
        "--record-max-size",
        "1",
    ]);
    let mut names = Vec::new();
    for label in ["first", "second"] {
        let v = post_event(
            &server,
            "/cams/default/events",
            &format!(r#"{{"label": "{label}", "post": "300ms"}}"#),
            202,
        );
        names.push(v["result"]["name"].as_str().unwrap().to_string());
        event_done(&server, None);
        assert!(
            events.join(names.last().unwrap()).exists(),
            "{label} written"
        );
    }
    // Over the size after the second event: the older one is deleted, never the one just written.
    let left: Vec<String> = files(&events)
        .iter()
        .map(|f| f.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(left, [names[1].clone()]);
}

#[test]
fn frames_an_event_cannot_write_are_counted_as_lost_not_dropped_silently() {
    let dir = TempDir::new("events-failing");
    // A folder that cannot be made: its parent is a regular file.
    std::fs::write(dir.0.join("file"), b"x").unwrap();
    let events = dir.0.join("file").join("events");
    let server = Server::start(&["--fps", "10", "--events", events.to_str().unwrap()]);
    post_event(&server, "/cams/default/events", r#"{"post": "500ms"}"#, 202);
    event_done(&server, None);
    let e = server.state()["events"].clone();
    assert!(e["frames_lost"].as_u64().unwrap() >= 3, "{e}");
    assert_eq!(e["frames_written"], 0, "{e}");
    assert!(
        e["last_error"]
            .as_str()
            .unwrap()
            .contains("Not a directory"),
        "{e}"
    );
    assert_eq!(
        server.metric("mjpegd_event_frames_lost_total{camera=\"default\"}"),
        e["frames_lost"].as_f64()
    );
}

/// mjpegd with event clips and a timelapse every 500 ms: one event (`door`, 1 s of post-roll) written, and
/// at least `lapse_frames` timelapse frames. Returns the server, the event's file and the timelapse folder.
fn an_event_and_a_timelapse(dir: &Path, lapse_frames: u64) -> (Server, PathBuf, PathBuf) {
    let (server, events, lapse) = events_and_timelapse(dir);
    let v = post_event(
        &server,
        "/cams/default/events",
        r#"{"label": "door", "post": "1s"}"#,
        202,
    );
    let event = events.join(v["result"]["name"].as_str().unwrap());
    event_done(&server, None);
    eventually(Duration::from_secs(20), "timelapse frames", || {
        (server.state()["timelapse"]["frames_written"]
            .as_u64()
            .unwrap()
            >= lapse_frames)
            .then_some(())
    });
    (server, event, lapse)
}

/// Every part of a replay, until the server ends it.
fn replayed(server: &Server, path: &str) -> Vec<Part> {
    let mut s = server.stream(path);
    assert_eq!(s.head.status, 200, "{path}");
    std::iter::from_fn(|| s.next_part().ok()).collect()
}

#[test]
fn event_clips_replay_byte_identical_and_a_timelapse_plays_at_the_rate_asked() {
    let dir = TempDir::new("events-replay");
    let (server, event, lapse) = an_event_and_a_timelapse(&dir.0, 10);
    // The event clip, through ffmpeg reading the replay as any MJPEG stream: the clip's frames, byte for
    // byte, in order, each with its capture time.
    let clip = jpegs_of(&event);
    assert!(clip.len() >= 8, "{}", clip.len());
    let name = event.file_name().unwrap().to_str().unwrap();
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "mpjpeg", "-i"])
        .arg(format!(
            "http://{}/recordings/{name}/stream?speed=4",
            server.addr
        ))
        .args(["-c", "copy", "-f", "mjpeg", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut splitter = mjpegd_core::parse::jpeg::JpegSplitter::new(16 << 20);
    splitter.push(&out.stdout);
    let through_ffmpeg: Vec<Vec<u8>> = std::iter::from_fn(|| splitter.next_frame())
        .map(|f| f.unwrap().to_vec())
        .collect();
    assert_eq!(through_ffmpeg.len(), clip.len());
    assert!(
        through_ffmpeg == clip,
        "the replayed clip differs from the file"
    );
    let parts = replayed(&server, &format!("/recordings/{name}/stream?speed=8"));
    let clip_pts = pts(&event);
    assert_eq!(parts.len(), clip.len());
    let t0 = micros(&parts[0].headers["x-timestamp"]);
    for (k, p) in parts.iter().enumerate() {
        assert!(p.body == clip[k], "part {k}");
        let rel = (micros(&p.headers["x-timestamp"]) - t0) as f64 / 1e6;
        assert!(
            (rel - (clip_pts[k] - clip_pts[0])).abs() < 0.0015,
            "{rel} {clip_pts:?}"
        );
    }

    // The timelapse (a frame every 500 ms), at 10 frames a second: every frame, byte for byte, labelled with
    // its capture time, arriving about 100 ms apart rather than 500.
    let lapse_file = files(&lapse).pop().unwrap();
    let lapse_name = lapse_file.file_name().unwrap().to_str().unwrap();
    let parts = replayed(&server, &format!("/recordings/{lapse_name}/stream?rate=10"));
    let frames = jpegs_of(&lapse_file);
    let lapse_pts = pts(&lapse_file);
    assert!(parts.len() >= 10, "{}", parts.len());
    assert!(parts.len() <= frames.len());
    let t0 = micros(&parts[0].headers["x-timestamp"]);
    for (k, p) in parts.iter().enumerate() {
        assert_eq!(p.seq(), k as u64 + 1);
        assert!(p.body == frames[k], "timelapse part {k}");
        let rel = (micros(&p.headers["x-timestamp"]) - t0) as f64 / 1e6;
        assert!(
            (rel - (lapse_pts[k] - lapse_pts[0])).abs() < 0.0015,
            "{rel} {lapse_pts:?}"
        );
    }
    let n = parts.len() as u32 - 1;
    let captured = Duration::from_micros(micros(&parts[n as usize].headers["x-timestamp"]) - t0);
    let arrived = parts[n as usize].received - parts[0].received;
    // Loosely: never faster than the rate; well under the capture spacing (the captures span 5 x longer).
    assert!(
        arrived >= Duration::from_millis(100 * n as u64).mul_f64(0.9),
        "{arrived:?} for {n} gaps"
    );
    assert!(
        arrived < captured / 2,
        "{arrived:?}, captured over {captured:?}"
    );
    // speed= and rate= together, or a rate out of range: a 400 with the reason.
    for (q, why) in [
        ("rate=10&speed=2", "not both"),
        ("rate=500", "rate must be from"),
    ] {
        let r = server.get(&format!("/recordings/{lapse_name}/stream?{q}"));
        assert_eq!(r.status, 400, "{q}");
        assert!(String::from_utf8_lossy(&r.body).contains(why), "{q}");
    }
}

#[test]
fn finished_event_clips_and_timelapse_segments_satisfy_mkvextract_and_mkvpropedit() {
    let dir = TempDir::new("events-mkvtoolnix");
    let (mut server, event, lapse) = an_event_and_a_timelapse(&dir.0, 4);
    // Stopping closes the timelapse segment.
    assert!(server.stop().success());
    let lapse_file = files(&lapse).pop().unwrap();
    let out = dir.0.join("timestamps.txt");
    for file in [&event, &lapse_file] {
        let count = jpegs_of(file).len();
        assert!(count >= 4, "{file:?}: {count}");
        // One timestamp per frame, from 0, in order.
        let (times, stamps) = mkv_timestamps(file, &out);
        assert_eq!(times.first(), Some(&0), "{stamps}");
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{stamps}");
        assert!(times.len() >= count, "{count} frames: {stamps}");
        assert_mkvpropedit_edits(file);
        // Edited, it still holds every frame, and its new title.
        assert_eq!(jpegs_of(file).len(), count, "{file:?}");
        let probe = ffprobe(file, "format_tags=title");
        assert!(probe.contains("title=x"), "{file:?}: {probe}");
    }
}

#[test]
fn snapshot_at_looks_in_the_event_clips_when_nothing_else_holds_the_time() {
    let dir = TempDir::new("events-at");
    let (server, event, _) = an_event_and_a_timelapse(&dir.0, 1);
    let name = event.file_name().unwrap().to_str().unwrap();
    let list: serde_json::Value = serde_json::from_slice(&server.get("/recordings").body).unwrap();
    let item = list["result"]["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap()
        .clone();
    let start = rfc3339_micros(&item["start"]);
    let clip = jpegs_of(&event);
    let clip_pts = pts(&event);
    // Half a second into the clip (no pre-roll, no continuous recording: memory holds only the newest
    // frame): the clip's frame showing then, as it was captured.
    let at = start + 550_000;
    let r = snapshot_at(&server, "/cams/default/snapshot", at);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers["x-frame-source"], "event");
    assert_eq!(r.headers["x-recording"], name);
    let ts = micros(&r.headers["x-timestamp"]);
    assert!(ts <= at && ts > at - 250_000, "{ts} for {at}");
    let k = clip_pts
        .iter()
        .position(|p| ((p - clip_pts[0]) * 1e6 - (ts - start) as f64).abs() < 1500.0)
        .expect("a frame of the clip at that time");
    assert!(r.body == clip[k], "frame {k} of the clip");
    // Short clips triggered since, newer and last written after that time, do not hide it.
    for _ in 0..4 {
        post_event(
            &server,
            "/cams/default/events",
            r#"{"label": "later", "post": "200ms"}"#,
            202,
        );
        event_done(&server, None);
    }
    let again = snapshot_at(&server, "/cams/default/snapshot", at);
    assert_eq!(
        again.status,
        200,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    assert_eq!(again.headers["x-recording"], name);
    assert!(again.body == r.body);
    // Before the clip: nothing holds it, a 404 that says where it looked.
    let before = start - 3_000_000;
    let r = snapshot_at(&server, "/snapshot", before);
    assert_eq!(r.status, 404);
    let why = String::from_utf8_lossy(&r.body);
    assert!(
        why.contains("no event clip of camera default covers"),
        "{why}"
    );
}
