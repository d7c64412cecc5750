//! Live reload of a config file (SIGHUP) against the real binary: cameras added, removed and changed while
//! an `all` client of an unchanged camera sees no gap; a broken file changes nothing.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn camera(name: &str, resolution: &str) -> String {
    format!("[cameras.{name}]\nsource = \"pattern\"\nresolution = \"{resolution}\"\nfps = 10\ncapture = \"always\"\n\n")
}

fn hup(server: &Server) {
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
}

/// /state once it reports at least `n` reloads.
fn after_reloads(server: &Server, n: u64) -> serde_json::Value {
    eventually(Duration::from_secs(10), "the reload", || {
        let st = server.state();
        (st["config"]["reloads"].as_u64().unwrap() >= n).then_some(st)
    })
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_reload_adds_removes_and_changes_cameras_while_an_unchanged_cameras_all_client_sees_no_gap() {
    let dir = TempDir::new("reload");
    let file = dir.0.join("cams.toml");
    write(
        &file,
        &[
            camera("a", "160x120"),
            camera("b", "160x120"),
            camera("c", "160x120"),
        ]
        .concat(),
    );
    let server = Server::start(&["--config", file.to_str().unwrap()]);

    // An `all` client of a, reading the whole time on its own thread.
    let mut a = server.stream("/cams/a/stream?delivery=all");
    let reader = std::thread::spawn(move || {
        let mut seqs = Vec::new();
        let until = Instant::now() + Duration::from_secs(6);
        while Instant::now() < until {
            seqs.push(a.next_part().expect("a's stream goes on").seq());
        }
        seqs
    });
    let mut b = server.stream("/cams/b/stream");
    b.next_part().unwrap();
    let mut c = server.stream("/cams/c/stream");
    assert_eq!(size_of(&c.next_part().unwrap().body), (160, 120));
    std::thread::sleep(Duration::from_millis(500));

    // b goes, c changes size, d comes.
    write(
        &file,
        &[
            camera("a", "160x120"),
            camera("c", "320x240"),
            camera("d", "200x150"),
        ]
        .concat(),
    );
    hup(&server);
    let state = after_reloads(&server, 1);
    let config = &state["config"];
    assert_eq!(config["last_reload_ok"], true, "{config}");
    assert_eq!(config["added"], serde_json::json!(["d"]));
    assert_eq!(config["removed"], serde_json::json!(["b"]));
    assert_eq!(config["restarted"], serde_json::json!(["c"]));
    assert_eq!(camera_names(&state), ["a", "c", "d"]);

    // b's client is told the stream ended: the connection closes cleanly.
    b.set_timeout(Duration::from_secs(5));
    let ended = (0..100).find_map(|_| b.next_part().err());
    assert!(ended.is_some(), "b's stream did not end");
    assert_eq!(server.get("/cams/b/stream").status, 404);
    // c's client stayed connected and now gets the new size.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let part = c.next_part().expect("c's client stays connected");
        if size_of(&part.body) == (320, 240) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "c never restarted at its new size"
        );
    }
    let d = server.get("/cams/d/snapshot");
    assert_eq!(d.status, 200);
    assert_eq!(size_of(&d.body), (200, 150));

    // The unchanged camera's `all` client saw every frame, in order, across the reload.
    let seqs = reader.join().unwrap();
    assert!(seqs.len() >= 40, "{} frames in 6 s", seqs.len());
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "a gap in a's all stream: {seqs:?}");
    }

    // A broken file changes nothing, and /state says where it is broken.
    write(&file, "[cameras.a]\nsource = \"pattern\"\nfps = \"fast\"\n");
    hup(&server);
    let state = after_reloads(&server, 2);
    let error = state["config"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("cams.toml:3:7:"), "{error}");
    assert_eq!(state["config"]["last_reload_ok"], false);
    assert_eq!(state["cameras"].as_array().unwrap().len(), 3);
    assert_eq!(server.get("/cams/d/snapshot").status, 200);
}

#[test]
fn a_reload_that_changes_the_listen_address_says_it_needs_a_restart() {
    let dir = TempDir::new("reload-listen");
    let file = dir.0.join("cams.toml");
    write(&file, &camera("a", "160x120"));
    let server = Server::start(&["--config", file.to_str().unwrap()]);
    write(
        &file,
        &format!("listen = \"127.0.0.1:1\"\n{}", camera("a", "160x120")),
    );
    hup(&server);
    let state = after_reloads(&server, 1);
    assert_eq!(
        state["config"]["needs_restart"],
        serde_json::json!(["listen"])
    );
    assert_eq!(server.get("/cams/a/snapshot").status, 200);
}

#[test]
fn sighup_rereads_the_users_file() {
    use base64::Engine;
    let dir = TempDir::new("reload-users");
    let users = dir.0.join("users");
    let line = |user: &str, pass: &str| format!("{user}:{}\n", bcrypt::hash(pass, 4).unwrap());
    write(&users, &line("alice", "wonderland"));
    let server = Server::start(&["--auth-file", users.to_str().unwrap()]);
    let status = |user_pass: &str| {
        let auth = base64::engine::general_purpose::STANDARD.encode(user_pass);
        request(
            server.addr,
            &format!("GET /snapshot HTTP/1.1\r\nHost: t\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"),
        )
        .status
    };
    assert_eq!(status("alice:wonderland"), 200);
    assert_eq!(status("bob:builder"), 401);
    write(
        &users,
        &[line("alice", "wonderland"), line("bob", "builder")].concat(),
    );
    hup(&server);
    eventually(Duration::from_secs(10), "bob let in", || {
        (status("bob:builder") == 200).then_some(())
    });
    // A broken users file changes nothing.
    write(&users, "bob:not-a-hash\n");
    hup(&server);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status("alice:wonderland"), 200);
    assert_eq!(status("bob:builder"), 200);
}
