//! Soak: hours of client churn compressed into minutes, against a real mjpegd on loopback.
//!
//!     cargo build --release -p mjpegd --example soak --bin mjpegd
//!     target/release/examples/soak [--duration 120s] [--workers 40] [--mjpegd target/release/mjpegd]
//!
//! It starts mjpegd (its own child, stopped by pid at the end) with a source that is itself a child
//! process writing JPEGs for a few seconds and exiting, so the source goes down and comes back all the
//! time. Then `--workers` threads, for `--duration`, each open client after client, of every kind: `all`,
//! `latest` and `lockstep` readers of random length, slow readers, stalled readers (tiny receive buffer,
//! never read), readers that vanish with a reset mid-frame, snapshots, slowloris heads and garbage.
//! Every `all` reader checks that it got every frame in order (a reader the server disconnected counts as
//! evicted, and the evictions in /state must cover them). RSS and open fds are taken after a warm-up
//! churn (the baseline) and again when every client is gone; the run fails if the fds (other than the
//! source child's pipes and pidfd) differ or RSS grew by more than `--rss-slack`. Loopback only; bounded
//! in time; exits by itself.
//!
//!     target/release/examples/soak attack --kind slowloris|idle|deaf --count 10000
//!
//! measures one hostile load instead: a real viewer's frame rate before and during `--count` hostile
//! connections (slowloris: a header byte a second each; idle: nothing sent; deaf: stream clients with a
//! tiny receive buffer that never read), mjpegd's RSS before, at peak and after, and how they were cut.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Tally {
    all_complete: AtomicU64,
    all_evicted: AtomicU64,
    all_gaps: AtomicU64,
    all_frames: AtomicU64,
    latest: AtomicU64,
    lockstep: AtomicU64,
    order_errors: AtomicU64,
    slow: AtomicU64,
    stalled: AtomicU64,
    vanished: AtomicU64,
    snapshots: AtomicU64,
    hostile: AtomicU64,
    refused: AtomicU64,
    other_errors: AtomicU64,
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("emit") {
        emit(args[2].parse().unwrap());
        return;
    }
    if args.get(1).map(String::as_str) == Some("attack") {
        attack(&args);
        return;
    }
    let duration =
        humantime::parse_duration(&arg(&args, "--duration").unwrap_or("120s".into())).unwrap();
    let workers: usize = arg(&args, "--workers").map_or(40, |w| w.parse().unwrap());
    let slack_mib: f64 = arg(&args, "--rss-slack").map_or(8.0, |w| w.parse().unwrap());
    let me = std::env::current_exe().unwrap();
    let mjpegd = arg(&args, "--mjpegd").map_or_else(
        || me.parent().unwrap().parent().unwrap().join("mjpegd"),
        std::path::PathBuf::from,
    );
    let (mut child, addr) = start(&mjpegd, &me);
    let pid = child.id();
    let _ = PID.set(pid);
    println!("soak: mjpegd pid {pid} on {addr}, {workers} workers, {duration:?}");
    let rss_start = rss_kib(pid);

    // Warm-up churn, then the baseline.
    let tally = Arc::new(Tally::default());
    churn(addr, workers, Duration::from_secs(15), tally.clone());
    wait_idle(addr);
    std::thread::sleep(Duration::from_secs(2));
    let (rss_base, fds_base) = (rss_kib(pid), fds(pid));
    println!(
        "baseline after warm-up: RSS {:.1} MiB, {fds_base} fds besides the source child's (at start: {:.1} MiB)",
        mib(rss_base),
        mib(rss_start)
    );

    let tally = Arc::new(Tally::default());
    let evictions_before = evictions(addr);
    let started = Instant::now();
    let peak = churn(addr, workers, duration, tally.clone());
    let elapsed = started.elapsed();
    wait_idle(addr);
    std::thread::sleep(Duration::from_secs(2));
    let (rss_end, fds_end) = (rss_kib(pid), fds(pid));
    let state = get_state(addr);
    let evicted_by_server = evictions(addr) - evictions_before;
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();

    let t = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let sessions = t(&tally.all_complete)
        + t(&tally.all_evicted)
        + t(&tally.latest)
        + t(&tally.lockstep)
        + t(&tally.slow)
        + t(&tally.stalled)
        + t(&tally.vanished);
    println!("churn: {:.0} s, {sessions} stream sessions, {} snapshots, {} hostile connections, {} refused",
        elapsed.as_secs_f64(), t(&tally.snapshots), t(&tally.hostile), t(&tally.refused));
    println!("  all: {} complete ({} frames, {} gaps), {} disconnected by the server (evictions counted in /state: {evicted_by_server})",
        t(&tally.all_complete), t(&tally.all_frames), t(&tally.all_gaps), t(&tally.all_evicted));
    println!("  latest: {}, lockstep: {}, slow: {}, stalled: {}, vanished (RST): {}, order errors: {}, other errors: {}",
        t(&tally.latest), t(&tally.lockstep), t(&tally.slow), t(&tally.stalled), t(&tally.vanished),
        t(&tally.order_errors), t(&tally.other_errors));
    println!(
        "  source restarts: {}, frames published: {}",
        state["source"]["reconnects"], state["hub"]["frames_published"]
    );
    println!("  RSS: baseline {:.1} MiB, peak seen {:.1} MiB, end {:.1} MiB ({:+.1} MiB); fds besides the source child's: {fds_base} -> {fds_end}",
        mib(rss_base), mib(peak.max(rss_end)), mib(rss_end), mib(rss_end) - mib(rss_base));
    println!("  mjpegd exit: {status}");
    let mut failed = Vec::new();
    if t(&tally.all_gaps) > 0 || t(&tally.order_errors) > 0 {
        failed.push("frames missing or out of order");
    }
    if fds_end != fds_base {
        failed.push("fd count changed");
    }
    if mib(rss_end) - mib(rss_base) > slack_mib {
        failed.push("RSS did not return to the baseline");
    }
    if evicted_by_server < t(&tally.all_evicted) {
        failed.push("an all client was disconnected without an eviction being counted");
    }
    if !status.success() {
        failed.push("mjpegd did not exit cleanly");
    }
    if failed.is_empty() {
        println!("soak: PASS");
    } else {
        println!("soak: FAIL: {}", failed.join("; "));
        std::process::exit(1);
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Child mode: JPEGs on stdout at 30 fps for `secs`, then exit (a source outage).
fn emit(secs: f64) {
    let (w, h) = (320usize, 240usize);
    let mut out = std::io::stdout().lock();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed().as_secs_f64() < secs {
        let pixels: Vec<u8> = (0..w * h * 3)
            .map(|i| ((i / 3 + n as usize * 7) % 251) as u8)
            .collect();
        let image = turbojpeg::Image {
            pixels: &pixels[..],
            width: w,
            pitch: w * 3,
            height: h,
            format: turbojpeg::PixelFormat::RGB,
        };
        let jpeg = turbojpeg::compress(image, 70, turbojpeg::Subsamp::Sub2x2).unwrap();
        if out.write_all(&jpeg).and_then(|_| out.flush()).is_err() {
            return;
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(33));
    }
}

fn start(mjpegd: &std::path::Path, me: &std::path::Path) -> (Child, SocketAddr) {
    let source = format!("exec:{} emit 4", me.display());
    let mut child = Command::new(mjpegd)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--capture",
            "always",
            "--fps",
            "30",
            "--source",
            &source,
        ])
        .args([
            "--buffer-memory",
            "32MiB",
            "--write-timeout",
            "3s",
            "--lockstep-timeout",
            "1s",
            "--head-timeout",
            "2s",
        ])
        .args(["--max-connections-per-address", "400"])
        .env("MJPEGD_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("mjpegd starts");
    let addr = listening_address(&mut child);
    (child, addr)
}

/// Reads the address from mjpegd's startup banner, then keeps draining its stdout.
fn listening_address(child: &mut Child) -> SocketAddr {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("mjpegd prints its URLs").unwrap();
        if let Some(rest) = line.trim().strip_prefix("page:") {
            break rest
                .trim()
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .parse()
                .unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    addr
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Open fds of the process, except those of the source child: it exits and is restarted all the time, so
/// its stdout and stderr pipes and its pidfd come and go; sockets, files and everything else must come
/// back to the baseline.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| {
                std::fs::read_link(e.path())
                    .map(|t| {
                        let t = t.to_string_lossy();
                        !t.starts_with("pipe:") && t != "anon_inode:[pidfd]"
                    })
                    .unwrap_or(false)
            })
            .count()
    })
}

fn get_state(addr: SocketAddr) -> serde_json::Value {
    for _ in 0..50 {
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(b"GET /state HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n");
            let mut all = Vec::new();
            let _ = s.read_to_end(&mut all);
            if let Some(i) = all.windows(4).position(|w| w == b"\r\n\r\n") {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&all[i + 4..]) {
                    return v["result"].clone();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no /state");
}

fn evictions(addr: SocketAddr) -> u64 {
    let s = get_state(addr);
    s["evictions"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

/// Waits until no client and no other connection is left (30 s at most).
fn wait_idle(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let s = get_state(addr);
        if s["stream"]["clients"] == 0 && s["connections"]["open"] == 1 {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "warning: clients still connected after 30 s: {}",
        get_state(addr)["connections"]
    );
}

/// Runs `workers` threads of churn for `duration`; returns the peak RSS seen (KiB) by a sampler.
fn churn(addr: SocketAddr, workers: usize, duration: Duration, tally: Arc<Tally>) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..workers)
        .map(|i| {
            let (stop, tally) = (stop.clone(), tally.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((i as u64 + 1) * 0x1000_0001));
                while !stop.load(Ordering::Relaxed) {
                    one_client(addr, &mut rng, &tally);
                }
            })
        })
        .collect();
    let end = Instant::now() + duration;
    let mut peak = 0;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(500));
        if let Some(p) = server_pid(addr) {
            peak = peak.max(rss_kib(p));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    peak
}

fn server_pid(_addr: SocketAddr) -> Option<u32> {
    PID.get().copied()
}

static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

fn connect(
    addr: SocketAddr,
    path: &str,
    rcvbuf: Option<usize>,
) -> std::io::Result<(BufReader<TcpStream>, String)> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    if let Some(size) = rcvbuf {
        sock.set_recv_buffer_size(size)?;
    }
    sock.connect(&addr.into())?;
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    (&s).write_all(format!("GET {path} HTTP/1.1\r\nHost: soak\r\n\r\n").as_bytes())?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    if !line.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("refused: {}", line.trim())));
    }
    let mut boundary = String::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(b) = h
            .to_ascii_lowercase()
            .strip_prefix("content-type:")
            .and_then(|v| v.split("boundary=").nth(1).map(str::to_string))
        {
            boundary = b.trim().to_string();
        }
        if h == "\r\n" {
            break;
        }
    }
    let mut first = String::new();
    r.read_line(&mut first)?;
    Ok((r, boundary))
}

/// Reads one part; returns its sequence number.
fn part(r: &mut BufReader<TcpStream>, boundary: &str, body: &mut Vec<u8>) -> std::io::Result<u64> {
    let (mut len, mut seq) = (None, 0);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if h == "\r\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().ok();
        } else if let Some(v) = lower.strip_prefix("x-frame-sequence:") {
            seq = v.trim().parse().unwrap_or(0);
        }
    }
    let len: usize = len.ok_or_else(|| std::io::Error::other("part without Content-Length"))?;
    body.resize(len + boundary.len() + 6, 0);
    r.read_exact(body)?;
    if &body[..2] != b"\xff\xd8" || &body[len - 2..len] != b"\xff\xd9" {
        return Err(std::io::Error::other("not a whole JPEG"));
    }
    Ok(seq)
}

fn one_client(addr: SocketAddr, rng: &mut Rng, tally: &Tally) {
    let kind = rng.below(100);
    let n = 5 + rng.below(60) as usize;
    let mut body = Vec::new();
    let count = |c: &AtomicU64| {
        c.fetch_add(1, Ordering::Relaxed);
    };
    match kind {
        // Readers of each policy, at full speed; all must be gapless.
        0..=29 => {
            let Ok((mut r, b)) = connect(addr, "/stream?delivery=all", None) else {
                return count(&tally.refused);
            };
            let mut last: Option<u64> = None;
            for _ in 0..n {
                match part(&mut r, &b, &mut body) {
                    Ok(seq) => {
                        if let Some(l) = last {
                            if seq != l + 1 {
                                count(&tally.all_gaps);
                            }
                        }
                        last = Some(seq);
                        count(&tally.all_frames);
                    }
                    Err(_) => return count(&tally.all_evicted),
                }
            }
            count(&tally.all_complete);
        }
        30..=59 => {
            let (path, c) = if kind < 50 {
                ("/stream", &tally.latest)
            } else {
                ("/stream?delivery=lockstep", &tally.lockstep)
            };
            let Ok((mut r, b)) = connect(addr, path, None) else {
                return count(&tally.refused);
            };
            let mut last = 0;
            for _ in 0..n {
                match part(&mut r, &b, &mut body) {
                    Ok(seq) if seq > last => last = seq,
                    Ok(_) => count(&tally.order_errors),
                    Err(_) => return count(&tally.other_errors),
                }
            }
            count(c);
        }
        // Slow readers (5 fps) of latest and all, with a small receive buffer.
        60..=67 => {
            let policy = if kind & 1 == 0 { "all" } else { "latest" };
            let Ok((mut r, b)) =
                connect(addr, &format!("/stream?delivery={policy}"), Some(32 * 1024))
            else {
                return count(&tally.refused);
            };
            let mut last: Option<u64> = None;
            for _ in 0..10 {
                std::thread::sleep(Duration::from_millis(200));
                match part(&mut r, &b, &mut body) {
                    Ok(seq) => {
                        if policy == "all" && last.is_some_and(|l| seq != l + 1) {
                            count(&tally.all_gaps);
                        }
                        last = Some(seq);
                    }
                    Err(_) => {
                        if policy == "all" {
                            count(&tally.all_evicted);
                        }
                        return;
                    }
                }
            }
            count(&tally.slow);
        }
        // Stalled: never reads, for a while longer than the timeouts; then leaves.
        68..=72 => {
            let policy = ["all", "latest", "lockstep"][rng.below(3) as usize];
            if let Ok((r, _)) = connect(addr, &format!("/stream?delivery={policy}"), Some(4096)) {
                std::thread::sleep(Duration::from_millis(1500 + rng.below(3000)));
                drop(r);
                count(&tally.stalled);
            }
        }
        // Vanish with a reset, mid-frame.
        73..=82 => {
            let policy = ["all", "latest", "lockstep"][rng.below(3) as usize];
            if let Ok((mut r, _)) = connect(addr, &format!("/stream?delivery={policy}"), None) {
                let mut some = [0u8; 700];
                let _ = r.read(&mut some);
                let _ = socket2::SockRef::from(r.get_ref()).set_linger(Some(Duration::ZERO));
                drop(r);
                count(&tally.vanished);
            }
        }
        83..=90 => {
            if let Ok(mut s) = TcpStream::connect(addr) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = s.write_all(
                    b"GET /snapshot HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n",
                );
                let mut all = Vec::new();
                let _ = s.read_to_end(&mut all);
                if all.starts_with(b"HTTP/1.1 200") {
                    count(&tally.snapshots);
                } else {
                    count(&tally.other_errors);
                }
            }
        }
        // Hostile: slowloris, garbage, smuggling shapes, an oversized head.
        _ => {
            if let Ok(mut s) = TcpStream::connect(addr) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                match rng.below(4) {
                    0 => {
                        for b in b"GET /stream HTTP/1.1\r\nHost: x\r\nX: yyyyyyyyyyyyyyyy"
                            .iter()
                            .take(12)
                        {
                            if s.write_all(&[*b]).is_err() {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(250));
                        }
                    }
                    1 => {
                        let _ = s.write_all(b"\x16\x03\x01garbage\r\n\r\n");
                    }
                    2 => {
                        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc");
                    }
                    _ => {
                        let mut big = b"GET /".to_vec();
                        big.resize(20_000, b'a');
                        let _ = s.write_all(&big);
                    }
                }
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
                count(&tally.hostile);
            }
        }
    }
}

fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain struct in/out.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// One hostile load against a fresh mjpegd (test pattern 640x480 at 30 fps), with one real viewer.
fn attack(args: &[String]) {
    raise_nofile();
    let kind = arg(args, "--kind").unwrap_or("slowloris".into());
    let count: usize = arg(args, "--count").map_or(10_000, |c| c.parse().unwrap());
    let me = std::env::current_exe().unwrap();
    let mjpegd = arg(args, "--mjpegd").map_or_else(
        || me.parent().unwrap().parent().unwrap().join("mjpegd"),
        std::path::PathBuf::from,
    );
    let mut cmd = Command::new(&mjpegd);
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--capture",
        "always",
        "--resolution",
        "640x480",
        "--fps",
        "30",
    ])
    .args(["--max-clients", "20000", "--max-connections", "30000"]);
    if kind == "deaf" {
        cmd.args(["--write-timeout", "5s"]);
    }
    let head_timeout = arg(args, "--head-timeout").unwrap_or("5s".into());
    cmd.args(["--head-timeout", &head_timeout]);
    let mut child = cmd
        .env("MJPEGD_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = listening_address(&mut child);
    let pid = child.id();
    // The real viewer: counts whole frames, second by second.
    let frames = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let viewer = {
        let (frames, stop) = (frames.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut r, b) = connect(addr, "/stream", None).unwrap();
            let mut body = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if part(&mut r, &b, &mut body).is_err() {
                    println!("viewer: stream broke");
                    return;
                }
                frames.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let fps_over = |d: Duration| {
        let f0 = frames.load(Ordering::Relaxed);
        let t0 = Instant::now();
        let mut peak = 0;
        while t0.elapsed() < d {
            std::thread::sleep(Duration::from_millis(250));
            peak = peak.max(rss_kib(pid));
        }
        (
            (frames.load(Ordering::Relaxed) - f0) as f64 / t0.elapsed().as_secs_f64(),
            peak,
        )
    };
    std::thread::sleep(Duration::from_secs(2));
    let (fps_before, _) = fps_over(Duration::from_secs(4));
    let rss_base = rss_kib(pid);
    let started = Instant::now();
    let mut conns = Vec::with_capacity(count);
    let mut failed = 0;
    let request = b"GET /stream HTTP/1.1\r\nHost: x\r\nX-Trickle: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for _ in 0..count {
        let c = match kind.as_str() {
            "deaf" => {
                let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .unwrap();
                let _ = sock.set_recv_buffer_size(4096);
                sock.connect(&addr.into())
                    .map(|_| TcpStream::from(sock))
                    .and_then(|mut s| {
                        s.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")?;
                        Ok(s)
                    })
            }
            _ => TcpStream::connect(addr),
        };
        match c {
            Ok(s) => conns.push(s),
            Err(_) => failed += 1,
        }
    }
    let opened = started.elapsed();
    let mut alive = vec![true; conns.len()];
    let mut peak = rss_kib(pid);
    let mut fps_during = Vec::new();
    let mut all_cut_at = None;
    let mut peak_open = 0;
    let seconds = humantime::parse_duration(&head_timeout).unwrap().as_secs() as usize + 7;
    for second in 0..seconds {
        if kind == "slowloris" {
            for (c, a) in conns.iter_mut().zip(alive.iter_mut()) {
                if *a
                    && c.write_all(&request[second % request.len()..][..1])
                        .is_err()
                {
                    *a = false;
                }
            }
        }
        let (fps, p) = fps_over(Duration::from_secs(1));
        fps_during.push(fps);
        peak = peak.max(p);
        let open = get_state(addr)["connections"]["open"].as_u64().unwrap_or(0);
        peak_open = peak_open.max(open);
        if open <= 2 && all_cut_at.is_none() {
            all_cut_at = Some(started.elapsed());
        }
    }
    let state = get_state(addr);
    drop(conns);
    std::thread::sleep(Duration::from_secs(2));
    let rss_end = rss_kib(pid);
    stop.store(true, Ordering::Relaxed);
    let _ = viewer.join();
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    let min = fps_during.iter().cloned().fold(f64::MAX, f64::min);
    let mean = fps_during.iter().sum::<f64>() / fps_during.len() as f64;
    println!("attack {kind}: {} connections opened in {:.1} s ({failed} failed to connect), at most {peak_open} open at once (--head-timeout {head_timeout})", count - failed, opened.as_secs_f64());
    println!(
        "  mjpegd RSS: {:.1} MiB before, {:.1} MiB peak ({:+.1} MiB), {:.1} MiB after",
        mib(rss_base),
        mib(peak),
        mib(peak) - mib(rss_base),
        mib(rss_end)
    );
    println!(
        "  viewer: {fps_before:.1} fps before; during: mean {mean:.1}, worst second {min:.1} fps"
    );
    println!(
        "  all hostile connections cut by {:?} after the first was opened; /state rejected: {}",
        all_cut_at, state["rejected"]
    );
}
