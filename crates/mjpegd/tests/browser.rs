//! What a browser really shows: headless Chromium paints each frame as soon as it is sent.
//!
//! The test pattern burns its frame counter into a barcode band (see `source::pattern`), so a page can
//! read, from a canvas, which frame its `<img>` displays, and compare it with the last frame the server
//! says it sent to that client. At `?fps=1` a frame shown one behind would be a second late.
//! Needs Debian's `chromium` (installed by scripts/setup.sh).

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// Loads a page that, 3.5 s after the stream starts (half-way between two frames at 1 fps), reads the
/// frame its <img> displays and the frames the server sent it; returns (shown, sent).
fn shown_and_sent(server: &Server, query: &str) -> (u64, u64) {
    let addr = server.addr;
    let dir = std::env::temp_dir().join(format!(
        "mjpegd-browser-{}-{}",
        std::process::id(),
        query.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("page.html");
    std::fs::write(
        &page,
        format!(
            r#"<!doctype html><html><body>
<img id="img" crossorigin="anonymous">
<pre id="out">pending</pre>
<script>
const img = document.getElementById("img");
img.onload = null;
img.src = "http://{addr}/stream?{query}";
setTimeout(async () => {{
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0);
  const band = Math.max(4, Math.floor(c.height / 60)) & ~1;
  const y = Math.floor(band / 2);
  let shown = 0;
  for (let i = 0; i < 24; i++) {{
    const x = Math.floor((2 * i + 1) * c.width / 48);
    const [r, gg, b] = g.getImageData(x, y, 1, 1).data;
    shown = shown * 2 + ((0.299 * r + 0.587 * gg + 0.114 * b) > 128 ? 1 : 0);
  }}
  const state = await (await fetch("http://{addr}/state")).json();
  const sent = state.result.clients.map((c) => c.last_sequence);
  document.getElementById("out").textContent = "RES" + "ULT:" + JSON.stringify({{shown, sent}});
}}, 3500);
</script></body></html>"#
        ),
    )
    .unwrap();
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
        .arg(format!("file://{}", page.display()))
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
    let json = read_page_result(&mut chromium.0);
    drop(chromium);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let sent = v["sent"].as_array().unwrap();
    assert_eq!(sent.len(), 1, "one client: {v}");
    let _ = std::fs::remove_dir_all(&dir);
    (v["shown"].as_u64().unwrap(), sent[0].as_u64().unwrap())
}

#[test]
fn chromium_shows_the_frame_it_was_last_sent_not_the_one_before() {
    // From start, always capturing: the pattern's burned-in counter equals the hub's sequence number.
    let server = Server::start(&["--capture", "always", "--fps", "30", "--allow-origin", "*"]);
    let (shown, sent) = shown_and_sent(&server, "fps=1");
    assert_eq!(shown, sent, "Chromium displays the newest frame sent to it");
}

#[test]
fn without_advance_headers_chromium_shows_the_frame_before() {
    // The reason advance headers exist (Chromium bug 527446): this test fails the day Chromium fixes it,
    // and then the workaround can go.
    let server = Server::start(&["--capture", "always", "--fps", "30", "--allow-origin", "*"]);
    let (shown, sent) = shown_and_sent(&server, "fps=1&advance_headers=0");
    assert!(shown < sent, "shown {shown}, sent {sent}");
}
