//! Real client addresses behind a reverse proxy, on the real binary over loopback: `Forwarded` /
//! `X-Forwarded-For` are believed from `--trusted-proxy` peers only, and a `?proxy-protocol=1` listener
//! takes the client from a PROXY v1 or v2 header. The address is the one the per-address connection limit
//! counts and `/state` shows. (The recipes' proxies in front are tested in recipes.rs.)

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Opens a stream from `ip` with `extra` header lines, and reads until its first part has begun.
fn stream_from(ip: &str, server: SocketAddr, extra: &str) -> TcpStream {
    let mut s = connect_from(ip, server);
    write!(s, "GET /stream HTTP/1.1\r\nHost: t\r\n{extra}\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while find(&got, b"\r\n\r\n").is_none() {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the stream closed before its head");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    s
}

/// The status a request from `ip` with `extra` header lines gets (0: closed without an answer).
fn status_from(ip: &str, server: SocketAddr, extra: &str) -> u16 {
    let mut s = connect_from(ip, server);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = write!(s, "GET /stream HTTP/1.1\r\nHost: t\r\n{extra}\r\n");
    let mut got = [0u8; 12];
    match s.read_exact(&mut got) {
        Ok(()) => std::str::from_utf8(&got[9..12]).unwrap().parse().unwrap(),
        Err(_) => 0,
    }
}

/// The addresses `/state` shows for the clients of the (only) camera (asked from an address of its own,
/// which no limit in these tests is full for).
fn client_addresses(server: &Server) -> Vec<String> {
    let mut s = connect_from("127.0.0.99", server.addr);
    s.write_all(b"GET /state HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let r = parse_response(&all);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let state: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let mut v: Vec<String> = state["result"]["clients"]
        .as_array()
        .unwrap_or_else(|| panic!("no client list in {state}"))
        .iter()
        .map(|c| c["address"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn forwarded_addresses_are_believed_from_trusted_proxies_only() {
    // 127.0.0.1 is the proxy; 127.0.0.5 is any other peer.
    let server = Server::start(&[
        "--trusted-proxy",
        "127.0.0.1",
        "--max-connections-per-address",
        "2",
    ]);
    let from_a = "X-Forwarded-For: 6.6.6.6, 203.0.113.7\r\n";
    let from_b = "Forwarded: for=\"[2001:db8::9]:4711\";proto=http\r\n";
    // Through the proxy: two streams for client A, one for client B. Three connections from the proxy's
    // own address, past its limit of two, all admitted: each counts under its client.
    let _a1 = stream_from("127.0.0.1", server.addr, from_a);
    let _a2 = stream_from("127.0.0.1", server.addr, from_a);
    let _b1 = stream_from("127.0.0.1", server.addr, from_b);
    // A third for A is past A's limit, and answered so.
    assert_eq!(status_from("127.0.0.1", server.addr, from_a), 503);
    // An untrusted peer naming someone else is counted (and shown) as itself: its spoofed header neither
    // escapes its own limit nor eats into A's.
    let _s1 = stream_from("127.0.0.5", server.addr, "X-Forwarded-For: 203.0.113.8\r\n");
    let _s2 = stream_from("127.0.0.5", server.addr, "X-Forwarded-For: 203.0.113.9\r\n");
    assert_eq!(
        status_from(
            "127.0.0.5",
            server.addr,
            "X-Forwarded-For: 203.0.113.10\r\n"
        ),
        503
    );
    let shown = eventually(Duration::from_secs(5), "five clients in /state", || {
        let v = client_addresses(&server);
        (v.len() == 5).then_some(v)
    });
    assert_eq!(
        shown
            .iter()
            .filter(|a| a.as_str() == "203.0.113.7 (via proxy)")
            .count(),
        2,
        "{shown:?}"
    );
    assert!(
        shown.contains(&"[2001:db8::9]:4711 (via proxy)".to_string()),
        "{shown:?}"
    );
    assert_eq!(
        shown.iter().filter(|a| a.starts_with("127.0.0.5:")).count(),
        2,
        "an untrusted peer is shown as itself: {shown:?}"
    );
    assert!(
        !shown
            .iter()
            .any(|a| a.contains("203.0.113.8") || a.contains("6.6.6.6")),
        "a spoofed address is never believed: {shown:?}"
    );
}

#[test]
fn without_trusted_proxies_the_headers_change_nothing() {
    let server = Server::start(&["--max-connections-per-address", "1"]);
    let _one = stream_from("127.0.0.1", server.addr, "X-Forwarded-For: 203.0.113.7\r\n");
    assert_eq!(
        status_from("127.0.0.1", server.addr, "X-Forwarded-For: 203.0.113.8\r\n"),
        503,
        "another forwarded name does not get around the limit"
    );
    let shown = client_addresses(&server);
    assert!(shown[0].starts_with("127.0.0.1:"), "{shown:?}");
}

/// A PROXY protocol version 2 header for a TCP/IPv4 client.
fn proxy_v2(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(c), SocketAddr::V4(s)) = (client, server) else {
        panic!("IPv4 only")
    };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    h.push(0x11); // TCP over IPv4
    h.extend_from_slice(&12u16.to_be_bytes());
    h.extend_from_slice(&c.ip().octets());
    h.extend_from_slice(&s.ip().octets());
    h.extend_from_slice(&c.port().to_be_bytes());
    h.extend_from_slice(&s.port().to_be_bytes());
    h
}

#[test]
fn a_proxy_protocol_listener_takes_the_client_from_v1_and_v2_headers() {
    let port = free_port();
    let pp: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let server = Server::start(&[
        "--listen",
        &format!("127.0.0.1:{port}?proxy-protocol=1"),
        "--max-connections-per-address",
        "1",
    ]);
    // Version 1, with the request in the same write.
    let mut v1 = TcpStream::connect(pp).unwrap();
    v1.write_all(
        b"PROXY TCP4 198.51.100.1 127.0.0.1 40001 8080\r\nGET /stream HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let mut head = [0u8; 12];
    v1.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // Version 2, the header and the request in separate writes.
    let mut v2 = TcpStream::connect(pp).unwrap();
    v2.write_all(&proxy_v2("198.51.100.2:40002".parse().unwrap(), pp))
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    v2.write_all(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    v2.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // Both come from 127.0.0.1, past its limit of one: each counts as the client its header names.
    let shown = eventually(Duration::from_secs(5), "two clients", || {
        let v = client_addresses(&server);
        (v.len() == 2).then_some(v)
    });
    assert_eq!(
        shown,
        vec![
            "198.51.100.1:40001 (via proxy)".to_string(),
            "198.51.100.2:40002 (via proxy)".to_string()
        ]
    );
    // The same client again is past its limit.
    let mut again = TcpStream::connect(pp).unwrap();
    again
        .write_all(b"PROXY TCP4 198.51.100.1 127.0.0.1 40009 8080\r\nGET /stream HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    again
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = again.read_to_end(&mut got);
    assert!(
        got.starts_with(b"HTTP/1.1 503"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // Without a header, or with a forged-looking one, the connection is closed unanswered: such a
    // listener is for the proxy only.
    for first in [
        &b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n"[..],
        b"PROXY TCP4 1.2.3 127.0.0.1 1 2\r\nGET / HTTP/1.1\r\n\r\n",
    ] {
        let mut bare = TcpStream::connect(pp).unwrap();
        bare.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        bare.write_all(first).unwrap();
        let mut got = Vec::new();
        let _ = bare.read_to_end(&mut got);
        assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    }
    // Headers naming someone else from a PROXY-named client are not believed (it is not a proxy).
    drop(v1);
    let mut spoof = TcpStream::connect(pp).unwrap();
    spoof
        .write_all(b"PROXY TCP4 198.51.100.3 127.0.0.1 40003 8080\r\nGET /stream HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 10.9.9.9\r\n\r\n")
        .unwrap();
    spoof.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "{}", String::from_utf8_lossy(&head));
    let shown = eventually(Duration::from_secs(5), "the third client", || {
        let v = client_addresses(&server);
        v.iter().any(|a| a.starts_with("198.51.100.3")).then_some(v)
    });
    assert!(!shown.iter().any(|a| a.contains("10.9.9.9")), "{shown:?}");
}
