//! A V4L2 camera's controls (focus, exposure, white balance, ...): read, written over HTTP, and kept.
//!
//! Why a module of its own: control I/O blocks, sometimes for seconds (a UVC control transfer can take
//! up to 5 s), and must never stall capture, the async runtime or another camera. So each V4L2 camera
//! has one worker thread for its controls ([`worker`]), with a descriptor of its own on the device
//! (opened for each batch of work, so an unplugged camera is simply reopened), fed through a bounded
//! queue; the HTTP side awaits its answer with a timeout. Queued writes to one control are coalesced:
//! only the last is sent to the camera.
//!
//! What is wanted of the controls is kept here, not in the camera: the file's `[cameras.NAME.controls]`
//! table and the writes made over HTTP since the server started (which win over the file's value for
//! their control). It is applied every time the capture opens the device (at start, after an unplug,
//! after an on-demand idle, after a reload), each value read back and retried once, checked again a
//! little later (some cameras reset focus once streaming starts), and logged if the camera still did
//! not take it. Nothing is cached: every listing and every answer reads the camera, since another
//! program (`v4l2-ctl`) may change controls underneath.

mod device;
pub mod values;
mod worker;

use indexmap::IndexMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
pub use values::{Info, Setting};

/// Requests waiting for the worker at most; more are answered "busy" at once.
const QUEUE: usize = 16;
/// Longest wait for the worker's answer (several slow control transfers may be ahead in the queue).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
/// Most keys in one write.
pub const MAX_KEYS: usize = 64;

/// A control read from the camera.
#[derive(Clone, Debug)]
pub struct Reading {
    pub info: Info,
    /// Its value, or why it could not be read (write-only, unsupported type, an error).
    pub value: Result<i32, String>,
}

/// What happened to one key of a write or a reset.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// `done`, `coalesced`, `out_of_range`, `invalid`, `inactive`, `busy`, `read_only`,
    /// `not_supported`, `unknown` or `failed`.
    pub result: &'static str,
    pub reason: Option<String>,
    /// The value read back after a write.
    pub value: Option<serde_json::Value>,
}

/// A write's or a reset's answer: a result per key (in the request's order), then every control read back.
#[derive(Clone, Debug)]
pub struct Report {
    pub results: Vec<(String, Outcome)>,
    pub controls: Vec<Reading>,
}

/// Why the controls could not be reached at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreachable {
    pub status: u16,
    pub message: String,
}

/// What is wanted of the controls, applied at every open.
#[derive(Clone, Debug, Default)]
pub(crate) struct Wanted {
    /// The file's `[cameras.NAME.controls]`.
    pub file: IndexMap<String, Setting>,
    /// Written over HTTP since the server started: the canonical key and the raw value.
    pub http: IndexMap<String, i32>,
}

pub(crate) enum Job {
    List(oneshot::Sender<Result<Vec<Reading>, Unreachable>>),
    Write(
        Vec<(String, Setting)>,
        oneshot::Sender<Result<Report, Unreachable>>,
    ),
    Reset(oneshot::Sender<Result<Report, Unreachable>>),
    /// The capture opened the device: apply what is wanted.
    Opened,
}

/// The controls of one V4L2 camera: a handle on its worker.
pub struct Controls {
    path: PathBuf,
    jobs: SyncSender<Job>,
    wanted: Arc<Mutex<Wanted>>,
}

impl fmt::Debug for Controls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controls")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Controls {
    /// Starts the worker of camera `camera` on device `path`, with the file's table `file`. The worker
    /// ends when the last handle goes.
    pub fn start(camera: &str, path: &Path, file: IndexMap<String, Setting>) -> Arc<Controls> {
        let (jobs, rx) = sync_channel(QUEUE);
        let wanted = Arc::new(Mutex::new(Wanted {
            file,
            http: IndexMap::new(),
        }));
        let worker = worker::Worker::new(camera, path, wanted.clone());
        if let Err(e) = std::thread::Builder::new()
            .name("v4l2-controls".into())
            .spawn(move || worker.run(rx))
        {
            // Without a thread every request is answered "not reachable" (its sender is dropped).
            tracing::error!(camera, error = %e, "cannot start the controls worker");
        }
        Arc::new(Controls {
            path: path.to_path_buf(),
            jobs,
            wanted,
        })
    }

    /// The device these controls are on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file's table (a reload); the HTTP writes stay.
    pub fn set_file(&self, file: IndexMap<String, Setting>) {
        self.wanted.lock().unwrap_or_else(|e| e.into_inner()).file = file;
    }

    /// What is wanted now: the file's table and the HTTP writes.
    pub(crate) fn wanted(&self) -> Wanted {
        self.wanted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Called by the capture thread once it has opened the device: the worker applies what is wanted.
    /// Never blocks (a full queue already holds work that reads the camera).
    pub fn opened(&self) {
        let _ = self.jobs.try_send(Job::Opened);
    }

    /// Every control, read from the camera now.
    pub async fn list(&self) -> Result<Vec<Reading>, Unreachable> {
        let (tx, rx) = oneshot::channel();
        self.ask(Job::List(tx), rx).await
    }

    /// Writes `asked` (auto controls first), remembers what was taken for the next opens, and reads
    /// every control back.
    pub async fn write(&self, asked: Vec<(String, Setting)>) -> Result<Report, Unreachable> {
        let (tx, rx) = oneshot::channel();
        self.ask(Job::Write(asked, tx), rx).await
    }

    /// Every control back to the driver's default (or the file's value), forgetting the HTTP writes.
    pub async fn reset(&self) -> Result<Report, Unreachable> {
        let (tx, rx) = oneshot::channel();
        self.ask(Job::Reset(tx), rx).await
    }

    async fn ask<T>(
        &self,
        job: Job,
        rx: oneshot::Receiver<Result<T, Unreachable>>,
    ) -> Result<T, Unreachable> {
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(Unreachable {
                    status: 503,
                    message: format!(
                    "busy: {QUEUE} control requests are already waiting for this camera; try again"
                ),
                })
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(Unreachable {
                    status: 503,
                    message: "the controls worker is not running".into(),
                })
            }
        }
        match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(Unreachable {
                status: 503,
                message: "the controls worker stopped".into(),
            }),
            Err(_) => Err(Unreachable {
                status: 504,
                message: format!(
                    "the camera did not answer within {}s (control transfers queued behind slow ones)",
                    ANSWER_TIMEOUT.as_secs()
                ),
            }),
        }
    }
}
