//! `mjpegd bench`, the load tool, run for real against the real server: short, bounded runs on loopback
//! that check what it reports (frames, whole JPEGs, errors, the server's CPU), over plain HTTP and HTTPS.

mod common;
use common::*;
use serde_json::Value;
use std::process::Command;

struct Cert {
    cert_pem: String,
    key_pem: String,
}

fn make_cert() -> Cert {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    Cert {
        cert_pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
    }
}

/// Runs `mjpegd bench` with `args`; returns whether it succeeded, its stdout and its stderr.
fn bench(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mjpegd"))
        .arg("bench")
        .args(args)
        .output()
        .expect("mjpegd bench runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A short run of `clients` clients reporting JSON.
fn bench_json(url: &str, clients: usize, pid: u32, extra: &[&str]) -> Value {
    let n = clients.to_string();
    let pid = pid.to_string();
    let mut args = vec![
        url,
        "--clients",
        &n,
        "--duration",
        "2s",
        "--warmup",
        "500ms",
        "--pid",
        &pid,
        "--loopback-only",
        "--json",
    ];
    args.extend_from_slice(extra);
    let (ok, stdout, stderr) = bench(&args);
    assert!(ok, "bench {url} failed: {stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Every client connected, received whole JPEGs in the window and met no error; the server's CPU per GB
/// was measured.
fn assert_clean_run(report: &Value, clients: u64, normal_clients: u64) {
    assert_eq!(report["connected"], clients, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    let normal = &report["normal"];
    assert_eq!(normal["clients"], normal_clients, "{report}");
    assert_eq!(normal["not_jpeg"], 0, "{report}");
    assert!(
        normal["fps"]["min"].as_f64().unwrap() > 0.0,
        "every client got frames: {report}"
    );
    assert!(normal["latency_ms"]["p99"].is_number(), "{report}");
    assert!(report["mb_per_s"].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        report["server"]["cpu_s_per_gb"].as_f64().unwrap() > 0.0,
        "{report}"
    );
}

#[test]
fn bench_reads_https_streams_trusting_a_ca_file_or_nothing_and_reports_bad_certificates() {
    let dir = TempDir::new("bench-tls");
    let (cert_file, key_file) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    let cert = make_cert();
    std::fs::write(&cert_file, &cert.cert_pem).unwrap();
    std::fs::write(&key_file, &cert.key_pem).unwrap();
    let other = dir.0.join("other.pem");
    std::fs::write(&other, make_cert().cert_pem).unwrap();
    let server = Server::start(&[
        "--tls-cert",
        cert_file.to_str().unwrap(),
        "--tls-key",
        key_file.to_str().unwrap(),
        "--capture",
        "always",
    ]);
    let pid = server.child.id();
    let url = format!("https://127.0.0.1:{}/stream", server.addr.port());

    // Checked against the server's own certificate (its IP address is in it), and with no check at all.
    let report = bench_json(&url, 4, pid, &["--cacert", cert_file.to_str().unwrap()]);
    assert_clean_run(&report, 4, 4);
    let report = bench_json(
        &url,
        3,
        pid,
        &["--insecure", "--delivery", "all", "--slow", "1"],
    );
    assert_clean_run(&report, 3, 2);
    assert_eq!(report["slow"]["clients"], 1, "{report}");
    assert_eq!(report["normal"]["gaps"], 0, "all: every frame: {report}");

    // Trusting another CA: every client's handshake fails, counted under one reason, none connected.
    let report = bench_json(&url, 3, pid, &["--cacert", other.to_str().unwrap()]);
    assert_eq!(report["connected"], 0, "{report}");
    let errors = report["errors"].as_object().unwrap();
    assert_eq!(errors.len(), 1, "{report}");
    let (reason, count) = errors.iter().next().unwrap();
    assert!(reason.starts_with("tls: invalid certificate"), "{reason}");
    assert_eq!(count, 3);

    // Neither a CA nor --insecure: refused before any connection, with what to give.
    let (ok, _, stderr) = bench(&[&url, "--clients", "1", "--duration", "1s"]);
    assert!(!ok);
    assert!(
        stderr.contains("--cacert") && stderr.contains("--insecure"),
        "{stderr}"
    );

    // Plain HTTP to the TLS port: the handshake is what fails, not the bench.
    let plain = format!("http://127.0.0.1:{}/stream", server.addr.port());
    let report = bench_json(&plain, 1, pid, &[]);
    assert_eq!(report["connected"], 1, "{report}");
    assert_eq!(report["normal"]["frames"], 0, "{report}");
    assert_eq!(report["errors"].as_object().unwrap().len(), 1, "{report}");
}

#[test]
fn bench_reads_plain_http_streams() {
    let server = Server::start(&["--capture", "always"]);
    let url = format!("http://{}/stream", server.addr);
    let report = bench_json(&url, 4, server.child.id(), &[]);
    assert_clean_run(&report, 4, 4);
    // An https:// URL to a plain server: the handshake fails and is reported as such.
    let url = format!("https://{}/stream", server.addr);
    let report = bench_json(&url, 2, server.child.id(), &["--insecure"]);
    assert_eq!(report["connected"], 0, "{report}");
    let errors = report["errors"].as_object().unwrap();
    assert!(errors.keys().all(|k| k.starts_with("tls: ")), "{report}");
}
