//! Replay of recordings (`/recordings/FILE/stream`) and `snapshot?at=` from disk, against the real binary:
//! what ffmpeg reads from the replay URL is byte-identical to what ffmpeg copies out of the segment; the
//! pace follows the recorded times and `?speed=`; `?start=` gives the frame of that time; a segment being
//! written replays up to its newest frame. Needs ffmpeg (installed by scripts/setup.sh).

mod common;
#[path = "common/recordings.rs"]
mod recordings;
use common::*;
use recordings::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_str().unwrap().to_string()
}

/// Every part of a replay, until the server ends it.
fn all_parts(server: &Server, path: &str) -> Vec<Part> {
    let mut s = server.stream(path);
    assert_eq!(s.head.status, 200, "{path}");
    let mut parts = Vec::new();
    while let Ok(p) = s.next_part() {
        parts.push(p);
    }
    parts
}

/// A replay of `name` from `start` (seconds, as the query says it; `start_us` the same in µs) begins with
/// the frame showing that time: among the whole replay's `parts`, captured at or before then, the next
/// one after.
fn assert_seek_lands(server: &Server, name: &str, parts: &[Part], start: &str, start_us: u64) {
    let mut s = server.stream(&format!("/recordings/{name}/stream?start={start}&speed=16"));
    let first = s.next_part().unwrap();
    drop(s);
    let at = micros(&parts[0].headers["x-timestamp"]) + start_us;
    let k = parts.iter().position(|p| p.body == first.body).unwrap();
    assert!(
        micros(&parts[k].headers["x-timestamp"]) <= at,
        "start={start}"
    );
    assert!(
        micros(&parts[k + 1].headers["x-timestamp"]) > at,
        "start={start}"
    );
}

/// mjpegd recording the 10 fps test pattern into `dir` (one long segment), once 2 s are written.
fn recording_2s(dir: &Path) -> Server {
    let server = Server::start(&["--fps", "10", "--record", dir.to_str().unwrap()]);
    eventually(Duration::from_secs(10), "2 s recorded", || {
        (server.state()["recording"]["frames_written"]
            .as_u64()
            .unwrap()
            >= 20)
            .then_some(())
    });
    server
}

/// mjpegd recording the 10 fps test pattern into `dir` in segments of `segment`, until `n` are finished.
fn recorded(dir: &Path, segment: &str, n: usize) -> Server {
    let server = Server::start(&[
        "--fps",
        "10",
        "--record",
        dir.to_str().unwrap(),
        "--record-segment",
        segment,
    ]);
    eventually(Duration::from_secs(30), "finished segments", || {
        (segments(dir).len() > n).then_some(())
    });
    server
}

#[test]
fn a_replay_is_byte_identical_labelled_and_paced_by_the_recorded_times_and_speed() {
    let dir = TempDir::new("replay-bytes");
    let server = recorded(&dir.0, "2s", 1);
    let file = segments(&dir.0)[0].clone();
    let name = name_of(&file);
    let recorded = ffmpeg_jpegs(&[], file.to_str().unwrap());
    assert!(recorded.len() >= 15, "{}", recorded.len());

    // ffmpeg reads the replay as it reads any MJPEG stream; every frame is the recorded one, byte for byte.
    let url = format!("http://{}/recordings/{name}/stream?speed=4", server.addr);
    let replayed = ffmpeg_jpegs(&["-f", "mpjpeg"], &url);
    assert_eq!(replayed.len(), recorded.len());
    assert!(
        replayed == recorded,
        "the replayed frames differ from the recorded ones"
    );

    // Each part carries its original capture time (as live streams write it) and its number.
    let started = Instant::now();
    let parts = all_parts(&server, &format!("/recordings/{name}/stream"));
    let took = started.elapsed();
    assert_eq!(parts.len(), recorded.len());
    let times: Vec<u64> = parts
        .iter()
        .map(|p| micros(&p.headers["x-timestamp"]))
        .collect();
    for (k, p) in parts.iter().enumerate() {
        assert_eq!(p.seq(), k as u64 + 1);
        assert_eq!(p.body, recorded[k]);
    }
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    // Paced: the replay takes about the recorded span (loosely: a loaded machine may be slower, never
    // faster), and a quarter of it at speed 4.
    let span = Duration::from_micros(times.last().unwrap() - times[0]);
    assert!(took >= span.mul_f64(0.9), "{took:?} for {span:?} recorded");
    assert!(took < span * 3 + Duration::from_secs(5), "{took:?}");
    // Parts arrive spaced as recorded (within a loose tolerance, summed over the replay).
    let arrived = parts.last().unwrap().received - parts[0].received;
    assert!(arrived >= span.mul_f64(0.9), "{arrived:?} for {span:?}");
    let started = Instant::now();
    let fast = all_parts(&server, &format!("/recordings/{name}/stream?speed=4"));
    let took_fast = started.elapsed();
    assert_eq!(fast.len(), recorded.len());
    assert!(took_fast >= span.mul_f64(0.9 / 4.0), "{took_fast:?}");
    assert!(took_fast < took, "{took_fast:?} at 4x, {took:?} at 1x");
}

#[test]
fn start_seeks_to_the_frame_of_that_time_and_a_size_is_transcoded() {
    let dir = TempDir::new("replay-seek");
    let server = recorded(&dir.0, "6s", 1);
    let file = segments(&dir.0)[0].clone();
    let name = name_of(&file);
    let recorded = ffmpeg_jpegs(&[], file.to_str().unwrap());
    let first = counter(&recorded[0]);
    let all = all_parts(&server, &format!("/recordings/{name}/stream?speed=16"));
    let t0 = micros(&all[0].headers["x-timestamp"]);
    for start in [0.0, 2.5, 3.05, 4.0] {
        let mut s = server.stream(&format!("/recordings/{name}/stream?start={start}&speed=16"));
        assert_eq!(s.head.status, 200);
        let part = s.next_part().unwrap();
        let at = t0 + (start * 1e6) as u64;
        let ts = micros(&part.headers["x-timestamp"]);
        // The frame showing at that time: captured at or before it, the next one after it.
        assert!(ts <= at, "start={start}: {ts} after {at}");
        let k = all.iter().position(|p| p.body == part.body).unwrap();
        if let Some(next) = all.get(k + 1) {
            assert!(micros(&next.headers["x-timestamp"]) > at, "start={start}");
        }
        // The pattern at 10 fps: frame number first + 10 per second (give or take the one a late capture
        // moves across the time asked for).
        let expected = first + (start * 10.0) as u64;
        assert!(
            counter(&part.body).abs_diff(expected) <= 1,
            "start={start}: frame {} for {expected}",
            counter(&part.body)
        );
        // And it plays on from there, in order.
        let then = s.next_part().unwrap();
        assert_eq!(then.body, all[k + 1].body);
    }
    // A size, as on live streams: 160 wide out of 320x240, decoded by ffmpeg.
    let url = format!(
        "http://{}/recordings/{name}/stream?speed=16&start=5&width=160",
        server.addr
    );
    let small = ffmpeg_jpegs(&["-f", "mpjpeg"], &url);
    assert!(!small.is_empty() && small.len() <= 15, "{}", small.len());
    for j in &small {
        assert_eq!(size_of(j), (160, 120));
    }
    // `?fps=` caps the frames sent: 2 a second of 10 recorded, over 6 s at 4x (1.5 s): about a fifth.
    let capped = all_parts(&server, &format!("/recordings/{name}/stream?speed=4&fps=8"));
    assert!(
        capped.len() * 4 <= all.len() && capped.len() >= all.len() / 8,
        "{} of {}",
        capped.len(),
        all.len()
    );
}

#[test]
fn a_segment_being_written_replays_up_to_its_newest_frame() {
    let dir = TempDir::new("replay-writing");
    let mut server = recording_2s(&dir.0);
    let files = segments(&dir.0);
    assert_eq!(files.len(), 1);
    let name = name_of(&files[0]);
    let listed: serde_json::Value =
        serde_json::from_slice(&server.get("/recordings").body).unwrap();
    assert_eq!(listed["result"]["recordings"][0]["writing"], true);
    let written = server.state()["recording"]["frames_written"]
        .as_u64()
        .unwrap();
    // At 16x it catches up with the recorder and ends there.
    let parts = all_parts(&server, &format!("/recordings/{name}/stream?speed=16"));
    assert!(
        parts.len() as u64 >= written,
        "{} of {written}",
        parts.len()
    );
    // Seeking in it works without Cues (it scans the clusters).
    assert_seek_lands(&server, &name, &parts, "1", 1_000_000);
    assert!(server.stop().success());
    // What was replayed is what the segment holds.
    let recorded = ffmpeg_jpegs(&[], files[0].to_str().unwrap());
    for (k, p) in parts.iter().enumerate() {
        assert!(p.body == recorded[k], "frame {k}");
    }
}

#[test]
fn bad_replay_requests_get_a_reason() {
    let dir = TempDir::new("replay-bad");
    std::fs::write(dir.0.join("notes.mkv"), b"not a recording").unwrap();
    let server = recorded(&dir.0, "1s", 1);
    let name = name_of(&segments(&dir.0)[0]);
    for (query, status, reason) in [
        ("speed=0.4", 400, "speed must be from 0.5 to 16"),
        ("speed=17", 400, "speed must be from 0.5 to 16"),
        ("speed=x", 400, "speed must be a number"),
        ("start=-3", 400, "start must be"),
        ("fps=0", 400, "fps must be"),
        ("width=8", 400, "width=8 is outside 16..=320"),
        ("advance_headers=maybe", 400, "advance_headers must be"),
    ] {
        let r = server.get(&format!("/recordings/{name}/stream?{query}"));
        assert_eq!(r.status, status, "{query}");
        assert!(
            String::from_utf8_lossy(&r.body).contains(reason),
            "{query}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    for path in [
        "/recordings/notes.mkv/stream",
        "/recordings/default-20200101T000000.000Z.mkv/stream",
        "/recordings/../x.mkv/stream",
    ] {
        assert_eq!(server.get(path).status, 404, "{path}");
    }
    // A file of a recording camera's name that is not Matroska: refused with the reason.
    let fake = dir.0.join("default-20200101T000000.000Z.mkv");
    std::fs::write(&fake, b"GIF89a not matroska at all").unwrap();
    let r = server.get("/recordings/default-20200101T000000.000Z.mkv/stream");
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("not valid Matroska"));
    // A start past the end plays the last frame, then ends.
    let parts = all_parts(&server, &format!("/recordings/{name}/stream?start=3600"));
    assert_eq!(parts.len(), 1);
}

#[test]
fn snapshot_at_a_time_comes_from_the_recordings_or_is_a_404_with_a_reason() {
    let dir = TempDir::new("replay-at");
    let server = recorded(&dir.0, "2s", 2);
    let file = segments(&dir.0)[1].clone();
    let name = name_of(&file);
    let all = all_parts(&server, &format!("/recordings/{name}/stream?speed=16"));
    let t0 = micros(&all[0].headers["x-timestamp"]);
    // 1.05 s into the second segment: the frame captured at 1.0 s.
    let at_us = t0 + 1_050_000;
    let at = humantime::format_rfc3339_micros(std::time::UNIX_EPOCH + Duration::from_micros(at_us));
    let r = server.get(&format!("/snapshot?at={at}"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers["x-frame-source"], "recording");
    assert_eq!(r.headers["x-recording"], name);
    assert_eq!(r.headers["content-type"], "image/jpeg");
    let ts = micros(&r.headers["x-timestamp"]);
    assert!(ts <= at_us && at_us - ts < 100_000, "{ts} for {at_us}");
    let k = all
        .iter()
        .position(|p| p.body == r.body)
        .expect("a recorded frame");
    assert_eq!(micros(&all[k].headers["x-timestamp"]), ts);
    // With an offset, the same instant.
    let local = humantime::format_rfc3339_micros(
        std::time::UNIX_EPOCH + Duration::from_micros(at_us + 3_600_000_000),
    )
    .to_string()
    .replace('Z', "+01:00");
    let r2 = server.get(&format!("/snapshot?at={}", local.replace('+', "%2B")));
    assert_eq!(r2.status, 200, "{local}");
    assert_eq!(r2.body, r.body);
    // Relative to now: half a second ago is in the segment being written.
    let r = server.get("/snapshot?at=-500ms");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers["x-frame-source"], "recording");
    // Nothing recorded then: a 404 that says so.
    let r = server.get("/snapshot?at=2001-01-01T00:00:00Z");
    assert_eq!(r.status, 404);
    assert!(String::from_utf8_lossy(&r.body).contains("no recording of camera default covers"));
    let r = server.get("/snapshot?at=-3h");
    assert_eq!(r.status, 404);
    let r = server.get("/snapshot?at=tomorrow");
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("RFC 3339"));
}

#[test]
fn a_segment_cut_by_kill_9_replays_up_to_its_last_whole_frame() {
    let dir = TempDir::new("replay-kill");
    let mut server = recording_2s(&dir.0);
    unsafe { libc::kill(server.child.id() as i32, libc::SIGKILL) };
    let _ = server.child.wait();
    let cut = segments(&dir.0)[0].clone();
    let name = name_of(&cut);
    let recorded = ffmpeg_jpegs(&[], cut.to_str().unwrap());
    // A new server (recording on into a new segment) replays the cut one: every whole frame, as ffmpeg
    // reads them, and seeks in it by scanning (it has no Cues).
    let server = Server::start(&["--fps", "10", "--record", dir.0.to_str().unwrap()]);
    let parts = all_parts(&server, &format!("/recordings/{name}/stream?speed=16"));
    assert!(parts.len() >= 20, "{}", parts.len());
    assert_eq!(parts.len(), recorded.len());
    for (p, r) in parts.iter().zip(&recorded) {
        assert!(p.body == *r);
    }
    assert_seek_lands(&server, &name, &parts, "1.5", 1_500_000);
}

#[test]
fn a_running_replay_is_listed_in_state_and_counted_in_metrics() {
    let dir = TempDir::new("replay-visible");
    let server = recorded(&dir.0, "3s", 1);
    let name = name_of(&segments(&dir.0)[0]);
    // Nothing replays yet: the series exist at 0.
    assert_eq!(
        server.metric("mjpegd_replays{camera=\"default\"}"),
        Some(0.0)
    );
    assert_eq!(server.state()["replays"]["running"], 0);
    let mut s = server.stream(&format!("/recordings/{name}/stream?rate=2"));
    assert_eq!(s.head.status, 200);
    for _ in 0..2 {
        s.next_part().unwrap();
    }
    let state = server.state();
    let r = &state["replays"];
    assert_eq!(r["running"], 1, "{r}");
    let entry = &r["list"][0];
    assert_eq!(entry["kind"], "replay", "{r}");
    assert_eq!(entry["file"], name.as_str(), "{r}");
    assert_eq!(entry["rate"], 2.0, "{r}");
    assert!(entry["speed"].is_null(), "{r}");
    assert!(entry["frames_sent"].as_u64().unwrap() >= 2, "{r}");
    assert!(
        entry["address"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{r}"
    );
    assert_eq!(state["cameras"][0]["replays"], 1, "{state}");
    assert_eq!(
        server.metric("mjpegd_replays{camera=\"default\"}"),
        Some(1.0)
    );
    assert_eq!(
        server.metric("mjpegd_replays_started_total{camera=\"default\"}"),
        Some(1.0)
    );
    assert!(
        server
            .metric("mjpegd_replay_frames_total{camera=\"default\"}")
            .unwrap()
            >= 2.0
    );
    assert!(
        server
            .metric("mjpegd_replay_sent_bytes_total{camera=\"default\"}")
            .unwrap()
            > 1000.0
    );
    // The viewer leaves: the replay is unlisted (once the server notices), the totals stay.
    drop(s);
    eventually(Duration::from_secs(20), "the replay unlisted", || {
        (server.state()["replays"]["running"] == 0).then_some(())
    });
    assert_eq!(
        server.metric("mjpegd_replays{camera=\"default\"}"),
        Some(0.0)
    );
    let state = server.state();
    assert_eq!(state["replays"]["started"], 1);
    assert!(state["replays"]["frames_sent"].as_u64().unwrap() >= 2);
    assert_eq!(state["replays"]["list"].as_array().unwrap().len(), 0);
}
