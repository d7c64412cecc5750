//! Fake upstream MJPEG servers for relay tests: they write exactly the bytes real cameras and servers do.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `n` distinct small JPEGs of `w` x `h`, each showing its index.
pub fn make_jpegs(n: usize, w: u32, h: u32) -> Vec<Vec<u8>> {
    use mjpegd::render::{Canvas, JpegEncoder, Yuv};
    let mut enc = JpegEncoder::new(75).unwrap();
    (0..n)
        .map(|i| {
            let mut c = Canvas::new(w, h);
            c.fill(Yuv::rgb((i * 37 % 255) as u8, 90, 160));
            c.text(4, 4, 2, &format!("{i}"), Yuv::WHITE);
            enc.encode(&c).unwrap().to_vec()
        })
        .collect()
}

/// How a fake upstream writes its stream.
#[derive(Clone, Debug)]
pub struct Style {
    /// The whole response head, up to and including the blank line.
    pub head: String,
    /// What precedes the first part's headers (e.g. "--boundary\r\n").
    pub preamble: String,
    /// Part headers; `{len}` is replaced by the JPEG's length.
    pub part_head: String,
    /// What follows each JPEG.
    pub part_tail: String,
    /// Send the body with chunked transfer-encoding.
    pub chunked: bool,
}

impl Style {
    /// The ESP32-CAM firmware's exact stream (esp32-cam-rtos and friends).
    pub fn esp32() -> Style {
        let b = "123456789000000000000987654321";
        Style {
            head: format!("HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nContent-Type: multipart/x-mixed-replace; boundary={b}\r\n\r\n"),
            preamble: format!("--{b}\r\n"),
            part_head: "Content-Type: image/jpeg\r\nContent-Length: {len}\r\n\r\n".into(),
            part_tail: format!("\r\n--{b}\r\n"),
            chunked: false,
        }
    }

    /// The newer firmware build's boundary.
    pub fn esp32_new() -> Style {
        let b = "+++===123454321===+++";
        Style {
            head: format!("HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nContent-Type: multipart/x-mixed-replace; boundary={b}\r\n\r\n"),
            preamble: format!("--{b}\r\n"),
            part_head: "Content-Type: image/jpeg\r\nContent-Length: {len}\r\n\r\n".into(),
            part_tail: format!("\r\n--{b}\r\n"),
            chunked: false,
        }
    }

    /// mjpg-streamer: HTTP/1.0, boundary before each part, odd Content-Length spacing, no length at all if
    /// `with_length` is false.
    pub fn mjpg_streamer(with_length: bool) -> Style {
        Style {
            head: "HTTP/1.0 200 OK\r\nConnection: close\r\nServer: MJPG-Streamer/0.2\r\nCache-Control: no-store, no-cache, must-revalidate, pre-check=0, post-check=0, max-age=0\r\nPragma: no-cache\r\nExpires: Mon, 3 Jan 2000 12:34:56 GMT\r\nContent-Type: multipart/x-mixed-replace;boundary=boundarydonotcross\r\n\r\n".into(),
            preamble: "--boundarydonotcross\r\n".into(),
            part_head: if with_length {
                "Content-Type: image/jpeg\r\nContent-Length:     {len}\r\nX-Timestamp: 1.000000\r\n\r\n".into()
            } else {
                "Content-Type: image/jpeg\r\nX-Timestamp: 1.000000\r\n\r\n".into()
            },
            part_tail: "\r\n--boundarydonotcross\r\n".into(),
            chunked: false,
        }
    }

    /// A camera that declares one boundary and uses another.
    pub fn wrong_boundary() -> Style {
        Style {
            head: "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=--myboundary\r\n\r\n".into(),
            preamble: "--realboundary\r\n".into(),
            part_head: "Content-Type: image/jpeg\r\n\r\n".into(),
            part_tail: "\r\n--realboundary\r\n".into(),
            chunked: false,
        }
    }

    /// A chunked HTTP/1.1 stream with a quoted boundary (as some IP cameras and proxies send).
    pub fn chunked() -> Style {
        Style {
            head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: multipart/x-mixed-replace; boundary=\"frame\"\r\n\r\n".into(),
            preamble: "--frame\r\n".into(),
            part_head: "Content-Type: image/jpeg\r\nContent-Length: {len}\r\n\r\n".into(),
            part_tail: "\r\n--frame\r\n".into(),
            chunked: true,
        }
    }
}

/// What a fake upstream does after each frame it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Sends the next one at the frame rate.
    Continue,
    /// Sends nothing more and keeps the connection open.
    Silence,
    /// Closes the connection.
    Close,
}

/// A fake upstream: serves `frames` in a loop at `fps` to each connection.
pub struct Upstream {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    /// While set, the server cuts each connection in the middle of its 5th frame.
    pub die_mid_frame: Arc<AtomicBool>,
    /// The frames served; replace them to change what every connection sends next.
    pub frames: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    pub fn start(style: Style, frames: Vec<Vec<u8>>, fps: u32) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Upstream::start_on(listener, style, frames, fps, After::Continue)
    }

    /// Serves on `listener`, doing `after` after each frame.
    pub fn start_on(
        listener: TcpListener,
        style: Style,
        frames: Vec<Vec<u8>>,
        fps: u32,
        after: After,
    ) -> Upstream {
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let die_mid_frame = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(Mutex::new(frames));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, d, f, s) = (
            connections.clone(),
            die_mid_frame.clone(),
            frames.clone(),
            stop.clone(),
        );
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        sock.set_nonblocking(false).unwrap();
                        c.fetch_add(1, Ordering::Relaxed);
                        let (style, f, d, s) = (style.clone(), f.clone(), d.clone(), s.clone());
                        std::thread::spawn(move || serve(sock, &style, &f, fps, after, &d, &s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Upstream {
            addr,
            connections,
            die_mid_frame,
            frames,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    mut sock: TcpStream,
    style: &Style,
    frames: &Mutex<Vec<Vec<u8>>>,
    fps: u32,
    after: After,
    die: &AtomicBool,
    stop: &AtomicBool,
) {
    let mut req = [0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut req) {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&req[..n]),
        }
    }
    let write = |bytes: &[u8], sock: &mut TcpStream| -> std::io::Result<()> {
        if style.chunked {
            if bytes.is_empty() {
                return Ok(());
            }
            sock.write_all(format!("{:x}\r\n", bytes.len()).as_bytes())?;
            sock.write_all(bytes)?;
            sock.write_all(b"\r\n")
        } else {
            sock.write_all(bytes)
        }
    };
    if sock.write_all(style.head.as_bytes()).is_err()
        || write(style.preamble.as_bytes(), &mut sock).is_err()
    {
        return;
    }
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let jpeg = {
            let frames = frames.lock().unwrap();
            frames[i % frames.len()].clone()
        };
        let head = style.part_head.replace("{len}", &jpeg.len().to_string());
        let mut part = head.into_bytes();
        part.extend_from_slice(&jpeg);
        part.extend_from_slice(style.part_tail.as_bytes());
        if die.load(Ordering::Relaxed) && i == 4 {
            let _ = write(&part[..part.len() / 2], &mut sock);
            return;
        }
        if write(&part, &mut sock).is_err() {
            return;
        }
        i += 1;
        match after {
            After::Continue => std::thread::sleep(Duration::from_millis(1000 / fps as u64)),
            After::Close => return,
            After::Silence => {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                return;
            }
        }
    }
}
