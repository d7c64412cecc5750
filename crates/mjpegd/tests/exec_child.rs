//! Hostile `exec:` children: helpers that ignore SIGTERM and hold the pipe, stderr floods. Nothing the child
//! starts outlives a restart or the server, and the server's memory stays bounded whatever it writes.

mod common;
#[path = "common/upstream.rs"]
mod upstream;
use common::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use upstream::make_jpegs;

/// A fresh directory whose path marks every process started from it (it is in their command lines).
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mjpegd-exec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes an executable shell script.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Live processes (zombies have no command line) whose command line contains `marker`, but `except`.
fn processes_with(marker: &str, except: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == except {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// The parent of process `pid`, from /proc (None once it is gone).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kb * 1024
}

/// Starts mjpegd on `source` with its log at info level collected (the first MiB of it).
fn start_logged(source: &str) -> (Server, Arc<Mutex<Vec<u8>>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mjpegd"))
        .args(["--listen", "127.0.0.1:0", "--resolution", "160x120"])
        .args(["--capture", "always", "--source", source])
        .env("MJPEGD_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mjpegd starts");
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut stderr = child.stderr.take().unwrap();
    let kept = log.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut kept = kept.lock().unwrap();
            if kept.len() < 1 << 20 {
                kept.extend_from_slice(&buf[..n]);
            }
        }
    });
    // Stopped on drop from here on, even if the banner never comes.
    let mut server = Server {
        child,
        addr: "127.0.0.1:1".parse().unwrap(),
    };
    server.addr = listening_address(&mut server.child);
    (server, log)
}

#[test]
fn a_helper_that_ignores_sigterm_and_holds_the_pipe_never_outlives_a_restart_or_the_server() {
    let dir = temp_dir("orphans");
    let frames = make_jpegs(3, 160, 120);
    std::fs::write(dir.join("frames.mjpeg"), frames.concat()).unwrap();
    // As a hung ffmpeg under `sh -c` holds a camera: a helper that ignores SIGTERM keeps the pipe open
    // (its stdout) after the command itself has exited.
    let holder = script(&dir, "holder.sh", "trap '' TERM\nwhile :; do sleep 1; done");
    let command = script(
        &dir,
        "command.sh",
        &format!(
            "sh {} &\ncat {}\nsleep 0.3\nexit 3",
            holder.display(),
            dir.join("frames.mjpeg").display()
        ),
    );
    let marker = dir.to_str().unwrap();
    let mut server = Server::start(&[
        "--source",
        &format!("exec:{}", command.display()),
        "--capture",
        "always",
        "--resolution",
        "160x120",
    ]);
    let server_pid = server.child.id();
    // A holder forking its `sleep` shows the holder's command line until the exec: such a child (whose
    // parent is a holder) is the same helper, not a second one.
    let holders = |server_pid| {
        let found: Vec<u32> = processes_with(marker, server_pid)
            .into_iter()
            .filter(|(_, cmdline)| cmdline.contains("holder.sh"))
            .map(|(pid, _)| pid)
            .collect();
        found
            .iter()
            .filter(|&&pid| !parent_of(pid).is_some_and(|p| found.contains(&p)))
            .count()
    };
    // Each run ends (the command exits, its helper keeps the pipe) and is restarted; the helpers of
    // earlier runs must be gone, not piling up.
    let mut most = 0;
    eventually(Duration::from_secs(40), "three restarts", || {
        most = most.max(holders(server_pid));
        assert!(
            most <= 1,
            "helpers of earlier runs are still alive: {:?}",
            processes_with(marker, server_pid)
        );
        let state = server.state();
        (state["source"]["reconnects"].as_u64().unwrap() >= 3).then_some(())
    });
    assert_eq!(most, 1, "the helper was seen running");
    let state = server.state();
    assert!(
        state["source"]["last_error"]
            .as_str()
            .unwrap()
            .contains("exited"),
        "{state}"
    );
    // At shutdown the current helper ignores SIGTERM too: it gets SIGKILL before mjpegd exits.
    assert!(server.stop().success());
    let left = processes_with(marker, server_pid);
    assert!(left.is_empty(), "left behind after shutdown: {left:?}");
}

/// Runs `flood` (shell lines writing to stderr, in the background) next to a child that writes JPEGs to
/// stdout, for a few seconds: frames keep flowing and the server's memory stays bounded. Returns the log.
fn flood_for_a_few_seconds(name: &str, flood: &str) -> String {
    let dir = temp_dir(name);
    let frames = make_jpegs(4, 160, 120);
    let clip = dir.join("frames.mjpeg");
    std::fs::write(&clip, frames.concat()).unwrap();
    let command = script(
        &dir,
        "command.sh",
        &format!(
            "{flood}\nwhile :; do cat {}; sleep 0.1; done",
            clip.display()
        ),
    );
    let (mut server, log) = start_logged(&format!("exec:{}", command.display()));
    let pid = server.child.id();
    let mut stream = server.stream("/stream");
    let start = Instant::now();
    let (mut real, mut most) = (0, 0);
    while start.elapsed() < Duration::from_secs(3) {
        let part = stream.next_part().expect("frames keep flowing");
        if frames.contains(&part.body) {
            real += 1;
        }
        most = most.max(rss(pid));
    }
    assert!(most < 100 << 20, "mjpegd grew to {} MiB of RSS", most >> 20);
    assert!(real >= 10, "only {real} frames in 3 s");
    assert!(server.stop().success());
    let left = processes_with(dir.to_str().unwrap(), pid);
    assert!(left.is_empty(), "left behind after shutdown: {left:?}");
    let log = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    eprintln!("{name}: {real} frames, RSS at most {} KiB", most >> 10);
    log
}

/// Lines of the log the child wrote (not mjpegd's own).
fn child_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("mjpegd::child"))
        .collect()
}

#[test]
fn a_stderr_flood_without_line_ends_is_logged_cut_in_bounded_memory() {
    let log = flood_for_a_few_seconds("zeros", "cat /dev/zero >&2 &");
    let lines = child_lines(&log);
    assert!(
        lines.iter().any(|l| l.contains("[line cut at 500 bytes]")),
        "{log}"
    );
    // One cut line, and no more than the rate limit allows however much comes.
    assert!(lines.len() <= 2 * 11, "{} child lines logged", lines.len());
}

#[test]
fn carriage_return_progress_lines_are_logged_at_a_bounded_rate() {
    let log = flood_for_a_few_seconds(
        "progress",
        "i=0; while :; do i=$((i+1)); printf 'frame=%d fps=10 speed=1x\\r' $i; done >&2 &",
    );
    let lines = child_lines(&log);
    let progress = lines.iter().filter(|l| l.contains("speed=1x")).count();
    assert!(
        progress >= 10,
        "progress lines ended by \\r are logged:\n{log}"
    );
    // 10 a second for the ~4 s the child ran (start-up and shutdown included), and a count of the rest.
    assert!(progress <= 10 * 6, "{progress} progress lines logged");
    assert!(
        lines.iter().any(|l| l.contains("not logged")),
        "the suppressed lines are counted:\n{log}"
    );
}
