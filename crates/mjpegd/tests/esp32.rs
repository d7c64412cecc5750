//! A relayed ESP32-CAM's settings, forwarded, against the real binary and an emulator of Espressif's
//! CameraWebServer firmware (`/control?var=&val=` and `/status` on its port 80): values checked before
//! anything is sent, the relay's credentials passed on, a camera that is down answered 502 at once and one
//! that hangs 504 within the deadline (a second request meanwhile waits its turn, then 503), and only admins may change it.

mod common;
use base64::Engine;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the emulated firmware was asked: request lines and Authorization headers.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

const STATUS: &str = r#"{"framesize":8,"quality":10,"brightness":0,"hmirror":0,"vflip":0}"#;

/// The firmware's settings server: `/control` (200 empty, 500 for a var it does not know) and `/status`.
fn firmware() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let log = log.clone();
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let mut auth = None;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h
                        .strip_prefix("Authorization: ")
                        .or(h.strip_prefix("authorization: "))
                    {
                        auth = Some(v.trim().to_string());
                    }
                }
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                log.lock().unwrap().push((target.clone(), auth));
                let mut conn = conn;
                let answer = if target.starts_with("/status") {
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{STATUS}", STATUS.len())
                } else if target.starts_with("/control?var=framesize")
                    || target.starts_with("/control?var=quality")
                    || target.starts_with("/control?var=brightness")
                {
                    "HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                } else {
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                };
                let _ = conn.write_all(answer.as_bytes());
            });
        }
    });
    (addr, seen)
}

/// A settings address that accepts connections and never answers.
fn hanging() -> (SocketAddr, Arc<Mutex<Vec<TcpStream>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let keep = held.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            keep.lock().unwrap().push(conn);
        }
    });
    (addr, held)
}

/// A loopback port nothing listens on.
fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

fn get(server: SocketAddr, path: &str, headers: &str) -> (u16, String) {
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let r = parse_response(&all);
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

fn cameras_file(dir: &TempDir, cams: &[(&str, String)]) -> std::path::PathBuf {
    let file = dir.0.join("cams.toml");
    let text: String = cams
        .iter()
        .map(|(name, control)| {
            format!(
                "[cameras.{name}]\nsource = \"http://cam:s3cret@127.0.0.1:9/stream\"\nconnect-timeout = \"1s\"\ncontrol-url = \"{control}\"\n\n"
            )
        })
        .collect::<String>()
        + "[cameras.pattern]\nsource = \"pattern\"\n";
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn settings_are_checked_then_forwarded_with_the_relays_credentials() {
    let (fw, seen) = firmware();
    let (hang, _held) = hanging();
    let dir = TempDir::new("esp32-forward");
    let file = cameras_file(
        &dir,
        &[
            ("door", format!("http://{fw}/")),
            ("gone", format!("http://{}/", closed_port())),
            ("stuck", format!("http://{hang}/")),
        ],
    );
    let server = Server::start(&["--config", file.to_str().unwrap()]);
    let (status, body) = get(server.addr, "/cams/door/control?var=framesize&val=8", "");
    assert_eq!((status, body.as_str()), (200, ""));
    let (status, body) = get(server.addr, "/cams/door/status", "");
    assert_eq!((status, body.as_str()), (200, STATUS));
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].0, "/control?var=framesize&val=8");
        assert_eq!(seen[1].0, "/status");
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("cam:s3cret")
        );
        assert_eq!(
            seen[0].1.as_deref(),
            Some(basic.as_str()),
            "the relay's credentials"
        );
    }
    // Checked before anything is sent: an unknown var, a value out of range, a missing value.
    for (query, says) in [
        ("var=reboot&val=1", "unknown var"),
        ("var=framesize&val=99", "0 to 24"),
        ("var=quality&val=ten", "whole number"),
        ("var=quality", "expected"),
    ] {
        let (status, body) = get(server.addr, &format!("/cams/door/control?{query}"), "");
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(says), "{query}: {body}");
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "nothing refused reached the camera"
    );
    // A var the firmware refuses itself is passed on as it answered.
    let (status, _) = get(server.addr, "/cams/door/control?var=hmirror&val=1", "");
    assert_eq!(status, 500);
    // Settings sent at once (a panel's, one after another, and another program's) wait their turn at
    // the camera, one in flight at a time, instead of being turned away.
    let before = seen.lock().unwrap().len();
    for round in 0..3 {
        let start = Arc::new(std::sync::Barrier::new(4));
        let senders: Vec<_> = (0..4)
            .map(|i| {
                let (addr, start) = (server.addr, start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    get(
                        addr,
                        &format!("/cams/door/control?var=brightness&val={}", (i + round) % 3),
                        "",
                    )
                })
            })
            .collect();
        for s in senders {
            let (status, body) = s.join().unwrap();
            assert_eq!(status, 200, "round {round}: {body}");
        }
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        before + 12,
        "every setting reached the camera"
    );

    // A camera that is down: 502 at once, with the reason.
    let started = Instant::now();
    let (status, body) = get(server.addr, "/cams/gone/control?var=quality&val=10", "");
    assert_eq!(status, 502, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // A camera that hangs: 504 within the deadline, and meanwhile a second request waits its turn for a
    // while and is then turned away.
    let addr = server.addr;
    let first = std::thread::spawn(move || {
        let started = Instant::now();
        let r = get(addr, "/cams/stuck/control?var=quality&val=10", "");
        (r, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = get(server.addr, "/cams/stuck/status", "");
    assert_eq!(status, 503, "one request in flight per camera: {body}");
    let ((status, body), took) = first.join().unwrap();
    assert_eq!(status, 504, "{body}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    // The streams of the other cameras never waited on it.
    assert_eq!(server.get("/cams/pattern/snapshot").status, 200);
    // A camera that is not a relayed ESP32.
    let (status, body) = get(server.addr, "/cams/pattern/control?var=quality&val=10", "");
    assert_eq!(status, 404);
    assert!(body.contains("control-url"), "{body}");
}

#[test]
fn only_admins_change_an_esp32s_settings() {
    let (fw, seen) = firmware();
    let dir = TempDir::new("esp32-roles");
    let file = cameras_file(&dir, &[("door", format!("http://{fw}/"))]);
    let server = start_with_roles(&file, &dir.0, &[]);
    let path = "/cams/door/control?var=quality&val=12";
    assert_eq!(get(server.addr, path, "").0, 401);
    assert_eq!(
        get(server.addr, path, &basic_auth_header("bob:bob pw")).0,
        403
    );
    let cross = format!(
        "{}Sec-Fetch-Site: cross-site\r\n",
        basic_auth_header("alice:alice pw")
    );
    assert_eq!(
        get(server.addr, path, &cross).0,
        403,
        "not from another site's page"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "no refused write reached the camera"
    );
    assert_eq!(
        get(server.addr, path, &basic_auth_header("alice:alice pw")).0,
        200
    );
    assert_eq!(
        get(
            server.addr,
            "/cams/door/status",
            &basic_auth_header("bob:bob pw")
        )
        .0,
        200,
        "a viewer reads"
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn the_native_controls_api_speaks_to_an_esp32_under_the_same_names() {
    let (fw, seen) = firmware();
    let dir = TempDir::new("esp32-native");
    let file = cameras_file(&dir, &[("door", format!("http://{fw}/"))]);
    let server = Server::start(&["--config", file.to_str().unwrap()]);
    let call = |method: &str, path: &str, body: &str| {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            server.addr,
            body.len()
        )
        .unwrap();
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        let r = parse_response(&all);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        (r.status, v)
    };
    let (status, list) = call("GET", "/cams/door/controls", "");
    assert_eq!(status, 200, "{list}");
    let find = |doc: &serde_json::Value, key: &str| {
        doc["controls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("no {key} in {doc}"))
    };
    let quality = find(&list, "compression_quality");
    assert_eq!(
        (quality["esp32_var"].as_str(), quality["value"].as_i64()),
        (Some("quality"), Some(10))
    );
    assert_eq!(find(&list, "horizontal_flip")["value"], false);
    assert_eq!(find(&list, "framesize")["max"], 24);
    let (status, doc) = call(
        "PATCH",
        "/cams/door/controls",
        r#"{"compression_quality": 12, "brightness": 1, "horizontal_flip": true, "framesize": 99, "focus_absolute": 3}"#,
    );
    assert_eq!(status, 200, "{doc}");
    let results = &doc["results"];
    assert_eq!(results["compression_quality"]["result"], "done", "{doc}");
    assert_eq!(results["brightness"]["result"], "done", "{doc}");
    assert_eq!(
        results["horizontal_flip"]["result"], "failed",
        "the firmware refused it: {doc}"
    );
    assert_eq!(results["framesize"]["result"], "out_of_range", "{doc}");
    assert_eq!(results["focus_absolute"]["result"], "unknown", "{doc}");
    let sent: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| t.clone())
        .collect();
    assert!(
        sent.contains(&"/control?var=quality&val=12".to_string()),
        "{sent:?}"
    );
    assert!(
        sent.contains(&"/control?var=brightness&val=1".to_string()),
        "{sent:?}"
    );
    assert!(
        sent.contains(&"/control?var=hmirror&val=1".to_string()),
        "{sent:?}"
    );
    assert!(
        !sent.iter().any(|t| t.contains("framesize")),
        "a value out of range is never sent: {sent:?}"
    );
    let (status, _) = call("POST", "/cams/door/controls/reset", "");
    assert_eq!(status, 501);
}
