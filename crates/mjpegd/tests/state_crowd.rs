//! `/state` of a crowded camera, on the real binary (issue 18 item 9): the client list is one bounded
//! page (`?clients_offset=`, `?clients_limit=`) with the total beside it, and the pollers of a crowded
//! camera share one build per short interval instead of building a large document each.

mod common;

use common::*;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const STREAMS: usize = 240;

/// Opens `n` streams and drains them on a thread (so none is cut as a stalled writer); they close when
/// the returned flag is set or the test ends.
fn crowd(server: &Server, n: usize) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let mut socks = Vec::new();
    for _ in 0..n {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(b"GET /stream HTTP/1.1\r\nHost: t\r\nUser-Agent: crowd\r\n\r\n")
            .unwrap();
        s.set_nonblocking(true).unwrap();
        socks.push(s);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            for s in &mut socks {
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    stop
}

fn get_json(server: &Server, path: &str) -> serde_json::Value {
    let r = server.get(path);
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["result"].clone()
}

fn ids(state: &serde_json::Value) -> Vec<String> {
    state["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_crowded_cameras_state_lists_a_bounded_page_and_pollers_share_its_build() {
    let server = Server::start(&[
        "--resolution",
        "160x120",
        "--fps",
        "5",
        "--capture",
        "always",
    ]);
    // A quiet camera's document is built for every request: always current.
    let a = get_json(&server, "/state");
    let b = get_json(&server, "/state");
    assert_ne!(a["built_at"], b["built_at"]);
    assert_eq!(b["clients_total"], 0);

    let stop = crowd(&server, STREAMS);
    let full = eventually(Duration::from_secs(30), "every stream counted", || {
        let s = get_json(&server, "/state");
        (s["clients_total"] == STREAMS).then_some(s)
    });
    // One page of at most 100, with the total beside it (in µStreamer's count too).
    assert_eq!(full["stream"]["clients"], STREAMS);
    assert_eq!(full["clients"].as_array().unwrap().len(), 100);
    assert_eq!(
        full["stream"]["clients_stat"].as_object().unwrap().len(),
        100
    );
    assert_eq!(
        (
            full["clients_offset"].clone(),
            full["clients_limit"].clone()
        ),
        (0.into(), 100.into())
    );
    assert!(
        full.to_string().len() < 100_000,
        "{} bytes",
        full.to_string().len()
    );

    // Pages in id order cover every client once; past the end is empty. A crowded document may be up
    // to 250 ms old, so each page is read when the camera's own document is current (unchanged crowd).
    let mut seen = HashSet::new();
    for offset in (0..STREAMS).step_by(100) {
        let page = get_json(
            &server,
            &format!("/cams/default/state?clients_offset={offset}&clients_limit=100"),
        );
        assert_eq!(page["clients_total"], STREAMS);
        let got = ids(&page);
        assert_eq!(got.len(), (STREAMS - offset).min(100), "offset {offset}");
        for id in got {
            assert!(seen.insert(id.clone()), "{id} on two pages");
        }
    }
    assert_eq!(seen.len(), STREAMS);
    let small = get_json(&server, "/state?clients_limit=7&clients_offset=3");
    assert_eq!(ids(&small).len(), 7);
    let beyond = get_json(&server, "/state?clients_offset=18446744073709551615");
    assert_eq!(ids(&beyond).len(), 0);
    assert_eq!(beyond["clients_total"], STREAMS);
    for bad in [
        "clients_limit=101",
        "clients_limit=-1",
        "clients_offset=x",
        "clients_offset=1e3",
    ] {
        let r = server.get(&format!("/state?{bad}"));
        assert_eq!(r.status, 400, "{bad}");
        assert!(
            String::from_utf8_lossy(&r.body).contains("clients_"),
            "{bad}"
        );
    }

    // 16 pollers at once for 1.5 s: they share builds (at most one per 250 ms, one at a time), so far
    // fewer builds than requests.
    let polls: Vec<_> = (0..16)
        .map(|_| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut built = Vec::new();
                let end = Instant::now() + Duration::from_millis(1500);
                while Instant::now() < end {
                    let r = request(
                        addr,
                        "GET /cams/default/state HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                    );
                    assert_eq!(r.status, 200);
                    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                    built.push(v["result"]["built_at"].as_str().unwrap().to_string());
                }
                built
            })
        })
        .collect();
    let all: Vec<String> = polls.into_iter().flat_map(|p| p.join().unwrap()).collect();
    let builds: HashSet<&String> = all.iter().collect();
    eprintln!("{} requests, {} builds", all.len(), builds.len());
    assert!(all.len() >= 32, "{} requests", all.len());
    assert!(
        builds.len() * 2 <= all.len(),
        "{} builds for {} requests",
        builds.len(),
        all.len()
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
}
