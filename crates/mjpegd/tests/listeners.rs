//! Several listeners in one server, against the real binary: plain HTTP, HTTPS and a unix socket side by
//! side from repeated `--listen` (and from `listen = [...]` in the config file), the unix socket's mode,
//! its clients in `/state` and under the per-address limit, and the socket file made and removed safely.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Starts mjpegd with exactly `args` and returns it with the listeners its banner names.
fn start(args: &[&str]) -> (Server, Vec<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mjpegd"));
    cmd.args(["--resolution", "160x120", "--fps", "10"])
        .args(args);
    start_cmd(cmd)
}

/// Starts `cmd` (an mjpegd, or a shell that execs one) and returns it with its listeners.
fn start_cmd(mut cmd: Command) -> (Server, Vec<String>) {
    let mut child = cmd
        .env("MJPEGD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut page = None;
    let listen = loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mjpegd exited before printing its listeners");
        };
        let line = line.trim().to_string();
        if let Some(p) = line.strip_prefix("page:") {
            page = Some(p.trim().to_string());
        }
        if let Some(l) = line.strip_prefix("listen:") {
            break l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let addr = page
        .and_then(|p| {
            p.trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/')
                .parse()
                .ok()
        })
        .unwrap_or_else(|| "127.0.0.1:1".parse().unwrap());
    (Server { child, addr }, listen)
}

fn addr_of(url: &str) -> SocketAddr {
    url.split("://").nth(1).unwrap().parse().unwrap()
}

/// GET `path` over a unix socket, as a reverse proxy would.
fn unix_get(path: &Path, target: &str) -> Response {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // (a refused connection may be answered and closed before the request is written, and end in a
    // reset once the answer is read)
    let _ = write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    parse_response(&all)
}

struct Cert {
    der: rustls::pki_types::CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn make_cert() -> Cert {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    Cert {
        der: ck.cert.der().clone(),
        cert_pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
    }
}

/// GET `path` over TLS, trusting only `cert`.
fn tls_get(addr: SocketAddr, cert: &Cert, path: &str) -> Response {
    let provider = rustls::crypto::ring::default_provider();
    tls_get_with(addr, cert, path, provider, rustls::ALL_VERSIONS).0
}

/// GET `path` over TLS with a client offering only `provider`'s suites (in its order) and `versions`;
/// also returns the suite the server chose.
fn tls_get_with(
    addr: SocketAddr,
    cert: &Cert,
    path: &str,
    provider: rustls::crypto::CryptoProvider,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (Response, rustls::CipherSuite) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let suite = s.conn.negotiated_cipher_suite().unwrap().suite();
    (parse_response(&all), suite)
}

/// ring's default suites, keeping only those `keep` accepts (in the default order: AES-256-GCM first).
fn client_suites(keep: impl Fn(rustls::CipherSuite) -> bool) -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.retain(|s| keep(s.suite()));
    provider
}

#[test]
fn the_server_picks_aes_128_gcm_unless_the_client_puts_chacha20_first_or_offers_only_that() {
    use rustls::version::{TLS12, TLS13};
    use rustls::CipherSuite as S;
    let dir = TempDir::new("suites");
    let cert = make_cert();
    let (cert_file, key_file) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    std::fs::write(&cert_file, &cert.cert_pem).unwrap();
    std::fs::write(&key_file, &cert.key_pem).unwrap();
    let (_server, listen) = start(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert_file.to_str().unwrap(),
        "--tls-key",
        key_file.to_str().unwrap(),
    ]);
    let addr = addr_of(&listen[0]);
    #[allow(clippy::type_complexity)] // (what, suites kept, versions, the suite wanted)
    let cases: [(
        &str,
        fn(S) -> bool,
        &[&'static rustls::SupportedProtocolVersion],
        S,
    ); 5] = [
        // rustls' (and OpenSSL's) default order lists AES-256-GCM first: the server's order wins.
        (
            "default, TLS 1.3",
            |_| true,
            &[&TLS13],
            S::TLS13_AES_128_GCM_SHA256,
        ),
        (
            "default, TLS 1.2",
            |_| true,
            &[&TLS12],
            S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            "AES-256 only, TLS 1.3",
            |s| s == S::TLS13_AES_256_GCM_SHA384,
            &[&TLS13],
            S::TLS13_AES_256_GCM_SHA384,
        ),
        // A client without AES instructions that offers only ChaCha20-Poly1305.
        (
            "ChaCha20 only, TLS 1.3",
            |s| s == S::TLS13_CHACHA20_POLY1305_SHA256,
            &[&TLS13],
            S::TLS13_CHACHA20_POLY1305_SHA256,
        ),
        (
            "ChaCha20 only, TLS 1.2",
            |s| s == S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            &[&TLS12],
            S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ];
    for (what, keep, versions, want) in cases {
        let (response, suite) =
            tls_get_with(addr, &cert, "/snapshot", client_suites(keep), versions);
        assert_eq!(response.status, 200, "{what}");
        assert_whole_jpeg(&response.body);
        assert_eq!(suite, want, "{what}");
    }
    // A client that lists ChaCha20-Poly1305 first (no AES instructions) but offers AES too keeps its choice.
    for versions in [&[&TLS13], &[&TLS12]] {
        let mut chacha_first = client_suites(|_| true);
        chacha_first
            .cipher_suites
            .sort_by_key(|s| !format!("{:?}", s.suite()).contains("CHACHA20"));
        let (response, suite) = tls_get_with(addr, &cert, "/snapshot", chacha_first, versions);
        assert_eq!(response.status, 200);
        assert!(format!("{suite:?}").contains("CHACHA20"), "{suite:?}");
    }
    // curl (OpenSSL, AES-256-GCM first in its TLS 1.3 list) gets AES-128-GCM too.
    let out = Command::new("curl")
        .args([
            "-sv",
            "--cacert",
            cert_file.to_str().unwrap(),
            "-o",
            "/dev/null",
        ])
        .arg(format!("https://localhost:{}/snapshot", addr.port()))
        .args(["--resolve", &format!("localhost:{}:127.0.0.1", addr.port())])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("TLS_AES_128_GCM_SHA256"), "{log}");
}

#[test]
fn plain_tls_and_unix_listeners_serve_side_by_side() {
    let dir = TempDir::new("listeners");
    let cert = make_cert();
    let (cert_file, key_file) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    std::fs::write(&cert_file, &cert.cert_pem).unwrap();
    std::fs::write(&key_file, &cert.key_pem).unwrap();
    let sock = dir.0.join("m.sock");
    let unix = format!("unix:{}?mode=0640", sock.display());
    let (mut server, listen) = start(&[
        "--listen",
        "http://127.0.0.1:0",
        "--listen",
        "127.0.0.1:0", // no scheme: HTTPS, since a certificate is given (as with one listener before)
        "--listen",
        &unix,
        "--tls-cert",
        cert_file.to_str().unwrap(),
        "--tls-key",
        key_file.to_str().unwrap(),
    ]);
    assert_eq!(listen.len(), 3, "{listen:?}");
    assert!(listen[0].starts_with("http://127.0.0.1:"), "{listen:?}");
    assert!(listen[1].starts_with("https://127.0.0.1:"), "{listen:?}");
    assert_eq!(listen[2], format!("unix:{}", sock.display()));

    // The same camera on all three.
    let plain = request(
        addr_of(&listen[0]),
        "GET /snapshot HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(plain.status, 200);
    assert_whole_jpeg(&plain.body);
    let tls = tls_get(addr_of(&listen[1]), &cert, "/snapshot");
    assert_eq!(tls.status, 200);
    assert_whole_jpeg(&tls.body);
    let local = unix_get(&sock, "/snapshot");
    assert_eq!(local.status, 200);
    assert_whole_jpeg(&local.body);
    // Plain HTTP on the TLS listener is refused (no answer), and the plain one speaks no TLS.
    let wrong = {
        let mut s = TcpStream::connect(addr_of(&listen[1])).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /snapshot HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        buf
    };
    assert!(
        !wrong.starts_with(b"HTTP/1.1 200"),
        "plain HTTP on the TLS port"
    );

    // The socket file: a socket with the mode asked for.
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);

    // A stream over the unix socket: /state shows its client as a local process.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let mut first = String::new();
    r.read_line(&mut first).unwrap();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let state = server.state();
    let clients = state["clients"].as_array().unwrap().clone();
    let me = format!("unix:pid={},", std::process::id());
    assert!(
        clients
            .iter()
            .any(|c| c["address"].as_str().unwrap_or("").starts_with(&me)),
        "{clients:?}"
    );
    drop(r);

    // Stopped cleanly, the server removes its socket file.
    assert!(server.stop().success());
    assert!(!sock.exists(), "the socket file is removed at shutdown");
}

#[test]
fn unix_clients_count_as_one_local_address() {
    let dir = TempDir::new("unix-limit");
    let sock = dir.0.join("m.sock");
    let unix = format!("unix:{}", sock.display());
    let (server, _) = start(&[
        "--listen",
        "127.0.0.1:0",
        "--listen",
        &unix,
        "--max-connections-per-address",
        "1",
    ]);
    // Default mode 0660.
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    // One unix connection held open takes the local address's only place: a loopback TCP client (the
    // same address) and a second unix client are answered 503 at once.
    let held = UnixStream::connect(&sock).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let tcp = server.get("/snapshot");
    assert_eq!(tcp.status, 503, "loopback TCP shares the local address");
    let second = unix_get(&sock, "/snapshot");
    assert_eq!(second.status, 503);
    assert!(String::from_utf8_lossy(&second.body).contains("your address"));
    drop(held);
    eventually(Duration::from_secs(5), "the place is free again", || {
        (unix_get(&sock, "/snapshot").status == 200).then_some(())
    });
}

#[test]
fn a_stale_socket_is_replaced_but_a_live_one_or_another_file_is_left_alone() {
    let dir = TempDir::new("unix-stale");
    let path = dir.0.join("m.sock");
    let spec = format!("unix:{}", path.display());
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mjpegd"))
            .args(["--listen", &spec])
            .args(extra)
            .env("MJPEGD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    };

    // A regular file at the path: refused, and the file is untouched.
    std::fs::write(&path, "precious").unwrap();
    let out = run(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    std::fs::remove_file(&path).unwrap();

    // A socket no one answers on (a crashed server's): replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_socket());
    let (first, _) = start(&["--listen", "127.0.0.1:0", "--listen", &spec]);
    assert_eq!(unix_get(&path, "/snapshot").status, 200);

    // A socket a running server answers on: a second server refuses to take it.
    let out = run(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use"), "{err}");
    assert_eq!(
        unix_get(&path, "/snapshot").status,
        200,
        "the first still serves"
    );
    drop(first);
}

#[test]
fn the_config_files_listen_list_is_served_and_a_change_needs_a_restart() {
    let dir = TempDir::new("listen-file");
    let sock = dir.0.join("f.sock");
    let file = dir.0.join("cams.toml");
    let write = |listen: &str| {
        std::fs::write(
            &file,
            format!("listen = {listen}\n[cameras.a]\nsource = \"pattern\"\nresolution = \"160x120\"\nfps = 10\n"),
        )
        .unwrap()
    };
    write(&format!(
        "[\"127.0.0.1:0\", \"unix:{}?mode=0600\"]",
        sock.display()
    ));
    let (server, listen) = start(&["--config", file.to_str().unwrap()]);
    assert_eq!(listen.len(), 2, "{listen:?}");
    assert_eq!(server.get("/cams/a/snapshot").status, 200);
    assert_eq!(unix_get(&sock, "/cams/a/snapshot").status, 200);
    assert_eq!(
        std::fs::symlink_metadata(&sock)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // A changed list is reported, not applied: both listeners go on.
    write("\"127.0.0.1:0\"");
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    let config = eventually(Duration::from_secs(10), "the reload", || {
        let st = server.state();
        (st["config"]["reloads"].as_u64() == Some(1)).then(|| st["config"].clone())
    });
    assert_eq!(config["last_reload_ok"], true, "{config}");
    assert_eq!(config["needs_restart"], serde_json::json!(["listen"]));
    assert_eq!(unix_get(&sock, "/cams/a/snapshot").status, 200);
}

#[test]
fn out_of_descriptors_every_listener_still_answers_newcomers_503() {
    let dir = TempDir::new("unix-fds");
    let sock = dir.0.join("m.sock");
    let unix = format!("unix:{}", sock.display());
    // 64 descriptors, and --max-connections above them: accept runs out, and each listener's spare
    // descriptor answers the waiting connections.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -Sn 64 && ulimit -Hn 64 && exec {} \"$@\"",
            env!("CARGO_BIN_EXE_mjpegd")
        ))
        .arg("sh")
        .args([
            "--resolution",
            "160x120",
            "--fps",
            "5",
            "--head-timeout",
            "10s",
        ])
        .args([
            "--max-connections",
            "1000",
            "--listen",
            "127.0.0.1:0",
            "--listen",
            &unix,
        ]);
    let (server, _) = start_cmd(cmd);
    let held: Vec<UnixStream> = (0..100)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    let refused = |mut s: &UnixStream| {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        buf[..n].starts_with(b"HTTP/1.1 503")
    };
    // Far more than 64 descriptors' worth: the last ones were answered, not left in the queue.
    let answered = held.iter().skip(70).filter(|s| refused(s)).count();
    assert_eq!(
        answered, 30,
        "every unix connection past the descriptors got its 503"
    );
    // The TCP listener's loop has its own spare (opened before any loop accepted, and never taken by
    // the other loop's accepts while it is freed for a 503): newcomers there are answered too.
    let tcp: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    let answered = tcp
        .iter()
        .filter(|s| {
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut buf = [0u8; 64];
            let n = (&mut &**s).read(&mut buf).unwrap_or(0);
            buf[..n].starts_with(b"HTTP/1.1 503")
        })
        .count();
    assert!(
        answered >= 18,
        "{answered} of 20 TCP newcomers got their 503"
    );
    drop(held);
}

/// What the racer of [`a_racer_in_a_world_writable_folder_cannot_have_another_file_chmodded`] does to
/// each new name in the folder.
const SWAP_NAME: u8 = 0;
/// ... or: renames a new directory away and puts its own in its place, with a symlink to the victim
/// where the socket would be bound.
const SWAP_DIR: u8 = 1;

/// An attacker sharing a world-writable folder: watches it with inotify and, for every new entry but the
/// final socket, renames a symlink to `victim` over it (or, in `SWAP_DIR` mode, steals a new directory and
/// replaces it with one holding such a symlink). It only does what any user who can write the folder can
/// do. Returns how many entries it went for.
fn racer(
    dir: std::path::PathBuf,
    keep: String,
    victim: std::path::PathBuf,
    mode: Arc<std::sync::atomic::AtomicU8>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        assert!(fd >= 0);
        let c = CString::new(dir.as_os_str().as_bytes()).unwrap();
        assert!(unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_CREATE) } >= 0);
        let mut seen = std::collections::HashSet::new();
        let mut tries = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        let mut k = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            if unsafe { libc::poll(&mut pfd, 1, 50) } <= 0 {
                continue;
            }
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                continue;
            }
            let mut at = 0usize;
            while at + 16 <= n as usize {
                let len = u32::from_ne_bytes(buf[at + 12..at + 16].try_into().unwrap()) as usize;
                let raw = &buf[at + 16..at + 16 + len];
                at += 16 + len;
                let name =
                    String::from_utf8_lossy(raw.split(|b| *b == 0).next().unwrap()).into_owned();
                if name == keep || name.starts_with("racer-") || name.contains(".stolen") {
                    continue;
                }
                if !seen.insert(name.clone()) {
                    continue; // its own directory, made in place of a stolen one
                }
                tries += 1;
                k += 1;
                let target = dir.join(&name);
                let link = dir.join(format!("racer-{k}"));
                if mode.load(Ordering::Relaxed) == SWAP_DIR && target.is_dir() {
                    if std::fs::rename(&target, dir.join(format!("{name}.stolen{k}"))).is_ok() {
                        let _ = std::fs::create_dir(&target);
                        let _ = std::os::unix::fs::symlink(&victim, target.join("s"));
                    }
                    continue;
                }
                let _ = std::os::unix::fs::symlink(&victim, &link);
                if std::fs::rename(&link, &target).is_err() {
                    let _ = std::fs::remove_file(&link);
                }
            }
        }
        unsafe { libc::close(fd) };
        tries
    })
}

/// Issue 18 item 10: mjpegd bound `.NAME.PID.tmp` in the socket's folder and then chmod-ed it by path, so
/// a racer renaming a symlink over that name had a file of its choice (here a 0600 "secret") made 0666.
/// Many starts against a racer: the victim's mode never changes, and every start the racer cannot stop
/// places a socket with exactly the mode asked.
#[test]
fn a_racer_in_a_world_writable_folder_cannot_have_another_file_chmodded() {
    use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
    let tmp = TempDir::new("unix-race");
    let shared = tmp.0.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let victim = tmp.0.join("secret");
    std::fs::write(&victim, "secret").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let sock = shared.join("m.sock");
    let mode = Arc::new(AtomicU8::new(SWAP_NAME));
    let stop = Arc::new(AtomicBool::new(false));
    let racer = racer(
        shared.clone(),
        "m.sock".into(),
        victim.clone(),
        mode.clone(),
        stop.clone(),
    );
    let unix = format!("unix:{}?mode=0666", sock.display());
    let (mut placed, mut refused) = (0, 0);
    for start in 0..80 {
        mode.store(
            if start % 4 == 3 { SWAP_DIR } else { SWAP_NAME },
            Ordering::Relaxed,
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_mjpegd"))
            .args([
                "--resolution",
                "160x120",
                "--listen",
                "127.0.0.1:0",
                "--listen",
                &unix,
            ])
            .env("MJPEGD_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok)
            .any(|l| l.trim().starts_with("listen:"));
        let victim_mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o7777;
        if victim_mode != 0o600 {
            let _ = child.kill();
            let _ = child.wait();
            panic!("start {start}: the racer had the victim chmodded to {victim_mode:o}");
        }
        if started {
            let meta = std::fs::symlink_metadata(&sock).unwrap();
            assert!(meta.file_type().is_socket(), "start {start}: {meta:?}");
            assert_eq!(meta.permissions().mode() & 0o7777, 0o666, "start {start}");
            placed += 1;
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        } else {
            refused += 1;
        }
        let _ = child.wait();
        let victim_mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o7777;
        assert_eq!(
            victim_mode, 0o600,
            "start {start}: the racer had the victim chmodded"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let tries = racer.join().unwrap();
    eprintln!(
        "{placed} starts placed the socket, {refused} refused; the racer went for {tries} names"
    );
    assert!(tries >= 80, "the racer saw the starts ({tries})");
    // Every start the racer only renamed files at could place its socket.
    assert!(placed >= 60, "{placed} of 80 starts placed the socket");
    // Nothing of the server's is left behind in the folder (the racer's leftovers aside).
    let left: Vec<_> = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("racer-") && !n.contains(".stolen"))
        .filter(|n| {
            let p = shared.join(n);
            // The racer's symlinks (renamed over names already gone), and its own replacement
            // directories, which hold its symlink.
            let racers = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_symlink())
                || (p.is_dir()
                    && std::fs::symlink_metadata(p.join("s")).is_ok_and(|m| m.is_symlink()));
            !racers
        })
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
