//! camera-streamer's control API, for the clients that speak it (RatOS-configurator), on top of the same
//! per-camera controls worker as the native API ([`crate::source::controls`]).
//!
//! | request | answers |
//! |---|---|
//! | `GET /status` | `{"devices": [{"name", "path", "options": {KEY: {"name", "type", "description": "[min..max]", "value", "menu"}}}]}`: one device per camera |
//! | `GET\|POST /option?device=D&key=K&value=V` | 200 `The 'K' was set to 'V'.`, 500 `Cannot set 'K' to 'V': why`, 404 when no option is passed or no camera is `D` |
//! | `GET\|POST /option?K=V` | the older form: the same, on the camera `device=` names (or the first) |
//!
//! How `device=` maps to cameras: camera-streamer runs one process per camera and calls its sensor
//! `CAMERA`; mjpegd serves every camera in one, so a device is a camera, named in `/status` by the camera's
//! name. `device=` takes that name, the camera's device path (`/dev/video0`) or `CAMERA`, which is the first
//! camera with controls at the top level and the URL's camera under `/webcamN/` (where `/webcamN/status`
//! and `/webcamN/option` see that camera alone). A key matches ignoring case and everything but letters
//! and digits (`ExposureTimeAbsolute` is `exposure_time_absolute`; the names from before kernel 5.16 too);
//! a menu takes its entry's index or label, a boolean true/false/1/0. Writes are an admin's and not
//! cross-site, like every write ([`crate::http::access`]); `/status` is a viewer's.

use super::Ctx;
use crate::camera::Camera;
use crate::http::access;
use crate::http::response::Response;
use crate::source::controls::values::{find_loose, Info, Kind, MAX_KEY, MAX_LABEL};
use crate::source::controls::{Reading, Setting};
use serde_json::{json, Map, Value as Json};
use std::sync::Arc;

/// Which camera-streamer resource a request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// `/status`
    Status,
    /// `/option`
    Option,
}

/// Answers `/status` or `/option` over `scope`: every camera, or the one of a `/webcamN/` URL.
pub async fn answer(ctx: &Ctx<'_>, scope: Option<Arc<Camera>>, which: Which) -> Response {
    let cameras: Vec<Arc<Camera>> = match &scope {
        Some(c) => vec![c.clone()],
        None => ctx.cameras.to_vec(),
    };
    match which {
        Which::Status => {
            if !matches!(ctx.request.method.as_str(), "GET" | "HEAD") {
                return Response::text(405, "only GET and HEAD are served here\n")
                    .header("Allow", "GET, HEAD");
            }
            status(&cameras).await
        }
        Which::Option => {
            if !matches!(ctx.request.method.as_str(), "GET" | "HEAD" | "POST") {
                return Response::text(405, "only GET and POST are served here\n")
                    .header("Allow", "GET, POST");
            }
            option(ctx, &cameras, scope.is_some()).await
        }
    }
}

async fn status(cameras: &[Arc<Camera>]) -> Response {
    let mut devices = Vec::with_capacity(cameras.len());
    for camera in cameras {
        let mut device = json!({ "name": camera.name(), "options": {} });
        if let Some(controls) = camera.controls() {
            device["path"] = json!(controls.path().display().to_string());
            match controls.list().await {
                Ok(list) => device["options"] = options(&list),
                Err(e) => device["error"] = json!(e.message),
            }
        }
        devices.push(device);
    }
    Response::json_value(200, &json!({ "devices": devices }))
}

/// A camera's controls as camera-streamer's `options`.
pub fn options(list: &[Reading]) -> Json {
    let mut out = Map::new();
    for r in list {
        let i = &r.info;
        if !i.kind.supported() {
            continue;
        }
        let (kind, description) = match i.kind {
            Kind::Boolean => ("bool", "[false..true]".to_string()),
            Kind::Menu | Kind::IntegerMenu => ("menu", format!("[{}..{}]", i.min, i.max)),
            _ => ("integer", format!("[{}..{}]", i.min, i.max)),
        };
        let value = match (&r.value, i.kind) {
            (Ok(v), Kind::Boolean) => json!(*v != 0),
            (Ok(v), _) => json!(v),
            (Err(_), _) => Json::Null,
        };
        let mut doc = json!({
            "name": i.name,
            "type": kind,
            "description": description,
            "value": value,
        });
        if !i.menu.is_empty() {
            doc["menu"] = Json::Object(
                i.menu
                    .iter()
                    .map(|m| (m.index.to_string(), json!(m.label)))
                    .collect(),
            );
        }
        out.insert(i.key.clone(), doc);
    }
    Json::Object(out)
}

/// What an `/option` request asks: the device (if named), the key and the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked {
    pub device: Option<String>,
    pub key: String,
    pub value: String,
}

/// The option a query sets: `key=` and `value=`, or the older `K=V` (the first parameter other than
/// `device`). None: nothing passed. Keys and values are bounded.
pub fn asked(query: &[(String, String)]) -> Result<Option<Asked>, String> {
    let get = |n: &str| query.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let device = get("device");
    let pair = match get("key") {
        Some(key) => Some((key, get("value").unwrap_or_default())),
        None => query
            .iter()
            .find(|(k, _)| k != "device" && k != "value")
            .map(|(k, v)| (k.clone(), v.clone())),
    };
    let Some((key, value)) = pair else {
        return Ok(None);
    };
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(format!("a key is 1 to {MAX_KEY} bytes"));
    }
    if value.is_empty() || value.len() > MAX_LABEL {
        return Err(format!("a value is 1 to {MAX_LABEL} bytes"));
    }
    if device.as_ref().is_some_and(|d| d.len() > 256) {
        return Err("a device is at most 256 bytes".into());
    }
    Ok(Some(Asked { device, key, value }))
}

/// The setting `value` means for `info`: a boolean as true/false/1/0/on/off, anything else as text (a
/// number, or a menu entry's label).
pub fn setting(info: &Info, value: &str) -> Setting {
    if info.kind == Kind::Boolean {
        match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "on" | "yes" => return Setting::Bool(true),
            "false" | "0" | "off" | "no" => return Setting::Bool(false),
            _ => {}
        }
    }
    Setting::Label(value.to_string())
}

/// The camera `device` names among `cameras` (`scoped`: the URL named one already).
fn camera_of<'a>(
    cameras: &'a [Arc<Camera>],
    device: Option<&str>,
    scoped: bool,
) -> Option<&'a Arc<Camera>> {
    match device {
        None | Some("") => cameras.iter().find(|c| c.controls().is_some()),
        Some(d) if d.eq_ignore_ascii_case("camera") => {
            if scoped {
                cameras.first()
            } else {
                cameras.iter().find(|c| c.controls().is_some())
            }
        }
        Some(d) => cameras.iter().find(|c| {
            c.name() == d
                || c.controls()
                    .is_some_and(|ctl| ctl.path().to_str() == Some(d))
        }),
    }
}

async fn option(ctx: &Ctx<'_>, cameras: &[Arc<Camera>], scoped: bool) -> Response {
    // Who and from where first: a refused write learns nothing about the cameras.
    if let Err(refusal) = access::check_write(ctx.verdict, &ctx.client, ctx.request, false) {
        return super::refused(refusal);
    }
    let asked = match asked(&ctx.request.query) {
        Ok(Some(a)) => a,
        Ok(None) => {
            return Response::text(
                404,
                "No options passed.\r\nSet: /option?device=CAMERA&key=KEY&value=VALUE (GET /status lists them)\r\n",
            )
            .keep()
        }
        Err(why) => return Response::text(400, format!("{why}\r\n")),
    };
    let Some(camera) = camera_of(cameras, asked.device.as_deref(), scoped) else {
        return Response::text(
            404,
            format!(
                "no camera {:?} with controls: device= takes a camera's name, its device path or CAMERA (GET /status lists them)\r\n",
                asked.device.as_deref().unwrap_or_default()
            ),
        );
    };
    let Some(controls) = camera.controls() else {
        return Response::text(
            404,
            format!(
                "camera {:?} has no controls: it is not a V4L2 camera\r\n",
                camera.name()
            ),
        );
    };
    let (key, value) = (&asked.key, &asked.value);
    let cannot =
        |why: &str| Response::text(500, format!("Cannot set '{key}' to '{value}': {why}\r\n"));
    let list = match controls.list().await {
        Ok(l) => l,
        Err(e) => return Response::text(e.status, format!("{}\r\n", e.message)),
    };
    let infos: Vec<Info> = list.into_iter().map(|r| r.info).collect();
    let Some(info) = find_loose(&infos, key) else {
        return cannot("this camera has no such option (GET /status lists them)");
    };
    match controls
        .write(vec![(info.key.clone(), setting(info, value))])
        .await
    {
        Ok(report) => match report.results.first() {
            Some((_, o)) if o.result == "done" => {
                Response::text(200, format!("The '{key}' was set to '{value}'.\r\n"))
            }
            Some((_, o)) => cannot(o.reason.as_deref().unwrap_or(o.result)),
            None => cannot("not attempted"),
        },
        Err(e) => Response::text(e.status, format!("{}\r\n", e.message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn both_forms_of_option_are_read_and_bounded() {
        assert_eq!(
            asked(&q(&[
                ("device", "CAMERA"),
                ("key", "Brightness"),
                ("value", "10")
            ])),
            Ok(Some(Asked {
                device: Some("CAMERA".into()),
                key: "Brightness".into(),
                value: "10".into()
            }))
        );
        assert_eq!(
            asked(&q(&[("brightness", "10")])),
            Ok(Some(Asked {
                device: None,
                key: "brightness".into(),
                value: "10".into()
            }))
        );
        assert_eq!(asked(&q(&[])), Ok(None));
        assert_eq!(asked(&q(&[("device", "x")])), Ok(None));
        assert!(asked(&q(&[("key", "brightness")])).is_err());
        assert!(asked(&q(&[("key", &"k".repeat(65)), ("value", "1")])).is_err());
        assert!(asked(&q(&[("key", "k"), ("value", &"1".repeat(65))])).is_err());
    }

    fn info(kind: Kind) -> Info {
        crate::source::controls::values::sample_control(0x009a_0901, "Auto Exposure", kind)
    }

    #[test]
    fn values_by_kind() {
        assert_eq!(setting(&info(Kind::Boolean), "TRUE"), Setting::Bool(true));
        assert_eq!(setting(&info(Kind::Boolean), "0"), Setting::Bool(false));
        assert_eq!(
            setting(&info(Kind::Menu), "Manual Mode"),
            Setting::Label("Manual Mode".into())
        );
        assert_eq!(
            setting(&info(Kind::Integer), "1"),
            Setting::Label("1".into())
        );
    }

    #[test]
    fn status_options_are_camera_streamers_shape() {
        let list = [
            Reading {
                info: info(Kind::Menu),
                value: Ok(1),
            },
            Reading {
                info: Info {
                    key: "focus_automatic_continuous".into(),
                    ..info(Kind::Boolean)
                },
                value: Ok(1),
            },
            Reading {
                info: Info {
                    key: "pan_reset".into(),
                    ..info(Kind::Button)
                },
                value: Err("button".into()),
            },
        ];
        let o = options(&list);
        assert_eq!(o["auto_exposure"]["description"], "[0..3]");
        assert_eq!(o["auto_exposure"]["value"], 1);
        assert_eq!(o["auto_exposure"]["menu"]["3"], "Aperture Priority Mode");
        assert_eq!(o["focus_automatic_continuous"]["type"], "bool");
        assert_eq!(o["focus_automatic_continuous"]["value"], true);
        assert!(o.get("pan_reset").is_none());
    }
}
