//! `/metrics`: what every camera and the server are doing, in the Prometheus exposition format.
//!
//! Nothing here is counted per frame: a scrape reads the counters the server keeps anyway (the hubs'
//! statistics and per-client atomics with the totals of clients that left, the supervisors' source
//! status, the recorders' status, the server's refusal counters, the connection limits, `/proc/self`),
//! copies them into a [`Scrape`] with each lock held only for its copy, and hands that to
//! prometheus-client as a [`Collector`], which writes the text. Scrapes are rare (seconds apart), so
//! the few allocations of one do not matter; the stream path is untouched.
//!
//! The format follows the scraper's `Accept` header: OpenMetrics 1.0 when it asks for it (Prometheus does),
//! else the classic text format 0.0.4 (curl, older scrapers). Names and units follow Prometheus'
//! conventions (`_total` counters, `_bytes`, `_seconds`); every per-camera series is labelled `camera`
//! (a name the configuration already validated: letters, digits, `-`, `_`).

use crate::bench::procstat;
use crate::http::app::App;
use crate::hub::{SentTotals, SourceState};
use crate::record::RecordingState;
use mjpegd_core::hub::HubStats;
use mjpegd_core::{EvictCause, Policy};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::fmt;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

/// The Content-Type of OpenMetrics text 1.0.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Content-Type of the classic Prometheus text format.
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The exposition of `app` now, in the format `accept` prefers: (Content-Type, body).
pub fn render(app: &App, accept: Option<&str>) -> (&'static str, String) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape::of(app)));
    let mut body = String::with_capacity(16 << 10);
    let openmetrics = accept.is_some_and(|a| a.contains("application/openmetrics-text"));
    // Writing into a String cannot fail; an error could only come from an encoder's own check, and then
    // what was written so far is still a valid prefix to serve.
    if openmetrics {
        let _ = prometheus_client::encoding::text::encode(&mut body, &registry);
        (OPENMETRICS, body)
    } else {
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut body, &registry);
        (PROMETHEUS_TEXT, body)
    }
}

/// One camera's counters, copied at scrape time.
#[derive(Debug)]
struct CameraSample {
    name: String,
    captured: u64,
    dropped_not_jpeg: u64,
    dropped_too_large: u64,
    thumbnails_dropped: u64,
    dropped_untransformable: u64,
    huffman_tables_added: u64,
    reconnects: u64,
    state: SourceState,
    stats: HubStats,
    /// Per policy, in [`Policy::ALL`] order.
    sent: [SentTotals; 3],
    recording: Option<RecordingSample>,
    /// The pre-roll: frames and bytes held now, frames trimmed for memory so far.
    pre_roll: Option<(u64, u64, u64)>,
    /// Event clips: started, frames written, frames lost, bytes.
    events: Option<[u64; 4]>,
    /// The timelapse: frames written, frames lost, bytes.
    timelapse: Option<[u64; 3]>,
    /// Replays of its recordings (only cameras with a folder to replay from).
    replays: Option<crate::replays::ReplayTotals>,
    variants: Vec<VariantSample>,
    /// A pushed camera's inlet (None for other sources).
    push: Option<PushSample>,
}

/// A pushed camera's inlet: what its pushers sent that did not become frames, and who pushes.
#[derive(Debug)]
struct PushSample {
    lost: [(crate::source::push::Loss, u64); 4],
    takeovers: u64,
    connected: bool,
}

/// One running size/quality variant's counters.
#[derive(Debug)]
struct VariantSample {
    /// `320x180q80`.
    name: String,
    clients: usize,
    frames: u64,
    skipped: u64,
    errors: u64,
    /// Mean transcode time, in seconds.
    transcode: f64,
}

#[derive(Debug)]
struct RecordingSample {
    state: RecordingState,
    frames: u64,
    lost: u64,
    bytes: u64,
}

/// Everything one scrape reports, read from the server at once.
#[derive(Debug)]
struct Scrape {
    cameras: Vec<CameraSample>,
    connections: usize,
    /// (cause, count) of refused requests and connections.
    rejections: [(&'static str, u64); 8],
    tls_ok: u64,
    tls_failed: u64,
    reloads: u64,
    process: Option<procstat::Sample>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
    started: SystemTime,
}

impl Scrape {
    fn of(app: &App) -> Scrape {
        let cameras = app
            .cameras()
            .iter()
            .map(|camera| {
                let hub = &camera.hub;
                let source = hub.source();
                let recording = camera.recording.as_ref().map(|r| {
                    let r = r.lock().unwrap_or_else(|e| e.into_inner());
                    RecordingSample {
                        state: r.state,
                        frames: r.frames_written,
                        lost: r.frames_lost,
                        bytes: r.bytes,
                    }
                });
                // Variants (per-client sizes and qualities): their transcoders' counters, labelled camera
                // and variant. A variant's series ends when it stops and starts from 0 if it runs again.
                let variants = camera
                    .variants
                    .list()
                    .iter()
                    .map(|v| {
                        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                        VariantSample {
                            name: format!("{}x{}q{}", v.key.width, v.key.height, v.key.quality),
                            clients: v.hub.client_count(),
                            frames: n(&v.stats.frames),
                            skipped: n(&v.stats.skipped),
                            errors: n(&v.stats.errors),
                            transcode: n(&v.stats.average_us) as f64 / 1e6,
                        }
                    })
                    .collect();
                let pre_roll = hub
                    .pre_roll_stats(SystemTime::now())
                    .map(|p| (p.frames as u64, p.bytes as u64, p.trimmed));
                let events = camera.events.as_ref().map(|e| {
                    let s = e.status.lock().unwrap_or_else(|e| e.into_inner());
                    [s.events, s.frames_written, s.frames_lost, s.bytes]
                });
                let timelapse = camera.timelapse.as_ref().map(|t| {
                    let s = t.lock().unwrap_or_else(|e| e.into_inner());
                    [s.frames_written, s.frames_lost, s.bytes]
                });
                let push = matches!(
                    camera.settings().source,
                    crate::source::spec::SourceSpec::Push(_)
                )
                .then(|| PushSample {
                    lost: camera.inlet.losses(),
                    takeovers: camera.inlet.takeovers(),
                    connected: camera.inlet.pusher().is_some(),
                });
                let settings = camera.settings();
                let replays = (settings.record.is_some()
                    || settings.events.is_some()
                    || settings.timelapse.is_some())
                .then(|| camera.replays.totals());
                CameraSample {
                    replays,
                    pre_roll,
                    events,
                    timelapse,
                    push,
                    variants,
                    name: camera.name().to_string(),
                    captured: hub.frames_captured(),
                    dropped_not_jpeg: source.dropped_not_jpeg,
                    dropped_too_large: source.dropped_too_large,
                    thumbnails_dropped: source.thumbnails_dropped,
                    dropped_untransformable: source.dropped_untransformable,
                    huffman_tables_added: source.huffman_tables_added,
                    reconnects: source.reconnects,
                    state: source.state,
                    stats: hub.stats(),
                    sent: hub.sent_totals(),
                    recording,
                }
            })
            .collect();
        let c = &app.counters;
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let reloads = app
            .reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .attempts;
        Scrape {
            cameras,
            connections: app.connections.open(),
            rejections: [
                ("max_clients", n(&c.rejected_max_clients)),
                ("max_variants", n(&c.rejected_max_variants)),
                ("max_connections", n(&c.max_connections)),
                (
                    "max_connections_per_address",
                    n(&c.max_connections_per_address),
                ),
                ("unauthorized", n(&c.unauthorized)),
                ("password_checks_busy", n(&c.password_checks_busy)),
                ("bad_request", n(&c.bad_requests)),
                ("timeout", n(&c.timeouts)),
            ],
            tls_ok: n(&c.tls_handshakes_completed),
            tls_failed: n(&c.tls_handshakes),
            reloads,
            process: procstat::sample("self"),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as u64),
            max_fds: max_fds(),
            started: app.started,
        }
    }
}

/// The soft limit on open files.
fn max_fds() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
    ok.then_some(limit.rlim_cur as u64)
}

/// Writes one counter family: `name` (without `_total`, which the encoder adds), one sample per label set.
fn counter<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    samples: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, unit.as_ref(), MetricType::Counter)?;
    for (labels, v) in samples {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes one gauge family, one sample per label set.
fn gauge<L: EncodeLabelSet, V: prometheus_client::encoding::EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    samples: impl IntoIterator<Item = (L, V)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
    for (labels, v) in samples {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A label set with no labels.
const NONE: [(&str, &str); 0] = [];

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let cams = &self.cameras;
        let per_camera = |f: fn(&CameraSample) -> u64| {
            cams.iter()
                .map(move |c| ([("camera", c.name.as_str())], f(c)))
        };
        let per_policy = |f: fn(&SentTotals) -> u64| {
            cams.iter().flat_map(move |c| {
                Policy::ALL.iter().map(move |p| {
                    (
                        [("camera", c.name.as_str()), ("policy", p.as_str())],
                        f(&c.sent[p.index()]),
                    )
                })
            })
        };

        counter(
            &mut enc,
            "mjpegd_frames_captured",
            "Frames the source delivered, before they are checked (published ones plus dropped ones).",
            None,
            per_camera(|c| c.captured),
        )?;
        counter(
            &mut enc,
            "mjpegd_frames_dropped",
            "Frames from the source dropped, by cause: not a whole JPEG, picture larger than --max-picture-size, could not be rotated or flipped.",
            None,
            cams.iter().flat_map(|c| {
                [
                    ("not_jpeg", c.dropped_not_jpeg),
                    ("picture_too_large", c.dropped_too_large),
                    ("untransformable", c.dropped_untransformable),
                ]
                .map(|(cause, v)| ([("camera", c.name.as_str()), ("cause", cause)], v))
            }),
        )?;
        counter(
            &mut enc,
            "mjpegd_thumbnails_dropped",
            "Frames published without the embedded thumbnail they came with (--drop-thumbnails).",
            None,
            per_camera(|c| c.thumbnails_dropped),
        )?;
        counter(
            &mut enc,
            "mjpegd_huffman_tables_added",
            "Frames that came without Huffman tables and were given the standard ones (T.81 annex K.3).",
            None,
            per_camera(|c| c.huffman_tables_added),
        )?;
        counter(
            &mut enc,
            "mjpegd_frames_published",
            "Frames published to the camera's clients (the source's, and the no-signal ones while it is down).",
            None,
            per_camera(|c| c.stats.published),
        )?;
        counter(
            &mut enc,
            "mjpegd_frames_sent",
            "Frames written in full to stream clients, by delivery policy (clients that left included).",
            None,
            per_policy(|t| t.frames),
        )?;
        counter(
            &mut enc,
            "mjpegd_sent",
            "Bytes of frames written to stream clients (part headers and boundaries included), by delivery policy.",
            Some(Unit::Bytes),
            per_policy(|t| t.bytes),
        )?;
        counter(
            &mut enc,
            "mjpegd_frames_skipped",
            "Frames a stream client never got because a newer one was ready when it was (latest), by delivery policy.",
            None,
            per_policy(|t| t.skipped),
        )?;
        gauge(
            &mut enc,
            "mjpegd_clients",
            "Stream clients connected now, by delivery policy.",
            None,
            cams.iter().flat_map(|c| {
                Policy::ALL.map(|p| {
                    (
                        [("camera", c.name.as_str()), ("policy", p.as_str())],
                        c.sent[p.index()].clients as u64,
                    )
                })
            }),
        )?;
        counter(
            &mut enc,
            "mjpegd_evictions",
            "Stream clients disconnected by the server, by cause.",
            None,
            cams.iter().flat_map(|c| {
                EvictCause::ALL
                    .iter()
                    .zip(c.stats.evictions)
                    .map(|(cause, v)| ([("camera", c.name.as_str()), ("cause", cause.as_str())], v))
            }),
        )?;
        gauge(
            &mut enc,
            "mjpegd_backlog",
            "Bytes of frames the `all` backlog holds now (bounded by --buffer-memory).",
            Some(Unit::Bytes),
            per_camera(|c| c.stats.backlog_bytes as u64),
        )?;
        gauge(
            &mut enc,
            "mjpegd_source_state",
            "1 for the state the camera's source is in, 0 for the others.",
            None,
            cams.iter().flat_map(|c| {
                SourceState::ALL.map(|s| {
                    (
                        [("camera", c.name.as_str()), ("state", s.as_str())],
                        u64::from(c.state == s),
                    )
                })
            }),
        )?;
        counter(
            &mut enc,
            "mjpegd_source_reconnects",
            "Times the source was opened again after a failure.",
            None,
            per_camera(|c| c.reconnects),
        )?;

        if cams.iter().any(|c| c.push.is_some()) {
            self.encode_push(&mut enc)?;
        }
        let recording = || cams.iter().filter_map(|c| Some((c, c.recording.as_ref()?)));
        if recording().next().is_some() {
            self.encode_recording(&mut enc)?;
        }
        self.encode_clips(&mut enc)?;
        if cams.iter().any(|c| !c.variants.is_empty()) {
            self.encode_variants(&mut enc)?;
        }
        self.encode_server(&mut enc)
    }
}

impl Scrape {
    /// The pushed cameras' inlets (only when some camera is pushed).
    fn encode_push(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let pushed = || {
            self.cameras
                .iter()
                .filter_map(|c| Some((c, c.push.as_ref()?)))
        };
        counter(
            enc,
            "mjpegd_push_lost",
            "What a pushed camera's pushers sent that did not become a frame, by cause: the queue to the source was full, above push-max-fps, larger than a frame may be, a WebSocket text message.",
            None,
            pushed().flat_map(|(c, p)| {
                p.lost.map(|(cause, v)| {
                    ([("camera", c.name.as_str()), ("cause", cause.as_str())], v)
                })
            }),
        )?;
        counter(
            enc,
            "mjpegd_push_takeovers",
            "Pushers that took a pushed camera over from the one holding it (push-takeover).",
            None,
            pushed().map(|(c, p)| ([("camera", c.name.as_str())], p.takeovers)),
        )?;
        gauge(
            enc,
            "mjpegd_pusher_connected",
            "1 while a pusher holds the pushed camera, 0 otherwise.",
            None,
            pushed().map(|(c, p)| ([("camera", c.name.as_str())], p.connected as u64)),
        )
    }

    /// The running variants' counters (only while some run).
    fn encode_variants(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let variants = || {
            self.cameras.iter().flat_map(|c| {
                c.variants.iter().map(move |v| {
                    (
                        [("camera", c.name.as_str()), ("variant", v.name.as_str())],
                        v,
                    )
                })
            })
        };
        gauge(
            enc,
            "mjpegd_variant_clients",
            "Stream clients of a size/quality variant now.",
            None,
            variants().map(|(l, v)| (l, v.clients as u64)),
        )?;
        counter(
            enc,
            "mjpegd_variant_frames",
            "Frames a variant's transcoder published.",
            None,
            variants().map(|(l, v)| (l, v.frames)),
        )?;
        counter(
            enc,
            "mjpegd_variant_frames_skipped",
            "Frames of the camera a variant's transcoder let go by while it was busy.",
            None,
            variants().map(|(l, v)| (l, v.skipped)),
        )?;
        counter(
            enc,
            "mjpegd_variant_errors",
            "Frames a variant's transcoder could not transcode.",
            None,
            variants().map(|(l, v)| (l, v.errors)),
        )?;
        gauge(
            enc,
            "mjpegd_variant_transcode",
            "Mean time of a variant's transcodes (weighted to the recent ones).",
            Some(Unit::Seconds),
            variants().map(|(l, v)| (l, v.transcode)),
        )
    }

    /// Pre-rolls, event clips and timelapses (each only when a camera has one).
    fn encode_clips(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let cam = |c: &CameraSample| [("camera", c.name.clone())];
        let pre = || {
            self.cameras
                .iter()
                .filter_map(|c| Some((cam(c), c.pre_roll?)))
        };
        if pre().next().is_some() {
            gauge(
                enc,
                "mjpegd_pre_roll_frames",
                "Frames the pre-roll holds now.",
                None,
                pre().map(|(l, p)| (l, p.0)),
            )?;
            gauge(
                enc,
                "mjpegd_pre_roll",
                "Bytes of frames the pre-roll holds now (at most --buffer-memory).",
                Some(Unit::Bytes),
                pre().map(|(l, p)| (l, p.1)),
            )?;
            counter(
                enc,
                "mjpegd_pre_roll_trimmed",
                "Frames the pre-roll let go before their time was up, to stay within --buffer-memory.",
                None,
                pre().map(|(l, p)| (l, p.2)),
            )?;
        }
        let ev = || {
            self.cameras
                .iter()
                .filter_map(|c| Some((cam(c), c.events?)))
        };
        if ev().next().is_some() {
            for (i, name, help, unit) in [
                (0, "mjpegd_events", "Event clips started.", None),
                (1, "mjpegd_event_frames", "Frames written to event clips.", None),
                (2, "mjpegd_event_frames_lost", "Frames event clips lost (a disk behind by more than --buffer-memory, or failing).", None),
                (3, "mjpegd_event_written", "Bytes of frames written to event clips.", Some(Unit::Bytes)),
            ] {
                counter(enc, name, help, unit, ev().map(|(l, e)| (l, e[i])))?;
            }
        }
        let tl = || {
            self.cameras
                .iter()
                .filter_map(|c| Some((cam(c), c.timelapse?)))
        };
        if tl().next().is_some() {
            for (i, name, help, unit) in [
                (
                    0,
                    "mjpegd_timelapse_frames",
                    "Frames written to timelapses.",
                    None,
                ),
                (
                    1,
                    "mjpegd_timelapse_frames_lost",
                    "Frames a timelapse could not write.",
                    None,
                ),
                (
                    2,
                    "mjpegd_timelapse_written",
                    "Bytes of frames written to timelapses.",
                    Some(Unit::Bytes),
                ),
            ] {
                counter(enc, name, help, unit, tl().map(|(l, t)| (l, t[i])))?;
            }
        }
        let rp = || {
            self.cameras
                .iter()
                .filter_map(|c| Some((cam(c), c.replays?)))
        };
        if rp().next().is_some() {
            gauge(
                enc,
                "mjpegd_replays",
                "Replays of recordings (/recordings/FILE/stream) running now.",
                None,
                rp().map(|(l, r)| (l, r.active)),
            )?;
            for (name, help, unit, of) in [
                (
                    "mjpegd_replays_started",
                    "Replays of recordings started.",
                    None,
                    (|r: crate::replays::ReplayTotals| r.started) as fn(_) -> u64,
                ),
                ("mjpegd_replay_frames", "Frames replays sent.", None, |r| {
                    r.frames
                }),
                (
                    "mjpegd_replay_sent",
                    "Bytes of parts replays sent (headers and boundaries included).",
                    Some(Unit::Bytes),
                    |r| r.bytes,
                ),
            ] {
                counter(enc, name, help, unit, rp().map(|(l, r)| (l, of(r))))?;
            }
        }
        Ok(())
    }

    /// The recorders' counters (only when a camera records).
    fn encode_recording(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let recording = || {
            self.cameras
                .iter()
                .filter_map(|c| Some((c, c.recording.as_ref()?)))
        };
        counter(
            enc,
            "mjpegd_recording_frames",
            "Frames written to recordings.",
            None,
            recording().map(|(c, r)| ([("camera", c.name.as_str())], r.frames)),
        )?;
        counter(
            enc,
            "mjpegd_recording_frames_lost",
            "Frames the recorder could not write (disk full or failing).",
            None,
            recording().map(|(c, r)| ([("camera", c.name.as_str())], r.lost)),
        )?;
        counter(
            enc,
            "mjpegd_recording_written",
            "Bytes of frames written to recordings.",
            Some(Unit::Bytes),
            recording().map(|(c, r)| ([("camera", c.name.as_str())], r.bytes)),
        )?;
        gauge(
            enc,
            "mjpegd_recording_state",
            "1 for the state the camera's recorder is in, 0 for the others.",
            None,
            recording().flat_map(|(c, r)| {
                RecordingState::ALL.map(|s| {
                    (
                        [("camera", c.name.as_str()), ("state", s.as_str())],
                        u64::from(r.state == s),
                    )
                })
            }),
        )
    }

    /// Server-wide and process metrics.
    fn encode_server(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "mjpegd_connections",
            "Open connections (streams, requests, TLS handshakes).",
            None,
            [(NONE, self.connections as u64)],
        )?;
        counter(
            enc,
            "mjpegd_rejections",
            "Requests and connections refused, by cause.",
            None,
            self.rejections.map(|(cause, v)| ([("cause", cause)], v)),
        )?;
        counter(
            enc,
            "mjpegd_tls_handshakes",
            "TLS handshakes, by result (failed: refused, broken or not finished within --head-timeout).",
            None,
            [
                ([("result", "ok")], self.tls_ok),
                ([("result", "failed")], self.tls_failed),
            ],
        )?;
        counter(
            enc,
            "mjpegd_config_reloads",
            "Configuration reloads tried (SIGHUP).",
            None,
            [(NONE, self.reloads)],
        )?;
        gauge(
            enc,
            "mjpegd_build_info",
            "The running build: always 1, its version as a label.",
            None,
            [([("version", env!("CARGO_PKG_VERSION"))], 1u64)],
        )?;

        if let Some(p) = &self.process {
            counter_f64(
                enc,
                "process_cpu",
                "User and system CPU time spent.",
                Unit::Seconds,
                p.cpu,
            )?;
            gauge(
                enc,
                "process_resident_memory",
                "Resident memory size.",
                Some(Unit::Bytes),
                [(NONE, p.rss)],
            )?;
        }
        if let Some(fds) = self.open_fds {
            // (the count includes the descriptor that read the folder)
            gauge(
                enc,
                "process_open_fds",
                "Open file descriptors.",
                None,
                [(NONE, fds)],
            )?;
        }
        if let Some(max) = self.max_fds {
            gauge(
                enc,
                "process_max_fds",
                "The most file descriptors the process may open.",
                None,
                [(NONE, max)],
            )?;
        }
        let started = self
            .started
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        gauge(
            enc,
            "process_start_time",
            "When the server started, in seconds since the Unix epoch.",
            Some(Unit::Seconds),
            [(NONE, started)],
        )?;
        Ok(())
    }
}

/// Writes one unlabelled counter with a fractional value.
fn counter_f64(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Unit,
    v: f64,
) -> fmt::Result {
    let m = enc.encode_descriptor(name, help, Some(&unit), MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::app::ServerConfig;

    #[test]
    fn the_format_follows_accept_and_help_texts_need_no_escaping() {
        let app = App::new(Vec::new(), ServerConfig::default());
        let (ct, om) = render(
            &app,
            Some("application/openmetrics-text;version=1.0.0;q=0.6,*/*;q=0.1"),
        );
        assert_eq!(ct, OPENMETRICS);
        assert!(om.ends_with("# EOF\n"));
        assert!(om.contains("# TYPE mjpegd_rejections counter\n"));
        assert!(om.contains("mjpegd_rejections_total{cause=\"max_clients\"} 0\n"));
        let (ct, text) = render(&app, Some("*/*"));
        assert_eq!(ct, PROMETHEUS_TEXT);
        assert!(!text.contains("# EOF"));
        assert!(text.contains("# TYPE mjpegd_rejections_total counter\n"));
        assert_eq!(render(&app, None).0, PROMETHEUS_TEXT);
        // OpenMetrics allows `"` and `\` in a HELP text only escaped, and the encoder writes it as given.
        for line in om.lines().filter(|l| l.starts_with("# HELP")) {
            assert!(!line.contains(['"', '\\']), "{line}");
        }
    }
}
