//! A camera: one source, the supervisor task that runs it, and the hub its clients read from.
//!
//! Each camera has a hub of its own (its buffer memory, lockstep rounds, evictions and counters), so one
//! camera's failure or crowd of clients never touches another's frames. Client and connection limits are
//! the server's, shared by all cameras.
//!
//! The source and the clients have separate lifetimes, which is what a live reload needs: a camera whose
//! source settings change restarts its supervisor on the same hub while its clients stay connected (they
//! see "no signal" in between, as on any source failure, and their sequence numbers carry on); a camera
//! that is removed ends its clients' streams cleanly.
//!
//! A V4L2 camera also owns its [`Controls`]: they outlive source restarts (a reload, a replug), so the
//! values written over HTTP are applied again at every open until the server stops.
//!
//! A pushed camera's [`Inlet`] (where its pushers' frames come in) is the camera's too, so a pusher stays
//! connected through a reload that restarts the source.
//!
//! A camera that keeps a pre-roll, writes event clips or a timelapse owns those too ([`crate::events`],
//! [`crate::timelapse`]); a pre-roll or a timelapse keeps an on-demand source open, as recording does.
//!
//! A camera also owns its size/quality [`Variants`], each a hub fed from the camera's (see
//! [`crate::variant`]); they live and end with the clients that ask for them.

use crate::config::CameraSettings;
use crate::hub::{SharedHub, SourceStatus};
use crate::record::RecordingStatus;
use crate::source::controls::Controls;
use crate::source::push::Inlet;
use crate::source::spec::SourceSpec;
use crate::variant::{Lease, Variants};
use mjpegd_core::variant::VariantKey;
use mjpegd_core::HubConfig;
use std::sync::{Arc, Mutex, RwLock};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running camera.
pub struct Camera {
    name: String,
    settings: RwLock<CameraSettings>,
    pub hub: Arc<SharedHub>,
    /// The size/quality variants running now.
    pub variants: Variants,
    /// Cancelled when the camera is removed (or the server stops): ends every client's stream.
    clients: CancellationToken,
    source: Mutex<Option<RunningSource>>,
    /// The recorder's status and task, if the camera records.
    pub recording: Option<Arc<Mutex<RecordingStatus>>>,
    recorder: Mutex<Option<JoinHandle<()>>>,
    /// Event clips, if the camera has `events`.
    pub events: Option<crate::events::Events>,
    /// The timelapse's status and task, if the camera has one.
    pub timelapse: Option<Arc<Mutex<crate::timelapse::TimelapseStatus>>>,
    timelapser: Mutex<Option<JoinHandle<()>>>,
    /// The replays of its recordings being served, and their totals.
    pub replays: crate::replays::Replays,
    /// Counts the camera as watched while it keeps a pre-roll (memory must hold the last seconds).
    _pre_roll_watch: Option<crate::hub::WatchGuard>,
    /// A V4L2 camera's controls (None for other sources).
    controls: Mutex<Option<Arc<Controls>>>,
    /// Where pushed frames come in (used only while the source is `push`).
    pub inlet: Arc<Inlet>,
}

struct RunningSource {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Camera {
    /// Starts the camera's source under its supervisor (and its recorder); they stop when `shutdown` is
    /// cancelled or [`Camera::stop`] is called. The settings were checked when they were parsed: this
    /// cannot fail.
    pub fn start(settings: CameraSettings, shutdown: &CancellationToken) -> Arc<Camera> {
        let (width, height) = settings.options.resolution;
        let hub = SharedHub::new(
            HubConfig {
                buffer_memory: settings.buffer_memory,
            },
            SourceStatus {
                desired_fps: settings.options.fps,
                width,
                height,
                ..SourceStatus::default()
            },
        );
        let pre_roll_watch = settings.pre_roll.map(|keep| {
            hub.keep_pre_roll(keep, settings.buffer_memory);
            hub.watch()
        });
        let clients = shutdown.child_token();
        let controls = controls_for(&settings, None);
        let inlet = Inlet::new();
        let source = spawn_source(&settings, &hub, &clients, controls.clone(), &inlet);
        let (recording, recorder) = match &settings.record {
            Some(record) => {
                let status = Arc::new(Mutex::new(RecordingStatus::default()));
                let task = tokio::spawn(crate::record::record(
                    settings.name.clone(),
                    hub.clone(),
                    record.clone(),
                    status.clone(),
                    clients.child_token(),
                ));
                (Some(status), Some(task))
            }
            None => (None, None),
        };
        let events = settings.events.clone().map(|e| {
            crate::events::Events::new(&settings.name, hub.clone(), e, clients.child_token())
        });
        let (timelapse, timelapser) = match &settings.timelapse {
            Some(t) => {
                let status = Arc::new(Mutex::new(crate::timelapse::TimelapseStatus::default()));
                let task = tokio::spawn(crate::timelapse::run(
                    settings.name.clone(),
                    hub.clone(),
                    t.clone(),
                    status.clone(),
                    clients.child_token(),
                ));
                (Some(status), Some(task))
            }
            None => (None, None),
        };
        let variants = Variants::new(&settings.name, hub.clone(), settings.buffer_memory);
        Arc::new(Camera {
            replays: crate::replays::Replays::default(),
            events,
            timelapse,
            timelapser: Mutex::new(timelapser),
            _pre_roll_watch: pre_roll_watch,
            variants,
            recording,
            recorder: Mutex::new(recorder),
            name: settings.name.clone(),
            settings: RwLock::new(settings),
            hub,
            clients,
            source: Mutex::new(Some(source)),
            controls: Mutex::new(controls),
            inlet,
        })
    }

    /// The camera's controls, if it is a V4L2 camera.
    pub fn controls(&self) -> Option<Arc<Controls>> {
        self.controls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The camera's settings now.
    pub fn settings(&self) -> CameraSettings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A lease on variant `key` (started if it is not running), or why not (past `--max-variants`).
    pub fn lease_variant(&self, key: VariantKey) -> Result<Lease, String> {
        let max = self.settings().max_variants;
        self.variants.lease(key, max, &self.clients)
    }

    /// The source's picture size as last known: the newest frame's (the supervisor reads every frame's
    /// header), else the size the source was opened at or configured with.
    pub fn source_size(&self) -> (u32, u32) {
        let s = self.hub.source();
        (s.width, s.height)
    }

    /// A token for one client's stream: cancelled when the camera goes away or the server stops.
    pub fn client_token(&self) -> CancellationToken {
        self.clients.child_token()
    }

    /// The token whose cancellation ends this camera's streams (as a shutdown does).
    pub fn clients_token(&self) -> &CancellationToken {
        &self.clients
    }

    /// Restarts the source with `new` settings on the same hub; clients stay connected. The caller checks
    /// that only source settings changed ([`crate::reload::plan::can_restart`]).
    ///
    /// When only the `[cameras.NAME.controls]` table changed, the source is not restarted at all: the
    /// new values are applied to the open device (and at every later open).
    pub async fn restart(&self, new: CameraSettings) {
        let old = self.settings();
        let only_controls = old.controls != new.controls && {
            let with_new_controls = CameraSettings {
                controls: new.controls.clone(),
                ..old
            };
            with_new_controls == new
        };
        if only_controls {
            if let Some(controls) = self.controls() {
                controls.set_file(new.controls.clone());
                controls.opened();
            }
            *self.settings.write().unwrap_or_else(|e| e.into_inner()) = new;
            return;
        }
        self.stop_source().await;
        let (width, height) = new.options.resolution;
        self.hub.update_source(|s| {
            s.desired_fps = new.options.fps;
            s.width = width;
            s.height = height;
        });
        let controls = {
            let mut held = self.controls.lock().unwrap_or_else(|e| e.into_inner());
            *held = controls_for(&new, held.take());
            held.clone()
        };
        let source = spawn_source(&new, &self.hub, &self.clients, controls, &self.inlet);
        *self.source.lock().unwrap_or_else(|e| e.into_inner()) = Some(source);
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = new;
    }

    /// Stops the source and ends every client's stream; waits for the supervisor to close the source.
    pub async fn stop(&self) {
        self.clients.cancel();
        // The recorder closes its segment (index, duration, fsync) before the source goes.
        let recorder = self
            .recorder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = recorder {
            let _ = task.await;
        }
        if let Some(events) = &self.events {
            events.finish().await;
        }
        let timelapser = self
            .timelapser
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = timelapser {
            let _ = task.await;
        }
        self.stop_source().await;
    }

    async fn stop_source(&self) {
        let running = self.source.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(running) = running {
            running.stop.cancel();
            let _ = running.task.await;
        }
    }
}

/// The controls a camera with `settings` has: `held` kept (with the file's new table) when it is on the
/// same device, so the HTTP writes survive a reload; new ones for another device; none but for V4L2.
fn controls_for(settings: &CameraSettings, held: Option<Arc<Controls>>) -> Option<Arc<Controls>> {
    let SourceSpec::Device(path) = &settings.source else {
        return None;
    };
    match held {
        Some(c) if c.path() == path => {
            c.set_file(settings.controls.clone());
            Some(c)
        }
        _ => Some(Controls::start(
            &settings.name,
            path,
            settings.controls.clone(),
        )),
    }
}

fn spawn_source(
    settings: &CameraSettings,
    hub: &Arc<SharedHub>,
    parent: &CancellationToken,
    controls: Option<Arc<Controls>>,
    inlet: &Arc<Inlet>,
) -> RunningSource {
    let stop = parent.child_token();
    // A pushed camera's cap: the pusher already connected (which outlives a restart) is held to the new
    // one from its next frame.
    inlet.set_max_fps(settings.options.push.max_fps);
    let task = settings.source.spawn(
        &settings.options,
        hub.clone(),
        settings.supervisor.clone(),
        stop.clone(),
        controls,
        Some(inlet.clone()),
    );
    RunningSource { stop, task }
}
