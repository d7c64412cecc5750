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
//!   `/webcam2/?action=...` the second, and so on.
//!
//! Cache busters and dashboards' extra parameters (`?1700000000`, `timestamp=`, `bypassCache=`, a second
//! `?`) are ignored: only the parameters a route reads matter.

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
    /// A camera that does not exist (by name or number).
    NoSuchCamera(String),
    /// The cameras API (`/api/cameras`, `/api/cameras/NAME`).
    Api(super::handlers::api::Target),
    /// `?action=` with a value no dialect knows.
    UnknownAction(String),
    NotFound,
}

/// Routes `path` with `action` (the `action` query parameter, if any) among `cameras` (names in order).
pub fn route(path: &str, action: Option<&str>, cameras: &[&str]) -> Route {
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
                Some(a) => by_action(a, 0, &camera),
            }
        }
        _ => {}
    }
    if path.starts_with("/api/") {
        return super::handlers::api::target(path).map_or(Route::NotFound, Route::Api);
    }
    if let Some(file) = path.strip_prefix("/recordings/") {
        return match recording_name(file) {
            Some(name) => Route::RecordingFile(name.to_string()),
            None => Route::NotFound,
        };
    }
    // crowsnest: /webcam/, /webcam2/, ... with ?action=
    if let Some(rest) = path.strip_prefix("/webcam") {
        if let Some(n) = rest.strip_suffix('/') {
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
                return match action {
                    Some(a) => by_action(a, index, &camera),
                    None => camera(index, Resource::Page),
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
            "" | "index.html" => match action {
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

/// `?action=stream`, `snapshot`, and mjpg-streamer's `stream_N` / `snapshot_N` (N counts from 0).
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
        _ => Route::UnknownAction(action.chars().take(40).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAMS: [&str; 3] = ["front", "printer", "garage"];

    fn r(path: &str, action: Option<&str>) -> Route {
        route(path, action, &CAMS)
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
            route("/stream", None, &[]),
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
}
