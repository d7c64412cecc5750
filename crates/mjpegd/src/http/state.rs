//! The `/state` documents: what every camera and the server are doing, as JSON.
//!
//! A camera's document keeps µStreamer's shape (`result.source`, `result.stream`), so tools written for it
//! read mjpegd, with mjpegd's additions (every client, the hub's buffer, evictions, refusals). `/state`
//! is the first camera's document plus `result.cameras`, the list of every camera with its URLs in each
//! dialect.
//!
//! A camera's document also lists its running size/quality variants (`result.variants`): each one's size
//! and quality, its clients, the frame rate it delivers, and what its transcoder costs and skips.
//!
//! The client lists are bounded: a document lists one page of at most [`MAX_LISTED`] clients in id order
//! (`?clients_offset=N&clients_limit=M`), with `clients_total`, so a camera with thousands of streams
//! gives a document of bounded size. Documents are built off the runtime and shared while a camera is
//! crowded ([`super::state_cache`]).

use super::state_cache::{Key, CROWD};
use crate::camera::Camera;
use crate::http::app::App;
use crate::hub::ClientEntry;
use mjpegd_core::hub::ClientPosition;
use mjpegd_core::EvictCause;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

/// Clients listed in one document at most (per list: the camera's, each variant's).
pub const MAX_LISTED: usize = 100;

/// Which clients a document lists: from `offset` in id order, at most `limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub offset: usize,
    pub limit: usize,
}

impl Default for Page {
    fn default() -> Page {
        Page {
            offset: 0,
            limit: MAX_LISTED,
        }
    }
}

impl Page {
    /// The page `?clients_offset=` and `?clients_limit=` ask for, or why they are wrong (a 400).
    pub fn from_query(offset: Option<&str>, limit: Option<&str>) -> Result<Page, String> {
        let mut page = Page::default();
        if let Some(v) = offset.filter(|v| !v.is_empty()) {
            // Past the end is an empty page, however far.
            page.offset = match v.parse::<u64>() {
                Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
                Err(_) => return Err(format!("clients_offset must be a whole number, not {v:?}")),
            };
        }
        if let Some(v) = limit.filter(|v| !v.is_empty()) {
            page.limit = match v.parse::<usize>() {
                Ok(n) if n <= MAX_LISTED => n,
                _ => {
                    return Err(format!(
                        "clients_limit must be a whole number from 0 to {MAX_LISTED}, not {v:?}"
                    ))
                }
            };
        }
        Ok(page)
    }
}

/// The `/state` document (`camera`: None) or a camera's, as JSON text: built on the blocking pool, one
/// build at a time, and shared for a short while when the camera is crowded.
pub async fn state_body(
    app: &Arc<App>,
    camera: Option<Arc<Camera>>,
    show_clients: bool,
    page: Page,
) -> Arc<String> {
    let key = Key {
        camera: camera.as_ref().map(|c| c.name().to_string()),
        show_clients,
        offset: page.offset,
        limit: page.limit,
    };
    let builder = app.clone();
    app.state_cache
        .get(key, move || {
            let app = &builder;
            let (doc, clients) = match &camera {
                Some(camera) => (
                    camera_state(app, camera, show_clients, page),
                    camera.hub.client_count(),
                ),
                None => (
                    state_json(app, show_clients, page),
                    app.cameras().first().map_or(0, |c| c.hub.client_count()),
                ),
            };
            (doc.to_string(), clients >= CROWD)
        })
        .await
}

/// The `/state` document: the first camera's in µStreamer's shape (so its tools read it) with mjpegd's
/// additions, and `cameras`, every camera by name with its state, clients and URLs. Without
/// `show_clients` (a request let in by an access key: a player, not an operator) each client's address
/// and user agent are left out.
pub fn state_json(app: &App, show_clients: bool, page: Page) -> serde_json::Value {
    let all = app.cameras();
    let mut doc = match all.first() {
        Some(first) => camera_state(app, first, show_clients, page),
        None => json!({"ok": true, "result": {}}),
    };
    let cameras: Vec<serde_json::Value> = all
        .iter()
        .enumerate()
        .map(|(n, camera)| {
            let mut summary = camera_summary(n, camera);
            // (a pushed camera's pusher, as in its own state)
            if let Some(pusher) = pusher_json(camera, &camera.settings(), show_clients) {
                summary["pusher"] = pusher;
            }
            summary
        })
        .collect();
    doc["result"]["cameras"] = json!(cameras);
    let reload = app.reload.lock().unwrap_or_else(|e| e.into_inner()).clone();
    doc["result"]["config"] = json!({
        "reloads": reload.attempts,
        "last_reload_at": reload.at.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        "last_reload_ok": reload.ok,
        "error": reload.error,
        "added": reload.added,
        "removed": reload.removed,
        "restarted": reload.restarted,
        "needs_restart": reload.needs_restart,
    });
    doc
}

/// One camera as the camera lists show it (`/state` `cameras`, the API): its name, source state,
/// picture, clients and URLs; `n` is its place in the file.
pub fn camera_summary(n: usize, camera: &Camera) -> serde_json::Value {
    let hub = &camera.hub;
    let source = hub.source();
    let name = camera.name();
    let mut urls = json!({
        "stream": format!("/cams/{name}/stream"),
        "snapshot": format!("/cams/{name}/snapshot"),
        "state": format!("/cams/{name}/state"),
        "page": format!("/cams/{name}/"),
        "mjpg_streamer": {
            "stream": format!("/?action=stream_{n}"),
            "snapshot": format!("/?action=snapshot_{n}"),
        },
        "crowsnest": {
            "stream": format!("{}?action=stream", crowsnest(n)),
            "snapshot": format!("{}?action=snapshot", crowsnest(n)),
        },
    });
    if n == 0 {
        urls["aliases"] = json!([
            "/stream",
            "/snapshot",
            "/mjpeg/1",
            "/jpg",
            "/?action=stream",
            "/?action=snapshot"
        ]);
    }
    json!({
        "name": name,
        "description": source.description,
        "state": source.state.as_str(),
        "online": source.online,
        "error": source.error,
        "resolution": {"width": source.width, "height": source.height},
        "captured_fps": hub.measured_fps(),
        "clients": hub.client_count(),
        "replays": camera.replays.totals().active,
        "variants": camera.variants.list().len(),
        "urls": urls,
    })
}

/// One stream client as `/state` lists it.
fn client_json(
    c: &ClientEntry,
    pos: Option<ClientPosition>,
    now: SystemTime,
    show_clients: bool,
) -> serde_json::Value {
    let sent = c.frames_sent.load(Ordering::Relaxed);
    let secs = now
        .duration_since(c.since)
        .unwrap_or_default()
        .as_secs_f64()
        .max(0.001);
    let mut client = json!({
        "id": c.id.to_string(),
        "fps": (sent as f64 / secs * 10.0).round() / 10.0,
        "delivery": c.policy.as_str(),
        "fps_cap": c.fps_cap,
        "frames_sent": sent,
        "frames_skipped": c.frames_skipped.load(Ordering::Relaxed),
        "bytes_sent": c.bytes_sent.load(Ordering::Relaxed),
        "frames_behind": pos.map(|p| p.behind),
        "last_sequence": pos.and_then(|p| p.last_seq),
        "connected_since": humantime::format_rfc3339_seconds(c.since).to_string(),
    });
    if show_clients {
        client["address"] = json!(c.addr.to_string());
        client["user_agent"] = json!(c.user_agent);
    }
    client
}

/// The replays of a camera's recordings running now (one page, like its clients) and their totals;
/// addresses and User-Agents only where clients' are shown.
fn replays_json(
    camera: &Camera,
    page: Page,
    limit: usize,
    now: SystemTime,
    show_clients: bool,
) -> serde_json::Value {
    let (running, list) = camera.replays.page(page.offset, limit);
    let totals = camera.replays.totals();
    let list: Vec<_> = list
        .iter()
        .map(|r| {
            let sent = r.frames_sent.load(Ordering::Relaxed);
            let secs = now
                .duration_since(r.since)
                .unwrap_or_default()
                .as_secs_f64()
                .max(0.001);
            let (speed, rate) = match r.playback {
                mjpegd_core::replay::Playback::Recorded { speed } => (Some(speed), None),
                mjpegd_core::replay::Playback::Rate(rate) => (None, Some(rate)),
            };
            let mut v = json!({
                "id": r.id,
                "kind": "replay",
                "file": r.file,
                "start_seconds": r.start_seconds,
                "speed": speed,
                "rate": rate,
                "fps_cap": r.fps_cap,
                "fps": (sent as f64 / secs * 10.0).round() / 10.0,
                "frames_sent": sent,
                "bytes_sent": r.bytes_sent.load(Ordering::Relaxed),
                "connected_since": humantime::format_rfc3339_seconds(r.since).to_string(),
            });
            if show_clients {
                v["address"] = json!(r.addr.to_string());
                v["user_agent"] = json!(r.user_agent);
            }
            v
        })
        .collect();
    json!({
        "running": running,
        "list": list,
        "started": totals.started,
        "frames_sent": totals.frames,
        "bytes_sent": totals.bytes,
    })
}

/// A pushed camera's pusher (null when none pushes, and for cameras that are not pushed); its address
/// only where clients' addresses are shown.
fn pusher_json(
    camera: &Camera,
    settings: &crate::config::CameraSettings,
    show_clients: bool,
) -> Option<serde_json::Value> {
    if !matches!(settings.source, crate::source::spec::SourceSpec::Push(_)) {
        return None;
    }
    Some(camera.inlet.pusher().map_or(serde_json::Value::Null, |p| {
        let mut v = json!({
            "protocol": p.protocol.map(|p| p.as_str()),
            "since": humantime::format_rfc3339_seconds(p.since).to_string(),
            "frames": p.frames,
            "fps": p.fps(),
        });
        if show_clients {
            v["address"] = json!(p.addr.to_string());
        }
        v
    }))
}

/// A pushed camera's counters of what its pushers sent that did not become frames, by cause, and of
/// takeovers (null for cameras that are not pushed).
fn push_json(camera: &Camera, settings: &crate::config::CameraSettings) -> serde_json::Value {
    if !matches!(settings.source, crate::source::spec::SourceSpec::Push(_)) {
        return serde_json::Value::Null;
    }
    let lost: serde_json::Map<_, _> = camera
        .inlet
        .losses()
        .iter()
        .map(|(cause, n)| (cause.as_str().to_string(), json!(n)))
        .collect();
    json!({
        "lost": lost,
        "takeovers": camera.inlet.takeovers(),
        "takeover": settings.options.push.takeover,
        "max_fps": settings.options.push.max_fps,
    })
}

/// crowsnest's path of the camera at `index`: `/webcam/`, `/webcam2/`, ...
fn crowsnest(index: usize) -> String {
    match index {
        0 => "/webcam/".to_string(),
        n => format!("/webcam{}/", n + 1),
    }
}

/// One camera's `/state` document (`/cams/NAME/state`), in the single-camera shape.
/// Its clients are one page of at most [`MAX_LISTED`] (`clients`, `stream.clients_stat` and each variant's
/// `clients_list`), with the totals beside them.
pub fn camera_state(
    app: &App,
    camera: &Camera,
    show_clients: bool,
    page: Page,
) -> serde_json::Value {
    let hub = &camera.hub;
    let settings = camera.settings();
    let source = hub.source();
    let stats = hub.stats();
    let captured_fps = hub.measured_fps();
    let now = SystemTime::now();
    let limit = page.limit.min(MAX_LISTED);
    let (total, clients) = hub.clients_page(page.offset, limit);
    let mut clients_stat = serde_json::Map::new();
    let mut list = Vec::with_capacity(clients.len());
    for (c, pos) in &clients {
        let client = client_json(c, *pos, now, show_clients);
        clients_stat.insert(
            c.id.to_string(),
            json!({"fps": client["fps"], "extra_headers": false,
                   "advance_headers": false, "dual_final_frames": false, "zero_data": false, "key": ""}),
        );
        list.push(client);
    }
    let variants: Vec<serde_json::Value> = camera
        .variants
        .list()
        .iter()
        .map(|v| {
            let (total, clients) = v.hub.clients_page(page.offset, limit);
            let us = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64 / 1000.0;
            json!({
                "width": v.key.width,
                "height": v.key.height,
                "quality": v.key.quality,
                "since": humantime::format_rfc3339_seconds(v.since).to_string(),
                "fps": v.hub.measured_fps(),
                "frames": v.stats.frames.load(Ordering::Relaxed),
                "frames_skipped": v.stats.skipped.load(Ordering::Relaxed),
                "errors": v.stats.errors.load(Ordering::Relaxed),
                "transcode_ms": {"last": us(&v.stats.last_us), "average": us(&v.stats.average_us)},
                "clients": total,
                "clients_list": clients.iter().map(|(c, pos)| client_json(c, *pos, now, show_clients)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let evictions: serde_json::Map<_, _> = EvictCause::ALL
        .iter()
        .zip(stats.evictions)
        .map(|(c, n)| (c.as_str().to_string(), json!(n)))
        .collect();
    json!({
        "ok": true,
        "result": {
            "instance_id": app.instance_id,
            "name": camera.name(),
            "recording": camera.recording.as_ref().map(|r| {
                let r = r.lock().unwrap_or_else(|e| e.into_inner()).clone();
                json!({
                    "dir": r.dir.display().to_string(),
                    "state": r.state.as_str(),
                    "segment": r.segment,
                    "segment_started": r.segment_started.map(|t| humantime::format_rfc3339_millis(t).to_string()),
                    "frames_written": r.frames_written,
                    "frames_lost": r.frames_lost,
                    "bytes": r.bytes,
                    "last_error": r.last_error,
                    "size_changes_absorbed": r.size_changes_absorbed,
                })
            }),
            "pre_roll": settings.pre_roll.zip(hub.pre_roll_stats(now)).map(|(keep, p)| json!({
                "keep_seconds": keep.as_secs_f64(),
                "seconds": p.span_us as f64 / 1e6,
                "frames": p.frames,
                "bytes": p.bytes,
                "max_bytes": settings.buffer_memory,
                "trimmed_for_memory": p.trimmed,
            })),
            "events": camera.events.as_ref().map(|e| {
                let s = e.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let us = |t: u64| humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_micros(t)).to_string();
                json!({
                    "dir": s.dir.display().to_string(),
                    "active": s.active.as_ref().map(|a| json!({
                        "name": a.name, "label": a.label, "start": us(a.start_us), "end": us(a.end_us), "extended": a.extended,
                    })),
                    "events": s.events,
                    "frames_written": s.frames_written,
                    "frames_lost": s.frames_lost,
                    "bytes": s.bytes,
                    "last_error": s.last_error,
                })
            }),
            "timelapse": camera.timelapse.as_ref().map(|t| {
                let s = t.lock().unwrap_or_else(|e| e.into_inner()).clone();
                json!({
                    "dir": s.dir.display().to_string(),
                    "every_seconds": settings.timelapse.as_ref().map(|t| t.every.as_secs_f64()),
                    "segment": s.segment,
                    "frames_written": s.frames_written,
                    "frames_lost": s.frames_lost,
                    "bytes": s.bytes,
                    "last_error": s.last_error,
                })
            }),
            "replays": replays_json(camera, page, limit, now, show_clients),
            "encoder": {"type": source.encoder.as_str(), "quality": settings.options.quality},
            "source": {
                "description": source.description,
                "state": source.state.as_str(),
                "online": source.online,
                "resolution": {"width": source.width, "height": source.height},
                "desired_fps": source.desired_fps,
                "granted_fps": source.granted_fps,
                "captured_fps": captured_fps,
                "dropped_frames": source.dropped_frames(),
                "dropped": {"not_jpeg": source.dropped_not_jpeg, "picture_too_large": source.dropped_too_large, "untransformable": source.dropped_untransformable},
                "thumbnails_dropped": source.thumbnails_dropped,
                "huffman_tables_added": source.huffman_tables_added,
                "orientation": {"rotate": settings.supervisor.orientation.rotate, "flip": settings.supervisor.orientation.flip.map(|f| f.as_str())},
                "reconnects": source.reconnects,
                "error": source.error,
                "last_error": source.last_error,
                "last_error_at": source.last_error_at.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
                "pusher": pusher_json(camera, &settings, show_clients),
                "push": push_json(camera, &settings),
            },
            "stream": {
                "queued_fps": captured_fps,
                "clients": total,
                "clients_stat": clients_stat,
            },
            "hub": {
                "frames_published": stats.published,
                "backlog_frames": stats.backlog_frames,
                "backlog_bytes": stats.backlog_bytes,
                "buffer_memory": settings.buffer_memory,
                "lockstep_round": stats.lockstep_round,
                "clients_by_delivery": {"latest": stats.clients[0], "all": stats.clients[1], "lockstep": stats.clients[2]},
            },
            "clients": list,
            "clients_total": total,
            "clients_offset": page.offset,
            "clients_limit": limit,
            "built_at": humantime::format_rfc3339_micros(now).to_string(),
            "variants": variants,
            "max_variants": settings.max_variants,
            "evictions": evictions,
            "rejected": {
                "max_clients": app.counters.rejected_max_clients.load(Ordering::Relaxed),
                "max_variants": app.counters.rejected_max_variants.load(Ordering::Relaxed),
                "bad_requests": app.counters.bad_requests.load(Ordering::Relaxed),
                "timeouts": app.counters.timeouts.load(Ordering::Relaxed),
                "unauthorized": app.counters.unauthorized.load(Ordering::Relaxed),
                "password_checks_busy": app.counters.password_checks_busy.load(Ordering::Relaxed),
                "max_connections": app.counters.max_connections.load(Ordering::Relaxed),
                "max_connections_per_address": app.counters.max_connections_per_address.load(Ordering::Relaxed),
                "tls_handshakes": app.counters.tls_handshakes.load(Ordering::Relaxed),
            },
            "connections": {
                "open": app.connections.open(),
                "max": app.connections.max_total(),
                "max_per_address": app.connections.max_per_address(),
            },
        }
    })
}
