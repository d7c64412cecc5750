//! Size and quality variants, and fresh snapshots, end to end: the real binary over real TCP, picture sizes
//! read from the JPEG headers.

mod common;

use common::*;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

/// `path` with `query` appended (`?` or `&`).
fn with(path: &str, query: &str) -> String {
    format!(
        "{path}{}{query}",
        if path.contains('?') { '&' } else { '?' }
    )
}

/// The size of the first frame of a stream.
fn stream_size(server: &Server, path: &str) -> (usize, usize) {
    let mut s = server.stream(path);
    assert_eq!(s.head.status, 200, "{path}");
    let part = s.next_part().unwrap_or_else(|e| panic!("{path}: {e}"));
    size_of(&part.body)
}

fn snapshot_size(server: &Server, path: &str) -> (usize, usize) {
    let r = server.get(path);
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.headers["content-type"], "image/jpeg");
    size_of(&r.body)
}

fn seconds(ts: &str) -> f64 {
    ts.parse().expect("X-Timestamp is seconds")
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A JPEG of `width` x `height`: smooth gradients, or noise (expensive to decode and encode).
fn make_jpeg(width: usize, height: usize, noise: bool, quality: i32) -> Vec<u8> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let pixels: Vec<u8> = (0..width * height * 3)
        .map(|i| {
            if noise {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            } else {
                ((i / 3 % width) * 255 / width) as u8
            }
        })
        .collect();
    let image = turbojpeg::Image {
        pixels: &pixels[..],
        width,
        pitch: width * 3,
        height,
        format: turbojpeg::PixelFormat::RGB,
    };
    turbojpeg::compress(image, quality, turbojpeg::Subsamp::Sub2x2)
        .unwrap()
        .to_vec()
}

#[test]
fn every_stream_and_snapshot_url_honours_width_height_and_quality() {
    let dir = TempDir::new("variants-routes");
    let conf = dir.0.join("cams.toml");
    std::fs::write(
        &conf,
        "[cameras.a]\nresolution = \"640x480\"\nfps = 10\n[cameras.b]\nresolution = \"320x240\"\nfps = 10\n",
    )
    .unwrap();
    let server = Server::start(&["--config", conf.to_str().unwrap(), "--max-variants", "8"]);
    let first = [
        "/stream",
        "/mjpeg/1",
        "/?action=stream",
        "/?action=stream_0",
        "/webcam/?action=stream",
        "/cams/a/stream",
    ];
    let first_snapshots = [
        "/snapshot",
        "/jpg",
        "/?action=snapshot",
        "/?action=snapshot_0",
        "/webcam/?action=snapshot",
        "/cams/a/snapshot",
        "/cams/a/jpg",
    ];
    let second = [
        "/?action=stream_1",
        "/webcam2/?action=stream",
        "/cams/b/stream",
    ];
    let second_snapshots = [
        "/?action=snapshot_1",
        "/webcam2/?action=snapshot",
        "/cams/b/snapshot",
    ];
    // The originals first, so the source sizes are known.
    assert_eq!(stream_size(&server, "/stream"), (640, 480));
    assert_eq!(snapshot_size(&server, "/cams/b/snapshot"), (320, 240));
    for path in first {
        assert_eq!(
            stream_size(&server, &with(path, "width=320")),
            (320, 240),
            "{path}"
        );
    }
    for path in first_snapshots {
        assert_eq!(
            snapshot_size(&server, &with(path, "width=320")),
            (320, 240),
            "{path}"
        );
    }
    for path in second {
        assert_eq!(
            stream_size(&server, &with(path, "height=120")),
            (160, 120),
            "{path}"
        );
    }
    for path in second_snapshots {
        assert_eq!(
            snapshot_size(&server, &with(path, "height=120")),
            (160, 120),
            "{path}"
        );
    }
    // Both: the picture fits inside the box, keeping its shape, in even sizes.
    assert_eq!(
        stream_size(&server, "/stream?width=320&height=100"),
        (134, 100)
    );
    assert_eq!(
        snapshot_size(&server, "/snapshot?width=600&height=460"),
        (600, 450)
    );
    assert_eq!(snapshot_size(&server, "/snapshot?width=321"), (320, 240));
    // The source's own width is the original, untouched.
    assert_eq!(snapshot_size(&server, "/snapshot?width=640"), (640, 480));
    // Quality alone keeps the size and changes the bytes.
    let low = server.get("/snapshot?quality=5");
    let high = server.get("/snapshot?quality=95");
    assert_eq!(
        (size_of(&low.body), size_of(&high.body)),
        ((640, 480), (640, 480))
    );
    assert!(
        low.body.len() * 3 < high.body.len(),
        "quality 5: {} bytes, quality 95: {} bytes",
        low.body.len(),
        high.body.len()
    );
    // A stream shaped entirely in its URL: size, quality and rate.
    let mut s = server.stream("/stream?width=320&fps=5&quality=50");
    let started = Instant::now();
    for _ in 0..6 {
        let part = s.next_part().unwrap();
        assert_eq!(size_of(&part.body), (320, 240));
    }
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "6 frames at fps=5 came in {:?}",
        started.elapsed()
    );
    // HEAD answers the stream's head without starting a variant.
    let head = request(
        server.addr,
        "HEAD /stream?width=200 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(head.status, 200);
}

#[test]
fn out_of_range_and_malformed_values_get_a_400_with_a_one_line_reason() {
    let server = Server::start(&["--resolution", "320x240", "--fps", "10"]);
    assert_eq!(server.get("/snapshot").status, 200);
    let cases = [
        ("width=0", "width"),
        ("width=-5", "width"),
        ("width=abc", "width"),
        ("width=1.5", "width"),
        ("width=321", "320x240"),
        ("height=241", "320x240"),
        ("height=8", "16"),
        ("width=99999999999", "width"),
        ("quality=0", "quality"),
        ("quality=101", "quality"),
        ("quality=-1", "quality"),
        ("quality=best", "quality"),
    ];
    for base in [
        "/stream",
        "/snapshot",
        "/?action=stream",
        "/jpg",
        "/cams/default/stream",
    ] {
        for (query, why) in cases {
            let path = with(base, query);
            let r = server.get(&path);
            let body = String::from_utf8_lossy(&r.body);
            assert_eq!(r.status, 400, "{path}: {body}");
            assert!(body.contains(why), "{path}: {body}");
            assert_eq!(body.trim_end().lines().count(), 1, "{path}: {body}");
        }
    }
    for query in [
        "max_delay=-1",
        "max_delay=soon",
        "max_delay=3600001",
        "max_delay=1e3",
    ] {
        let r = server.get(&with("/snapshot", query));
        let body = String::from_utf8_lossy(&r.body);
        assert_eq!(r.status, 400, "{query}: {body}");
        assert!(body.contains("max_delay"), "{query}: {body}");
    }
    // Nothing was started by the refused requests.
    assert_eq!(server.state()["variants"].as_array().unwrap().len(), 0);
}

#[test]
fn past_max_variants_a_new_one_gets_503_and_a_variant_stops_with_its_last_client() {
    let server = Server::start(&[
        "--resolution",
        "320x240",
        "--fps",
        "10",
        "--max-variants",
        "2",
    ]);
    let mut a = server.stream("/stream?width=160");
    let mut b = server.stream("/stream?width=80&quality=40");
    a.next_part().unwrap();
    b.next_part().unwrap();
    let r = server.get("/stream?width=200");
    let body = String::from_utf8_lossy(&r.body);
    assert_eq!(r.status, 503, "{body}");
    assert!(
        body.contains("--max-variants") && body.contains("160x120 q80"),
        "{body}"
    );
    assert_eq!(body.trim_end().lines().count(), 1, "{body}");
    assert_eq!(server.state()["rejected"]["max_variants"], 1);
    let metrics = String::from_utf8(server.get("/metrics").body).unwrap();
    assert!(
        metrics.contains("mjpegd_rejections_total{cause=\"max_variants\"} 1\n"),
        "{metrics}"
    );
    // Clients of a running variant still get in, and so do the original and one-off snapshots.
    let mut a2 = server.stream("/?action=stream&width=160&height=120");
    assert_eq!(size_of(&a2.next_part().unwrap().body), (160, 120));
    assert_eq!(stream_size(&server, "/stream"), (320, 240));
    assert_eq!(snapshot_size(&server, "/snapshot?width=200"), (200, 150));
    let state = server.state();
    let variants = state["variants"].as_array().unwrap();
    let by_width: HashMap<u64, &serde_json::Value> = variants
        .iter()
        .map(|v| (v["width"].as_u64().unwrap(), v))
        .collect();
    assert_eq!(by_width.len(), 2, "{variants:?}");
    assert_eq!(by_width[&160]["clients"], 2);
    assert_eq!(by_width[&80]["clients"], 1);
    assert_eq!(by_width[&80]["quality"], 40);
    // The camera has one reader per variant, not one per client.
    let transcoders = state["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["user_agent"]
                .as_str()
                .unwrap()
                .starts_with("mjpegd transcoder")
        })
        .count();
    assert_eq!(transcoders, 2);
    // The 80-wide variant stops once its client leaves, and its place is free.
    drop(b);
    eventually(Duration::from_secs(5), "the variant to stop", || {
        (server.state()["variants"].as_array().unwrap().len() == 1).then_some(())
    });
    assert_eq!(stream_size(&server, "/stream?width=200"), (200, 150));
    drop((a, a2));
    eventually(Duration::from_secs(5), "every variant to stop", || {
        server.state()["variants"]
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    });
}

#[test]
fn variant_frames_keep_the_original_numbers_and_capture_times_and_state_shows_their_cost() {
    let server = Server::start(&["--resolution", "640x480", "--fps", "15"]);
    let mut original = server.stream("/stream?delivery=all");
    let mut small = server.stream("/stream?width=160&delivery=all");
    let mut originals = HashMap::new();
    let mut variant = Vec::new();
    for _ in 0..20 {
        let p = small.next_part().unwrap();
        assert_eq!(size_of(&p.body), (160, 120));
        variant.push((p.seq(), p.headers["x-timestamp"].clone()));
    }
    for _ in 0..200 {
        let p = original.next_part().unwrap();
        originals.insert(p.seq(), p.headers["x-timestamp"].clone());
        if originals.contains_key(&variant.last().unwrap().0) {
            break;
        }
    }
    let mut matched = 0;
    for (seq, ts) in &variant {
        if let Some(o) = originals.get(seq) {
            assert_eq!(
                o, ts,
                "frame {seq}: the variant's X-Timestamp is the original's"
            );
            matched += 1;
        }
    }
    assert!(
        matched >= 15,
        "{matched} of 20 variant frames found among the original's"
    );
    assert!(variant.windows(2).all(|w| w[0].0 < w[1].0), "numbers go up");
    let state = server.state();
    let v = &state["variants"][0];
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(160), Some(120))
    );
    assert_eq!(v["clients"], 1);
    assert_eq!(v["clients_list"][0]["delivery"], "all");
    assert!(v["fps"].as_f64().unwrap() > 5.0, "{v}");
    assert!(v["frames"].as_u64().unwrap() >= 20, "{v}");
    assert!(v["transcode_ms"]["average"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(state["max_variants"], 4);
    // /metrics has the variant's series while it runs.
    let metrics = String::from_utf8(server.get("/metrics").body).unwrap();
    let sample = |name: &str| -> f64 {
        let prefix = format!("{name}{{camera=\"default\",variant=\"160x120q80\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in:\n{metrics}"))
            .parse()
            .unwrap()
    };
    assert_eq!(sample("mjpegd_variant_clients"), 1.0);
    assert!(sample("mjpegd_variant_frames_total") >= 20.0);
    assert!(sample("mjpegd_variant_transcode_seconds") > 0.0);
}

#[test]
fn a_slow_variant_skips_frames_and_never_slows_the_original() {
    // Frames of noise at 2560x1440: cheap to pass through, slow to decode, resize and encode.
    let dir = TempDir::new("variants-slow");
    for i in 0..3 {
        std::fs::write(
            dir.0.join(format!("{i}.jpg")),
            make_jpeg(2560, 1440, true, 95),
        )
        .unwrap();
    }
    let source = format!("files:{}", dir.0.display());
    let server = Server::start(&[
        "--source",
        &source,
        "--resolution",
        "2560x1440",
        "--fps",
        "30",
        "--capture",
        "always",
    ]);
    let all = server.stream("/stream?delivery=all");
    let latest = server.stream("/stream");
    // No DCT scale reaches 2540 wide: a full decode, a resize and an encode of 3.7 Mpx of noise per frame.
    let mut slow = server.stream("/stream?width=2540");
    assert_eq!(size_of(&slow.next_part().unwrap().body).0, 2540);
    let published = || server.state()["hub"]["frames_published"].as_u64().unwrap();
    let start = published();
    let until = Instant::now() + Duration::from_secs(3);
    // Each client reads on its own thread, as fast as it can, until the window closes.
    let read = |mut s: Stream| {
        std::thread::spawn(move || {
            let mut seqs = Vec::new();
            while Instant::now() < until {
                seqs.push(s.next_part().unwrap().seq());
            }
            seqs
        })
    };
    let (all, latest, slow) = (read(all), read(latest), read(slow));
    let (all_seqs, latest_seqs, variant_seqs) = (
        all.join().unwrap(),
        latest.join().unwrap(),
        slow.join().unwrap(),
    );
    let (latest_frames, variant_frames) = (latest_seqs.len() as u64, variant_seqs.len() as u64);
    let end = published();
    let window = end - start;
    let state = server.state();
    let v = &state["variants"][0];
    eprintln!(
        "{window} frames published in 3 s: all {}, latest {latest_frames}, variant {variant_frames} (skipped {}, transcode {} ms)",
        all_seqs.len(),
        v["frames_skipped"],
        v["transcode_ms"]["average"]
    );
    assert!(
        v["frames_skipped"].as_u64().unwrap() > 0,
        "the variant was slower than the source: {v}"
    );
    // The original's `all` client got every frame, in order; its `latest` client kept the source's pace.
    assert!(
        all_seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "gap in {all_seqs:?}"
    );
    assert!(
        all_seqs.len() as u64 + 3 >= window,
        "{} of {window}",
        all_seqs.len()
    );
    assert!(
        latest_frames * 10 >= window * 7,
        "latest got {latest_frames} of {window} frames (the variant {variant_frames})"
    );
    assert!(
        variant_frames < latest_frames,
        "{variant_frames} vs {latest_frames}"
    );
    assert_eq!(state["evictions"]["buffer_full"], 0);
}

#[test]
fn max_delay_returns_a_frame_captured_after_the_request_or_503_in_time() {
    let server = Server::start(&[
        "--resolution",
        "320x240",
        "--fps",
        "2",
        "--capture",
        "always",
    ]);
    assert_eq!(server.get("/snapshot").status, 200);
    for path in [
        "/snapshot?max_delay=0",
        "/jpg?max_delay=0&width=160",
        "/?action=snapshot&max_delay=0",
    ] {
        let asked = unix_now();
        let r = server.get(path);
        assert_eq!(r.status, 200, "{path}");
        let ts = seconds(&r.headers["x-timestamp"]);
        assert!(
            ts >= asked,
            "{path}: captured {:.3} s before the request",
            asked - ts
        );
        assert!(ts - asked < 1.5, "{path}: the next frame, not a later one");
    }
    assert_eq!(
        snapshot_size(&server, "/snapshot?max_delay=0&width=160"),
        (160, 120)
    );
    // A delay the newest frame meets is answered with it at once.
    let asked = unix_now();
    let r = server.get("/snapshot?max_delay=2000");
    assert_eq!(r.status, 200);
    assert!(seconds(&r.headers["x-timestamp"]) >= asked - 2.0);

    // A source that sent one frame and went silent: max_delay=0 gets a 503 after --snapshot-timeout.
    let dir = TempDir::new("variants-silent");
    let frame = dir.0.join("one.jpg");
    std::fs::write(&frame, make_jpeg(320, 240, false, 80)).unwrap();
    let source = format!("exec:cat {}; exec sleep 30", frame.display());
    let silent = Server::start(&[
        "--source",
        &source,
        "--snapshot-timeout",
        "500ms",
        "--no-signal-after",
        "30s",
        "--capture",
        "always",
    ]);
    let r = eventually(Duration::from_secs(10), "the one frame", || {
        let r = silent.get("/snapshot");
        (r.status == 200).then_some(r)
    });
    assert_whole_jpeg(&r.body);
    let started = Instant::now();
    let r = silent.get("/snapshot?max_delay=0");
    let body = String::from_utf8_lossy(&r.body);
    assert_eq!(r.status, 503, "{body}");
    assert!(body.contains("max_delay=0"), "{body}");
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert!(started.elapsed() < Duration::from_secs(5));
    // Without max_delay the frame it has is the snapshot, as before.
    assert_eq!(silent.get("/snapshot").status, 200);
    assert_eq!(silent.get("/snapshot?max_delay=60000").status, 200);
}

#[test]
fn a_snapshot_of_an_idle_on_demand_camera_lets_the_warmup_frames_go_by() {
    let server = Server::start(&[
        "--resolution",
        "320x240",
        "--fps",
        "20",
        "--warmup-frames",
        "5",
        "--linger",
        "200ms",
    ]);
    assert_eq!(server.state()["source"]["state"], "idle");
    let r = server.get("/snapshot");
    assert_eq!(r.status, 200);
    let seq: u64 = r.headers["x-frame-sequence"].parse().unwrap();
    assert!(
        seq >= 5,
        "the first frame after 5 warm-up frames, got {seq}"
    );
    // Once the camera closed again, the next snapshot warms up again, from the new run's first frame.
    let published = eventually(Duration::from_secs(5), "the camera to close", || {
        let s = server.state();
        (s["source"]["state"] == "idle").then(|| s["hub"]["frames_published"].as_u64().unwrap())
    });
    let r = server.get("/snapshot?width=160");
    assert_eq!(r.status, 200);
    assert_eq!(size_of(&r.body), (160, 120));
    let seq: u64 = r.headers["x-frame-sequence"].parse().unwrap();
    assert!(seq >= published + 5, "{seq} after {published} published");

    // Without warm-up frames, the first frame of the run is the snapshot.
    let cold = Server::start(&["--resolution", "320x240", "--fps", "20"]);
    let r = cold.get("/snapshot");
    assert_eq!(r.headers["x-frame-sequence"], "0");
}

/// Reads `s` on a thread until `until`; the receipt times of its parts and their sizes.
fn read_until(
    mut s: Stream,
    until: Instant,
) -> std::thread::JoinHandle<Vec<(Instant, (usize, usize))>> {
    std::thread::spawn(move || {
        s.set_timeout(Duration::from_secs(15));
        let mut parts = Vec::new();
        while Instant::now() < until {
            match s.next_part() {
                Ok(p) => parts.push((p.received, size_of(&p.body))),
                Err(_) => break,
            }
        }
        parts
    })
}

/// The longest time between two receipts, from `from` to `to` included.
fn longest_silence(receipts: &[Instant], from: Instant, to: Instant) -> Duration {
    let mut times = vec![from];
    times.extend(receipts.iter().copied().filter(|&t| t > from && t < to));
    times.push(to);
    times.windows(2).map(|w| w[1] - w[0]).max().unwrap()
}

/// Frames of noise (a full decode, resize and encode at a size no DCT scale reaches costs tens of ms at
/// 1280x720), three of them, as a `files:` camera's folder.
fn noisy_folder(dir: &TempDir, name: &str, width: usize, height: usize, quality: i32) -> String {
    let folder = dir.0.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    for i in 0..3 {
        // The same picture three times (the noise is seeded): the source's frames differ by their numbers.
        let jpeg = make_jpeg(width, height, true, quality);
        std::fs::write(folder.join(format!("{i}.jpg")), jpeg).unwrap();
    }
    folder.display().to_string()
}

#[test]
fn a_crowd_of_sized_snapshots_does_not_starve_a_variant_and_the_excess_gets_503_at_once() {
    let dir = TempDir::new("variants-snapshot-crowd");
    let source = format!("files:{}", noisy_folder(&dir, "cam", 1280, 720, 90));
    let server = Server::start(&[
        "--source",
        &source,
        "--resolution",
        "1280x720",
        "--fps",
        "15",
        "--capture",
        "always",
        // Long enough that, served first come first served, the crowd's wait is the variant's silence.
        "--snapshot-timeout",
        "5s",
        "--max-connections",
        "500",
        "--max-connections-per-address",
        "500",
    ]);
    let mut stream = server.stream("/stream?width=320");
    assert_eq!(stream.head.status, 200);
    assert_eq!(size_of(&stream.next_part().unwrap().body), (320, 180));
    let started = Instant::now();
    let reader = read_until(stream, started + Duration::from_secs(60));
    // Two waves of 100 snapshots at distinct sizes (no DCT scale reaches them: each is a full decode,
    // resize and encode of 0.9 Mpx of noise), all at once.
    let mut answers = Vec::new();
    let published = || server.state()["hub"]["frames_published"].as_u64().unwrap() as usize;
    let published_before = published();
    let mut flood = (started, started);
    for wave in 0..2 {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(100));
        let addr = server.addr;
        let threads: Vec<_> = (0..100)
            .map(|i| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let width = 660 + wave * 200 + i * 2;
                    barrier.wait();
                    let asked = Instant::now();
                    let r = request(
                        addr,
                        &format!("GET /snapshot?width={width} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
                    );
                    (r, asked.elapsed())
                })
            })
            .collect();
        if wave == 0 {
            flood.0 = Instant::now();
        }
        answers.extend(threads.into_iter().map(|t| t.join().unwrap()));
        flood.1 = Instant::now();
    }
    let published_during = published() - published_before;
    // The stream's reader stops at its next frame after the flood (if the stream still runs).
    let stop = Instant::now();
    let parts = {
        // Let the reader see a frame or two more, then stop it by dropping the server's side: the window is
        // cut at `flood.1` below anyway.
        std::thread::sleep(Duration::from_millis(500));
        drop(server);
        reader.join().unwrap()
    };
    let receipts: Vec<Instant> = parts.iter().map(|p| p.0).collect();
    assert!(parts.iter().all(|p| p.1 == (320, 180)));
    let window = flood.1 - flood.0;
    let during = receipts
        .iter()
        .filter(|&&t| t > flood.0 && t < flood.1)
        .count();
    let silence = longest_silence(&receipts, flood.0, flood.1.min(stop));
    let ok = answers.iter().filter(|(r, _)| r.status == 200).count();
    let refused: Vec<&(Response, Duration)> = answers
        .iter()
        .filter(|(r, _)| {
            r.status == 503 && String::from_utf8_lossy(&r.body).contains("too many snapshots")
        })
        .collect();
    let slowest_refusal = refused.iter().map(|(_, took)| *took).max();
    eprintln!(
        "flood of {:?}: the camera published {published_during} frames, the ?width=320 stream got {during} ({:.1} fps), longest silence {silence:?}; snapshots: {ok} answered, {} refused at once (slowest {slowest_refusal:?}), {} other",
        window,
        during as f64 / window.as_secs_f64(),
        refused.len(),
        answers.len() - ok - refused.len()
    );
    // Served first come, first served, the variant waits behind the whole crowd for each frame: one
    // frame in a wave (main: 1 frame of 33 published, 200 snapshots answered, 1.0-1.2 s silences on a
    // quiet machine; 0.1 fps and 5 s silences on a loaded one). Sharing the camera's turns with the
    // snapshots, it transcodes about as often as they do, or every frame its camera makes if fewer.
    let fair = ok.min(published_during);
    assert!(
        (during + 1) * 10 >= fair * 3,
        "the variant got {during} frames while {ok} snapshots were transcoded and the camera published {published_during}"
    );
    assert!(
        silence < Duration::from_millis(2500),
        "the variant went silent for {silence:?} during the flood"
    );
    assert!(
        during as f64 >= window.as_secs_f64(),
        "{during} frames in {window:?}"
    );
    assert!(ok >= 2, "some snapshots are transcoded: {ok}");
    assert!(
        refused.len() >= 100,
        "the excess is refused: {} of 200",
        refused.len()
    );
    for (r, took) in &refused {
        assert_eq!(r.headers.get("retry-after").map(String::as_str), Some("1"));
        assert!(
            *took < Duration::from_millis(1500),
            "a refusal took {took:?}"
        );
    }
    for (r, _) in &answers {
        if r.status == 200 {
            assert_whole_jpeg(&r.body);
        }
    }
}

#[test]
fn a_camera_with_heavy_variants_does_not_take_another_cameras_variant_down() {
    let dir = TempDir::new("variants-fair-cameras");
    let heavy = noisy_folder(&dir, "heavy", 2560, 1440, 90);
    let light = noisy_folder(&dir, "light", 320, 240, 75);
    let conf = dir.0.join("cams.toml");
    std::fs::write(
        &conf,
        format!(
            "[cameras.heavy]\nsource = \"files:{heavy}\"\nresolution = \"2560x1440\"\nfps = 10\ncapture = \"always\"\n\n\
             [cameras.light]\nsource = \"files:{light}\"\nresolution = \"320x240\"\nfps = 30\ncapture = \"always\"\n"
        ),
    )
    .unwrap();
    let server = Server::start(&["--config", conf.to_str().unwrap()]);
    // Four variants of the heavy camera at sizes no DCT scale reaches (a full decode of 3.7 Mpx of noise,
    // a resize and an encode each: together more than the slot can do), and one small variant of the light camera.
    let mut heavies = Vec::new();
    for width in [2540, 2400, 2200, 2000] {
        let mut s = server.stream(&format!("/cams/heavy/stream?width={width}"));
        assert_eq!(s.head.status, 200, "{width}");
        s.set_timeout(Duration::from_secs(15));
        assert_eq!(size_of(&s.next_part().unwrap().body).0, width as usize);
        heavies.push(s);
    }
    let mut light = server.stream("/cams/light/stream?width=160");
    assert_eq!(size_of(&light.next_part().unwrap().body), (160, 120));
    let published = || {
        let r = server.get("/cams/light/state");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["result"]["hub"]["frames_published"].as_u64().unwrap() as usize
    };
    let window = Duration::from_secs(6);
    let until = Instant::now() + window;
    let first = published();
    let heavy_readers: Vec<_> = heavies.into_iter().map(|s| read_until(s, until)).collect();
    let light_reader = read_until(light, until);
    let heavy_frames: usize = heavy_readers
        .into_iter()
        .map(|r| r.join().unwrap().len())
        .sum();
    let light_frames = light_reader.join().unwrap().len();
    let light_published = published() - first;
    eprintln!(
        "in {window:?}: the light camera published {light_published} frames, its variant got {light_frames}; the heavy camera's 4 variants {heavy_frames} in all"
    );
    // Served first come, first served, each variant gets one turn in five, the light one as many as each
    // heavy one (a quarter of the heavy frames: main's binary gave 0.25-0.26 on a quiet machine, 0.13-0.15
    // on a loaded one). Shared by camera, the light camera gets every other turn it is waiting for: about
    // as many frames as the heavy camera's variants together (0.95 measured quiet, 0.47-0.55 on a loaded
    // machine with the debug binary), or every frame its source makes if it has fewer.
    let fair = heavy_frames.min(light_published);
    assert!(
        light_frames * 100 >= fair * 35,
        "light {light_frames} (of {light_published} published) vs heavy {heavy_frames} in all"
    );
    assert!(light_frames >= 6, "{light_frames} frames in {window:?}");
}
