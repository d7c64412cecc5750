//! Headless Chromium for tests: loads a page and reads what it reports, over the DevTools protocol.
//! Needs Debian's `chromium` (installed by scripts/setup.sh).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One page measured at a time in a test binary: pages that count frames over a window (the wall, the
/// players) measure the server, not two Chromiums fighting over two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Opens `url` in headless Chromium (profile under `dir`) and returns what the page wrote into #out once
/// it starts with "RESULT:" (without that prefix). Chromium is killed on return.
pub fn page_result(url: &str, dir: &Path) -> String {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let chromium = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--allow-file-access-from-files",
            "--remote-debugging-port=0",
            &format!("--user-data-dir={}", dir.join("profile").display()),
        ])
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium runs (Debian package chromium, installed by scripts/setup.sh)");
    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut chromium = KillOnDrop(chromium);
    read_page_result(&mut chromium.0)
}

/// Asks the page, over the DevTools protocol, for what it wrote into #out once it starts with "RESULT:".
fn read_page_result(chromium: &mut Child) -> String {
    let stderr = chromium.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let ws = loop {
        let line = lines
            .next()
            .expect("chromium prints its DevTools address")
            .unwrap();
        if let Some(url) = line.strip_prefix("DevTools listening on ") {
            break url.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let port: u16 = ws
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let page_ws = loop {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            &s,
            "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let json = String::from_utf8(body).unwrap();
        let targets: serde_json::Value = serde_json::from_str(&json).unwrap();
        if let Some(t) = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
        {
            break t["webSocketDebuggerUrl"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no page target");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (mut socket, _) = tungstenite::connect(page_ws.as_str()).expect("DevTools websocket");
    for id in 1.. {
        let call = serde_json::json!({"id": id, "method": "Runtime.evaluate",
            "params": {"expression": "document.getElementById('out').textContent", "returnByValue": true}});
        socket
            .send(tungstenite::Message::Text(call.to_string().into()))
            .unwrap();
        let value = loop {
            let msg = socket.read().unwrap();
            if let tungstenite::Message::Text(t) = msg {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                if v["id"] == id {
                    break v["result"]["result"]["value"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                }
            }
        };
        if let Some(rest) = value.strip_prefix("RESULT:") {
            return rest.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the page never reported: {value}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    unreachable!()
}
