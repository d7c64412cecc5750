//! A fake camera that answers each GET with one still JPEG (an ESP32's `/capture`, a cheap camera's
//! `snapshot.jpg`) on keep-alive connections, or with an endless multipart stream; optionally slow, and
//! optionally behind HTTP Digest with SHA-256 or MD5. Apache's mod_auth_digest does MD5 only, so this is
//! where SHA-256 is checked: with the md-5 and sha2 crates directly, not with mjpegd's code, and the
//! server itself is checked against curl's Digest in the tests.
#![allow(dead_code)]

use md5::Md5;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Digest as this camera demands it.
#[derive(Clone, Debug)]
pub struct DigestRule {
    /// "SHA-256" or "MD5", or either with "-sess".
    pub algorithm: &'static str,
    pub user: &'static str,
    pub password: &'static str,
    /// A nonce answers this many requests; the next gets `stale=true` and a new one.
    pub nonce_uses: u32,
}

impl DigestRule {
    fn hash(&self, s: &str) -> String {
        let bytes = match self.algorithm.trim_end_matches("-sess") {
            "SHA-256" => Sha256::digest(s.as_bytes()).to_vec(),
            "MD5" => Md5::digest(s.as_bytes()).to_vec(),
            other => panic!("no {other}"),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What the camera does.
#[derive(Clone, Debug)]
pub struct StillOptions {
    /// Served in turn, one per answer.
    pub frames: Vec<Vec<u8>>,
    pub content_type: &'static str,
    /// Time taken before each answer (a slow camera).
    pub delay: Duration,
    /// `Connection: close` after each answer.
    pub close_each: bool,
    pub digest: Option<DigestRule>,
    /// Answer with a multipart stream at this rate instead of one still.
    pub stream_fps: Option<u32>,
}

impl StillOptions {
    pub fn new(frames: Vec<Vec<u8>>) -> StillOptions {
        StillOptions {
            frames,
            content_type: "image/jpeg",
            delay: Duration::ZERO,
            close_each: false,
            digest: None,
            stream_fps: None,
        }
    }
}

#[derive(Default)]
pub struct Counters {
    /// Requests answered 200.
    pub ok: AtomicUsize,
    /// Requests answered 401.
    pub unauthorized: AtomicUsize,
    /// Of which with `stale=true`.
    pub stale: AtomicUsize,
    pub connections: AtomicUsize,
    in_flight: AtomicUsize,
    /// Most requests being answered at once, over all connections.
    pub max_in_flight: AtomicUsize,
    /// Requests that came with a Digest response that did not check out (wrong hash, nc not increasing,
    /// opaque not echoed).
    pub bad_digests: AtomicUsize,
    /// Highest nc accepted for each nonce.
    pub nc: Mutex<HashMap<String, u32>>,
}

pub struct StillCamera {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

impl StillCamera {
    pub fn start(options: StillOptions) -> StillCamera {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let nonces = Arc::new(Mutex::new(Nonces::default()));
        let frame = Arc::new(AtomicUsize::new(0));
        let (c, s) = (counters.clone(), stop.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        sock.set_nonblocking(false).unwrap();
                        c.connections.fetch_add(1, Ordering::Relaxed);
                        let (o, c, s, n, f) = (
                            options.clone(),
                            c.clone(),
                            s.clone(),
                            nonces.clone(),
                            frame.clone(),
                        );
                        std::thread::spawn(move || serve(sock, &o, &c, &s, &n, &f));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        StillCamera {
            addr,
            counters,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ok(&self) -> usize {
        self.counters.ok.load(Ordering::Relaxed)
    }
}

impl Drop for StillCamera {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Nonces {
    issued: usize,
    /// The valid nonce, its opaque, and how many requests it answered.
    current: Option<(String, String, u32)>,
}

impl Nonces {
    fn fresh(&mut self) -> (String, String) {
        self.issued += 1;
        let nonce = format!("n{}x{:08x}", self.issued, std::process::id());
        let opaque = format!("op{}", self.issued);
        self.current = Some((nonce.clone(), opaque.clone(), 0));
        (nonce, opaque)
    }
}

/// `key=value, key="value"` of a Digest `Authorization` (no commas inside values in these tests).
fn params(header: &str) -> HashMap<String, String> {
    header
        .split(',')
        .filter_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect()
}

enum Verdict {
    Ok,
    /// 401 with a fresh challenge, stale or not.
    Challenge {
        stale: bool,
    },
}

fn check(
    rule: &DigestRule,
    authorization: Option<&str>,
    target: &str,
    nonces: &Mutex<Nonces>,
    counters: &Counters,
) -> Verdict {
    let Some(header) = authorization.and_then(|a| a.strip_prefix("Digest ")) else {
        return Verdict::Challenge { stale: false };
    };
    let p = params(header);
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    let mut n = nonces.lock().unwrap();
    let Some((nonce, opaque, uses)) = n.current.as_mut() else {
        return Verdict::Challenge { stale: false };
    };
    let nc = u32::from_str_radix(get("nc"), 16).unwrap_or(0);
    let mut ha1 = rule.hash(&format!("{}:cam:{}", rule.user, rule.password));
    if rule.algorithm.ends_with("-sess") {
        ha1 = rule.hash(&format!("{ha1}:{}:{}", get("nonce"), get("cnonce")));
    }
    let ha2 = rule.hash(&format!("GET:{}", get("uri")));
    let expected = rule.hash(&format!(
        "{ha1}:{}:{}:{}:auth:{ha2}",
        get("nonce"),
        get("nc"),
        get("cnonce")
    ));
    let mut seen = counters.nc.lock().unwrap();
    let last = seen.get(get("nonce")).copied().unwrap_or(0);
    let well_formed = get("username") == rule.user
        && get("realm") == "cam"
        && get("uri") == target
        && get("qop") == "auth"
        && get("algorithm") == rule.algorithm
        && get("cnonce").len() >= 8
        && get("response") == expected;
    if !well_formed {
        return Verdict::Challenge { stale: false };
    }
    if get("opaque") != opaque.as_str() && get("nonce") == nonce.as_str() || nc <= last {
        counters.bad_digests.fetch_add(1, Ordering::Relaxed);
        return Verdict::Challenge { stale: false };
    }
    if get("nonce") != nonce.as_str() || *uses >= rule.nonce_uses {
        // Right credentials, an old nonce.
        return Verdict::Challenge { stale: true };
    }
    *uses += 1;
    seen.insert(get("nonce").to_string(), nc);
    Verdict::Ok
}

fn serve(
    mut sock: TcpStream,
    o: &StillOptions,
    counters: &Counters,
    stop: &AtomicBool,
    nonces: &Mutex<Nonces>,
    frame: &AtomicUsize,
) {
    let _ = sock.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match sock.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let now = counters.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        counters.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let target = head
            .lines()
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or("/")
            .to_string();
        let authorization = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("authorization").then(|| v.trim())
        });
        std::thread::sleep(o.delay);
        let verdict = match &o.digest {
            Some(rule) => check(rule, authorization, &target, nonces, counters),
            None => Verdict::Ok,
        };
        let close = if o.close_each {
            "Connection: close\r\n"
        } else {
            ""
        };
        let written = match verdict {
            Verdict::Challenge { stale } => {
                counters.unauthorized.fetch_add(1, Ordering::Relaxed);
                if stale {
                    counters.stale.fetch_add(1, Ordering::Relaxed);
                }
                let rule = o.digest.as_ref().unwrap();
                let (nonce, opaque) = nonces.lock().unwrap().fresh();
                let body = "<html>401</html>";
                let head = format!(
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"cam\", qop=\"auth\", algorithm={}, nonce=\"{nonce}\", opaque=\"{opaque}\"{}\r\nContent-Type: text/html\r\nContent-Length: {}\r\n{close}\r\n{body}",
                    rule.algorithm,
                    if stale { ", stale=true" } else { "" },
                    body.len()
                );
                sock.write_all(head.as_bytes())
            }
            Verdict::Ok if o.stream_fps.is_some() => {
                counters.ok.fetch_add(1, Ordering::Relaxed);
                counters.in_flight.fetch_sub(1, Ordering::SeqCst);
                stream(&mut sock, o, stop, frame);
                return;
            }
            Verdict::Ok => {
                counters.ok.fetch_add(1, Ordering::Relaxed);
                let i = frame.fetch_add(1, Ordering::Relaxed);
                let jpeg = &o.frames[i % o.frames.len()];
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n{close}\r\n",
                    o.content_type,
                    jpeg.len()
                );
                sock.write_all(head.as_bytes())
                    .and_then(|_| sock.write_all(jpeg))
            }
        };
        counters.in_flight.fetch_sub(1, Ordering::SeqCst);
        if written.is_err() || o.close_each {
            return;
        }
    }
}

fn stream(sock: &mut TcpStream, o: &StillOptions, stop: &AtomicBool, frame: &AtomicUsize) {
    let fps = o.stream_fps.unwrap();
    if sock
        .write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n",
        )
        .is_err()
    {
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        let i = frame.fetch_add(1, Ordering::Relaxed);
        let jpeg = &o.frames[i % o.frames.len()];
        let mut part = format!(
            "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            jpeg.len()
        )
        .into_bytes();
        part.extend_from_slice(jpeg);
        part.extend_from_slice(b"\r\n");
        if sock.write_all(&part).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1000 / fps as u64));
    }
}
