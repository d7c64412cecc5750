//! V4L2 cameras: USB webcams, the Raspberry Pi camera through its V4L2 driver, capture cards.
//!
//! Capture runs on a thread of its own (V4L2 is a blocking API): it opens the device, negotiates format,
//! size and rate, and reports what the driver actually granted, never what was asked. MJPEG cameras' frames
//! pass through untouched (one copy out of the driver's buffer, no decode); YUYV and NV12 frames go to the
//! [`EncoderPool`]. A device that errors (unplugged: ENODEV, EIO) ends the capture with an error, and the
//! supervisor takes it from there: "no signal" for the clients, reopen with back-off. Each open tells the
//! camera's [`super::controls`] worker, which applies the wanted control values off this thread.

use super::encode::{Encoded, EncoderPool, RawFormat, Reorder};
use super::{Captured, Source, SourceError, SourceInfo};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};
use v4l::buffer::Type;
use v4l::io::traits::CaptureStream;
use v4l::prelude::*;
use v4l::video::Capture;
use v4l::FourCC;

/// Which pixel format to ask the camera for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatChoice {
    /// MJPEG if the camera offers it (no encoding needed), else YUYV, else NV12.
    Auto,
    Mjpeg,
    Yuyv,
    Nv12,
}

/// How to open a camera.
#[derive(Clone, Debug)]
pub struct V4l2Options {
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub format: FormatChoice,
    /// Encoder threads for raw formats.
    pub encoders: usize,
    pub quality: u8,
    /// The camera's controls, told each time the device is opened (they apply what is wanted).
    pub controls: Option<Arc<super::controls::Controls>>,
}

const MJPG: FourCC = FourCC { repr: *b"MJPG" };
const JPEG: FourCC = FourCC { repr: *b"JPEG" };
const YUYV: FourCC = FourCC { repr: *b"YUYV" };
const NV12: FourCC = FourCC { repr: *b"NV12" };

/// What the capture thread sends.
enum Event {
    Jpeg(Captured),
    Raw(u64, Encoded),
    Failed(SourceError),
}

/// A V4L2 camera source.
pub struct V4l2Camera {
    options: V4l2Options,
    running: Option<Running>,
}

struct Running {
    events: mpsc::Receiver<Event>,
    stop: Arc<AtomicBool>,
    reorder: Reorder,
    ready: std::collections::VecDeque<Encoded>,
}

impl V4l2Camera {
    pub fn new(options: V4l2Options) -> V4l2Camera {
        V4l2Camera {
            options,
            running: None,
        }
    }
}

impl Source for V4l2Camera {
    fn describe(&self) -> String {
        format!("V4L2 camera {}", self.options.path.display())
    }

    async fn open(&mut self) -> Result<SourceInfo, SourceError> {
        self.close();
        let (events_tx, events) = mpsc::channel(4);
        let (granted_tx, granted) = oneshot::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let options = self.options.clone();
        let thread_stop = stop.clone();
        std::thread::Builder::new()
            .name("v4l2-capture".into())
            .spawn(move || capture_thread(options, granted_tx, events_tx, thread_stop))
            .map_err(SourceError::from)?;
        let info = granted
            .await
            .map_err(|_| SourceError::unavailable("capture thread ended before negotiating"))??;
        self.running = Some(Running {
            events,
            stop,
            reorder: Reorder::default(),
            ready: Default::default(),
        });
        Ok(info)
    }

    async fn next_frame(&mut self) -> Result<Captured, SourceError> {
        let running = self
            .running
            .as_mut()
            .ok_or_else(|| SourceError::broken("not open"))?;
        loop {
            if let Some((at, jpeg)) = running.ready.pop_front() {
                match jpeg {
                    Ok(jpeg) => return Ok(Captured { jpeg, at }),
                    // An empty JPEG is dropped and counted by the supervisor like any broken frame.
                    Err(e) => {
                        tracing::debug!(error = %e, "raw frame not encoded");
                        return Ok(Captured {
                            jpeg: bytes::Bytes::new(),
                            at,
                        });
                    }
                }
            }
            match running.events.recv().await {
                Some(Event::Jpeg(c)) => return Ok(c),
                Some(Event::Raw(seq, frame)) => {
                    running.ready.extend(running.reorder.push(seq, frame))
                }
                Some(Event::Failed(e)) => return Err(e),
                None => return Err(SourceError::lost("capture thread ended")),
            }
        }
    }

    fn close(&mut self) {
        if let Some(r) = self.running.take() {
            // The thread notices within its poll timeout, stops streaming and closes the device.
            r.stop.store(true, Ordering::Relaxed);
        }
    }
}

impl Drop for V4l2Camera {
    fn drop(&mut self) {
        self.close();
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> SourceError {
    SourceError::unavailable(format!("{}: {what}: {e}", path.display()))
}

/// Opens and negotiates; returns the device, the granted format and the granted fps.
fn negotiate(options: &V4l2Options) -> Result<(Device, v4l::Format, f64), SourceError> {
    let path = &options.path;
    let dev = Device::with_path(path).map_err(|e| io_err("open", path, e))?;
    let offered: Vec<FourCC> = dev
        .enum_formats()
        .map_err(|e| io_err("list formats", path, e))?
        .into_iter()
        .map(|d| d.fourcc)
        .collect();
    let wanted: &[FourCC] = match options.format {
        FormatChoice::Auto => &[MJPG, JPEG, YUYV, NV12],
        FormatChoice::Mjpeg => &[MJPG, JPEG],
        FormatChoice::Yuyv => &[YUYV],
        FormatChoice::Nv12 => &[NV12],
    };
    let fourcc = wanted
        .iter()
        .copied()
        .find(|f| offered.contains(f))
        .ok_or_else(|| {
            let offered: Vec<String> = offered.iter().map(|f| f.to_string()).collect();
            SourceError::unavailable(format!(
                "{}: no {:?} format; the camera offers {}",
                path.display(),
                options.format,
                offered.join(", ")
            ))
        })?;
    let mut fmt = dev.format().map_err(|e| io_err("get format", path, e))?;
    fmt.width = options.width;
    fmt.height = options.height;
    fmt.fourcc = fourcc;
    let granted = dev
        .set_format(&fmt)
        .map_err(|e| io_err("set format", path, e))?;
    if granted.fourcc != fourcc {
        return Err(SourceError::unavailable(format!(
            "{}: asked for {fourcc}, the driver chose {}",
            path.display(),
            granted.fourcc
        )));
    }
    let fps = options.fps.round().max(1.0) as u32;
    let params = dev
        .set_params(&v4l::video::capture::Parameters::with_fps(fps))
        .map_err(|e| io_err("set frame rate", path, e))?;
    let granted_fps = if params.interval.numerator > 0 {
        params.interval.denominator as f64 / params.interval.numerator as f64
    } else {
        options.fps
    };
    if (granted.width, granted.height) != (options.width, options.height) {
        tracing::warn!(asked = %format!("{}x{}", options.width, options.height), granted = %format!("{}x{}", granted.width, granted.height), "the camera does not offer the asked size");
    }
    if (granted_fps - options.fps).abs() > 0.5 {
        tracing::warn!(
            asked = options.fps,
            granted = granted_fps,
            "the camera does not offer the asked frame rate"
        );
    }
    Ok((dev, granted, granted_fps))
}

fn capture_thread(
    options: V4l2Options,
    granted_tx: oneshot::Sender<Result<SourceInfo, SourceError>>,
    events: mpsc::Sender<Event>,
    stop: Arc<AtomicBool>,
) {
    let (dev, fmt, fps) = match negotiate(&options) {
        Ok(n) => n,
        Err(e) => {
            let _ = granted_tx.send(Err(e));
            return;
        }
    };
    let raw = match fmt.fourcc {
        f if f == YUYV => Some(RawFormat::Yuyv),
        f if f == NV12 => Some(RawFormat::Nv12),
        _ => None,
    };
    let path = options.path.clone();
    let mut stream = match MmapStream::with_buffers(&dev, Type::VideoCapture, 4) {
        Ok(s) => s,
        Err(e) => {
            let _ = granted_tx.send(Err(io_err("map buffers", &path, e)));
            return;
        }
    };
    stream.set_timeout(Duration::from_millis(500));
    let mut pool = match raw {
        Some(format) => {
            let (tx, mut rx) = mpsc::channel::<(u64, Encoded)>(8);
            let pool = match EncoderPool::start(
                options.encoders,
                format,
                fmt.width,
                fmt.height,
                options.quality,
                tx,
            ) {
                Ok(p) => p,
                Err(e) => {
                    let _ = granted_tx.send(Err(SourceError::unavailable(e)));
                    return;
                }
            };
            // Forward encoded frames into the event channel.
            let events = events.clone();
            std::thread::spawn(move || {
                while let Some((seq, frame)) = rx.blocking_recv() {
                    if events.blocking_send(Event::Raw(seq, frame)).is_err() {
                        break;
                    }
                }
            });
            Some(pool)
        }
        None => None,
    };
    let info = SourceInfo {
        width: fmt.width,
        height: fmt.height,
        fps,
        encoder: if raw.is_some() {
            crate::hub::Encoder::Cpu
        } else {
            crate::hub::Encoder::None
        },
    };
    tracing::info!(device = %path.display(), format = %fmt.fourcc, width = fmt.width, height = fmt.height, fps, "camera negotiated");
    if granted_tx.send(Ok(info)).is_err() {
        return;
    }
    // The controls worker applies the file's and the HTTP-written values on a descriptor of its
    // own: a slow control transfer never holds up this thread.
    if let Some(controls) = &options.controls {
        controls.opened();
    }
    let clock = MonotonicToWall::new();
    while !stop.load(Ordering::Relaxed) {
        let (buf, meta) = match CaptureStream::next(&mut stream) {
            Ok(frame) => frame,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(e) => {
                let _ = events.blocking_send(Event::Failed(io_err("capture", &path, e)));
                return;
            }
        };
        let used = (meta.bytesused as usize).min(buf.len());
        let at = clock.convert(meta.timestamp.sec, meta.timestamp.usec);
        let sent = match &mut pool {
            None => events
                .blocking_send(Event::Jpeg(Captured {
                    jpeg: bytes::Bytes::copy_from_slice(&buf[..used]),
                    at,
                }))
                .is_ok(),
            Some(pool) => {
                if !pool.submit(buf[..used].to_vec(), at) {
                    tracing::debug!("all encoders busy: frame dropped");
                }
                !events.is_closed()
            }
        };
        if !sent {
            return;
        }
    }
}

/// Converts V4L2 timestamps (CLOCK_MONOTONIC on every modern driver) to wall-clock time.
struct MonotonicToWall {
    offset: Option<Duration>,
}

impl MonotonicToWall {
    fn new() -> MonotonicToWall {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the struct passed by pointer.
        let ok = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } == 0;
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let mono = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        MonotonicToWall {
            offset: (ok && wall > mono).then(|| wall - mono),
        }
    }

    fn convert(&self, sec: i64, usec: i64) -> SystemTime {
        let now = SystemTime::now();
        let (Some(offset), true) = (self.offset, sec > 0 || usec > 0) else {
            return now;
        };
        let t = SystemTime::UNIX_EPOCH
            + offset
            + Duration::new(sec as u64, (usec as u32).saturating_mul(1000));
        // A driver with another clock would give nonsense: then the arrival time is the better guess.
        match now.duration_since(t) {
            Ok(age) if age < Duration::from_secs(5) => t,
            _ => now,
        }
    }
}

/// `mjpegd devices`: every camera with its formats, sizes and frame rates.
pub fn list_devices(paths: &[PathBuf]) -> String {
    let mut paths = paths.to_vec();
    if paths.is_empty() {
        if let Ok(dir) = std::fs::read_dir("/dev") {
            paths = dir
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("video"))
                })
                .collect();
        }
        paths.sort();
    }
    if paths.is_empty() {
        return "no V4L2 devices found (/dev/video*)\n".to_string();
    }
    let mut out = String::new();
    for path in paths {
        describe_device(&path, &mut out);
    }
    out
}

fn describe_device(path: &Path, out: &mut String) {
    use std::fmt::Write;
    let dev = match Device::with_path(path) {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(out, "{}: cannot open: {e}", path.display());
            return;
        }
    };
    match dev.query_caps() {
        Ok(caps) => {
            let _ = writeln!(
                out,
                "{}: {} ({}, {})",
                path.display(),
                caps.card,
                caps.driver,
                caps.bus
            );
        }
        Err(e) => {
            let _ = writeln!(out, "{}: not a V4L2 device: {e}", path.display());
            return;
        }
    }
    let Ok(formats) = dev.enum_formats() else {
        let _ = writeln!(out, "  (not a capture device)");
        return;
    };
    for f in formats {
        let _ = writeln!(out, "  {} ({})", f.fourcc, f.description);
        for size in dev.enum_framesizes(f.fourcc).unwrap_or_default() {
            for d in size.size.to_discrete() {
                let rates: Vec<String> = dev
                    .enum_frameintervals(f.fourcc, d.width, d.height)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|i| match i.interval {
                        v4l::frameinterval::FrameIntervalEnum::Discrete(fr) if fr.numerator > 0 => {
                            format!("{}", fr.denominator as f64 / fr.numerator as f64)
                        }
                        v4l::frameinterval::FrameIntervalEnum::Stepwise(s) => format!(
                            "{}-{}",
                            s.max.denominator as f64 / s.max.numerator.max(1) as f64,
                            s.min.denominator as f64 / s.min.numerator.max(1) as f64
                        ),
                        _ => "?".into(),
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "    {}x{} @ {} fps",
                    d.width,
                    d.height,
                    rates.join(", ")
                );
            }
        }
    }
}
