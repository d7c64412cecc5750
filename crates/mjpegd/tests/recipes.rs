//! The recipes in docs/recipes, run as written with the real programs: nginx and Caddy in front of mjpegd,
//! and edge mjpegd instances relaying one origin behind HAProxy. Each config file is read from docs/, with
//! only its addresses changed to this test's free loopback ports.

mod common;
use common::*;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A proxy process of the test's, ended (SIGTERM, then waited for) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A recipe from docs/recipes.
fn recipe(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/recipes")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `text` with `from` replaced by `to`, which must be there.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the recipe has {from:?}");
    text.replace(from, to)
}

/// Starts `cmd` and waits until `port` accepts.
fn start(cmd: &mut Command, port: u16) -> (Proc, SocketAddr) {
    let proc = Proc(
        cmd.stdout(Stdio::null())
            .spawn()
            .expect("the program starts"),
    );
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    eventually(Duration::from_secs(10), "the proxy listening", || {
        TcpStream::connect(addr).ok()
    });
    (proc, addr)
}

/// nginx with docs/recipes/nginx.conf in front of `upstream`.
fn nginx(upstream: SocketAddr, dir: &Path) -> (Proc, SocketAddr) {
    let port = free_port();
    let site = replaced(
        &recipe("nginx.conf"),
        "listen 80;",
        &format!("listen 127.0.0.1:{port};"),
    );
    nginx_with(&site, upstream, port, dir)
}

/// nginx with the server block `site` (which names `upstream` as 127.0.0.1:8080) listening on `port`.
fn nginx_with(site: &str, upstream: SocketAddr, port: u16, dir: &Path) -> (Proc, SocketAddr) {
    let site = replaced(site, "127.0.0.1:8080", &upstream.to_string());
    nginx_site(&site, port, dir)
}

/// nginx serving the server block `site` (listening on `port`).
fn nginx_site(site: &str, port: u16, dir: &Path) -> (Proc, SocketAddr) {
    std::fs::write(dir.join("site.conf"), site).unwrap();
    let d = dir.display();
    let main = format!(
        "worker_processes 1;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
         scgi_temp_path {d}/scgi;\n  include {d}/site.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    start(
        Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-g")
            .arg(format!(
                "daemon off; pid {d}/nginx.pid; error_log stderr warn;"
            )),
        port,
    )
}

#[test]
fn nginx_recipe_reaches_mjpegd_over_a_unix_socket() {
    let dir = TempDir::new("recipe-nginx-unix");
    let sock = dir.0.join("mjpegd.sock");
    let server = Server::start(&[
        "--listen",
        &format!("unix:{}?mode=0666", sock.display()),
        "--resolution",
        "160x120",
    ]);
    let port = free_port();
    let site = replaced(
        &recipe("nginx.conf"),
        "listen 80;",
        &format!("listen 127.0.0.1:{port};"),
    );
    let site = replaced(
        &site,
        "http://127.0.0.1:8080",
        &format!("http://unix:{}:", sock.display()),
    );
    let (_nginx, addr) = nginx_site(&site, port, &dir.0);
    let r = request(
        addr,
        "GET /snapshot HTTP/1.1\r\nHost: cams\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(size_of(&r.body), (160, 120));
    let mut s = Stream::open(addr, "/stream", None);
    assert_whole_jpeg(&s.next_part().unwrap().body);
    // mjpegd saw the client on its unix socket.
    let clients = server.state()["clients"].clone();
    assert!(clients.to_string().contains("unix:"), "{clients}");
}

#[test]
fn crowsnest_recipe_serves_every_webcam_path_from_one_mjpegd() {
    let dir = TempDir::new("recipe-crowsnest");
    let config = dir.0.join("cams.toml");
    std::fs::write(
        &config,
        "[cameras.nozzle]\nresolution = \"320x240\"\n[cameras.bed]\nresolution = \"160x120\"\n\
         [cameras.door]\nresolution = \"128x96\"\n",
    )
    .unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let port = free_port();
    // Mainsail's server block, reduced to what matters here, with the recipe's location in it.
    let site = format!(
        "server {{\n  listen 127.0.0.1:{port};\n  location / {{ return 404; }}\n{}\n}}\n",
        recipe("nginx-crowsnest.conf")
    );
    let (_nginx, addr) = nginx_with(&site, server.addr, port, &dir.0);
    for (path, size) in [
        ("/webcam/?action=snapshot", (320, 240)),
        (
            "/webcam2/?action=snapshot&bypassCache=1700000000000",
            (160, 120),
        ),
        ("/webcam3/?action=snapshot", (128, 96)),
    ] {
        // Three cameras start at once; on a loaded machine the first frames may come after the
        // snapshot timeout, which answers 503.
        let r = eventually(Duration::from_secs(15), "a snapshot", || {
            let r = request(
                addr,
                &format!("GET {path} HTTP/1.1\r\nHost: pi\r\nConnection: close\r\n\r\n"),
            );
            (r.status != 503).then_some(r)
        });
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(size_of(&r.body), size, "{path}");
    }
    let mut s = Stream::open(
        addr,
        "/webcam2/?action=stream&timestamp=1700000000000",
        None,
    );
    assert!(!s.head.headers.contains_key("transfer-encoding"));
    for _ in 0..3 {
        assert_eq!(size_of(&s.next_part().unwrap().body), (160, 120));
    }
}

/// Caddy with docs/recipes/Caddyfile in front of `upstream` (plain HTTP on a loopback port, and no admin
/// endpoint, so that tests can run side by side).
fn caddy(upstream: SocketAddr, dir: &Path) -> (Proc, SocketAddr) {
    let port = free_port();
    let site = replaced(
        &recipe("Caddyfile"),
        "cams.example.org",
        &format!("http://127.0.0.1:{port}"),
    );
    let site = replaced(&site, "127.0.0.1:8080", &upstream.to_string());
    std::fs::write(
        dir.join("Caddyfile"),
        format!("{{\n\tadmin off\n}}\n{site}"),
    )
    .unwrap();
    start(
        Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(dir.join("Caddyfile"))
            .env("HOME", dir)
            .env("XDG_DATA_HOME", dir)
            .env("XDG_CONFIG_HOME", dir)
            // It logs every client that goes away mid-stream as an error: keep that out of the test's output.
            .stderr(Stdio::null()),
        port,
    )
}

/// The response head only (for a stream that would never end).
fn head_of(addr: SocketAddr, raw: &str) -> Response {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("a response head");
        head.push(byte[0]);
    }
    parse_response(&head)
}

/// A part's capture time, from its X-Timestamp.
fn captured(part: &Part) -> SystemTime {
    let secs: f64 = part.headers["x-timestamp"].parse().unwrap();
    UNIX_EPOCH + Duration::from_secs_f64(secs)
}

/// Reads `n` parts and checks that each arrived whole before the next frame was even captured: a proxy
/// that buffers would hold a frame's tail until more bytes come.
fn frames_arrive_as_they_are_made(stream: &mut Stream, n: usize) {
    let mut previous: Option<SystemTime> = None;
    for _ in 0..n {
        let part = stream.next_part().expect("a part through the proxy");
        let received = SystemTime::now();
        assert_whole_jpeg(&part.body);
        if let Some(before) = previous {
            assert!(
                before < captured(&part),
                "frame {} was captured before the previous one reached the client",
                part.seq()
            );
        }
        previous = Some(received);
    }
}

/// A slow camera: frames half a second apart, so that "before the next one" has a wide margin.
fn slow_camera() -> Server {
    Server::start(&["--resolution", "160x120", "--fps", "2"])
}

#[test]
fn nginx_recipe_passes_frames_as_they_come_unchunked_and_every_url() {
    let server = slow_camera();
    let dir = TempDir::new("recipe-nginx");
    let (_nginx, addr) = nginx(server.addr, &dir.0);

    let mut s = Stream::open(addr, "/stream", None);
    assert_eq!(s.head.status, 200);
    assert!(s.head.headers["content-type"].starts_with("multipart/x-mixed-replace"));
    assert!(
        !s.head.headers.contains_key("transfer-encoding"),
        "not chunked: {:?}",
        s.head.headers
    );
    frames_arrive_as_they_are_made(&mut s, 4);

    for path in [
        "/snapshot",
        "/?action=snapshot",
        "/webcam/?action=snapshot&1700000000",
    ] {
        let r = request(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: cams\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(size_of(&r.body), (160, 120), "{path}");
    }
    let page = request(
        addr,
        "GET / HTTP/1.1\r\nHost: cams\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(page.status, 200);
    assert!(page.headers["content-type"].starts_with("text/html"));
}

#[test]
fn caddy_recipe_passes_frames_as_they_come_and_players_read_its_chunked_streams() {
    let server = slow_camera();
    let dir = TempDir::new("recipe-caddy");
    let (_caddy, addr) = caddy(server.addr, &dir.0);

    // Caddy serves the site by its address, so requests name it as Host. HTTP/1.0 clients get the stream as it is.
    let mut s = Stream::open_raw(
        addr,
        &format!("GET /stream HTTP/1.0\r\nHost: {addr}\r\n\r\n"),
        None,
    );
    assert_eq!(s.head.status, 200);
    frames_arrive_as_they_are_made(&mut s, 4);

    // HTTP/1.1 clients get it chunked, as the recipe says; ffmpeg (and so Frigate, OpenCV) reads it.
    let head = head_of(
        addr,
        &format!("GET /stream HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    );
    assert_eq!(
        head.headers.get("transfer-encoding").map(String::as_str),
        Some("chunked")
    );
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(format!("http://{addr}/stream"))
        .args(["-frames:v", "3", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let r = request(
        addr,
        &format!("GET /snapshot HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(size_of(&r.body), (160, 120));
}

/// Stream clients an mjpegd's `/state` lists.
fn clients_of(server: &Server) -> usize {
    server.state()["clients"]
        .as_array()
        .expect("a client list")
        .len()
}

/// HAProxy with docs/recipes/haproxy.cfg in front of edges on `edge_ports` (one or two; the recipe's
/// second server line goes when there is one edge), at most `maxconn` connections (HAProxy refuses to
/// start when the fd limit cannot cover the recipe's 6000: a test needs few).
fn haproxy(edge_ports: &[u16], maxconn: u32, dir: &Path) -> (Proc, SocketAddr) {
    let port = free_port();
    let mut cfg = replaced(
        &recipe("haproxy.cfg"),
        "bind :8080",
        &format!("bind 127.0.0.1:{port}"),
    );
    for (n, default) in [(0, 8081), (1, 8082)] {
        let line = format!("server edge{} 127.0.0.1:{default}", n + 1);
        cfg = match edge_ports.get(n) {
            Some(p) => replaced(&cfg, &line, &format!("server edge{} 127.0.0.1:{p}", n + 1)),
            None => replaced(
                &cfg,
                &format!("    {line} check inter 2s send-proxy-v2\n"),
                "",
            ),
        };
    }
    let cfg = replaced(&cfg, "maxconn 6000", &format!("maxconn {maxconn}"));
    std::fs::write(dir.join("haproxy.cfg"), cfg).unwrap();
    start(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(dir.join("haproxy.cfg"))
            .stderr(Stdio::null()),
        port,
    )
}

#[test]
fn haproxy_recipe_spreads_clients_over_edges_that_each_hold_one_upstream_connection() {
    let origin = Server::start(&["--resolution", "160x120", "--fps", "10"]);
    let upstream = format!("http://{}/stream", origin.addr);
    // Each edge as the recipe says: a PROXY protocol listener for HAProxy (and, for this test's /state, a
    // plain one on another port).
    let edge_ports = [free_port(), free_port()];
    let edge = |port: u16| {
        Server::start(&[
            "--source",
            &upstream,
            "--listen",
            &format!("127.0.0.1:{port}?proxy-protocol=1"),
        ])
    };
    let edges = [edge(edge_ports[0]), edge(edge_ports[1])];
    let dir = TempDir::new("recipe-haproxy");
    let (_haproxy, addr) = haproxy(&edge_ports, 200, &dir.0);

    let mut streams: Vec<Stream> = (0..6)
        .map(|_| Stream::open(addr, "/stream", None))
        .collect();
    for s in &mut streams {
        assert_eq!(s.head.status, 200);
        for _ in 0..3 {
            assert_eq!(size_of(&s.next_part().unwrap().body), (160, 120));
        }
    }
    // leastconn: three clients on each edge, and the origin serves one connection per edge.
    assert_eq!(clients_of(&edges[0]), 3);
    assert_eq!(clients_of(&edges[1]), 3);
    assert_eq!(clients_of(&origin), 2);

    let r = request(
        addr,
        "GET /snapshot HTTP/1.1\r\nHost: cams\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(size_of(&r.body), (160, 120));
}

/// Frigate runs ffmpeg on an MJPEG camera with its `preset-http-mjpeg-generic` input arguments, one output
/// per role: raw frames for detection, H.264 segments for recording (`preset-record-mjpeg`: MJPEG cannot be
/// copied into MP4). This runs that ffmpeg command line against mjpegd, as docs/recipes/README.md gives it.
#[test]
fn frigates_ffmpeg_command_detects_and_records_with_wallclock_timestamps() {
    let server = Server::start(&["--resolution", "320x240", "--fps", "5"]);
    let dir = TempDir::new("recipe-frigate");
    let input = [
        "-avoid_negative_ts",
        "make_zero",
        "-fflags",
        "nobuffer",
        "-flags",
        "low_delay",
        "-strict",
        "experimental",
        "-fflags",
        "+genpts+discardcorrupt",
        "-use_wallclock_as_timestamps",
        "1",
    ];
    let record = [
        "-f",
        "segment",
        "-segment_time",
        "10",
        "-segment_format",
        "mp4",
        "-reset_timestamps",
        "1",
        "-strftime",
        "1",
        "-c:v",
        "libx264",
        "-an",
    ];
    let detect = [
        "-r", "5", "-vf", "fps=5", "-f", "rawvideo", "-pix_fmt", "yuv420p",
    ];
    let started = std::time::Instant::now();
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error"])
        .args(input)
        .arg("-i")
        .arg(format!("http://{}/stream", server.addr))
        .args(["-t", "3"])
        .args(record)
        .arg(dir.0.join("%Y%m%d%H%M%S.mp4"))
        .args(["-t", "3"])
        .args(detect)
        .arg(dir.0.join("detect.yuv"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ffmpeg gives MJPEG over HTTP no timestamps of its own: without -use_wallclock_as_timestamps it would
    // play the camera's 5 fps at its default 25, and 3 s of output would take 15 s of the camera's frames.
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(9),
        "3 s of recording took {took:?}"
    );

    // Detection got whole 320x240 frames at 5 fps.
    let raw = std::fs::metadata(dir.0.join("detect.yuv")).unwrap().len();
    let frame = 320 * 240 * 3 / 2;
    assert_eq!(raw % frame, 0);
    assert!(
        (10..=20).contains(&(raw / frame)),
        "{} detect frames",
        raw / frame
    );

    let mp4 = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "mp4"))
        .expect("a recorded segment");
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=codec_name,nb_frames",
            "-of",
            "json",
        ])
        .arg(&mp4)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    assert_eq!(v["streams"][0]["codec_name"], "h264", "{v}");
    let duration: f64 = v["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!((2.5..3.5).contains(&duration), "{v}");
}

/// The status of `GET /state` with Basic `credentials`, sent from `ip` to `to` (0: no answer in `within`).
/// (The Host is `to` itself: Caddy answers an empty 200 for a host it does not serve.)
fn state_status(ip: &str, to: SocketAddr, credentials: &str, within: Duration) -> u16 {
    use base64::Engine;
    use std::io::{Read, Write};
    let mut s = connect_from(ip, to);
    s.set_read_timeout(Some(within)).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(credentials);
    let _ = write!(
        s,
        "GET /state HTTP/1.1\r\nHost: {to}\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"
    );
    let mut head = [0u8; 12];
    match s.read_exact(&mut head) {
        Ok(()) => std::str::from_utf8(&head[9..12])
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// A users file with one user, `victim`, whose password is `right horse` (bcrypt cost 11).
fn victim_users(dir: &Path) -> String {
    let file = dir.join("users");
    let hash = bcrypt::hash("right horse", 11).unwrap();
    std::fs::write(&file, format!("victim:{hash}\n")).unwrap();
    file.display().to_string()
}

/// Through `proxy`: a flood of wrong passwords for `victim` from 127.0.0.2 (100 connections at a time,
/// for as long as the check takes), and meanwhile a real user's first login from 127.0.0.3. The proxy
/// names each client to mjpegd, which gives each its own password-check lane, so the flood is turned
/// away (503 past its lane) while the real user gets in within seconds. Returns the login's status and
/// time, and what the flood got.
fn a_flood_through(proxy: SocketAddr) -> (u16, Duration, Vec<u16>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    const ATTACKERS: usize = 100;
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..ATTACKERS)
        .map(|i| {
            let (stop, answers) = (stop.clone(), answers.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let status = state_status(
                        "127.0.0.2",
                        proxy,
                        &format!("victim:wrong {i} {n}"),
                        Duration::from_secs(20),
                    );
                    answers.lock().unwrap().push(status);
                    if status != 401 {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    let started = std::time::Instant::now();
    let status = state_status(
        "127.0.0.3",
        proxy,
        "victim:right horse",
        Duration::from_secs(30),
    );
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let answers = answers.lock().unwrap().clone();
    eprintln!(
        "login through the proxy under a flood of {ATTACKERS} connections: {status} in {took:?}; \
         the flood: {} answers, {} refused 401, {} turned away 503",
        answers.len(),
        answers.iter().filter(|&&s| s == 401).count(),
        answers.iter().filter(|&&s| s == 503).count()
    );
    (status, took, answers)
}

/// What the flood must show: the real user in within seconds, and the flood refused and turned away.
fn assert_the_real_user_got_in(result: (u16, Duration, Vec<u16>)) {
    let (status, took, answers) = result;
    assert_eq!(status, 200, "the real user got in");
    assert!(
        took < Duration::from_secs(5),
        "the real user waited {took:?} behind the flood"
    );
    assert!(
        answers.contains(&401),
        "wrong passwords were checked: {:?}",
        &answers[..answers.len().min(20)]
    );
    assert!(
        answers.contains(&503),
        "the flood was turned away past its own lane"
    );
    assert!(
        answers.iter().all(|&s| s == 401 || s == 503),
        "the flood never got in: {answers:?}"
    );
}

#[test]
fn behind_the_nginx_recipe_a_password_flood_from_one_client_does_not_keep_another_out() {
    let dir = TempDir::new("recipe-nginx-flood");
    let users = victim_users(&dir.0);
    let server = Server::start(&["--auth-file", &users, "--trusted-proxy", "127.0.0.1"]);
    let (_nginx, addr) = nginx(server.addr, &dir.0);
    assert_the_real_user_got_in(a_flood_through(addr));
}

#[test]
fn behind_the_caddy_recipe_a_password_flood_from_one_client_does_not_keep_another_out() {
    let dir = TempDir::new("recipe-caddy-flood");
    let users = victim_users(&dir.0);
    let server = Server::start(&["--auth-file", &users, "--trusted-proxy", "127.0.0.1"]);
    let (_caddy, addr) = caddy(server.addr, &dir.0);
    assert_the_real_user_got_in(a_flood_through(addr));
}

#[test]
fn behind_the_haproxy_recipe_a_password_flood_from_one_client_does_not_keep_another_out() {
    let dir = TempDir::new("recipe-haproxy-flood");
    let users = victim_users(&dir.0);
    // One edge, as the recipe runs it (a PROXY protocol listener), with passwords.
    let edge_port = free_port();
    let _edge = Server::start(&[
        "--auth-file",
        &users,
        "--listen",
        &format!("127.0.0.1:{edge_port}?proxy-protocol=1"),
    ]);
    let (_haproxy, addr) = haproxy(&[edge_port], 400, &dir.0);
    eventually(Duration::from_secs(10), "HAProxy forwarding", || {
        (state_status(
            "127.0.0.4",
            addr,
            "victim:right horse",
            Duration::from_secs(5),
        ) == 200)
            .then_some(())
    });
    assert_the_real_user_got_in(a_flood_through(addr));
}
