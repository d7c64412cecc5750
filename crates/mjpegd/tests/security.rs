//! Access control, TLS, and hostile or broken clients, against the real binary.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

fn get_with(server: &Server, path: &str, extra: &str) -> Response {
    request(
        server.addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n"),
    )
}

#[test]
fn basic_auth_covers_every_endpoint_and_alias() {
    let server = Server::start(&[
        "--auth",
        "alice:s3cret",
        "--key",
        "0123456789abcdef",
        "--capture",
        "always",
    ]);
    let good = "Authorization: Basic YWxpY2U6czNjcmV0\r\n"; // alice:s3cret
    let bad = "Authorization: Basic YWxpY2U6d3Jvbmc=\r\n"; // alice:wrong
    for path in [
        "/",
        "/stream",
        "/mjpeg/1",
        "/?action=stream",
        "/snapshot",
        "/jpg",
        "/?action=snapshot",
        "/state",
        "/nope",
    ] {
        for creds in ["", bad] {
            let r = get_with(&server, path, creds);
            assert_eq!(r.status, 401, "{path} {creds:?}");
            assert_eq!(
                r.headers["www-authenticate"],
                "Basic realm=\"mjpegd\", charset=\"UTF-8\""
            );
        }
    }
    for path in ["/", "/snapshot", "/jpg", "/?action=snapshot", "/state"] {
        assert_eq!(get_with(&server, path, good).status, 200, "{path}");
    }
    assert_eq!(get_with(&server, "/nope", good).status, 404);
    assert_eq!(
        get_with(&server, "/snapshot?key=0123456789abcdef", "").status,
        200,
        "?key= token"
    );
    assert_eq!(
        get_with(&server, "/snapshot?key=0123456789abcdeX", "").status,
        401
    );
    let mut s = Stream::open(server.addr, "/stream?key=0123456789abcdef", None);
    assert_eq!(s.head.status, 200);
    assert_whole_jpeg(&s.next_part().unwrap().body);
    let state: serde_json::Value =
        serde_json::from_slice(&get_with(&server, "/state", good).body).unwrap();
    assert!(
        state["result"]["rejected"]["unauthorized"]
            .as_u64()
            .unwrap()
            >= 18
    );
}

#[test]
fn an_auth_file_of_bcrypt_hashes_works() {
    let dir = std::env::temp_dir().join(format!("mjpegd-authfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut passwd = Command::new(env!("CARGO_BIN_EXE_mjpegd"))
        .args(["passwd", "bob"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    passwd
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let out = passwd.wait_with_output().unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.starts_with("bob:$2"), "{line}");
    let file = dir.join("users");
    std::fs::write(&file, line).unwrap();
    let server = Server::start(&["--auth-file", file.to_str().unwrap()]);
    // bob:correct horse
    assert_eq!(
        get_with(
            &server,
            "/state",
            "Authorization: Basic Ym9iOmNvcnJlY3QgaG9yc2U=\r\n"
        )
        .status,
        200
    );
    assert_eq!(
        get_with(
            &server,
            "/state",
            "Authorization: Basic Ym9iOmNvcnJlY3QgaG9yc2Y=\r\n"
        )
        .status,
        401
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A self-signed certificate for localhost / 127.0.0.1 (cert, key) made with openssl.
fn certificate(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs")
        .success();
    assert!(ok);
    (cert, key)
}

fn curl_tls(ca: &std::path::Path, url: &str, max_time: &str, out: &std::path::Path) -> bool {
    Command::new("curl")
        .args(["-s", "--max-time", max_time, "--cacert"])
        .arg(ca)
        .arg("-o")
        .arg(out)
        .arg(url)
        .status()
        .map(|s| s.success() || s.code() == Some(28)) // 28: the stream ran until --max-time
        .unwrap_or(false)
}

#[test]
fn tls_serves_snapshots_and_correct_streams_and_reloads_on_sighup() {
    let dir = std::env::temp_dir().join(format!("mjpegd-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = certificate(&dir, "first");
    let live_cert = dir.join("live.pem");
    let live_key = dir.join("live-key.pem");
    std::fs::copy(&cert, &live_cert).unwrap();
    std::fs::copy(&key, &live_key).unwrap();
    let server = Server::start(&[
        "--tls-cert",
        live_cert.to_str().unwrap(),
        "--tls-key",
        live_key.to_str().unwrap(),
        "--capture",
        "always",
    ]);
    let base = format!("https://127.0.0.1:{}", server.addr.port());
    let snap = dir.join("snap.jpg");
    assert!(curl_tls(&cert, &format!("{base}/snapshot"), "5", &snap));
    assert_whole_jpeg(&std::fs::read(&snap).unwrap());
    // A stream over TLS parses into whole JPEGs with exact lengths.
    let body = dir.join("stream.bin");
    assert!(curl_tls(&cert, &format!("{base}/stream"), "2", &body));
    let bytes = std::fs::read(&body).unwrap();
    let mut parser =
        mjpegd_core::parse::multipart::MultipartParser::new(Some("boundarydonotcross"), 1 << 24);
    parser.push(&bytes);
    let mut parts = 0;
    while let Some(Ok(part)) = parser.next_part() {
        assert_eq!(part.headers.content_length, Some(part.body.len()));
        assert_whole_jpeg(&part.body);
        parts += 1;
    }
    assert!(parts >= 20, "{parts} parts in 2 s");
    // Plain HTTP on the TLS port gets nothing useful, and the server lives on.
    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(b"GET /snapshot HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut junk = Vec::new();
    let _ = plain.read_to_end(&mut junk);
    assert!(!junk.starts_with(b"HTTP/1.1 200"));
    // Renewal: new files, SIGHUP, new connections get the new certificate.
    let (cert2, key2) = certificate(&dir, "second");
    std::fs::copy(&cert2, &live_cert).unwrap();
    std::fs::copy(&key2, &live_key).unwrap();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    eventually(Duration::from_secs(5), "the renewed certificate", || {
        curl_tls(&cert2, &format!("{base}/snapshot"), "5", &snap).then_some(())
    });
    assert!(
        !curl_tls(&cert, &format!("{base}/snapshot"), "5", &snap),
        "the old certificate is gone"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn slowloris_connections_are_cut_off_and_real_clients_are_unaffected() {
    let server = Server::start(&["--head-timeout", "1s", "--capture", "always", "--fps", "30"]);
    let mut viewer = server.stream("/stream");
    // 300 connections that trickle a request head one byte at a time.
    let mut trickles: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    let started = Instant::now();
    let mut frames = 0;
    let mut step = 0;
    while started.elapsed() < Duration::from_secs(2) {
        for t in &mut trickles {
            let _ = t.write_all(&[b"GET / HTTP/1.1\r\nX: y"[step % 20]]);
        }
        step += 1;
        frames += 1;
        viewer.next_part().unwrap();
    }
    assert!(
        frames >= 50,
        "the viewer kept ~30 fps: {frames} frames in 2 s"
    );
    // Every trickler has been answered 408 and closed by now.
    for t in &mut trickles {
        t.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut got = Vec::new();
        let _ = t.read_to_end(&mut got);
        assert!(
            got.starts_with(b"HTTP/1.1 408"),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
    }
    let state = server.state();
    assert!(state["rejected"]["timeouts"].as_u64().unwrap() >= 300);
}

#[test]
fn connection_limits_answer_503_at_once() {
    let server = Server::start(&["--max-connections-per-ip", "5", "--max-connections", "8"]);
    let held: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let r = server.get("/state");
    assert_eq!(r.status, 503);
    assert!(String::from_utf8_lossy(&r.body).contains("--max-connections-per-ip"));
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(held);
    let state = eventually(Duration::from_secs(3), "connections released", || {
        let r = server.get("/state");
        (r.status == 200).then(|| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap())
    });
    assert!(
        state["result"]["rejected"]["max_connections_per_ip"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

#[test]
fn clients_that_vanish_mid_frame_leave_nothing_behind() {
    let server = Server::start(&["--capture", "always", "--resolution", "1280x720"]);
    for policy in ["latest", "all", "lockstep"] {
        for _ in 0..10 {
            let mut s = Stream::open(server.addr, &format!("/stream?delivery={policy}"), None);
            // Read part of a frame, then reset the connection (SO_LINGER 0).
            let mut some = [0u8; 5000];
            s.reader.read_exact(&mut some).unwrap();
            socket2::SockRef::from(s.reader.get_ref())
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
    }
    eventually(Duration::from_secs(5), "all vanished clients gone", || {
        let state = server.state();
        (state["clients"].as_array().unwrap().is_empty()
            && state["connections"].as_u64() == Some(1))
        .then_some(())
    });
    let mut fine = server.stream("/stream");
    assert_whole_jpeg(&fine.next_part().unwrap().body);
}

#[test]
fn path_tricks_and_odd_requests_get_plain_errors() {
    let server = Server::start(&[]);
    let addr = server.addr;
    for (path, status) in [
        ("/../../etc/passwd", 404),
        ("/%2e%2e/%2e%2e/etc/passwd", 404),
        ("/STREAM", 404),
        ("/stream%00", 400),
        ("/%ff%fe", 400),
        ("/state/../stream", 404),
    ] {
        assert_eq!(server.get(path).status, status, "{path}");
    }
    let long = format!("/{}", "a".repeat(10_000));
    assert_eq!(server.get(&long).status, 431);
    assert_eq!(
        request(addr, "GET / HTTP/2.0\r\nHost: x\r\n\r\n").status,
        400
    );
    assert_eq!(request(addr, "GET /snapshot HTTP/1.1\r\nHost: x\r\nHost: y\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n").status, 400);
    // Still alive and well.
    assert_eq!(server.get("/state").status, 200);
}
