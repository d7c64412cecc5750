//! A V4L2 camera's controls over HTTP (the native API).
//!
//! | request | does |
//! |---|---|
//! | `GET /cams/NAME/controls` | every control: key (v4l2-ctl's name), name, type, range, step, default, value read from the camera now, flags, menu entries, the auto control it depends on; and what is kept (`wanted`: the file's table, the HTTP writes) |
//! | `PATCH /cams/NAME/controls` | `{"auto_exposure": "Manual Mode", "exposure_time_absolute": 250}`: a result per key, then every control read back |
//! | `PATCH /cams/NAME/controls?save=1` | the same, and the values the camera took are also written into the camera's `[cameras.NAME.controls]` in the config file, through the control plane ([`crate::control`]: a hand edit is never clobbered, the camera's clients see nothing) |
//! | `POST /cams/NAME/controls/reset` | every control back to the driver's default (or the file's value); the HTTP writes are forgotten |
//!
//! A relayed ESP32-CAM's settings are served here too, under the same names where they mean the same thing
//! ([`super::esp32::controls`]). Another camera has no controls here: 404 with the reason. Reads are a viewer's;
//! writes are an admin's, not made cross-site, with a JSON body of at most [`MAX_BODY`]
//! ([`crate::http::access`]). A write is answered 200 when the request could be carried out, whatever each
//! key's result (each says `done` or why not); 400 when the body is not a JSON object of at most
//! [`MAX_KEYS`] keys; 503 when the camera cannot be reached (unplugged) or is busy.

use super::Ctx;
use crate::camera::Camera;
use crate::control::Change;
use crate::http::access;
use crate::http::body::Body;
use crate::http::response::Response;
use crate::source::controls::values;
use crate::source::controls::{Controls, Reading, Report, Setting, Unreachable, MAX_KEYS};
use serde_json::{json, Map, Value as Json};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// Largest request body of a controls write.
pub const MAX_BODY: usize = 16 * 1024;

/// Which controls resource a request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// `/cams/NAME/controls`
    List,
    /// `/cams/NAME/controls/reset`
    Reset,
}

/// Answers a controls request; a write's body is read from `body`.
pub async fn answer<R: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx<'_>,
    camera: &Arc<Camera>,
    which: Which,
    body: &mut Body<'_, R>,
) -> Response {
    let method = ctx.request.method.as_str();
    let allow = match which {
        Which::List => "GET, HEAD, PATCH",
        Which::Reset => "POST",
    };
    let write = match (which, method) {
        (Which::List, "GET" | "HEAD") => false,
        (Which::List, "PATCH") | (Which::Reset, "POST") => true,
        _ => return error(405, format!("method not allowed here: {allow}")).header("Allow", allow),
    };
    let Some(controls) = camera.controls() else {
        if crate::source::esp32::control_address(&camera.settings()).is_some() {
            // A relayed ESP32-CAM: its settings under the same names, read and written here, sent there.
            let asked = if !write {
                None
            } else {
                let with_body = which == Which::List;
                if let Err(refusal) =
                    access::check_write(ctx.verdict, &ctx.client, ctx.request, with_body)
                {
                    return super::refused(refusal);
                }
                if !with_body {
                    return error(
                        501,
                        "an ESP32-CAM's firmware keeps no defaults to reset to: set the values you want"
                            .into(),
                    );
                }
                match read_values(ctx, body).await {
                    Ok(a) => Some(a),
                    Err(response) => return response,
                }
            };
            return super::esp32::controls(camera, asked).await;
        }
        return error(
            404,
            format!(
                "camera {:?} has no controls here: it is not a V4L2 camera ({})",
                camera.name(),
                camera.settings().source
            ),
        )
        .keep();
    };
    if !write {
        return match controls.list().await {
            Ok(list) => Response::json_value(200, &listing(camera, &controls, &list)),
            Err(e) => unreachable(e),
        };
    }
    let with_body = which == Which::List;
    // Who and from where first: a refused write is answered before its body is read.
    if let Err(refusal) = access::check_write(ctx.verdict, &ctx.client, ctx.request, with_body) {
        return super::refused(refusal);
    }
    let save = with_body
        && ctx
            .request
            .param("save")
            .is_some_and(|v| matches!(v, "1" | "true" | "yes"));
    let result = if with_body {
        let asked = match read_values(ctx, body).await {
            Ok(a) => a,
            Err(response) => return response,
        };
        controls.write(asked).await
    } else {
        controls.reset().await
    };
    match result {
        Ok(report) => {
            let mut doc = report_json(camera, &controls, &report);
            if save {
                doc["save"] = save_to_file(ctx, camera, &report).await;
            }
            Response::json_value(200, &doc)
        }
        Err(e) => unreachable(e),
    }
}

/// Writes the values the camera took into its `[cameras.NAME.controls]` (a menu by its label), keeping
/// the rest of the table; what the control plane answered.
async fn save_to_file(ctx: &Ctx<'_>, camera: &Camera, report: &Report) -> Json {
    let control = ctx.control;
    let taken: Vec<(String, Json)> = report
        .results
        .iter()
        .filter(|(_, o)| o.result == "done")
        .filter_map(|(key, _)| {
            let r = report
                .controls
                .iter()
                .find(|r| values::canonical(&r.info.key) == values::canonical(key))?;
            let v = *r.value.as_ref().ok()?;
            let shown = match r.info.label(v) {
                Some(label) if r.info.kind == values::Kind::Menu => json!(label),
                _ => r.info.shown(v),
            };
            Some((r.info.key.clone(), shown))
        })
        .collect();
    if taken.is_empty() {
        return json!({ "saved": false, "note": "the camera took no value: nothing to save" });
    }
    let name = camera.name().to_string();
    let mut table = control
        .camera_keys(&name)
        .await
        .and_then(|keys| keys.get("controls").and_then(Json::as_object).cloned())
        .unwrap_or_default();
    for (key, value) in taken {
        // One key per control, in the spelling the file already uses when it has one.
        let existing = table
            .keys()
            .find(|k| values::canonical(k) == values::canonical(&key))
            .cloned();
        table.insert(existing.unwrap_or(key), value);
    }
    let change = Change::Patch(
        name,
        Map::from_iter([("controls".to_string(), Json::Object(table))]),
    );
    match control.write(ctx.app, change).await {
        Ok(written) => {
            let mut doc = json!({ "saved": written.saved });
            if !written.saved {
                doc["note"] =
                    json!("mjpegd runs without --config: kept until it restarts, in no file");
            }
            doc
        }
        Err(e) => json!({ "saved": false, "error": e.status().1 }),
    }
}

/// The body of a PATCH: a JSON object of at most [`MAX_KEYS`] keys, each a number, true/false or a label.
async fn read_values<R: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx<'_>,
    body: &mut Body<'_, R>,
) -> Result<Vec<(String, Setting)>, Response> {
    let map = super::json_object(
        ctx,
        body,
        MAX_BODY,
        "a JSON object of controls and values, e.g. {\"auto_exposure\": \"Manual Mode\", \"exposure_time_absolute\": 250}",
    )
    .await?;
    if map.is_empty() || map.len() > MAX_KEYS {
        return Err(error(
            400,
            format!("expected 1 to {MAX_KEYS} controls, not {}", map.len()),
        ));
    }
    let mut asked = Vec::with_capacity(map.len());
    for (key, value) in map {
        if !values::valid_key(&key) {
            return Err(error_key(
                400,
                format!("{key:?} is not a control key: v4l2-ctl's name, a-z, 0-9 and _ (GET the controls to list them)"),
                &key,
            ));
        }
        match Setting::from_json(&value) {
            Ok(s) => asked.push((key, s)),
            Err(e) => return Err(error_key(400, format!("{key}: {e}"), &key)),
        }
    }
    Ok(asked)
}

fn listing(camera: &Camera, controls: &Controls, list: &[Reading]) -> Json {
    let wanted = controls.wanted();
    json!({
        "camera": camera.name(),
        "device": controls.path().display().to_string(),
        "controls": list.iter().map(|r| reading_json(r, list)).collect::<Vec<_>>(),
        "wanted": {
            "file": wanted.file.iter().map(|(k, s)| (k.clone(), s.to_json())).collect::<Map<_, _>>(),
            "http": wanted.http.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<_, _>>(),
        },
    })
}

fn report_json(camera: &Camera, controls: &Controls, report: &Report) -> Json {
    let results: Map<String, Json> = report
        .results
        .iter()
        .map(|(key, o)| {
            let mut doc = json!({ "result": o.result });
            if let Some(reason) = &o.reason {
                doc["reason"] = json!(reason);
            }
            if let Some(value) = &o.value {
                doc["value"] = value.clone();
            }
            (key.clone(), doc)
        })
        .collect();
    let all_done = report.results.iter().all(|(_, o)| o.result == "done");
    let mut out = Map::new();
    out.insert("ok".into(), json!(all_done));
    out.insert("results".into(), Json::Object(results));
    if let Json::Object(rest) = listing(camera, controls, &report.controls) {
        out.extend(rest);
    }
    Json::Object(out)
}

/// A reading as JSON: every field the listing shows.
fn reading_json(r: &Reading, all: &[Reading]) -> Json {
    let i = &r.info;
    let mut doc = json!({
        "key": i.key,
        "name": i.name,
        "id": i.id,
        "type": i.kind.as_str(),
        "min": i.min,
        "max": i.max,
        "step": i.step,
        "default": i.shown(i.default),
        "flags": values::flag_names(i.flags),
        "writable": i.kind.supported()
            && !i.has(values::FLAG_READ_ONLY)
            && !i.has(values::FLAG_DISABLED),
    });
    match &r.value {
        Ok(v) => {
            doc["value"] = i.shown(*v);
            if let Some(label) = i.label(*v) {
                doc["value_label"] = json!(label);
            }
        }
        Err(why) => {
            doc["value"] = Json::Null;
            doc["unreadable"] = json!(why);
        }
    }
    if !i.menu.is_empty() {
        doc["menu"] = i
            .menu
            .iter()
            .map(|m| json!({ "value": m.index, "label": m.label }))
            .collect();
    }
    if let Some(auto) = i
        .depends_on()
        .and_then(|id| all.iter().find(|c| c.info.id == id))
    {
        doc["depends_on"] = json!(auto.info.key);
    }
    doc
}

fn unreachable(e: Unreachable) -> Response {
    error(e.status, e.message)
}

fn error(status: u16, message: String) -> Response {
    super::json_error(status, message)
}

fn error_key(status: u16, message: String, key: &str) -> Response {
    Response::json_value(status, &json!({ "error": message, "key": key }))
}
