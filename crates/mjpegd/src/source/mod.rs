//! Sources: where frames come from.
//!
//! A [`Source`] opens something that yields JPEGs (a camera, an upstream server, a child process, files,
//! the built-in pattern, frames a camera pushes) and hands over one frame at a time. It knows nothing of clients. The
//! [`supervisor`] drives it: it opens it only while someone watches (if asked), validates each frame,
//! publishes it into the hub, and when the source fails it keeps clients connected with a "no signal"
//! frame while it retries with back-off. A new kind of source is one file implementing this trait.

pub mod child;
pub mod child_log;
pub mod controls;
pub mod encode;
pub mod esp32;
pub mod files;
pub mod orient;
pub mod pattern;
pub mod pipe;
pub mod push;
pub mod relay;
pub mod spec;
pub mod supervisor;
pub mod upstream;
pub mod url;
pub mod v4l2;

use bytes::Bytes;
use std::fmt;
use std::future::Future;
use std::time::SystemTime;

/// One frame as a source delivers it.
#[derive(Debug)]
pub struct Captured {
    /// A JPEG (checked by the supervisor before anyone sees it).
    pub jpeg: Bytes,
    /// When it was captured (the device's timestamp where the source has one).
    pub at: SystemTime,
}

/// What an opened source really delivers (after any negotiation with a device), for `/state` and logs.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceInfo {
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    /// How frames become JPEGs.
    pub encoder: crate::hub::Encoder,
}

/// What kind of failure stopped a source: the supervisor retries all but [`ErrorKind::Finished`], and
/// `/state` shows the kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Could not be opened: no such device, busy, connection refused, an upstream's error status.
    Unavailable,
    /// Was delivering and went away: a camera unplugged, a connection reset, a command that exited.
    Lost,
    /// Open but silent for longer than allowed.
    Timeout,
    /// Sent something that makes no sense (a broken stream), or failed inside mjpegd.
    Broken,
    /// Ended for good: nothing will ever come again (standard input closed). Not retried.
    Finished,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Lost => "lost",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Broken => "broken",
            ErrorKind::Finished => "finished",
        }
    }
}

/// Why a source could not open or stopped delivering. The supervisor logs it, shows it in `/state` and on
/// the "no signal" frame, and retries unless it is [`ErrorKind::Finished`].
#[derive(Debug)]
pub struct SourceError {
    pub kind: ErrorKind,
    pub message: String,
}

impl SourceError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> SourceError {
        SourceError {
            kind,
            message: message.into(),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> SourceError {
        SourceError::new(ErrorKind::Unavailable, message)
    }

    pub fn lost(message: impl Into<String>) -> SourceError {
        SourceError::new(ErrorKind::Lost, message)
    }

    pub fn timeout(message: impl Into<String>) -> SourceError {
        SourceError::new(ErrorKind::Timeout, message)
    }

    pub fn broken(message: impl Into<String>) -> SourceError {
        SourceError::new(ErrorKind::Broken, message)
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SourceError {}

impl From<std::io::Error> for SourceError {
    fn from(e: std::io::Error) -> SourceError {
        SourceError::lost(e.to_string())
    }
}

/// A producer of JPEG frames.
pub trait Source: Send + 'static {
    /// What this source is, for logs and `/state`.
    fn describe(&self) -> String;

    /// Opens (or reopens, after a failure or an idle close) the source.
    fn open(&mut self) -> impl Future<Output = Result<SourceInfo, SourceError>> + Send;

    /// Waits for the next frame. An error means the source is lost until reopened.
    fn next_frame(&mut self) -> impl Future<Output = Result<Captured, SourceError>> + Send;

    /// Releases the device or connection; `open` may be called again later.
    fn close(&mut self);
}
