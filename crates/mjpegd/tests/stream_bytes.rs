//! The bytes on the wire, exactly. Plain-TCP parts go out with sendfile from a shared memfd per frame
//! (the newest few frames have one) and older frames from their own buffers; either way every byte a
//! client receives must be what the vectored writer (`mjpegd::http::stream::write_part`, the writer from
//! before sendfile and still the TLS path) writes for the same frames: for every policy and both header
//! modes, with frames large enough that a part leaves in several sends.

mod common;
#[path = "common/upstream.rs"]
mod upstream;
use bytes::Bytes;
use common::*;
use mjpegd_core::frame::{ADVANCE_HEAD, PART_TAIL};
use mjpegd_core::Frame;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Four 640x480 frames: two flat (a few KB) and two of noise at quality 95 (hundreds of KB, more than a
/// socket takes at once).
fn frames() -> Vec<Vec<u8>> {
    let mut out = upstream::make_jpegs(2, 640, 480);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2 {
        let pixels: Vec<u8> = (0..640 * 480 * 3)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let image = turbojpeg::Image {
            pixels: &pixels[..],
            width: 640,
            pitch: 640 * 3,
            height: 480,
            format: turbojpeg::PixelFormat::RGB,
        };
        let jpeg = turbojpeg::compress(image, 95, turbojpeg::Subsamp::Sub2x2).unwrap();
        out.insert(1, jpeg.to_vec());
    }
    assert!(out.iter().any(|j| j.len() > 300_000), "a large frame");
    out
}

/// What `write_part` (the vectored writer) puts on the wire for this frame.
fn reference(seq: u64, timestamp_us: u64, jpeg: &[u8], advance: bool) -> Vec<u8> {
    let frame = Frame::new(seq, timestamp_us, Bytes::copy_from_slice(jpeg));
    let mut out = Vec::new();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(mjpegd::http::stream::write_part(&mut out, &frame, advance))
        .unwrap();
    out
}

/// Reads from `s` until `buf` holds at least `n` bytes.
fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize) {
    let mut chunk = [0u8; 65536];
    while buf.len() < n {
        let got = s.read(&mut chunk).expect("stream keeps going");
        assert!(got > 0, "stream ended");
        buf.extend_from_slice(&chunk[..got]);
    }
}

/// Reads `parts` whole parts after the response head and checks every byte against the reference writer.
/// Returns the parts' sequence numbers (normal mode) or their frames' indexes (advance mode).
fn check_stream(
    s: &mut TcpStream,
    jpegs: &[Vec<u8>],
    policy: &str,
    advance: bool,
    parts: usize,
) -> Vec<u64> {
    let mut buf = Vec::new();
    while find(&buf, b"\r\n\r\n").is_none() {
        let n = buf.len() + 1;
        fill(s, &mut buf, n);
    }
    let head_end = find(&buf, b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("X-Delivery: {policy}\r\n")),
        "{head}"
    );
    let mut preamble = b"--boundarydonotcross\r\n".to_vec();
    if advance {
        preamble.extend_from_slice(ADVANCE_HEAD);
    }
    fill(s, &mut buf, head_end + preamble.len());
    assert_eq!(&buf[head_end..head_end + preamble.len()], &preamble[..]);
    let mut at = head_end + preamble.len();
    let mut ids = Vec::new();
    for _ in 0..parts {
        let expected = if advance {
            // Headers went ahead: the part is a JPEG, which must be one of the files.
            let longest = jpegs.iter().map(Vec::len).max().unwrap();
            fill(s, &mut buf, at + 2);
            let index = loop {
                if let Some(i) = jpegs.iter().position(|j| buf[at..].starts_with(j)) {
                    break i;
                }
                assert!(
                    buf.len() - at < longest + PART_TAIL.len(),
                    "{policy}: bytes at {at} are none of the frames"
                );
                let n = buf.len() + 1;
                fill(s, &mut buf, n);
            };
            ids.push(index as u64);
            reference(0, 0, &jpegs[index], true)
        } else {
            while find(&buf[at..], b"\r\n\r\n").is_none() {
                let n = buf.len() + 1;
                fill(s, &mut buf, n);
            }
            let end = at + find(&buf[at..], b"\r\n\r\n").unwrap();
            let headers = std::str::from_utf8(&buf[at..end]).unwrap();
            let field = |name: &str| {
                headers
                    .split("\r\n")
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or_else(|| panic!("{name} in {headers:?}"))
                    .to_string()
            };
            let len: usize = field("Content-Length: ").parse().unwrap();
            let seq: u64 = field("X-Frame-Sequence: ").parse().unwrap();
            let (secs, micros) = field("X-Timestamp: ")
                .split_once('.')
                .map(|(s, m)| (s.parse::<u64>().unwrap(), m.parse::<u64>().unwrap()))
                .unwrap();
            fill(s, &mut buf, end + 4 + len);
            let jpeg = &buf[end + 4..end + 4 + len];
            assert!(
                jpegs.iter().any(|j| j == jpeg),
                "{policy}: frame {seq} is not one of the files"
            );
            ids.push(seq);
            reference(seq, secs * 1_000_000 + micros, jpeg, false)
        };
        fill(s, &mut buf, at + expected.len());
        assert!(
            buf[at..at + expected.len()] == expected[..],
            "{policy} (advance {advance}): part {} differs from the vectored writer's bytes",
            ids.len()
        );
        at += expected.len();
    }
    ids
}

fn open(server: &Server, policy: &str, advance: bool) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /stream?delivery={policy}&advance_headers={} HTTP/1.1\r\nHost: test\r\n\r\n",
        advance as u8
    )
    .unwrap();
    s
}

/// mjpegd replaying `jpegs` from a folder at 30 fps (the folder lives as long as the returned TempDir).
fn replay(jpegs: &[Vec<u8>], what: &str) -> (TempDir, Server) {
    let dir = TempDir::new(what);
    for (i, j) in jpegs.iter().enumerate() {
        std::fs::write(dir.0.join(format!("f{i}.jpg")), j).unwrap();
    }
    let server = Server::start(&[
        "--source",
        &format!("files:{}", dir.0.display()),
        "--fps",
        "30",
        "--capture",
        "always",
        "--resolution",
        "640x480",
    ]);
    (dir, server)
}

#[test]
fn every_policy_and_header_mode_puts_the_vectored_writers_bytes_on_the_wire() {
    let jpegs = frames();
    let (_dir, server) = replay(&jpegs, "stream-bytes");
    for advance in [false, true] {
        for policy in ["latest", "all", "lockstep"] {
            let mut s = open(&server, policy, advance);
            let ids = check_stream(&mut s, &jpegs, policy, advance, 12);
            // Under all and lockstep a lone client gets every frame: consecutive numbers, or the files in
            // their (looping) order.
            if policy != "latest" {
                for w in ids.windows(2) {
                    let next = if advance { (w[0] + 1) % 4 } else { w[0] + 1 };
                    assert_eq!(w[1], next, "{policy} (advance {advance}): {ids:?}");
                }
            } else if !advance {
                assert!(ids.windows(2).all(|w| w[1] > w[0]), "latest: {ids:?}");
            }
        }
    }
}

#[test]
fn an_all_client_far_behind_gets_old_frames_from_their_own_bytes_and_new_ones_shared_identically() {
    let jpegs = frames();
    let (_dir, server) = replay(&jpegs, "stream-bytes-behind");
    for advance in [false, true] {
        let mut s = open(&server, "all", advance);
        // Not reading for a second: its backlog grows to ~30 frames, of which only the newest few still
        // have a shared part; then it reads them all, old (vectored) and new (sendfile) alike.
        std::thread::sleep(Duration::from_secs(1));
        let started = Instant::now();
        let ids = check_stream(&mut s, &jpegs, "all", advance, 40);
        for w in ids.windows(2) {
            let next = if advance { (w[0] + 1) % 4 } else { w[0] + 1 };
            assert_eq!(w[1], next, "all (advance {advance}): {ids:?}");
        }
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

/// sendfile counts as reading a file (`rchar` in /proc/PID/io); vectored writes do not. Three clients
/// reading the same frames make the server read about three times what each receives (plus the source's
/// own reads of its files, about once): far above what copying would show.
#[test]
fn plain_tcp_clients_are_sent_parts_from_shared_memory() {
    let jpegs = frames();
    let dir = TempDir::new("stream-bytes-rchar");
    for (i, j) in jpegs.iter().enumerate() {
        std::fs::write(dir.0.join(format!("f{i}.jpg")), j).unwrap();
    }
    let server = Server::start(&[
        "--source",
        &format!("files:{}", dir.0.display()),
        "--fps",
        "30",
        "--capture",
        "always",
        "--resolution",
        "640x480",
    ]);
    let rchar = || -> u64 {
        let io = std::fs::read_to_string(format!("/proc/{}/io", server.child.id())).unwrap();
        io.lines()
            .find_map(|l| l.strip_prefix("rchar: "))
            .unwrap()
            .parse()
            .unwrap()
    };
    let mut clients: Vec<Stream> = (0..3)
        .map(|_| server.stream("/stream?delivery=all"))
        .collect();
    for c in &mut clients {
        c.next_part().unwrap();
    }
    let before = rchar();
    let mut received = 0;
    for _ in 0..20 {
        for (i, c) in clients.iter_mut().enumerate() {
            let part = c.next_part().unwrap();
            if i == 0 {
                received += part.body.len() as u64;
            }
        }
    }
    let read = rchar() - before;
    assert!(
        read > 2 * received,
        "the server read {read} bytes while each client received {received}: parts were copied, not sent from files"
    );
}

/// A client that stops reading with a part half sent (frames of hundreds of KB against a 4 KiB receive
/// buffer) is waiting on sendfile's writability, not in a write call: the write timeout (lockstep: the
/// lockstep timeout) must still end it, under every policy, and the readers beside it carry on.
#[test]
fn clients_that_stop_reading_mid_part_are_evicted_at_their_timeouts() {
    let jpegs = frames();
    let dir = TempDir::new("stream-bytes-stalled");
    for (i, j) in jpegs.iter().enumerate() {
        std::fs::write(dir.0.join(format!("f{i}.jpg")), j).unwrap();
    }
    let server = Server::start(&[
        "--source",
        &format!("files:{}", dir.0.display()),
        "--fps",
        "30",
        "--capture",
        "always",
        "--resolution",
        "640x480",
        "--write-timeout",
        "1s",
        "--lockstep-timeout",
        "1s",
    ]);
    let stalled: Vec<Stream> = ["latest", "all", "lockstep"]
        .iter()
        .map(|p| Stream::open(server.addr, &format!("/stream?delivery={p}"), Some(4096)))
        .collect();
    let mut readers: Vec<Stream> = ["latest", "all", "lockstep"]
        .iter()
        .map(|p| server.stream(&format!("/stream?delivery={p}")))
        .collect();
    let state = eventually(
        Duration::from_secs(8),
        "the stalled clients evicted",
        || {
            for r in &mut readers {
                r.next_part().expect("readers keep getting frames");
            }
            let s = server.state();
            (s["stream"]["clients"] == 3).then_some(s)
        },
    );
    assert_eq!(
        state["evictions"]["write_timeout"], 2,
        "{}",
        state["evictions"]
    );
    assert_eq!(
        state["evictions"]["lockstep_timeout"], 1,
        "{}",
        state["evictions"]
    );
    for r in &mut readers {
        for _ in 0..10 {
            assert_whole_jpeg(&r.next_part().unwrap().body);
        }
    }
    drop(stalled);
}
