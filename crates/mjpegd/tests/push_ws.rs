//! Pushed cameras, second part, on the real binary: a WebSocket pusher that behaves like the ESP32 sketch
//! (`webSocket.sendBIN` per frame, pings, a connection dropped without a close frame, then reconnecting),
//! `push-takeover`, `push-max-fps`, the bounds (oversized messages, a flood of tiny frames, slow-loris
//! pushers on every protocol; a `push-max-fps` changed under a connected pusher), what `/state` and
//! `/metrics` say of it all, and pushing over HTTPS (a WebSocket, curl, and ffmpeg's multipart POST).

mod common;

use common::{eventually, Server, Stream, TempDir};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::Message;

const KEY: &str = "door-key-0123456789";

type Ws = tungstenite::WebSocket<TcpStream>;

/// A config with the pushed camera `door` (`extra` keys added to its table) and a pattern camera `yard`.
fn config(dir: &Path, extra: &str) -> PathBuf {
    let file = dir.join("cameras.toml");
    std::fs::write(
        &file,
        format!(
            "[cameras.door]\nsource = \"push\"\npush-key = \"{KEY}\"\nno-signal-after = \"1s\"\n{extra}\n\
             [cameras.yard]\nsource = \"pattern\"\nfps = 5\n"
        ),
    )
    .unwrap();
    file
}

fn start(dir: &Path, extra: &str) -> Server {
    Server::start(&["--config", config(dir, extra).to_str().unwrap()])
}

/// `n` JPEGs of ffmpeg's test picture, 320x240, each different.
fn jpegs(dir: &Path, n: usize) -> Vec<Vec<u8>> {
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x240:rate=10")
        .args(["-frames:v", &n.to_string(), "-q:v", "5"])
        .arg(dir.join("f%03d.jpg"))
        .status()
        .unwrap();
    assert!(status.success());
    (1..=n)
        .map(|i| std::fs::read(dir.join(format!("f{i:03}.jpg"))).unwrap())
        .collect()
}

/// Opens a WebSocket to `/cams/door/push` + `query`, as an ESP32's `webSocket.begin(host, port, path)`
/// does; the refusal's status and body if there is no upgrade.
fn ws_connect(server: &Server, query: &str) -> Result<Ws, (u16, String)> {
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let url = format!("ws://{}/cams/door/push{query}", server.addr);
    match tungstenite::client(url, tcp) {
        Ok((ws, response)) => {
            assert_eq!(response.status(), 101);
            Ok(ws)
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => Err((
            r.status().as_u16(),
            String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).into_owned(),
        )),
        Err(e) => panic!("handshake: {e}"),
    }
}

fn ws_pusher(server: &Server) -> Ws {
    ws_connect(server, &format!("?key={KEY}")).expect("upgraded")
}

/// Reads parts until one is among `wanted`.
fn until_one_of(viewer: &mut Stream, wanted: &HashSet<Vec<u8>>, within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    loop {
        assert!(Instant::now() < deadline, "no wanted frame in time");
        let part = viewer.next_part().expect("the viewer stays connected");
        if wanted.contains(&part.body) {
            return part.body;
        }
    }
}

fn one(frame: &[u8]) -> HashSet<Vec<u8>> {
    [frame.to_vec()].into()
}

/// The camera `door`'s `source` in its `/state`.
fn door(server: &Server) -> serde_json::Value {
    let r = server.get("/cams/door/state");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["result"]["source"].clone()
}

fn lost(server: &Server, cause: &str) -> u64 {
    door(server)["push"]["lost"][cause].as_u64().unwrap()
}

fn wait_free(server: &Server) {
    eventually(Duration::from_secs(10), "the camera free", || {
        door(server)["pusher"].is_null().then_some(())
    });
}

/// Reads messages until the server closes the connection (a close frame or the end of the stream); the
/// close code if a frame came.
fn until_closed(ws: &mut Ws) -> Option<u16> {
    let mut code = None;
    for _ in 0..10_000 {
        match ws.read() {
            Ok(Message::Close(frame)) => code = frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(_) => return code,
        }
    }
    panic!("the server never closed the connection");
}

#[test]
fn an_esp32_like_websocket_pusher_reaches_viewers_byte_for_byte_and_gets_pongs() {
    let dir = TempDir::new("push-ws");
    let frames = jpegs(&dir.0, 8);
    let server = start(&dir.0, "");
    let mut viewer = server.stream("/cams/door/stream?delivery=all");
    viewer.set_timeout(Duration::from_secs(10));
    // The handshake arduinoWebSockets' `webSocket.begin(host, port, path)` sends: it offers the
    // subprotocol `arduino` and an `Origin: file://`.
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = tungstenite::http::Request::builder()
        .uri(format!("ws://{}/cams/door/push?key={KEY}", server.addr))
        .header("Host", server.addr.to_string())
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tungstenite::handshake::client::generate_key(),
        )
        .header("Sec-WebSocket-Protocol", "arduino")
        .header("Origin", "file://")
        .header("User-Agent", "arduino-WebSocket-Client")
        .body(())
        .unwrap();
    let (mut ws, response) = tungstenite::client(request, tcp).unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "arduino");
    for frame in &frames {
        // One binary message per frame, as `webSocket.sendBIN(fb->buf, fb->len)`; the next frame after
        // the viewer got this one (so none is dropped for being too fast: every one must arrive whole).
        ws.send(Message::binary(frame.clone())).unwrap();
        let got = until_one_of(&mut viewer, &one(frame), Duration::from_secs(10));
        assert_eq!(&got, frame);
    }
    // A ping (the sketch's heartbeat) is answered with a pong carrying its payload.
    ws.send(Message::Ping(b"hb-1".to_vec().into())).unwrap();
    let pong = loop {
        match ws.read().unwrap() {
            Message::Pong(p) => break p,
            Message::Ping(_) => {} // (the server's own, answered by tungstenite)
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(&pong[..], b"hb-1");
    // /state (the camera's and the server's) says who pushes and how.
    let pusher = door(&server)["pusher"].clone();
    assert_eq!(pusher["protocol"], "websocket", "{pusher}");
    assert_eq!(pusher["frames"], frames.len(), "{pusher}");
    assert!(pusher["address"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert!(pusher["since"].as_str().is_some() && pusher["fps"].as_f64().is_some());
    let all = server.state();
    let listed = all["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "door")
        .unwrap()
        .clone();
    assert_eq!(listed["pusher"]["protocol"], "websocket", "{listed}");
    // A clean close frees the camera.
    ws.close(None).unwrap();
    until_closed(&mut ws);
    wait_free(&server);
}

#[test]
fn a_connection_dropped_without_a_close_frame_frees_the_camera_and_the_pusher_comes_back() {
    let dir = TempDir::new("push-ws-drop");
    let frames = jpegs(&dir.0, 3);
    let server = start(&dir.0, "");
    let mut viewer = server.stream("/cams/door/stream?delivery=all");
    viewer.set_timeout(Duration::from_secs(10));
    let mut ws = ws_pusher(&server);
    ws.send(Message::binary(frames[0].clone())).unwrap();
    until_one_of(&mut viewer, &one(&frames[0]), Duration::from_secs(10));
    // The ESP32 loses its Wi-Fi: the TCP connection ends with no close frame.
    ws.get_mut().shutdown(std::net::Shutdown::Both).unwrap();
    drop(ws);
    wait_free(&server);
    // The viewer stays and sees "no signal" (a frame that is none of the pushed ones)...
    loop {
        let part = viewer.next_part().expect("the viewer stays connected");
        if !frames.contains(&part.body) {
            break;
        }
    }
    // ... then the reconnected pusher's frames, on the same connection.
    let mut again = ws_pusher(&server);
    again.send(Message::binary(frames[1].clone())).unwrap();
    until_one_of(&mut viewer, &one(&frames[1]), Duration::from_secs(10));
    again.send(Message::binary(frames[2].clone())).unwrap();
    until_one_of(&mut viewer, &one(&frames[2]), Duration::from_secs(10));
}

#[test]
fn an_idle_pusher_is_pinged_and_one_that_sends_no_frame_is_cut() {
    let dir = TempDir::new("push-ws-idle");
    let frames = jpegs(&dir.0, 1);
    // A read timeout of 3 s: pings after 1 s of silence, the cut after 3 s without a frame.
    let server = start(&dir.0, "read-timeout = \"3s\"\n");
    let mut ws = ws_pusher(&server);
    ws.send(Message::binary(frames[0].clone())).unwrap();
    // The server pings the idle link (and tungstenite answers each with a pong) ...
    let mut pings = 0;
    let code = loop {
        match ws.read() {
            Ok(Message::Ping(_)) => pings += 1,
            Ok(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => panic!("the connection ended without a close frame: {e}"),
        }
    };
    assert!(pings >= 1, "pinged while idle");
    // ... and cuts it when no frame came for the read timeout, pongs or not ("going away").
    assert_eq!(code, Some(1001));
    wait_free(&server);
}

/// A WebSocket frame header of a masked binary message of `len` bytes (len < 65536), mask 0.
fn binary_header(len: usize) -> Vec<u8> {
    let mut h = vec![0x82, 0x80 | 126];
    h.extend_from_slice(&(len as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

/// Writes one byte at a time, every 200 ms, until the server ends the connection or `n` are written;
/// how many were written.
fn trickle(mut s: TcpStream, n: usize) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        for i in 0..n {
            if s.write_all(b"\x55").is_err() {
                return i;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        n
    })
}

#[test]
fn slow_loris_pushers_are_cut_on_every_protocol() {
    let dir = TempDir::new("push-loris");
    let frames = jpegs(&dir.0, 1);
    let server = start(&dir.0, "read-timeout = \"2s\"\n");
    // Each trickles a byte every 200 ms for up to 30 s: the bytes keep coming, but no whole frame does.
    let heads = [
        // WebSocket: a 60,000-byte message, a byte at a time.
        (format!(
            "GET /cams/door/push?key={KEY} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ), binary_header(60_000)),
        // A multipart body with a part that never ends.
        (format!(
            "POST /cams/door/push?key={KEY} HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/x-mixed-replace; boundary=f\r\n\r\n"
        ), b"--f\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8".to_vec()),
        // One JPEG per request, with a length it takes forever to send.
        (format!(
            "POST /cams/door/push?key={KEY} HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\nContent-Length: 60000\r\n\r\n"
        ), b"\xff\xd8".to_vec()),
    ];
    for (head, start) in heads {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&start).unwrap();
        let sent = trickle(s.try_clone().unwrap(), 150);
        s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        let _ = s.shutdown(std::net::Shutdown::Both);
        let written = sent.join().unwrap();
        assert!(
            written < 150,
            "{head:?}: cut while trickling ({written} bytes)"
        );
        wait_free(&server);
    }
    // A keep-alive POST pusher that sends a frame and then nothing is cut too.
    let mut s = TcpStream::connect(server.addr).unwrap();
    write!(
        s,
        "POST /cams/door/push?key={KEY} HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        frames[0].len()
    )
    .unwrap();
    s.write_all(&frames[0]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    assert!(all.starts_with(b"HTTP/1.1 204"), "{all:?}");
    wait_free(&server);
}

#[test]
fn a_second_pusher_gets_409_unless_the_camera_allows_takeover() {
    let dir = TempDir::new("push-ws-409");
    let frames = jpegs(&dir.0, 2);
    let server = start(&dir.0, "");
    let mut first = ws_pusher(&server);
    first.send(Message::binary(frames[0].clone())).unwrap();
    eventually(Duration::from_secs(5), "the first pusher in /state", || {
        (door(&server)["pusher"]["frames"] == 1).then_some(())
    });
    let (status, body) = ws_connect(&server, &format!("?key={KEY}")).err().unwrap();
    assert_eq!(status, 409);
    assert!(
        body.contains("127.0.0.1") && body.contains("websocket"),
        "says who holds it: {body}"
    );
    // The first one is undisturbed.
    first.send(Message::binary(frames[1].clone())).unwrap();
    eventually(Duration::from_secs(5), "its next frame", || {
        (door(&server)["pusher"]["frames"] == 2).then_some(())
    });
    assert_eq!(door(&server)["push"]["takeovers"], 0);
}

#[test]
fn with_push_takeover_the_newer_pusher_wins_and_the_older_is_closed() {
    let dir = TempDir::new("push-ws-takeover");
    let frames = jpegs(&dir.0, 3);
    let server = start(&dir.0, "push-takeover = true\n");
    let mut viewer = server.stream("/cams/door/stream?delivery=all");
    viewer.set_timeout(Duration::from_secs(10));
    let mut old = ws_pusher(&server);
    old.send(Message::binary(frames[0].clone())).unwrap();
    until_one_of(&mut viewer, &one(&frames[0]), Duration::from_secs(10));
    // The camera reconnects before the server noticed its old connection died: the new one wins ...
    let mut new = ws_pusher(&server);
    // ... the old one is told so and closed (policy violation, 1008) ...
    assert_eq!(until_closed(&mut old), Some(1008));
    new.send(Message::binary(frames[1].clone())).unwrap();
    until_one_of(&mut viewer, &one(&frames[1]), Duration::from_secs(10));
    assert_eq!(door(&server)["push"]["takeovers"], 1);
    // ... and a POST pusher can take it over from a WebSocket one as well.
    let mut s = TcpStream::connect(server.addr).unwrap();
    write!(
        s,
        "POST /cams/door/push?key={KEY} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        frames[2].len()
    )
    .unwrap();
    s.write_all(&frames[2]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    assert!(
        all.starts_with(b"HTTP/1.1 204"),
        "{:?}",
        String::from_utf8_lossy(&all)
    );
    assert_eq!(until_closed(&mut new), Some(1008));
    until_one_of(&mut viewer, &one(&frames[2]), Duration::from_secs(10));
}

#[test]
fn wrong_keys_cannot_open_a_websocket_and_keys_do_not_cross_over() {
    let dir = TempDir::new("push-ws-keys");
    let frames = jpegs(&dir.0, 1);
    let viewer_key = "viewer-key-0123456789";
    let file = config(&dir.0, "");
    let server = Server::start(&[
        "--config",
        file.to_str().unwrap(),
        "--access-key",
        viewer_key,
    ]);
    let unauthorized = || {
        let m = server.get(&format!("/metrics?key={viewer_key}"));
        let text = String::from_utf8(m.body).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("mjpegd_rejections_total{cause=\"unauthorized\"}"))
            .unwrap()
            .to_string();
        line.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
    };
    let before = unauthorized();
    for query in [
        String::new(),
        "?key=not-the-key-0123456789".to_string(),
        format!("?key={viewer_key}"),
    ] {
        let (status, _) = ws_connect(&server, &query).err().unwrap();
        assert_eq!(status, 401, "{query:?}");
    }
    assert_eq!(unauthorized(), before + 3, "each refusal counted");
    // With the key as a Bearer token, as the ESP32 library's setExtraHeaders can send it.
    let tcp = TcpStream::connect(server.addr).unwrap();
    let request = tungstenite::http::Request::builder()
        .uri(format!("ws://{}/cams/door/push", server.addr))
        .header("Host", "t")
        .header("Authorization", format!("Bearer {KEY}"))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .unwrap();
    let (mut ws, _) = tungstenite::client(request, tcp).unwrap();
    ws.send(Message::binary(frames[0].clone())).unwrap();
    // The push key does not view; the viewer key does.
    let r = server.get(&format!("/cams/door/snapshot?key={viewer_key}"));
    eventually(Duration::from_secs(5), "the pushed frame", || {
        let r = server.get(&format!("/cams/door/snapshot?key={viewer_key}"));
        (r.body == frames[0]).then_some(())
    });
    let _ = r;
    assert_eq!(
        server.get(&format!("/cams/door/stream?key={KEY}")).status,
        401
    );
}

#[test]
fn an_oversized_message_cuts_the_pusher_once_counted_and_text_is_ignored_and_counted() {
    let dir = TempDir::new("push-ws-big");
    let frames = jpegs(&dir.0, 1);
    let (server, log) = Server::start_logged(&["--config", config(&dir.0, "").to_str().unwrap()]);
    for round in 1..=2 {
        let mut ws = ws_pusher(&server);
        // Text messages are not frames.
        for _ in 0..5 {
            ws.send(Message::text("hello")).unwrap();
        }
        ws.send(Message::binary(frames[0].clone())).unwrap();
        // 17 MiB in one message: past the 16 MiB a frame may have. The server closes (1009, message too
        // big) as soon as the frame header says so; the client may still be writing.
        let _ = ws.send(Message::binary(vec![0u8; 17 << 20]));
        assert!(matches!(until_closed(&mut ws), Some(1009) | None));
        wait_free(&server);
        assert_eq!(lost(&server, "too_large"), round);
        assert_eq!(lost(&server, "text_message"), 5 * round);
    }
    // Logged once for the camera, however often it happens.
    let warned = log
        .lines()
        .iter()
        .filter(|l| l.contains("cut its pusher (logged once"))
        .count();
    assert_eq!(warned, 1, "{:?}", log.lines());
    let m = server.get("/metrics");
    let text = String::from_utf8(m.body).unwrap();
    assert!(
        text.contains("mjpegd_push_lost_total{camera=\"door\",cause=\"too_large\"} 2"),
        "{text}"
    );
}

#[test]
fn a_flood_of_tiny_frames_is_bounded_and_every_one_is_accounted_for() {
    let dir = TempDir::new("push-ws-flood");
    let frames = jpegs(&dir.0, 1);
    let server = start(&dir.0, "");
    let mut viewer = server.stream("/cams/door/stream");
    viewer.set_timeout(Duration::from_secs(10));
    let mut ws = ws_pusher(&server);
    const FLOOD: u64 = 20_000;
    for i in 0..FLOOD {
        ws.write(Message::binary(i.to_le_bytes().to_vec())).unwrap();
    }
    ws.flush().unwrap();
    // Each was either queued for the supervisor and dropped there as not a JPEG, or dropped because the
    // queue was full: counted, never silently lost.
    let accounted = || {
        let s = door(&server);
        s["dropped"]["not_jpeg"].as_u64().unwrap()
            + s["push"]["lost"]["queue_full"].as_u64().unwrap()
    };
    eventually(Duration::from_secs(20), "every tiny frame counted", || {
        (accounted() == FLOOD).then_some(())
    });
    assert_eq!(door(&server)["pusher"]["frames"], FLOOD);
    // The server is fine: a real frame after the flood reaches the viewer.
    ws.send(Message::binary(frames[0].clone())).unwrap();
    until_one_of(&mut viewer, &one(&frames[0]), Duration::from_secs(10));
    assert!(server.get("/cams/yard/snapshot").status == 200);
}

#[test]
fn push_max_fps_drops_frames_above_the_cap_and_answers_a_post_429() {
    let dir = TempDir::new("push-fps");
    let frames = jpegs(&dir.0, 1);
    let server = start(&dir.0, "push-max-fps = 1\n");
    assert_eq!(door(&server)["push"]["max_fps"], 1.0);
    // A WebSocket pusher sends 60 frames as fast as it can.
    let mut ws = ws_pusher(&server);
    let started = Instant::now();
    for _ in 0..60 {
        ws.write(Message::binary(frames[0].clone())).unwrap();
    }
    ws.flush().unwrap();
    eventually(Duration::from_secs(10), "all 60 seen", || {
        (door(&server)["pusher"]["frames"] == 60).then_some(())
    });
    let elapsed = started.elapsed().as_secs();
    let capped = lost(&server, "fps_cap");
    // At most 1 a second (plus a burst of 2) passed; the rest were dropped and counted.
    assert!(60 - capped <= elapsed + 3, "{capped} capped in {elapsed} s");
    drop(ws);
    wait_free(&server);
    // One JPEG per POST above the cap: 429, on the same connection.
    let file = dir.0.join("f001.jpg");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "30"]);
    for i in 0..40 {
        if i > 0 {
            cmd.arg("--next");
        }
        cmd.args(["-o", "/dev/null", "-w", "%{http_code} %{num_connects}\\n"]);
        cmd.args(["-H", "Content-Type: image/jpeg", "--data-binary"]);
        cmd.arg(format!("@{}", file.display()));
        cmd.arg(format!("http://{}/cams/door/push?key={KEY}", server.addr));
    }
    let started = Instant::now();
    let out = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
    let elapsed = started.elapsed().as_secs();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 40, "{out}");
    let ok = lines.iter().filter(|l| l.starts_with("204 ")).count() as u64;
    let refused = lines.iter().filter(|l| l.starts_with("429 ")).count() as u64;
    assert_eq!(ok + refused, 40, "{out}");
    assert!(refused >= 1 && ok <= elapsed + 3, "{out}");
    assert_eq!(
        lines.iter().filter(|l| l.ends_with(" 1")).count(),
        1,
        "one connection: {out}"
    );
    assert_eq!(lost(&server, "fps_cap"), capped + refused);
}

struct Cert {
    der: rustls::pki_types::CertificateDer<'static>,
    cert_file: PathBuf,
}

fn make_cert(dir: &Path) -> (Cert, PathBuf) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, ck.cert.pem()).unwrap();
    std::fs::write(&key_file, ck.signing_key.serialize_pem()).unwrap();
    (
        Cert {
            der: ck.cert.der().clone(),
            cert_file,
        },
        key_file,
    )
}

#[test]
fn pushing_over_https_with_a_websocket_and_with_posts() {
    let dir = TempDir::new("push-tls");
    let frames = jpegs(&dir.0, 3);
    let (cert, key_file) = make_cert(&dir.0);
    let port = common::free_port();
    let tls_listen = format!("https://127.0.0.1:{port}");
    // A plain listener (the banner's first, for the viewer) and an HTTPS one for the pushers.
    let server = Server::spawn(
        Command::new(env!("CARGO_BIN_EXE_mjpegd"))
            .args(["--listen", "http://127.0.0.1:0", "--listen", &tls_listen])
            .arg("--config")
            .arg(config(&dir.0, ""))
            .arg("--tls-cert")
            .arg(&cert.cert_file)
            .arg("--tls-key")
            .arg(&key_file),
    );
    let mut viewer = server.stream("/cams/door/stream?delivery=all");
    viewer.set_timeout(Duration::from_secs(10));

    // A WebSocket over TLS (wss://), trusting only the server's certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(tls), "localhost".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let stream = rustls::StreamOwned::new(conn, tcp);
    let url = format!("wss://localhost:{port}/cams/door/push?key={KEY}");
    let (mut ws, response) = tungstenite::client(url, stream).unwrap();
    assert_eq!(response.status(), 101);
    ws.send(Message::binary(frames[0].clone())).unwrap();
    until_one_of(&mut viewer, &one(&frames[0]), Duration::from_secs(10));
    assert_eq!(door(&server)["pusher"]["protocol"], "websocket");
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    wait_free(&server);

    // curl posting JPEGs over HTTPS, on one connection.
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "20", "--cacert"])
        .arg(&cert.cert_file);
    for (i, n) in [1, 2].iter().enumerate() {
        if i > 0 {
            cmd.arg("--next").arg("--cacert").arg(&cert.cert_file);
        }
        cmd.args(["-o", "/dev/null", "-w", "%{http_code} %{num_connects}\\n"]);
        cmd.args(["-H", "Content-Type: image/jpeg", "--data-binary"]);
        cmd.arg(format!(
            "@{}",
            dir.0.join(format!("f{:03}.jpg", n + 1)).display()
        ));
        cmd.arg(format!("https://localhost:{port}/cams/door/push?key={KEY}"));
    }
    let out = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
    assert_eq!(out, "204 1\n204 0\n");
    let want: HashSet<Vec<u8>> = frames[1..].iter().cloned().collect();
    until_one_of(&mut viewer, &want, Duration::from_secs(10));
}

#[test]
fn push_takeover_set_over_the_api_applies_to_the_camera_being_pushed() {
    let dir = TempDir::new("push-ws-api");
    let frames = jpegs(&dir.0, 2);
    let file = config(&dir.0, "");
    let server = Server::start(&["--config", file.to_str().unwrap()]);
    let mut old = ws_pusher(&server);
    old.send(Message::binary(frames[0].clone())).unwrap();
    eventually(Duration::from_secs(5), "the pusher in /state", || {
        (door(&server)["pusher"]["frames"] == 1).then_some(())
    });
    assert_eq!(
        ws_connect(&server, &format!("?key={KEY}")).err().unwrap().0,
        409
    );
    // An admin (a local client) turns takeover on: saved in the file and applied without a restart
    // (the pusher holding the camera stays until another comes).
    let body = r#"{"push-takeover": true, "push-max-fps": 20}"#;
    let r = common::request(
        server.addr,
        &format!(
            "PATCH /api/cameras/door HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            server.addr,
            body.len()
        ),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let saved: toml::Table = std::fs::read_to_string(&file).unwrap().parse().unwrap();
    assert_eq!(
        saved["cameras"]["door"]["push-takeover"].as_bool(),
        Some(true)
    );
    eventually(Duration::from_secs(10), "the new policy in /state", || {
        let s = door(&server);
        (s["push"]["takeover"] == true && s["push"]["max_fps"] == 20.0).then_some(())
    });
    assert_eq!(door(&server)["pusher"]["frames"], 1, "the pusher was kept");
    let mut new = ws_pusher(&server);
    assert_eq!(until_closed(&mut old), Some(1008));
    new.send(Message::binary(frames[1].clone())).unwrap();
    eventually(Duration::from_secs(5), "the new pusher's frame", || {
        let r = server.get("/cams/door/snapshot");
        (r.body == frames[1]).then_some(())
    });
}

/// Opens `/cams/NAME/ws` + `query` as a dashboard's `new WebSocket(url)` would.
fn ws_viewer(server: &Server, path: &str) -> Ws {
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (ws, response) = tungstenite::client(format!("ws://{}{path}", server.addr), tcp).unwrap();
    assert_eq!(response.status(), 101);
    ws
}

/// The next binary message (pings are answered by tungstenite).
fn next_binary(ws: &mut Ws) -> Vec<u8> {
    loop {
        match ws.read().expect("the viewer stays connected") {
            Message::Binary(b) => return b.to_vec(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_websocket_viewer_gets_each_frame_as_one_binary_message() {
    let dir = TempDir::new("ws-view");
    let frames = jpegs(&dir.0, 5);
    let server = start(&dir.0, "");
    // A plain GET is told what this is.
    let r = server.get("/cams/door/ws");
    assert_eq!(r.status, 426);
    assert_eq!(r.headers["upgrade"], "websocket");
    // Pusher to viewer, both WebSockets, every frame byte for byte and in order (delivery=all).
    let mut viewer = ws_viewer(&server, "/cams/door/ws?delivery=all");
    let mut pusher = ws_pusher(&server);
    for frame in &frames {
        pusher.send(Message::binary(frame.clone())).unwrap();
        loop {
            let got = next_binary(&mut viewer);
            if frames.contains(&got) {
                assert_eq!(&got, frame, "in order");
                break;
            }
            // (else a "no signal" frame from before the pusher came)
        }
    }
    // It is a stream client like the others: listed in /state with its policy.
    let state: serde_json::Value =
        serde_json::from_slice(&server.get("/cams/door/state").body).unwrap();
    let clients = state["result"]["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1, "{clients:?}");
    assert_eq!(clients[0]["delivery"], "all", "{:?}", clients[0]);
    assert!(clients[0]["frames_sent"].as_u64().unwrap() >= frames.len() as u64);
    // Sizes work as for /stream: the pattern camera at 160 wide.
    let mut small = ws_viewer(&server, "/cams/yard/ws?width=160");
    let jpeg = next_binary(&mut small);
    assert_eq!(common::size_of(&jpeg), (160, 120));
    // A close ends it and frees its slot.
    viewer.close(None).unwrap();
    until_closed(&mut viewer);
    eventually(
        Duration::from_secs(5),
        "the viewer gone from /state",
        || {
            let s: serde_json::Value =
                serde_json::from_slice(&server.get("/cams/door/state").body).unwrap();
            (s["result"]["clients_total"] == 0).then_some(())
        },
    );
}

#[test]
fn a_websocket_viewer_that_takes_no_frames_is_evicted_and_the_others_go_on() {
    let server = Server::start(&[
        "--capture",
        "always",
        "--fps",
        "30",
        "--resolution",
        "1280x720",
        "--write-timeout",
        "1s",
    ]);
    // A viewer with a tiny receive buffer that never reads after the upgrade.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&server.addr.into()).unwrap();
    let tcp: TcpStream = sock.into();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let url = format!("ws://{}/cams/default/ws", server.addr);
    let (stalled, _) = tungstenite::client(url, tcp).unwrap();
    let mut reader = ws_viewer(&server, "/cams/default/ws");
    let state = eventually(
        Duration::from_secs(15),
        "the stalled viewer evicted",
        || {
            next_binary(&mut reader);
            let s = server.state();
            (s["evictions"]["write_timeout"] == 1 && s["stream"]["clients"] == 1).then_some(s)
        },
    );
    assert_eq!(state["clients"][0]["delivery"], "latest");
    // The reader still gets whole pictures.
    common::assert_whole_jpeg(&next_binary(&mut reader));
    drop(stalled);
}

/// Sends `n` copies of `frame` as fast as the socket takes them; the seconds it took, rounded up, once
/// `/state` has counted them all (`total` frames from this pusher by then).
fn flood(server: &Server, ws: &mut Ws, frame: &[u8], n: usize, total: u64) -> u64 {
    let started = Instant::now();
    for _ in 0..n {
        ws.write(Message::binary(frame.to_vec())).unwrap();
    }
    ws.flush().unwrap();
    eventually(Duration::from_secs(10), "every frame counted", || {
        (door(server)["pusher"]["frames"] == total).then_some(())
    });
    started.elapsed().as_secs() + 1
}

#[test]
fn a_new_push_max_fps_applies_to_the_pusher_already_connected() {
    let dir = TempDir::new("push-fps-reload");
    let frames = jpegs(&dir.0, 1);
    let file = config(&dir.0, "");
    let server = Server::start(&["--config", file.to_str().unwrap()]);
    let mut ws = ws_pusher(&server);
    // No cap: a flood loses frames only to the queue, none to a cap.
    flood(&server, &mut ws, &frames[0], 30, 30);
    assert_eq!(lost(&server, "fps_cap"), 0);

    // A reload sets push-max-fps = 1: the same connection is held to it from its next frame.
    let text = std::fs::read_to_string(&file).unwrap();
    let capped_text = text.replace("no-signal-after", "push-max-fps = 1\nno-signal-after");
    std::fs::write(&file, capped_text).unwrap();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    eventually(Duration::from_secs(10), "the cap in /state", || {
        (door(&server)["push"]["max_fps"] == 1.0).then_some(())
    });
    let elapsed = flood(&server, &mut ws, &frames[0], 60, 90);
    let capped = lost(&server, "fps_cap");
    // At most 1 a second (plus a burst of 2) passed; the rest were dropped and counted.
    assert!(
        capped > 0 && 60 - capped <= elapsed + 2,
        "{capped} capped in {elapsed} s"
    );
    assert_eq!(
        door(&server)["pusher"]["protocol"],
        "websocket",
        "the pusher was kept"
    );

    // An API write raises the cap to 1,000 fps: the same pusher's next flood is no longer capped.
    let body = r#"{"push-max-fps": 1000}"#;
    let r = common::request(
        server.addr,
        &format!(
            "PATCH /api/cameras/door HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            server.addr,
            body.len()
        ),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    eventually(Duration::from_secs(10), "the new cap in /state", || {
        (door(&server)["push"]["max_fps"] == 1000.0).then_some(())
    });
    flood(&server, &mut ws, &frames[0], 60, 150);
    assert_eq!(lost(&server, "fps_cap"), capped, "none capped at 1,000 fps");
    ws.send(Message::binary(frames[0].clone())).unwrap();
    eventually(Duration::from_secs(5), "the pusher's frame served", || {
        (server.get("/cams/door/snapshot").body == frames[0]).then_some(())
    });
}

#[test]
fn ffmpeg_pushes_multipart_over_https_and_a_viewer_gets_its_frames_byte_for_byte() {
    let dir = TempDir::new("push-ffmpeg-tls");
    let frames = jpegs(&dir.0, 20);
    let pushed: HashSet<Vec<u8>> = frames.iter().cloned().collect();
    let (cert, key_file) = make_cert(&dir.0);
    let port = common::free_port();
    let server = Server::spawn(
        Command::new(env!("CARGO_BIN_EXE_mjpegd"))
            .args(["--listen", "http://127.0.0.1:0"])
            .args(["--listen", &format!("https://127.0.0.1:{port}")])
            .arg("--config")
            .arg(config(&dir.0, ""))
            .arg("--tls-cert")
            .arg(&cert.cert_file)
            .arg("--tls-key")
            .arg(&key_file),
    );
    let mut viewer = server.stream("/cams/door/stream?delivery=all");
    viewer.set_timeout(Duration::from_secs(10));
    // ffmpeg checking the certificate against the server's, then as a camera that checks nothing would.
    let checks: [Vec<std::ffi::OsString>; 2] = [
        vec![
            "-tls_verify".into(),
            "1".into(),
            "-ca_file".into(),
            cert.cert_file.clone().into(),
        ],
        vec!["-tls_verify".into(), "0".into()],
    ];
    for check in checks {
        let ffmpeg = Command::new("ffmpeg")
            .args([
                "-loglevel",
                "error",
                "-nostdin",
                "-re",
                "-framerate",
                "10",
                "-i",
            ])
            .arg(dir.0.join("f%03d.jpg"))
            .args(["-c", "copy", "-f", "mpjpeg", "-method", "POST"])
            .args(&check)
            .arg(format!("https://localhost:{port}/cams/door/push?key={KEY}"))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut seen = HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.len() < 10 && Instant::now() < deadline {
            let part = viewer.next_part().expect("frames while ffmpeg pushes");
            if pushed.contains(&part.body) {
                seen.insert(part.body);
            }
        }
        let out = ffmpeg.wait_with_output().unwrap();
        assert!(
            seen.len() >= 10,
            "{check:?}: {} of ffmpeg's frames reached the viewer",
            seen.len()
        );
        assert!(
            out.status.success(),
            "{check:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_free(&server);
    }
}
