//! Test harness: runs the real `mjpegd` binary and talks to it over real TCP.
#![allow(dead_code)]

pub mod cam;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `X-Timestamp` (`secs.micros`, six decimals) in µs.
pub fn micros(x_timestamp: &str) -> u64 {
    let (s, us) = x_timestamp.split_once('.').unwrap();
    s.parse::<u64>().unwrap() * 1_000_000 + us.parse::<u64>().unwrap()
}

/// Writes `dir/users`: alice (password `alice pw`) and bob (`bob pw`), cheap bcrypt; returns its path.
pub fn alice_and_bob(dir: &std::path::Path) -> std::path::PathBuf {
    let users = dir.join("users");
    let (alice, bob) = (
        bcrypt::hash("alice pw", 4).unwrap(),
        bcrypt::hash("bob pw", 4).unwrap(),
    );
    std::fs::write(&users, format!("alice:{alice}\nbob:{bob}\n")).unwrap();
    users
}

/// mjpegd with the cameras file `config`, the users of [`alice_and_bob`] (alice the admin, bob a viewer)
/// and `extra` arguments.
pub fn start_with_roles(config: &std::path::Path, dir: &std::path::Path, extra: &[&str]) -> Server {
    let users = alice_and_bob(dir);
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--auth-file",
        users.to_str().unwrap(),
        "--admin",
        "alice",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// An `Authorization: Basic` header line for `user_pass` (`user:password`).
pub fn basic_auth_header(user_pass: &str) -> String {
    use base64::Engine;
    format!(
        "Authorization: Basic {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

/// A running mjpegd, stopped (SIGTERM) when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// Starts mjpegd on a free loopback port with `args` (small, fast defaults unless overridden).
    pub fn start(args: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mjpegd"));
        cmd.args(["--listen", "127.0.0.1:0"]);
        if !args.contains(&"--resolution") {
            cmd.args(["--resolution", "320x240"]);
        }
        cmd.args(args);
        Server::spawn(&mut cmd)
    }

    /// Starts mjpegd as `cmd` says (it must listen somewhere and keep stdout to the banner) and reads
    /// its address from the banner.
    pub fn spawn(cmd: &mut Command) -> Server {
        cmd.env("MJPEGD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("mjpegd starts");
        // A server that never prints its address must not outlive the failed test.
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            listening_address(&mut child)
        }));
        let addr = found.unwrap_or_else(|e| {
            let _ = child.kill();
            let _ = child.wait();
            std::panic::resume_unwind(e)
        });
        Server { child, addr }
    }

    /// Starts mjpegd like [`Server::start`], logging at info, with its stderr collected in a [`Log`] (and
    /// still shown when a test fails).
    pub fn start_logged(args: &[&str]) -> (Server, Log) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mjpegd"));
        cmd.args(["--listen", "127.0.0.1:0"]);
        if !args.contains(&"--resolution") {
            cmd.args(["--resolution", "320x240"]);
        }
        cmd.args(args);
        Server::spawn_logged(&mut cmd)
    }

    /// [`Server::spawn`] with the log at info collected in a [`Log`].
    pub fn spawn_logged(cmd: &mut Command) -> (Server, Log) {
        cmd.env("MJPEGD_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("mjpegd starts");
        let log = Log::default();
        let stderr = child.stderr.take().unwrap();
        let lines = log.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                lines.lock().unwrap().push(line);
            }
        });
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            listening_address(&mut child)
        }));
        let addr = found.unwrap_or_else(|e| {
            let _ = child.kill();
            let _ = child.wait();
            std::panic::resume_unwind(e)
        });
        (Server { child, addr }, log)
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("mjpegd did not exit within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET `path` and return (status, headers, body) of a complete response.
    pub fn get(&self, path: &str) -> Response {
        request(
            self.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
        )
    }

    /// `/state`'s result object.
    pub fn state(&self) -> serde_json::Value {
        let r = self.get("/state");
        assert_eq!(r.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("state is JSON");
        v["result"].clone()
    }

    /// Waits (up to 10 s) until the source's `last_error` in /state contains `needle`; returns that
    /// /state.
    pub fn state_when_last_error(&self, needle: &str) -> serde_json::Value {
        eventually(Duration::from_secs(10), needle, || {
            let s = self.state();
            s["source"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains(needle))
                .then_some(s)
        })
    }

    /// The value of the sample `series` (name and labels, as written) in a `/metrics` scrape.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = String::from_utf8(self.get("/metrics").body).unwrap();
        text.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }

    /// Opens a stream.
    pub fn stream(&self, path: &str) -> Stream {
        Stream::open(self.addr, path, None)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The lines a server logged so far (see [`Server::start_logged`]).
#[derive(Clone, Default)]
pub struct Log(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Log {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) for a line that contains every one of `parts`, and returns it.
    pub fn wait_for(&self, parts: &[&str]) -> String {
        eventually(
            Duration::from_secs(10),
            &format!("a log line with {parts:?}"),
            || {
                self.lines()
                    .into_iter()
                    .find(|l| parts.iter().all(|p| l.contains(p)))
            },
        )
    }
}

pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// Sends raw bytes and reads the whole response (until close).
pub fn request(addr: SocketAddr, raw: &str) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    parse_response(&all)
}

pub fn parse_response(all: &[u8]) -> Response {
    let end = find(all, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(all)));
    let head = std::str::from_utf8(&all[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: all[end + 4..].to_vec(),
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One part of a stream.
pub struct Part {
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub received: Instant,
}

impl Part {
    pub fn seq(&self) -> u64 {
        self.headers["x-frame-sequence"].parse().unwrap()
    }
}

/// A client of an MJPEG stream, reading parts by their Content-Length.
pub struct Stream {
    pub reader: BufReader<TcpStream>,
    pub head: Response,
    pub boundary: String,
}

impl Stream {
    /// Connects and reads the response head. `rcvbuf` shrinks the client's receive buffer (for stalls).
    pub fn open(addr: SocketAddr, path: &str, rcvbuf: Option<usize>) -> Stream {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nUser-Agent: mjpegd-tests\r\n\r\n");
        Stream::open_raw(addr, &request, rcvbuf)
    }

    /// Connects, sends `request` as it is, and reads the response head.
    pub fn open_raw(addr: SocketAddr, request: &str, rcvbuf: Option<usize>) -> Stream {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        if let Some(size) = rcvbuf {
            sock.set_recv_buffer_size(size).unwrap();
        }
        sock.connect(&addr.into()).unwrap();
        let s: TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = s.try_clone().unwrap();
        w.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(s);
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8];
            reader.read_exact(&mut byte).expect("response head");
            head.push(byte[0]);
        }
        let head = parse_response(&head);
        let boundary = head
            .headers
            .get("content-type")
            .and_then(|ct| ct.split("boundary=").nth(1))
            .map(|b| b.trim_matches('"').to_string())
            .unwrap_or_default();
        let mut stream = Stream {
            reader,
            head,
            boundary,
        };
        if stream.head.status == 200 {
            let mut line = String::new();
            stream.reader.read_line(&mut line).unwrap();
            assert_eq!(
                line,
                format!("--{}\r\n", stream.boundary),
                "first boundary follows the head"
            );
        }
        stream
    }

    /// Reads the next part; Err on close or timeout.
    pub fn next_part(&mut self) -> std::io::Result<Part> {
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" {
                break;
            }
            let (n, v) = line.split_once(':').expect("header line");
            headers.insert(n.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let len: usize = headers["content-length"].parse().unwrap();
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body)?;
        let received = Instant::now();
        let mut tail = vec![0; self.boundary.len() + 6];
        self.reader.read_exact(&mut tail)?;
        assert_eq!(
            tail,
            format!("\r\n--{}\r\n", self.boundary).as_bytes(),
            "boundary follows each part at once"
        );
        Ok(Part {
            headers,
            body,
            received,
        })
    }

    pub fn set_timeout(&self, t: Duration) {
        self.reader.get_ref().set_read_timeout(Some(t)).unwrap();
    }
}

/// Checks that `jpeg` starts with SOI and ends with EOI.
pub fn assert_whole_jpeg(jpeg: &[u8]) {
    assert!(jpeg.len() > 100, "a JPEG of {} bytes", jpeg.len());
    assert_eq!(&jpeg[..2], b"\xff\xd8", "starts with SOI");
    assert_eq!(&jpeg[jpeg.len() - 2..], b"\xff\xd9", "ends with EOI");
}

/// Polls `f` until it returns Some, or panics after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads the address from the startup banner of an mjpegd started with a piped stdout, then keeps
/// draining its stdout on a thread.
pub fn listening_address(child: &mut Child) -> SocketAddr {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("mjpegd prints its URLs").unwrap();
        // With --log-format json the banner is one JSON object with the page URL as a field.
        let json_page = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["page"].as_str().map(|p| format!("page: {p}")));
        if let Some(rest) = json_page
            .as_deref()
            .unwrap_or(&line)
            .trim()
            .strip_prefix("page:")
        {
            let url = rest
                .trim()
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/');
            break url.parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    addr
}

/// A TCP connection to `to` from the local address `ip` (loopback is a whole /8: 127.0.0.2 is another
/// client than 127.0.0.1).
pub fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&format!("{ip}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.connect(&to.into()).unwrap();
    sock.into()
}

/// A loopback port free now, for a program of the test's (a proxy, systemd-socket-activate) to bind.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A folder under the system's temp dir, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// A fresh, empty folder named after `what` and this process.
    pub fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("mjpegd-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Width and height from a JPEG's header.
pub fn size_of(jpeg: &[u8]) -> (usize, usize) {
    let h = turbojpeg::read_header(jpeg).expect("a JPEG header");
    (h.width, h.height)
}

/// The camera names `/state` lists, in order.
pub fn camera_names(state: &serde_json::Value) -> Vec<String> {
    state["cameras"]
        .as_array()
        .expect("a camera list")
        .iter()
        .map(|c| c["name"].as_str().expect("a name").to_string())
        .collect()
}
