//! A camera: one source, the supervisor task that runs it, and the hub its clients read from.
//!
//! Each camera has a hub of its own (its buffer memory, lockstep rounds, evictions and counters), so one
//! camera's failure or crowd of clients never touches another's frames. Client and connection limits are
//! the server's, shared by all cameras.

use crate::config::CameraSettings;
use crate::hub::{SharedHub, SourceStatus};
use mjpegd_core::HubConfig;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running camera.
pub struct Camera {
    pub settings: CameraSettings,
    pub hub: Arc<SharedHub>,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Camera {
    /// Starts the camera's source under its supervisor; it stops when `shutdown` is cancelled.
    pub fn start(
        settings: CameraSettings,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Arc<Camera>> {
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
        let stop = shutdown.child_token();
        let task = settings.source.spawn(
            &settings.options,
            hub.clone(),
            settings.supervisor.clone(),
            stop.clone(),
        )?;
        Ok(Arc::new(Camera {
            settings,
            hub,
            stop,
            task: Mutex::new(Some(task)),
        }))
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Stops the source and waits for its supervisor to close it.
    pub async fn stop(&self) {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
