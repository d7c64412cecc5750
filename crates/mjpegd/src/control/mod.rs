//! The control plane: the one place a new configuration comes from and is applied, whoever asks for it
//! (a SIGHUP after a hand edit, or a write to the cameras API).
//!
//! It holds the configuration as a document (the file as last read or written, parsed with `toml_edit`)
//! and serialises every change to it. A change is made to a copy of the document ([`edit`]), checked
//! whole by the same parser as at startup, saved into the file atomically, and applied with the reload
//! rules ([`crate::reload::Reloader::apply`]): an untouched camera is not disturbed, a changed one restarts
//! its source while its clients stay, a removed one ends its clients' streams cleanly. So the file stays
//! the truth: a SIGHUP after an API write changes nothing.
//!
//! A person's edit is never clobbered: before a write, the file is read again, and if it differs from
//! what mjpegd last read or wrote, the write is refused ([`WriteError::EditedByHand`], a 409) until the
//! edit has been loaded (SIGHUP). Without `--config` there is no file: the document starts as the one
//! camera of the flags (`[cameras.default]`, every key from the flags) and changes live in memory.

pub mod edit;
pub mod sighup;

use crate::config::{self, ConfigError};
use crate::http::app::{App, ReloadStatus};
use crate::reload::Reloader;
use serde_json::{Map, Value as Json};
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use tokio_util::sync::CancellationToken;
use toml_edit::DocumentMut;

/// Why a write was not made.
#[derive(Debug)]
pub enum WriteError {
    /// The change is not valid (400): the key at fault, if known, and why.
    Invalid {
        key: Option<String>,
        message: String,
    },
    /// No such camera (404).
    NoSuchCamera(String),
    /// The file changed on disk since mjpegd last read or wrote it (409).
    EditedByHand,
    /// The file could not be read or saved, or the change not applied (500).
    Failed(String),
}

impl WriteError {
    /// The status and a message for a person.
    pub fn status(&self) -> (u16, String) {
        match self {
            WriteError::Invalid { key: Some(k), message } => (400, format!("{k}: {message}")),
            WriteError::Invalid { key: None, message } => (400, message.clone()),
            WriteError::NoSuchCamera(name) => (404, format!("no camera {name:?}")),
            WriteError::EditedByHand => (
                409,
                "the config file was edited since mjpegd last read it: reload it first (systemctl reload mjpegd, or kill -HUP), then try again; nothing was changed".into(),
            ),
            WriteError::Failed(why) => (500, why.clone()),
        }
    }
}

/// What a successful write did.
#[derive(Debug, Clone)]
pub struct Written {
    /// Saved into the config file (false: no `--config`, the change lasts until a restart).
    pub saved: bool,
    pub status: ReloadStatus,
}

/// The document and the text it came from (what the file held when last read or written).
struct Document {
    text: String,
    doc: DocumentMut,
}

/// The control plane of one server.
pub struct Control {
    reloader: Reloader,
    shutdown: CancellationToken,
    document: tokio::sync::Mutex<Document>,
}

/// A camera change, as the API asks for it.
pub enum Change {
    /// `PUT`: the camera has exactly these keys (created if new).
    Put(String, Map<String, Json>),
    /// `PATCH`: only these keys change (`null` removes one).
    Patch(String, Map<String, Json>),
    /// `DELETE`.
    Delete(String),
}

impl Control {
    /// The control plane of a server started from `reloader` (its file, if any, read at start as
    /// `text`).
    pub fn new(reloader: Reloader, text: Option<String>, shutdown: CancellationToken) -> Control {
        let text = text.unwrap_or_else(|| "[cameras.default]\n".to_string());
        let doc = text.parse().unwrap_or_default();
        Control {
            reloader,
            shutdown,
            document: tokio::sync::Mutex::new(Document { text, doc }),
        }
    }

    /// The config file, if the server runs from one.
    pub fn path(&self) -> Option<&Path> {
        self.reloader.path.as_deref()
    }

    /// The keys of camera `name` as the configuration gives them.
    pub async fn camera_keys(&self, name: &str) -> Option<Map<String, Json>> {
        edit::camera_keys(&self.document.lock().await.doc, name)
    }

    /// Reads the file again and applies it (SIGHUP), recording the outcome in `app.reload`.
    pub async fn reload(&self, app: &App) -> ReloadStatus {
        let mut document = self.document.lock().await;
        let mut status = next_status(app);
        let result = async {
            let Some(path) = self.reloader.path.clone() else {
                return self.reloader.reload_users(app);
            };
            let text = read(&path).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            let file = config::parse(&text, &path, &self.reloader.base)?;
            self.reloader
                .apply(app, file, &self.shutdown, &mut status)
                .await?;
            document.doc = text.parse().unwrap_or_default();
            document.text = text;
            Ok(())
        }
        .await;
        finish(app, &mut status, result, "configuration reloaded");
        status
    }

    /// Makes `change`, checked, saved and applied, or nothing at all.
    pub async fn write(&self, app: &App, change: Change) -> Result<Written, WriteError> {
        let mut document = self.document.lock().await;
        let path = self.reloader.path.clone();
        if let Some(path) = &path {
            let on_disk = read(path).await.map_err(WriteError::Failed)?;
            if on_disk != document.text {
                return Err(WriteError::EditedByHand);
            }
        }
        let mut doc = document.doc.clone();
        let invalid = |e: edit::EditError| WriteError::Invalid {
            key: (!e.key.is_empty()).then_some(e.key),
            message: e.message,
        };
        match &change {
            Change::Put(name, keys) => {
                config::check_name(name)
                    .map_err(|message| WriteError::Invalid { key: None, message })?;
                edit::put_camera(&mut doc, name, keys).map_err(invalid)?
            }
            Change::Patch(name, keys) => {
                if edit::camera_keys(&doc, name).is_none() {
                    return Err(WriteError::NoSuchCamera(name.clone()));
                }
                edit::patch_camera(&mut doc, name, keys).map_err(invalid)?
            }
            Change::Delete(name) => {
                if !edit::remove_camera(&mut doc, name) {
                    return Err(WriteError::NoSuchCamera(name.clone()));
                }
            }
        }
        let text = doc.to_string();
        let shown = path
            .clone()
            .unwrap_or_else(|| PathBuf::from("(configuration)"));
        let file =
            config::parse(&text, &shown, &self.reloader.base).map_err(|e| placed(&text, e))?;
        // Saved first, so that what runs is never ahead of the file; taken back if applying fails.
        if let Some(path) = &path {
            save(path, &text).await.map_err(WriteError::Failed)?;
        }
        let mut status = next_status(app);
        let applied = self
            .reloader
            .apply(app, file, &self.shutdown, &mut status)
            .await;
        if let Err(e) = applied {
            if let Some(path) = &path {
                let _ = save(path, &document.text).await;
            }
            return Err(WriteError::Failed(format!("not applied: {e:#}")));
        }
        finish(
            app,
            &mut status,
            Ok(()),
            "configuration changed over the API",
        );
        document.doc = doc;
        document.text = text;
        Ok(Written {
            saved: path.is_some(),
            status,
        })
    }
}

/// The status of the next reload, counting on from the last.
fn next_status(app: &App) -> ReloadStatus {
    let last = app.reload.lock().unwrap_or_else(|e| e.into_inner());
    ReloadStatus {
        attempts: last.attempts + 1,
        at: Some(SystemTime::now()),
        ..ReloadStatus::default()
    }
}

/// Records how a reload or write ended, in the log and `app.reload`.
fn finish(app: &App, status: &mut ReloadStatus, result: anyhow::Result<()>, done: &str) {
    match result {
        Ok(()) => {
            status.ok = true;
            tracing::info!(
                added = ?status.added,
                removed = ?status.removed,
                restarted = ?status.restarted,
                needs_restart = ?status.needs_restart,
                "{done}"
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "reload refused: the running configuration stays");
            status.error = Some(e.to_string());
        }
    }
    *app.reload.lock().unwrap_or_else(|e| e.into_inner()) = status.clone();
}

/// A parse error of an edited document, placed on the camera key its line holds.
fn placed(text: &str, e: ConfigError) -> WriteError {
    WriteError::Invalid {
        key: edit::key_at_line(text, e.line),
        message: e.message,
    }
}

/// Reads the config file off the runtime, bounded like at startup.
async fn read(path: &Path) -> Result<String, String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        config::read_bounded(&path, config::MAX_FILE)
            .map_err(|e| format!("{}: {e}", path.display()))
    })
    .await
    .map_err(|e| format!("reading the config file: {e}"))?
}

/// Saves `text` into the config file atomically, off the runtime.
async fn save(path: &Path, text: &str) -> Result<(), String> {
    let (path, text) = (path.to_path_buf(), text.to_string());
    tokio::task::spawn_blocking(move || {
        edit::write_atomic(&path, &text).map_err(|e| format!("cannot save {}: {e}", path.display()))
    })
    .await
    .map_err(|e| format!("saving the config file: {e}"))?
}
