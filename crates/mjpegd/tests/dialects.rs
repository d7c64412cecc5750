//! Camera controls in the dialects clients already speak, from each client's point of view, against the
//! real binary and the fake camera (crates/fakecam): Octolapse's sequence on mjpg-streamer's control API
//! (the `Server` header on the command and snapshot URLs, the `id=-1` probe, `input.json` compared as
//! strings, a write seen on the camera), RatOS's on camera-streamer's (`/status`, `POST /option`, the value
//! read back), and roles on every write path.
//! Needs /dev/fuse and fusermount3 (package fuse3, installed by scripts/setup.sh).

mod common;
use common::cam::{generated_camera, serve_camera, Cam};
use common::*;
use serde_json::Value;
use std::net::SocketAddr;

fn camera(name: &str) -> Cam {
    generated_camera(&format!("dialects-{name}"))
}

fn serve(cam: &Cam, extra: &[&str]) -> Server {
    serve_camera(cam, extra)
}

fn call(addr: SocketAddr, method: &str, path: &str, headers: &str) -> Response {
    request(
        addr,
        &format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}Content-Length: 0\r\n\r\n"),
    )
}

fn get(addr: SocketAddr, path: &str) -> Response {
    call(addr, "GET", path, "")
}

fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn server_header(r: &Response) -> &str {
    r.headers.get("server").map(String::as_str).unwrap_or("")
}

fn command(id: u32, value: i32) -> String {
    format!("/?action=command&dest=0&plugin=0&id={id}&group=1&value={value}")
}

#[test]
fn octolapse_finds_mjpg_streamer_reads_its_controls_and_sets_them() {
    let cam = camera("octolapse");
    let server = serve(&cam, &["--capture", "always"]);
    let addr = server.addr;

    // Octolapse's camera test: the snapshot URL, then the probe, each checked for MJPG-Streamer.
    let snap = get(addr, "/?action=snapshot");
    assert_eq!(snap.status, 200);
    assert!(
        server_header(&snap).starts_with("MJPG-Streamer"),
        "{:?}",
        snap.headers
    );
    assert!(snap.headers["content-type"].contains("image/jpeg"));
    let probe = get(addr, "/?action=command&id=-1");
    assert_eq!(probe.status, 200, "{}", text(&probe));
    assert!(server_header(&probe).starts_with("MJPG-Streamer"));
    assert_eq!(text(&probe), "-1: -1");
    // mjpegd's own URLs keep their own name.
    assert!(server_header(&get(addr, "/snapshot")).starts_with("mjpegd/"));

    // Its "load from server": input.json, every field a string, compared as strings with its profiles.
    let input = get(addr, "/input.json");
    assert_eq!(input.status, 200);
    assert!(server_header(&input).starts_with("MJPG-Streamer"));
    let doc: Value = serde_json::from_slice(&input.body).unwrap();
    let controls = doc["controls"].as_array().unwrap();
    let by_name = |name: &str| {
        controls
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {doc}"))
            .clone()
    };
    for c in controls {
        for key in [
            "name", "id", "type", "min", "max", "step", "default", "value", "dest", "flags",
            "group",
        ] {
            assert!(c[key].is_string(), "{key} of {c} is not a string");
        }
    }
    let fields = |c: &Value| {
        ["name", "id", "type", "min", "max", "step", "default"]
            .map(|k| c[k].as_str().unwrap().to_string())
    };
    assert_eq!(
        fields(&by_name("Brightness")),
        ["Brightness", "9963776", "1", "-64", "64", "1", "0"]
    );
    assert_eq!(
        fields(&by_name("Auto Exposure")),
        ["Auto Exposure", "10094849", "3", "0", "3", "1", "3"]
    );
    assert_eq!(
        by_name("Auto Exposure")["menu"],
        serde_json::json!({"1": "Manual Mode", "3": "Aperture Priority Mode"})
    );
    assert_eq!(
        fields(&by_name("Focus, Automatic Continuous"))[2],
        "2",
        "a boolean is type 2"
    );
    let user = by_name("User Controls");
    assert_eq!(
        (user["type"].as_str(), user["id"].as_str()),
        (Some("6"), Some("9961473"))
    );
    assert_eq!(by_name("Camera Controls")["type"], "6");
    assert_eq!(controls[0]["name"], "User Controls", "headings come first");
    assert_eq!(by_name("Brightness")["value"], "0");

    // Applying a profile: one command per control, in the listing's order (auto before manual).
    for (id, value) in [
        (fakecam::CID_BRIGHTNESS, 20),
        (fakecam::CID_AUTO_EXPOSURE, 1),
        (fakecam::CID_EXPOSURE_TIME_ABSOLUTE, 300),
    ] {
        let r = get(addr, &command(id, value));
        assert_eq!(r.status, 200);
        assert!(server_header(&r).starts_with("MJPG-Streamer"));
        assert!(r.headers["content-type"].starts_with("text/plain"));
        assert_eq!(text(&r), format!("{id}: 0"), "{:?}", r.headers);
        assert_eq!(cam.cam.control(id), Some(value));
    }
    let again: Value = serde_json::from_slice(&get(addr, "/input_0.json").body).unwrap();
    let brightness = again["controls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Brightness")
        .unwrap();
    assert_eq!(brightness["value"], "20", "read back from the camera");

    // What the camera cannot take is -1, still 200, with the reason in a header.
    let r = get(addr, &command(fakecam::CID_BRIGHTNESS, 1000));
    assert_eq!((r.status, text(&r)), (200, "9963776: -1".to_string()));
    assert!(
        r.headers["x-mjpegd-reason"].contains("-64 to 64"),
        "{:?}",
        r.headers
    );
    assert_eq!(cam.cam.control(fakecam::CID_BRIGHTNESS), Some(20));
    for path in [
        command(9961473, 0), // a class heading (Octolapse sends it too)
        command(fakecam::CID_IRIS_ABSOLUTE, 3), // read-only
        command(0x0098_0999, 1), // no such control
        "/?action=command&dest=0&plugin=0&id=1&group=3&value=80".to_string(), // JPEG quality
    ] {
        let r = get(addr, &path);
        assert_eq!(r.status, 200, "{path}");
        assert!(text(&r).ends_with(": -1"), "{path}: {}", text(&r));
    }
    // Bad input is a 400 with the reason.
    let r = get(addr, "/?action=command&id=abc&value=1");
    assert_eq!(r.status, 400);
    assert!(text(&r).contains("whole number"), "{}", text(&r));
    let r = get(addr, "/?action=command&plugin=5&id=9963776&value=1");
    assert_eq!(r.status, 404);

    // crowsnest's base (Octolapse's address is then http://host/webcam/).
    let r = get(
        addr,
        &format!("/webcam/{}", &command(fakecam::CID_BRIGHTNESS, 7)[1..]),
    );
    assert_eq!((r.status, text(&r)), (200, "9963776: 0".to_string()));
    assert!(server_header(&r).starts_with("MJPG-Streamer"));
    assert_eq!(cam.cam.control(fakecam::CID_BRIGHTNESS), Some(7));
    let r = get(addr, "/webcam/input.json");
    assert_eq!(r.status, 200);
    assert!(server_header(&r).starts_with("MJPG-Streamer"));
    let s = get(addr, "/webcam/?action=snapshot");
    assert!(server_header(&s).starts_with("MJPG-Streamer"));
    // And a stream under mjpg-streamer's URL says so too.
    let mut stream = Stream::open(addr, "/?action=stream", None);
    stream.next_part().unwrap();
    assert!(
        server_header_of_stream(&stream).starts_with("MJPG-Streamer"),
        "{:?}",
        stream.head.headers
    );
}

fn server_header_of_stream(s: &Stream) -> &str {
    server_header(&s.head)
}

#[test]
fn a_camera_without_controls_answers_commands_501() {
    let server = Server::start(&["--fps", "5"]);
    let r = get(server.addr, &command(fakecam::CID_BRIGHTNESS, 1));
    assert_eq!(r.status, 501, "{}", text(&r));
    assert!(server_header(&r).starts_with("MJPG-Streamer"));
    let input: Value = serde_json::from_slice(&get(server.addr, "/input.json").body).unwrap();
    assert_eq!(input["controls"], serde_json::json!([]));
    let r = call(server.addr, "POST", "/option?key=brightness&value=1", "");
    assert_eq!(r.status, 404, "{}", text(&r));
}

#[test]
fn ratos_reads_status_and_sets_options() {
    let cam = camera("ratos");
    let server = serve(&cam, &[]);
    let addr = server.addr;
    let status = || -> Value {
        let r = get(addr, "/status");
        assert_eq!(r.status, 200);
        serde_json::from_slice(&r.body).unwrap()
    };
    let s = status();
    let device = &s["devices"][0];
    assert_eq!(device["name"], "default");
    assert_eq!(device["path"], cam.cam.device_path().to_str().unwrap());
    let options = &device["options"];
    assert_eq!(options["brightness"]["description"], "[-64..64]");
    assert_eq!(options["brightness"]["value"], 0);
    assert_eq!(options["focus_automatic_continuous"]["type"], "bool");
    assert_eq!(options["auto_exposure"]["menu"]["1"], "Manual Mode");

    // RatOS: POST /option?device=<the device's name>&key=&value=, then the value in /status.
    let post = |q: &str| call(addr, "POST", &format!("/option?{q}"), "");
    let r = post("device=default&key=brightness&value=12");
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(text(&r), "The 'brightness' was set to '12'.\r\n");
    assert_eq!(cam.cam.control(fakecam::CID_BRIGHTNESS), Some(12));
    assert_eq!(status()["devices"][0]["options"]["brightness"]["value"], 12);
    // Keys ignoring case and punctuation, menus by label or index, booleans, the device path, CAMERA.
    assert_eq!(
        post("device=CAMERA&key=AutoExposure&value=Manual%20Mode").status,
        200
    );
    assert_eq!(cam.cam.control(fakecam::CID_AUTO_EXPOSURE), Some(1));
    assert_eq!(post("device=CAMERA&key=exposure_auto&value=3").status, 200);
    assert_eq!(cam.cam.control(fakecam::CID_AUTO_EXPOSURE), Some(3));
    let path = cam.cam.device_path();
    let r = post(&format!(
        "device={}&key=Focus-Automatic-Continuous&value=false",
        path.display()
    ));
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(cam.cam.control(fakecam::CID_FOCUS_AUTO), Some(0));
    assert_eq!(
        status()["devices"][0]["options"]["focus_automatic_continuous"]["value"],
        false
    );
    // GET works as well, and the older /option?KEY=VALUE.
    assert_eq!(get(addr, "/option?key=contrast&value=40").status, 200);
    assert_eq!(cam.cam.control(fakecam::CID_CONTRAST), Some(40));
    assert_eq!(get(addr, "/option?brightness=5").status, 200);
    assert_eq!(cam.cam.control(fakecam::CID_BRIGHTNESS), Some(5));
    // crowsnest's base for this camera.
    assert_eq!(get(addr, "/webcam/status").status, 200);
    assert_eq!(
        post_at(addr, "/webcam/option?device=CAMERA&key=brightness&value=6"),
        200
    );
    assert_eq!(cam.cam.control(fakecam::CID_BRIGHTNESS), Some(6));

    // Errors: 500 with the reason, 404 for nothing passed or no such device, 400 for oversized input.
    let r = post("device=default&key=brightness&value=1000");
    assert_eq!(r.status, 500);
    assert!(text(&r).contains("-64 to 64"), "{}", text(&r));
    let r = post("key=nothing&value=1");
    assert_eq!(r.status, 500);
    assert!(text(&r).contains("no such option"), "{}", text(&r));
    assert_eq!(post("").status, 404);
    assert_eq!(post("device=attic&key=brightness&value=1").status, 404);
    assert_eq!(
        post(&format!("key=brightness&value={}", "1".repeat(100))).status,
        400
    );
    assert_eq!(cam.cam.control(fakecam::CID_BRIGHTNESS), Some(6));
    assert!(server_header(&get(addr, "/status")).starts_with("mjpegd/"));
}

fn post_at(addr: SocketAddr, path: &str) -> u16 {
    call(addr, "POST", path, "").status
}

#[test]
fn only_admins_write_through_any_dialect() {
    let cam = camera("roles");
    let users = alice_and_bob(&cam.dir.0);
    let server = serve(
        &cam,
        &["--auth-file", users.to_str().unwrap(), "--admin", "alice"],
    );
    let addr = server.addr;
    let writes = [
        ("GET", command(fakecam::CID_BRIGHTNESS, 10)),
        (
            "GET",
            format!("/webcam/{}", &command(fakecam::CID_BRIGHTNESS, 10)[1..]),
        ),
        (
            "GET",
            "/option?device=CAMERA&key=brightness&value=10".into(),
        ),
        (
            "POST",
            "/option?device=CAMERA&key=brightness&value=10".into(),
        ),
        ("POST", "/webcam/option?key=brightness&value=10".into()),
        ("GET", "/option?brightness=10".into()),
    ];
    for (method, path) in &writes {
        assert_eq!(
            call(addr, method, path, "").status,
            401,
            "{method} {path}: anonymous"
        );
        assert_eq!(
            call(addr, method, path, &basic_auth_header("bob:bob pw")).status,
            403,
            "{method} {path}: a viewer"
        );
        assert_eq!(
            call(
                addr,
                method,
                path,
                &format!(
                    "{}Origin: http://evil.example\r\n",
                    basic_auth_header("alice:alice pw")
                )
            )
            .status,
            403,
            "{method} {path}: cross-site"
        );
    }
    assert_eq!(
        cam.cam.control(fakecam::CID_BRIGHTNESS),
        Some(0),
        "no refused write reached the camera"
    );
    // A viewer reads, and passes Octolapse's probe.
    for path in ["/input.json", "/status", "/?action=command&id=-1"] {
        assert_eq!(
            call(addr, "GET", path, &basic_auth_header("bob:bob pw")).status,
            200,
            "{path}"
        );
    }
    for (i, (method, path)) in writes.iter().enumerate() {
        let path = path.replace("=10", &format!("={}", i + 1));
        let r = call(addr, method, &path, &basic_auth_header("alice:alice pw"));
        assert_eq!(r.status, 200, "{method} {path}: an admin: {}", text(&r));
        assert_eq!(
            cam.cam.control(fakecam::CID_BRIGHTNESS),
            Some(i as i32 + 1),
            "{path}"
        );
    }
}
