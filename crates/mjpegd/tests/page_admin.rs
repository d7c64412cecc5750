//! The pages as a person uses them, in headless Chromium driven by playwright (tests/page_admin.py):
//! an admin manages cameras from the page (with no credentials configured, from this machine; and as a
//! Basic-auth user named in `--admin`), a viewer sees no controls, and the camera page shows no raw JSON.
//! The camera page's settings panel: a V4L2 camera's controls (the fake camera), the orientation, and a
//! relayed ESP32-CAM's settings (a firmware emulator).
//! Needs Debian's `chromium` and Python's `playwright` (both installed by scripts/setup.sh), and for the
//! fake camera /dev/fuse and fusermount3.

mod common;
use common::*;
use fakecam::{FakeCam, Format, FrameSource, Options};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs tests/page_admin.py with `args`; panics with its output unless it passes.
fn playwright(args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/page_admin.py");
    let started = Instant::now();
    let out = Command::new("timeout")
        .arg("120")
        .arg("python3")
        .arg(&script)
        .args(args)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "page_admin.py {} ({:.1} s):\n{stdout}{stderr}",
        args[0],
        started.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success() && stdout.contains("PAGE OK"),
        "page_admin.py {args:?} failed"
    );
}

/// A config file with `names` as pattern cameras, the first with keys the form has no field for and a
/// comment, so that an edit through the page must keep them.
fn config(dir: &TempDir, names: &[&str]) -> String {
    let mut text = String::from("# kept by the page\n");
    for (i, name) in names.iter().enumerate() {
        text.push_str(&format!(
            "[cameras.{name}]\nsource = \"pattern\"\nresolution = \"160x120\"\nfps = 5\n"
        ));
        if i == 0 {
            text.push_str(
                "capture = \"always\" # a comment on a key\nmax-variants = 3\nlinger = \"7s\"\n",
            );
        }
        text.push('\n');
    }
    let path = dir.0.join("cameras.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// An auth file with `alice` (password "alice pw") and `bob` (password "bob pw").
fn users(dir: &TempDir) -> String {
    let path = dir.0.join("users");
    let lines: String = ["alice", "bob"]
        .iter()
        .map(|u| format!("{u}:{}\n", bcrypt::hash(format!("{u} pw"), 4).unwrap()))
        .collect();
    std::fs::write(&path, lines).unwrap();
    path.to_str().unwrap().to_string()
}

fn url(server: &Server) -> String {
    format!("http://{}/", server.addr)
}

#[test]
fn an_admin_on_this_machine_adds_edits_and_removes_a_camera_from_the_page() {
    // No credentials configured: a loopback client is the admin. One camera: / is its page.
    let dir = TempDir::new("page-admin-local");
    let config = config(&dir, &["front"]);
    let server = Server::start(&["--config", &config]);
    playwright(&["admin", &url(&server), "--config", &config]);
}

#[test]
fn a_basic_auth_admin_manages_cameras_from_the_wall() {
    let dir = TempDir::new("page-admin-basic");
    let config = config(&dir, &["front", "back"]);
    let users = users(&dir);
    let server = Server::start(&[
        "--config",
        &config,
        "--auth-file",
        &users,
        "--admin",
        "alice",
    ]);
    playwright(&[
        "admin",
        &url(&server),
        "--config",
        &config,
        "--user",
        "alice:alice pw",
    ]);
}

#[test]
fn a_viewer_sees_no_management_buttons() {
    let dir = TempDir::new("page-viewer");
    let config = config(&dir, &["front", "back"]);
    let users = users(&dir);
    let server = Server::start(&[
        "--config",
        &config,
        "--auth-file",
        &users,
        "--admin",
        "alice",
    ]);
    playwright(&[
        "viewer",
        &url(&server),
        "--config",
        &config,
        "--user",
        "bob:bob pw",
        "--admin-user",
        "alice:alice pw",
    ]);
}

#[test]
fn the_camera_page_shows_no_raw_json() {
    let server = Server::start(&["--fps", "5"]);
    playwright(&["nojson", &url(&server)]);
    // And the page's source has no JSON.stringify of state left.
    let html = String::from_utf8(server.get("/").body).unwrap();
    assert!(!html.contains("JSON.stringify(s."), "state printed as JSON");
    // Self-contained: the admin part is in the page itself, nothing is loaded from elsewhere.
    assert!(html.contains("mjpegdAdmin") && !html.contains("{{ADMIN}}"));
    for external in ["src=\"http", "href=\"http", "<link", "@import", "url("] {
        assert!(!html.contains(external), "{external}");
    }
}

/// A fake camera at 160x120, and a config file naming it `default`, captured always.
fn fake_camera(dir: &TempDir) -> (FakeCam, String) {
    let mount = dir.0.join("cam");
    std::fs::create_dir_all(&mount).unwrap();
    let cam = FakeCam::mount(
        &mount,
        Options {
            width: 160,
            height: 120,
            fps: 15,
            format: Format::Mjpeg,
            frames: FrameSource::Generated,
            bad_every: None,
        },
    )
    .expect("the fake camera mounts (needs /dev/fuse and fusermount3)");
    let config = dir.0.join("cams.toml");
    std::fs::write(
        &config,
        format!(
            "[cameras.default]\ndevice = \"{}\"\nresolution = \"160x120\"\nfps = 15\ncapture = \"always\"\n",
            cam.device_path().display()
        ),
    )
    .unwrap();
    (cam, config.to_str().unwrap().to_string())
}

#[test]
fn an_admin_sets_a_v4l2_cameras_controls_from_its_page() {
    let dir = TempDir::new("page-controls");
    let (cam, config) = fake_camera(&dir);
    let server = Server::start(&["--config", &config]);
    playwright(&["controls", &url(&server), "--config", &config]);
    // What the panel left set is what the camera has.
    assert_eq!(cam.control(fakecam::CID_BRIGHTNESS), Some(-3));
    assert_eq!(cam.control(fakecam::CID_FOCUS_AUTO), Some(1));
}

#[test]
fn a_camera_unplugged_when_the_page_opens_shows_its_controls_once_replugged() {
    let dir = TempDir::new("page-unplugged");
    let (cam, config) = fake_camera(&dir);
    let server = Server::start(&["--config", &config]);
    cam.unplug();
    eventually(Duration::from_secs(10), "the controls unreachable", || {
        (server.get("/cams/default/controls").status == 503).then_some(())
    });
    // The page says so; when it has, it writes the signal file and the camera is plugged back in.
    let signal = dir.0.join("replug");
    let replug = std::thread::spawn({
        let signal = signal.clone();
        move || {
            let started = Instant::now();
            while !signal.exists() && started.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(50));
            }
            cam.replug();
            cam
        }
    });
    playwright(&[
        "unplugged",
        &url(&server),
        "--signal",
        signal.to_str().unwrap(),
    ]);
    drop(replug.join().unwrap());
}

#[test]
fn an_admin_turns_the_picture_from_the_page() {
    let dir = TempDir::new("page-orient");
    let config = config(&dir, &["front"]);
    let server = Server::start(&["--config", &config]);
    playwright(&["orient", &url(&server), "--config", &config]);
}

/// Espressif's CameraWebServer settings server, keeping what it is sent: `/control?var=&val=` (200; 500
/// for `vflip`, as a sensor that cannot flip answers) and `/status` with the values now set.
fn firmware() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let settings: Arc<Mutex<BTreeMap<String, i64>>> = Arc::new(Mutex::new(
        [
            ("framesize", 8),
            ("quality", 10),
            ("brightness", 0),
            ("hmirror", 0),
            ("vflip", 0),
            ("awb", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    ));
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (log, settings) = (log.clone(), settings.clone());
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                }
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                log.lock().unwrap().push(target.clone());
                let (status, body) = if target.starts_with("/status") {
                    let s = settings.lock().unwrap();
                    ("200 OK", serde_json::to_string(&*s).unwrap())
                } else if let Some(q) = target.strip_prefix("/control?var=") {
                    match q.split_once("&val=") {
                        Some(("vflip", _)) | None => ("500 Internal Server Error", String::new()),
                        Some((var, val)) => {
                            settings
                                .lock()
                                .unwrap()
                                .insert(var.to_string(), val.parse().unwrap_or(0));
                            ("200 OK", String::new())
                        }
                    }
                } else {
                    ("404 Not Found", String::new())
                };
                let mut conn = conn;
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    (addr, seen)
}

#[test]
fn an_admin_changes_a_relayed_esp32s_settings_from_its_page() {
    let (fw, seen) = firmware();
    let dir = TempDir::new("page-esp32");
    let config = dir.0.join("cams.toml");
    std::fs::write(
        &config,
        format!(
            "[cameras.door]\nsource = \"http://127.0.0.1:9/stream\"\nconnect-timeout = \"1s\"\ncontrol-url = \"http://{fw}/\"\n\n[cameras.yard]\nsource = \"pattern\"\n"
        ),
    )
    .unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    playwright(&["esp32", &url(&server), "--camera", "door"]);
    let seen = seen.lock().unwrap();
    assert!(
        seen.contains(&"/control?var=hmirror&val=1".to_string()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"/control?var=brightness&val=2".to_string()),
        "{seen:?}"
    );
    // The slider's keys were debounced into one write, not one per step.
    assert_eq!(
        seen.iter().filter(|t| t.contains("var=brightness")).count(),
        1,
        "{seen:?}"
    );
}
