//! Password checks under attack, against the real binary over loopback: a flood of wrong passwords does
//! not keep a real user out (bounded, fair queue with a deadline; the excess answered 503 at once), failed
//! logins take the same time whichever user they name (no user enumeration through hash costs), and an
//! access key does not show who watches. Each test is bounded in time.

mod common;
use base64::Engine;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

fn basic(user_pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

fn users_file(what: &str, lines: &[(&str, String)]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mjpegd-auth-flood-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("users");
    let text: String = lines.iter().map(|(u, h)| format!("{u}:{h}\n")).collect();
    std::fs::write(&file, text).unwrap();
    file
}

/// GET /state with `credentials` on `s`; the response (status 0 if none came within `within`) and how
/// long it took.
fn get_state(mut s: TcpStream, credentials: &str, within: Duration) -> (Response, Duration) {
    let started = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let _ = write!(
        s,
        "GET /state HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        basic(credentials)
    );
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let took = started.elapsed();
    if find(&all, b"\r\n\r\n").is_none() {
        let none = Response {
            status: 0,
            headers: Default::default(),
            body: all,
        };
        return (none, took);
    }
    (parse_response(&all), took)
}

#[test]
fn a_wrong_password_flood_does_not_keep_a_real_users_first_login_waiting() {
    let file = users_file(
        "flood",
        &[("victim", bcrypt::hash("right horse", 11).unwrap())],
    );
    let server = Arc::new(Server::start(&["--auth-file", file.to_str().unwrap()]));
    const ATTACKERS: usize = 200;
    let start = Arc::new(Barrier::new(ATTACKERS + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..ATTACKERS)
        .map(|i| {
            let (server, start, stop, answers) =
                (server.clone(), start.clone(), stop.clone(), answers.clone());
            std::thread::spawn(move || {
                start.wait();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let s = connect_from("127.0.0.1", server.addr);
                    let (r, took) =
                        get_state(s, &format!("victim:wrong {i} {n}"), Duration::from_secs(20));
                    let busy = r.status == 503;
                    answers.lock().unwrap().push((r, took));
                    if busy {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
        })
        .collect();
    start.wait();
    std::thread::sleep(Duration::from_millis(500));
    // The real user's first login, from another address, while the flood goes on.
    let (r, login) = get_state(
        connect_from("127.0.0.2", server.addr),
        "victim:right horse",
        Duration::from_secs(30),
    );
    assert_eq!(r.status, 200, "the real user got in");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let answers = answers.lock().unwrap();
    let slowest = answers.iter().map(|(_, t)| *t).max().unwrap();
    let refused = answers.iter().filter(|(r, _)| r.status == 401).count();
    let busy: Vec<_> = answers.iter().filter(|(r, _)| r.status == 503).collect();
    eprintln!(
        "first login under a flood of {ATTACKERS} connections: {login:?}; attacker requests: {}, \
         401: {refused}, 503: {}, slowest answer {slowest:?}",
        answers.len(),
        busy.len()
    );
    assert!(
        login < Duration::from_secs(5),
        "the real user waited {login:?} behind the flood"
    );
    for (r, took) in answers.iter() {
        assert!(
            r.status == 401 || r.status == 503,
            "an attacker got {} after {took:?}",
            r.status
        );
    }
    assert!(
        slowest < Duration::from_secs(12),
        "every attacker is answered within the queue deadline (5 s) and a check: {slowest:?}"
    );
    assert!(refused > 0, "some wrong passwords were checked and refused");
    assert!(!busy.is_empty(), "the excess was turned away");
    let (r, _) = busy[0];
    assert_eq!(r.headers["retry-after"], "2");
    assert!(String::from_utf8_lossy(&r.body).contains("password checks"));
    // The state (from the verified cache, at once) counts the turned-away requests.
    let (r, _) = get_state(
        connect_from("127.0.0.2", server.addr),
        "victim:right horse",
        Duration::from_secs(5),
    );
    let state: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        state["result"]["rejected"]["password_checks_busy"],
        busy.len() as u64
    );
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn failed_logins_take_as_long_for_unknown_cheap_and_costly_users() {
    // `mjpegd hash-password` writes cost 12, `htpasswd -nB` cost 5; here 11 and 5 to keep the test short.
    let file = users_file(
        "timing",
        &[
            ("costly", bcrypt::hash("costly pw", 11).unwrap()),
            ("cheap", bcrypt::hash("cheap pw", 5).unwrap()),
        ],
    );
    let server = Server::start(&["--auth-file", file.to_str().unwrap()]);
    let kinds = ["nobody:guess", "cheap:guess", "costly:guess"];
    let mut times = vec![Vec::new(); kinds.len()];
    for _ in 0..7 {
        for (k, credentials) in kinds.iter().enumerate() {
            let s = TcpStream::connect(server.addr).unwrap();
            let (r, took) = get_state(s, credentials, Duration::from_secs(10));
            assert_eq!(r.status, 401, "{credentials}");
            times[k].push(took);
        }
    }
    let medians: Vec<_> = times.into_iter().map(median).collect();
    let (fastest, slowest) = (
        *medians.iter().min().unwrap(),
        *medians.iter().max().unwrap(),
    );
    eprintln!(
        "median failed login: unknown user {:?}, cheap-hash user {:?}, costly-hash user {:?}",
        medians[0], medians[1], medians[2]
    );
    assert!(
        slowest.as_secs_f64() < 2.0 * fastest.as_secs_f64(),
        "failed logins tell users apart: {kinds:?} took {medians:?}"
    );
    // And a right password still gets in, whatever its hash's cost.
    for credentials in ["cheap:cheap pw", "costly:costly pw"] {
        let s = TcpStream::connect(server.addr).unwrap();
        assert_eq!(
            get_state(s, credentials, Duration::from_secs(10)).0.status,
            200
        );
    }
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

#[test]
fn an_access_key_sees_state_without_who_watches() {
    let key = "k-0123456789abcdef";
    let server = Server::start(&["--auth", "u:p", "--access-key", key, "--capture", "always"]);
    let mut viewer = server.stream(&format!("/stream?key={key}"));
    viewer.next_part().unwrap();
    let by_key = server.get(&format!("/state?key={key}"));
    assert_eq!(by_key.status, 200);
    let text = String::from_utf8_lossy(&by_key.body).to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("mjpegd-tests"),
        "{text}"
    );
    let state: serde_json::Value = serde_json::from_slice(&by_key.body).unwrap();
    let client = &state["result"]["clients"][0];
    assert!(client.get("address").is_none() && client.get("user_agent").is_none());
    assert_eq!(client["delivery"], "latest", "the rest of the entry stays");
    assert_eq!(state["result"]["stream"]["clients"], 1);
    // A user sees who watches.
    let (r, _) = get_state(
        TcpStream::connect(server.addr).unwrap(),
        "u:p",
        Duration::from_secs(5),
    );
    let state: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let client = &state["result"]["clients"][0];
    assert!(client["address"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(client["user_agent"], "mjpegd-tests");
    // So does everyone on an open server.
    let open = Server::start(&["--capture", "always"]);
    let mut viewer = open.stream("/stream");
    viewer.next_part().unwrap();
    let client = &open.state()["clients"][0];
    assert!(client["address"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(client["user_agent"], "mjpegd-tests");
}
