//! The three delivery policies, side by side on the real server, with real TCP clients.

mod common;
use common::*;
use std::time::{Duration, Instant};

/// Frames a client receives in `window`.
fn frames_in(s: &mut Stream, window: Duration) -> Vec<Part> {
    let end = Instant::now() + window;
    let mut parts = Vec::new();
    while Instant::now() < end {
        parts.push(s.next_part().expect("stream keeps going"));
    }
    parts
}

#[test]
fn latest_a_stalled_client_does_not_slow_the_others() {
    let server = Server::start(&[
        "--fps",
        "30",
        "--capture",
        "always",
        "--resolution",
        "640x480",
    ]);
    // This one never reads after its head, with a tiny receive buffer: it is stalled at once.
    let _stalled = Stream::open(server.addr, "/stream", Some(4096));
    let mut a = server.stream("/stream");
    let mut b = server.stream("/stream?delivery=latest");
    std::thread::sleep(Duration::from_millis(500));
    frames_in(&mut a, Duration::from_millis(200));
    let got_a = frames_in(&mut a, Duration::from_secs(2));
    let got_b = frames_in(&mut b, Duration::from_secs(2));
    // 30 fps for 2 s is 60 frames; allow scheduling slack but not a stall.
    assert!(got_a.len() >= 50, "a got {} frames in 2 s", got_a.len());
    assert!(got_b.len() >= 50, "b got {} frames in 2 s", got_b.len());
}

#[test]
fn latest_a_slow_reader_skips_to_the_newest_frame_and_never_sees_the_past() {
    let server = Server::start(&[
        "--fps",
        "30",
        "--capture",
        "always",
        "--resolution",
        "640x480",
    ]);
    let mut slow = Stream::open(server.addr, "/stream", Some(16 * 1024));
    let first = slow.next_part().unwrap().seq();
    let mut seqs = vec![first];
    let mut ages = Vec::new();
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(250));
        let part = slow.next_part().unwrap();
        let ts: f64 = part.headers["x-timestamp"].parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        ages.push(now - ts);
        seqs.push(part.seq());
    }
    // Reading 4 frames a second of a 30 fps source: it must skip, and what it gets must be recent, not
    // frames queued in socket buffers since long ago.
    assert!(
        seqs.last().unwrap() - first >= 40,
        "skipped ahead: {seqs:?}"
    );
    // One frame may be in flight while the reader sleeps, so a frame can be two read periods old
    // (0.5 s); the bar (issue #5) is that a slow client never sees video older than 1 s.
    let worst = ages[2..].iter().cloned().fold(0.0, f64::max);
    assert!(worst < 1.0, "frame ages {ages:?}");
    let state = server.state();
    assert!(state["clients"][0]["frames_skipped"].as_u64().unwrap() > 0);
}

#[test]
fn fps_cap_limits_a_client_to_its_rate() {
    let server = Server::start(&["--fps", "30", "--capture", "always"]);
    let mut capped = server.stream("/stream?fps=5");
    capped.next_part().unwrap();
    let got = frames_in(&mut capped, Duration::from_secs(2));
    assert!(
        (8..=12).contains(&got.len()),
        "5 fps cap gave {} frames in 2 s",
        got.len()
    );
}

#[test]
fn all_a_slow_then_normal_reader_gets_every_frame_in_order() {
    let server = Server::start(&["--fps", "30", "--capture", "always"]);
    let mut s = server.stream("/stream?delivery=all");
    let mut seqs = Vec::new();
    // Slow for 2 s: 5 frames a second while 30 are produced.
    let slow_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < slow_until {
        seqs.push(s.next_part().unwrap().seq());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Then as fast as it can, until it has caught up with the newest frame.
    let caught_up = Instant::now() + Duration::from_secs(10);
    loop {
        let part = s.next_part().unwrap();
        seqs.push(part.seq());
        let state = server.state();
        if state["clients"][0]["frames_behind"].as_u64().unwrap() <= 1 && seqs.len() > 60 {
            break;
        }
        assert!(Instant::now() < caught_up, "caught up");
    }
    let first = seqs[0];
    let expected: Vec<u64> = (first..first + seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "every frame, in order, no gap");
}

#[test]
fn all_over_budget_the_laggard_and_only_it_is_evicted() {
    // 640x480 pattern frames are ~30-40 KB: 1 MiB holds about 30 of them (one second).
    let server = Server::start(&[
        "--fps",
        "30",
        "--capture",
        "always",
        "--resolution",
        "640x480",
        "--buffer-memory",
        "1MiB",
    ]);
    let mut laggard = Stream::open(server.addr, "/stream?delivery=all", Some(4096));
    let mut reader = server.stream("/stream?delivery=all");
    let mut seqs = Vec::new();
    let evicted = eventually(Duration::from_secs(15), "the laggard's eviction", || {
        seqs.push(reader.next_part().unwrap().seq());
        let s = server.state();
        (s["evictions"]["buffer_full"] == 1).then_some(s)
    });
    assert_eq!(
        evicted["clients"].as_array().unwrap().len(),
        1,
        "only the laggard went"
    );
    assert_eq!(evicted["clients"][0]["delivery"], "all");
    for _ in 0..30 {
        seqs.push(reader.next_part().unwrap().seq());
    }
    let expected: Vec<u64> = (seqs[0]..seqs[0] + seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "the reader kept every frame");
    // The laggard's connection is closed: draining what the kernel held ends in EOF, not a hang.
    laggard.set_timeout(Duration::from_secs(5));
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match laggard.next_part() {
            Ok(_) => assert!(Instant::now() < end, "laggard still being fed"),
            Err(e) => {
                assert_ne!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock,
                    "closed, not stalled"
                );
                break;
            }
        }
    }
}

#[test]
fn lockstep_a_stalled_client_holds_the_others_until_the_timeout() {
    let server = Server::start(&[
        "--fps",
        "30",
        "--capture",
        "always",
        "--resolution",
        "640x480",
        "--lockstep-timeout",
        "1500ms",
        "--send-buffer",
        "16KiB",
    ]);
    let mut active = server.stream("/stream?delivery=lockstep");
    active.next_part().unwrap();
    // Joins and stops reading at once; its 4 KiB receive buffer and the server's 16 KiB send buffer fill
    // within a frame or two.
    let _stalled = Stream::open(server.addr, "/stream?delivery=lockstep", Some(4096));
    let parts = frames_in(&mut active, Duration::from_secs(4));
    let gaps: Vec<Duration> = parts
        .windows(2)
        .map(|w| w[1].received - w[0].received)
        .collect();
    let longest = gaps.iter().max().copied().unwrap_or_default();
    assert!(
        longest >= Duration::from_millis(1200),
        "the others were held back: longest gap {longest:?}"
    );
    assert!(
        longest <= Duration::from_millis(2500),
        "but only until the timeout: {longest:?}"
    );
    // After the eviction the survivor is back at the source's rate.
    let after = frames_in(&mut active, Duration::from_secs(1));
    assert!(after.len() >= 24, "resumed at {} fps", after.len());
    let state = server.state();
    assert_eq!(state["evictions"]["lockstep_timeout"], 1);
    assert_eq!(state["clients"].as_array().unwrap().len(), 1);
}

#[test]
fn lockstep_clients_receive_the_same_frames() {
    let server = Server::start(&["--fps", "30", "--capture", "always"]);
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let mut s = server.stream("/stream?delivery=lockstep");
            std::thread::spawn(move || {
                (0..45)
                    .map(|_| s.next_part().unwrap().seq())
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let seqs: Vec<Vec<u64>> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    // Past the rounds that started before both had joined, both saw exactly the same frames.
    let start = seqs[0][5].max(seqs[1][5]);
    let end = seqs[0][40].min(seqs[1][40]);
    let window = |s: &Vec<u64>| {
        s.iter()
            .copied()
            .filter(|q| (start..=end).contains(q))
            .collect::<Vec<_>>()
    };
    assert!(end > start + 20);
    assert_eq!(
        window(&seqs[0]),
        window(&seqs[1]),
        "same frames, same order"
    );
}

#[test]
fn three_policies_side_by_side() {
    let server = Server::start(&["--fps", "30", "--capture", "always"]);
    let mut clients: Vec<Stream> = ["latest", "all", "lockstep"]
        .iter()
        .map(|p| server.stream(&format!("/stream?delivery={p}")))
        .collect();
    for c in &mut clients {
        assert!(!frames_in(c, Duration::from_millis(500)).is_empty());
    }
    let s = server.state();
    assert_eq!(
        s["hub"]["clients_by_delivery"],
        serde_json::json!({"latest": 1, "all": 1, "lockstep": 1})
    );
}

#[test]
fn clients_that_go_away_are_forgotten_promptly_under_every_policy() {
    let server = Server::start(&[
        "--fps",
        "30",
        "--capture",
        "always",
        "--resolution",
        "640x480",
    ]);
    for policy in ["latest", "all", "lockstep"] {
        // Read a little, leave unread bytes behind (the close becomes a reset), and go.
        let mut s = Stream::open(
            server.addr,
            &format!("/stream?delivery={policy}"),
            Some(8192),
        );
        s.next_part().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        drop(s);
        eventually(
            Duration::from_secs(3),
            "the client removed from /state",
            || {
                server.state()["clients"]
                    .as_array()
                    .unwrap()
                    .is_empty()
                    .then_some(())
            },
        );
    }
}
