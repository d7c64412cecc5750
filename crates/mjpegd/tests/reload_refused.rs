//! A refused reload, on the real binary: it changes nothing (no camera started, restarted or leaked),
//! whatever the file gets wrong and however often it is tried; a bad source is refused when the file is
//! parsed (`check-config` too); credentials in a source URL are never shown; a config path that is not a
//! regular file is refused at once.

mod common;
use common::*;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn hup(server: &Server) {
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn reloads(server: &Server) -> u64 {
    server.state()["config"]["reloads"].as_u64().unwrap()
}

/// /state once it reports at least `n` reloads.
fn after_reloads(server: &Server, n: u64) -> serde_json::Value {
    eventually(Duration::from_secs(20), "the reload", || {
        let st = server.state();
        (st["config"]["reloads"].as_u64().unwrap() >= n).then_some(st)
    })
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if rest.split_whitespace().nth(1) == Some(&pid.to_string()) {
            n += 1;
        }
    }
    n
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// Item 1 of issue 18: a file whose last camera is bad, reloaded in a storm. Before, every reload started
/// the cameras before the bad one and left them running, unowned: child processes, recorders writing
/// files, descriptors. Now a refused reload starts nothing and leaves nothing behind.
#[test]
fn a_storm_of_refused_reloads_leaks_no_camera_child_recorder_or_descriptor() {
    let dir = TempDir::new("reload-storm");
    let file = dir.0.join("cams.toml");
    let kept = dir.0.join("kept");
    let leaked = dir.0.join("leaked");
    let good = format!(
        "[cameras.a]\nsource = \"exec:sleep 1000\"\ncapture = \"always\"\n\n\
         [cameras.r]\nsource = \"pattern\"\nresolution = \"160x120\"\nfps = 5\ncapture = \"always\"\nrecord = \"{}\"\n\n",
        kept.display()
    );
    write(&file, &good);
    let server = Server::start(&["--config", file.to_str().unwrap()]);
    let pid = server.child.id();
    eventually(
        Duration::from_secs(10),
        "a's child and r's first segment",
        || (children_of(pid) == 1 && files_in(&kept) == 1).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(500));
    let (children, fds, rss) = (children_of(pid), open_fds(pid), rss_kib(pid));

    // New cameras (a command, a recorder) before a bad last one.
    let bad = format!(
        "{good}[cameras.n1]\nsource = \"exec:sleep 1000\"\ncapture = \"always\"\n\n\
         [cameras.n2]\nsource = \"pattern\"\nresolution = \"160x120\"\nfps = 5\ncapture = \"always\"\nrecord = \"{}\"\n\n\
         [cameras.bad]\nsource = \"http://\"\n",
        leaked.display()
    );
    write(&file, &bad);
    let start = Instant::now();
    for _ in 0..120 {
        hup(&server);
        std::thread::sleep(Duration::from_millis(25));
    }
    // Signals coalesce: wait until the reloads stop coming (bounded).
    let mut last = reloads(&server);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = reloads(&server);
        if now == last || Instant::now() > deadline {
            break;
        }
        last = now;
    }
    std::thread::sleep(Duration::from_millis(1500));
    let state = server.state();
    let after = (children_of(pid), open_fds(pid), files_in(&leaked));
    eprintln!(
        "{last} reloads in {:?}: children {children} -> {}, fds {fds} -> {}, RSS {rss} -> {} KiB, files of a camera never accepted {}",
        start.elapsed(),
        after.0,
        after.1,
        rss_kib(pid),
        after.2
    );
    assert!(last >= 1, "no reload happened");
    // (a's command is restarted every 5 s, as it sends nothing: its child and pipes may be between two
    // runs at any one look)
    let deadline = Instant::now() + Duration::from_secs(6);
    let now = loop {
        let now = (children_of(pid), open_fds(pid));
        if (now.0 == children && now.1 <= fds + 4) || Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(now.0, children, "child processes left behind");
    assert!(
        now.1 <= fds + 4,
        "descriptors: {fds} before, {} after",
        now.1
    );
    assert_eq!(after.2, 0, "a recorder of a refused camera wrote files");
    assert_eq!(state["config"]["last_reload_ok"], false);
    let error = state["config"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("cams.toml:") && error.contains("host"),
        "{error}"
    );
    assert_eq!(camera_names(&state), ["a", "r"]);
    assert_eq!(files_in(&kept), 1, "r's recording was disturbed");
    assert_eq!(server.get("/cams/r/snapshot").status, 200);
}

/// Item 2 of issue 18: a refused reload leaves every camera exactly as it was, including one the file
/// changes before the error (its source was stopped for good, or restarted with the refused settings).
#[test]
fn a_refused_reload_leaves_a_changed_camera_exactly_as_it_was() {
    let dir = TempDir::new("reload-changed");
    let file = dir.0.join("cams.toml");
    let camera = |name: &str, source: &str, resolution: &str| {
        format!("[cameras.{name}]\nsource = \"{source}\"\nresolution = \"{resolution}\"\nfps = 10\ncapture = \"always\"\n\n")
    };
    write(
        &file,
        &[
            camera("a", "pattern", "160x120"),
            camera("b", "pattern", "160x120"),
        ]
        .concat(),
    );
    let server = Server::start(&["--config", file.to_str().unwrap()]);
    let mut a = server.stream("/cams/a/stream");
    assert_eq!(size_of(&a.next_part().unwrap().body), (160, 120));

    // The camera itself goes bad, then: a valid change of it followed by a bad camera.
    let files = [
        [
            camera("a", "http://", "160x120"),
            camera("b", "pattern", "160x120"),
        ]
        .concat(),
        [
            camera("a", "pattern", "320x240"),
            camera("b", "pattern", "160x120"),
            camera("c", "http://:99999/", "160x120"),
        ]
        .concat(),
    ];
    for (n, text) in files.iter().enumerate() {
        write(&file, text);
        hup(&server);
        let state = after_reloads(&server, n as u64 + 1);
        assert_eq!(
            state["config"]["last_reload_ok"], false,
            "{}",
            state["config"]
        );
        assert_eq!(camera_names(&state), ["a", "b"]);
        // a's client stays on a's own pictures, at a's own size, with no "no signal" in between.
        let until = Instant::now() + Duration::from_secs(2);
        let mut frames = 0;
        while Instant::now() < until {
            let part = a.next_part().expect("a's stream goes on");
            assert_eq!(
                size_of(&part.body),
                (160, 120),
                "a changed by a refused reload"
            );
            frames += 1;
        }
        assert!(
            frames >= 5,
            "{frames} frames of a in 2 s after a refused reload"
        );
        let snapshot = server.get("/cams/a/snapshot");
        assert_eq!(snapshot.status, 200);
        assert_eq!(size_of(&snapshot.body), (160, 120));
        let source = &server.get("/cams/a/state");
        let doc: serde_json::Value = serde_json::from_slice(&source.body).unwrap();
        assert_eq!(doc["result"]["source"]["state"], "online", "{doc}");
    }
}

/// `check-config` (and a start) refuses, at the value, any source URL a relay could not use.
#[test]
fn check_config_refuses_a_relay_url_it_could_not_use() {
    let dir = TempDir::new("check-relay");
    for (url, what) in [
        ("http://", "no host"),
        ("http:///stream", "no host"),
        ("http://cam:0/", "port"),
        ("http://cam:99999/", "port"),
        ("http://cam:x/", "port"),
        ("http://cam/a b", "path"),
        ("http://ca m/", "host"),
    ] {
        let file = dir.0.join("cams.toml");
        write(
            &file,
            &format!("[cameras.good]\n\n[cameras.bad]\nsource = \"{url}\"\n"),
        );
        for args in [
            vec!["check-config", file.to_str().unwrap()],
            vec![
                "--listen",
                "127.0.0.1:0",
                "--config",
                file.to_str().unwrap(),
            ],
        ] {
            let out = Command::new(env!("CARGO_BIN_EXE_mjpegd"))
                .args(&args)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{url} accepted by {args:?}");
            assert!(
                err.contains("cams.toml:4:10:") && err.contains(what),
                "{url}: {err}"
            );
        }
    }
}

/// Item 3 of issue 18: credentials in a relay URL never appear in the log, `/state`, `/metrics` or an
/// error, whether the URL is refused or its upstream cannot be reached.
#[test]
fn credentials_in_a_relay_url_are_never_shown() {
    let dir = TempDir::new("relay-secret");
    let file = dir.0.join("cams.toml");
    let port = free_port(); // nothing listens there
    write(
        &file,
        &format!(
            "[cameras.a]\nsource = \"pattern\"\n\n[cameras.up]\nsource = \"http://admin:S3cret@127.0.0.1:{port}/stream\"\ncapture = \"always\"\nconnect-timeout = \"1s\"\n\n[cameras.auth]\nsource = \"http://127.0.0.1:{port}/x\"\nsource-auth = \"bob:S3cretToo\"\ncapture = \"always\"\n\n[cameras.ex]\nsource = \"exec:echo rtsp://admin:S3cret@cam/s >&2; sleep 1000\"\ncapture = \"always\"\n"
        ),
    );
    let (server, log) = Server::start_logged(&["--config", file.to_str().unwrap()]);
    log.wait_for(&["127.0.0.1:", "connect"]);
    // A command's line, and what it writes to stderr, may hold URLs with credentials too.
    log.wait_for(&["rtsp://***@cam/s"]);
    // A refused reload naming the credentials in a URL it cannot use.
    write(
        &file,
        "[cameras.a]\nsource = \"pattern\"\n\n[cameras.up]\nsource = \"http://admin:S3cret@host:99999/\"\n",
    );
    hup(&server);
    let state = after_reloads(&server, 1);
    let error = state["config"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("cams.toml:5:10:") && error.contains("port"),
        "{error}"
    );
    log.wait_for(&["reload refused"]);
    let mut shown = vec![
        ("log".to_string(), log.lines().join("\n")),
        ("/state".to_string(), state.to_string()),
    ];
    for path in [
        "/metrics",
        "/cams/up/state",
        "/cams/auth/state",
        "/cams/ex/state",
        "/state",
    ] {
        let r = server.get(path);
        assert_eq!(r.status, 200, "{path}");
        shown.push((
            path.to_string(),
            String::from_utf8_lossy(&r.body).into_owned(),
        ));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_mjpegd"))
        .args(["check-config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    shown.push((
        "check-config".into(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ));
    for (what, text) in &shown {
        assert!(
            !text.contains("S3cret"),
            "credentials shown in {what}: {text}"
        );
    }
    // The URL itself is still shown, without them.
    assert!(
        shown[1].1.contains(&format!("127.0.0.1:{port}/stream")),
        "{}",
        shown[1].1
    );
}

/// Runs `mjpegd check-config path` with at most 256 MiB of address space and 10 s, and returns whether
/// it succeeded, its stderr and how long it took.
fn check_config_bounded(path: &Path) -> (bool, String, Duration) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mjpegd"));
    cmd.args(["check-config", path.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            libc::setrlimit(libc::RLIMIT_AS, &limit);
            Ok(())
        });
    }
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("check-config {} still running after 10 s", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.success(), err, start.elapsed())
}

/// Item 11 of issue 18 (config file bounds): a FIFO, a device, a folder or an oversized file is refused
/// at once with a clear error, never read until memory runs out or waited on forever.
#[test]
fn a_config_path_that_is_not_a_small_regular_file_is_refused_at_once() {
    let dir = TempDir::new("config-kinds");
    let fifo = dir.0.join("fifo.toml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let big = dir.0.join("big.toml");
    write(&big, &format!("[cameras.a]\n#{}\n", "x".repeat(2 << 20)));
    for (path, what) in [
        (fifo.as_path(), "not a regular file"),
        (Path::new("/dev/zero"), "not a regular file"),
        (dir.0.as_path(), "not a regular file"),
        (big.as_path(), "larger than"),
    ] {
        let (ok, err, took) = check_config_bounded(path);
        assert!(!ok, "{} accepted", path.display());
        assert!(err.contains(what), "{}: {err}", path.display());
        assert!(took < Duration::from_secs(10));
    }
}
