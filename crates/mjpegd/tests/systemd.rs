//! mjpegd under systemd, against the real binary: sockets passed by the real `systemd-socket-activate`,
//! sd_notify messages read from a real `NOTIFY_SOCKET` (READY=1 once the port accepts, RELOADING=1 and
//! READY=1 around a SIGHUP reload, WATCHDOG=1 pings, STOPPING=1), and a bad systemd environment refused
//! with a clear error.

mod common;
use common::*;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn snapshot_over_tcp(addr: SocketAddr) -> Response {
    request(
        addr,
        "GET /snapshot HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
}

fn snapshot_over_unix(path: &std::path::Path) -> Response {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::io::Write::write_all(
        &mut s,
        b"GET /snapshot HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    parse_response(&all)
}

/// Runs mjpegd under `systemd-socket-activate` (which binds `sockets`, waits for the first connection,
/// then execs mjpegd in its own place with LISTEN_FDS), stopped when dropped.
fn activated(sockets: &[&str], fdnames: &str, args: &[&str]) -> Server {
    let mut cmd = Command::new("systemd-socket-activate");
    for s in sockets {
        cmd.args(["-l", s]);
    }
    cmd.arg(format!("--fdname={fdnames}"))
        .args(["-E", "MJPEGD_LOG=warn"])
        .arg(env!("CARGO_BIN_EXE_mjpegd"))
        .args(["--resolution", "160x120", "--fps", "10"])
        .args(args)
        .env("MJPEGD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let child = cmd
        .spawn()
        .expect("systemd-socket-activate runs (scripts/setup.sh installs systemd)");
    Server {
        child,
        addr: "127.0.0.1:1".parse().unwrap(),
    }
}

#[test]
fn passed_sockets_are_served_by_name_under_systemd_socket_activate() {
    let dir = TempDir::new("activate");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let sock = dir.0.join("a.sock");
    let tcp = addr.to_string();
    let unix = sock.to_str().unwrap().to_string();
    let _server = activated(
        &[&tcp, &unix],
        "web:local",
        &["--listen", "systemd:web", "--listen", "systemd:local"],
    );
    // systemd-socket-activate has bound both before mjpegd runs: wait for its sockets, then the first
    // connection starts mjpegd, which answers it on the socket it was passed.
    eventually(Duration::from_secs(10), "the activation sockets", || {
        (TcpStream::connect(addr).is_ok() && sock.exists()).then_some(())
    });
    let r = snapshot_over_tcp(addr);
    assert_eq!(r.status, 200);
    assert_whole_jpeg(&r.body);
    let r = snapshot_over_unix(&sock);
    assert_eq!(r.status, 200);
    assert_whole_jpeg(&r.body);
}

#[test]
fn without_listen_the_passed_socket_is_used_and_ready_follows() {
    let dir = TempDir::new("activate-auto");
    let notify_path = dir.0.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cmd = Command::new("systemd-socket-activate");
    // (systemd-socket-activate passes on only the variables -E names)
    cmd.args(["-l", &addr.to_string()])
        .arg("-E")
        .arg(format!("NOTIFY_SOCKET={}", notify_path.display()))
        .args(["-E", "MJPEGD_LOG=warn"])
        .arg(env!("CARGO_BIN_EXE_mjpegd"))
        .args(["--resolution", "160x120"])
        .env("MJPEGD_LOG", "warn")
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(Stdio::null());
    let _server = Server {
        child: cmd.spawn().unwrap(),
        addr,
    };
    eventually(Duration::from_secs(10), "the activation socket", || {
        TcpStream::connect(addr).ok().map(drop)
    });
    let r = snapshot_over_tcp(addr);
    assert_eq!(r.status, 200, "no --listen: the passed socket is served");
    let msg = recv(&notify);
    assert!(msg.starts_with("READY=1\n"), "{msg}");
    assert!(msg.contains(&format!("http://{addr}")), "{msg}");
}

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The next message that is not a watchdog ping, within `within`.
fn next_state(sock: &UnixDatagram, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        assert!(Instant::now() < deadline, "no state message in {within:?}");
        let msg = recv(sock);
        if msg != "WATCHDOG=1\n" {
            return msg;
        }
    }
}

#[test]
fn ready_reloading_watchdog_and_stopping_reach_the_notify_socket() {
    let dir = TempDir::new("notify");
    let path = dir.0.join("notify.sock");
    let notify = UnixDatagram::bind(&path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mjpegd"));
    cmd.args(["--listen", &addr.to_string(), "--resolution", "160x120"])
        .env("MJPEGD_LOG", "warn")
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000") // pings every 200 ms
        .stdout(Stdio::null());
    let mut server = Server {
        child: cmd.spawn().unwrap(),
        addr,
    };

    // READY=1, and at that moment the port already accepts (no retry).
    let ready = recv(&notify);
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    assert!(ready.contains("STATUS=serving"), "{ready}");
    TcpStream::connect(addr).expect("the port accepts once READY=1 is sent");
    assert_eq!(server.get("/snapshot").status, 200);

    // Watchdog pings at about half the interval: the ones already queued are skipped, then four
    // intervals between five pings are timed.
    notify.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    while notify.recv(&mut buf).is_ok() {}
    notify.set_nonblocking(false).unwrap();
    assert_eq!(recv(&notify), "WATCHDOG=1\n");
    let start = Instant::now();
    for _ in 0..4 {
        assert_eq!(recv(&notify), "WATCHDOG=1\n");
    }
    let took = start.elapsed();
    assert!(
        took > Duration::from_millis(600) && took < Duration::from_millis(1600),
        "4 ping intervals in {took:?}, expected about 800 ms"
    );

    // SIGHUP: RELOADING=1 with the monotonic time, then READY=1 once the reload is done.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    let reloading = next_state(&notify, Duration::from_secs(5));
    assert!(reloading.starts_with("RELOADING=1\n"), "{reloading}");
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC with RELOADING=1")
        .parse()
        .unwrap();
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let now_usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000;
    assert!(
        usec <= now_usec && now_usec - usec < 5_000_000,
        "MONOTONIC_USEC {usec} vs now {now_usec}"
    );
    let ready = next_state(&notify, Duration::from_secs(5));
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    assert!(ready.contains("STATUS=reloaded"), "{ready}");
    // Pings go on after the reload.
    assert_eq!(recv(&notify), "WATCHDOG=1\n");

    // SIGTERM: STOPPING=1.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let stopping = next_state(&notify, Duration::from_secs(5));
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping}");
    assert!(server.stop().success());
}

#[test]
fn a_bad_systemd_environment_is_refused_with_a_clear_error() {
    let dir = TempDir::new("bad-env");
    let regular = dir.0.join("regular-file");
    std::fs::write(&regular, "not a socket").unwrap();
    // `exec` keeps the shell's pid, so LISTEN_PID=$$ names mjpegd.
    let bin = env!("CARGO_BIN_EXE_mjpegd");
    let cases: Vec<(String, &str)> = vec![
        (
            format!("LISTEN_PID=$$ LISTEN_FDS=abc exec {bin} --listen systemd"),
            "LISTEN_FDS=\"abc\": expected a number of sockets from 1 to 64",
        ),
        (
            // (no --listen: the sockets would be used if they were valid)
            format!("LISTEN_PID=$$ LISTEN_FDS=100000 exec {bin}"),
            "from 1 to 64",
        ),
        (
            format!(
                "exec 3<{}; LISTEN_PID=$$ LISTEN_FDS=1 exec {bin} --listen systemd",
                regular.display()
            ),
            "descriptor 3 passed by systemd (unknown) is not a socket",
        ),
        (
            format!("LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=one exec {bin} --listen systemd"),
            "LISTEN_FDNAMES has 1 names for LISTEN_FDS=2",
        ),
        (
            format!("LISTEN_PID=1x LISTEN_FDS=1 exec {bin}"),
            "LISTEN_PID=\"1x\": expected a process id",
        ),
        (
            format!("exec {bin} --listen systemd"),
            "no sockets were passed",
        ),
        (
            format!("NOTIFY_SOCKET=relative/path exec {bin} --listen 127.0.0.1:0"),
            "NOTIFY_SOCKET=\"relative/path\"",
        ),
        (
            format!("NOTIFY_SOCKET=/x WATCHDOG_USEC=0 exec {bin} --listen 127.0.0.1:0"),
            "WATCHDOG_USEC=\"0\": expected microseconds",
        ),
        (
            format!("WATCHDOG_USEC=soon exec {bin} --listen 127.0.0.1:0"),
            "WATCHDOG_USEC=\"soon\"",
        ),
        (
            format!("exec {bin} --listen https://127.0.0.1:0"),
            "needs --tls-cert and --tls-key",
        ),
    ];
    for (script, says) in cases {
        let out = Command::new("sh")
            .args(["-c", &script])
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdout(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{script}: should fail");
        assert!(err.contains(says), "{script}: {err}");
        assert!(!err.contains("panicked"), "{script}: {err}");
    }
}
