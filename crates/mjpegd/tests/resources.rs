//! What a crowd cannot exhaust, and the HTTP details of the connection: the kernel's send buffers of
//! `all` clients and what an evicted client still gets, file descriptors, the TLS head timeout, and the
//! Connection header.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

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
