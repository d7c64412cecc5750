//! `/metrics` and the per-client log lines, on the real binary over real TCP: the exposition parses as
//! Prometheus text, its counters move by at least what a client received and never go down when the client
//! leaves, gauges follow the clients, evictions and refusals are counted by cause, cameras of a config file
//! are told apart by their label, the URL is behind the same auth as every other, and each stream client's
//! end is one log line with its camera, policy, address, duration, frames, bytes and why it ended.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One parsed scrape.
struct Metrics(prometheus_parse::Scrape);

impl Metrics {
    /// The value of `name` with exactly `labels`, if the scrape has it; counters must be typed as counters
    /// and gauges as gauges (the TYPE lines match the samples).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let sample = self.0.samples.iter().find(|s| {
            s.metric == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })?;
        match sample.value {
            prometheus_parse::Value::Counter(v) => {
                assert!(name.ends_with("_total"), "{name} is a counter");
                Some(v)
            }
            prometheus_parse::Value::Gauge(v) => {
                assert!(!name.ends_with("_total"), "{name} is a gauge");
                Some(v)
            }
            ref other => panic!("{name} has an unexpected type: {other:?}"),
        }
    }

    /// Like [`Metrics::get`], for a series that must be there.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in the scrape"))
    }
}

/// GETs `/metrics` (with `extra` header lines) and parses it as the classic text format.
fn scrape_with(server: &Server, extra: &str) -> Metrics {
    let r = request(
        server.addr,
        &format!("GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n"),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = String::from_utf8(r.body).expect("UTF-8");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the exposition parses");
    for s in &scrape.samples {
        assert!(
            scrape.docs.contains_key(&s.metric),
            "{} has a HELP line",
            s.metric
        );
    }
    Metrics(scrape)
}

fn scrape(server: &Server) -> Metrics {
    scrape_with(server, "")
}

const ALL: [(&str, &str); 2] = [("camera", "default"), ("policy", "all")];

#[test]
fn counters_grow_by_what_a_client_received_and_stay_when_it_leaves() {
    let server = Server::start(&["--fps", "30", "--capture", "always", "--max-clients", "1"]);
    let before = scrape(&server);
    assert_eq!(before.value("mjpegd_clients", &ALL), 0.0);
    assert_eq!(
        before.value(
            "mjpegd_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    let mut client = server.stream("/stream?delivery=all");
    let (mut frames, mut jpeg_bytes) = (0u64, 0u64);
    for _ in 0..20 {
        let part = client.next_part().unwrap();
        frames += 1;
        jpeg_bytes += part.body.len() as u64;
    }
    // The only stream slot is taken: a second client is refused, and counted.
    assert_eq!(server.stream("/stream").head.status, 503);

    // The server counts a frame once its write returns, which may be a moment after the client read it.
    let grown = |m: &Metrics| {
        m.value("mjpegd_frames_sent_total", &ALL) - before.value("mjpegd_frames_sent_total", &ALL)
            >= frames as f64
            && m.value("mjpegd_sent_bytes_total", &ALL)
                - before.value("mjpegd_sent_bytes_total", &ALL)
                >= jpeg_bytes as f64
    };
    let during = eventually(
        Duration::from_secs(5),
        &format!("frames and bytes sent to grow by at least the {frames} frames and {jpeg_bytes} JPEG bytes received"),
        || Some(scrape(&server)).filter(grown),
    );
    assert_eq!(during.value("mjpegd_clients", &ALL), 1.0);
    let sent = during.value("mjpegd_frames_sent_total", &ALL);
    let bytes = during.value("mjpegd_sent_bytes_total", &ALL);
    let cam = [("camera", "default")];
    let captured = during.value("mjpegd_frames_captured_total", &cam);
    let published = during.value("mjpegd_frames_published_total", &cam);
    assert!(captured >= frames as f64 && published >= frames as f64);
    assert_eq!(
        during.value("mjpegd_rejections_total", &[("cause", "max_clients")]),
        1.0
    );
    assert_eq!(
        during.value(
            "mjpegd_source_state",
            &[("camera", "default"), ("state", "online")]
        ),
        1.0
    );
    assert_eq!(
        during.value(
            "mjpegd_source_state",
            &[("camera", "default"), ("state", "offline")]
        ),
        0.0
    );
    assert!(during.value("mjpegd_connections", &[]) >= 1.0);
    assert!(during.value("process_resident_memory_bytes", &[]) > 0.0);

    drop(client);
    let after = eventually(Duration::from_secs(5), "the client gauge back to 0", || {
        let m = scrape(&server);
        (m.value("mjpegd_clients", &ALL) == 0.0).then_some(m)
    });
    assert!(
        after.value("mjpegd_frames_sent_total", &ALL) >= sent,
        "a departed client's frames stay counted"
    );
    assert!(after.value("mjpegd_sent_bytes_total", &ALL) >= bytes);
    assert_eq!(
        after.value(
            "mjpegd_frames_sent_total",
            &[("camera", "default"), ("policy", "lockstep")]
        ),
        0.0,
        "no lockstep client, no lockstep frames"
    );

    // A scraper that asks for OpenMetrics gets it, with its end marker.
    let r = request(
        server.addr,
        "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\r\n",
    );
    assert_eq!(
        r.headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = String::from_utf8(r.body).unwrap();
    assert!(text.ends_with("# EOF\n"));
    assert!(text.contains("# TYPE mjpegd_frames_sent counter\n"));
    assert!(text.contains("mjpegd_frames_sent_total{camera=\"default\",policy=\"all\"} "));
}

/// The value of `key=` in a text log line (quotes removed).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    Some(rest.split(' ').next()?.trim_matches('"'))
}

#[test]
fn evictions_are_counted_by_cause_and_each_client_end_is_logged_with_its_fields_and_why() {
    let (server, log) = Server::start_logged(&[
        "--fps",
        "30",
        "--capture",
        "always",
        "--resolution",
        "640x480",
        "--lockstep-timeout",
        "300ms",
        "--send-buffer",
        "16KiB",
    ]);
    // A client that reads 5 frames and leaves.
    let mut client = server.stream("/stream?delivery=latest");
    let local = client.reader.get_ref().local_addr().unwrap();
    let mut jpeg_bytes = 0u64;
    for _ in 0..5 {
        jpeg_bytes += client.next_part().unwrap().body.len() as u64;
    }
    drop(client);
    let line = log.wait_for(&["stream ended", &format!("addr={local} ")]);
    assert_eq!(field(&line, "camera"), Some("default"), "{line}");
    assert_eq!(field(&line, "policy"), Some("latest"), "{line}");
    assert_eq!(field(&line, "ended"), Some("disconnected"), "{line}");
    let frames: u64 = field(&line, "frames").unwrap().parse().unwrap();
    let bytes: u64 = field(&line, "bytes").unwrap().parse().unwrap();
    let ms: u64 = field(&line, "duration_ms").unwrap().parse().unwrap();
    assert!(frames >= 5, "{line}");
    assert!(bytes >= jpeg_bytes, "{line}");
    assert!(ms >= 100, "5 frames at 30 fps take over 100 ms: {line}");
    let start = log.wait_for(&["stream started", &format!("addr={local} ")]);
    assert_eq!(field(&start, "policy"), Some("latest"));

    // A lockstep client that stops reading: its 4 KiB receive buffer and the 16 KiB send buffer hold less
    // than a 640x480 frame, so it is evicted at the lockstep timeout.
    let stalled = Stream::open(server.addr, "/stream?delivery=lockstep", Some(4096));
    let local = stalled.reader.get_ref().local_addr().unwrap();
    let cause = [("camera", "default"), ("cause", "lockstep_timeout")];
    eventually(Duration::from_secs(10), "the eviction counted", || {
        (scrape(&server).value("mjpegd_evictions_total", &cause) == 1.0).then_some(())
    });
    let m = scrape(&server);
    assert_eq!(
        m.value(
            "mjpegd_evictions_total",
            &[("camera", "default"), ("cause", "buffer_full")]
        ),
        0.0
    );
    let line = log.wait_for(&["stream ended", &format!("addr={local} ")]);
    assert_eq!(field(&line, "policy"), Some("lockstep"), "{line}");
    assert_eq!(field(&line, "ended"), Some("evicted"), "{line}");
    assert_eq!(field(&line, "cause"), Some("lockstep_timeout"), "{line}");
    assert!(field(&line, "frames").is_some() && field(&line, "bytes").is_some());

    // A client still watching when the server stops.
    let mut watching = server.stream("/stream?delivery=all");
    watching.next_part().unwrap();
    let local = watching.reader.get_ref().local_addr().unwrap();
    let mut server = server;
    assert!(server.stop().success());
    let line = log.wait_for(&["stream ended", &format!("addr={local} ")]);
    assert_eq!(field(&line, "policy"), Some("all"), "{line}");
    assert_eq!(field(&line, "ended"), Some("shutdown"), "{line}");
    assert_eq!(field(&line, "cause"), None, "{line}");
}

#[test]
fn metrics_need_credentials_like_every_url_and_an_access_key_will_do() {
    let key = "k-0123456789abcdef";
    let server = Server::start(&["--auth", "u:p", "--access-key", key]);
    let r = server.get("/metrics");
    assert_eq!(r.status, 401);
    assert!(r.headers.contains_key("www-authenticate"));
    let r = server.get(&format!("/metrics?key={key}"));
    assert_eq!(r.status, 200);
    // Basic u:p
    let m = scrape_with(&server, "Authorization: Basic dTpw\r\n");
    assert_eq!(
        m.value("mjpegd_rejections_total", &[("cause", "unauthorized")]),
        1.0,
        "the 401 is counted"
    );
}

#[test]
fn each_camera_of_a_config_file_has_its_own_series() {
    let dir = TempDir::new("metrics-cams");
    let rec = dir.0.join("rec");
    let config = dir.0.join("cams.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\n\n[cameras.front]\nsource = \"pattern\"\n\n[cameras.back]\nsource = \"pattern\"\nrecord = {:?}\n",
            rec.display().to_string()
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mjpegd"));
    cmd.args(["--resolution", "160x120", "--fps", "30", "--config"])
        .arg(&config);
    let server = Server::spawn(&mut cmd);
    let mut client = server.stream("/cams/back/stream");
    for _ in 0..10 {
        client.next_part().unwrap();
    }
    let back = [("camera", "back"), ("policy", "latest")];
    let front = [("camera", "front"), ("policy", "latest")];
    let m = eventually(Duration::from_secs(5), "back's 10 frames counted", || {
        Some(scrape(&server)).filter(|m| m.value("mjpegd_frames_sent_total", &back) >= 10.0)
    });
    assert_eq!(m.value("mjpegd_frames_sent_total", &front), 0.0);
    assert_eq!(m.value("mjpegd_clients", &back), 1.0);
    assert_eq!(m.value("mjpegd_clients", &front), 0.0);
    // front is on demand and unwatched; back records, so it captures.
    assert_eq!(
        m.value(
            "mjpegd_source_state",
            &[("camera", "front"), ("state", "idle")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "mjpegd_source_state",
            &[("camera", "back"), ("state", "online")]
        ),
        1.0
    );
    assert_eq!(
        m.value("mjpegd_frames_captured_total", &[("camera", "front")]),
        0.0
    );
    eventually(Duration::from_secs(5), "frames recorded", || {
        let m = scrape(&server);
        (m.value("mjpegd_recording_frames_total", &[("camera", "back")]) > 0.0).then_some(())
    });
    assert!(
        m.get("mjpegd_recording_frames_total", &[("camera", "front")])
            .is_none(),
        "front does not record"
    );
    let m = scrape(&server);
    assert!(
        m.value(
            "mjpegd_recording_written_bytes_total",
            &[("camera", "back")]
        ) > 0.0
    );
    assert_eq!(
        m.value(
            "mjpegd_recording_state",
            &[("camera", "back"), ("state", "recording")]
        ),
        1.0
    );
    drop(client);
    // Keep-alive scrapes on one connection work like any small request.
    let mut t = TcpStream::connect(server.addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(t.try_clone().unwrap());
    for _ in 0..2 {
        write!(t, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut status = String::new();
        r.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut len = 0;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        std::io::Read::read_exact(&mut r, &mut body).unwrap();
    }
}

/// GETs `/metrics` over TLS (trusting `cert`) and parses it.
fn scrape_tls(server: &Server, cert: &rustls::pki_types::CertificateDer<'static>) -> Metrics {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(std::sync::Arc::new(config), "localhost".try_into().unwrap())
            .unwrap();
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    // The server closes after the response (without close_notify on some paths): what arrived counts.
    let _ = std::io::Read::read_to_end(&mut s, &mut all);
    let r = parse_response(&all);
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body).unwrap();
    Metrics(
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .expect("the exposition parses"),
    )
}

#[test]
fn tls_handshakes_are_counted_by_result() {
    let dir = TempDir::new("metrics-tls");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let server = Server::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let der = ck.cert.der().clone();
    let first = scrape_tls(&server, &der);
    assert!(first.value("mjpegd_tls_handshakes_total", &[("result", "ok")]) >= 1.0);
    assert_eq!(
        first.value("mjpegd_tls_handshakes_total", &[("result", "failed")]),
        0.0
    );
    // Plain HTTP to the TLS port: the handshake fails.
    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let _ = std::io::Read::read_to_end(&mut plain, &mut Vec::new());
    let m = eventually(Duration::from_secs(5), "the failure counted", || {
        let m = scrape_tls(&server, &der);
        (m.value("mjpegd_tls_handshakes_total", &[("result", "failed")]) == 1.0).then_some(m)
    });
    assert!(m.value("mjpegd_tls_handshakes_total", &[("result", "ok")]) >= 2.0);
}
