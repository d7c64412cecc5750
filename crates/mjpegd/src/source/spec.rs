//! Choosing a source from the command line.

use super::pattern::Pattern;
use super::supervisor::{supervise, SupervisorConfig};
use super::v4l2::{V4l2Camera, V4l2Options};
use crate::cli::ServeArgs;
use crate::hub::SharedHub;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A source as named by `--source` or `--device`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// The built-in test pattern.
    Pattern,
    /// A V4L2 device.
    Device(PathBuf),
}

impl SourceSpec {
    /// Reads `--source` and `--device`.
    pub fn from_args(args: &ServeArgs) -> anyhow::Result<SourceSpec> {
        if let Some(device) = &args.device {
            return Ok(SourceSpec::Device(device.clone()));
        }
        SourceSpec::parse(&args.source)
    }

    /// Parses a `--source` value.
    pub fn parse(s: &str) -> anyhow::Result<SourceSpec> {
        match s {
            "pattern" | "test" | "testsrc" => Ok(SourceSpec::Pattern),
            other => anyhow::bail!(
                "unknown source {other:?}: use pattern, http://HOST/PATH, exec:COMMAND, -, files:DIR or FILE.mjpeg"
            ),
        }
    }

    /// Starts the source's supervisor.
    pub fn spawn(
        &self,
        args: &ServeArgs,
        hub: Arc<SharedHub>,
        config: SupervisorConfig,
        shutdown: CancellationToken,
    ) -> anyhow::Result<JoinHandle<()>> {
        let (width, height) = args.resolution;
        Ok(match self {
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
                });
                tokio::spawn(supervise(camera, hub, config, shutdown))
            }
        })
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Pattern => f.write_str("the test pattern"),
            SourceSpec::Device(p) => write!(f, "the camera {}", p.display()),
        }
    }
}
