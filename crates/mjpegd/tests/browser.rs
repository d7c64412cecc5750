//! What a browser really shows: headless Chromium paints each frame as soon as it is sent.
//!
//! The test pattern burns its frame counter into a barcode band (see `source::pattern`), so a page can
//! read, from a canvas, which frame its `<img>` displays, and compare it with the last frame the server
//! says it sent to that client. At `?fps=1` a frame shown one behind would be a second late.
//! Needs Debian's `chromium` (installed by scripts/setup.sh).

#[path = "common/chromium.rs"]
mod chromium;
mod common;
use chromium::page_result;
use common::*;

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
    let json = page_result(&format!("file://{}", page.display()), &dir);
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

/// Mainsail's "MJPEG-Streamer" mode reads the stream with fetch() (from Chromium, with Chromium's
/// User-Agent) and cuts frames by each part's Content-Length: the headers ahead that `<img>` needs must
/// not be sent to it, or it never shows a frame. The page below reads the stream as Mainsail's worker
/// does (the header bytes up to the JPEG's FF D8 give the length; that many bytes are the frame).
#[test]
fn a_stream_read_with_fetch_gets_a_content_length_in_every_part() {
    let server = Server::start(&["--capture", "always", "--fps", "10", "--allow-origin", "*"]);
    let addr = server.addr;
    let dir = TempDir::new("browser-fetch");
    let page = dir.0.join("page.html");
    std::fs::write(
        &page,
        format!(
            r#"<!doctype html><html><body><pre id="out">pending</pre>
<script>
(async () => {{
  const out = document.getElementById("out");
  let frames = 0, without = 0, bad = 0;
  try {{
    const r = await fetch("http://{addr}/stream?timestamp=" + Date.now(), {{ mode: "cors" }});
    const reader = r.body.getReader();
    let buf = new Uint8Array(0);
    const started = Date.now();
    while (frames < 5 && Date.now() - started < 8000) {{
      const {{ value, done }} = await reader.read();
      if (done) break;
      const joined = new Uint8Array(buf.length + value.length);
      joined.set(buf); joined.set(value, buf.length); buf = joined;
      for (;;) {{
        let soi = -1;
        for (let i = 0; i + 1 < buf.length; i++) if (buf[i] === 0xff && buf[i + 1] === 0xd8) {{ soi = i; break; }}
        if (soi < 0) break;
        const head = new TextDecoder().decode(buf.subarray(0, soi));
        const m = /content-length:\s*(\d+)/i.exec(head);
        if (!m) {{ without++; buf = buf.subarray(soi + 2); continue; }}
        const len = parseInt(m[1]);
        if (buf.length < soi + len) break;
        const jpeg = buf.subarray(soi, soi + len);
        if (jpeg[len - 2] === 0xff && jpeg[len - 1] === 0xd9) frames++; else bad++;
        buf = buf.subarray(soi + len);
      }}
    }}
    reader.cancel();
  }} catch (e) {{ out.textContent = "RES" + "ULT:" + JSON.stringify({{ error: String(e) }}); return; }}
  out.textContent = "RES" + "ULT:" + JSON.stringify({{ frames, without, bad }});
}})();
</script></body></html>"#
        ),
    )
    .unwrap();
    let json = page_result(&format!("file://{}", page.display()), &dir.0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["frames"], 5, "{v}");
    assert_eq!(v["without"], 0, "{v}");
    assert_eq!(v["bad"], 0, "{v}");
}

/// A dashboard reading `/cams/NAME/ws`: each binary message is a whole JPEG the browser decodes, and a
/// page holds more such viewers than the six HTTP connections per host an `<img>` stream is limited to.
#[test]
fn a_page_decodes_each_websocket_message_as_a_picture_on_eight_sockets_at_once() {
    let server = Server::start(&[
        "--capture",
        "always",
        "--fps",
        "10",
        "--resolution",
        "320x240",
    ]);
    let addr = server.addr;
    let dir = TempDir::new("browser-ws");
    let page = dir.0.join("page.html");
    std::fs::write(
        &page,
        format!(
            r#"<!doctype html><html><body><pre id="out">pending</pre>
<script>
const out = document.getElementById("out");
const done = (v) => {{ out.textContent = "RES" + "ULT:" + JSON.stringify(v); }};
const one = () => new Promise((resolve) => {{
  const ws = new WebSocket("ws://{addr}/cams/default/ws");
  ws.binaryType = "blob";
  let pictures = 0, sizes = [];
  ws.onmessage = async (e) => {{
    const bitmap = await createImageBitmap(new Blob([e.data], {{ type: "image/jpeg" }}));
    sizes.push(bitmap.width + "x" + bitmap.height);
    if (++pictures === 3) {{ ws.close(); resolve(sizes); }}
  }};
  ws.onerror = () => resolve(["error"]);
}});
Promise.all(Array.from({{ length: 8 }}, one)).then((all) => done({{ all }}));
setTimeout(() => done({{ timeout: true }}), 8000);
</script></body></html>"#
        ),
    )
    .unwrap();
    let json = page_result(&format!("file://{}", page.display()), &dir.0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let all = v["all"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(all.len(), 8, "{v}");
    for sizes in all {
        assert_eq!(
            sizes,
            &serde_json::json!(["320x240", "320x240", "320x240"]),
            "{v}"
        );
    }
}
