//! Security of the real binary over real (loopback) TCP: Basic auth and access keys on every URL, TLS,
//! connection limits, and hostile or broken clients (slowloris, idle, never-reading, vanishing, malformed,
//! smuggling shapes, path tricks). Each test is bounded in time.

mod common;
use base64::Engine;
use common::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PATHS: [&str; 12] = [
    "/stream",
    "/mjpeg/1",
    "/?action=stream",
    "/stream?delivery=all",
    "/snapshot",
    "/jpg",
    "/?action=snapshot",
    "/state",
    "/",
    "/index.html",
    "/no/such/thing",
    "/%73tream",
];

fn basic(user_pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

/// Sends one request and reads the response head (and whatever body arrives within a short time).
fn head_of(addr: SocketAddr, method: &str, path: &str, auth: Option<&str>) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: t\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    parse_response(&head)
}

fn state_with(server: &Server, auth: &str) -> serde_json::Value {
    let r = request(
        server.addr,
        &format!(
            "GET /state HTTP/1.1\r\nHost: t\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(r.status, 200);
    serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["result"].clone()
}

#[test]
fn basic_auth_covers_every_url_alias_and_method() {
    let server = Server::start(&["--auth", "viewer:correct horse", "--capture", "always"]);
    for path in PATHS {
        for method in ["GET", "HEAD", "POST"] {
            let r = head_of(server.addr, method, path, None);
            assert_eq!(r.status, 401, "{method} {path} without credentials");
            assert_eq!(
                r.headers["www-authenticate"],
                "Basic realm=\"mjpegd\", charset=\"UTF-8\""
            );
            for wrong in [
                basic("viewer:correct hors"),
                basic("viewer:correct horse "),
                basic("Viewer:correct horse"),
                basic("viewer"),
                "Bearer correct horse".to_string(),
                "Basic @@@".to_string(),
            ] {
                let r = head_of(server.addr, method, path, Some(&wrong));
                assert_eq!(r.status, 401, "{method} {path} with {wrong:?}");
            }
        }
        let r = head_of(
            server.addr,
            "GET",
            path,
            Some(&basic("viewer:correct horse")),
        );
        let expected = if path == "/no/such/thing" { 404 } else { 200 };
        assert_eq!(r.status, expected, "GET {path} with credentials");
    }
    let state = state_with(&server, &basic("viewer:correct horse"));
    assert_eq!(
        state["rejected"]["unauthorized"],
        PATHS.len() as u64 * 3 * 7,
        "every refusal is counted"
    );
}

#[test]
fn a_stream_with_credentials_or_access_key_delivers_frames() {
    let server = Server::start(&[
        "--auth",
        "u:p",
        "--access-key",
        "k-0123456789abcdef",
        "--capture",
        "always",
    ]);
    let mut s = server.stream("/stream?key=k-0123456789abcdef");
    assert_eq!(s.head.status, 200);
    assert_whole_jpeg(&s.next_part().unwrap().body);
    for bad in [
        "/stream?key=k-0123456789abcdeF",
        "/stream?key=",
        "/stream?kee=k-0123456789abcdef",
    ] {
        assert_eq!(server.stream(bad).head.status, 401, "{bad}");
    }
    // Basic auth on a stream, raw.
    let mut t = TcpStream::connect(server.addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        t,
        "GET /mjpeg/1 HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\n\r\n",
        basic("u:p")
    )
    .unwrap();
    let mut r = BufReader::new(t);
    let (status, headers) = read_head(&mut r);
    assert_eq!(status, 200);
    let parts = read_parts(&mut r, &boundary_of(&headers), 3);
    assert_eq!(parts.len(), 3);
}

#[test]
fn users_file_with_bcrypt_hashes_and_hash_password_command() {
    let dir = tempdir("users");
    // The hash-password subcommand writes a hash the file accepts.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mjpegd"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"pa:ss word\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap();
    assert!(hash.starts_with("$2b$"), "{hash}");
    let low_cost = bcrypt::hash("other", 4).unwrap();
    let file = dir.join("users");
    std::fs::write(
        &file,
        format!("# mjpegd users\nann:{}\nbob:{low_cost}\n", hash.trim()),
    )
    .unwrap();
    let server = Server::start(&["--auth-file", file.to_str().unwrap()]);
    let ok = |cred: &str| head_of(server.addr, "GET", "/state", Some(&basic(cred))).status;
    assert_eq!(ok("ann:pa:ss word"), 200);
    assert_eq!(ok("ann:pa:ss word"), 200, "again, from the verified cache");
    assert_eq!(ok("bob:other"), 200);
    assert_eq!(ok("ann:other"), 401);
    assert_eq!(ok("bob:pa:ss word"), 401);
    assert_eq!(ok("carl:other"), 401);
    // A file with a hash mjpegd cannot check is refused at startup, with the reason.
    std::fs::write(&file, "ann:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mjpegd"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--auth-file",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bcrypt"));
    let _ = std::fs::remove_dir_all(dir);
}

fn tempdir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mjpegd-security-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read_head(r: &mut impl BufRead) -> (u16, HashMap<String, String>) {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line).unwrap() == 0 {
            panic!("closed in the head: {:?}", String::from_utf8_lossy(&head));
        }
        head.extend(line);
    }
    let resp = parse_response(&head);
    (resp.status, resp.headers)
}

fn boundary_of(headers: &HashMap<String, String>) -> String {
    headers["content-type"]
        .split("boundary=")
        .nth(1)
        .unwrap()
        .to_string()
}

/// Reads `n` parts after the first boundary line, checking each one's framing.
fn read_parts(r: &mut impl BufRead, boundary: &str, n: usize) -> Vec<(u64, Vec<u8>)> {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, format!("--{boundary}\r\n"));
    let mut parts = Vec::new();
    for _ in 0..n {
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            let (k, v) = line.split_once(':').expect("part header");
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let len: usize = headers["content-length"].parse().unwrap();
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        assert_whole_jpeg(&body);
        let mut tail = vec![0; boundary.len() + 6];
        r.read_exact(&mut tail).unwrap();
        assert_eq!(tail, format!("\r\n--{boundary}\r\n").as_bytes());
        parts.push((headers["x-frame-sequence"].parse().unwrap(), body));
    }
    parts
}

struct Cert {
    der: rustls::pki_types::CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn make_cert() -> Cert {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    Cert {
        der: ck.cert.der().clone(),
        cert_pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
    }
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_connect(addr: SocketAddr, trust: &Cert) -> std::io::Result<TlsStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

#[test]
fn https_streams_every_policy_correctly_and_reloads_its_certificate_on_sighup() {
    let dir = tempdir("tls");
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    let first = make_cert();
    std::fs::write(&cert_file, &first.cert_pem).unwrap();
    std::fs::write(&key_file, &first.key_pem).unwrap();
    let server = Server::start(&[
        "--tls-cert",
        cert_file.to_str().unwrap(),
        "--tls-key",
        key_file.to_str().unwrap(),
        "--capture",
        "always",
        "--fps",
        "60",
        "--auth",
        "u:p",
    ]);
    for policy in ["latest", "all", "lockstep"] {
        let mut s = tls_connect(server.addr, &first).unwrap();
        write!(
            s,
            "GET /stream?delivery={policy} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\n\r\n",
            basic("u:p")
        )
        .unwrap();
        let mut r = BufReader::new(s);
        let (status, headers) = read_head(&mut r);
        assert_eq!(status, 200, "{policy}");
        let parts = read_parts(&mut r, &boundary_of(&headers), 20);
        for w in parts.windows(2) {
            assert!(w[1].0 > w[0].0, "{policy}: sequence rises");
            if policy == "all" {
                assert_eq!(w[1].0, w[0].0 + 1, "{policy}: every frame");
            }
        }
    }
    // Plain HTTP to the TLS port: the handshake fails, and is counted; the server lives on.
    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(b"GET /state HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut sink = Vec::new();
    let _ = plain.read_to_end(&mut sink);
    assert!(!sink.starts_with(b"HTTP/1.1 200"));

    // A renewed certificate, then SIGHUP: new connections get it.
    let second = make_cert();
    assert!(
        tls_connect(server.addr, &second).is_err(),
        "not trusted yet"
    );
    std::fs::write(&cert_file, &second.cert_pem).unwrap();
    std::fs::write(&key_file, &second.key_pem).unwrap();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    let mut s = eventually(Duration::from_secs(5), "the new certificate", || {
        tls_connect(server.addr, &second).ok()
    });
    write!(
        s,
        "GET /state HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        basic("u:p")
    )
    .unwrap();
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body);
    let resp = parse_response(&body);
    assert_eq!(resp.status, 200);
    let state: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert!(
        state["result"]["rejected"]["tls_handshakes"]
            .as_u64()
            .unwrap()
            >= 2
    );
    // A broken file on reload keeps the current certificate.
    std::fs::write(&cert_file, "not a certificate").unwrap();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(300));
    assert!(tls_connect(server.addr, &second).is_ok());
    let _ = std::fs::remove_dir_all(dir);
}

/// Reads until close or timeout; returns what arrived and whether the peer closed.
fn drain(s: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(within)).unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (all, true),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (all, true),
            Err(_) => return (all, false),
        }
    }
}

#[test]
fn connection_limits_answer_at_once_and_cannot_be_bypassed_by_streams() {
    let server = Server::start(&[
        "--max-connections",
        "6",
        "--max-connections-per-address",
        "3",
        "--capture",
        "always",
    ]);
    // Three streams from 127.0.0.1 fill the address's share; a fourth connection is answered 503 at once.
    let streams: Vec<_> = (0..3).map(|_| server.stream("/stream")).collect();
    let started = Instant::now();
    let mut extra = TcpStream::connect(server.addr).unwrap();
    let (got, closed) = drain(&mut extra, Duration::from_secs(3));
    assert!(closed, "refused connections are closed, not left hanging");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        got.starts_with(b"HTTP/1.1 503"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    // Other loopback addresses have their own share, until the total is reached.
    let other = |ip: &str| {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(&format!("{ip}:0").parse::<SocketAddr>().unwrap().into())
            .unwrap();
        sock.connect(&server.addr.into()).unwrap();
        TcpStream::from(sock)
    };
    let held: Vec<_> = (0..3).map(|_| other("127.0.0.2")).collect();
    std::thread::sleep(Duration::from_millis(100));
    let (got, closed) = drain(&mut other("127.0.0.3"), Duration::from_secs(3));
    assert!(closed && got.starts_with(b"HTTP/1.1 503"), "total limit");
    drop(held);
    drop(streams);
    let state = eventually(Duration::from_secs(5), "connections to close", || {
        let r = server.get("/state");
        let s: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        (r.status == 200 && s["result"]["connections"]["open"] == 1).then(|| s["result"].clone())
    });
    // (state requests made while the streams were closing may have been refused too)
    assert!(
        state["rejected"]["max_connections_per_address"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(state["rejected"]["max_connections"].as_u64().unwrap() >= 1);
    assert_eq!(state["connections"]["max"], 6);
}

#[test]
fn slowloris_and_idle_connections_are_cut_at_the_head_timeout_while_a_stream_runs() {
    let server = Server::start(&["--head-timeout", "1s", "--capture", "always", "--fps", "30"]);
    let mut viewer = server.stream("/stream");
    let started = Instant::now();
    // 200 idle connections and 200 that trickle a header byte every 200 ms.
    let idle: Vec<_> = (0..200)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    let mut slow: Vec<_> = (0..200)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    let trickle = b"GET /stream HTTP/1.1\r\nHost: x\r\nX-A: aaaaaaaaaaaaaaaaaaaa";
    let mut frames = 0;
    let mut i = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        for s in slow.iter_mut() {
            let _ = s.write_all(&trickle[i % trickle.len()..][..1]);
        }
        i += 1;
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until {
            viewer.next_part().unwrap();
            frames += 1;
        }
    }
    let fps = frames as f64 / started.elapsed().as_secs_f64();
    assert!(
        fps > 20.0,
        "the real viewer kept its frame rate: {fps:.1} fps"
    );
    for mut s in idle.into_iter().chain(slow) {
        let (got, closed) = drain(&mut s, Duration::from_secs(2));
        assert!(closed, "cut within the head timeout");
        assert!(got.is_empty() || got.starts_with(b"HTTP/1.1 408"));
    }
    let state = eventually(
        Duration::from_secs(3),
        "only the viewer and this request",
        || {
            let s = server.state();
            (s["connections"]["open"] == 2).then_some(s)
        },
    );
    assert!(state["rejected"]["timeouts"].as_u64().unwrap() >= 400);
}

#[test]
fn malformed_oversized_smuggling_and_path_tricks_get_bounded_answers() {
    let server = Server::start(&["--auth", "u:p"]);
    let a = basic("u:p");
    let long_uri = format!("/{}", "a".repeat(20_000));
    let long_header = format!(
        "GET /state HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
        "b".repeat(9000)
    );
    let many_headers = format!(
        "GET /state HTTP/1.1\r\nHost: t\r\n{}\r\n",
        (0..100)
            .map(|i| format!("X-{i}: y\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(String, u16)> = vec![
        (format!("GET /state HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello"), 400),
        (format!("GET /state HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\n"), 400),
        (format!("GET /state HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400),
        (format!("GET /state HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\nTransfer-Encoding : chunked\r\n\r\n"), 400),
        (format!("GET /state HTTP/1.1\r\nAuthorization: {a}\r\n\r\n"), 400),
        (format!("GET http://evil/state HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\n\r\n"), 400),
        ("\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03garbage\r\n\r\n".to_string(), 400),
        ("GET /sta\0te HTTP/1.1\r\nHost: t\r\n\r\n".to_string(), 400),
        (format!("GET /st%00ate HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\n\r\n"), 400),
        (format!("GET /%ff%fe HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\n\r\n"), 400),
        (format!("GET {long_uri} HTTP/1.1\r\nHost: t\r\n\r\n"), 431),
        (long_header, 431),
        (many_headers, 431),
        // Path tricks reach nothing but the exact routes, and never get past auth.
        ("GET /../state HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_string(), 401),
        ("GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_string(), 401),
        (format!("GET /stream/../state HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\nConnection: close\r\n\r\n"), 404),
        (format!("GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\nConnection: close\r\n\r\n"), 404),
        (format!("GET //state HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\nConnection: close\r\n\r\n"), 404),
        (format!("GET /state%2f HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\nConnection: close\r\n\r\n"), 404),
        (format!("DELETE /state HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\n\r\n"), 405),
    ];
    for (raw, status) in &cases {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let (got, closed) = drain(&mut s, Duration::from_secs(5));
        let shown: String = raw.chars().take(80).collect();
        assert!(closed, "{shown:?}: the connection is closed");
        let r = parse_response(&got);
        assert_eq!(r.status, *status, "{shown:?}");
    }
    // A smuggled second request behind a refused one is never answered.
    let mut s = TcpStream::connect(server.addr).unwrap();
    write!(s, "GET /state HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\nGET /state HTTP/1.1\r\nHost: t\r\nAuthorization: {a}\r\n\r\n").unwrap();
    let (got, _) = drain(&mut s, Duration::from_secs(5));
    assert_eq!(got.windows(9).filter(|w| w == b"HTTP/1.1 ").count(), 1);
    let state = state_with(&server, &a);
    assert!(state["rejected"]["bad_requests"].as_u64().unwrap() >= 13);
}

#[test]
fn vanishing_and_never_reading_clients_are_let_go() {
    let server = Server::start(&[
        "--capture",
        "always",
        "--fps",
        "30",
        "--write-timeout",
        "1s",
    ]);
    // Stream clients that reset mid-frame.
    for policy in ["latest", "all", "lockstep"] {
        for _ in 0..10 {
            let s = Stream::open(server.addr, &format!("/stream?delivery={policy}"), None);
            let sock = socket2::SockRef::from(s.reader.get_ref());
            sock.set_linger(Some(Duration::ZERO)).unwrap();
            let mut part_header = [0u8; 10];
            let _ = s.reader.get_ref().read(&mut part_header);
            drop(s); // RST
        }
    }
    // A client that pipelines snapshot requests and never reads its answers.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&server.addr.into()).unwrap();
    let mut deaf: TcpStream = sock.into();
    deaf.set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for _ in 0..2000 {
        if deaf
            .write_all(b"GET /snapshot HTTP/1.1\r\nHost: t\r\n\r\n")
            .is_err()
        {
            break;
        }
    }
    // Everyone is gone within the write timeout plus a little; the viewer count and connections drop to
    // just this state request.
    let state = eventually(
        Duration::from_secs(8),
        "broken clients to be let go",
        || {
            let s = server.state();
            (s["connections"]["open"] == 1 && s["stream"]["clients"] == 0).then_some(s)
        },
    );
    assert!(
        state["rejected"]["timeouts"].as_u64().unwrap() >= 1,
        "the deaf client timed out"
    );
    // And the server still serves.
    let mut s = server.stream("/stream?delivery=all");
    assert_whole_jpeg(&s.next_part().unwrap().body);
    drop(deaf);
}
