//! What a crowd cannot exhaust, and the HTTP details of the connection: the kernel's send buffers of
//! `all` clients and what an evicted client still gets, file descriptors, the TLS head timeout, and the
//! Connection header.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Reads one response with a Content-Length from a connection that stays open.
fn read_response(r: &mut BufReader<TcpStream>) -> Response {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        assert!(r.read_until(b'\n', &mut line).unwrap() > 0, "response head");
        head.extend_from_slice(&line);
        if line == b"\r\n" {
            break;
        }
    }
    let mut resp = parse_response(&head);
    let len: usize = resp.headers["content-length"].parse().unwrap();
    resp.body = vec![0; len];
    r.read_exact(&mut resp.body).unwrap();
    resp
}

/// Whether the peer closes the connection within `within` (with nothing more to read).
fn closes_within(r: &mut BufReader<TcpStream>, within: Duration) -> bool {
    r.get_ref().set_read_timeout(Some(within)).unwrap();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).is_ok() && rest.is_empty()
}

#[test]
fn the_connection_header_says_whether_the_connection_stays_open() {
    let server = Server::start(&["--capture", "always"]);
    eventually(Duration::from_secs(5), "a first frame", || {
        (server.get("/snapshot").status == 200).then_some(())
    });
    for path in ["/state", "/snapshot", "/"] {
        // HTTP/1.0 asking for keep-alive: told so, and the connection serves a second request.
        let s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        for _ in 0..2 {
            write!(w, "GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
            let resp = read_response(&mut r);
            assert_eq!(resp.status, 200, "{path}");
            assert_eq!(
                resp.headers.get("connection").map(String::as_str),
                Some("keep-alive"),
                "{path}: HTTP/1.0 keep-alive is confirmed"
            );
        }
        // `Connection: close` (HTTP/1.1), and HTTP/1.0 without keep-alive: told close, and closed.
        for ask in [
            "HTTP/1.1\r\nHost: t\r\nConnection: close",
            "HTTP/1.0\r\nHost: t",
        ] {
            write!(w, "GET {path} {ask}\r\n\r\n").unwrap();
            let resp = read_response(&mut r);
            assert_eq!(resp.status, 200, "{path} {ask:?}");
            assert_eq!(
                resp.headers.get("connection").map(String::as_str),
                Some("close"),
                "{path} {ask:?}"
            );
            assert!(
                closes_within(&mut r, Duration::from_secs(3)),
                "{path} {ask:?}: closed"
            );
            let s = TcpStream::connect(server.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            w = s.try_clone().unwrap();
            r = BufReader::new(s);
        }
        // HTTP/1.1 default: kept alive without a Connection header.
        write!(w, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let resp = read_response(&mut r);
        assert_eq!(resp.headers.get("connection"), None, "{path}");
        write!(w, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut r).status, 200, "{path}: still open");
    }
}

/// A self-signed certificate for localhost, written to a fresh directory: (dir, cert file, key file, cert).
fn tls_files(what: &str) -> (std::path::PathBuf, String, String, CertificateDer) {
    let dir = std::env::temp_dir().join(format!("mjpegd-resources-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let der = ck.cert.der().clone();
    let s = |p: std::path::PathBuf| p.to_str().unwrap().to_string();
    (dir, s(cert), s(key), der)
}

type CertificateDer = rustls::pki_types::CertificateDer<'static>;

/// Runs mjpegd (a loopback port, `args`) with its standard error in `log`, through `sh` so the test can
/// set the shell's limits (`setup`, e.g. `ulimit -n 256`) and MJPEGD_LOG before it starts.
fn spawn_logged(setup: &str, log: &std::path::Path, args: &[&str]) -> Server {
    let script = format!("{setup}\nexec \"$0\" \"$@\" 2>\"$MJPEGD_TEST_LOG\"");
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_mjpegd"))
        .args(["--listen", "127.0.0.1:0", "--resolution", "320x240"])
        .args(args)
        .env("MJPEGD_TEST_LOG", log);
    Server::spawn(&mut cmd)
}

/// A TLS 1.3 ClientHello naming the server by an IP address in SNI (which RFC 6066 forbids, and some
/// clients send anyway).
fn client_hello_with_ip_sni() -> Vec<u8> {
    let name = b"127.0.0.1";
    let mut sni = vec![0u8]; // host_name
    sni.extend((name.len() as u16).to_be_bytes());
    sni.extend(name);
    let mut list = (sni.len() as u16).to_be_bytes().to_vec();
    list.extend(sni);
    let mut ext = vec![0, 0]; // server_name
    ext.extend((list.len() as u16).to_be_bytes());
    ext.extend(list);
    ext.extend([0, 0x2b, 0, 3, 2, 3, 4]); // supported_versions: TLS 1.3
    ext.extend([0, 0x0a, 0, 4, 0, 2, 0, 0x1d]); // supported_groups: x25519
    ext.extend([0, 0x0d, 0, 4, 0, 2, 8, 4]); // signature_algorithms: rsa_pss_rsae_sha256
    ext.extend([0, 0x33, 0, 38, 0, 36, 0, 0x1d, 0, 32]); // key_share: x25519
    ext.extend([9u8; 32]);
    let mut body = vec![3, 3];
    body.extend([7u8; 32]); // random
    body.extend([0, 0, 2, 0x13, 1, 1, 0]); // no session id, TLS_AES_128_GCM_SHA256, no compression
    body.extend((ext.len() as u16).to_be_bytes());
    body.extend(ext);
    let mut hs = vec![1, 0];
    hs.extend((body.len() as u16).to_be_bytes());
    hs.extend(body);
    let mut record = vec![0x16, 3, 1];
    record.extend((hs.len() as u16).to_be_bytes());
    record.extend(hs);
    record
}

#[test]
fn tls_gets_one_head_timeout_from_accept_and_clients_cannot_fill_the_log() {
    let (dir, cert, key, der) = tls_files("tls");
    let log = dir.join("stderr.log");
    let tls_args = [
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--head-timeout",
        "3s",
    ];
    let server = spawn_logged("", &log, &tls_args);

    // A client that takes 2.5 s over its handshake, then says nothing: the 408 (or close) comes 3 s after
    // connect, not 3 s after the handshake.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let config = std::sync::Arc::new(config);
    let conn =
        rustls::ClientConnection::new(config.clone(), "localhost".try_into().unwrap()).unwrap();
    let connected = Instant::now();
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n @ 1..) = tls.read(&mut buf) {
        got.extend_from_slice(&buf[..n]);
    }
    let took = connected.elapsed();
    eprintln!(
        "TLS: handshake after 2.5 s, then silence: the connection ended {took:?} after connect"
    );
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(4),
        "the head timeout (3 s) counts from accept: the connection ended after {took:?}"
    );
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    let conn = rustls::ClientConnection::new(config, "localhost".try_into().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(server.addr).unwrap());
    tls.write_all(b"GET /state HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    while let Ok(n @ 1..) = tls.read(&mut buf) {
        all.extend_from_slice(&buf[..n]);
    }
    let state: serde_json::Value = serde_json::from_slice(&parse_response(&all).body).unwrap();
    assert_eq!(state["result"]["rejected"]["timeouts"], 1);

    // Clients that name the server by IP address in SNI: no log line each (by default; a log filter that
    // names rustls still shows rustls's warning, which proves these hellos provoke it).
    let mut hellos = |server: &Server| {
        for _ in 0..20 {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(&client_hello_with_ip_sni()).unwrap();
            let _ = s.read(&mut buf);
        }
    };
    hellos(&server);
    drop(server);
    let quiet = std::fs::read_to_string(&log).unwrap();
    assert!(!quiet.contains("SNI"), "{quiet}");
    let loud_log = dir.join("loud.log");
    let loud = spawn_logged(
        "MJPEGD_LOG=warn,rustls=warn; export MJPEGD_LOG",
        &loud_log,
        &tls_args,
    );
    hellos(&loud);
    drop(loud);
    let loud = std::fs::read_to_string(&loud_log).unwrap();
    assert!(loud.matches("Illegal SNI").count() >= 20, "{loud}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The server side of the connection from local port `client_port`, as `ss -tmn` shows it: (send queue
/// bytes, SO_SNDBUF as the kernel keeps it).
fn server_socket(server: &Server, client_port: u16) -> Option<(u64, u64)> {
    let out = std::process::Command::new("ss")
        .args(["-Htmn", "state", "established"])
        .arg(format!(
            "( sport = :{} and dport = :{client_port} )",
            server.addr.port()
        ))
        .output()
        .expect("ss (iproute2) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let send_q = text.split_whitespace().nth(1)?.parse().ok()?;
    let skmem = text.split("skmem:(").nth(1)?.split(')').next()?;
    let tb = skmem
        .split(',')
        .find_map(|f| f.strip_prefix("tb"))?
        .parse()
        .ok()?;
    Some((send_q, tb))
}

#[test]
fn an_evicted_all_client_is_cut_at_once_and_the_kernel_holds_a_bounded_send_buffer() {
    let server = Server::start(&[
        "--capture",
        "always",
        "--fps",
        "30",
        "--resolution",
        "640x480",
        "--buffer-memory",
        "2MiB",
    ]);
    // A client that reads keeps getting every frame; one that stops reading fills its buffers.
    let mut reader = server.stream("/stream?delivery=all");
    let stalled = Stream::open(server.addr, "/stream?delivery=all", Some(16 << 10));
    let port = stalled.reader.get_ref().local_addr().unwrap().port();
    let reading = std::thread::spawn(move || {
        let mut seqs = Vec::new();
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            match reader.next_part() {
                Ok(p) => seqs.push(p.seq()),
                Err(_) => break,
            }
        }
        seqs
    });
    let mut biggest = (0, 0);
    let evicted_at = eventually(
        Duration::from_secs(20),
        "the stalled client's eviction",
        || {
            if let Some((q, tb)) = server_socket(&server, port) {
                biggest = biggest.max((q, tb));
            }
            let state = server.state();
            (state["evictions"]["buffer_full"].as_u64() >= Some(1)).then(Instant::now)
        },
    );
    // The kernel's share: SO_SNDBUF 128 KiB, which the kernel keeps doubled (autotuning would let it grow
    // to net.ipv4.tcp_wmem's 4 MiB for a client that does not read).
    let (queued, sndbuf) = biggest;
    assert!(
        sndbuf > 0 && sndbuf <= 256 << 10,
        "the server's send buffer for an `all` stream is {sndbuf} bytes"
    );
    assert!(
        queued > 64 << 10,
        "the stalled client's queue filled ({queued} bytes)"
    );
    // What still arrives after the eviction: at most what was already in the client's own receive buffer.
    let mut sock = stalled.reader.into_inner();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut stale = 0usize;
    let mut buf = [0u8; 65536];
    while let Ok(n @ 1..) = sock.read(&mut buf) {
        stale += n;
    }
    let ended = evicted_at.elapsed();
    assert!(
        ended < Duration::from_secs(2),
        "the evicted connection ended {ended:?} after the eviction was seen"
    );
    assert!(
        stale < 128 << 10,
        "{stale} bytes reached the evicted client after its eviction: its send queue ({queued} bytes) was not discarded"
    );
    eprintln!(
        "all: SO_SNDBUF {sndbuf} B, queue up to {queued} B; after eviction {stale} B arrived, closed within {ended:?}"
    );
    drop(server);
    let seqs = reading.join().unwrap();
    assert!(
        seqs.len() >= 30,
        "the reading client got {} frames",
        seqs.len()
    );
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "the reading `all` client got every frame: {seqs:?}"
    );
}

/// Opens `n` connections that send nothing.
fn idle_connections(server: &Server, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| TcpStream::connect(server.addr).expect("the kernel accepts the connection"))
        .collect()
}

/// Whether `s` is answered 503 and closed within `within`.
fn refused_at_once(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got.starts_with(b"HTTP/1.1 503")
}

/// Raises this test process's open-file limit to its hard limit (it holds hundreds of connections).
fn raise_own_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// `/state`, once a connection slot is free again (the idle connections reach their head timeout).
fn state_when_answered(server: &Server) -> serde_json::Value {
    eventually(Duration::from_secs(10), "/state to answer", || {
        let mut s = TcpStream::connect(server.addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET /state HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        let r = parse_response(&all);
        (r.status == 200).then(|| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap())
    })["result"]
        .clone()
}

#[test]
fn with_few_file_descriptors_a_crowd_gets_503_at_once_and_state_still_answers() {
    raise_own_fd_limit();
    let dir = std::env::temp_dir().join(format!("mjpegd-resources-fds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let limit = "ulimit -Sn 256 && ulimit -Hn 256 || exit 1";
    let args = ["--fps", "5", "--head-timeout", "2s"];

    // Default limits follow the open-file limit: 192 connections, 168 of them streams.
    let log = dir.join("default.log");
    let server = spawn_logged(limit, &log, &args);
    let streams: Vec<_> = (0..168).map(|_| server.stream("/stream")).collect();
    assert!(streams.iter().all(|s| s.head.status == 200));
    assert_eq!(
        server.stream("/stream").head.status,
        503,
        "the 169th stream"
    );
    // /state answers while streams hold every stream slot.
    let state = server.state();
    assert_eq!(state["connections"]["max"], 192);
    // 300 more connections that say nothing: the first few take the last slots, the rest are answered
    // 503 at once instead of hanging in the accept queue.
    let started = Instant::now();
    let mut idle = idle_connections(&server, 300);
    for s in idle.iter_mut().skip(100) {
        assert!(
            refused_at_once(s, Duration::from_secs(3)),
            "answered, not left hanging"
        );
    }
    eprintln!(
        "fds: 300 idle connections opened and 200 of them answered 503 in {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let state = state_when_answered(&server);
    assert!(
        state["rejected"]["max_connections"].as_u64().unwrap() >= 200,
        "{state}"
    );
    assert_eq!(state["stream"]["clients"], 168);
    drop((idle, streams));
    drop(server);
    let quiet = std::fs::read_to_string(&log).unwrap();
    assert!(!quiet.contains("accept failed"), "{quiet}");

    // --max-connections above the descriptors: accept runs out of them, and the spare descriptor still
    // answers each newcomer 503 at once; the log says so at most once per 5 s.
    let log = dir.join("over.log");
    let server = spawn_logged(
        limit,
        &log,
        &[&args[..], &["--max-connections", "1000"]].concat(),
    );
    let mut idle = idle_connections(&server, 400);
    for s in idle.iter_mut().skip(250) {
        assert!(
            refused_at_once(s, Duration::from_secs(3)),
            "answered, not left hanging"
        );
    }
    let state = state_when_answered(&server);
    assert!(
        state["rejected"]["max_connections"].as_u64().unwrap() >= 150,
        "{state}"
    );
    drop(idle);
    drop(server);
    let over = std::fs::read_to_string(&log).unwrap();
    let reports = over.matches("accept failed").count();
    assert!(
        (1..=3).contains(&reports),
        "accept failures reported {reports} times:\n{over}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
