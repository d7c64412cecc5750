//! Which camera and which resource a request names: a pure function from path and query to a [`Route`],
//! unit-tested without sockets.
//!
//! Every dialect users' tools already send reaches a camera:
//! - mjpegd's own: `/cams/NAME/stream`, `/cams/NAME/snapshot`, `/cams/NAME/state`, `/cams/NAME/`, and a V4L2
//!   camera's `/cams/NAME/controls` and `/cams/NAME/controls/reset`;
//! - today's single-camera URLs, which name the first camera: `/stream`, `/snapshot`, `/state`'s top level,
//!   the ESP32 firmware's `/mjpeg/1` and `/jpg`, mjpg-streamer's and µStreamer's `/?action=stream` and
//!   `/?action=snapshot`;
//! - mjpg-streamer's input suffix, counting from 0 in file order: `/?action=stream_N`, `/?action=snapshot_N`;
//! - crowsnest's paths as Mainsail and Fluidd use them: `/webcam/?action=...` is the first camera,
//!   `/webcam2/?action=...` the second, and so on;
//! - mjpg-streamer's control API, as Octolapse uses it: `/?action=command&plugin=N&id=CID&group=1&value=V`
//!   (plugin N is the camera, counting as `stream_N` does), `/input.json` and `/input_N.json`; under a
//!   camera's own base (`/webcam2/`, `/cams/NAME/`) the camera is the base's and only plugin 0 exists, as
//!   behind crowsnest, where each camera has a streamer of its own;
//! - camera-streamer's `/status` and `/option?device=&key=&value=` as RatOS uses them: at the top level for
//!   every camera, under `/webcamN/` for that one.
//!
//! Cache busters and dashboards' extra parameters (`?1700000000`, `timestamp=`, `bypassCache=`, a second
//! `?`) are ignored: only the parameters a route reads matter.

use super::handlers::camera_streamer::Which as CsWhich;
use super::handlers::controls::Which;

/// What a camera's URL asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Stream,
    Snapshot,
    /// The camera's `/state` document.
    State,
    /// The camera's page.
    Page,
    /// The list of the camera's recordings.
    Recordings,
    /// A relayed ESP32-CAM's settings: `/cams/NAME/control?var=&val=`.
    Control,
    /// A relayed ESP32-CAM's status: `/cams/NAME/status`.
    Status,
    /// A V4L2 camera's controls (`/cams/NAME/controls`, `/cams/NAME/controls/reset`).
    Controls(super::handlers::controls::Which),
    /// mjpg-streamer's `?action=command` (a control write, or the `id=-1` probe).
    MjpgCommand,
    /// mjpg-streamer's `input.json`: the camera's controls, every value a string.
    MjpgInput,
    /// A pushed camera's inlet: `/cams/NAME/push`.
    Push,
    /// A camera's event trigger: `POST /cams/NAME/events`.
    Events,
    /// The camera's frames over a WebSocket, one binary message each: `/cams/NAME/ws`.
    Ws,
}

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// A resource of the camera at this index (file order).
    Camera {
        index: usize,
        resource: Resource,
    },
    /// `/state`: every camera (with the first one's document at the top level, as before).
    State,
    /// `/metrics`: the Prometheus exposition.
    Metrics,
    /// `/`: the page.
    Page,
    /// `/recordings`: every recording camera's segments.
    Recordings,
    /// `/recordings/FILE`: one segment file (a plain file name, checked here: no path reaches outside).
    RecordingFile(String),
    /// `/recordings/FILE/stream`: a segment replayed as an MJPEG stream (the name checked as above).
    RecordingStream(String),
    /// A camera that does not exist (by name or number).
    NoSuchCamera(String),
    /// The cameras API (`/api/cameras`, `/api/cameras/NAME`).
    Api(super::handlers::api::Target),
    /// camera-streamer's `/status` and `/option`: of every camera (None) or of one (`/webcamN/status`).
    CameraStreamer {
        camera: Option<usize>,
        which: super::handlers::camera_streamer::Which,
    },
    /// `?action=` with a value no dialect knows.
    UnknownAction(String),
    NotFound,
}

/// Routes `path` with `action` and `plugin` (those query parameters, if any) among `cameras` (names in
/// order).
pub fn route(path: &str, action: Option<&str>, plugin: Option<&str>, cameras: &[&str]) -> Route {
    let camera = |index: usize, resource: Resource| {
        if index < cameras.len() {
            Route::Camera { index, resource }
        } else {
            Route::NoSuchCamera(format!("camera number {index}"))
        }
    };
    match path {
        "/stream" | "/mjpeg/1" => return camera(0, Resource::Stream),
        "/snapshot" | "/jpg" => return camera(0, Resource::Snapshot),
        "/state" => return Route::State,
        "/metrics" => return Route::Metrics,
        "/index.html" => return Route::Page,
        "/recordings" | "/recordings/" => return Route::Recordings,
        "/" => {
            return match action {
                None => Route::Page,
                Some("command") => match plugin_index(plugin) {
                    Some(index) => camera(index, Resource::MjpgCommand),
                    None => Route::NoSuchCamera(format!(
                        "input plugin {:?}",
                        plugin
                            .unwrap_or_default()
                            .chars()
                            .take(20)
                            .collect::<String>()
                    )),
                },
                Some(a) => by_action(a, 0, &camera),
            }
        }
        "/status" => {
            return Route::CameraStreamer {
                camera: None,
                which: CsWhich::Status,
            }
        }
        "/option" => {
            return Route::CameraStreamer {
                camera: None,
                which: CsWhich::Option,
            }
        }
        _ => {}
    }
    if let Some(index) = path.strip_prefix('/').and_then(input_json) {
        return camera(index, Resource::MjpgInput);
    }
    if path.starts_with("/api/") {
        return super::handlers::api::target(path).map_or(Route::NotFound, Route::Api);
    }
    if let Some(file) = path.strip_prefix("/recordings/") {
        if let Some(file) = file.strip_suffix("/stream") {
            return match recording_name(file) {
                Some(name) => Route::RecordingStream(name.to_string()),
                None => Route::NotFound,
            };
        }
        return match recording_name(file) {
            Some(name) => Route::RecordingFile(name.to_string()),
            None => Route::NotFound,
        };
    }
    // crowsnest: /webcam/, /webcam2/, ... with ?action=
    if let Some(rest) = path.strip_prefix("/webcam") {
        if let Some((n, tail)) = rest.split_once('/') {
            let index = match n {
                "" => Some(0),
                digits if digits.bytes().all(|b| b.is_ascii_digit()) && digits.len() <= 3 => digits
                    .parse::<usize>()
                    .ok()
                    .filter(|&k| k >= 2)
                    .map(|k| k - 1),
                _ => None,
            };
            if let Some(index) = index {
                return match tail {
                    "" => match action {
                        Some("command") if !plugin_zero(plugin) => only_plugin_zero(plugin),
                        Some(a) => by_action(a, index, &camera),
                        None => camera(index, Resource::Page),
                    },
                    "status" | "option" if index >= cameras.len() => camera(index, Resource::Page),
                    "status" => Route::CameraStreamer {
                        camera: Some(index),
                        which: CsWhich::Status,
                    },
                    "option" => Route::CameraStreamer {
                        camera: Some(index),
                        which: CsWhich::Option,
                    },
                    _ if input_json(tail) == Some(0) => camera(index, Resource::MjpgInput),
                    _ => Route::NotFound,
                };
            }
        }
    }
    if let Some(rest) = path.strip_prefix("/cams/") {
        let (name, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let Some(index) = cameras.iter().position(|c| *c == name) else {
            return Route::NoSuchCamera(format!("camera {name:?}"));
        };
        return match tail {
            "stream" => Route::Camera {
                index,
                resource: Resource::Stream,
            },
            "snapshot" | "jpg" => Route::Camera {
                index,
                resource: Resource::Snapshot,
            },
            "state" => Route::Camera {
                index,
                resource: Resource::State,
            },
            "recordings" => Route::Camera {
                index,
                resource: Resource::Recordings,
            },
            "control" => Route::Camera {
                index,
                resource: Resource::Control,
            },
            "status" => Route::Camera {
                index,
                resource: Resource::Status,
            },
            "controls" | "controls/" => Route::Camera {
                index,
                resource: Resource::Controls(Which::List),
            },
            "controls/reset" => Route::Camera {
                index,
                resource: Resource::Controls(Which::Reset),
            },
            "input.json" | "input_0.json" => Route::Camera {
                index,
                resource: Resource::MjpgInput,
            },
            "push" => Route::Camera {
                index,
                resource: Resource::Push,
            },
            "events" => Route::Camera {
                index,
                resource: Resource::Events,
            },
            "ws" => Route::Camera {
                index,
                resource: Resource::Ws,
            },
            "" | "index.html" => match action {
                Some("command") if !plugin_zero(plugin) => only_plugin_zero(plugin),
                Some(a) => by_action(a, index, &camera),
                None => Route::Camera {
                    index,
                    resource: Resource::Page,
                },
            },
            _ => Route::NotFound,
        };
    }
    Route::NotFound
}

/// Whether `path` is a camera's push inlet (`/cams/NAME/push`), whose requests present a push key
/// rather than the server's credentials.
pub fn is_push(path: &str) -> bool {
    path.strip_prefix("/cams/")
        .and_then(|rest| rest.strip_suffix("/push"))
        .is_some_and(|name| !name.is_empty() && !name.contains('/'))
}

/// Whether `path` is a camera's event trigger (`/cams/NAME/events`), whose requests may present an
/// event key rather than the server's credentials.
pub fn is_event_trigger(path: &str) -> bool {
    path.strip_prefix("/cams/")
        .and_then(|rest| rest.strip_suffix("/events"))
        .is_some_and(|name| !name.is_empty() && !name.contains('/'))
}

/// mjpg-streamer's `input.json` (camera 0) or `input_N.json` (camera N, at most 3 digits).
fn input_json(name: &str) -> Option<usize> {
    let n = name.strip_prefix("input")?.strip_suffix(".json")?;
    match n.strip_prefix('_') {
        None if n.is_empty() => Some(0),
        Some(d) if !d.is_empty() && d.len() <= 3 && d.bytes().all(|b| b.is_ascii_digit()) => {
            d.parse().ok()
        }
        _ => None,
    }
}

/// The camera a root `?action=command&plugin=N` names: N (absent: 0, as mjpg-streamer defaults it).
fn plugin_index(plugin: Option<&str>) -> Option<usize> {
    match plugin {
        None | Some("") => Some(0),
        Some(p) if p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok(),
        Some(_) => None,
    }
}

/// Under a camera's own base there is one input plugin, number 0.
fn plugin_zero(plugin: Option<&str>) -> bool {
    plugin_index(plugin) == Some(0)
}

fn only_plugin_zero(plugin: Option<&str>) -> Route {
    Route::NoSuchCamera(format!(
        "input plugin {:?} under this camera's URL (it has one: plugin=0)",
        plugin
            .unwrap_or_default()
            .chars()
            .take(20)
            .collect::<String>()
    ))
}

/// The `Server` header a request's answer carries: mjpg-streamer's for its URLs (`?action=` on a base,
/// `input.json`), since clients (Octolapse) check it before they use its control API; mjpegd's otherwise.
pub fn server_of(path: &str, action: Option<&str>) -> &'static str {
    use super::response::{SERVER_MJPEGD, SERVER_MJPG_STREAMER};
    let last = path.rsplit('/').next().unwrap_or_default();
    let base = path == "/"
        || path
            .strip_prefix("/webcam")
            .is_some_and(|rest| rest.ends_with('/') && !rest[..rest.len() - 1].contains('/'))
        || path.strip_prefix("/cams/").is_some_and(|rest| {
            matches!(rest.split_once('/'), None | Some((_, "" | "index.html")))
        });
    let input = input_json(last).is_some()
        && (path.matches('/').count() == 1
            || path.starts_with("/webcam")
            || path.starts_with("/cams/"));
    if (base && action.is_some()) || input {
        SERVER_MJPG_STREAMER
    } else {
        SERVER_MJPEGD
    }
}

/// A segment's file name as mjpegd writes them (`NAME-20261124T170312.345Z.mkv`): letters, digits, `-`,
/// `_` and `.`, no `..`, ending in `.mkv`, at most 200 bytes. Anything else names nothing.
fn recording_name(name: &str) -> Option<&str> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name.ends_with(".mkv")
        && !name.starts_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then_some(name)
}

/// `?action=stream`, `snapshot`, `command` (the plugin already checked), and mjpg-streamer's `stream_N` /
/// `snapshot_N` (N counts from 0).
fn by_action(action: &str, default: usize, camera: &impl Fn(usize, Resource) -> Route) -> Route {
    let (what, index) = match action.split_once('_') {
        Some((what, n))
            if !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            (what, n.parse().unwrap_or(usize::MAX))
        }
        _ => (action, default),
    };
    match what {
        "stream" => camera(index, Resource::Stream),
        "snapshot" => camera(index, Resource::Snapshot),
        "command" if action == "command" => camera(index, Resource::MjpgCommand),
        _ => Route::UnknownAction(action.chars().take(40).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAMS: [&str; 3] = ["front", "printer", "garage"];

    fn r(path: &str, action: Option<&str>) -> Route {
        route(path, action, None, &CAMS)
    }

    fn cam(index: usize, resource: Resource) -> Route {
        Route::Camera { index, resource }
    }

    #[test]
    fn single_camera_urls_name_the_first_camera() {
        use Resource::*;
        assert_eq!(r("/stream", None), cam(0, Stream));
        assert_eq!(r("/mjpeg/1", None), cam(0, Stream));
        assert_eq!(r("/", Some("stream")), cam(0, Stream));
        assert_eq!(r("/snapshot", None), cam(0, Snapshot));
        assert_eq!(r("/jpg", None), cam(0, Snapshot));
        assert_eq!(r("/", Some("snapshot")), cam(0, Snapshot));
        assert_eq!(r("/state", None), Route::State);
        assert_eq!(r("/metrics", None), Route::Metrics);
        assert_eq!(r("/", None), Route::Page);
        assert_eq!(r("/index.html", None), Route::Page);
    }

    #[test]
    fn every_dialect_reaches_the_right_camera() {
        use Resource::*;
        assert_eq!(r("/cams/printer/stream", None), cam(1, Stream));
        assert_eq!(r("/cams/garage/snapshot", None), cam(2, Snapshot));
        assert_eq!(r("/cams/garage/push", None), cam(2, Push));
        assert_eq!(r("/cams/garage/ws", None), cam(2, Ws));
        assert!(is_push("/cams/garage/push"));
        assert!(!is_push("/cams//push") && !is_push("/cams/a/b/push") && !is_push("/push"));
        assert_eq!(r("/cams/garage/events", None), cam(2, Events));
        assert!(is_event_trigger("/cams/garage/events"));
        assert!(!is_event_trigger("/cams//events") && !is_event_trigger("/cams/a/b/events"));
        assert_eq!(r("/cams/garage/state", None), cam(2, State));
        assert_eq!(r("/cams/garage/control", None), cam(2, Control));
        assert_eq!(r("/cams/garage/status", None), cam(2, Status));
        assert_eq!(r("/cams/front/", None), cam(0, Page));
        assert_eq!(r("/cams/front", None), cam(0, Page));
        assert_eq!(r("/cams/printer/", Some("stream")), cam(1, Stream));
        assert_eq!(r("/", Some("stream_0")), cam(0, Stream));
        assert_eq!(r("/", Some("stream_2")), cam(2, Stream));
        assert_eq!(r("/", Some("snapshot_1")), cam(1, Snapshot));
        assert_eq!(r("/webcam/", Some("stream")), cam(0, Stream));
        assert_eq!(r("/webcam2/", Some("snapshot")), cam(1, Snapshot));
        assert_eq!(r("/webcam3/", Some("stream")), cam(2, Stream));
        assert_eq!(r("/webcam2/", None), cam(1, Page));
        assert_eq!(
            r("/cams/printer/controls", None),
            cam(1, Controls(Which::List))
        );
        assert_eq!(
            r("/cams/printer/controls/reset", None),
            cam(1, Controls(Which::Reset))
        );
        assert_eq!(r("/cams/printer/controls/other", None), Route::NotFound);
    }

    #[test]
    fn unknown_cameras_actions_and_paths_are_told_apart() {
        assert!(matches!(
            r("/cams/attic/stream", None),
            Route::NoSuchCamera(_)
        ));
        assert!(matches!(r("/", Some("stream_3")), Route::NoSuchCamera(_)));
        assert!(matches!(
            r("/", Some("stream_99999999999")),
            Route::UnknownAction(_)
        ));
        assert!(matches!(
            r("/webcam4/", Some("stream")),
            Route::NoSuchCamera(_)
        ));
        assert_eq!(r("/webcam1/", Some("stream")), Route::NotFound);
        assert_eq!(r("/webcamx/", Some("stream")), Route::NotFound);
        assert!(matches!(r("/", Some("record")), Route::UnknownAction(_)));
        assert_eq!(r("/cams/front/nothing", None), Route::NotFound);
        assert_eq!(r("/streams", None), Route::NotFound);
        assert_eq!(r("//state", None), Route::NotFound);
        assert!(matches!(
            route("/stream", None, None, &[]),
            Route::NoSuchCamera(_)
        ));
    }

    #[test]
    fn recordings_are_plain_file_names_only() {
        assert_eq!(r("/recordings", None), Route::Recordings);
        assert_eq!(
            r("/cams/garage/recordings", None),
            cam(2, Resource::Recordings)
        );
        assert_eq!(
            r("/recordings/front-20261124T170312.345Z.mkv", None),
            Route::RecordingFile("front-20261124T170312.345Z.mkv".into())
        );
        assert_eq!(
            r("/recordings/front-20261124T170312.345Z.mkv/stream", None),
            Route::RecordingStream("front-20261124T170312.345Z.mkv".into())
        );
        for bad in [
            "/recordings/../x.mkv/stream",
            "/recordings/a/b.mkv/stream",
            "/recordings/stream",
            "/recordings//stream",
            "/recordings/x.mkv/stream/more",
        ] {
            assert_eq!(r(bad, None), Route::NotFound, "{bad}");
        }
        for bad in [
            "/recordings/../etc/passwd",
            "/recordings/..mkv",
            "/recordings/a/b.mkv",
            "/recordings/.hidden.mkv",
            "/recordings/x.mkv/",
            "/recordings/notes.txt",
            "/recordings/a b.mkv",
        ] {
            assert_eq!(r(bad, None), Route::NotFound, "{bad}");
        }
    }

    #[test]
    fn mjpg_streamer_control_urls_name_their_camera() {
        use Resource::*;
        let cmd = |path: &str, plugin: Option<&str>| route(path, Some("command"), plugin, &CAMS);
        assert_eq!(cmd("/", None), cam(0, MjpgCommand));
        assert_eq!(cmd("/", Some("0")), cam(0, MjpgCommand));
        assert_eq!(cmd("/", Some("2")), cam(2, MjpgCommand));
        assert!(matches!(cmd("/", Some("3")), Route::NoSuchCamera(_)));
        assert!(matches!(cmd("/", Some("-1")), Route::NoSuchCamera(_)));
        assert!(matches!(cmd("/", Some("99999")), Route::NoSuchCamera(_)));
        // Under a camera's own base, only plugin 0, which is that camera.
        assert_eq!(cmd("/webcam2/", Some("0")), cam(1, MjpgCommand));
        assert_eq!(cmd("/webcam3/", None), cam(2, MjpgCommand));
        assert_eq!(cmd("/cams/garage/", Some("0")), cam(2, MjpgCommand));
        assert!(matches!(
            cmd("/webcam2/", Some("1")),
            Route::NoSuchCamera(_)
        ));
        assert_eq!(r("/input.json", None), cam(0, MjpgInput));
        assert_eq!(r("/input_0.json", None), cam(0, MjpgInput));
        assert_eq!(r("/input_2.json", None), cam(2, MjpgInput));
        assert!(matches!(r("/input_3.json", None), Route::NoSuchCamera(_)));
        assert_eq!(r("/input_.json", None), Route::NotFound);
        assert_eq!(r("/input_x.json", None), Route::NotFound);
        assert_eq!(r("/webcam2/input.json", None), cam(1, MjpgInput));
        assert_eq!(r("/webcam/input_0.json", None), cam(0, MjpgInput));
        assert_eq!(r("/webcam/input_1.json", None), Route::NotFound);
        assert_eq!(r("/cams/printer/input.json", None), cam(1, MjpgInput));
    }

    #[test]
    fn camera_streamer_urls() {
        use super::CsWhich::*;
        let cs = |camera, which| Route::CameraStreamer { camera, which };
        assert_eq!(r("/status", None), cs(None, Status));
        assert_eq!(r("/option", None), cs(None, Option));
        assert_eq!(r("/webcam/status", None), cs(Some(0), Status));
        assert_eq!(r("/webcam3/option", None), cs(Some(2), Option));
        assert!(matches!(r("/webcam4/option", None), Route::NoSuchCamera(_)));
        assert_eq!(r("/webcam/other", None), Route::NotFound);
    }

    #[test]
    fn mjpg_streamer_urls_answer_as_mjpg_streamer() {
        use crate::http::response::{SERVER_MJPEGD, SERVER_MJPG_STREAMER};
        assert!(SERVER_MJPG_STREAMER.starts_with("MJPG-Streamer/0.2 (mjpegd "));
        for (path, action) in [
            ("/", Some("snapshot")),
            ("/", Some("stream_1")),
            ("/", Some("command")),
            ("/webcam/", Some("snapshot")),
            ("/webcam2/", Some("command")),
            ("/cams/front/", Some("stream")),
            ("/cams/front", Some("stream")),
            ("/input.json", None),
            ("/input_1.json", None),
            ("/webcam2/input.json", None),
        ] {
            assert_eq!(
                server_of(path, action),
                SERVER_MJPG_STREAMER,
                "{path} {action:?}"
            );
        }
        for (path, action) in [
            ("/", None),
            ("/stream", None),
            ("/snapshot", Some("x")),
            ("/state", None),
            ("/cams/front/controls", None),
            ("/cams/front/stream", Some("stream")),
            ("/api/cameras", Some("command")),
            ("/status", None),
            ("/recordings/input.json", None),
        ] {
            assert_eq!(server_of(path, action), SERVER_MJPEGD, "{path} {action:?}");
        }
    }
}
