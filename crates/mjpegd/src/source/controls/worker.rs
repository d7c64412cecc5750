//! The thread that does a camera's control I/O, one job at a time, on a descriptor of its own.
//!
//! Jobs that queue up while it works are taken as one batch: several "device opened" become one
//! application, and of several writes to one control only the last reaches the camera (the earlier ones
//! are answered `coalesced`). After applying what is wanted at an open it checks again [`VERIFY_AFTER`]
//! later, and writes once more what the camera lost. Writes to one control are also spaced at least
//! [`MIN_WRITE_INTERVAL`] apart ([`Spacing`]): a slider dragged across a page sends a write per step, and a
//! UVC camera that takes each as a USB control transfer would fall behind; waiting here lets the writes
//! that queue meanwhile coalesce into the last one.

use super::device::Device;
use super::values::{
    self, autos_first, canonical, find, resolve, valid_key, Info, Setting, FLAG_INACTIVE,
};
use super::{Job, Outcome, Reading, Report, Unreachable, Wanted};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When the values applied at an open are checked again.
const VERIFY_AFTER: Duration = Duration::from_secs(2);
/// Most jobs taken in one batch.
const MAX_BATCH: usize = 64;
/// Shortest time between two writes to one control.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_millis(50);

/// When each control was last written, and how long a new write to it must wait. No I/O, no clock of
/// its own.
#[derive(Debug, Default)]
pub(crate) struct Spacing {
    last: HashMap<u32, Instant>,
}

impl Spacing {
    /// How long a write to control `id` at `now` waits first.
    pub(crate) fn wait(&self, id: u32, now: Instant) -> Duration {
        self.last.get(&id).map_or(Duration::ZERO, |t| {
            (*t + MIN_WRITE_INTERVAL).saturating_duration_since(now)
        })
    }

    /// Notes a write to control `id` at `at` (at most 256 controls remembered).
    pub(crate) fn wrote(&mut self, id: u32, at: Instant) {
        if self.last.len() >= 256 && !self.last.contains_key(&id) {
            // Only writes within the interval still matter; past 256 of those, one is not spaced.
            self.last
                .retain(|_, t| at.saturating_duration_since(*t) < MIN_WRITE_INTERVAL);
            if self.last.len() >= 256 {
                return;
            }
        }
        self.last.insert(id, at);
    }
}

pub(crate) struct Worker {
    camera: String,
    path: PathBuf,
    wanted: Arc<Mutex<Wanted>>,
    spacing: Mutex<Spacing>,
}

impl Worker {
    pub(crate) fn new(camera: &str, path: &Path, wanted: Arc<Mutex<Wanted>>) -> Worker {
        Worker {
            camera: camera.to_string(),
            path: path.to_path_buf(),
            wanted,
            spacing: Mutex::new(Spacing::default()),
        }
    }

    pub(crate) fn run(self, jobs: Receiver<Job>) {
        let mut verify_at: Option<Instant> = None;
        loop {
            let first = match verify_at {
                Some(at) => match jobs.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(job) => Some(job),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                },
                None => match jobs.recv() {
                    Ok(job) => Some(job),
                    Err(_) => return,
                },
            };
            let Some(first) = first else {
                verify_at = None;
                self.apply_wanted(true);
                continue;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            // Of several writes to one control in this batch, the last one wins.
            let mut last_write: HashMap<String, usize> = HashMap::new();
            for (i, job) in batch.iter().enumerate() {
                if let Job::Write(asked, _) = job {
                    for (key, _) in asked {
                        last_write.insert(canonical(key).to_string(), i);
                    }
                }
            }
            let opened = batch.iter().any(|j| matches!(j, Job::Opened));
            if opened {
                self.apply_wanted(false);
                verify_at = Some(Instant::now() + VERIFY_AFTER);
            }
            for (i, job) in batch.into_iter().enumerate() {
                match job {
                    Job::Opened => {}
                    Job::List(reply) => {
                        let _ = reply.send(self.open().and_then(|d| list(&d)));
                    }
                    Job::Write(asked, reply) => {
                        let later = |key: &str| {
                            last_write
                                .get(canonical(key))
                                .is_some_and(|&last| last != i)
                        };
                        let _ = reply.send(self.write(asked, later));
                    }
                    Job::Reset(reply) => {
                        let _ = reply.send(self.reset());
                    }
                }
            }
        }
    }

    fn open(&self) -> Result<Device, Unreachable> {
        Device::open(&self.path).map_err(|e| Unreachable {
            status: 503,
            message: format!(
                "the camera {} cannot be reached now: {e}",
                self.path.display()
            ),
        })
    }

    fn wanted(&self) -> Wanted {
        self.wanted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Writes what is wanted (the file's values, overridden by the HTTP writes), auto controls first.
    /// `again`: a later check, writing only what the camera lost.
    fn apply_wanted(&self, again: bool) {
        let wanted = self.wanted();
        if wanted.file.is_empty() && wanted.http.is_empty() {
            return;
        }
        let dev = match Device::open(&self.path) {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(camera = %self.camera, error = %e, "controls not applied: the device cannot be opened");
                return;
            }
        };
        let controls = match dev.list() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(camera = %self.camera, error = %e, "controls not applied: cannot list them");
                return;
            }
        };
        let mut desired: Vec<(Info, i32)> = Vec::new();
        for (key, setting) in &wanted.file {
            if wanted.http.contains_key(canonical(key)) {
                continue; // an HTTP write wins over the file
            }
            let Some(info) = find(&controls, key) else {
                if !again {
                    tracing::warn!(camera = %self.camera, control = %key, "the file sets a control this camera does not have");
                }
                continue;
            };
            match resolve(info, setting) {
                Ok(v) => desired.push((info.clone(), v)),
                Err(r) if !again => {
                    tracing::warn!(camera = %self.camera, control = %key, reason = %r.reason, "the file's value is not applied")
                }
                Err(_) => {}
            }
        }
        for (key, value) in &wanted.http {
            if let Some(info) = find(&controls, key) {
                desired.push((info.clone(), *value));
            }
        }
        let mut rewritten = 0;
        for (info, value) in autos_first(desired) {
            let readable = info.readable();
            if again && readable && dev.get(info.id).ok() == Some(value) {
                continue;
            }
            rewritten += 1;
            let mut took = false;
            let mut error = None;
            for _attempt in 0..2 {
                match dev.set(info.id, value) {
                    Ok(()) => {
                        took = !readable || dev.get(info.id).ok() == Some(value);
                        if took {
                            break;
                        }
                    }
                    Err(e) => error = Some(e.to_string()),
                }
            }
            if !took {
                let inactive = dev.query(info.id).is_ok_and(|i| i.has(FLAG_INACTIVE));
                let reason = if inactive {
                    "inactive: its auto control is on".to_string()
                } else {
                    error.unwrap_or_else(|| "the camera holds another value".into())
                };
                tracing::warn!(camera = %self.camera, control = %info.key, value, reason = %reason, "the camera did not take a control's value (tried twice)");
            }
        }
        if rewritten > 0 {
            tracing::info!(camera = %self.camera, controls = rewritten, again, "controls applied");
        }
    }

    fn write(
        &self,
        asked: Vec<(String, Setting)>,
        superseded: impl Fn(&str) -> bool,
    ) -> Result<Report, Unreachable> {
        let dev = self.open()?;
        let controls = dev.list().map_err(|e| unreachable(&self.path, e))?;
        let mut results: Vec<(String, Option<Outcome>)> =
            asked.iter().map(|(k, _)| (k.clone(), None)).collect();
        let mut valid = Vec::new();
        for (i, (key, setting)) in asked.iter().enumerate() {
            let outcome = if !valid_key(key) {
                refused(
                    "invalid",
                    format!(
                        "{key:?} is not a control key (a-z, 0-9 and _, at most {} bytes)",
                        values::MAX_KEY
                    ),
                )
            } else if superseded(key) {
                Outcome {
                    result: "coalesced",
                    reason: Some(
                        "a later write to this control, queued meanwhile, was sent instead".into(),
                    ),
                    value: None,
                }
            } else {
                match find(&controls, key) {
                    None => refused(
                        "unknown",
                        format!("this camera has no control {key}; GET the controls to list them"),
                    ),
                    Some(info) => match resolve(info, setting) {
                        Ok(v) => {
                            valid.push((info.clone(), (i, v)));
                            continue;
                        }
                        Err(r) => refused(r.result, r.reason),
                    },
                }
            };
            results[i].1 = Some(outcome);
        }
        for (info, (i, value)) in autos_first(valid) {
            let outcome = self.write_one(&dev, &controls, &info, value);
            if outcome.result == "done" {
                self.wanted
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .http
                    .insert(canonical(&info.key).to_string(), value);
            }
            results[i].1 = Some(outcome);
        }
        let results = results
            .into_iter()
            .map(|(k, o)| {
                (
                    k,
                    o.unwrap_or_else(|| refused("failed", "not attempted".into())),
                )
            })
            .collect();
        Ok(Report {
            results,
            controls: list(&dev)?,
        })
    }

    /// One S_CTRL, with the control's flags read first (its auto control may have just changed them).
    fn write_one(&self, dev: &Device, controls: &[Info], info: &Info, value: i32) -> Outcome {
        let now = dev.query(info.id).unwrap_or_else(|_| info.clone());
        if now.has(FLAG_INACTIVE) {
            return refused("inactive", inactive_reason(dev, controls, info));
        }
        // (this thread is the camera's control worker: waiting here holds up nothing but its queue)
        let wait = self
            .spacing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .wait(info.id, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        let written = dev.set(info.id, value);
        self.spacing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .wrote(info.id, Instant::now());
        match written {
            Ok(()) => {
                let value = if info.readable() {
                    dev.get(info.id).ok().map(|v| info.shown(v))
                } else {
                    None
                };
                Outcome {
                    result: "done",
                    reason: None,
                    value,
                }
            }
            Err(e) => match e.raw_os_error() {
                Some(libc::EACCES) if dev.query(info.id).is_ok_and(|i| i.has(FLAG_INACTIVE)) => {
                    refused("inactive", inactive_reason(dev, controls, info))
                }
                Some(libc::EACCES) => {
                    refused("read_only", format!("the camera refused the write: {e}"))
                }
                Some(libc::EBUSY) => refused(
                    "busy",
                    format!("the control is busy (another program or an ongoing transfer): {e}"),
                ),
                Some(libc::ERANGE) => {
                    refused("out_of_range", format!("the camera refused the value: {e}"))
                }
                Some(libc::EINVAL) => {
                    refused("invalid", format!("the camera refused the value: {e}"))
                }
                _ => refused("failed", format!("the camera failed the write: {e}")),
            },
        }
    }

    fn reset(&self) -> Result<Report, Unreachable> {
        let dev = self.open()?;
        let controls = dev.list().map_err(|e| unreachable(&self.path, e))?;
        let file = {
            let mut w = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
            w.http.clear();
            w.file.clone()
        };
        let mut targets = Vec::new();
        let mut results: Vec<(String, Outcome)> = Vec::new();
        for info in &controls {
            // Write-only controls have no state to go back to (a relative move would move).
            if !info.kind.supported()
                || info.has(values::FLAG_READ_ONLY)
                || info.has(values::FLAG_WRITE_ONLY)
            {
                continue;
            }
            let from_file = file
                .iter()
                .find(|(k, _)| canonical(k) == canonical(&info.key))
                .and_then(|(_, s)| resolve(info, s).ok());
            targets.push((info.clone(), from_file.unwrap_or(info.default)));
        }
        for (info, value) in autos_first(targets) {
            let now = dev.query(info.id).unwrap_or_else(|_| info.clone());
            let outcome = if now.has(FLAG_INACTIVE) {
                Outcome {
                    result: "inactive",
                    reason: Some(inactive_reason(&dev, &controls, &info)),
                    value: None,
                }
            } else if dev.get(info.id).ok() == Some(value) {
                // Already there: no control transfer (some take seconds).
                Outcome {
                    result: "done",
                    reason: None,
                    value: Some(info.shown(value)),
                }
            } else {
                self.write_one(&dev, &controls, &info, value)
            };
            results.push((info.key.clone(), outcome));
        }
        Ok(Report {
            results,
            controls: list(&dev)?,
        })
    }
}

fn refused(result: &'static str, reason: String) -> Outcome {
    Outcome {
        result,
        reason: Some(reason),
        value: None,
    }
}

fn unreachable(path: &Path, e: std::io::Error) -> Unreachable {
    Unreachable {
        status: 503,
        message: format!("the camera {} cannot be reached now: {e}", path.display()),
    }
}

/// Why `info` is inactive: its auto control and that control's value, when known.
fn inactive_reason(dev: &Device, controls: &[Info], info: &Info) -> String {
    let auto = info
        .depends_on()
        .and_then(|id| controls.iter().find(|c| c.id == id));
    match auto {
        Some(auto) => {
            let value = dev.get(auto.id).ok();
            let shown = value
                .and_then(|v| auto.label(v).map(str::to_string))
                .or_else(|| value.map(|v| auto.shown(v).to_string()))
                .unwrap_or_else(|| "on".into());
            format!(
                "{} is inactive while {} is {shown}: turn {} to manual first (in the same request works)",
                info.key, auto.key, auto.key
            )
        }
        None => format!("{} is inactive now (the driver says so)", info.key),
    }
}

/// Every control with its value read now.
fn list(dev: &Device) -> Result<Vec<Reading>, Unreachable> {
    let controls = dev.list().map_err(|e| Unreachable {
        status: 503,
        message: format!("cannot list the controls: {e}"),
    })?;
    Ok(controls
        .into_iter()
        .map(|info| {
            let value = if !info.kind.supported() {
                Err(format!("{} controls are not read", info.kind.as_str()))
            } else if info.has(values::FLAG_WRITE_ONLY) {
                Err("write-only".into())
            } else {
                dev.get(info.id).map_err(|e| e.to_string())
            };
            Reading { info, value }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_to_one_control_are_spaced() {
        let mut s = Spacing::default();
        let t0 = Instant::now();
        assert_eq!(s.wait(1, t0), Duration::ZERO);
        s.wrote(1, t0);
        assert_eq!(
            s.wait(1, t0 + Duration::from_millis(10)),
            MIN_WRITE_INTERVAL - Duration::from_millis(10)
        );
        assert_eq!(
            s.wait(2, t0),
            Duration::ZERO,
            "another control does not wait"
        );
        assert_eq!(s.wait(1, t0 + MIN_WRITE_INTERVAL * 2), Duration::ZERO);
        for id in 0..1000 {
            s.wrote(id, t0 + MIN_WRITE_INTERVAL * 3);
        }
        assert!(s.last.len() <= 256, "bounded: {}", s.last.len());
    }
}
