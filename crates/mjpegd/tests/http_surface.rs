//! The HTTP surface of the real binary: every endpoint and alias, and the errors.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn every_stream_url_serves_a_close_delimited_mjpeg_stream() {
    let server = Server::start(&["--capture", "always"]);
    for path in [
        "/stream",
        "/mjpeg/1",
        "/?action=stream",
        "/stream?delivery=all",
        "/stream?delivery=lockstep",
    ] {
        let mut s = server.stream(path);
        assert_eq!(s.head.status, 200, "{path}");
        let h = &s.head.headers;
        assert_eq!(
            h["content-type"], "multipart/x-mixed-replace;boundary=boundarydonotcross",
            "{path}"
        );
        assert!(
            !h.contains_key("transfer-encoding"),
            "{path}: never chunked"
        );
        assert!(
            !h.contains_key("content-length"),
            "{path}: body ends at close"
        );
        assert!(h["cache-control"].contains("no-store"), "{path}");
        let part = s.next_part().unwrap();
        assert_eq!(part.headers["content-type"], "image/jpeg");
        assert!(part.headers["x-timestamp"].contains('.'));
        assert_whole_jpeg(&part.body);
    }
}

#[test]
fn parts_are_whole_jpegs_with_exact_lengths_and_rising_sequence_numbers() {
    let server = Server::start(&["--fps", "60"]);
    let mut s = server.stream("/stream");
    let mut last = None;
    for _ in 0..30 {
        let part = s.next_part().unwrap();
        assert_whole_jpeg(&part.body);
        assert_eq!(
            part.headers["content-length"].parse::<usize>().unwrap(),
            part.body.len()
        );
        let seq = part.seq();
        if let Some(last) = last {
            assert!(seq > last, "sequence {seq} after {last}");
        }
        let ts: f64 = part.headers["x-timestamp"].parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((now - ts).abs() < 5.0, "X-Timestamp is the capture time");
        last = Some(seq);
    }
}

#[test]
fn snapshots_and_their_aliases_return_the_newest_jpeg() {
    // On-demand capture: the snapshot itself wakes the source.
    let server = Server::start(&[]);
    for path in ["/snapshot", "/jpg", "/?action=snapshot"] {
        let r = server.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.headers["content-type"], "image/jpeg");
        assert_eq!(
            r.headers["content-length"].parse::<usize>().unwrap(),
            r.body.len()
        );
        assert!(r.headers.contains_key("x-timestamp"));
        assert_whole_jpeg(&r.body);
    }
}

#[test]
fn state_reports_source_clients_and_evictions() {
    let server = Server::start(&["--capture", "always", "--fps", "25"]);
    let mut a = server.stream("/stream?delivery=latest&fps=5");
    let mut b = server.stream("/mjpeg/1?delivery=all");
    a.next_part().unwrap();
    b.next_part().unwrap();
    // (a client may read a frame a moment before the server counts it as sent)
    let state = eventually(Duration::from_secs(5), "both clients in /state", || {
        let s = server.state();
        let clients = s["clients"].as_array().unwrap();
        (clients.len() == 2 && clients.iter().all(|c| c["frames_sent"].as_u64() >= Some(1)))
            .then_some(s)
    });
    assert_eq!(state["source"]["online"], true);
    assert_eq!(state["source"]["resolution"]["width"], 320);
    assert_eq!(state["source"]["desired_fps"], 25.0);
    let clients = state["clients"].as_array().unwrap();
    assert_eq!(clients[0]["delivery"], "latest");
    assert_eq!(clients[0]["fps_cap"], 5.0);
    assert_eq!(clients[1]["delivery"], "all");
    for c in clients {
        assert!(c["address"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(c["frames_sent"].as_u64().unwrap() >= 1);
        for key in [
            "id",
            "frames_skipped",
            "bytes_sent",
            "frames_behind",
            "connected_since",
        ] {
            assert!(!c[key].is_null(), "{key}");
        }
    }
    assert_eq!(state["evictions"]["buffer_full"], 0);
    assert_eq!(state["stream"]["clients"], 2);
}

#[test]
fn the_page_shows_the_stream_and_the_state() {
    let server = Server::start(&[]);
    let r = server.get("/");
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].starts_with("text/html"));
    let html = String::from_utf8(r.body).unwrap();
    assert!(html.contains(r#"data-base="/""#) && html.contains(r#"base + "stream""#));
    let html = String::from_utf8(server.get("/cams/default/").body).unwrap();
    assert!(html.contains(r#"data-base="/cams/default/""#));
}

#[test]
fn bad_requests_get_the_right_status() {
    let server = Server::start(&["--head-timeout", "300ms"]);
    let addr = server.addr;
    assert_eq!(server.get("/nope").status, 404);
    assert_eq!(server.get("/?action=explode").status, 400);
    assert_eq!(server.get("/stream?delivery=fastest").status, 400);
    assert_eq!(server.get("/stream?fps=0").status, 400);
    assert_eq!(server.get("/stream?delivery=all&fps=5").status, 400);
    let post = request(
        addr,
        "POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(post.status, 405);
    assert_eq!(post.headers["allow"], "GET, HEAD");
    assert_eq!(request(addr, "GARBAGE\x01\x02 \r\n\r\n").status, 400);
    assert_eq!(
        request(
            addr,
            "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .status,
        400
    );
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(request(addr, &huge).status, 431);
    // A head that never completes is answered 408 and closed, within the head timeout.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    slow.write_all(b"GET / HT").unwrap();
    let started = Instant::now();
    let mut all = Vec::new();
    let _ = slow.read_to_end(&mut all);
    assert_eq!(parse_response(&all).status, 408);
    assert!(started.elapsed() < Duration::from_secs(3));
    // HEAD gets headers only.
    let head = request(
        addr,
        "HEAD /snapshot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

#[test]
fn over_max_clients_gets_503_not_a_hang() {
    let server = Server::start(&["--max-clients", "2"]);
    let mut a = server.stream("/stream");
    let _b = server.stream("/stream?delivery=all");
    let started = Instant::now();
    let third = server.get("/stream");
    assert_eq!(third.status, 503);
    assert!(String::from_utf8_lossy(&third.body).contains("max-clients"));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(a.next_part().is_ok(), "existing clients are unaffected");
    assert_eq!(server.state()["rejected"]["max_clients"], 1);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start(&["--capture", "always"]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /state HTTP/1.1\r\nHost: x\r\n\r\nGET /snapshot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let first = parse_response(&all);
    assert_eq!(first.status, 200);
    let len: usize = first.headers["content-length"].parse().unwrap();
    let second = parse_response(&first.body[len..]);
    assert_eq!(second.status, 200);
    assert_eq!(second.headers["content-type"], "image/jpeg");
}

#[test]
fn sigterm_ends_streams_and_exits_zero() {
    let mut server = Server::start(&[]);
    let mut s = server.stream("/stream");
    s.next_part().unwrap();
    let started = Instant::now();
    let status = server.stop();
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The stream ends (EOF) rather than hanging.
    let mut rest = Vec::new();
    let _ = s.reader.read_to_end(&mut rest);
}

/// Reads bytes until `needle` has been seen, returning everything read.
fn read_until(s: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut byte = [0u8];
    while find(&got, needle).is_none() {
        s.read_exact(&mut byte).expect("more bytes");
        got.push(byte[0]);
    }
    got
}

#[test]
fn chromium_gets_each_part_header_ahead_so_it_paints_the_frame_at_once() {
    // At 2 fps a frame that waited for the next one would be half a second late.
    let server = Server::start(&["--fps", "2", "--capture", "always"]);
    for (path, ua) in [
        ("/stream", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0 Safari/537.36"),
        ("/stream?advance_headers=1", "curl/8"),
    ] {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: {ua}\r\n\r\n").unwrap();
        let head = read_until(&mut s, b"\r\n\r\n--boundarydonotcross\r\nContent-Type: image/jpeg\r\n\r\n");
        assert!(head.starts_with(b"HTTP/1.1 200 OK"));
        // The JPEG, its boundary and the next part's headers arrive together, before the next frame exists.
        let jpeg = read_until(&mut s, b"\xff\xd9");
        assert_eq!(&jpeg[..2], b"\xff\xd8");
        let started = Instant::now();
        let tail = read_until(&mut s, b"\r\n--boundarydonotcross\r\nContent-Type: image/jpeg\r\n\r\n");
        assert_eq!(tail.len(), b"\r\n--boundarydonotcross\r\nContent-Type: image/jpeg\r\n\r\n".len());
        assert!(started.elapsed() < Duration::from_millis(200), "{path}: sent with the frame");
    }
    // Other clients get Content-Length and the per-part headers.
    let mut s = server.stream("/stream");
    assert!(s
        .next_part()
        .unwrap()
        .headers
        .contains_key("content-length"));
}

#[test]
fn a_closed_stdout_does_not_stop_the_server() {
    // Started by something that stopped reading its output (a closed pipe): the banner's write fails,
    // the server serves all the same.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_mjpegd"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--resolution",
            "320x240",
        ])
        .env("MJPEGD_LOG", "warn")
        .stdout(writer)
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut server = Server { child, addr }; // stopped on drop, even if an assertion fails
    let snap = eventually(Duration::from_secs(10), "a snapshot", || {
        TcpStream::connect(addr).ok()?;
        let r = request(
            addr,
            "GET /snapshot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        (r.status == 200).then_some(r)
    });
    assert!(snap.body.starts_with(&[0xFF, 0xD8]));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server is still up"
    );
    assert!(server.stop().success());
}

#[test]
fn cors_is_off_by_default_and_allow_origin_sets_it_on_every_response() {
    let get = |addr, path: &str| {
        request(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
    };
    let closed = Server::start(&["--capture", "always"]);
    for path in ["/snapshot", "/state", "/"] {
        let r = get(closed.addr, path);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            !r.headers.contains_key("access-control-allow-origin"),
            "{path}: no CORS header unless asked for"
        );
    }
    assert!(!closed
        .stream("/stream")
        .head
        .headers
        .contains_key("access-control-allow-origin"));

    let open = Server::start(&[
        "--capture",
        "always",
        "--allow-origin",
        "https://ha.example",
    ]);
    for path in ["/snapshot", "/state", "/"] {
        let r = get(open.addr, path);
        assert_eq!(
            r.headers
                .get("access-control-allow-origin")
                .map(String::as_str),
            Some("https://ha.example"),
            "{path}"
        );
    }
    let s = open.stream("/stream");
    assert_eq!(
        s.head
            .headers
            .get("access-control-allow-origin")
            .map(String::as_str),
        Some("https://ha.example")
    );
}

#[test]
fn a_burst_of_connections_is_queued_by_the_kernel_not_dropped() {
    // While mjpegd is stopped, nothing is accepted: only the listen queue holds the connections. With
    // the common default of 1024 the rest would hang in SYN retries for seconds; mjpegd asks for more.
    const BURST: usize = 1500;
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .map_or(4096, |s| s.trim().parse().unwrap_or(4096));
    if somaxconn <= BURST {
        eprintln!("net.core.somaxconn is {somaxconn}: the kernel caps every queue below the burst");
        return;
    }
    let server = Server::start(&["--max-clients", "5000"]);
    let pid = server.child.id() as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let mut conns = Vec::new();
    let mut refused = 0;
    for _ in 0..BURST {
        match TcpStream::connect_timeout(&server.addr, Duration::from_millis(500)) {
            Ok(s) => conns.push(s),
            Err(_) => refused += 1,
        }
        if refused > 5 {
            break;
        }
    }
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_eq!(refused, 0, "connections not queued after {}", conns.len());
    // And once it runs again, every one of them is served.
    for s in conns.iter_mut().step_by(100) {
        s.write_all(b"GET /state HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
    }
    for s in conns.iter_mut().step_by(100) {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        assert_eq!(parse_response(&all).status, 200);
    }
}
