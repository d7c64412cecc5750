//! Naming a source (`--source`, `--device`, a camera's `source`/`device` keys) and starting it.
//!
//! Everything a source needs is checked when its name is parsed (a relay's URL whole, a folder's
//! existence), so starting one cannot fail: a reload that has parsed its file can start and restart
//! cameras without any of them failing half-way. Nothing here prints credentials: a relay URL's are kept
//! for its `Authorization` header only, and `--source-auth`'s never reach `Debug`.

use super::files::{Files, FilesFrom};
use super::pattern::Pattern;
use super::pipe::{Pipe, PipeFrom};
use super::relay::{Relay, RelayOptions};
use super::supervisor::{supervise, SupervisorConfig};
use super::url::{redact, redact_urls, RelayUrl};
use super::v4l2::FormatChoice;
use super::v4l2::{V4l2Camera, V4l2Options};
use crate::hub::SharedHub;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a source is asked to deliver and how it is reached (the flags or a camera's keys).
#[derive(Clone, PartialEq)]
pub struct SourceOptions {
    /// Picture size asked of a camera or the pattern; the "no signal" size before frames say otherwise.
    pub resolution: (u32, u32),
    pub fps: f64,
    /// JPEG quality of what mjpegd encodes itself.
    pub quality: u8,
    /// Pixel format asked of a V4L2 camera.
    pub format: FormatChoice,
    /// Encoder threads for raw camera formats.
    pub encoders: usize,
    /// Credentials for an upstream (Basic or Digest, as it asks).
    pub credentials: Option<(String, String)>,
    pub connect_timeout: Duration,
    /// Longest silence from an upstream before it is reconnected.
    pub read_timeout: Duration,
    /// Where a relayed ESP32-CAM takes its settings (`control-url`); see [`crate::source::esp32`].
    pub control_url: Option<super::url::RelayUrl>,
    /// What a pushed camera allows its pushers (`push-takeover`, `push-max-fps`).
    pub push: super::push::PushPolicy,
}

/// Every field but the credentials, which show only as being there.
impl fmt::Debug for SourceOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceOptions")
            .field("resolution", &self.resolution)
            .field("fps", &self.fps)
            .field("quality", &self.quality)
            .field("format", &self.format)
            .field("encoders", &self.encoders)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(user, _)| (user, "***")),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("control_url", &self.control_url)
            .field("push", &self.push)
            .finish()
    }
}

impl Default for SourceOptions {
    fn default() -> SourceOptions {
        SourceOptions {
            resolution: (1280, 720),
            fps: 30.0,
            quality: 80,
            format: FormatChoice::Auto,
            encoders: 1,
            credentials: None,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
            control_url: None,
            push: Default::default(),
        }
    }
}

/// A source as named by `--source` or `--device`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// The built-in test pattern.
    Pattern,
    /// A V4L2 device.
    Device(PathBuf),
    /// An upstream MJPEG URL.
    Relay(RelayUrl),
    /// A shell command writing MJPEG to its stdout.
    Exec(String),
    /// MJPEG on standard input.
    Stdin,
    /// Recorded frames.
    Files(FilesFrom),
    /// Frames a camera pushes to `/cams/NAME/push`, with the key it must hold (None until the file's
    /// `push-key` is read; a pushed camera without one is refused).
    Push(Option<super::push::PushKey>),
}

impl SourceSpec {
    /// Parses a `--source` value; what it names is checked as far as it can be before it starts.
    pub fn parse(s: &str) -> anyhow::Result<SourceSpec> {
        match s {
            "pattern" | "test" | "testsrc" => Ok(SourceSpec::Pattern),
            "-" => Ok(SourceSpec::Stdin),
            "push" => Ok(SourceSpec::Push(None)),
            url if url.starts_with("http://") || url.starts_with("snapshot+http://") => Ok(SourceSpec::Relay(
                RelayUrl::parse(url).map_err(|e| anyhow::anyhow!(e))?,
            )),
            url if url.starts_with("https://") => {
                anyhow::bail!("{}: https upstreams are not supported; relay over http:// on a trusted network", redact(url).escape_debug())
            }
            cmd if cmd.starts_with("exec:") => {
                let cmd = cmd["exec:".len()..].trim();
                anyhow::ensure!(!cmd.is_empty(), "exec: needs a command, e.g. exec:'ffmpeg -i ... -f mjpeg -'");
                Ok(SourceSpec::Exec(cmd.to_string()))
            }
            dir if dir.starts_with("files:") => {
                let path = PathBuf::from(&dir["files:".len()..]);
                anyhow::ensure!(path.is_dir(), "{}: not a folder of JPEG files", path.display());
                Ok(SourceSpec::Files(FilesFrom::Dir(path)))
            }
            file if file.ends_with(".mjpeg") || file.ends_with(".mjpg") => {
                let path = PathBuf::from(file);
                anyhow::ensure!(path.is_file(), "{}: no such file", path.display());
                Ok(SourceSpec::Files(FilesFrom::Mjpeg(path)))
            }
            dev if dev.starts_with("/dev/") => Ok(SourceSpec::Device(PathBuf::from(dev))),
            other => anyhow::bail!(
                "unknown source {:?}: use pattern, http://HOST/PATH, snapshot+http://HOST/PATH, exec:COMMAND, -, files:DIR or FILE.mjpeg",
                redact(other)
            ),
        }
    }

    /// Starts the source's supervisor (which opens it, and retries while it fails). A V4L2 camera tells
    /// `controls` each time it opens the device.
    pub fn spawn(
        &self,
        args: &SourceOptions,
        hub: Arc<SharedHub>,
        config: SupervisorConfig,
        shutdown: CancellationToken,
        controls: Option<Arc<super::controls::Controls>>,
        inlet: Option<Arc<super::push::Inlet>>,
    ) -> JoinHandle<()> {
        let (width, height) = args.resolution;
        match self {
            SourceSpec::Pattern => {
                let source = Pattern::new(width, height, args.fps, args.quality);
                tokio::spawn(supervise(source, hub, config, shutdown))
            }
            SourceSpec::Device(path) => {
                let camera = V4l2Camera::new(V4l2Options {
                    path: path.clone(),
                    width,
                    height,
                    fps: args.fps,
                    format: args.format,
                    encoders: args.encoders,
                    quality: args.quality,
                    controls,
                });
                tokio::spawn(supervise(camera, hub, config, shutdown))
            }
            SourceSpec::Relay(url) => {
                let relay = Relay::new(RelayOptions {
                    url: url.clone(),
                    credentials: args.credentials.clone(),
                    connect_timeout: args.connect_timeout,
                    read_timeout: args.read_timeout,
                    fps: args.fps,
                });
                // The relay's own read timeout decides when a silent upstream is dead (for a camera
                // polled for stills, after the wait for the next poll).
                let interval = Duration::from_secs_f64(1.0 / args.fps.clamp(0.001, 1000.0));
                let config = SupervisorConfig {
                    frame_timeout: args.read_timeout + interval + Duration::from_secs(1),
                    ..config
                };
                tokio::spawn(supervise(relay, hub, config, shutdown))
            }
            SourceSpec::Exec(cmd) => {
                let pipe = Pipe::new(PipeFrom::Exec(cmd.clone()), width, height, args.fps);
                tokio::spawn(supervise(pipe, hub, config, shutdown))
            }
            SourceSpec::Stdin => {
                let pipe = Pipe::new(PipeFrom::Stdin, width, height, args.fps);
                tokio::spawn(supervise(pipe, hub, config, shutdown))
            }
            SourceSpec::Files(from) => {
                let files = Files::new(from.clone(), args.fps);
                tokio::spawn(supervise(files, hub, config, shutdown))
            }
            SourceSpec::Push(_) => {
                let push =
                    super::push::Push::new(inlet.unwrap_or_else(super::push::Inlet::new), args.fps);
                // A pusher that sends nothing for the read timeout is gone: its camera shows "no signal"
                // after no-signal-after meanwhile, as any silent source does. The pusher pushes whether
                // anyone watches or not, so its frames are always taken (never left queued to be shown
                // stale to the next viewer), and a snapshot has the newest at once.
                let config = SupervisorConfig {
                    frame_timeout: args.read_timeout + Duration::from_secs(1),
                    capture: super::supervisor::Capture::Always,
                    ..config
                };
                tokio::spawn(supervise(push, hub, config, shutdown))
            }
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Pattern => f.write_str("the test pattern"),
            SourceSpec::Device(p) => write!(f, "the camera {}", p.display()),
            // (a RelayUrl never shows its credentials)
            SourceSpec::Relay(url) => write!(f, "a relay of {url}"),
            SourceSpec::Exec(cmd) => write!(f, "the output of `{}`", redact_urls(cmd)),
            SourceSpec::Stdin => f.write_str("MJPEG from standard input"),
            SourceSpec::Files(FilesFrom::Dir(d)) => write!(f, "the JPEG files in {}", d.display()),
            SourceSpec::Files(FilesFrom::Mjpeg(p)) => write!(f, "the MJPEG file {}", p.display()),
            SourceSpec::Push(_) => f.write_str("frames pushed to it"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names() {
        assert_eq!(SourceSpec::parse("pattern").unwrap(), SourceSpec::Pattern);
        assert_eq!(SourceSpec::parse("-").unwrap(), SourceSpec::Stdin);
        assert_eq!(
            SourceSpec::parse("http://cam/mjpeg/1").unwrap(),
            SourceSpec::Relay(RelayUrl::parse("http://cam/mjpeg/1").unwrap())
        );
        assert_eq!(
            SourceSpec::parse("exec: ffmpeg -f mjpeg -").unwrap(),
            SourceSpec::Exec("ffmpeg -f mjpeg -".into())
        );
        let SourceSpec::Relay(url) = SourceSpec::parse("snapshot+http://cam/capture").unwrap()
        else {
            panic!("a relay")
        };
        assert!(url.snapshot);
        assert_eq!(url.path_and_query, "/capture");
        assert!(SourceSpec::parse("snapshot+cam/capture").is_err());
        assert!(SourceSpec::parse("exec:").is_err());
        assert!(SourceSpec::parse("files:/nonexistent-dir").is_err());
        assert!(SourceSpec::parse("bogus").is_err());
        assert!(SourceSpec::parse("http://").is_err());
        assert!(SourceSpec::parse("http://cam:99999/").is_err());
        let spec = SourceSpec::parse("http://admin:secret@cam/x").unwrap();
        for shown in [spec.to_string(), format!("{spec:?}")] {
            assert!(
                !shown.contains("secret") && shown.contains("cam"),
                "{shown}"
            );
        }
        for bad in [
            "http://admin:secret@cam:0/",
            "https://admin:secret@cam/",
            "rtsp://admin:secret@cam/",
        ] {
            let e = SourceSpec::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("secret"), "{e}");
        }
        let options = SourceOptions {
            credentials: Some(("bob".into(), "secret".into())),
            ..SourceOptions::default()
        };
        assert!(!format!("{options:?}").contains("secret"));
        let exec =
            SourceSpec::parse("exec:ffmpeg -i rtsp://admin:secret@cam/s -f mjpeg -").unwrap();
        assert!(!exec.to_string().contains("secret"), "{exec}");
    }
}
