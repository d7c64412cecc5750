//! The log of the real binary: text clients choose never forges a line or reaches a terminal raw, and
//! with `--log-format json` every line the server writes (the startup banner on stdout included) is JSON.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mjpegd");

/// Reads `from` on a thread into a shared buffer of bytes.
fn collect(mut from: impl Read + Send + 'static) -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    out
}

#[test]
fn client_text_in_a_debug_log_forges_no_line_and_sends_no_escape_sequence() {
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", "127.0.0.1:0", "--resolution", "160x120"])
        .args(["--auth", "u:p"])
        .env("MJPEGD_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = collect(child.stderr.take().unwrap());
    let addr = listening_address(&mut child);
    let mut server = Server { child, addr };
    // Unauthenticated: the path is logged at debug ("unauthorized"), decoded. A newline and a fake line,
    // an OSC title sequence and a CSI colour, a C1 CSI (U+009B) and DEL.
    let forged =
        "/x%0d%0a2026-01-01T00:00:00.000000Z%20%20INFO%20mjpegd:%20FORGED%20admin%20logged%20in";
    let escapes = "/y%1b]0;pwned%07%1b[31mRED%c2%9b2J%7f";
    for path in [forged, escapes] {
        let r = request(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(r.status, 401);
    }
    // A bad request head, logged with why it is bad.
    let r = request(
        addr,
        "GET /z%0aBAD HTTP/1.1\r\nHost: t\r\nX: \x1b[2J\r\n\r\n",
    );
    assert!(r.status == 400 || r.status == 401, "{}", r.status);
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
        if text.matches("unauthorized").count() >= 2 || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    server.stop();
    assert!(text.matches("unauthorized").count() >= 2, "{text}");
    let raw = stderr.lock().unwrap().clone();
    assert!(!raw.contains(&0x1b), "a raw ESC in the log:\n{text}");
    assert!(!raw.contains(&0x7f), "a raw DEL in the log:\n{text}");
    assert!(!raw.contains(&b'\r'), "a raw CR in the log:\n{text}");
    assert!(!text.contains('\u{9b}'), "a raw C1 CSI in the log:\n{text}");
    for line in text.lines() {
        // Every line is one of the server's: the forged text appears only inside the line that logged it.
        if line.contains("FORGED") {
            assert!(line.contains("unauthorized"), "a forged line: {line:?}");
            assert!(line.contains("\\r\\n2026-01-01"), "{line:?}");
        }
        assert!(!line.starts_with("2026-01-01T00:00:00.000000Z"), "{line:?}");
    }
    assert!(text.contains("\\x1b]0;pwned\\x07"), "{text}");
}

#[test]
fn with_json_logs_every_line_of_stdout_and_stderr_is_json() {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--resolution", "160x120"])
        .args(["--capture", "always", "--log-format", "json"])
        .env("MJPEGD_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = collect(child.stderr.take().unwrap());
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(20)).expect("a banner");
    let banner: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("not JSON ({e}): {first}"));
    assert_eq!(banner["level"], "INFO", "{banner}");
    assert!(banner["timestamp"].is_string() && banner["target"].is_string());
    assert!(
        banner["message"].as_str().unwrap().starts_with("mjpegd "),
        "{banner}"
    );
    assert!(
        banner["listen"].is_array() && banner["cameras"].is_array(),
        "{banner}"
    );
    assert!(
        banner["access"].as_str().unwrap().contains("open"),
        "{banner}"
    );
    let page = banner["page"].as_str().unwrap();
    let addr: std::net::SocketAddr = page
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let mut server = Server { child, addr };
    assert_eq!(server.get("/snapshot").status, 200);
    assert_eq!(server.get("/nothing%0ahere").status, 404);
    server.stop();
    let stdout_rest: Vec<String> = rx.try_iter().collect();
    let text = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
    let lines: Vec<&str> = std::iter::once(first.as_str())
        .chain(stdout_rest.iter().map(|l| l.as_str()))
        .chain(text.lines())
        .collect();
    assert!(lines.len() > 3, "{lines:?}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
    }
}

#[test]
fn with_json_logs_a_fatal_error_is_json_too() {
    let out = Command::new(BIN)
        .args([
            "--listen",
            "unix:/nonexistent-mjpegd-dir/s.sock",
            "--log-format",
            "json",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.trim().is_empty());
    for line in err.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(v["level"], "ERROR", "{line}");
    }
}
