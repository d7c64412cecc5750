//! Pushed cameras (`source = "push"`) on the real binary: ffmpeg pushing `-f mpjpeg -method POST`, curl
//! posting one JPEG per request on a keep-alive connection, one pusher at a time (409), wrong keys, and a
//! pusher that goes away (viewers stay, see "no signal", then the next pusher's frames), and a pushed
//! camera on a command line without a config file (`--source push` with `MJPEGD_PUSH_KEY`).

mod common;

use common::{eventually, size_of, Server, Stream, TempDir};
use std::collections::HashSet;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "door-key-0123456789";

fn config(dir: &Path) -> PathBuf {
    let file = dir.join("cameras.toml");
    std::fs::write(
        &file,
        format!(
            "[cameras.door]\nsource = \"push\"\npush-key = \"{KEY}\"\nno-signal-after = \"1s\"\n\n\
             [cameras.yard]\nsource = \"pattern\"\nfps = 5\n"
        ),
    )
    .unwrap();
    file
}

/// `n` JPEGs of ffmpeg's test picture, 320x240, each different.
fn jpegs(dir: &Path, n: usize) -> Vec<PathBuf> {
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x240:rate=10")
        .args(["-frames:v", &n.to_string(), "-q:v", "5"])
        .arg(dir.join("f%03d.jpg"))
        .status()
        .unwrap();
    assert!(status.success());
    (1..=n).map(|i| dir.join(format!("f{i:03}.jpg"))).collect()
}

fn read_all(files: &[PathBuf]) -> HashSet<Vec<u8>> {
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// Posts `files` with curl, one request each, all on one connection; the status and connection count of
/// each transfer.
fn curl_post(url: &str, files: &[PathBuf], extra: &[&str]) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "20"]);
    for (i, f) in files.iter().enumerate() {
        if i > 0 {
            cmd.arg("--next");
        }
        cmd.args(["-o", "/dev/null", "-w", "%{http_code} %{num_connects}\\n"]);
        cmd.args(["-H", "Content-Type: image/jpeg"]);
        cmd.args(extra);
        cmd.arg("--data-binary").arg(format!("@{}", f.display()));
        cmd.arg(url);
    }
    let out = cmd.output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// A raw pusher: a chunked multipart POST whose head is sent at once.
fn raw_pusher(server: &Server, key: &str) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).unwrap();
    write!(
        s,
        "POST /cams/door/push?key={key} HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    s
}

fn push_part(s: &mut TcpStream, jpeg: &[u8]) {
    let mut part = format!(
        "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        jpeg.len()
    )
    .into_bytes();
    part.extend_from_slice(jpeg);
    part.extend_from_slice(b"\r\n");
    write!(s, "{:x}\r\n", part.len()).unwrap();
    s.write_all(&part).unwrap();
    s.write_all(b"\r\n").unwrap();
}

/// Reads parts until one is among `wanted` (or `deadline`).
fn until_one_of(viewer: &mut Stream, wanted: &HashSet<Vec<u8>>, within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    loop {
        assert!(Instant::now() < deadline, "no wanted frame in time");
        let part = viewer.next_part().expect("the viewer stays connected");
        if wanted.contains(&part.body) {
            return part.body;
        }
    }
}

#[test]
fn ffmpeg_pushes_multipart_and_a_viewer_gets_its_frames_byte_for_byte() {
    let dir = TempDir::new("push-ffmpeg");
    let files = jpegs(&dir.0, 30);
    let pushed = read_all(&files);
    let server = Server::start(&["--config", config(&dir.0).to_str().unwrap()]);
    let mut viewer = server.stream("/cams/door/stream");
    viewer.set_timeout(Duration::from_secs(10));
    let mut ffmpeg = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-re", "-framerate", "10", "-i"])
        .arg(dir.0.join("f%03d.jpg"))
        .args(["-c", "copy", "-f", "mpjpeg", "-method", "POST"])
        .arg(format!("http://{}/cams/door/push?key={KEY}", server.addr))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < 10 && Instant::now() < deadline {
        let part = viewer.next_part().expect("frames while ffmpeg pushes");
        if pushed.contains(&part.body) {
            assert_eq!(size_of(&part.body), (320, 240));
            seen.insert(part.body);
        }
    }
    let status = ffmpeg.wait().unwrap();
    assert!(
        seen.len() >= 10,
        "{} of ffmpeg's frames reached the viewer",
        seen.len()
    );
    assert!(status.success(), "ffmpeg's push ended well: {status}");
}

#[test]
fn one_jpeg_per_post_on_a_keep_alive_connection_is_answered_204_and_served() {
    let dir = TempDir::new("push-curl");
    // More frames than the queue between pusher and supervisor holds: with nobody watching, the newest
    // is still the one served (a pushed camera's frames are always taken, never left queued).
    let files = jpegs(&dir.0, 6);
    let server = Server::start(&["--config", config(&dir.0).to_str().unwrap()]);
    let url = format!("http://{}/cams/door/push", server.addr);
    let auth = format!("Authorization: Bearer {KEY}");
    let out = curl_post(&url, &files, &["-H", &auth]);
    assert_eq!(
        out, "204 1\n204 0\n204 0\n204 0\n204 0\n204 0\n",
        "one connection, 204 each"
    );
    let last = std::fs::read(&files[5]).unwrap();
    eventually(
        Duration::from_secs(5),
        "the last posted frame as the snapshot",
        || {
            let r = server.get("/cams/door/snapshot");
            (r.status == 200 && r.body == last).then_some(())
        },
    );
}

#[test]
fn wrong_keys_are_refused_and_the_key_is_never_shown() {
    let dir = TempDir::new("push-keys");
    let files = jpegs(&dir.0, 1);
    let (server, log) = Server::start_logged(&["--config", config(&dir.0).to_str().unwrap()]);
    let base = format!("http://{}/cams/door/push", server.addr);
    let wrong = format!("{base}?key=not-the-key-0123456789");
    assert_eq!(curl_post(&wrong, &files, &[]), "401 1\n");
    let bearer = "Authorization: Bearer not-the-key-0123456789";
    assert_eq!(curl_post(&base, &files, &["-H", bearer]), "401 1\n");
    // A camera that is not pushed has no inlet; GET is not a push.
    let yard = format!("http://{}/cams/yard/push?key={KEY}", server.addr);
    assert_eq!(curl_post(&yard, &files, &[]), "404 1\n");
    assert_eq!(
        server.get(&format!("/cams/door/push?key={KEY}")).status,
        405
    );
    let state = server.get("/state");
    assert!(!String::from_utf8_lossy(&state.body).contains(KEY));
    assert!(log.lines().iter().all(|l| !l.contains(KEY)));
}

#[test]
fn one_pusher_at_a_time_and_viewers_outlive_a_pusher() {
    let dir = TempDir::new("push-hold");
    let files = jpegs(&dir.0, 4);
    let frames: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let server = Server::start(&["--config", config(&dir.0).to_str().unwrap()]);
    let mut viewer = server.stream("/cams/door/stream?delivery=all");
    viewer.set_timeout(Duration::from_secs(10));

    let mut first = raw_pusher(&server, KEY);
    push_part(&mut first, &frames[0]);
    let want: HashSet<Vec<u8>> = [frames[0].clone()].into();
    until_one_of(&mut viewer, &want, Duration::from_secs(10));
    let state = server.get("/cams/door/state");
    let state: serde_json::Value = serde_json::from_slice(&state.body).unwrap();
    let pusher = &state["result"]["source"]["pusher"];
    assert_eq!(pusher["protocol"], "multipart", "{pusher}");
    assert_eq!(pusher["frames"], 1, "{pusher}");
    assert!(
        pusher["address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{pusher}"
    );

    // A second pusher is told who holds the camera.
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-H", "Content-Type: image/jpeg"])
        .arg("--data-binary")
        .arg(format!("@{}", files[1].display()))
        .arg(format!("http://{}/cams/door/push?key={KEY}", server.addr))
        .arg("-w")
        .arg("\n%{http_code}")
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    assert!(out.ends_with("\n409"), "{out}");
    assert!(out.contains("127.0.0.1"), "says who holds it: {out}");

    // The pusher goes; the viewer stays and sees "no signal" (a frame that is none of the pushed ones).
    drop(first);
    eventually(Duration::from_secs(5), "the camera free again", || {
        let state = server.get("/cams/door/state");
        let state: serde_json::Value = serde_json::from_slice(&state.body).unwrap();
        state["result"]["source"]["pusher"].is_null().then_some(())
    });
    let went = Instant::now();
    loop {
        let part = viewer.next_part().expect("the viewer stays connected");
        if !frames.contains(&part.body) {
            break;
        }
        assert!(went.elapsed() < Duration::from_secs(8), "no signal in time");
    }

    // A new pusher's frames reach the same viewer.
    let url = format!("http://{}/cams/door/push?key={KEY}", server.addr);
    let out = curl_post(&url, &files[2..], &[]);
    assert_eq!(out, "204 1\n204 0\n");
    let want: HashSet<Vec<u8>> = frames[2..].iter().cloned().collect();
    until_one_of(&mut viewer, &want, Duration::from_secs(10));
}

#[test]
fn with_access_keys_a_push_key_pushes_and_a_viewer_key_does_not() {
    let dir = TempDir::new("push-access");
    let files = jpegs(&dir.0, 1);
    let viewer_key = "viewer-key-0123456789";
    let server = Server::start(&[
        "--config",
        config(&dir.0).to_str().unwrap(),
        "--access-key",
        viewer_key,
    ]);
    let base = format!("http://{}/cams/door/push", server.addr);
    assert_eq!(curl_post(&base, &files, &[]), "401 1\n", "no key");
    assert_eq!(
        curl_post(&format!("{base}?key={viewer_key}"), &files, &[]),
        "401 1\n",
        "a viewer key cannot push"
    );
    assert_eq!(
        curl_post(&format!("{base}?key={KEY}"), &files, &[]),
        "204 1\n"
    );
    // ... and a push key is not a viewer key.
    let r = server.get(&format!("/cams/door/snapshot?key={KEY}"));
    assert_eq!(r.status, 401);
    let r = server.get(&format!("/cams/door/snapshot?key={viewer_key}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, std::fs::read(&files[0]).unwrap());
}

/// A config whose pushed camera cuts a silent pusher after 1 s.
fn quick_config(dir: &Path) -> PathBuf {
    let file = dir.join("quick.toml");
    std::fs::write(
        &file,
        format!(
            "[cameras.door]\nsource = \"push\"\npush-key = \"{KEY}\"\nno-signal-after = \"1s\"\nread-timeout = \"1s\"\n"
        ),
    )
    .unwrap();
    file
}

#[test]
fn a_close_delimited_multipart_body_is_read_until_the_close() {
    let dir = TempDir::new("push-close");
    let files = jpegs(&dir.0, 2);
    let frames: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let server = Server::start(&["--config", config(&dir.0).to_str().unwrap()]);
    let mut viewer = server.stream("/cams/door/stream?delivery=all");
    viewer.set_timeout(Duration::from_secs(10));
    // HTTP/1.0, no length, not chunked, no Content-Type: the body lasts until the pusher closes.
    let mut s = TcpStream::connect(server.addr).unwrap();
    write!(
        s,
        "POST /cams/door/push?key={KEY} HTTP/1.0\r\nHost: t\r\n\r\n"
    )
    .unwrap();
    for jpeg in &frames {
        write!(
            s,
            "--x\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            jpeg.len()
        )
        .unwrap();
        s.write_all(jpeg).unwrap();
        s.write_all(b"\r\n").unwrap();
    }
    s.write_all(b"--x\r\n").unwrap();
    let want: HashSet<Vec<u8>> = [frames[1].clone()].into();
    until_one_of(&mut viewer, &want, Duration::from_secs(10));
}

#[test]
fn a_silent_pusher_is_cut_and_an_oversized_frame_is_refused() {
    let dir = TempDir::new("push-limits");
    let server = Server::start(&["--config", quick_config(&dir.0).to_str().unwrap()]);
    // A slow-loris pusher: its head, then nothing. It is cut after read-timeout, and the camera is free.
    let mut s = raw_pusher(&server, KEY);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut rest);
    assert!(started.elapsed() < Duration::from_secs(8), "cut in time");
    // A declared length past the bound is refused before the body is sent.
    let r = common::request(
        server.addr,
        &format!(
            "POST /cams/door/push?key={KEY} HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\nContent-Length: 100000000\r\n\r\n"
        ),
    );
    assert_eq!(r.status, 413);
    // The camera is free again.
    let files = jpegs(&dir.0, 1);
    let url = format!("http://{}/cams/door/push?key={KEY}", server.addr);
    assert_eq!(curl_post(&url, &files, &[]), "204 1\n");
}

#[test]
fn a_reload_that_changes_the_push_key_cuts_the_pusher_holding_the_old_one() {
    let dir = TempDir::new("push-reload");
    let files = jpegs(&dir.0, 1);
    let jpeg = std::fs::read(&files[0]).unwrap();
    let file = config(&dir.0);
    let server = Server::start(&["--config", file.to_str().unwrap()]);
    let mut pusher = raw_pusher(&server, KEY);
    push_part(&mut pusher, &jpeg);
    eventually(Duration::from_secs(5), "the pusher in /state", || {
        let r = server.get("/cams/door/state");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        (v["result"]["source"]["pusher"]["frames"] == 1).then_some(())
    });
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace(KEY, "another-key-0123456789")).unwrap();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    eventually(Duration::from_secs(10), "the reload", || {
        (server.state()["config"]["reloads"].as_u64().unwrap() >= 1).then_some(())
    });
    // The next frame with the old key ends the connection.
    pusher
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        push_part(&mut pusher, &jpeg)
    }));
    let mut rest = Vec::new();
    let read = std::io::Read::read_to_end(&mut pusher, &mut rest);
    assert!(read.is_ok() || rest.is_empty(), "the connection ends");
    eventually(Duration::from_secs(5), "the camera free", || {
        let r = server.get("/cams/door/state");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["result"]["source"]["pusher"].is_null().then_some(())
    });
}

#[test]
fn a_multipart_part_past_the_bound_cuts_the_pusher() {
    let dir = TempDir::new("push-big");
    let server = Server::start(&["--config", config(&dir.0).to_str().unwrap()]);
    let mut pusher = raw_pusher(&server, KEY);
    pusher
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // A part that says nothing of its length and never ends: cut at 16 MiB, not buffered forever.
    let head = b"--frame\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8";
    write!(pusher, "{:x}\r\n", head.len()).unwrap();
    pusher.write_all(head).unwrap();
    pusher.write_all(b"\r\n").unwrap();
    let chunk = vec![0x55u8; 1 << 20];
    let mut sent = 0;
    for _ in 0..40 {
        let ok = write!(pusher, "{:x}\r\n", chunk.len()).is_ok()
            && pusher.write_all(&chunk).is_ok()
            && pusher.write_all(b"\r\n").is_ok();
        if !ok {
            break;
        }
        sent += 1;
    }
    assert!(
        (15..40).contains(&sent),
        "cut past 16 MiB, well before 40 ({sent} MiB sent)"
    );
    eventually(Duration::from_secs(5), "the camera free", || {
        let r = server.get("/cams/door/state");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["result"]["source"]["pusher"].is_null().then_some(())
    });
}

#[test]
fn a_single_camera_command_line_takes_pushers_with_the_key_from_the_environment() {
    let dir = TempDir::new("push-cli");
    let files = jpegs(&dir.0, 2);
    let server = Server::spawn(
        Command::new(env!("CARGO_BIN_EXE_mjpegd"))
            .args(["--listen", "127.0.0.1:0", "--source", "push"])
            .args(["--push-takeover", "--push-max-fps", "12.5"])
            .env("MJPEGD_PUSH_KEY", KEY),
    );
    let r = server.get("/cams/default/state");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let push = &v["result"]["source"]["push"];
    assert_eq!(
        (&push["takeover"], &push["max_fps"]),
        (&true.into(), &12.5.into())
    );
    assert!(!String::from_utf8_lossy(&r.body).contains(KEY));
    let url = format!("http://{}/cams/default/push", server.addr);
    assert_eq!(
        curl_post(&format!("{url}?key=wrong-key-0123456789"), &files[..1], &[]),
        "401 1\n"
    );
    assert_eq!(
        curl_post(&format!("{url}?key={KEY}"), &files, &[]),
        "204 1\n204 0\n"
    );
    let last = std::fs::read(&files[1]).unwrap();
    eventually(Duration::from_secs(5), "the pushed frame", || {
        (server.get("/snapshot").body == last).then_some(())
    });
}

#[test]
fn push_flags_are_refused_where_they_cannot_apply() {
    let run = |args: &[&str], key: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mjpegd"));
        cmd.args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("MJPEGD_PUSH_KEY");
        if let Some(k) = key {
            cmd.env("MJPEGD_PUSH_KEY", k);
        }
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        assert!(!out.status.success(), "{args:?} must not start");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&["--source", "push"], None).contains("--source push needs --push-key"));
    let e = run(&["--source", "push"], Some("a key with spaces in it"));
    assert!(
        e.contains("printable ASCII without spaces") && !e.contains("spaces in it"),
        "{e}"
    );
    assert!(run(&["--source", "push"], Some("short")).contains("16 to 256 characters"));
    assert!(run(
        &["--source", "push", "--push-key", KEY, "--push-max-fps", "0"],
        None
    )
    .contains("more than 0"));
    let e = run(&["--source", "pattern", "--push-key", KEY], None);
    assert!(e.contains("are for --source push"), "{e}");
    let e = run(&["--source", "pattern"], Some(KEY));
    assert!(e.contains("are for --source push"), "{e}");
    let dir = TempDir::new("push-cli-config");
    let file = config(&dir.0);
    let e = run(&["--config", file.to_str().unwrap()], Some(KEY));
    assert!(
        e.contains("a config file gives each pushed camera its push-key"),
        "{e}"
    );
}
