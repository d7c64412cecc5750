//! Event clips: `POST /cams/NAME/events` writes one Matroska file of the frames from `pre` before the
//! trigger to `post` after it, the first part from the camera's pre-roll (memory), the rest as it arrives.
//!
//! The writer is an `all` client of the camera's hub, like the recorder, and takes the pre-roll's frames
//! in the same decision as it joins ([`crate::hub::SharedHub::subscribe_from`]): no frame is missing or
//! written twice where memory ends and live frames begin. Frames lost to a slow disk (the writer evicted
//! past `buffer-memory`) are counted (`frames_lost`) and logged with their sequence numbers; the writer
//! then takes up what the pre-roll still holds and goes on in the same file. File work is on the blocking
//! pool, as the recorder's.
//!
//! A trigger while an event is being written extends it (its end becomes the later of the two) and is
//! answered with the same name; an event lasts at most [`MAX_EVENT`]. The file is named after the
//! camera, the trigger's time and the label, `NAME-20261124T170312.345Z-event-doorbell.mkv`, so the label
//! survives a restart and a camera's events are exactly the names of that form ([`event_of`]); `a`'s
//! events are never `a-b`'s, nor anyone's recording segments. The retention keys (`record-keep`,
//! `record-max-size`) apply to the events folder as to the recordings.

use crate::hub::{ClientMeta, SharedHub};
use crate::record::{prune_matching, segment_start, Segment};
use crate::source::push::PushKey;
use mjpegd_core::parse::jpeg::check;
use mjpegd_core::{Frame, Policy};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// Where a camera's event clips go, and who may trigger them besides admins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSettings {
    pub dir: PathBuf,
    /// `event-key`: triggers events and nothing else.
    pub key: Option<PushKey>,
    /// Events that ended longer ago than this are deleted (`record-keep`).
    pub keep: Option<Duration>,
    /// The camera's events together stay within this many bytes (`record-max-size`).
    pub max_size: Option<u64>,
}

/// The longest `post` a trigger may ask for.
pub const MAX_POST: Duration = Duration::from_secs(600);
/// `post` when the trigger does not say.
pub const DEFAULT_POST: Duration = Duration::from_secs(10);
/// The longest an event lasts, extensions included (from its first frame to its end).
pub const MAX_EVENT: Duration = Duration::from_secs(3600);
/// The longest label.
pub const MAX_LABEL: usize = 32;
/// How long past its end an event waits for a frame when the source is silent, before it closes.
const SILENT_GRACE: Duration = Duration::from_secs(2);
/// Finished events whose frame counts `/recordings` can tell.
const MAX_REMEMBERED: usize = 1000;

/// Whether `label` may name an event: 1 to [`MAX_LABEL`] of `a-z A-Z 0-9 _ -`.
pub fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `camera`'s event file for a trigger at `at_us` µs since the epoch.
pub fn event_name(camera: &str, at_us: u64, label: &str) -> String {
    let seg = crate::record::segment_name(camera, at_us);
    let stem = seg.strip_suffix(".mkv").unwrap_or(&seg);
    format!("{stem}-event-{label}.mkv")
}

/// The trigger time and label in `file` if it is one of `camera`'s event names (exactly as
/// [`event_name`] makes them); `None` for anything else.
pub fn event_of(file: &str, camera: &str) -> Option<(SystemTime, String)> {
    let rest = file.strip_prefix(camera)?.strip_prefix('-')?;
    // YYYYMMDDTHHMMSS.mmmZ
    let (stamp, tail) = rest.split_at_checked(20)?;
    let label = tail.strip_prefix("-event-")?.strip_suffix(".mkv")?;
    if !valid_label(label) {
        return None;
    }
    let t = segment_start(&format!("{camera}-{stamp}.mkv"), camera)?;
    Some((t, label.to_string()))
}

/// What a trigger asks for, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trigger {
    pub label: String,
    pub pre: Duration,
    pub post: Duration,
}

/// Reads a trigger's JSON body (`{"label": "doorbell", "pre": "10s", "post": "20s"}`, every key
/// optional) for a camera whose pre-roll is `pre_roll`; the reason a person can act on when it is wrong.
pub fn parse_trigger(
    body: &serde_json::Map<String, serde_json::Value>,
    pre_roll: Option<Duration>,
) -> Result<Trigger, String> {
    if let Some(k) = body
        .keys()
        .find(|k| !matches!(k.as_str(), "label" | "pre" | "post"))
    {
        return Err(format!(
            "unknown key {:?}: an event takes label, pre and post",
            k.chars().take(40).collect::<String>()
        ));
    }
    let duration = |key: &str| -> Result<Option<Duration>, String> {
        match body.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if s.len() <= 32 => humantime::parse_duration(s)
                .map(Some)
                .map_err(|e| format!("{key}: {s:?}: {e} (a duration like 10s or 500ms)")),
            Some(serde_json::Value::Number(n)) => match n.as_f64() {
                Some(secs) if (0.0..=86_400.0).contains(&secs) => {
                    Ok(Some(Duration::from_secs_f64(secs)))
                }
                _ => Err(format!("{key}: {n} seconds is out of range")),
            },
            Some(_) => Err(format!(
                "{key}: a duration like \"10s\" (or a number of seconds)"
            )),
        }
    };
    let label = match body.get("label") {
        None | Some(serde_json::Value::Null) => "event".to_string(),
        Some(serde_json::Value::String(l)) if valid_label(l) => l.clone(),
        Some(_) => {
            return Err(format!(
                "label: 1 to {MAX_LABEL} characters of a-z, A-Z, 0-9, _ and -"
            ))
        }
    };
    let keep = pre_roll.unwrap_or_default();
    let pre = duration("pre")?.unwrap_or(keep);
    if pre > keep {
        return Err(match pre_roll {
            Some(p) => format!(
                "pre: {} is more than the camera's pre-roll ({}): memory holds no more",
                humantime::format_duration(pre),
                humantime::format_duration(p)
            ),
            None => "pre: this camera keeps no pre-roll (pre-roll = \"30s\" in its table, or --pre-roll)".into(),
        });
    }
    let post = duration("post")?.unwrap_or(DEFAULT_POST);
    if post > MAX_POST {
        return Err(format!(
            "post: at most {} (a later trigger extends the event)",
            humantime::format_duration(MAX_POST)
        ));
    }
    Ok(Trigger { label, pre, post })
}

/// The event being written.
#[derive(Clone, Debug)]
pub struct Active {
    pub name: String,
    pub label: String,
    /// Frames captured from here (µs since the epoch) ...
    pub start_us: u64,
    /// ... up to here are written; a later trigger moves it.
    pub end_us: u64,
    /// Triggers folded into it after the first.
    pub extended: u32,
}

/// A finished event, as `/recordings` shows it.
#[derive(Clone, Debug)]
pub struct Done {
    pub name: String,
    pub frames: u64,
    /// Capture times of its first and last frames (µs since the epoch).
    pub first_us: u64,
    pub last_us: u64,
}

/// What a camera's events are doing, for `/state` and `/recordings`.
#[derive(Clone, Debug, Default)]
pub struct EventStatus {
    pub dir: PathBuf,
    pub active: Option<Active>,
    pub events: u64,
    pub frames_written: u64,
    pub frames_lost: u64,
    pub bytes: u64,
    pub last_error: Option<String>,
    /// The newest finished events of this run.
    pub done: VecDeque<Done>,
}

/// What a trigger was answered with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Triggered {
    pub name: String,
    /// The event's label (the first trigger's, when this one extended it).
    pub label: String,
    /// It extended the event being written instead of starting one.
    pub extended: bool,
    pub start_us: u64,
    pub end_us: u64,
}

/// A camera's event clips: the trigger and the writers it starts.
pub struct Events {
    camera: String,
    hub: Arc<SharedHub>,
    settings: EventSettings,
    pub status: Arc<Mutex<EventStatus>>,
    stop: CancellationToken,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64
}

impl Events {
    pub fn new(
        camera: &str,
        hub: Arc<SharedHub>,
        settings: EventSettings,
        stop: CancellationToken,
    ) -> Events {
        let status = EventStatus {
            dir: settings.dir.clone(),
            ..EventStatus::default()
        };
        Events {
            camera: camera.to_string(),
            hub,
            settings,
            status: Arc::new(Mutex::new(status)),
            stop,
            writer: Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &EventSettings {
        &self.settings
    }

    /// Starts an event for a trigger that came at `at`, or extends the one being written.
    pub fn trigger(&self, t: &Trigger, at: SystemTime) -> Triggered {
        let at_us = micros(at);
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = &mut status.active {
            let limit = a.start_us.saturating_add(MAX_EVENT.as_micros() as u64);
            a.end_us = a
                .end_us
                .max(at_us.saturating_add(t.post.as_micros() as u64))
                .min(limit);
            a.extended += 1;
            return Triggered {
                name: a.name.clone(),
                label: a.label.clone(),
                extended: true,
                start_us: a.start_us,
                end_us: a.end_us,
            };
        }
        let active = Active {
            name: event_name(&self.camera, at_us, &t.label),
            label: t.label.clone(),
            start_us: at_us.saturating_sub(t.pre.as_micros() as u64),
            end_us: at_us.saturating_add(t.post.as_micros() as u64),
            extended: 0,
        };
        status.active = Some(active.clone());
        status.events += 1;
        drop(status);
        let task = tokio::spawn(write_event(
            self.camera.clone(),
            self.hub.clone(),
            self.settings.clone(),
            active.clone(),
            self.status.clone(),
            self.stop.child_token(),
        ));
        *self.writer.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Triggered {
            name: active.name,
            label: active.label,
            extended: false,
            start_us: active.start_us,
            end_us: active.end_us,
        }
    }

    /// Waits for the event being written (after the camera's stop token was cancelled, it closes its file
    /// at once).
    pub async fn finish(&self) {
        let task = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The end of the event being written, as triggers have moved it.
fn end_of(status: &Mutex<EventStatus>) -> u64 {
    status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .active
        .as_ref()
        .map_or(0, |a| a.end_us)
}

/// Ends the event `name` if `t_us` is past its end, in one decision with the triggers: a trigger either
/// came before (and moved the end, so the event goes on) or comes after (and starts another event).
fn ended(status: &Mutex<EventStatus>, name: &str, t_us: u64) -> bool {
    let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
    match &s.active {
        Some(a) if a.name == name && t_us <= a.end_us => false,
        Some(a) if a.name == name => {
            s.active = None;
            true
        }
        _ => true,
    }
}

/// Writes one event: the pre-roll's frames from `active.start_us`, then live ones up to its end.
async fn write_event(
    camera: String,
    hub: Arc<SharedHub>,
    settings: EventSettings,
    active: Active,
    status: Arc<Mutex<EventStatus>>,
    stop: CancellationToken,
) {
    let update = |f: &mut dyn FnMut(&mut EventStatus)| {
        f(&mut status.lock().unwrap_or_else(|e| e.into_inner()))
    };
    let mut file: Option<Segment> = None;
    let mut last: Option<(u64, u64)> = None; // seq and capture time of the last frame taken
    let mut first_us = None;
    let mut failed = 0u64;
    let title = format!("{camera} event {}", active.label);
    tracing::info!(camera = %camera, event = %active.name, "event started");
    'subscribe: loop {
        let since = last.map_or(active.start_us, |(_, ts)| ts.saturating_add(1));
        let (earlier, mut sub) = hub.subscribe_from(
            ClientMeta {
                addr: "0.0.0.0:0".parse().expect("an address"),
                policy: Policy::All,
                fps_cap: None,
                user_agent: "mjpegd event".into(),
                stop: stop.child_token(),
            },
            Some(since),
        );
        let evicted = sub.entry().evicted.clone();
        let mut earlier = earlier.into_iter();
        loop {
            let frame = if let Some(f) = earlier.next() {
                f
            } else {
                let end = end_of(&status);
                let now = micros(SystemTime::now());
                let wait = Duration::from_micros(end.saturating_sub(now)) + SILENT_GRACE;
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => break 'subscribe,
                    _ = evicted.cancelled() => {
                        tracing::warn!(camera = %camera, event = %active.name, "event writer fell behind: it goes on with what memory still holds");
                        continue 'subscribe;
                    }
                    r = sub.next() => match r {
                        Ok(f) => f,
                        Err(_) => continue 'subscribe,
                    },
                    _ = tokio::time::sleep(wait) => {
                        // Silent source: the event ends when its time is up (unless a trigger moved it).
                        let now = micros(SystemTime::now());
                        if ended(&status, &active.name, now.saturating_sub(SILENT_GRACE.as_micros() as u64)) {
                            break 'subscribe;
                        }
                        continue;
                    }
                }
            };
            if frame.timestamp_us < active.start_us {
                continue;
            }
            if ended(&status, &active.name, frame.timestamp_us) {
                break 'subscribe;
            }
            if let Some((seq, _)) = last {
                if frame.seq <= seq {
                    continue;
                }
                let gap = frame.seq - seq - 1;
                if gap > 0 {
                    tracing::warn!(camera = %camera, event = %active.name, first = seq + 1, last = frame.seq - 1, frames = gap, "event lost frames");
                    update(&mut |s| s.frames_lost += gap);
                }
            }
            last = Some((frame.seq, frame.timestamp_us));
            first_us.get_or_insert(frame.timestamp_us);
            match write(file.take(), &settings, &active, &title, frame).await {
                Ok((seg, n)) => {
                    file = Some(seg);
                    update(&mut |s| {
                        s.frames_written += 1;
                        s.bytes += n as u64;
                    });
                }
                Err(e) => {
                    // Logged once per event; the rest are counted (and summed up when it ends).
                    failed += 1;
                    if failed == 1 {
                        tracing::warn!(camera = %camera, event = %active.name, error = %e, "event: writes fail; frames are counted as lost");
                    }
                    update(&mut |s| {
                        s.frames_lost += 1;
                        s.last_error = Some(e.to_string());
                    });
                }
            }
        }
    }
    // Done (also when the camera stops): no trigger extends it from here on; the next one starts another
    // file.
    update(&mut |s| {
        if s.active.as_ref().is_some_and(|a| a.name == active.name) {
            s.active = None;
        }
    });
    if failed > 0 {
        tracing::warn!(camera = %camera, event = %active.name, frames = failed, "event: frames lost to failed writes");
    }
    let Some(seg) = file else {
        tracing::warn!(camera = %camera, event = %active.name, "event ended without a frame: no file");
        return;
    };
    let frames = seg.frames();
    let name = seg.name().to_string();
    let closed = tokio::task::spawn_blocking(move || seg.close()).await;
    if let Ok(Err(e)) = &closed {
        update(&mut |s| s.last_error = Some(e.to_string()));
    }
    let (first_us, last_us) = (first_us.unwrap_or(0), last.map_or(0, |(_, t)| t));
    update(&mut |s| {
        if s.done.len() >= MAX_REMEMBERED {
            s.done.pop_front();
        }
        s.done.push_back(Done {
            name: name.clone(),
            frames,
            first_us,
            last_us,
        });
    });
    tracing::info!(camera = %camera, event = %name, frames, "event written");
    if settings.keep.is_some() || settings.max_size.is_some() {
        let (dir, cam) = (settings.dir.clone(), camera.clone());
        let gone = tokio::task::spawn_blocking(move || {
            prune_matching(
                &dir,
                |f| event_of(f, &cam).is_some(),
                Some(&name),
                settings.keep,
                settings.max_size,
                SystemTime::now(),
            )
        })
        .await;
        if let Ok(Ok(gone)) = gone {
            if !gone.is_empty() {
                tracing::info!(camera = %camera, deleted = ?gone, "old events deleted (record-keep / record-max-size)");
            }
        }
    }
}

/// Writes `frame` into the event's file (opened with the first frame), off the runtime.
async fn write(
    file: Option<Segment>,
    settings: &EventSettings,
    active: &Active,
    title: &str,
    frame: Arc<Frame>,
) -> std::io::Result<(Segment, usize)> {
    let size = check(&frame.jpeg)
        .map(|i| (i.width, i.height))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{e:?}")))?;
    let (dir, name, title) = (settings.dir.clone(), active.name.clone(), title.to_string());
    tokio::task::spawn_blocking(move || {
        let mut seg = match file {
            Some(seg) => seg,
            None => Segment::open_as(&dir, name, title, frame.timestamp_us, size)?,
        };
        let n = seg.write(&frame)?;
        Ok((seg, n))
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn names_carry_the_trigger_time_and_label_and_belong_to_one_camera() {
        let name = event_name("front", 1_795_539_792_345_000, "door-bell_1");
        assert_eq!(name, "front-20261124T170312.345Z-event-door-bell_1.mkv");
        let (t, label) = event_of(&name, "front").unwrap();
        assert_eq!(
            humantime::format_rfc3339_millis(t).to_string(),
            "2026-11-24T17:03:12.345Z"
        );
        assert_eq!(label, "door-bell_1");
        assert!(event_of(&name, "fron").is_none());
        assert!(event_of("a-b-20261124T170312.345Z-event-x.mkv", "a").is_none());
        assert!(event_of("a-20261124T170312.345Z-event-.mkv", "a").is_none());
        assert!(event_of("a-20261124T170312.345Z-event-x y.mkv", "a").is_none());
        assert!(event_of("a-20261124T170312.345Z.mkv", "a").is_none());
        // Not a recording segment either.
        assert!(segment_start(&name, "front").is_none());
    }

    #[test]
    fn triggers_are_bounded() {
        let roll = Some(Duration::from_secs(30));
        let t = parse_trigger(
            &obj(json!({"label": "doorbell", "pre": "10s", "post": "20s"})),
            roll,
        )
        .unwrap();
        assert_eq!(
            t,
            Trigger {
                label: "doorbell".into(),
                pre: Duration::from_secs(10),
                post: Duration::from_secs(20)
            }
        );
        let d = parse_trigger(&obj(json!({})), roll).unwrap();
        assert_eq!(
            (d.label.as_str(), d.pre, d.post),
            ("event", Duration::from_secs(30), DEFAULT_POST)
        );
        assert_eq!(
            parse_trigger(&obj(json!({"pre": 1.5})), roll).unwrap().pre,
            Duration::from_millis(1500)
        );
        for (bad, why) in [
            (json!({"pre": "31s"}), "more than the camera's pre-roll"),
            (json!({"post": "11m"}), "post: at most"),
            (json!({"label": "a/b"}), "label:"),
            (json!({"label": "x".repeat(33)}), "label:"),
            (json!({"label": 5}), "label:"),
            (json!({"pre": "soon"}), "pre:"),
            (json!({"pre": -1}), "out of range"),
            (json!({"when": "now"}), "unknown key"),
        ] {
            let e = parse_trigger(&obj(bad.clone()), roll).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(parse_trigger(&obj(json!({"pre": "1s"})), None)
            .unwrap_err()
            .contains("keeps no pre-roll"));
        assert_eq!(
            parse_trigger(&obj(json!({})), None).unwrap().pre,
            Duration::ZERO
        );
    }
}
