//! `/cams/NAME/control?var=&val=` and `/cams/NAME/status`: a relayed ESP32-CAM's settings, forwarded to
//! its firmware ([`crate::source::esp32`]). `control` changes the camera, so it needs what every write
//! needs (an admin, not made cross-site), though it comes as a GET as the firmware's own page sends it;
//! `status` is a read.

use super::Ctx;
use crate::camera::Camera;
use crate::http::access;
use crate::http::response::Response;
use crate::source::controls::Setting;
use crate::source::esp32::{
    check_control, control_address, forward, native_key, var_of, Answer, ForwardError, VARS,
};
use serde_json::{json, Map, Value as Json};

/// Forwards a setting to the camera.
pub async fn control(ctx: &Ctx<'_>, camera: &Camera) -> Response {
    let checked =
        access::may_write(ctx.verdict, &ctx.client).and_then(|()| access::same_origin(ctx.request));
    if let Err(refusal) = checked {
        return super::refused(refusal);
    }
    let settings = camera.settings();
    if control_address(&settings).is_none() {
        return not_esp32(camera);
    }
    let path = match check_control(ctx.request.param("var"), ctx.request.param("val")) {
        Ok(p) => p,
        Err(why) => return Response::text(400, format!("{why}\n")),
    };
    passed_on(forward(&settings, &path).await)
}

/// The camera's own status document.
pub async fn status(_ctx: &Ctx<'_>, camera: &Camera) -> Response {
    let settings = camera.settings();
    if control_address(&settings).is_none() {
        return not_esp32(camera);
    }
    passed_on(forward(&settings, "status").await)
}

fn not_esp32(camera: &Camera) -> Response {
    Response::text(
        404,
        format!(
            "camera {:?} is not a relayed ESP32-CAM: give it control-url = \"http://ADDRESS/\" (or relay its stream from port 81)\n",
            camera.name()
        ),
    )
    .keep()
}

/// The camera's answer as it came (status, type, body), or why there is none.
fn passed_on(answer: Result<Answer, ForwardError>) -> Response {
    match answer {
        Ok(a) => Response {
            status: a.status,
            content_type: match a.content_type.as_deref() {
                Some(t) if t.starts_with("application/json") => "application/json",
                Some(t) if t.starts_with("text/html") => "text/html; charset=utf-8",
                _ if a.body.is_empty() => "text/plain; charset=utf-8",
                _ => "application/octet-stream",
            },
            headers: String::new(),
            body: a.body,
            close: a.status >= 400,
            server: crate::http::response::SERVER_MJPEGD,
        },
        Err(ForwardError::Busy) => Response::text(
            503,
            "a request to this camera is in flight: try again in a moment\n",
        )
        .header("Retry-After", "1"),
        Err(ForwardError::Unreachable(why)) => {
            Response::text(502, format!("the camera did not answer: {why}\n"))
        }
        Err(ForwardError::TimedOut) => {
            Response::text(504, "the camera did not answer in time (5 s)\n")
        }
    }
}

/// A relayed ESP32-CAM's settings in the native controls API's shape (`/cams/NAME/controls`): read from
/// its `/status`, each var under its native name where one means the same ([`crate::source::esp32::NATIVE`]);
/// `asked` (a PATCH, its sender already checked by [`super::controls`]) is written one `/control` call per
/// key, each checked first, and the values then read back.
pub async fn controls(camera: &Camera, asked: Option<Vec<(String, Setting)>>) -> Response {
    let settings = camera.settings();
    let write = asked.is_some();
    let mut results = Map::new();
    if let Some(asked) = asked {
        for (key, setting) in asked {
            let outcome = match var_of(&key) {
                None => {
                    json!({"result": "unknown", "reason": format!("an ESP32-CAM has no setting {key}; GET the controls to list them")})
                }
                Some((var, min, max)) => {
                    let value = match setting {
                        Setting::Bool(b) => Some(i64::from(b)),
                        Setting::Int(i) => Some(i),
                        Setting::Label(l) => l.parse::<i64>().ok(),
                    };
                    match value {
                        Some(v) if (i64::from(min)..=i64::from(max)).contains(&v) => {
                            match forward(&settings, &format!("control?var={var}&val={v}")).await {
                                Ok(a) if a.status == 200 => json!({"result": "done"}),
                                Ok(a) => {
                                    json!({"result": "failed", "reason": format!("the camera answered {}", a.status)})
                                }
                                Err(e) => json!({"result": "failed", "reason": forward_reason(&e)}),
                            }
                        }
                        Some(v) => {
                            json!({"result": "out_of_range", "reason": format!("{key} takes {min} to {max}, not {v}")})
                        }
                        None => {
                            json!({"result": "invalid", "reason": format!("{key} takes a whole number (or true/false)")})
                        }
                    }
                }
            };
            results.insert(key, outcome);
        }
    }
    let status = match forward(&settings, "status").await {
        Ok(a) if a.status == 200 => a,
        Ok(a) => {
            return Response::text(502, format!("the camera's status answered {}\n", a.status))
        }
        Err(e) => return passed_on(Err(e)),
    };
    let Ok(Json::Object(values)) = serde_json::from_slice::<Json>(&status.body) else {
        return Response::text(502, "the camera's status is not a JSON object\n");
    };
    let list: Vec<Json> = VARS
        .iter()
        .filter_map(|(var, min, max)| {
            let value = values.get(*var)?.as_i64()?;
            let boolean = (*min, *max) == (0, 1);
            Some(json!({
                "key": native_key(var),
                "esp32_var": var,
                "type": if boolean { "bool" } else { "int" },
                "min": min,
                "max": max,
                "step": 1,
                "value": if boolean { json!(value != 0) } else { json!(value) },
                "flags": [],
            }))
        })
        .collect();
    let mut doc = json!({"camera": camera.name(), "esp32": true, "controls": list});
    if write {
        doc["results"] = Json::Object(results);
    }
    Response::json_value(200, &doc)
}

fn forward_reason(e: &ForwardError) -> String {
    match e {
        ForwardError::Busy => "a request to this camera is in flight".into(),
        ForwardError::Unreachable(why) => why.clone(),
        ForwardError::TimedOut => "the camera did not answer in time".into(),
    }
}
