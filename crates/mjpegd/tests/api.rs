//! The cameras API against the real binary over real TCP: every verb on a config file with comments (the
//! file afterwards differs only where the change was), a hand edit never clobbered (409), concurrent writes
//! all kept, an untouched camera's `all` client undisturbed, roles (anonymous, viewer, key, admin, no
//! credentials from afar), cross-site writes and oversized bodies refused.

mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const FILE: &str = r#"# Cameras of the workshop.
listen = "127.0.0.1:0"   # any port

[cameras.front]
source = "pattern"   # the test pattern
resolution = "160x120"
fps = 10             # enough for the door
capture = "always"

# The bench camera, watched by the recorder.
[cameras.bench]
source = "pattern"
resolution = "160x120"
fps = 10
capture = "always"
"#;

/// A request with `method`, `path`, extra header lines and a body, from `from` (a local address to bind).
fn call_from(
    from: Option<&str>,
    server: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, Value) {
    let mut s = match from {
        None => TcpStream::connect(server).unwrap(),
        Some(ip) => connect_from(ip, server),
    };
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let length = if body.is_empty() && method == "DELETE" {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n{headers}{length}\r\n{body}"
    )
    .unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let r = parse_response(&all);
    let value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into_owned()));
    (r.status, value)
}

const JSON: &str = "Content-Type: application/json\r\n";

fn call(server: &Server, method: &str, path: &str, body: Value) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    call_from(None, server.addr, method, path, JSON, &body)
}

/// The file parsed as TOML.
fn toml_of(path: &Path) -> toml::Table {
    std::fs::read_to_string(path).unwrap().parse().unwrap()
}

fn config(dir: &TempDir) -> std::path::PathBuf {
    let file = dir.0.join("cams.toml");
    std::fs::write(&file, FILE).unwrap();
    file
}

#[test]
fn every_verb_changes_only_what_it_names_and_the_file_keeps_its_comments() {
    let dir = TempDir::new("api-verbs");
    let file = config(&dir);
    let server = Server::start(&["--config", file.to_str().unwrap()]);

    // GET: every camera with its keys as the file has them.
    let (status, all) = call(&server, "GET", "/api/cameras", Value::Null);
    assert_eq!(status, 200, "{all}");
    assert_eq!(
        all["can_write"], true,
        "loopback without credentials may write"
    );
    assert_eq!(all["saved_to"], json!(file.display().to_string()));
    assert_eq!(all["cameras"][0]["name"], "front");
    assert_eq!(
        all["cameras"][0]["settings"],
        json!({"source": "pattern", "resolution": "160x120", "fps": 10, "capture": "always"})
    );
    assert_eq!(all["cameras"][1]["urls"]["stream"], "/cams/bench/stream");
    let (status, one) = call(&server, "GET", "/api/cameras/bench", Value::Null);
    assert_eq!((status, one["name"].as_str()), (200, Some("bench")));
    assert_eq!(
        call(&server, "GET", "/api/cameras/attic", Value::Null).0,
        404
    );

    // PATCH: one key changed, one removed; everything else in the file as it was, comments included.
    let (status, patched) = call(
        &server,
        "PATCH",
        "/api/cameras/front",
        json!({"fps": 15, "capture": null}),
    );
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["saved"], true);
    assert_eq!(patched["applied"]["restarted"], json!(["front"]));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        FILE.replace(
            "fps = 10             # enough for the door",
            "fps = 15             # enough for the door"
        )
        .replacen("capture = \"always\"\n", "", 1)
    );

    // PUT of a new camera: created (201), at the end of the file, and live.
    let (status, created) = call(
        &server,
        "PUT",
        "/api/cameras/garage",
        json!({"source": "pattern", "resolution": "320x240", "fps": 5}),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["camera"]["settings"]["resolution"], "320x240");
    let snap = server.get("/cams/garage/snapshot");
    assert_eq!(snap.status, 200);
    assert_eq!(size_of(&snap.body), (320, 240));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.ends_with(
            "[cameras.garage]\nsource = \"pattern\"\nresolution = \"320x240\"\nfps = 5\n"
        ),
        "{text}"
    );
    // PUT replaces a camera's keys whole.
    let (status, _) = call(
        &server,
        "PUT",
        "/api/cameras/garage",
        json!({"source": "pattern", "resolution": "200x150"}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        toml_of(&file)["cameras"]["garage"],
        toml::Value::Table(
            [
                ("source".to_string(), toml::Value::from("pattern")),
                ("resolution".to_string(), toml::Value::from("200x150")),
            ]
            .into_iter()
            .collect()
        )
    );

    // Bad values are 400s naming the key, and change nothing.
    let before = std::fs::read_to_string(&file).unwrap();
    for (body, key) in [
        (json!({"fps": "fast"}), "fps"),
        (json!({"quality": 500}), "quality"),
        (json!({"resolutoin": "1x1"}), "resolutoin"),
        (json!({"source": "http://"}), "source"),
    ] {
        let (status, e) = call(&server, "PATCH", "/api/cameras/front", body.clone());
        assert_eq!(status, 400, "{body}: {e}");
        assert_eq!(e["key"], key, "{body}: {e}");
        assert!(e["error"].as_str().unwrap().starts_with(key), "{e}");
    }
    let (status, e) = call(&server, "PUT", "/api/cameras/bad%20name", json!({}));
    assert_eq!(status, 400, "{e}");
    let (status, e) = call(&server, "PATCH", "/api/cameras/front", json!([1, 2]));
    assert_eq!(status, 400, "{e}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);

    // DELETE: the camera goes from the file and from the server.
    let (status, gone) = call(&server, "DELETE", "/api/cameras/garage", Value::Null);
    assert_eq!(status, 200, "{gone}");
    assert_eq!(gone["applied"]["removed"], json!(["garage"]));
    assert_eq!(server.get("/cams/garage/snapshot").status, 404);
    assert_eq!(
        call(&server, "DELETE", "/api/cameras/garage", Value::Null).0,
        404
    );
    let after: toml::Table = toml_of(&file);
    let mut expected: toml::Table = FILE.parse().unwrap();
    let front = expected["cameras"]["front"].as_table().cloned().unwrap();
    let mut front = front;
    front.insert("fps".into(), toml::Value::Integer(15));
    front.remove("capture");
    expected["cameras"]
        .as_table_mut()
        .unwrap()
        .insert("front".into(), toml::Value::Table(front));
    assert_eq!(after, expected, "only the changed keys differ");
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .starts_with("# Cameras of the workshop.\nlisten = \"127.0.0.1:0\"   # any port\n"));

    // A SIGHUP after API writes changes nothing: the file is what runs.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    let state = eventually(Duration::from_secs(10), "the reload", || {
        let st = server.state();
        let config = st["config"].clone();
        (config["last_reload_ok"] == true
            && config["added"] == json!([])
            && config["reloads"].as_u64() > Some(4))
        .then_some(config)
    });
    assert_eq!(state["restarted"], json!([]), "{state}");
    assert_eq!(state["removed"], json!([]), "{state}");
}

#[test]
fn a_hand_edit_is_never_clobbered_and_is_taken_after_a_reload() {
    let dir = TempDir::new("api-hand-edit");
    let file = config(&dir);
    let server = Server::start(&["--config", file.to_str().unwrap()]);
    let edited = format!("{FILE}\n# a note by hand\n");
    std::fs::write(&file, &edited).unwrap();
    let (status, e) = call(&server, "PATCH", "/api/cameras/front", json!({"fps": 20}));
    assert_eq!(status, 409, "{e}");
    assert!(e["error"].as_str().unwrap().contains("reload"), "{e}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        edited,
        "the hand edit survives"
    );
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    eventually(Duration::from_secs(10), "the reload", || {
        (server.state()["config"]["reloads"].as_u64() >= Some(1)).then_some(())
    });
    let (status, _) = call(&server, "PATCH", "/api/cameras/front", json!({"fps": 20}));
    assert_eq!(status, 200);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("# a note by hand") && text.contains("fps = 20"),
        "{text}"
    );
}

#[test]
fn concurrent_writes_are_all_kept_and_an_untouched_cameras_all_client_sees_no_gap() {
    let dir = TempDir::new("api-concurrent");
    let file = config(&dir);
    let server = Server::start(&["--config", file.to_str().unwrap()]);
    // An `all` client of bench, which no write touches, reading the whole time.
    let mut bench = server.stream("/cams/bench/stream?delivery=all");
    bench.next_part().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seqs = Vec::new();
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            seqs.push(bench.next_part().expect("bench's stream goes on").seq());
        }
        seqs
    });
    let addr = server.addr;
    let writers: Vec<_> = (0..20)
        .map(|i| {
            std::thread::spawn(move || {
                let body = json!({"source": "pattern", "resolution": "160x120", "fps": i + 1});
                call_from(
                    None,
                    addr,
                    "PUT",
                    &format!("/api/cameras/cam{i}"),
                    JSON,
                    &body.to_string(),
                )
            })
        })
        .collect();
    for w in writers {
        let (status, body) = w.join().unwrap();
        assert_eq!(status, 201, "{body}");
    }
    let parsed = toml_of(&file);
    let cameras = parsed["cameras"].as_table().unwrap();
    assert_eq!(cameras.len(), 22, "{cameras:?}");
    for i in 0..20 {
        assert_eq!(cameras[&format!("cam{i}")]["fps"].as_integer(), Some(i + 1));
    }
    assert_eq!(camera_names(&server.state()).len(), 22);
    let seqs = reader.join().unwrap();
    assert!(seqs.len() >= 20, "{} frames in 5 s", seqs.len());
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "a gap in bench's all stream: {seqs:?}");
    }
}

#[test]
fn only_admins_write_and_keys_and_viewers_only_watch() {
    let dir = TempDir::new("api-roles");
    let file = config(&dir);
    let key = "0123456789abcdefKEY";
    let server = start_with_roles(&file, &dir.0, &["--access-key", key]);
    let patch = |headers: &str, path: &str| {
        call_from(
            None,
            server.addr,
            "PATCH",
            path,
            &format!("{JSON}{headers}"),
            "{\"fps\": 12}",
        )
    };
    let (status, _) = patch("", "/api/cameras/front");
    assert_eq!(status, 401, "anonymous");
    let (status, e) = patch(&basic_auth_header("bob:bob pw"), "/api/cameras/front");
    assert_eq!(status, 403, "a viewer: {e}");
    assert!(e["error"].as_str().unwrap().contains("admins"), "{e}");
    let (status, _) = patch("", &format!("/api/cameras/front?key={key}"));
    assert_eq!(status, 403, "an access key is a viewer");
    let (status, _) = patch(&basic_auth_header("alice:wrong"), "/api/cameras/front");
    assert_eq!(status, 401);
    let (status, body) = patch(&basic_auth_header("alice:alice pw"), "/api/cameras/front");
    assert_eq!(status, 200, "an admin: {body}");
    // Viewers read.
    let (status, list) = call_from(
        None,
        server.addr,
        "GET",
        "/api/cameras",
        &basic_auth_header("bob:bob pw"),
        "",
    );
    assert_eq!((status, &list["can_write"]), (200, &json!(false)));
    let (status, list) = call_from(
        None,
        server.addr,
        "GET",
        "/api/cameras",
        &basic_auth_header("alice:alice pw"),
        "",
    );
    assert_eq!((status, &list["can_write"]), (200, &json!(true)));
    assert_eq!(
        toml_of(&file)["cameras"]["front"]["fps"].as_integer(),
        Some(12)
    );
}

#[test]
fn without_credentials_only_this_machine_writes() {
    let dir = TempDir::new("api-local");
    let file = config(&dir);
    // (the file's `listen` would win over the flags': this test adds a listener)
    std::fs::write(
        &file,
        FILE.replace("listen = \"127.0.0.1:0\"   # any port\n", ""),
    )
    .unwrap();
    // Also listening on the machine's own non-loopback address, if it has one, and trusting loopback as a
    // proxy (a client it names is never local).
    let outside = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.split_whitespace()
                .find(|a| {
                    a.parse::<std::net::Ipv4Addr>()
                        .is_ok_and(|ip| !ip.is_loopback())
                })
                .map(str::to_string)
        });
    let port = free_port();
    let mut args = vec![
        "--config".to_string(),
        file.display().to_string(),
        "--trusted-proxy".into(),
        "127.0.0.2".into(),
    ];
    if let Some(ip) = &outside {
        args.extend(["--listen".into(), format!("{ip}:{port}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&args);
    let body = "{\"fps\": 11}";
    let (status, _) = call_from(None, server.addr, "PATCH", "/api/cameras/front", JSON, body);
    assert_eq!(status, 200, "loopback writes");
    let forwarded = format!("{JSON}X-Forwarded-For: 203.0.113.9\r\n");
    let (status, e) = call_from(
        Some("127.0.0.2"),
        server.addr,
        "PATCH",
        "/api/cameras/front",
        &forwarded,
        body,
    );
    assert_eq!(status, 403, "a client a proxy speaks for is not local: {e}");
    assert!(e["error"].as_str().unwrap().contains("admin"), "{e}");
    if let Some(ip) = outside {
        let there: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        let (status, e) = call_from(Some(&ip), there, "PATCH", "/api/cameras/front", JSON, body);
        assert_eq!(status, 403, "from {ip}: {e}");
        let (status, _) = call_from(Some(&ip), there, "GET", "/api/cameras", "", "");
        assert_eq!(status, 200, "reading is open");
    } else {
        eprintln!(
            "no non-loopback address here: the direct remote case is covered by the proxied one"
        );
    }
}

#[test]
fn cross_site_writes_and_oversized_bodies_are_refused() {
    let dir = TempDir::new("api-csrf");
    let file = config(&dir);
    let server = Server::start(&["--config", file.to_str().unwrap()]);
    let body = "{\"fps\": 13}";
    for (headers, want) in [
        (format!("{JSON}Origin: http://evil.example\r\n"), 403),
        (format!("{JSON}Sec-Fetch-Site: cross-site\r\n"), 403),
        (format!("{JSON}Origin: null\r\n"), 403),
        (
            "Content-Type: application/x-www-form-urlencoded\r\n".to_string(),
            415,
        ),
        ("Content-Type: text/plain\r\n".to_string(), 415),
        (String::new(), 415),
        (
            format!(
                "{JSON}Origin: http://{}\r\nSec-Fetch-Site: same-origin\r\n",
                server.addr
            ),
            200,
        ),
    ] {
        let (status, e) = call_from(
            None,
            server.addr,
            "PATCH",
            "/api/cameras/front",
            &headers,
            body,
        );
        assert_eq!(status, want, "{headers:?}: {e}");
    }
    // A DELETE from another site's page is refused too.
    let (status, _) = call_from(
        None,
        server.addr,
        "DELETE",
        "/api/cameras/bench",
        "Sec-Fetch-Site: cross-site\r\n",
        "",
    );
    assert_eq!(status, 403);
    assert_eq!(camera_names(&server.state()), ["front", "bench"]);

    // A 10 MB body is refused on its declared length, before a byte of it is sent.
    let started = Instant::now();
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "PUT /api/cameras/big HTTP/1.1\r\nHost: x\r\n{JSON}Content-Length: 10485760\r\nExpect: 100-continue\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(
        &head, b"HTTP/1.1 413",
        "no 100 Continue for a body that is refused"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Sent chunked, it is cut once past the limit, without reading the rest.
    let started = Instant::now();
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "PUT /api/cameras/big HTTP/1.1\r\nHost: x\r\n{JSON}Transfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 65536, "x".repeat(65536));
    let mut answered = Vec::new();
    for _ in 0..160 {
        if s.write_all(chunk.as_bytes()).is_err() {
            break;
        }
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 256];
        if let Ok(n) = s.read(&mut buf) {
            answered.extend_from_slice(&buf[..n]);
        }
        s.set_nonblocking(false).unwrap();
        if !answered.is_empty() {
            break;
        }
    }
    if answered.is_empty() {
        let _ = s.read_to_end(&mut answered);
    }
    assert!(
        answered.starts_with(b"HTTP/1.1 413"),
        "{:?}",
        String::from_utf8_lossy(&answered)
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(camera_names(&server.state()), ["front", "bench"]);
}

#[test]
fn without_a_config_file_changes_live_in_memory_and_the_answer_says_so() {
    let server = Server::start(&["--resolution", "160x120"]);
    let (status, created) = call(
        &server,
        "PUT",
        "/api/cameras/extra",
        json!({"source": "pattern", "resolution": "200x150"}),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["saved"], false);
    assert!(
        created["note"].as_str().unwrap().contains("--config"),
        "{created}"
    );
    assert_eq!(camera_names(&server.state()), ["default", "extra"]);
    let snap = server.get("/cams/extra/snapshot");
    assert_eq!(size_of(&snap.body), (200, 150));
    // The flags' camera is there as `default`, with the flags' settings.
    let (status, d) = call(&server, "GET", "/api/cameras/default", Value::Null);
    assert_eq!(status, 200, "{d}");
    assert_eq!(size_of(&server.get("/snapshot").body), (160, 120));
}
