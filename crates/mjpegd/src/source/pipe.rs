//! A pipe of concatenated JPEGs: a child process (`exec:ffmpeg ... -f mjpeg -`, `rpicam-vid --codec mjpeg
//! -o -`, gstreamer) or standard input.
//!
//! The bytes are cut into frames by the JPEG's own marker structure ([`JpegSplitter`]), not by searching
//! for FF D9: a JPEG with an EXIF thumbnail carries a whole JPEG inside its APP1 segment. A child that exits
//! is restarted by the supervisor with back-off; its stderr goes to the log, line by line.

use super::{Captured, Source, SourceError, SourceInfo};
use bytes::BytesMut;
use mjpegd_core::parse::jpeg::JpegSplitter;
use std::process::Stdio;
use std::time::SystemTime;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// Largest frame accepted from a pipe.
pub const MAX_FRAME: usize = 16 << 20;

/// Cuts a byte stream into JPEG frames.
pub struct FrameReader<R> {
    reader: R,
    splitter: JpegSplitter,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: R) -> FrameReader<R> {
        FrameReader {
            reader,
            splitter: JpegSplitter::new(MAX_FRAME),
            buf: BytesMut::with_capacity(64 * 1024),
        }
    }

    /// The next frame; a frame the splitter had to drop comes back as an empty JPEG (the supervisor drops
    /// and counts it). `Ok(None)` at the end of the stream.
    pub async fn next(&mut self) -> std::io::Result<Option<Captured>> {
        loop {
            if let Some(frame) = self.splitter.next_frame() {
                let jpeg = match frame {
                    Ok(jpeg) => jpeg,
                    Err(e) => {
                        tracing::debug!(error = %e, "dropped a garbled frame from the pipe");
                        bytes::Bytes::new()
                    }
                };
                return Ok(Some(Captured {
                    jpeg,
                    at: SystemTime::now(),
                }));
            }
            self.buf.clear();
            if self.reader.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
            self.splitter.push(&self.buf);
        }
    }

    /// Gives back the reader, for rewinding a file.
    pub fn into_inner(self) -> R {
        self.reader
    }
}

/// Where the pipe comes from.
#[derive(Clone, Debug)]
pub enum PipeFrom {
    /// A shell command whose stdout is MJPEG.
    Exec(String),
    /// This process's standard input.
    Stdin,
}

/// A pipe source.
pub struct Pipe {
    from: PipeFrom,
    width: u32,
    height: u32,
    fps: f64,
    running: Option<Running>,
    stdin_done: bool,
}

struct Running {
    child: Option<Child>,
    frames: FrameReader<Box<dyn AsyncRead + Send + Unpin>>,
}

impl Pipe {
    /// `width`, `height` and `fps` are what the pipe is expected to carry (shown until frames say otherwise).
    pub fn new(from: PipeFrom, width: u32, height: u32, fps: f64) -> Pipe {
        Pipe {
            from,
            width,
            height,
            fps,
            running: None,
            stdin_done: false,
        }
    }
}

impl Source for Pipe {
    fn describe(&self) -> String {
        match &self.from {
            PipeFrom::Exec(cmd) => format!("command `{cmd}`"),
            PipeFrom::Stdin => "standard input".to_string(),
        }
    }

    async fn open(&mut self) -> Result<SourceInfo, SourceError> {
        self.close();
        let (child, reader): (Option<Child>, Box<dyn AsyncRead + Send + Unpin>) = match &self.from {
            PipeFrom::Exec(cmd) => {
                let mut child = Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| SourceError(format!("cannot start `{cmd}`: {e}")))?;
                let stdout = child.stdout.take().expect("piped");
                if let Some(stderr) = child.stderr.take() {
                    let name = cmd.split_whitespace().next().unwrap_or("child").to_string();
                    tokio::spawn(async move {
                        let mut lines = BufReader::new(stderr).lines();
                        while let Ok(Some(line)) = lines.next_line().await {
                            tracing::info!(target: "mjpegd::child", child = %name, "{line}");
                        }
                    });
                }
                (Some(child), Box::new(stdout))
            }
            PipeFrom::Stdin => {
                if self.stdin_done {
                    return Err(SourceError("standard input is closed".into()));
                }
                (None, Box::new(tokio::io::stdin()))
            }
        };
        self.running = Some(Running {
            child,
            frames: FrameReader::new(reader),
        });
        Ok(SourceInfo {
            width: self.width,
            height: self.height,
            fps: self.fps,
            encoder: crate::hub::Encoder::None,
        })
    }

    async fn next_frame(&mut self) -> Result<Captured, SourceError> {
        let running = self
            .running
            .as_mut()
            .ok_or_else(|| SourceError("not open".into()))?;
        match running.frames.next().await {
            Ok(Some(frame)) => Ok(frame),
            Ok(None) | Err(_) => {
                if let Some(child) = &mut running.child {
                    let status = child
                        .wait()
                        .await
                        .map(|s| s.to_string())
                        .unwrap_or_else(|e| e.to_string());
                    Err(SourceError(format!("the command exited ({status})")))
                } else {
                    self.stdin_done = true;
                    Err(SourceError("standard input closed".into()))
                }
            }
        }
    }

    fn close(&mut self) {
        if let Some(mut r) = self.running.take() {
            if let Some(child) = &mut r.child {
                let _ = child.start_kill();
            }
        }
    }
}
