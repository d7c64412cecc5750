//! Relaying cameras that demand HTTP Digest (RFC 7616), as Dahua and Hikvision do by default: against
//! Debian's apache2 with mod_auth_digest (MD5: the only algorithm it has), in front of an MJPEG stream
//! and of a still JPEG, with nonces that go stale and wrong credentials; and against a small camera of
//! the test's own for SHA-256, which is first checked against curl's Digest.

#[path = "common/apache.rs"]
mod apache;
mod common;
#[path = "common/stills.rs"]
mod stills;
#[path = "common/upstream.rs"]
mod upstream;
use apache::{Apache, ApacheSetup};
use common::*;
use std::sync::atomic::Ordering;
use std::time::Duration;
use stills::*;
use upstream::*;

/// `(status, authorization, www-authenticate)` of each logged request.
fn entries(apache: &Apache) -> Vec<(u16, String, String)> {
    apache
        .log()
        .iter()
        .map(|l| {
            let status = l
                .split(' ')
                .nth(3)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let mut brackets = l
                .split('[')
                .skip(1)
                .map(|s| s.rsplit_once(']').map(|(a, _)| a).unwrap_or(s).to_string());
            (
                status,
                brackets.next().unwrap_or_default(),
                brackets.next().unwrap_or_default(),
            )
        })
        .collect()
}

/// The nc of a logged Digest `Authorization`.
fn nc(authorization: &str) -> Option<u32> {
    let at = authorization.find("nc=")? + 3;
    u32::from_str_radix(&authorization[at..at + 8], 16).ok()
}

#[test]
fn relays_a_stream_behind_apache_digest_md5_reusing_the_nonce_at_each_reconnect() {
    let frames = make_jpegs(4, 160, 120);
    let up = Upstream::start(Style::esp32(), frames.clone(), 20);
    // Every upstream connection breaks in its 5th frame: the relay keeps reconnecting.
    up.die_mid_frame.store(true, Ordering::Relaxed);
    let apache = Apache::start(
        "stream",
        ApacheSetup {
            password: "pa55-Dig",
            nonce_lifetime: 300,
            files: &[],
            proxy: Some(("/cam/stream", up.url("/mjpeg/1"))),
        },
    );
    let (server, log) = Server::start_logged(&[
        "--source",
        &apache.url("cam:pa55-Dig", "/cam/stream"),
        "--capture",
        "always",
    ]);
    let mut s = server.stream("/stream?delivery=all");
    let mut relayed = 0;
    eventually(Duration::from_secs(20), "three reconnects", || {
        let part = s.next_part().expect("the client stays connected");
        relayed += usize::from(frames.contains(&part.body));
        (server.state()["source"]["reconnects"].as_u64().unwrap() >= 3).then_some(())
    });
    assert!(
        relayed >= 8,
        "frames through apache's Digest, byte for byte"
    );
    let state = server.state();
    assert!(
        state["source"]["description"]
            .as_str()
            .unwrap()
            .ends_with("/cam/stream (Digest auth)"),
        "{state}"
    );
    let logged = entries(&apache);
    let oks: Vec<_> = logged.iter().filter(|e| e.0 == 200).collect();
    assert!(oks.len() >= 3, "{logged:?}");
    assert!(oks.iter().all(|e| e.1.starts_with("Digest ")), "{logged:?}");
    let ncs: Vec<_> = oks.iter().map(|e| nc(&e.1)).collect();
    assert_eq!(
        &ncs[..3],
        &[Some(1), Some(2), Some(3)],
        "each reconnect reuses the nonce: {logged:?}"
    );
    let refused = logged.iter().filter(|e| e.0 == 401).count();
    assert_eq!(
        refused, 1,
        "one 401 (the first, Basic), none on reconnect: {logged:?}"
    );
    assert!(
        logged[0].1.starts_with("Basic "),
        "Basic first, as before: {logged:?}"
    );
    assert!(
        logged[1..].iter().all(|e| !e.1.starts_with("Basic")),
        "never Basic again once Digest was asked for"
    );
    let lines = log.lines().join("\n");
    assert!(!lines.contains("pa55-Dig"), "no password in the logs");
}

#[test]
fn polls_a_still_behind_apache_reusing_the_nonce_and_renewing_it_when_stale() {
    let still = make_jpegs(1, 160, 120).remove(0);
    let apache = Apache::start(
        "still",
        ApacheSetup {
            password: "pa55-Still",
            nonce_lifetime: 1,
            files: &[("snapshot.jpg", &still)],
            proxy: None,
        },
    );
    let server = Server::start(&[
        "--source",
        &apache.url("cam:pa55-Still", "/snapshot.jpg"),
        "--capture",
        "always",
        "--fps",
        "10",
    ]);
    let mut s = server.stream("/stream?delivery=all");
    // About 3 s of polls at 10 fps, across nonces that live 1 s.
    for _ in 0..30 {
        assert_eq!(s.next_part().unwrap().body, still);
    }
    let logged = entries(&apache);
    let oks: Vec<_> = logged.iter().filter(|e| e.0 == 200).collect();
    let stale = logged
        .iter()
        .filter(|e| e.0 == 401 && e.2.contains("stale=true"))
        .count();
    // (apache logs a request once it has sent the answer: the last may not be written yet)
    assert!(oks.len() >= 25, "{logged:?}");
    assert!(stale >= 1, "a nonce went stale and was renewed: {logged:?}");
    assert!(
        oks.iter()
            .filter(|e| nc(&e.1).is_some_and(|n| n > 1))
            .count()
            >= oks.len() / 2,
        "most polls reuse a nonce: {logged:?}"
    );
    assert!(
        logged.iter().filter(|e| e.0 == 401).count() <= 1 + stale,
        "no 401 but the first and the stale ones"
    );
    let state = server.state();
    assert_eq!(
        state["source"]["reconnects"], 0,
        "a stale nonce is no failure: {state}"
    );
    assert!(state["source"]["last_error"].is_null(), "{state}");
    assert!(
        state["source"]["description"]
            .as_str()
            .unwrap()
            .ends_with("(stills polled at up to 10 fps, Digest auth)"),
        "{state}"
    );
}

#[test]
fn wrong_credentials_are_reported_backed_off_and_never_logged() {
    let still = make_jpegs(1, 160, 120).remove(0);
    let apache = Apache::start(
        "wrong",
        ApacheSetup {
            password: "right-one",
            nonce_lifetime: 300,
            files: &[("snapshot.jpg", &still)],
            proxy: None,
        },
    );
    let (server, log) = Server::start_logged(&[
        "--source",
        &apache.url("cam:Wr0ng-Pa55", "/snapshot.jpg"),
        "--capture",
        "always",
        "--resolution",
        "320x240",
    ]);
    let state = server.state_when_last_error("refused the credentials (Digest)");
    assert_eq!(state["source"]["online"], false);
    assert!(state["source"]["last_error"]
        .as_str()
        .unwrap()
        .contains("401"));
    // Clients get "no signal", never the camera's error page.
    let part = server.stream("/stream").next_part().unwrap();
    assert_eq!(size_of(&part.body), (320, 240));
    // Back-off, not a tight loop: a handful of requests in 3 s.
    let before = apache.log().len();
    std::thread::sleep(Duration::from_secs(3));
    let during = apache.log().len() - before;
    assert!(during <= 10, "{during} requests in 3 s: {:?}", apache.log());
    assert!(
        during >= 1,
        "still retrying (the password may be fixed upstream)"
    );
    let lines = log.lines().join("\n");
    assert!(lines.contains("refused the credentials"), "{lines}");
    assert!(!lines.contains("Wr0ng-Pa55"), "no password in the logs");
}

/// Starts mjpegd polling `cam`'s stills at 20 fps with the test camera's credentials.
fn poll_stills(cam: &StillCamera) -> Server {
    Server::start(&[
        "--source",
        &cam.url("/capture"),
        "--source-auth",
        "admin:S3cret-256",
        "--capture",
        "always",
        "--fps",
        "20",
    ])
}

/// The camera answered 401 only to the first request and to each renewed (stale) nonce.
fn assert_only_first_and_stale_refused(c: &Counters, what: &str) {
    assert_eq!(
        c.unauthorized.load(Ordering::Relaxed),
        1 + c.stale.load(Ordering::Relaxed),
        "{what}"
    );
}

fn sha256_camera(stream_fps: Option<u32>, frames: Vec<Vec<u8>>) -> StillCamera {
    digest_camera("SHA-256", stream_fps, frames)
}

fn digest_camera(
    algorithm: &'static str,
    stream_fps: Option<u32>,
    frames: Vec<Vec<u8>>,
) -> StillCamera {
    StillCamera::start(StillOptions {
        digest: Some(DigestRule {
            algorithm,
            user: "admin",
            password: "S3cret-256",
            nonce_uses: 5,
        }),
        stream_fps,
        ..StillOptions::new(frames)
    })
}

#[test]
fn the_sha256_test_camera_agrees_with_curl() {
    let frames = make_jpegs(1, 160, 120);
    let cam = sha256_camera(None, frames.clone());
    let dir = TempDir::new("curl-sha256");
    let out = dir.0.join("still.jpg");
    let ok = std::process::Command::new("curl")
        .args(["-sf", "--digest", "-u", "admin:S3cret-256", "-o"])
        .arg(&out)
        .arg(cam.url("/capture"))
        .status()
        .unwrap();
    assert!(ok.success(), "curl's SHA-256 Digest is accepted");
    assert_eq!(std::fs::read(&out).unwrap(), frames[0]);
    let wrong = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--digest",
            "-u",
            "admin:nope",
        ])
        .arg(cam.url("/capture"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&wrong.stdout), "401");
}

#[test]
fn relays_a_sha256_digest_stream_and_polls_sha256_stills() {
    let frames = make_jpegs(3, 160, 120);
    // A stream.
    let cam = sha256_camera(Some(20), frames.clone());
    let server = Server::start(&[
        "--source",
        &cam.url("/video"),
        "--source-auth",
        "admin:S3cret-256",
        "--capture",
        "always",
    ]);
    let mut s = server.stream("/stream");
    for _ in 0..5 {
        assert!(frames.contains(&s.next_part().unwrap().body));
    }
    assert_eq!(cam.counters.bad_digests.load(Ordering::Relaxed), 0);
    drop(server);
    // Stills, with the nonce renewed (stale) every 5 polls and nc counting up within each.
    let cam = sha256_camera(None, frames.clone());
    let server = poll_stills(&cam);
    let mut s = server.stream("/stream?delivery=all");
    for _ in 0..20 {
        assert!(frames.contains(&s.next_part().unwrap().body));
    }
    let c = &cam.counters;
    assert_eq!(c.bad_digests.load(Ordering::Relaxed), 0, "nc always rose");
    assert!(c.stale.load(Ordering::Relaxed) >= 3, "stale nonces renewed");
    assert!(
        c.nc.lock().unwrap().values().any(|&n| n == 5),
        "a nonce used 5 times, nc 1 to 5"
    );
    assert_only_first_and_stale_refused(c, "no 401 but the first and the stale ones");
    assert_eq!(
        c.connections.load(Ordering::Relaxed),
        1,
        "one keep-alive connection"
    );
    assert_eq!(server.state()["source"]["reconnects"], 0);
}

/// A camera that answers every request with `401` and `challenge`, counting requests.
fn refusing_camera(
    challenge: &'static str,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(mut sock) = sock else { return };
            let c = c.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                loop {
                    match sock.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                    while let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        got.drain(..i + 4);
                        c.fetch_add(1, Ordering::Relaxed);
                        let answer = format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {challenge}\r\nContent-Length: 0\r\n\r\n");
                        if sock.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, count)
}

#[test]
fn challenges_mjpegd_cannot_answer_are_reported_not_retried_in_a_loop() {
    let long_nonce: &'static str = Box::leak(
        format!(
            "Digest realm=\"cam\", nonce=\"{}\", qop=\"auth\"",
            "n".repeat(2000)
        )
        .into_boxed_str(),
    );
    for (challenge, why) in [
        ("NTLM", "only ntlm"),
        (
            "Digest realm=\"cam\", nonce=\"n\", algorithm=SHA3-512",
            "unsupported algorithm",
        ),
        (long_nonce, "longer than 1024 bytes"),
    ] {
        let (addr, requests) = refusing_camera(challenge);
        let server = Server::start(&[
            "--source",
            &format!("http://u:p@{addr}/snapshot.jpg"),
            "--capture",
            "always",
        ]);
        let state = server.state_when_last_error(why);
        assert!(
            state["source"]["last_error"]
                .as_str()
                .unwrap()
                .contains("cannot answer"),
            "{state}"
        );
        std::thread::sleep(Duration::from_secs(1));
        let n = requests.load(Ordering::Relaxed);
        assert!(n <= 8, "{challenge:.40}: {n} requests: backed off");
    }
}

#[test]
fn session_variants_sha256_sess_and_md5_sess() {
    let frames = make_jpegs(2, 160, 120);
    for algorithm in ["SHA-256-sess", "MD5-sess"] {
        let cam = digest_camera(algorithm, None, frames.clone());
        let server = poll_stills(&cam);
        let mut s = server.stream("/stream?delivery=all");
        for _ in 0..8 {
            assert!(frames.contains(&s.next_part().unwrap().body), "{algorithm}");
        }
        let c = &cam.counters;
        assert_eq!(c.bad_digests.load(Ordering::Relaxed), 0, "{algorithm}");
        assert!(c.stale.load(Ordering::Relaxed) >= 1, "{algorithm}: renewed");
        assert_only_first_and_stale_refused(c, algorithm);
    }
}
