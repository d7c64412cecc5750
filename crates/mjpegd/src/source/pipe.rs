//! A pipe of concatenated JPEGs: a child process (`exec:ffmpeg ... -f mjpeg -`, `rpicam-vid --codec mjpeg
//! -o -`, gstreamer) or standard input.
//!
//! The bytes are cut into frames by the JPEG's own marker structure ([`JpegSplitter`]), not by searching
//! for FF D9: a JPEG with an EXIF thumbnail carries a whole JPEG inside its APP1 segment. A child that exits
//! is restarted by the supervisor with back-off. The child runs in a process group of its own, ended whole
//! on every close and finished ending before the next start ([`super::child`]); its stderr goes to the log
//! ([`super::child_log`]).

use super::child::ChildGroup;
use super::{Captured, Source, SourceError, SourceInfo};
use bytes::BytesMut;
use mjpegd_core::parse::jpeg::JpegSplitter;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

/// Once the command itself (the shell) has exited, how long the pipe may stay silent before the source is
/// over: what it left running may hold the pipe open without writing to it.
const AFTER_EXIT: Duration = Duration::from_secs(1);

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
    /// The previous command's group being ended: waited for before the next start.
    ending: Option<JoinHandle<()>>,
    stdin_done: bool,
}

struct Running {
    child: Option<ChildGroup>,
    /// How the command's shell exited, once it has.
    exited: Option<String>,
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
            ending: None,
            stdin_done: false,
        }
    }
}

impl Source for Pipe {
    fn describe(&self) -> String {
        match &self.from {
            PipeFrom::Exec(cmd) => format!("command `{}`", super::url::redact_urls(cmd)),
            PipeFrom::Stdin => "standard input".to_string(),
        }
    }

    async fn open(&mut self) -> Result<SourceInfo, SourceError> {
        self.close();
        if let Some(ending) = self.ending.take() {
            // The old command may still hold the device: it is gone before the new one starts.
            let _ = ending.await;
        }
        let (child, reader): (Option<ChildGroup>, Box<dyn AsyncRead + Send + Unpin>) = match &self
            .from
        {
            PipeFrom::Exec(cmd) => {
                let name = cmd.split_whitespace().next().unwrap_or("child");
                let (child, stdout) = ChildGroup::spawn(cmd, name)
                    .map_err(|e| SourceError::unavailable(format!("cannot start `{cmd}`: {e}")))?;
                (Some(child), Box::new(stdout))
            }
            PipeFrom::Stdin => {
                if self.stdin_done {
                    return Err(SourceError::new(
                        super::ErrorKind::Finished,
                        "standard input is closed",
                    ));
                }
                (None, Box::new(tokio::io::stdin()))
            }
        };
        self.running = Some(Running {
            child,
            exited: None,
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
            .ok_or_else(|| SourceError::broken("not open"))?;
        let Some(child) = &mut running.child else {
            return match running.frames.next().await {
                Ok(Some(frame)) => Ok(frame),
                Ok(None) | Err(_) => {
                    self.stdin_done = true;
                    Err(SourceError::new(
                        super::ErrorKind::Finished,
                        "standard input closed",
                    ))
                }
            };
        };
        if running.exited.is_none() {
            tokio::select! {
                read = running.frames.next() => return match read {
                    Ok(Some(frame)) => Ok(frame),
                    Ok(None) | Err(_) => {
                        // The output is closed; the shell normally exits with it.
                        let status = tokio::time::timeout(AFTER_EXIT, child.wait()).await;
                        Err(SourceError::lost(match status {
                            Ok(status) => format!("the command exited ({status})"),
                            Err(_) => "the command closed its output".to_string(),
                        }))
                    }
                },
                status = child.wait() => running.exited = Some(status),
            }
        }
        // The shell has exited: what it wrote is still delivered, but what it left running (holding the
        // pipe, perhaps silently) does not keep the source alive.
        match tokio::time::timeout(AFTER_EXIT, running.frames.next()).await {
            Ok(Ok(Some(frame))) => Ok(frame),
            _ => Err(SourceError::lost(format!(
                "the command exited ({})",
                running.exited.as_deref().unwrap_or("?")
            ))),
        }
    }

    fn close(&mut self) {
        if let Some(mut child) = self.running.take().and_then(|r| r.child) {
            if let Some(ending) = child.end() {
                self.ending = Some(ending);
            }
        }
    }
}
