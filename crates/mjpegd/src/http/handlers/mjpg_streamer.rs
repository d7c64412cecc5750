//! mjpg-streamer's control API, for the clients that speak it (Octolapse's camera profiles, mjpg-streamer's
//! own `control.htm`), on top of the same per-camera controls worker as the native API
//! ([`crate::source::controls`]): there is no second path to the device.
//!
//! | request | answers |
//! |---|---|
//! | `GET /?action=command&dest=0&plugin=N&id=CID&group=1&value=V` | `text/plain` `CID: 0` when the camera took the value, `CID: -1` when not (always 200, as mjpg-streamer does; the reason is in an `X-Mjpegd-Reason` header) |
//! | `GET /?action=command&id=-1` | the probe Octolapse sends: `-1: -1`, 200 |
//! | `GET /input.json`, `/input_N.json` | the camera's controls in mjpg-streamer's shape: every value a string, the control class headings as type `"6"`, menus as `{"index": "label"}` |
//!
//! Octolapse decides from the `Server` header that it speaks to mjpg-streamer; those URLs carry
//! mjpg-streamer's ([`crate::http::route::server_of`]). A camera without controls (not a V4L2 camera) answers
//! commands 501, which mjpg-streamer answers when commands are disabled and Octolapse reads as "controls
//! disabled"; its `input.json` lists no controls. A write is an admin's and not cross-site, like every
//! write ([`crate::http::access`]); the probe and `input.json` are a viewer's. Only group 1 (V4L2 controls)
//! is served: mjpg-streamer's groups 2 (resolution) and 3 (JPEG quality) are mjpegd's configuration.

use super::Ctx;
use crate::camera::Camera;
use crate::http::access;
use crate::http::response::Response;
use crate::source::controls::values::{Info, Kind};
use crate::source::controls::{Reading, Setting};
use serde_json::{json, Map, Value as Json};
use std::sync::Arc;

/// A command as its query gives it, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub id: i64,
    pub group: i64,
    pub dest: i64,
    pub value: Option<i64>,
}

/// A whole number of at most 11 characters (a 32-bit value with its sign).
fn number(name: &str, v: &str) -> Result<i64, String> {
    if v.is_empty() || v.len() > 11 {
        return Err(format!("{name}= takes a whole number, not {:?}", clip(v)));
    }
    v.parse()
        .map_err(|_| format!("{name}= takes a whole number, not {:?}", clip(v)))
}

fn clip(v: &str) -> String {
    v.chars().take(20).collect()
}

/// The command a query names: `id` is required; `group` defaults to 1 (a V4L2 control), `dest` to 0 (the
/// input), as Octolapse and `control.htm` send them.
pub fn parse(param: impl Fn(&str) -> Option<String>) -> Result<Command, String> {
    let id =
        match param("id") {
            Some(id) => number("id", &id)?,
            None => return Err(
                "no id=...: which control to set (its V4L2 id in decimal; /input.json lists them)"
                    .into(),
            ),
        };
    let group = param("group")
        .map(|g| number("group", &g))
        .transpose()?
        .unwrap_or(1);
    let dest = param("dest")
        .map(|d| number("dest", &d))
        .transpose()?
        .unwrap_or(0);
    let value = param("value").map(|v| number("value", &v)).transpose()?;
    Ok(Command {
        id,
        group,
        dest,
        value,
    })
}

/// Answers `?action=command` for `camera`.
pub async fn command(ctx: &Ctx<'_>, camera: &Arc<Camera>) -> Response {
    let cmd = match parse(|n| ctx.request.param(n).map(str::to_string)) {
        Ok(c) => c,
        Err(why) => return Response::text(400, format!("{why}\n")),
    };
    let Some(controls) = camera.controls() else {
        return Response::text(
            501,
            format!(
                "camera {:?} has no controls: it is not a V4L2 camera, so commands are not served\n",
                camera.name()
            ),
        );
    };
    let answer = |ok: bool, reason: Option<String>| {
        let r = Response::text(200, format!("{}: {}", cmd.id, if ok { 0 } else { -1 }));
        match reason {
            Some(why) => r.header("X-Mjpegd-Reason", &header_safe(&why)),
            None => r,
        }
    };
    if cmd.id == -1 {
        // The probe: nothing to set.
        return answer(false, Some("id -1 is the probe: no control has it".into()));
    }
    if let Err(refusal) = access::check_write(ctx.verdict, &ctx.client, ctx.request, false) {
        return super::refused(refusal);
    }
    if cmd.dest != 0 {
        return answer(
            false,
            Some(format!(
                "dest={}: only the input (dest=0) takes commands",
                cmd.dest
            )),
        );
    }
    if cmd.group != 1 {
        return answer(
            false,
            Some(format!(
                "group={}: only V4L2 controls (group=1) are served; the resolution and JPEG quality are set in mjpegd's configuration",
                cmd.group
            )),
        );
    }
    let Some(value) = cmd.value else {
        return Response::text(400, "no value=...: the value to set\n");
    };
    let list = match controls.list().await {
        Ok(l) => l,
        Err(e) => return Response::text(e.status, format!("{}\n", e.message)),
    };
    let Some(info) = list.iter().map(|r| &r.info).find(|i| i.id as i64 == cmd.id) else {
        return answer(
            false,
            Some(format!("this camera has no control with id {}", cmd.id)),
        );
    };
    match controls
        .write(vec![(info.key.clone(), Setting::Int(value))])
        .await
    {
        Ok(report) => match report.results.first() {
            Some((_, o)) if o.result == "done" => answer(true, None),
            Some((_, o)) => answer(
                false,
                Some(o.reason.clone().unwrap_or_else(|| o.result.to_string())),
            ),
            None => answer(false, Some("not attempted".into())),
        },
        Err(e) => Response::text(e.status, format!("{}\n", e.message)),
    }
}

/// Answers `input.json` for `camera`.
pub async fn input(camera: &Arc<Camera>) -> Response {
    let list = match camera.controls() {
        Some(controls) => match controls.list().await {
            Ok(l) => l,
            Err(e) => return Response::text(e.status, format!("{}\n", e.message)),
        },
        None => Vec::new(),
    };
    Response::json_value(200, &input_json(&list, camera.source_size()))
}

/// mjpg-streamer's `input.json`: the controls with their class headings, every value a string, and the
/// one format mjpegd serves (Motion-JPEG at the source's size).
pub fn input_json(list: &[Reading], (width, height): (u32, u32)) -> Json {
    let mut controls = Vec::with_capacity(list.len() + 2);
    let mut class = None;
    for r in list {
        let c = r.info.id & 0xffff_0000;
        if class != Some(c) {
            class = Some(c);
            controls.push(heading(c));
        }
        controls.push(control(r));
    }
    json!({
        "controls": controls,
        "formats": [{
            "id": "0",
            "name": "Motion-JPEG",
            "compressed": "true",
            "emulated": "false",
            "current": "true",
            "resolutions": { "0": format!("{width}x{height}") },
            "currentResolution": "0",
        }],
    })
}

/// The entry of one control, as input_uvc writes it.
fn control(r: &Reading) -> Json {
    let i: &Info = &r.info;
    let raw_type = match i.kind {
        Kind::Integer => 1,
        Kind::Boolean => 2,
        Kind::Menu => 3,
        Kind::Button => 4,
        Kind::Integer64 => 5,
        Kind::Class => 6,
        Kind::String => 7,
        Kind::Bitmask => 8,
        Kind::IntegerMenu => 9,
        Kind::Other(t) => t,
    };
    let mut doc = json!({
        "name": i.name,
        "id": i.id.to_string(),
        "type": raw_type.to_string(),
        "min": i.min.to_string(),
        "max": i.max.to_string(),
        "step": i.step.to_string(),
        "default": i.default.to_string(),
        "value": r.value.as_ref().map_or(0, |v| *v).to_string(),
        "dest": "0",
        "flags": i.flags.to_string(),
        "group": "1",
    });
    if i.kind == Kind::Menu {
        doc["menu"] = Json::Object(
            i.menu
                .iter()
                .map(|m| (m.index.to_string(), json!(m.label)))
                .collect::<Map<_, _>>(),
        );
    }
    doc
}

/// The heading of a control class (V4L2 lists it before its controls, as type 6, read-only and
/// write-only).
fn heading(class: u32) -> Json {
    let name = match class {
        0x0098_0000 => "User Controls".to_string(),
        0x0099_0000 => "Codec Controls".to_string(),
        0x009a_0000 => "Camera Controls".to_string(),
        0x009c_0000 => "Flash Controls".to_string(),
        0x009d_0000 => "JPEG Compression Controls".to_string(),
        0x009e_0000 => "Image Source Controls".to_string(),
        0x009f_0000 => "Image Processing Controls".to_string(),
        other => format!("Controls 0x{other:08x}"),
    };
    json!({
        "name": name,
        "id": (class | 1).to_string(),
        "type": "6",
        "min": "0",
        "max": "0",
        "step": "0",
        "default": "0",
        "value": "0",
        "dest": "0",
        "flags": "68",
        "group": "1",
    })
}

/// A reason fit for a header line: printable ASCII only, at most 200 characters.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |n| {
            pairs
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn commands_are_parsed_and_bounded() {
        assert_eq!(
            parse(q(&[
                ("dest", "0"),
                ("plugin", "0"),
                ("id", "9963776"),
                ("group", "1"),
                ("value", "-5")
            ])),
            Ok(Command {
                id: 9963776,
                group: 1,
                dest: 0,
                value: Some(-5)
            })
        );
        assert_eq!(
            parse(q(&[("id", "-1")])),
            Ok(Command {
                id: -1,
                group: 1,
                dest: 0,
                value: None
            })
        );
        assert!(parse(q(&[])).unwrap_err().contains("no id="));
        assert!(parse(q(&[("id", "abc")])).is_err());
        assert!(parse(q(&[("id", "1"), ("value", "1.5")])).is_err());
        assert!(parse(q(&[("id", "1"), ("value", "123456789012")])).is_err());
        assert!(parse(q(&[("id", "1"), ("group", "")])).is_err());
    }

    fn reading(id: u32, name: &str, kind: Kind, value: Result<i32, String>) -> Reading {
        Reading {
            info: crate::source::controls::values::sample_control(id, name, kind),
            value,
        }
    }

    #[test]
    fn input_json_is_mjpg_streamers_shape() {
        let list = [
            reading(0x0098_0900, "Brightness", Kind::Integer, Ok(2)),
            reading(0x009a_0901, "Auto Exposure", Kind::Menu, Ok(3)),
            reading(
                0x009a_0903,
                "Pan, Relative",
                Kind::Integer,
                Err("write-only".into()),
            ),
        ];
        let doc = input_json(&list, (640, 480));
        let controls = doc["controls"].as_array().unwrap();
        let names: Vec<&str> = controls
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "User Controls",
                "Brightness",
                "Camera Controls",
                "Auto Exposure",
                "Pan, Relative"
            ]
        );
        for c in controls {
            for (k, v) in c.as_object().unwrap() {
                if k != "menu" {
                    assert!(v.is_string(), "{k} of {c} is not a string");
                }
            }
        }
        assert_eq!(controls[0]["type"], "6");
        assert_eq!(controls[0]["id"], "9961473");
        assert_eq!(controls[1]["id"], "9963776");
        assert_eq!(controls[1]["value"], "2");
        assert_eq!(controls[1]["group"], "1");
        assert_eq!(controls[3]["type"], "3");
        assert_eq!(
            controls[3]["menu"],
            json!({"1": "Manual Mode", "3": "Aperture Priority Mode"})
        );
        assert!(controls[1].get("menu").is_none());
        assert_eq!(controls[4]["value"], "0");
        assert_eq!(doc["formats"][0]["resolutions"]["0"], "640x480");
    }

    #[test]
    fn reasons_fit_a_header_line() {
        assert_eq!(header_safe("a\r\nb\u{e9}"), "a??b?");
        assert_eq!(header_safe(&"x".repeat(300)).len(), 200);
    }
}
