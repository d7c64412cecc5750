//! One typed configuration for the whole server, whether it comes from flags or from a file.
//!
//! The command line ([`crate::cli`]) describes one camera; `--config FILE` (TOML) describes several, with
//! server-wide keys at the top and one `[cameras.NAME]` table per camera, whose keys are the long names of
//! the flags. Either way the rest of the server sees only [`CameraSettings`] (and the server keys the CLI
//! folds into its settings): nothing in the pipeline reads flags. A camera's keys override the values the
//! command line gives (or their defaults), so `mjpegd --config cams.toml --fps 15` sets every camera's rate
//! unless its table says otherwise.
//!
//! A file is refused whole, with `file:line:column` and what was expected, for any unknown key, wrong type,
//! bad value (a relay URL is parsed whole), duplicate camera, bad camera name, or two cameras on one device
//! (however it is named: device numbers or resolved paths are compared): nothing half-applies. Only a
//! regular file of at most 1 MiB is read; a FIFO or a device is refused before a byte is read.

use crate::net::forwarded::{TrustedProxies, TrustedProxy};
use crate::net::ListenSpec;
use crate::record::RecordSettings;
use crate::source::controls::values::{valid_key, MAX_LABEL};
use crate::source::controls::{Setting, MAX_KEYS};
use crate::source::orient::Orientation;
use crate::source::spec::{SourceOptions, SourceSpec};
use crate::source::supervisor::{Capture, SupervisorConfig};
use crate::source::v4l2::FormatChoice;
use indexmap::IndexMap;
use mjpegd_core::Policy;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Largest config file read.
pub const MAX_FILE: u64 = 1 << 20;
/// Most cameras in one file.
pub const MAX_CAMERAS: usize = 64;

/// Everything one camera needs: its source, how it is supervised, and its hub's delivery settings.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraSettings {
    /// The name in its URLs (`/cams/NAME/...`).
    pub name: String,
    pub source: SourceSpec,
    pub options: SourceOptions,
    pub supervisor: SupervisorConfig,
    /// Memory for frames kept for this camera's `all` clients.
    pub buffer_memory: usize,
    /// Policy of a stream request that does not name one.
    pub delivery: Policy,
    pub lockstep_timeout: Duration,
    /// Where to record this camera, if anywhere.
    pub record: Option<RecordSettings>,
    /// Capture time of frames kept in memory (`pre-roll`), within `buffer_memory`.
    pub pre_roll: Option<Duration>,
    /// Event clips (`events`, `event-key`).
    pub events: Option<crate::events::EventSettings>,
    /// A timelapse (`timelapse`, `timelapse-every`).
    pub timelapse: Option<crate::timelapse::TimelapseSettings>,
    /// Most size/quality variants transcoded at once.
    pub max_variants: usize,
    /// Frames a snapshot lets go by after it started an idle on-demand source (auto-exposure settling).
    pub warmup_frames: u32,
    /// A V4L2 camera's `[cameras.NAME.controls]`: applied every time the device is opened.
    pub controls: IndexMap<String, Setting>,
}

/// Server-wide keys of a file, each `None` when the file does not set it.
#[derive(Clone, Debug, Default)]
pub struct ServerKeys {
    /// Every listener (`listen = "ADDRESS:PORT"` or a list of them; see [`ListenSpec`]).
    pub listen: Option<Vec<ListenSpec>>,
    pub max_clients: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_connections_per_address: Option<usize>,
    pub head_timeout: Option<Duration>,
    pub write_timeout: Option<Duration>,
    pub snapshot_timeout: Option<Duration>,
    pub send_buffer: Option<u64>,
    pub allow_origin: Option<String>,
    pub auth: Option<String>,
    pub auth_file: Option<PathBuf>,
    pub access_keys: Vec<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `trusted-proxies = ["127.0.0.1", "unix", "10.0.0.0/8"]`.
    pub trusted_proxies: Option<Vec<TrustedProxy>>,
    /// `admins = ["alice"]`: the users who may change things.
    pub admins: Vec<String>,
}

/// A parsed config file.
#[derive(Clone, Debug)]
pub struct FileConfig {
    pub server: ServerKeys,
    /// In the file's order.
    pub cameras: Vec<CameraSettings>,
}

/// Why a file was refused, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileKeys {
    listen: Option<Spanned<OneOrMany>>,
    max_clients: Option<usize>,
    max_connections: Option<usize>,
    max_connections_per_address: Option<usize>,
    head_timeout: Option<Spanned<String>>,
    write_timeout: Option<Spanned<String>>,
    snapshot_timeout: Option<Spanned<String>>,
    send_buffer: Option<Spanned<String>>,
    allow_origin: Option<String>,
    auth: Option<String>,
    auth_file: Option<PathBuf>,
    #[serde(default)]
    access_key: Vec<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    trusted_proxies: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    admins: Vec<String>,
    #[serde(default)]
    cameras: IndexMap<Spanned<String>, Spanned<CameraKeys>>,
}

/// A key that takes one string or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct CameraKeys {
    source: Option<Spanned<String>>,
    device: Option<Spanned<PathBuf>>,
    source_auth: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    encoders: Option<Spanned<usize>>,
    resolution: Option<Spanned<String>>,
    fps: Option<Spanned<f64>>,
    quality: Option<Spanned<i64>>,
    delivery: Option<Spanned<String>>,
    buffer_memory: Option<Spanned<String>>,
    lockstep_timeout: Option<Spanned<String>>,
    capture: Option<Spanned<String>>,
    linger: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    control_url: Option<Spanned<String>>,
    push_key: Option<Spanned<String>>,
    push_takeover: Option<Spanned<bool>>,
    push_max_fps: Option<Spanned<f64>>,
    read_timeout: Option<Spanned<String>>,
    no_signal_after: Option<Spanned<String>>,
    max_picture_size: Option<Spanned<String>>,
    drop_thumbnails: Option<Spanned<bool>>,
    rotate: Option<Spanned<i64>>,
    flip: Option<Spanned<String>>,
    record: Option<Spanned<PathBuf>>,
    record_segment: Option<Spanned<String>>,
    record_keep: Option<Spanned<String>>,
    record_max_size: Option<Spanned<String>>,
    pre_roll: Option<Spanned<String>>,
    events: Option<Spanned<PathBuf>>,
    event_key: Option<Spanned<String>>,
    timelapse: Option<Spanned<PathBuf>>,
    timelapse_every: Option<Spanned<String>>,
    max_variants: Option<Spanned<i64>>,
    warmup_frames: Option<Spanned<i64>>,
    controls: Option<Spanned<IndexMap<String, Spanned<toml::Value>>>>,
}

/// Line and column (from 1) of byte `at` in `text`.
fn position(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Reads and checks a config file; `base` gives every camera key the file leaves out. Blocks (it reads a
/// file): call it off the async runtime.
pub fn load(path: &Path, base: &CameraSettings) -> Result<FileConfig, ConfigError> {
    let whole = |message: String| ConfigError {
        path: path.to_path_buf(),
        line: 1,
        column: 1,
        message,
    };
    let text = read_bounded(path, MAX_FILE).map_err(whole)?;
    parse(&text, path, base)
}

/// The text of the regular file at `path`, if it holds at most `max` bytes of UTF-8. Anything else (a
/// FIFO, a device such as /dev/zero, a folder, a socket) is refused at once: the file is opened without
/// blocking and checked on its descriptor before a byte is read, and the read itself stops after `max`
/// bytes whatever the file claims.
pub fn read_bounded(path: &Path, max: u64) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        // A FIFO without a writer would block the open itself.
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    let kind = file
        .metadata()
        .map_err(|e| format!("cannot read: {e}"))?
        .file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a folder"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "something else"
        };
        return Err(format!("not a regular file ({what})"));
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!("larger than {max} bytes"));
    }
    String::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))
}

/// Parses config `text` (read from `path`, for messages).
pub fn parse(text: &str, path: &Path, base: &CameraSettings) -> Result<FileConfig, ConfigError> {
    let at = |span: std::ops::Range<usize>, message: String| {
        let (line, column) = position(text, span.start);
        ConfigError {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    };
    let keys: FileKeys = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        at(span, e.message().trim_end().to_string())
    })?;
    // A key's value parsed with one of the flag parsers, its error placed at the value.
    fn value<T>(
        v: &Option<Spanned<String>>,
        parse: impl Fn(&str) -> Result<T, String>,
        at: &impl Fn(std::ops::Range<usize>, String) -> ConfigError,
    ) -> Result<Option<T>, ConfigError> {
        match v {
            None => Ok(None),
            Some(s) => parse(s.get_ref()).map(Some).map_err(|e| at(s.span(), e)),
        }
    }
    let server = ServerKeys {
        listen: match &keys.listen {
            None => None,
            Some(v) => {
                let list = match v.get_ref() {
                    OneOrMany::One(s) => std::slice::from_ref(s),
                    OneOrMany::Many(list) => list.as_slice(),
                };
                if list.is_empty() {
                    return Err(at(v.span(), "listen: the list is empty".into()));
                }
                let specs = list
                    .iter()
                    .map(|s| s.parse::<ListenSpec>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| at(v.span(), format!("listen: {e}")))?;
                Some(specs)
            }
        },
        max_clients: keys.max_clients,
        max_connections: keys.max_connections,
        max_connections_per_address: keys.max_connections_per_address,
        head_timeout: value(&keys.head_timeout, parse_duration, &at)?,
        write_timeout: value(&keys.write_timeout, parse_duration, &at)?,
        snapshot_timeout: value(&keys.snapshot_timeout, parse_snapshot_timeout, &at)?,
        send_buffer: value(&keys.send_buffer, parse_size, &at)?,
        allow_origin: keys.allow_origin,
        auth: keys.auth,
        auth_file: keys.auth_file,
        access_keys: keys.access_key,
        tls_cert: keys.tls_cert,
        tls_key: keys.tls_key,
        trusted_proxies: match &keys.trusted_proxies {
            None => None,
            Some(list) => {
                let entries = list
                    .get_ref()
                    .iter()
                    .map(|s| s.parse::<TrustedProxy>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| at(list.span(), format!("trusted-proxies: {e}")))?;
                TrustedProxies::new(&entries).map_err(|e| at(list.span(), e))?;
                Some(entries)
            }
        },
        admins: keys.admins,
    };
    if keys.cameras.is_empty() {
        return Err(at(
            0..0,
            "no cameras: add at least one [cameras.NAME] table".into(),
        ));
    }
    if keys.cameras.len() > MAX_CAMERAS {
        return Err(at(
            0..0,
            format!("{} cameras: at most {MAX_CAMERAS}", keys.cameras.len()),
        ));
    }
    let mut cameras: Vec<CameraSettings> = Vec::with_capacity(keys.cameras.len());
    for (name, table) in &keys.cameras {
        check_name(name.get_ref()).map_err(|e| at(name.span(), e))?;
        let k = table.get_ref();
        let mut c = base.clone();
        c.name = name.get_ref().clone();
        match (&k.source, &k.device) {
            (Some(_), Some(d)) => {
                return Err(at(d.span(), "set source or device, not both".into()))
            }
            (Some(s), None) => {
                c.source =
                    SourceSpec::parse(s.get_ref()).map_err(|e| at(s.span(), e.to_string()))?
            }
            (None, Some(d)) => c.source = SourceSpec::Device(d.get_ref().clone()),
            (None, None) => {}
        }
        if let Some(v) = value(&k.source_auth, parse_credentials, &at)? {
            c.options.credentials = Some(v);
        }
        if let Some(f) = value(
            &k.format,
            |s| {
                <FormatChoice as clap::ValueEnum>::from_str(s, true)
                    .map_err(|_| format!("format: expected auto, mjpeg, yuyv or nv12, not {s:?}"))
            },
            &at,
        )? {
            c.options.format = f;
        }
        if let Some(n) = &k.encoders {
            if !(1..=16).contains(n.get_ref()) {
                return Err(at(n.span(), "encoders: expected 1 to 16".into()));
            }
            c.options.encoders = *n.get_ref();
        }
        if let Some(r) = value(&k.resolution, parse_resolution, &at)? {
            c.options.resolution = r;
            c.supervisor.placeholder_size = r;
        }
        if let Some(f) = &k.fps {
            c.options.fps = parse_fps(&f.get_ref().to_string()).map_err(|e| at(f.span(), e))?;
        }
        if let Some(q) = &k.quality {
            if !(1..=100).contains(q.get_ref()) {
                return Err(at(q.span(), "quality: expected 1 to 100".into()));
            }
            c.options.quality = *q.get_ref() as u8;
        }
        if let Some(n) = &k.max_variants {
            c.max_variants =
                parse_max_variants(&n.get_ref().to_string()).map_err(|e| at(n.span(), e))?;
        }
        if let Some(n) = &k.warmup_frames {
            c.warmup_frames =
                parse_warmup_frames(&n.get_ref().to_string()).map_err(|e| at(n.span(), e))?;
        }
        if let Some(p) = value(&k.delivery, |s| s.parse::<Policy>(), &at)? {
            c.delivery = p;
        }
        if let Some(b) = value(&k.buffer_memory, parse_size, &at)? {
            c.buffer_memory = usize::try_from(b).unwrap_or(usize::MAX);
        }
        if let Some(d) = value(&k.lockstep_timeout, parse_duration, &at)? {
            c.lockstep_timeout = d;
        }
        let linger = value(&k.linger, parse_duration, &at)?;
        if let Some(capture) = value(
            &k.capture,
            |s| match s {
                "always" => Ok(Capture::Always),
                "on-demand" => Ok(Capture::OnDemand {
                    linger: Duration::from_secs(5),
                }),
                _ => Err(format!("capture: expected always or on-demand, not {s:?}")),
            },
            &at,
        )? {
            c.supervisor.capture = capture;
        }
        if let (Some(l), Capture::OnDemand { linger }) = (linger, &mut c.supervisor.capture) {
            *linger = l;
        }
        if let Some(d) = value(&k.connect_timeout, parse_duration, &at)? {
            c.options.connect_timeout = d;
        }
        if let Some(d) = value(&k.read_timeout, parse_duration, &at)? {
            c.options.read_timeout = d;
        }
        if let Some(u) = &k.control_url {
            if !matches!(c.source, SourceSpec::Relay(_)) {
                return Err(at(
                    u.span(),
                    "control-url: only for a relayed camera (an ESP32-CAM's settings address, e.g. \"http://192.168.1.50/\")".into(),
                ));
            }
            let url = crate::source::url::RelayUrl::parse(u.get_ref())
                .map_err(|e| at(u.span(), format!("control-url: {e}")))?;
            if url.snapshot {
                return Err(at(
                    u.span(),
                    "control-url: a plain http:// address (snapshot+ is for a source)".into(),
                ));
            }
            c.options.control_url = Some(url);
        }
        match (&mut c.source, &k.push_key) {
            (SourceSpec::Push(key), Some(k)) => {
                *key = Some(
                    crate::source::push::PushKey::new(k.get_ref()).map_err(|e| at(k.span(), e))?,
                );
            }
            (SourceSpec::Push(_), None) => {
                return Err(at(
                    name.span(),
                    "a pushed camera (source = \"push\") needs push-key = \"...\" (at least 16 characters)".into(),
                ))
            }
            (_, Some(k)) => {
                return Err(at(
                    k.span(),
                    "push-key: only for a pushed camera (source = \"push\")".into(),
                ))
            }
            (_, None) => {}
        }
        for (span, key) in [
            (k.push_takeover.as_ref().map(|v| v.span()), "push-takeover"),
            (k.push_max_fps.as_ref().map(|v| v.span()), "push-max-fps"),
        ] {
            if let (Some(span), false) = (span, matches!(c.source, SourceSpec::Push(_))) {
                return Err(at(
                    span,
                    format!("{key}: only for a pushed camera (source = \"push\")"),
                ));
            }
        }
        if let Some(t) = &k.push_takeover {
            c.options.push.takeover = *t.get_ref();
        }
        if let Some(f) = &k.push_max_fps {
            let fps = *f.get_ref();
            if !(fps > 0.0 && fps <= crate::source::push::MAX_FPS) {
                return Err(at(
                    f.span(),
                    format!(
                        "push-max-fps: more than 0 and at most {} frames per second",
                        crate::source::push::MAX_FPS
                    ),
                ));
            }
            c.options.push.max_fps = Some(fps);
        }
        if let Some(d) = value(&k.no_signal_after, parse_no_signal_after, &at)? {
            c.supervisor.no_signal_after = d;
        }
        if let Some(m) = value(&k.max_picture_size, parse_max_picture, &at)? {
            c.supervisor.max_picture = m;
        }
        if let Some(d) = &k.drop_thumbnails {
            c.supervisor.drop_thumbnails = *d.get_ref();
        }
        if let Some(r) = &k.rotate {
            c.supervisor.orientation.rotate =
                Orientation::parse_rotate(&r.get_ref().to_string()).map_err(|e| at(r.span(), e))?;
        }
        if let Some(f) = value(&k.flip, Orientation::parse_flip, &at)? {
            c.supervisor.orientation.flip = f;
        }
        if let Some(dir) = &k.record {
            let (segment, keep, max_size) = c
                .record
                .as_ref()
                .map_or((DEFAULT_SEGMENT, None, None), |r| {
                    (r.segment, r.keep, r.max_size)
                });
            c.record = Some(RecordSettings {
                dir: dir.get_ref().clone(),
                segment,
                keep,
                max_size,
            });
        }
        if let Some(d) = value(&k.pre_roll, parse_pre_roll, &at)? {
            c.pre_roll = Some(d);
        }
        if let Some(dir) = &k.events {
            let old = c.events.take();
            c.events = Some(crate::events::EventSettings {
                dir: dir.get_ref().clone(),
                key: old.as_ref().and_then(|e| e.key.clone()),
                keep: old.as_ref().and_then(|e| e.keep),
                max_size: old.as_ref().and_then(|e| e.max_size),
            });
        }
        if let Some(key) = &k.event_key {
            let checked = crate::source::push::PushKey::new(key.get_ref())
                .map_err(|e| at(key.span(), e.replace("push-key", "event-key")))?;
            match &mut c.events {
                Some(e) => e.key = Some(checked),
                None => return Err(at(key.span(), "event-key without events = \"DIR\"".into())),
            }
        }
        if let Some(dir) = &k.timelapse {
            let old = c.timelapse.take();
            c.timelapse = Some(crate::timelapse::TimelapseSettings {
                dir: dir.get_ref().clone(),
                every: old
                    .as_ref()
                    .map_or(crate::timelapse::DEFAULT_EVERY, |t| t.every),
                keep: old.as_ref().and_then(|t| t.keep),
                max_size: old.as_ref().and_then(|t| t.max_size),
            });
        }
        if let Some(d) = value(&k.timelapse_every, parse_every, &at)? {
            match &mut c.timelapse {
                Some(t) => t.every = d,
                None => {
                    return Err(at(
                        k.timelapse_every.as_ref().map(|s| s.span()).unwrap_or(0..0),
                        "timelapse-every without timelapse = \"DIR\"".into(),
                    ))
                }
            }
        }
        let keep = value(&k.record_keep, parse_duration, &at)?;
        let max_size = value(&k.record_max_size, parse_size, &at)?;
        if keep.is_some() || max_size.is_some() {
            // The same retention for each folder the camera writes.
            if let Some(e) = &mut c.events {
                e.keep = keep.or(e.keep);
                e.max_size = max_size.or(e.max_size);
            }
            if let Some(t) = &mut c.timelapse {
                t.keep = keep.or(t.keep);
                t.max_size = max_size.or(t.max_size);
            }
            match &mut c.record {
                Some(r) => {
                    r.keep = keep.or(r.keep);
                    r.max_size = max_size.or(r.max_size);
                }
                None if c.events.is_some() || c.timelapse.is_some() => {}
                None => {
                    let span = k
                        .record_keep
                        .as_ref()
                        .or(k.record_max_size.as_ref())
                        .map(|s| s.span())
                        .unwrap_or(0..0);
                    return Err(at(
                        span,
                        "record-keep and record-max-size need record, events or timelapse = \"DIR\"".into(),
                    ));
                }
            }
        }
        if let Some(d) = value(&k.record_segment, parse_segment, &at)? {
            match &mut c.record {
                Some(r) => r.segment = d,
                None => {
                    return Err(at(
                        k.record_segment.as_ref().map(|s| s.span()).unwrap_or(0..0),
                        "record-segment without record = \"DIR\"".into(),
                    ))
                }
            }
        }
        if let Some(table) = &k.controls {
            if !matches!(c.source, SourceSpec::Device(_)) {
                return Err(at(
                    table.span(),
                    "controls: only a V4L2 camera (device = \"/dev/videoN\") has controls".into(),
                ));
            }
            c.controls = parse_controls(table.get_ref()).map_err(|(span, e)| {
                at(
                    span.unwrap_or_else(|| table.span()),
                    format!("controls: {e}"),
                )
            })?;
        }
        if let SourceSpec::Device(path) = &c.source {
            let id = DeviceId::of(path);
            if let Some(other) = cameras
                .iter()
                .find(|o| matches!(&o.source, SourceSpec::Device(p) if DeviceId::of(p) == id))
            {
                let span = k.device.as_ref().map(|d| d.span()).unwrap_or(table.span());
                return Err(at(
                    span,
                    format!(
                        "camera {:?} uses {}, which camera {:?} already uses (as {}): a device has one reader",
                        c.name,
                        path.display(),
                        other.name,
                        match &other.source {
                            SourceSpec::Device(p) => p.display().to_string(),
                            _ => String::new(),
                        }
                    ),
                ));
            }
        }
        cameras.push(c);
    }
    Ok(FileConfig { server, cameras })
}

/// What makes two device paths the same device: its device number when the path names a device node
/// (through any symlink: `/dev/v4l/by-id/...`), else the path with symlinks and `..` resolved (or, for a
/// path that does not exist now, with `.` and `..` resolved by name).
#[derive(Debug, PartialEq, Eq)]
enum DeviceId {
    Number(u64),
    Path(PathBuf),
}

impl DeviceId {
    fn of(path: &Path) -> DeviceId {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.file_type().is_char_device() || meta.file_type().is_block_device() {
                return DeviceId::Number(meta.rdev());
            }
        }
        if let Ok(real) = std::fs::canonicalize(path) {
            return DeviceId::Path(real);
        }
        let mut clean = PathBuf::new();
        for part in path.components() {
            match part {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir => {
                    clean.pop();
                }
                other => clean.push(other),
            }
        }
        DeviceId::Path(clean)
    }
}

/// A camera name goes in URLs: 1 to 64 of ASCII letters, digits, `-` and `_`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "camera name {name:?}: expected 1 to 64 letters, digits, '-' or '_' (it is part of URLs)"
        ));
    }
    Ok(())
}

/// `USER:PASSWORD`.
pub fn parse_credentials(s: &str) -> Result<(String, String), String> {
    // They go into an Authorization header, whose line the upstream must accept.
    if s.len() > MAX_CREDENTIALS {
        return Err(format!(
            "expected USER:PASSWORD of at most {MAX_CREDENTIALS} bytes"
        ));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err("expected USER:PASSWORD without control characters".to_string());
    }
    s.split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string()))
        .ok_or_else(|| "expected USER:PASSWORD".to_string())
}

/// Longest `source-auth` (`--source-auth`) accepted.
pub const MAX_CREDENTIALS: usize = 1024;

/// `WIDTHxHEIGHT` of a picture, 16 to 8192 each.
pub fn parse_resolution(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected WIDTHxHEIGHT, like 1280x720, not {s:?}"))?;
    let w: u32 = w
        .trim()
        .parse()
        .map_err(|_| format!("bad width in {s:?}"))?;
    let h: u32 = h
        .trim()
        .parse()
        .map_err(|_| format!("bad height in {s:?}"))?;
    if !(16..=8192).contains(&w) || !(16..=8192).contains(&h) {
        return Err(format!("{s}: width and height must be between 16 and 8192"));
    }
    Ok((w, h))
}

/// Frames per second, above 0 and up to 240.
pub fn parse_fps(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 && f <= 240.0 => Ok(f),
        _ => Err(format!(
            "fps must be a number above 0 and up to 240, not {s:?}"
        )),
    }
}

/// Variants per camera: 0 (none) to 64.
pub fn parse_max_variants(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n <= 64 => Ok(n),
        _ => Err(format!("max-variants: expected 0 to 64, not {s:?}")),
    }
}

/// Warm-up frames of a snapshot: 0 to 300.
pub fn parse_warmup_frames(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n <= 300 => Ok(n),
        _ => Err(format!("warmup-frames: expected 0 to 300, not {s:?}")),
    }
}

/// How long a snapshot waits for its frame: 100 ms to 60 s.
pub fn parse_snapshot_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(60) {
        return Err(format!("{s}: a snapshot timeout is between 100ms and 60s"));
    }
    Ok(d)
}

/// A size in bytes, e.g. `256MiB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{s:?}: {e}"))
}

/// A duration, e.g. `2s` or `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?}: {e} (expected a duration like 2s or 500ms)"))
}

/// `timelapse-every`: 100 ms to 24 h.
pub fn parse_every(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(86_400) {
        return Err(format!("{s}: timelapse-every is between 100ms and 24h"));
    }
    Ok(d)
}

/// Default length of a recording segment.
pub const DEFAULT_SEGMENT: Duration = Duration::from_secs(300);

/// A recording segment's length: 1 s to 24 h.
pub fn parse_segment(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
        return Err(format!("{s}: a segment is between 1s and 24h"));
    }
    Ok(d)
}

/// The longest `pre-roll`.
pub const MAX_PRE_ROLL: Duration = Duration::from_secs(600);

/// A pre-roll: 1 s to 10 min.
pub fn parse_pre_roll(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(1) || d > MAX_PRE_ROLL {
        return Err(format!("{s}: a pre-roll is between 1s and 10m"));
    }
    Ok(d)
}

/// The no-signal delay: 100 ms to 1 h.
pub fn parse_no_signal_after(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
        return Err(format!("{s}: must be between 100ms and 1h"));
    }
    Ok(d)
}

/// The largest picture accepted from a source: 16 to 65535 each way.
pub fn parse_max_picture(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected WIDTHxHEIGHT, like 8192x8192, not {s:?}"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (16..=65535).contains(n))
    };
    match (parse(w), parse(h)) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err(format!(
            "{s}: width and height must be between 16 and 65535"
        )),
    }
}

type Span = std::ops::Range<usize>;

/// A `[cameras.NAME.controls]` table: at most [`MAX_KEYS`] keys as v4l2-ctl names them, each a whole
/// number, true/false or a menu label. Whether the camera has them and takes those values is only known
/// once it is open (a value it refuses is logged then).
fn parse_controls(
    table: &IndexMap<String, Spanned<toml::Value>>,
) -> Result<IndexMap<String, Setting>, (Option<Span>, String)> {
    if table.len() > MAX_KEYS {
        return Err((None, format!("{} keys: at most {MAX_KEYS}", table.len())));
    }
    let mut out = IndexMap::with_capacity(table.len());
    for (key, value) in table {
        let span = Some(value.span());
        if !valid_key(key) {
            return Err((
                span,
                format!("{key:?}: a control key is v4l2-ctl's name (a-z, 0-9 and _, e.g. focus_absolute)"),
            ));
        }
        let setting = match value.get_ref() {
            toml::Value::Integer(n) if i32::try_from(*n).is_ok() => Setting::Int(*n),
            toml::Value::Boolean(b) => Setting::Bool(*b),
            toml::Value::String(l) if !l.is_empty() && l.len() <= MAX_LABEL => {
                Setting::Label(l.clone())
            }
            _ => {
                return Err((
                    span,
                    format!("{key}: expected a whole number (32-bit), true/false or a menu label of at most {MAX_LABEL} bytes"),
                ))
            }
        };
        out.insert(key.clone(), setting);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> CameraSettings {
        CameraSettings {
            name: "default".into(),
            source: SourceSpec::Pattern,
            options: SourceOptions::default(),
            supervisor: SupervisorConfig::default(),
            buffer_memory: 256 << 20,
            delivery: Policy::Latest,
            lockstep_timeout: Duration::from_secs(2),
            record: None,
            pre_roll: None,
            events: None,
            timelapse: None,
            max_variants: 4,
            warmup_frames: 0,
            controls: IndexMap::new(),
        }
    }

    fn err(text: &str) -> String {
        parse(text, Path::new("cams.toml"), &base())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_v4l2_cameras_controls_table_is_checked_and_kept_in_order() {
        let c = parse(
            "[cameras.a]\ndevice = \"/dev/video7\"\n[cameras.a.controls]\nfocus_automatic_continuous = false\nfocus_absolute = 30\nauto_exposure = \"Manual Mode\"\n",
            Path::new("cams.toml"),
            &base(),
        )
        .unwrap();
        let controls: Vec<_> = c.cameras[0].controls.iter().collect();
        assert_eq!(
            controls,
            [
                (
                    &"focus_automatic_continuous".to_string(),
                    &Setting::Bool(false)
                ),
                (&"focus_absolute".to_string(), &Setting::Int(30)),
                (
                    &"auto_exposure".to_string(),
                    &Setting::Label("Manual Mode".into())
                ),
            ]
        );
        for (text, wanted) in [
            ("[cameras.a]\nsource = \"pattern\"\n[cameras.a.controls]\nbrightness = 1\n", "only a V4L2 camera"),
            ("[cameras.a]\ndevice = \"/dev/video7\"\n[cameras.a.controls]\nBrightness = 1\n", "v4l2-ctl's name"),
            ("[cameras.a]\ndevice = \"/dev/video7\"\n[cameras.a.controls]\nbrightness = 1.5\n", "whole number"),
            ("[cameras.a]\ndevice = \"/dev/video7\"\n[cameras.a.controls]\nbrightness = 9999999999\n", "whole number"),
            ("[cameras.a]\ndevice = \"/dev/video7\"\n[cameras.a.controls]\nbrightness = [1]\n", "whole number"),
        ] {
            let e = err(text);
            assert!(e.contains(wanted) && e.contains("cams.toml:"), "{text}: {e}");
        }
    }

    #[test]
    fn cameras_keep_the_files_order_and_inherit_what_they_leave_out() {
        let text = r#"
listen = "0.0.0.0:8080"
access-key = ["0123456789abcdef"]

[cameras.zeta]
source = "http://192.168.1.50:81/stream"
read-timeout = "3s"

[cameras.alpha]
device = "/dev/video0"
resolution = "640x480"
fps = 15
quality = 60
delivery = "all"
capture = "always"

[cameras.mid]
"#;
        let c = parse(text, Path::new("cams.toml"), &base()).unwrap();
        assert_eq!(c.server.listen, Some(vec!["0.0.0.0:8080".parse().unwrap()]));
        assert_eq!(c.server.access_keys.len(), 1);
        let names: Vec<&str> = c.cameras.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha", "mid"]);
        assert_eq!(c.cameras[0].options.read_timeout, Duration::from_secs(3));
        assert!(matches!(c.cameras[0].source, SourceSpec::Relay(_)));
        let a = &c.cameras[1];
        assert_eq!(a.source, SourceSpec::Device("/dev/video0".into()));
        assert_eq!(
            (a.options.resolution, a.options.fps, a.options.quality),
            ((640, 480), 15.0, 60)
        );
        assert_eq!(a.supervisor.placeholder_size, (640, 480));
        assert_eq!(a.delivery, Policy::All);
        assert_eq!(a.supervisor.capture, Capture::Always);
        assert_eq!(c.cameras[2].source, SourceSpec::Pattern);
        assert_eq!(c.cameras[2].options.fps, base().options.fps);
    }

    #[test]
    fn a_pushed_camera_needs_a_bounded_key_that_is_never_shown() {
        let ok = "[cameras.door]\nsource = \"push\"\npush-key = \"0123456789abcdef-secret\"\n";
        let c = parse(ok, Path::new("cams.toml"), &base()).unwrap();
        assert!(matches!(c.cameras[0].source, SourceSpec::Push(Some(_))));
        assert!(!format!("{:?} {}", c.cameras[0], c.cameras[0].source).contains("secret"));
        assert!(err("[cameras.door]\nsource = \"push\"\n").contains("needs push-key"));
        let short = err("[cameras.door]\nsource = \"push\"\npush-key = \"short-secret\"\n");
        assert!(
            short.contains("16 to 256") && !short.contains("short-secret"),
            "{short}"
        );
        assert!(
            err("[cameras.a]\nsource = \"pattern\"\npush-key = \"0123456789abcdef\"\n")
                .contains("only for a pushed camera")
        );
        // What pushers may: takeover and a frame-rate cap, only on a pushed camera, the cap bounded.
        assert_eq!(c.cameras[0].options.push, Default::default());
        let more = format!("{ok}push-takeover = true\npush-max-fps = 12.5\n");
        let c = parse(&more, Path::new("cams.toml"), &base()).unwrap();
        let policy = c.cameras[0].options.push;
        assert!(policy.takeover);
        assert_eq!(policy.max_fps, Some(12.5));
        for bad in ["0", "-1.0", "1e9"] {
            let e = err(&format!("{ok}push-max-fps = {bad}\n"));
            assert!(e.contains("push-max-fps: more than 0"), "{bad}: {e}");
        }
        assert!(
            err("[cameras.a]\nsource = \"pattern\"\npush-takeover = true\n")
                .contains("push-takeover: only for a pushed camera")
        );
        assert!(err("[cameras.a]\nsource = \"pattern\"\npush-max-fps = 5\n")
            .contains("push-max-fps: only for a pushed camera"));
    }

    #[test]
    fn mistakes_are_refused_with_line_and_column() {
        let cases = [
            (
                "[cameras.a]\nsorce = \"pattern\"\n",
                "cams.toml:2:1:",
                "unknown field `sorce`",
            ),
            (
                "[cameras.a]\nfps = \"fast\"\n",
                "cams.toml:2:7:",
                "invalid type",
            ),
            ("[cameras.a]\nfps = 0\n", "cams.toml:2:7:", "fps must be"),
            ("[cameras.a]\n[cameras.a]\n", "cams.toml:2:", "duplicate"),
            ("[cameras.\"a b\"]\n", "cams.toml:1:", "camera name"),
            (
                "[cameras.a]\ndevice = \"/dev/video0\"\n[cameras.b]\ndevice = \"/dev/video0\"\n",
                "cams.toml:4:10:",
                "already uses",
            ),
            (
                "[cameras.a]\nresolution = \"big\"\n",
                "cams.toml:2:14:",
                "WIDTHxHEIGHT",
            ),
            (
                "[cameras.a]\nsource = \"bogus\"\n",
                "cams.toml:2:10:",
                "unknown source",
            ),
            ("[cameras.a]\nquality = 101\n", "cams.toml:2:11:", "quality"),
            (
                "listen = \"nowhere\"\n[cameras.a]\n",
                "cams.toml:1:10:",
                "ADDRESS:PORT",
            ),
            ("listen = \"0.0.0.0:1\"\n", "cams.toml:1:1:", "no cameras"),
            (
                "listen = [\"127.0.0.1:1\", \"unix:rel.sock\"]\n[cameras.a]\n",
                "cams.toml:1:10:",
                "absolute path",
            ),
            ("listen = []\n[cameras.a]\n", "cams.toml:1:10:", "empty"),
            (
                "[cameras.a]\ncapture = \"sometimes\"\n",
                "cams.toml:2:11:",
                "always or on-demand",
            ),
        ];
        for (text, at, what) in cases {
            let e = err(text);
            assert!(e.starts_with(at) && e.contains(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn variant_and_snapshot_keys() {
        let text = "snapshot-timeout = \"500ms\"\n[cameras.a]\nmax-variants = 2\nwarmup-frames = 5\n[cameras.b]\n";
        let c = parse(text, Path::new("cams.toml"), &base()).unwrap();
        assert_eq!(c.server.snapshot_timeout, Some(Duration::from_millis(500)));
        assert_eq!(
            (c.cameras[0].max_variants, c.cameras[0].warmup_frames),
            (2, 5)
        );
        assert_eq!(
            (c.cameras[1].max_variants, c.cameras[1].warmup_frames),
            (4, 0)
        );
        for (text, at, what) in [
            (
                "[cameras.a]\nmax-variants = 65\n",
                "cams.toml:2:16:",
                "0 to 64",
            ),
            (
                "[cameras.a]\nmax-variants = -1\n",
                "cams.toml:2:16:",
                "0 to 64",
            ),
            (
                "[cameras.a]\nwarmup-frames = 1000\n",
                "cams.toml:2:17:",
                "0 to 300",
            ),
            (
                "[cameras.a]\nwarmup-frames = \"x\"\n",
                "cams.toml:2:17:",
                "invalid type",
            ),
            (
                "snapshot-timeout = \"1h\"\n[cameras.a]\n",
                "cams.toml:1:20:",
                "between 100ms and 60s",
            ),
        ] {
            let e = err(text);
            assert!(e.starts_with(at) && e.contains(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn listen_takes_one_address_or_a_list() {
        let text = "listen = [\"http://127.0.0.1:8080\", \"https://0.0.0.0:8443\", \"unix:/run/mjpegd/mjpegd.sock?mode=0660\", \"systemd\"]\n[cameras.a]\n";
        let c = parse(text, Path::new("cams.toml"), &base()).unwrap();
        let listen: Vec<String> = c
            .server
            .listen
            .unwrap()
            .iter()
            .map(|l| l.to_string())
            .collect();
        assert_eq!(
            listen,
            [
                "http://127.0.0.1:8080",
                "https://0.0.0.0:8443",
                "unix:/run/mjpegd/mjpegd.sock?mode=0660",
                "systemd"
            ]
        );
    }

    #[test]
    fn a_control_url_is_for_relayed_cameras_and_checked() {
        let c = parse(
            "[cameras.door]\nsource = \"http://cam:81/stream\"\ncontrol-url = \"http://cam/\"\n",
            Path::new("cams.toml"),
            &base(),
        )
        .unwrap();
        assert_eq!(
            c.cameras[0].options.control_url.as_ref().map(|u| u.port),
            Some(80)
        );
        let e = err("[cameras.a]\nsource = \"pattern\"\ncontrol-url = \"http://cam/\"\n");
        assert!(
            e.contains("cams.toml:3:15:") && e.contains("relayed"),
            "{e}"
        );
        let e = err("[cameras.a]\nsource = \"http://cam:81/stream\"\ncontrol-url = \"http://\"\n");
        assert!(e.contains("control-url"), "{e}");
        let e = err("[cameras.a]\nsource = \"snapshot+http://cam/capture\"\ncontrol-url = \"snapshot+http://cam/\"\n");
        assert!(e.contains("control-url: a plain http://"), "{e}");
    }

    #[test]
    fn source_credentials_are_bounded() {
        assert!(parse_credentials("user:pass").is_ok());
        assert!(parse_credentials(&format!("u:{}", "p".repeat(2000))).is_err());
        assert!(parse_credentials("u:p\r\nX-Evil: 1").is_err());
        assert!(parse_credentials("nocolon").is_err());
    }

    #[test]
    fn trusted_proxies_parse_and_bad_entries_are_placed() {
        let c = parse(
            "trusted-proxies = [\"127.0.0.1\", \"unix\", \"10.0.0.0/8\"]\n[cameras.a]\n",
            Path::new("cams.toml"),
            &base(),
        )
        .unwrap();
        assert_eq!(c.server.trusted_proxies.as_ref().map(|v| v.len()), Some(3));
        let e = err("trusted-proxies = [\"10.0.0.0/99\"]\n[cameras.a]\n");
        assert!(
            e.contains("cams.toml:1:19:") && e.contains("10.0.0.0/99"),
            "{e}"
        );
    }

    #[test]
    fn rotate_and_flip_per_camera_and_bad_values_are_placed() {
        use crate::source::orient::Flip;
        let text = "[cameras.a]\nrotate = 90\nflip = \"horizontal\"\n[cameras.b]\nrotate = 0\nflip = \"none\"\n";
        let c = parse(text, Path::new("cams.toml"), &base()).unwrap();
        let o = c.cameras[0].supervisor.orientation;
        assert_eq!((o.rotate, o.flip), (90, Some(Flip::Horizontal)));
        assert!(c.cameras[1].supervisor.orientation.is_identity());
        let e = err("[cameras.a]\nrotate = 45\n");
        assert!(
            e.contains("cams.toml:2:10:") && e.contains("0, 90, 180 or 270"),
            "{e}"
        );
        let e = err("[cameras.a]\nflip = \"diagonal\"\n");
        assert!(
            e.contains("cams.toml:2:8:") && e.contains("horizontal, vertical or none"),
            "{e}"
        );
        assert!(err("[cameras.a]\nrotate = \"90\"\n").contains("cams.toml:2:"));
    }

    #[test]
    fn pre_roll_events_and_timelapse_keys() {
        assert!(parse_every("50ms").is_err() && parse_every("25h").is_err());
        assert_eq!(parse_every("200ms").unwrap(), Duration::from_millis(200));
        let text = "[cameras.a]\npre-roll = \"30s\"\nevents = \"/e\"\nevent-key = \"0123456789abcdef-ev\"\ntimelapse = \"/t\"\ntimelapse-every = \"200ms\"\nrecord-keep = \"7d\"\nrecord-max-size = \"1GiB\"\n[cameras.b]\n";
        let c = parse(text, Path::new("cams.toml"), &base()).unwrap();
        let a = &c.cameras[0];
        assert_eq!(a.pre_roll, Some(Duration::from_secs(30)));
        let e = a.events.as_ref().unwrap();
        assert_eq!(e.dir, PathBuf::from("/e"));
        assert!(e.key.as_ref().unwrap().matches("0123456789abcdef-ev"));
        // The retention keys apply to each folder, without continuous recording.
        assert_eq!(
            (e.keep, e.max_size),
            (Some(Duration::from_secs(7 * 86_400)), Some(1 << 30))
        );
        let t = a.timelapse.as_ref().unwrap();
        assert_eq!(
            (t.dir.as_path(), t.every),
            (Path::new("/t"), Duration::from_millis(200))
        );
        assert_eq!(t.keep, Some(Duration::from_secs(7 * 86_400)));
        assert!(a.record.is_none());
        let b = &c.cameras[1];
        assert!(b.pre_roll.is_none() && b.events.is_none() && b.timelapse.is_none());
        for (bad, why) in [
            ("pre-roll = \"0s\"", "between 1s and 10m"),
            ("pre-roll = \"11m\"", "between 1s and 10m"),
            (
                "event-key = \"0123456789abcdef\"",
                "event-key without events",
            ),
            (
                "events = \"/e\"\nevent-key = \"short\"",
                "event-key: 16 to 256",
            ),
            (
                "timelapse-every = \"1s\"",
                "timelapse-every without timelapse",
            ),
            (
                "timelapse = \"/t\"\ntimelapse-every = \"10ms\"",
                "between 100ms and 24h",
            ),
            ("record-keep = \"1d\"", "need record, events or timelapse"),
        ] {
            let e = err(&format!("[cameras.a]\n{bad}\n"));
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn recording_keys_per_camera() {
        let text = "[cameras.a]\nrecord = \"/var/lib/mjpegd\"\nrecord-segment = \"10m\"\nrecord-keep = \"7d\"\nrecord-max-size = \"20GiB\"\n[cameras.b]\n";
        let c = parse(text, Path::new("cams.toml"), &base()).unwrap();
        let r = c.cameras[0].record.as_ref().unwrap();
        assert_eq!(r.dir, PathBuf::from("/var/lib/mjpegd"));
        assert_eq!(r.segment, Duration::from_secs(600));
        assert_eq!(r.keep, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(r.max_size, Some(20 << 30));
        assert!(c.cameras[1].record.is_none());
        assert!(err("[cameras.a]\nrecord-segment = \"1m\"\n").contains("cams.toml:2:18:"));
        assert!(
            err("[cameras.a]\nrecord = \"/x\"\nrecord-segment = \"0s\"\n")
                .contains("between 1s and 24h")
        );
    }

    #[test]
    fn one_device_under_two_names_is_refused() {
        let dir = std::env::temp_dir().join(format!("mjpegd-dev-names-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("video9");
        std::fs::write(&target, b"").unwrap();
        let link = dir.join("by-id-cam");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let twice = |a: &str, b: &str| {
            err(&format!(
                "[cameras.a]\ndevice = \"{a}\"\n[cameras.b]\ndevice = \"{b}\"\n"
            ))
        };
        let e = twice(target.to_str().unwrap(), link.to_str().unwrap());
        assert!(
            e.starts_with("cams.toml:4:10:") && e.contains("already uses"),
            "{e}"
        );
        let dotted = format!(
            "{}/../{}/video9",
            dir.display(),
            dir.file_name().unwrap().to_str().unwrap()
        );
        assert!(twice(target.to_str().unwrap(), &dotted).contains("already uses"));
        // Paths that do not exist (now) are compared with `.` and `..` resolved.
        assert!(twice("/dev/video77", "/dev/../dev/./video77").contains("already uses"));
        // Real device nodes by number: /dev/null and a symlink to it.
        let null = dir.join("null-link");
        std::os::unix::fs::symlink("/dev/null", &null).unwrap();
        assert!(twice("/dev/null", null.to_str().unwrap()).contains("already uses"));
        assert!(parse(
            "[cameras.a]\ndevice = \"/dev/video77\"\n[cameras.b]\ndevice = \"/dev/video78\"\n",
            Path::new("cams.toml"),
            &base()
        )
        .is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_a_small_regular_file_is_read() {
        let dir = std::env::temp_dir().join(format!("mjpegd-conf-kinds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let big = dir.join("big");
        std::fs::write(&big, vec![b'#'; 101]).unwrap();
        let ok = dir.join("ok");
        std::fs::write(&ok, "x").unwrap();
        assert!(read_bounded(&fifo, 100).unwrap_err().contains("FIFO"));
        assert!(read_bounded(Path::new("/dev/zero"), 100)
            .unwrap_err()
            .contains("a device"));
        assert!(read_bounded(&dir, 100).unwrap_err().contains("a folder"));
        assert!(read_bounded(&big, 100)
            .unwrap_err()
            .contains("larger than 100"));
        assert_eq!(read_bounded(&ok, 100).unwrap(), "x");
        let e = load(&fifo, &base()).unwrap_err().to_string();
        assert!(e.contains("fifo:1:1: not a regular file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_relay_url_is_checked_at_its_value_and_never_shown_with_credentials() {
        for (url, what) in [
            ("http://", "no host"),
            ("http://admin:S3cret@host:99999/", "bad port"),
            ("http://cam/a b", "path"),
        ] {
            let e = err(&format!("[cameras.a]\n[cameras.b]\nsource = \"{url}\"\n"));
            assert!(e.starts_with("cams.toml:3:10:") && e.contains(what), "{e}");
            assert!(!e.contains("S3cret"), "{e}");
        }
    }

    #[test]
    fn the_example_file_in_the_repo_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cameras.example.toml");
        let c = load(&path, &base()).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.cameras.len() >= 3);
    }
}
