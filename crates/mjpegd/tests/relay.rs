//! Relaying upstream MJPEG servers: the ESP32-CAM firmware's exact stream and its cousins' quirks, ffmpeg,
//! mjpegd itself, and an upstream that dies mid-frame and comes back.

mod common;
#[path = "common/upstream.rs"]
mod upstream;
use common::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use upstream::*;

/// Starts mjpegd relaying `url` and checks its clients get `n` parts whose JPEGs are among `expected`.
fn relays(url: &str, expected: &[Vec<u8>], n: usize) -> Server {
    let server = Server::start(&["--source", url, "--capture", "always"]);
    let mut s = server.stream("/stream");
    for _ in 0..n {
        let part = s.next_part().expect("relayed frames");
        assert!(
            expected.contains(&part.body),
            "frame bytes pass through untouched"
        );
    }
    server
}

#[test]
fn relays_the_esp32_firmware_stream_byte_for_byte() {
    let frames = make_jpegs(5, 160, 120);
    let up = Upstream::start(Style::esp32(), frames.clone(), 20);
    let server = relays(&up.url("/mjpeg/1"), &frames, 10);
    let up2 = Upstream::start(Style::esp32_new(), frames.clone(), 20);
    let server2 = relays(&up2.url("/mjpeg/1"), &frames, 10);
    // Several clients, one upstream connection each server.
    let mut a = server.stream("/stream?delivery=all");
    let mut b = server.stream("/mjpeg/1");
    a.next_part().unwrap();
    b.next_part().unwrap();
    assert_eq!(
        up.connections.load(Ordering::Relaxed),
        1,
        "one upstream connection for all clients"
    );
    drop(server2);
}

#[test]
fn relays_streams_without_content_length_with_odd_spacing_chunked_or_http10() {
    let frames = make_jpegs(4, 160, 120);
    for style in [
        Style::mjpg_streamer(true),
        Style::mjpg_streamer(false),
        Style::chunked(),
    ] {
        let up = Upstream::start(style.clone(), frames.clone(), 20);
        relays(&up.url("/?action=stream"), &frames, 6);
    }
}

#[test]
fn finds_the_real_boundary_when_the_declared_one_is_wrong() {
    let frames = make_jpegs(4, 160, 120);
    let up = Upstream::start(Style::wrong_boundary(), frames.clone(), 20);
    relays(&up.url("/video"), &frames, 6);
}

#[test]
fn an_upstream_that_dies_mid_frame_is_retried_while_clients_stay_connected() {
    let frames = make_jpegs(4, 160, 120);
    let up = Upstream::start(Style::esp32(), frames.clone(), 20);
    up.die_mid_frame.store(true, Ordering::Relaxed);
    let server = Server::start(&[
        "--source",
        &up.url("/mjpeg/1"),
        "--capture",
        "always",
        "--resolution",
        "160x120",
    ]);
    let mut s = server.stream("/stream");
    s.set_timeout(Duration::from_secs(10));
    // While it keeps dying, the client stays connected and gets frames or "no signal", never a broken part.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let part = s.next_part().expect("the client stays connected");
        assert_whole_jpeg(&part.body);
    }
    assert!(up.connections.load(Ordering::Relaxed) >= 2, "reconnected");
    let state = server.state();
    assert!(
        state["source"]["reconnects"].as_u64().unwrap() >= 1,
        "{state}"
    );
    assert!(state["source"]["last_error"].as_str().is_some());
    // Healed: real frames flow again on the same connection.
    up.die_mid_frame.store(false, Ordering::Relaxed);
    eventually(Duration::from_secs(10), "real frames again", || {
        let part = s.next_part().unwrap();
        frames.contains(&part.body).then_some(())
    });
    for _ in 0..10 {
        assert!(frames.contains(&s.next_part().unwrap().body));
    }
}

#[test]
fn a_dead_upstream_shows_no_signal_and_state_says_offline() {
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/mjpeg/1");
    let server = Server::start(&[
        "--source",
        &url,
        "--capture",
        "always",
        "--resolution",
        "320x240",
    ]);
    let mut s = server.stream("/stream");
    let part = s.next_part().expect("a 'no signal' frame");
    assert_whole_jpeg(&part.body);
    let state = server.state();
    assert_eq!(state["source"]["online"], false);
    assert_eq!(state["source"]["state"], "offline");
    assert!(state["source"]["last_error"]
        .as_str()
        .unwrap()
        .contains("connect"));
}

#[test]
fn relays_ffmpeg_serving_mpjpeg_over_http() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut ffmpeg = std::process::Command::new("ffmpeg")
        .args([
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=15",
            "-t",
            "30",
        ])
        .args([
            "-f",
            "mpjpeg",
            "-listen",
            "1",
            &format!("http://127.0.0.1:{port}/feed.mjpg"),
        ])
        .spawn()
        .expect("ffmpeg runs");
    std::thread::sleep(Duration::from_millis(700));
    let server = Server::start(&[
        "--source",
        &format!("http://127.0.0.1:{port}/feed.mjpg"),
        "--capture",
        "always",
    ]);
    let mut s = server.stream("/stream");
    let mut decoded = 0;
    for _ in 0..10 {
        let part = s.next_part().unwrap();
        let header = turbojpeg::read_header(&part.body).expect("a JPEG");
        if (header.width, header.height) == (320, 240) {
            decoded += 1;
        }
    }
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    assert!(
        decoded >= 8,
        "ffmpeg's frames came through ({decoded} of 10)"
    );
}

#[test]
fn an_edge_mjpegd_relays_an_origin_mjpegd() {
    let origin = Server::start(&["--capture", "always", "--fps", "20"]);
    let edge = Server::start(&[
        "--source",
        &format!("http://{}/stream?delivery=all", origin.addr),
        "--capture",
        "always",
    ]);
    let mut s = edge.stream("/stream?delivery=all");
    let mut last = None;
    for _ in 0..20 {
        let part = s.next_part().unwrap();
        let grey = turbojpeg::decompress(&part.body, turbojpeg::PixelFormat::GRAY).unwrap();
        let n = mjpegd::source::pattern::read_barcode(&grey.pixels, grey.width, grey.height);
        if let Some(last) = last {
            assert_eq!(
                n,
                last + 1,
                "the edge's 'all' client sees every origin frame in order"
            );
        }
        last = Some(n);
    }
}

#[test]
fn a_garbage_upstream_is_dropped_and_retried_without_growing() {
    let style = Style {
        head: "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=b\r\n\r\n"
            .into(),
        preamble: "--b\r\n".into(),
        // A header line that never ends.
        part_head: format!("X-Junk: {}", "a".repeat(64 * 1024)),
        part_tail: String::new(),
        chunked: false,
    };
    let up = Upstream::start(style, vec![vec![0u8; 10]], 50);
    let server = Server::start(&["--source", &up.url("/"), "--capture", "always"]);
    let state = eventually(
        Duration::from_secs(10),
        "the broken upstream noticed",
        || {
            let s = server.state();
            (s["source"]["reconnects"].as_u64().unwrap_or(0) >= 1
                || up.connections.load(Ordering::Relaxed) >= 2)
                .then_some(s)
        },
    );
    assert!(
        state["source"]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("broken"),
        "{state}"
    );
    assert_eq!(state["source"]["online"], false);
    // Only "no signal" frames were published: the garbage never reached a client.
    let mut s = server.stream("/stream");
    let part = s.next_part().unwrap();
    let h = turbojpeg::read_header(&part.body).expect("the 'no signal' JPEG");
    assert_eq!((h.width, h.height), (320, 240));
}

#[test]
fn an_edge_relays_an_origin_that_requires_auth_and_only_while_watched() {
    let origin = Server::start(&["--auth", "cam:pa55", "--capture", "always"]);
    // Wrong credentials: the edge says why in /state.
    let wrong = Server::start(&[
        "--source",
        &format!("http://cam:nope@{}/stream", origin.addr),
        "--capture",
        "always",
    ]);
    let state = wrong.state_when_last_error("401");
    assert_eq!(state["source"]["online"], false);
    // Right credentials in the URL, on-demand: nothing pulled until someone watches.
    let edge = Server::start(&[
        "--source",
        &format!("http://cam:pa55@{}/stream", origin.addr),
        "--capture",
        "on-demand",
        "--linger",
        "300ms",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        origin_clients(&origin),
        0,
        "no upstream connection while no one watches"
    );
    let mut s = edge.stream("/stream");
    let mut t = edge.stream("/stream?delivery=all");
    assert_whole_jpeg(&s.next_part().unwrap().body);
    assert_whole_jpeg(&t.next_part().unwrap().body);
    assert_eq!(
        origin_clients(&origin),
        1,
        "one upstream connection for both clients"
    );
    drop((s, t));
    eventually(Duration::from_secs(5), "the upstream released", || {
        (origin_clients(&origin) == 0).then_some(())
    });
}

fn origin_clients(origin: &Server) -> usize {
    let r = request(origin.addr, "GET /state HTTP/1.1\r\nHost: x\r\nAuthorization: Basic Y2FtOnBhNTU=\r\nConnection: close\r\n\r\n");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["result"]["clients"].as_array().unwrap().len()
}

/// `main` with an EXIF APP1 segment carrying `thumb`, a whole JPEG, as some IP cameras send every frame.
fn with_exif_thumbnail(main: &[u8], thumb: &[u8]) -> Vec<u8> {
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(thumb);
    let mut j = vec![0xFF, 0xD8, 0xFF, 0xE1];
    j.extend(((app1.len() + 2) as u16).to_be_bytes());
    j.extend(app1);
    j.extend_from_slice(&main[2..]);
    j
}

/// A still cut from stream bytes the way Home Assistant's MJPEG camera does without a still-image URL:
/// from the first FF D8 to the first FF D9.
fn first_soi_to_first_eoi(bytes: &[u8]) -> &[u8] {
    let end = find(bytes, &[0xFF, 0xD9]).expect("an EOI") + 2;
    let start = find(&bytes[..end], &[0xFF, 0xD8]).expect("an SOI");
    &bytes[start..end]
}

#[test]
fn drop_thumbnails_gives_clients_that_cut_at_the_first_eoi_the_whole_picture() {
    let mains = make_jpegs(3, 320, 240);
    let thumb = &make_jpegs(1, 32, 24)[0];
    let framed: Vec<Vec<u8>> = mains
        .iter()
        .map(|m| with_exif_thumbnail(m, thumb))
        .collect();
    let up = Upstream::start(Style::esp32(), framed.clone(), 20);

    // As they come, the naive cut is the thumbnail's end: a broken still.
    let plain = relays(&up.url("/mjpeg/1"), &framed, 3);
    let part = plain.stream("/stream").next_part().unwrap();
    assert!(first_soi_to_first_eoi(&part.body).len() < part.body.len());
    drop(plain);

    let server = Server::start(&[
        "--source",
        &up.url("/mjpeg/1"),
        "--capture",
        "always",
        "--drop-thumbnails",
    ]);
    let mut s = server.stream("/stream");
    for _ in 0..5 {
        let part = s.next_part().unwrap();
        assert!(
            mains.contains(&part.body),
            "the picture is kept byte for byte"
        );
        assert_eq!(first_soi_to_first_eoi(&part.body), &part.body[..]);
        assert_eq!(size_of(&part.body), (320, 240));
    }
    let snapshot = server.get("/snapshot");
    assert!(mains.contains(&snapshot.body));
    let dropped = server.state()["source"]["thumbnails_dropped"]
        .as_u64()
        .unwrap();
    assert!(dropped >= 5, "counted in /state: {dropped}");
    let metrics = String::from_utf8(server.get("/metrics").body).unwrap();
    let in_metrics: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mjpegd_thumbnails_dropped_total{camera=\"default\"} "))
        .expect("counted in /metrics")
        .parse()
        .unwrap();
    assert!(in_metrics >= dropped, "and in /metrics: {in_metrics}");
}
