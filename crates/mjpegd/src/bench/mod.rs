//! `mjpegd bench`: a load tool for any MJPEG server.
//!
//! It opens N concurrent clients to a stream URL, lets them warm up, then measures for a fixed window and
//! stops: per-client frame rates, sequence gaps (from `X-Frame-Sequence` where the server sends it),
//! latency from capture to receipt (receipt time minus `X-Timestamp`), connect time and time to first
//! frame, throughput, and errors by kind. Every part is checked to be a whole JPEG. Optionally some
//! clients read slowly (a byte-rate cap, a small receive buffer) to show whether the server isolates them.
//! Given the server's pid it samples its CPU and memory, and its own, since both share the machine.
//! `https://` URLs are read over TLS ([`tls`]): the client's decryption then shares the machine too.

pub mod procstat;
mod scan;
mod tls;

use hdrhistogram::Histogram;
use scan::{PartScanner, ScanError};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Flags of `mjpegd bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// The stream URL, e.g. http://127.0.0.1:8080/stream (or https://...).
    pub url: String,
    /// Concurrent clients.
    #[arg(short = 'n', long, default_value_t = 10)]
    pub clients: usize,
    /// Measuring window.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Time after the last client connected before measuring starts.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// How many of the clients read slowly.
    #[arg(long, default_value_t = 0)]
    pub slow: usize,
    /// Byte rate of a slow client (e.g. 200KB).
    #[arg(long, default_value = "200KB", value_parser = parse_size)]
    pub slow_rate: u64,
    /// SO_RCVBUF of slow clients (e.g. 16KiB); unset: the kernel's default.
    #[arg(long, value_parser = parse_size)]
    pub slow_rcvbuf: Option<u64>,
    /// Adds ?delivery= to the URL of the normal clients.
    #[arg(long)]
    pub delivery: Option<String>,
    /// Adds ?delivery= to the URL of the slow clients.
    #[arg(long)]
    pub slow_delivery: Option<String>,
    /// The server's pid: its CPU and memory are sampled over the window. Several (repeated, or
    /// comma-separated: a proxy's workers and the server behind it) are summed.
    #[arg(long, value_delimiter = ',')]
    pub pid: Vec<u32>,
    /// Connections opened at once while ramping up.
    #[arg(long, default_value_t = 256)]
    pub connect_batch: usize,
    /// Refuse URLs that are not on this machine (for scripts).
    #[arg(long)]
    pub loopback_only: bool,
    /// Print one JSON line instead of the report.
    #[arg(long)]
    pub json: bool,
    /// For https:// URLs: trust only the certificates in this PEM file.
    #[arg(long, value_name = "PEM")]
    pub cacert: Option<std::path::PathBuf>,
    /// For https:// URLs: accept any certificate (a self-signed server on loopback).
    #[arg(long, conflicts_with = "cacert")]
    pub insecure: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{s:?}: {e}"))
}

struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
    /// For https://: the shared client configuration and the name the certificate must carry.
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
}

fn parse_target(url: &str, args: &BenchArgs) -> anyhow::Result<Target> {
    let (rest, default_port, tls) = if let Some(rest) = url.strip_prefix("http://") {
        (rest, 80, false)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (rest, 443, true)
    } else {
        anyhow::bail!("{url}: only http:// and https:// URLs");
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        hostport.to_string()
    } else {
        format!("{hostport}:{default_port}")
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&with_port)?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{hostport}: no address"))?;
    let tls = if tls {
        let trust = match (&args.cacert, args.insecure) {
            (Some(file), _) => tls::Trust::CaFile(file),
            (None, true) => tls::Trust::Insecure,
            (None, false) => {
                anyhow::bail!("{url}: give --cacert PEM (the server's CA) or --insecure")
            }
        };
        let host = with_port.rsplit_once(':').map_or(hostport, |(h, _)| h);
        Some((
            tokio_rustls::TlsConnector::from(tls::client_config(trust)?),
            tls::server_name(host)?,
        ))
    } else {
        None
    };
    Ok(Target {
        addr,
        host: hostport.to_string(),
        path: path.to_string(),
        tls,
    })
}

fn with_delivery(path: &str, delivery: &Option<String>) -> String {
    match delivery {
        None => path.to_string(),
        Some(d) => format!(
            "{path}{}delivery={d}",
            if path.contains('?') { '&' } else { '?' }
        ),
    }
}

/// What one client saw.
#[derive(Default)]
struct ClientResult {
    slow: bool,
    connect: Option<Duration>,
    first_frame: Option<Duration>,
    /// Frames and bytes inside the window.
    frames: u64,
    bytes: u64,
    gaps: u64,
    not_jpeg: u64,
    latency_us: Vec<u32>,
    /// Oldest frame a slow client received in the window (receipt minus X-Timestamp), µs.
    max_age_us: u64,
    error: Option<String>,
}

struct Window {
    start: Instant,
    end: Instant,
}

async fn run_client(
    target: Arc<Target>,
    path: String,
    slow: Option<(u64, Option<u64>)>,
    window: Arc<Mutex<Option<Window>>>,
    deadline: Instant,
) -> ClientResult {
    let mut r = ClientResult {
        slow: slow.is_some(),
        ..ClientResult::default()
    };
    let started = Instant::now();
    let socket = match target.addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    };
    let socket = match socket {
        Ok(s) => s,
        Err(e) => {
            r.error = Some(format!("socket: {}", e.kind()));
            return r;
        }
    };
    if let Some((_, Some(rcvbuf))) = slow {
        let _ = socket.set_recv_buffer_size(rcvbuf as u32);
    }
    let stream: TcpStream =
        match tokio::time::timeout(Duration::from_secs(10), socket.connect(target.addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                r.error = Some(format!("connect: {}", e.kind()));
                return r;
            }
            Err(_) => {
                r.error = Some("connect: timeout".into());
                return r;
            }
        };
    let Some((connector, name)) = &target.tls else {
        r.connect = Some(started.elapsed());
        return read_stream(stream, r, &target, &path, slow, &window, deadline, started).await;
    };
    // Over TLS, connected means handshaken: the connect time includes the handshake.
    let handshake = connector.connect(name.clone(), stream);
    let stream = match tokio::time::timeout(Duration::from_secs(10), handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            r.error = Some(format!("tls: {}", tls_error(&e)));
            return r;
        }
        Err(_) => {
            r.error = Some("tls: timeout".into());
            return r;
        }
    };
    r.connect = Some(started.elapsed());
    read_stream(stream, r, &target, &path, slow, &window, deadline, started).await
}

/// A failed handshake in a few words (the errors are counted by text, so they must not vary per client).
fn tls_error(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(c)) => format!("invalid certificate ({c:?})"),
        Some(rustls::Error::AlertReceived(a)) => format!("alert {a:?}"),
        Some(_) => "handshake failed".into(),
        None => e.kind().to_string(),
    }
}

/// Sends the request on a connected stream (TCP or TLS) and reads parts until the window ends.
#[allow(clippy::too_many_arguments)]
async fn read_stream<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    mut r: ClientResult,
    target: &Target,
    path: &str,
    slow: Option<(u64, Option<u64>)>,
    window: &Mutex<Option<Window>>,
    deadline: Instant,
    started: Instant,
) -> ClientResult {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: mjpegd-bench/{}\r\nAccept: */*\r\n\r\n",
        target.host,
        env!("CARGO_PKG_VERSION")
    );
    let sent = async {
        stream.write_all(request.as_bytes()).await?;
        stream.flush().await
    };
    if let Err(e) = sent.await {
        r.error = Some(format!("write: {}", e.kind()));
        return r;
    }
    // Response head.
    let mut buf = vec![0u8; if slow.is_some() { 4096 } else { 64 * 1024 }];
    let mut head = Vec::new();
    let body_start;
    loop {
        let n = match tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => {
                r.error = Some("no response head".into());
                return r;
            }
            Ok(Ok(n)) => n,
        };
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = memchr::memmem::find(&head, b"\r\n\r\n") {
            body_start = i + 4;
            break;
        }
        if head.len() > 64 * 1024 {
            r.error = Some("response head too large".into());
            return r;
        }
    }
    let status = String::from_utf8_lossy(&head[..head.len().min(12)]).to_string();
    if !status.contains(" 200") {
        r.error = Some(format!(
            "status: {}",
            status.split(' ').nth(1).unwrap_or("?")
        ));
        return r;
    }
    let mut scanner = PartScanner::default();
    let mut last_seq: Option<u64> = None;
    // What followed the head in its reads; after that, each read is scanned where it landed (copying
    // every byte received once more was a quarter of the tool's CPU at 2,000 clients).
    let mut pending: Vec<u8> = head.split_off(body_start);
    let mut filled = 0usize;
    let mut bucket_start = Instant::now();
    let mut bucket_bytes = 0u64;
    loop {
        let now = Instant::now();
        let win = window
            .lock()
            .map(|w| w.as_ref().map(|w| (w.start, w.end)))
            .ok()
            .flatten();
        let mut on_part = |p: scan::PartInfo| {
            let now = Instant::now();
            if r.first_frame.is_none() {
                r.first_frame = Some(started.elapsed());
            }
            let counted = win.is_some_and(|(s, e)| now >= s && now < e);
            if let (Some(seq), Some(last)) = (p.sequence, last_seq) {
                if counted && seq > last + 1 && r.slow {
                    // Slow clients under latest skip frames by design; gaps are only news for the others.
                } else if counted && seq > last + 1 {
                    r.gaps += seq - last - 1;
                }
            }
            last_seq = p.sequence.or(last_seq);
            if !counted {
                return;
            }
            r.frames += 1;
            r.bytes += p.len as u64;
            if !p.whole_jpeg {
                r.not_jpeg += 1;
            }
            if let Some(ts) = p.timestamp {
                let now_wall = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64();
                let age = ((now_wall - ts).max(0.0) * 1e6) as u64;
                r.latency_us.push(age.min(u32::MAX as u64) as u32);
                r.max_age_us = r.max_age_us.max(age);
            }
        };
        let data: &[u8] = if pending.is_empty() {
            &buf[..filled]
        } else {
            &pending
        };
        if !data.is_empty() {
            if let Err(e) = scanner.feed(data, &mut on_part) {
                r.error = Some(match e {
                    ScanError::NoContentLength => {
                        "part without Content-Length (not supported by the fast scanner)".into()
                    }
                    ScanError::HeadTooLarge => "part headers too large".into(),
                });
                return r;
            }
            pending.clear();
            filled = 0;
        }
        if now >= deadline || win.is_some_and(|(_, e)| now >= e) {
            return r;
        }
        // Slow clients: keep under the byte rate with a one-second bucket.
        let mut cap = buf.len();
        if let Some((rate, _)) = slow {
            if now.duration_since(bucket_start) >= Duration::from_secs(1) {
                bucket_start = now;
                bucket_bytes = 0;
            }
            let left = rate.saturating_sub(bucket_bytes);
            if left == 0 {
                tokio::time::sleep_until((bucket_start + Duration::from_secs(1)).into()).await;
                continue;
            }
            cap = cap.min(left as usize);
        }
        let read = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf[..cap])).await;
        match read {
            Ok(Ok(0)) => {
                r.error = Some("closed by server".into());
                return r;
            }
            Ok(Ok(n)) => {
                bucket_bytes += n as u64;
                filled = n;
            }
            Ok(Err(e)) => {
                r.error = Some(format!("read: {}", e.kind()));
                return r;
            }
            Err(_) => return r,
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Runs the load test and prints the report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let target = Arc::new(parse_target(&args.url, &args)?);
    if args.loopback_only && !target.addr.ip().is_loopback() {
        anyhow::bail!("{}: not a loopback address (--loopback-only)", target.addr);
    }
    crate::net::raise_fd_limit();
    let window: Arc<Mutex<Option<Window>>> = Arc::new(Mutex::new(None));
    let ramp_deadline = Instant::now() + Duration::from_secs(60) + args.warmup + args.duration;
    let mut tasks = Vec::with_capacity(args.clients);
    let connect_started = Instant::now();
    for i in 0..args.clients {
        let slow = i < args.slow;
        let path = with_delivery(
            &target.path,
            if slow {
                &args.slow_delivery
            } else {
                &args.delivery
            },
        );
        let slow_opts = slow.then_some((args.slow_rate, args.slow_rcvbuf));
        tasks.push(tokio::spawn(run_client(
            target.clone(),
            path,
            slow_opts,
            window.clone(),
            ramp_deadline,
        )));
        if (i + 1) % args.connect_batch.max(1) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let ramp = connect_started.elapsed();
    tokio::time::sleep(args.warmup).await;
    let start = Instant::now();
    *window.lock().unwrap() = Some(Window {
        start,
        end: start + args.duration,
    });
    let server_before = procstat::sample_all(&args.pid);
    let self_before = procstat::sample("self");
    tokio::time::sleep(args.duration).await;
    let server_after = procstat::sample_all(&args.pid);
    let self_after = procstat::sample("self");
    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        results.push(t.await.unwrap_or_default());
    }
    let secs = args.duration.as_secs_f64();
    let report = Report::build(
        &args,
        &results,
        secs,
        ramp,
        server_before,
        server_after,
        self_before,
        self_after,
    );
    if args.json {
        println!("{}", serde_json::to_string(&report.json)?);
    } else {
        print!("{}", report.text);
    }
    Ok(())
}

struct Report {
    text: String,
    json: serde_json::Value,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    fn build(
        args: &BenchArgs,
        results: &[ClientResult],
        secs: f64,
        ramp: Duration,
        server_before: Option<procstat::Sample>,
        server_after: Option<procstat::Sample>,
        self_before: Option<procstat::Sample>,
        self_after: Option<procstat::Sample>,
    ) -> Report {
        use std::fmt::Write;
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        for r in results {
            if let Some(e) = &r.error {
                *errors.entry(e.clone()).or_default() += 1;
            }
        }
        let group = |slow: bool| -> serde_json::Value {
            let rs: Vec<&ClientResult> = results.iter().filter(|r| r.slow == slow).collect();
            let mut fps: Vec<f64> = rs.iter().map(|r| r.frames as f64 / secs).collect();
            fps.sort_by(f64::total_cmp);
            let mut lat =
                Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds");
            for r in &rs {
                for &l in &r.latency_us {
                    let _ = lat.record(u64::from(l).max(1));
                }
            }
            let max_age = rs.iter().map(|r| r.max_age_us).max().unwrap_or(0);
            serde_json::json!({
                "clients": rs.len(),
                "fps": {"min": percentile(&fps, 0.0), "p10": percentile(&fps, 0.1), "median": percentile(&fps, 0.5), "max": percentile(&fps, 1.0)},
                "frames": rs.iter().map(|r| r.frames).sum::<u64>(),
                "gaps": rs.iter().map(|r| r.gaps).sum::<u64>(),
                "not_jpeg": rs.iter().map(|r| r.not_jpeg).sum::<u64>(),
                "latency_ms": if lat.is_empty() { serde_json::Value::Null } else { serde_json::json!({
                    "p50": lat.value_at_quantile(0.5) as f64 / 1000.0,
                    "p99": lat.value_at_quantile(0.99) as f64 / 1000.0,
                    "max": lat.max() as f64 / 1000.0,
                })},
                "max_frame_age_ms": max_age as f64 / 1000.0,
            })
        };
        let mut connect: Vec<f64> = results
            .iter()
            .filter_map(|r| r.connect)
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        connect.sort_by(f64::total_cmp);
        let mut first: Vec<f64> = results
            .iter()
            .filter_map(|r| r.first_frame)
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        first.sort_by(f64::total_cmp);
        let bytes: u64 = results.iter().map(|r| r.bytes).sum();
        let gb_per_s = bytes as f64 / secs / 1e9;
        // CPU seconds per delivered GB: what each byte costs, comparable across loads and servers.
        let cpu = |a: Option<procstat::Sample>, b: Option<procstat::Sample>| match (a, b) {
            (Some(a), Some(b)) => {
                let percent = procstat::cpu_percent(&a, &b);
                let per_gb = (gb_per_s > 0.0).then(|| percent / 100.0 / gb_per_s);
                serde_json::json!({"cpu_percent": percent, "cpu_s_per_gb": per_gb, "rss_mib_before": a.rss as f64 / 1048576.0, "rss_mib_after": b.rss as f64 / 1048576.0})
            }
            _ => serde_json::Value::Null,
        };
        let normal = group(false);
        let slow = group(true);
        let json = serde_json::json!({
            "url": args.url,
            "clients": results.len(),
            "connected": results.iter().filter(|r| r.connect.is_some()).count(),
            "window_s": secs,
            "warmup_s": args.warmup.as_secs_f64(),
            "ramp_s": ramp.as_secs_f64(),
            "normal": normal,
            "slow": slow,
            "connect_ms": {"p50": percentile(&connect, 0.5), "p99": percentile(&connect, 0.99), "max": percentile(&connect, 1.0)},
            "first_frame_ms": {"p50": percentile(&first, 0.5), "p99": percentile(&first, 0.99), "max": percentile(&first, 1.0)},
            "mb_per_s": bytes as f64 / secs / 1e6,
            "frames_per_s": (normal["frames"].as_u64().unwrap_or(0) + slow["frames"].as_u64().unwrap_or(0)) as f64 / secs,
            "errors": errors,
            "server": cpu(server_before, server_after),
            "self": cpu(self_before, self_after),
        });
        let mut t = String::new();
        let _ = writeln!(
            t,
            "{} clients ({} connected) to {}; {:.1} s window after {:.1} s warm-up",
            results.len(),
            json["connected"],
            args.url,
            secs,
            args.warmup.as_secs_f64()
        );
        for (name, g) in [("normal", &normal), ("slow", &slow)] {
            if g["clients"].as_u64() == Some(0) {
                continue;
            }
            let f = &g["fps"];
            let _ = writeln!(t, "{name:>6}: {} clients, fps min {:.1} p10 {:.1} median {:.1} max {:.1}; frames {}, gaps {}, not JPEG {}", g["clients"], f["min"].as_f64().unwrap_or(f64::NAN), f["p10"].as_f64().unwrap_or(f64::NAN), f["median"].as_f64().unwrap_or(f64::NAN), f["max"].as_f64().unwrap_or(f64::NAN), g["frames"], g["gaps"], g["not_jpeg"]);
            if !g["latency_ms"].is_null() {
                let l = &g["latency_ms"];
                let _ = writeln!(t, "        latency (receipt - X-Timestamp) p50 {} ms, p99 {} ms, max {} ms; oldest frame {} ms", l["p50"], l["p99"], l["max"], g["max_frame_age_ms"]);
            }
        }
        let _ = writeln!(
            t,
            "connect p50 {:.1} ms p99 {:.1} ms; first frame p50 {:.1} ms p99 {:.1} ms",
            percentile(&connect, 0.5),
            percentile(&connect, 0.99),
            percentile(&first, 0.5),
            percentile(&first, 0.99)
        );
        let _ = writeln!(
            t,
            "throughput {:.1} MB/s, {:.0} frames/s delivered",
            json["mb_per_s"].as_f64().unwrap_or(0.0),
            json["frames_per_s"].as_f64().unwrap_or(0.0)
        );
        if !errors.is_empty() {
            let _ = writeln!(t, "errors: {errors:?}");
        }
        for (name, v) in [("server", &json["server"]), ("bench", &json["self"])] {
            if !v.is_null() {
                let _ = writeln!(
                    t,
                    "{name}: cpu {:.1}% of a core ({:.3} CPU-s per delivered GB), rss {:.1} -> {:.1} MiB",
                    v["cpu_percent"].as_f64().unwrap_or(0.0),
                    v["cpu_s_per_gb"].as_f64().unwrap_or(f64::NAN),
                    v["rss_mib_before"].as_f64().unwrap_or(0.0),
                    v["rss_mib_after"].as_f64().unwrap_or(0.0)
                );
            }
        }
        Report { text: t, json }
    }
}
