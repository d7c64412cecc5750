//! The command line: flags, their defaults, and turning them into a running server.

use crate::camera::Camera;
use crate::config::{
    parse_credentials, parse_fps, parse_max_picture, parse_no_signal_after, parse_resolution,
    parse_size, CameraSettings, FileConfig, ServerKeys,
};
use crate::control::sighup::reload_on_sighup;
use crate::control::Control;
use crate::http::app::{App, ServerConfig};
use crate::http::request::Limits;
use crate::logging::LogFormat;
use crate::net::listener::{bind_all, Listener};
use crate::net::{raise_fd_limit, ListenSpec};
use crate::reload::Reloader;
use crate::server::serve;
use crate::service::notify::Notifier;
use crate::service::watchdog;
use crate::source::spec::{SourceOptions, SourceSpec};
use crate::source::supervisor::{Capture, SupervisorConfig};
use crate::source::v4l2::FormatChoice;
use clap::{Parser, Subcommand, ValueEnum};
use mjpegd_core::Policy;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// mjpegd: an MJPEG streaming server for many clients, each with its own delivery policy.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
    /// How log lines are written (on stderr): text, or one JSON object per line for journald and log
    /// stores. MJPEGD_LOG filters them (e.g. `debug`, `mjpegd=debug`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "MJPEGD_LOG_FORMAT", global = true)]
    pub log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List V4L2 cameras with their formats, sizes and frame rates.
    Devices {
        /// Devices to describe (default: every /dev/video*).
        paths: Vec<std::path::PathBuf>,
    },
    /// Load-test any MJPEG stream: N clients, frame rates, gaps, latency, CPU and memory.
    Bench(crate::bench::BenchArgs),
    /// Read a password on standard input and print its bcrypt hash, for an --auth-file line `user:HASH`.
    HashPassword,
    /// Check a config file: print each camera with its URLs, or the errors with file:line:column.
    CheckConfig {
        /// The TOML file (as given to --config).
        file: std::path::PathBuf,
    },
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from these flags.
    #[command(hide = true)]
    Man,
}

/// Flags of the server.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// A TOML file of cameras (`[cameras.NAME]` tables) and server-wide keys, named like these flags.
    /// Its keys override the flags'; the flags give what a camera leaves out.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Where frames come from: `pattern` (built-in test pattern), an upstream MJPEG URL (http://...; a
    /// URL that answers with still JPEGs is polled at --fps, and snapshot+http://... forces that),
    /// `exec:COMMAND` (a child process writing MJPEG to stdout), `-` (MJPEG on stdin), `files:DIR` or a
    /// `.mjpeg` file.
    #[arg(long, default_value = "pattern", conflicts_with = "device")]
    pub source: String,
    /// A V4L2 camera, e.g. /dev/video0.
    #[arg(long)]
    pub device: Option<std::path::PathBuf>,
    /// With --source push, the key pushers present (16 to 256 printable characters; `?key=` or
    /// `Authorization: Bearer`). Without --config only: a config file gives each pushed camera its own.
    // (checked in `ServeArgs::camera`, so that a refused key is not echoed in clap's error)
    #[arg(long, env = "MJPEGD_PUSH_KEY", hide_env_values = true)]
    pub push_key: Option<String>,
    /// With --source push, a newer pusher wins over the one holding the camera (otherwise it gets 409).
    #[arg(long)]
    pub push_takeover: bool,
    /// With --source push, most frames per second taken from a pusher (above 0, up to 1000); frames above
    /// it are dropped and counted.
    #[arg(long, value_parser = parse_push_max_fps)]
    pub push_max_fps: Option<f64>,
    /// Credentials for an upstream, USER:PASSWORD (or put them in the URL): sent as Basic, or as Digest
    /// (RFC 7616) when the upstream asks for it.
    #[arg(long, value_parser = parse_credentials, env = "MJPEGD_SOURCE_AUTH")]
    pub source_auth: Option<(String, String)>,
    /// Time allowed to connect to an upstream.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub connect_timeout: std::time::Duration,
    /// Longest silence from an upstream before mjpegd reconnects.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub read_timeout: std::time::Duration,
    /// Clients are shown a "no signal" frame once the source has sent nothing for this long, even while its
    /// connection stays open (the source is reopened only after --read-timeout / its frame timeout).
    #[arg(long, default_value = "2s", value_parser = parse_no_signal_after)]
    pub no_signal_after: Duration,
    /// Largest picture accepted from a source, WIDTHxHEIGHT: frames that claim more (a relay or a child
    /// can send any header) are dropped and counted in /state.
    #[arg(long, default_value = "8192x8192", value_parser = parse_max_picture)]
    pub max_picture_size: (u32, u32),
    /// Leave out EXIF thumbnails (header segments holding a picture of their own) from the source's frames,
    /// for clients that cut a still from a stream at the first FF D9 (Home Assistant without a still-image
    /// URL). The EXIF fields travelling with the thumbnail go too.
    #[arg(long)]
    pub drop_thumbnails: bool,
    /// Rotate the picture clockwise by 0, 90, 180 or 270 degrees, losslessly at the source (after --flip).
    /// Edge blocks that cannot move are trimmed: the picture may lose up to 15 pixels of width or height.
    #[arg(long, default_value = "0", value_parser = crate::source::orient::Orientation::parse_rotate)]
    pub rotate: u16,
    /// Mirror the picture, horizontal or vertical (before --rotate), losslessly at the source.
    #[arg(long, value_parser = parse_flip)]
    pub flip: Option<crate::source::orient::Flip>,
    /// Record the camera into Matroska segments in this folder (frames as they are, capture-time stamps).
    #[arg(long)]
    pub record: Option<std::path::PathBuf>,
    /// Capture time per recording segment.
    #[arg(long, default_value = "5m", value_parser = crate::config::parse_segment)]
    pub record_segment: Duration,
    /// Delete recording segments that ended longer ago than this (e.g. 7d).
    #[arg(long, value_parser = crate::config::parse_duration)]
    pub record_keep: Option<Duration>,
    /// Keep each camera's recordings within this size (e.g. 20GiB), deleting the oldest segments first.
    #[arg(long, value_parser = parse_size)]
    pub record_max_size: Option<u64>,
    /// Keep this much of the camera's latest frames in memory (e.g. 30s; 1s to 10m, within
    /// --buffer-memory), for event clips' pre-roll and snapshot?at=.
    #[arg(long, value_parser = crate::config::parse_pre_roll)]
    pub pre_roll: Option<Duration>,
    /// Write event clips (POST /cams/NAME/events) into this folder.
    #[arg(long)]
    pub events: Option<std::path::PathBuf>,
    /// A key (16 to 256 characters) that may trigger events and nothing else (needs --events).
    #[arg(long, requires = "events", value_parser = parse_event_key)]
    pub event_key: Option<crate::source::push::PushKey>,
    /// Keep one frame per --timelapse-every into timelapse segments in this folder.
    #[arg(long)]
    pub timelapse: Option<std::path::PathBuf>,
    /// The interval of --timelapse (100ms to 24h).
    #[arg(long, default_value = "10s", value_parser = crate::config::parse_every)]
    pub timelapse_every: Duration,
    /// Pixel format to ask a V4L2 camera for (auto prefers MJPEG, which needs no encoding).
    #[arg(long, value_enum, default_value_t = FormatChoice::Auto)]
    pub format: FormatChoice,
    /// JPEG encoder threads for cameras that deliver raw YUYV or NV12 (default: cores, at most 4).
    #[arg(long, default_value_t = default_encoders())]
    pub encoders: usize,
    /// Where to listen; repeat it for several listeners. ADDRESS:PORT (127.0.0.1 keeps it on this machine,
    /// 0.0.0.0 exposes it; HTTPS when --tls-cert is set), http://ADDRESS:PORT (always plain),
    /// https://ADDRESS:PORT (always TLS), unix:/PATH[?mode=0660] (a unix socket for a proxy on this host),
    /// systemd or systemd:NAME (sockets passed by systemd socket activation). Default: the sockets systemd
    /// passed, if any, else 127.0.0.1:8080.
    #[arg(long, env = "MJPEGD_LISTEN", value_name = "LISTENER")]
    pub listen: Vec<ListenSpec>,
    /// Picture size of the source, WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x720", value_parser = parse_resolution)]
    pub resolution: (u32, u32),
    /// Frames per second of the source.
    #[arg(long, default_value_t = 30.0, value_parser = parse_fps)]
    pub fps: f64,
    /// JPEG quality of frames mjpegd encodes itself, 1-100.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,
    /// Delivery policy of stream requests that do not choose one with ?delivery=.
    #[arg(long, value_enum, default_value_t = DeliveryArg::Latest)]
    pub delivery: DeliveryArg,
    /// Most stream clients at once; more get a 503. Default: 10000, or an eighth fewer than the open-file
    /// limit leaves for connections (see --max-connections), so /state and snapshots still get through.
    #[arg(long)]
    pub max_clients: Option<usize>,
    /// Memory for frames kept for `all` clients (e.g. 256MiB); the client furthest behind is evicted when
    /// it would be exceeded.
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    pub buffer_memory: u64,
    /// A lockstep client that needs longer than this to be sent one frame is disconnected.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub lockstep_timeout: Duration,
    /// A latest or all client that takes longer than this to be sent one frame is disconnected.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub write_timeout: Duration,
    /// When the source runs: always, or only while someone watches (on-demand).
    #[arg(long, value_enum, default_value_t = CaptureArg::OnDemand)]
    pub capture: CaptureArg,
    /// With --capture on-demand: how long the source stays open after the last client leaves.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub linger: Duration,
    /// SO_SNDBUF of every stream connection (e.g. 256KiB). Unset: 128KiB for `all` streams (so the kernel
    /// holds at most 256 KiB per client beyond --buffer-memory), the kernel's autotuning for latest and
    /// lockstep, which never queue more than about one frame.
    #[arg(long, value_parser = parse_size)]
    pub send_buffer: Option<u64>,
    /// Send Access-Control-Allow-Origin with this value (e.g. '*').
    #[arg(long)]
    pub allow_origin: Option<String>,
    /// Most size/quality variants (`?width=`, `?height=`, `?quality=`) transcoded at once per camera; a
    /// stream asking for one more gets a 503.
    #[arg(long, default_value_t = 4, value_parser = crate::config::parse_max_variants)]
    pub max_variants: usize,
    /// Longest a snapshot waits for its frame (the first frame, a `max_delay` frame, warm-up) before a 503.
    #[arg(long, default_value = "2s", value_parser = crate::config::parse_snapshot_timeout)]
    pub snapshot_timeout: Duration,
    /// Frames a snapshot lets go by after starting an idle on-demand camera (auto-exposure settling).
    #[arg(long, default_value_t = 0, value_parser = crate::config::parse_warmup_frames)]
    pub warmup_frames: u32,
    /// Time a client has to send a whole request head once it started.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub head_timeout: Duration,
    #[command(flatten)]
    pub security: crate::security::SecurityArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum DeliveryArg {
    Latest,
    All,
    Lockstep,
}

impl From<DeliveryArg> for Policy {
    fn from(d: DeliveryArg) -> Policy {
        match d {
            DeliveryArg::Latest => Policy::Latest,
            DeliveryArg::All => Policy::All,
            DeliveryArg::Lockstep => Policy::Lockstep,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureArg {
    Always,
    OnDemand,
}

/// `--flip`: horizontal or vertical (leaving it out is no flip).
fn parse_flip(s: &str) -> Result<crate::source::orient::Flip, String> {
    crate::source::orient::Orientation::parse_flip(s)?.ok_or_else(|| {
        "flip: expected horizontal or vertical (leave --flip out for none)".to_string()
    })
}

fn default_encoders() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4)
}

impl ServeArgs {
    /// The listeners to bind: those given, else the sockets systemd passed, else 127.0.0.1:8080.
    pub fn listeners(&self) -> anyhow::Result<Vec<ListenSpec>> {
        Ok(if !self.listen.is_empty() {
            self.listen.clone()
        } else if crate::net::activation::offered()? {
            vec![ListenSpec::systemd()]
        } else {
            vec![ListenSpec::default_tcp()]
        })
    }

    /// The HTTP side's settings.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            max_clients: self
                .max_clients
                .unwrap_or(crate::security::DEFAULT_MAX_CLIENTS),
            write_timeout: self.write_timeout,
            snapshot_timeout: self.snapshot_timeout,
            send_buffer: self.send_buffer.map(|b| b as usize),
            allow_origin: self.allow_origin.clone(),
            limits: Limits {
                head_timeout: self.head_timeout,
                ..Limits::default()
            },
            ..ServerConfig::default()
        }
    }

    /// The camera the flags describe (the only one without --config; the defaults of every camera with it).
    pub fn camera(&self) -> anyhow::Result<CameraSettings> {
        let mut source = match &self.device {
            Some(device) => SourceSpec::Device(device.clone()),
            None => SourceSpec::parse(&self.source)?,
        };
        anyhow::ensure!(
            self.push_key.is_none() || self.config.is_none(),
            "--push-key (or MJPEGD_PUSH_KEY) is for a single camera without --config: a config file gives each pushed camera its push-key"
        );
        let pushed_flags =
            self.push_key.is_some() || self.push_takeover || self.push_max_fps.is_some();
        match &mut source {
            SourceSpec::Push(key) => {
                *key = match &self.push_key {
                    Some(k) => Some(
                        crate::source::push::PushKey::new(k)
                            .map_err(|e| anyhow::anyhow!("--push-key (or MJPEGD_PUSH_KEY): {e}"))?,
                    ),
                    None => None,
                }
            }
            _ => anyhow::ensure!(
                !pushed_flags || self.config.is_some(),
                "--push-key, --push-takeover and --push-max-fps are for --source push"
            ),
        }
        anyhow::ensure!(
            !matches!(source, SourceSpec::Push(None)) || self.config.is_some(),
            "--source push needs --push-key (or MJPEGD_PUSH_KEY), or a camera in a config file with its push-key"
        );
        Ok(CameraSettings {
            name: "default".to_string(),
            source,
            options: SourceOptions {
                resolution: self.resolution,
                fps: self.fps,
                quality: self.quality,
                format: self.format,
                encoders: self.encoders,
                credentials: self.source_auth.clone(),
                connect_timeout: self.connect_timeout,
                read_timeout: self.read_timeout,
                control_url: None,
                push: crate::source::push::PushPolicy {
                    takeover: self.push_takeover,
                    max_fps: self.push_max_fps,
                },
            },
            supervisor: SupervisorConfig {
                capture: match self.capture {
                    CaptureArg::Always => Capture::Always,
                    CaptureArg::OnDemand => Capture::OnDemand {
                        linger: self.linger,
                    },
                },
                placeholder_size: self.resolution,
                no_signal_after: self.no_signal_after,
                max_picture: self.max_picture_size,
                drop_thumbnails: self.drop_thumbnails,
                orientation: crate::source::orient::Orientation {
                    rotate: self.rotate,
                    flip: self.flip,
                },
                ..SupervisorConfig::default()
            },
            buffer_memory: usize::try_from(self.buffer_memory).unwrap_or(usize::MAX),
            delivery: self.delivery.into(),
            lockstep_timeout: self.lockstep_timeout,
            record: self
                .record
                .as_ref()
                .map(|dir| crate::record::RecordSettings {
                    dir: dir.clone(),
                    segment: self.record_segment,
                    keep: self.record_keep,
                    max_size: self.record_max_size,
                }),
            pre_roll: self.pre_roll,
            events: self
                .events
                .as_ref()
                .map(|dir| crate::events::EventSettings {
                    dir: dir.clone(),
                    key: self.event_key.clone(),
                    keep: self.record_keep,
                    max_size: self.record_max_size,
                }),
            timelapse: self
                .timelapse
                .as_ref()
                .map(|dir| crate::timelapse::TimelapseSettings {
                    dir: dir.clone(),
                    every: self.timelapse_every,
                    keep: self.record_keep,
                    max_size: self.record_max_size,
                }),
            max_variants: self.max_variants,
            warmup_frames: self.warmup_frames,
            controls: Default::default(),
        })
    }

    /// Folds a file's server-wide keys into the flags (the file's win).
    fn apply_file(&mut self, file: &FileConfig) {
        let k = &file.server;
        if let Some(v) = &k.listen {
            self.listen = v.clone();
        }
        if k.max_clients.is_some() {
            self.max_clients = k.max_clients;
        }
        if let Some(v) = k.head_timeout {
            self.head_timeout = v;
        }
        if let Some(v) = k.write_timeout {
            self.write_timeout = v;
        }
        if let Some(v) = k.snapshot_timeout {
            self.snapshot_timeout = v;
        }
        if k.send_buffer.is_some() {
            self.send_buffer = k.send_buffer;
        }
        if k.allow_origin.is_some() {
            self.allow_origin = k.allow_origin.clone();
        }
        let sec = &mut self.security;
        if k.max_connections.is_some() {
            sec.max_connections = k.max_connections;
        }
        if k.max_connections_per_address.is_some() {
            sec.max_connections_per_address = k.max_connections_per_address;
        }
        if k.auth.is_some() {
            sec.auth = k.auth.clone();
        }
        if k.auth_file.is_some() {
            sec.auth_file = k.auth_file.clone();
        }
        sec.access_keys.extend(k.access_keys.iter().cloned());
        if k.tls_cert.is_some() {
            sec.tls_cert = k.tls_cert.clone();
        }
        if k.tls_key.is_some() {
            sec.tls_key = k.tls_key.clone();
        }
        if let Some(list) = &k.trusted_proxies {
            sec.trusted_proxies = list.clone();
        }
        sec.admins.extend(k.admins.iter().cloned());
    }

    /// The cameras to run (the one the flags describe, or the file's), with the file's server keys
    /// folded into these flags.
    pub fn cameras(&mut self) -> anyhow::Result<(Vec<CameraSettings>, ServerKeys)> {
        let base = self.camera()?;
        let Some(path) = self.config.clone() else {
            return Ok((vec![base], ServerKeys::default()));
        };
        let file = crate::config::load(&path, &base)?;
        self.apply_file(&file);
        Ok((file.cameras, file.server))
    }
}

/// `mjpegd check-config FILE`: each camera with its URLs, or the error.
pub fn check_config(args: &ServeArgs, path: &std::path::Path) -> anyhow::Result<()> {
    let base = args.camera()?;
    let file = crate::config::load(path, &base)?;
    let mut out = String::new();
    for (n, c) in file.cameras.iter().enumerate() {
        let name = &c.name;
        let crowsnest = if n == 0 {
            "/webcam/".to_string()
        } else {
            format!("/webcam{}/", n + 1)
        };
        out.push_str(&format!(
            "{name}: {}\n  /cams/{name}/stream  /cams/{name}/snapshot  /cams/{name}/state  /cams/{name}/\n  /?action=stream_{n}  /?action=snapshot_{n}  {crowsnest}?action=stream  {crowsnest}?action=snapshot\n",
            c.source
        ));
        if n == 0 {
            out.push_str(
                "  and /stream /snapshot /mjpeg/1 /jpg /?action=stream /?action=snapshot\n",
            );
        }
        if matches!(c.source, crate::source::spec::SourceSpec::Device(_)) {
            let kept: Vec<String> = c
                .controls
                .iter()
                .map(|(k, v)| format!("{k} = {}", v.to_json()))
                .collect();
            out.push_str(&format!("  /cams/{name}/controls"));
            if !kept.is_empty() {
                out.push_str(&format!(" (set at every open: {})", kept.join(", ")));
            }
            out.push('\n');
        }
    }
    if let Some(listen) = file.server.listen {
        let list: Vec<String> = listen.iter().map(|l| l.to_string()).collect();
        out.push_str(&format!("listening on {}\n", list.join(" ")));
    }
    print!("{out}");
    Ok(())
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run_server(mut args: ServeArgs) -> anyhow::Result<()> {
    // What systemd says is checked before anything starts: a bad value is an error now, not a service
    // that never reports ready.
    let notifier = Arc::new(Notifier::from_env()?);
    let watchdog_interval = watchdog::interval_from_env()?;
    let fd_limit = raise_fd_limit();
    let flags = args.clone();
    let base = flags.camera()?;
    let (cameras, started_with) = args.cameras()?;
    let specs = args.listeners()?;
    let have_certificate = args.security.tls_cert.is_some();
    if let Some(spec) = specs.iter().find(|s| s.is_tls(false)) {
        if !have_certificate {
            anyhow::bail!("--listen {spec} serves HTTPS: it needs --tls-cert and --tls-key");
        }
    }
    if have_certificate && !specs.iter().any(|s| s.is_tls(true)) {
        tracing::warn!("--tls-cert is set but every listener is plain http:// or a unix socket");
    }
    let listeners = bind_all(&specs, have_certificate)?;
    let mut config = args.server_config();
    args.security
        .apply(&mut config, args.max_clients, fd_limit)?;
    let shutdown = CancellationToken::new();
    let cameras = cameras
        .into_iter()
        .map(|c| Camera::start(c, &shutdown))
        .collect::<Vec<_>>();
    let spec = match cameras.as_slice() {
        [one] => one.settings().source.to_string(),
        many => format!("{} cameras", many.len()),
    };
    let tls = config.tls.clone();
    let app = App::new(cameras.clone(), config);
    // The file as read at start: what an API write is compared with (a hand edit since is not clobbered).
    let text = match &args.config {
        Some(path) => Some(
            crate::config::read_bounded(path, crate::config::MAX_FILE)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        ),
        None => None,
    };
    let control = Arc::new(Control::new(
        Reloader {
            path: args.config.clone(),
            base,
            security: flags.security.clone(),
            started_with,
        },
        text,
        shutdown.clone(),
    ));
    reload_on_sighup(
        control.clone(),
        tls,
        app.clone(),
        notifier.clone(),
        shutdown.clone(),
    )?;
    // SIGTERM and SIGINT are caught from before the banner: a stop sent as soon as the server says it is
    // up still shuts it down in order (the unix socket file removed), not by the default action.
    let stop = stop_signals()?;
    // One write, errors ignored: a server must not die because whoever started it closed its stdout.
    let banner = banner(&spec, &listeners, &cameras, &app);
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    }
    let status = format!(
        "serving {spec} on {}",
        listeners
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut probers = Vec::new();
    let listeners: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            let (prober, probe) = watchdog::accept_probe(l.to_string());
            probers.push(prober);
            (l, probe)
        })
        .collect();
    let app_cameras = app.clone();
    let server = tokio::spawn(serve(
        listeners,
        app.clone(),
        control.clone(),
        shutdown.clone(),
    ));
    // Every listener is bound (connections queue from now on) and every camera started.
    notifier.ready(&status);
    if let Some(interval) = watchdog_interval {
        if notifier.is_enabled() {
            tracing::info!(
                ?interval,
                "systemd watchdog: pinging every half interval while live"
            );
            let liveness = watchdog::Liveness {
                accept_loops: probers,
                app,
            };
            watchdog::spawn(notifier.clone(), interval, liveness, shutdown.clone());
        } else {
            tracing::warn!("WATCHDOG_USEC is set without NOTIFY_SOCKET: no watchdog pings");
        }
    }
    stop.await;
    tracing::info!("shutting down");
    notifier.stopping();
    shutdown.cancel();
    let _ = server.await;
    for camera in app_cameras.cameras().iter() {
        camera.stop().await;
    }
    crate::source::child::wait_for_endings().await;
    Ok(())
}

/// The startup banner: the URLs of the first TCP listener (or the first listener), every listener, the
/// cameras and who may connect. With `--log-format json` it is one JSON line with the same facts as fields
/// (`page`, `stream`, `listen`, `cameras`, ...), so every line a JSON-logging server writes is JSON.
fn banner(spec: &str, listeners: &[Listener], cameras: &[Arc<Camera>], app: &App) -> String {
    let main = listeners
        .iter()
        .find(|l| matches!(l.local, crate::net::listener::Local::Tcp(_)))
        .unwrap_or(&listeners[0]);
    let url = match &main.local {
        crate::net::listener::Local::Tcp(_) => main.url(),
        crate::net::listener::Local::Unix(_) => "http://localhost".to_string(),
    };
    let all: Vec<String> = listeners.iter().map(|l| l.to_string()).collect();
    let access = crate::security::announce(listeners, &app.config);
    let title = format!("mjpegd {} serving {spec}", env!("CARGO_PKG_VERSION"));
    if crate::logging::format() == crate::logging::LogFormat::Json {
        let cams: Vec<serde_json::Value> = cameras
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name(),
                    "page": format!("{url}/cams/{}/", c.name()),
                    "source": c.settings().source.to_string(),
                })
            })
            .collect();
        let fields = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "page": format!("{url}/"),
            "stream": format!("{url}/stream"),
            "snapshot": format!("{url}/snapshot"),
            "state": format!("{url}/state"),
            "listen": all,
            "cameras": cams,
            "access": access,
        });
        let serde_json::Value::Object(fields) = fields else {
            unreachable!("a JSON object")
        };
        return crate::logging::json_line("INFO", "mjpegd::banner", &title, fields);
    }
    let cams: String = cameras
        .iter()
        .map(|c| {
            format!(
                "  camera:   {url}/cams/{}/  ({})\n",
                c.name(),
                c.settings().source
            )
        })
        .collect();
    format!(
        "{title}\n  page:     {url}/\n  stream:   {url}/stream   (?delivery=latest|all|lockstep, ?fps=N, ?width=W, ?height=H, ?quality=Q)\n  snapshot: {url}/snapshot (?width=W, ?height=H, ?quality=Q, ?max_delay=MS)\n  state:    {url}/state\n  aliases:  /mjpeg/1 /jpg /?action=stream /?action=snapshot\n  listen:   {}\n{cams}  access:   {access}\n",
        all.join("  "),
    )
}

/// Catches SIGTERM and SIGINT from now on; the future ends at the first of them.
fn stop_signals() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// `--push-max-fps`: as the key `push-max-fps`, above 0 and at most 1000.
fn parse_push_max_fps(s: &str) -> Result<f64, String> {
    let max = crate::source::push::MAX_FPS;
    match s.parse::<f64>() {
        Ok(fps) if fps > 0.0 && fps <= max => Ok(fps),
        _ => Err(format!("more than 0 and at most {max} frames per second")),
    }
}

/// `--event-key`: as a push key, 16 to 256 printable characters.
fn parse_event_key(s: &str) -> Result<crate::source::push::PushKey, String> {
    crate::source::push::PushKey::new(s).map_err(|e| e.replace("push-key", "event-key"))
}
