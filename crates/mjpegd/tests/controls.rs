//! A V4L2 camera's controls over HTTP, against the real binary and the fake camera (whose controls behave
//! like a UVC webcam's: auto/manual pairs, menu gaps, a slow control, defaults at replug, brightness seen
//! in the picture): enumeration and menus, a write seen in the frames, auto-then-manual ordering, range,
//! step and type errors, inactive writes, a slow control that does not stall the stream, values kept
//! across unplug and replug, on-demand idle and reload, reset, and roles on every write path.
//! Needs /dev/fuse and fusermount3 (package fuse3, installed by scripts/setup.sh).

mod common;
use common::cam::{generated_camera, serve_camera, Cam};
use common::*;
use fakecam::FakeCam;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn camera(name: &str) -> Cam {
    generated_camera(&format!("controls-{name}"))
}

fn serve(cam: &Cam, extra: &[&str]) -> Server {
    serve_camera(cam, extra)
}

/// A request with a body; the answer's status and JSON (or its text as a JSON string).
fn call_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let r = parse_response(&all);
    let value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into_owned()));
    (r.status, value)
}

const JSON: &str = "Content-Type: application/json\r\n";

fn patch(server: &Server, body: Value) -> (u16, Value) {
    call_with(
        server.addr,
        "PATCH",
        "/cams/default/controls",
        JSON,
        &body.to_string(),
    )
}

fn list(server: &Server) -> Value {
    let (status, body) = call_with(server.addr, "GET", "/cams/default/controls", "", "");
    assert_eq!(status, 200, "{body}");
    body
}

/// The listing's entry for `key`.
fn control<'a>(listing: &'a Value, key: &str) -> &'a Value {
    listing["controls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == key)
        .unwrap_or_else(|| panic!("no {key} in {listing}"))
}

fn mean_luma(jpeg: &[u8]) -> f64 {
    let grey = turbojpeg::decompress(jpeg, turbojpeg::PixelFormat::GRAY).unwrap();
    let sum: u64 = grey.pixels.iter().map(|&p| p as u64).sum();
    sum as f64 / grey.pixels.len() as f64
}

fn wait_control(cam: &FakeCam, id: u32, value: i32, what: &str) {
    eventually(Duration::from_secs(10), what, || {
        (cam.control(id) == Some(value)).then_some(())
    });
}

#[test]
fn controls_are_listed_with_types_menus_flags_and_their_auto_control() {
    let cam = camera("list");
    let server = serve(&cam, &["--capture", "always"]);
    let l = list(&server);
    assert_eq!(l["camera"], "default");
    let keys: Vec<&str> = l["controls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "brightness",
            "contrast",
            "auto_exposure",
            "exposure_time_absolute",
            "pan_relative",
            "pan_reset",
            "pan_absolute",
            "focus_absolute",
            "focus_automatic_continuous",
            "iris_absolute"
        ],
        "every control in the driver's order, the class headings left out"
    );
    let b = control(&l, "brightness");
    assert_eq!(
        (
            b["name"].clone(),
            b["type"].clone(),
            b["min"].clone(),
            b["max"].clone()
        ),
        (json!("Brightness"), json!("integer"), json!(-64), json!(64))
    );
    assert_eq!(
        (b["step"].clone(), b["default"].clone(), b["value"].clone()),
        (json!(1), json!(0), json!(0))
    );
    assert_eq!(b["writable"], true);
    let ae = control(&l, "auto_exposure");
    assert_eq!(ae["type"], "menu");
    assert_eq!(
        ae["menu"],
        json!([{"value": 1, "label": "Manual Mode"}, {"value": 3, "label": "Aperture Priority Mode"}]),
        "the menu's gaps (0, 2) are left out"
    );
    assert_eq!(
        (ae["value"].clone(), ae["value_label"].clone()),
        (json!(3), json!("Aperture Priority Mode"))
    );
    let exposure = control(&l, "exposure_time_absolute");
    assert_eq!(exposure["depends_on"], "auto_exposure");
    assert!(
        exposure["flags"]
            .as_array()
            .unwrap()
            .contains(&json!("inactive")),
        "{exposure}"
    );
    let focus = control(&l, "focus_absolute");
    assert_eq!(
        (focus["step"].clone(), focus["depends_on"].clone()),
        (json!(5), json!("focus_automatic_continuous"))
    );
    let auto_focus = control(&l, "focus_automatic_continuous");
    assert_eq!(
        (
            auto_focus["type"].clone(),
            auto_focus["value"].clone(),
            auto_focus["default"].clone()
        ),
        (json!("boolean"), json!(true), json!(true))
    );
    let iris = control(&l, "iris_absolute");
    assert!(iris["flags"]
        .as_array()
        .unwrap()
        .contains(&json!("read-only")));
    assert_eq!(
        (iris["writable"].clone(), iris["value"].clone()),
        (json!(false), json!(8))
    );
    let rel = control(&l, "pan_relative");
    assert!(rel["flags"]
        .as_array()
        .unwrap()
        .contains(&json!("write-only")));
    assert_eq!(
        rel["value"],
        Value::Null,
        "a write-only control has no value to read"
    );
    let button = control(&l, "pan_reset");
    assert_eq!(
        (button["type"].clone(), button["writable"].clone()),
        (json!("button"), json!(false))
    );

    // Another program changes a control: the listing reads the camera, never a cache.
    cam.cam.set_control(fakecam::CID_CONTRAST, 77);
    assert_eq!(control(&list(&server), "contrast")["value"], 77);

    // A camera that is not V4L2 has none.
    let pattern = Server::start(&["--source", "pattern"]);
    let (status, body) = call_with(pattern.addr, "GET", "/cams/default/controls", "", "");
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not a V4L2 camera"),
        "{body}"
    );
    let (status, _) = call_with(pattern.addr, "PUT", "/cams/default/controls", JSON, "{}");
    assert_eq!(status, 405);
}

#[test]
fn a_brightness_write_is_seen_in_the_picture() {
    let cam = camera("picture");
    let server = serve(&cam, &["--capture", "always"]);
    let mut s = server.stream("/stream");
    let before = mean_luma(&s.next_part().unwrap().body);
    let (status, body) = patch(&server, json!({"brightness": 64}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"]["brightness"],
        json!({"result": "done", "value": 64})
    );
    assert_eq!(
        control(&body, "brightness")["value"],
        64,
        "every control read back"
    );
    eventually(Duration::from_secs(5), "brighter frames", || {
        let luma = mean_luma(&s.next_part().unwrap().body);
        (luma > before + 30.0).then_some(())
    });
    let (status, _) = patch(&server, json!({"brightness": -64}));
    assert_eq!(status, 200);
    eventually(Duration::from_secs(5), "darker frames", || {
        let luma = mean_luma(&s.next_part().unwrap().body);
        (luma < before - 30.0).then_some(())
    });
}

#[test]
fn auto_controls_go_first_and_inactive_writes_are_refused_with_a_reason() {
    let cam = camera("order");
    let server = serve(&cam, &["--capture", "always"]);
    // While auto exposure is on, its manual control is inactive: refused, with the reason, untouched.
    let (status, body) = patch(&server, json!({"exposure_time_absolute": 100}));
    assert_eq!(status, 200, "{body}");
    let r = &body["results"]["exposure_time_absolute"];
    assert_eq!(r["result"], "inactive", "{body}");
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains("auto_exposure") && reason.contains("Aperture Priority Mode"),
        "{reason}"
    );
    assert_eq!(body["ok"], false);
    assert_eq!(
        cam.cam.control(fakecam::CID_EXPOSURE_TIME_ABSOLUTE),
        Some(250)
    );
    // The manual value first in the request, its auto control second: the auto one is applied first.
    let (status, body) = patch(
        &server,
        json!({"exposure_time_absolute": 100, "auto_exposure": "Manual Mode"}),
    );
    assert_eq!(status, 200);
    assert_eq!(body["results"]["auto_exposure"]["result"], "done", "{body}");
    assert_eq!(
        body["results"]["exposure_time_absolute"],
        json!({"result": "done", "value": 100})
    );
    assert_eq!(body["ok"], true);
    assert_eq!(cam.cam.control(fakecam::CID_AUTO_EXPOSURE), Some(1));
    assert_eq!(
        cam.cam.control(fakecam::CID_EXPOSURE_TIME_ABSOLUTE),
        Some(100)
    );
    assert!(!control(&body, "exposure_time_absolute")["flags"]
        .as_array()
        .unwrap()
        .contains(&json!("inactive")));
    // The names before kernel 5.16, booleans, menu entries by number.
    let (status, body) = patch(
        &server,
        json!({"focus_auto": false, "exposure_absolute": 300, "exposure_auto": 3}),
    );
    assert_eq!(status, 200);
    assert_eq!(body["results"]["focus_auto"]["result"], "done", "{body}");
    assert_eq!(body["results"]["exposure_auto"]["result"], "done", "{body}");
    assert_eq!(
        body["results"]["exposure_absolute"]["result"], "inactive",
        "auto exposure went back on first: {body}"
    );
    assert_eq!(cam.cam.control(fakecam::CID_FOCUS_AUTO), Some(0));
    assert_eq!(cam.cam.control(fakecam::CID_AUTO_EXPOSURE), Some(3));
}

#[test]
fn values_are_checked_before_any_ioctl() {
    let cam = camera("checks");
    let server = serve(&cam, &["--capture", "always"]);
    patch(&server, json!({"focus_automatic_continuous": false}));
    let (status, body) = patch(
        &server,
        json!({
            "focus_absolute": 33,
            "brightness": 65,
            "contrast": -1,
            "auto_exposure": 2,
            "focus_automatic_continuous": "maybe",
            "iris_absolute": 1,
            "pan_reset": 1,
            "zoom_absolute": 1,
        }),
    );
    assert_eq!(status, 200, "{body}");
    let result = |k: &str| body["results"][k]["result"].as_str().unwrap().to_string();
    let reason = |k: &str| body["results"][k]["reason"].as_str().unwrap().to_string();
    assert_eq!(result("focus_absolute"), "out_of_range");
    assert!(reason("focus_absolute").contains("steps of 5"), "{body}");
    assert_eq!(result("brightness"), "out_of_range");
    assert!(reason("brightness").contains("-64 to 64"), "{body}");
    assert_eq!(result("contrast"), "out_of_range");
    assert_eq!(result("auto_exposure"), "invalid");
    assert!(reason("auto_exposure").contains("Manual Mode"), "{body}");
    assert_eq!(result("focus_automatic_continuous"), "invalid");
    assert_eq!(result("iris_absolute"), "read_only");
    assert_eq!(result("pan_reset"), "not_supported");
    assert_eq!(result("zoom_absolute"), "unknown");
    // Nothing reached the camera (the fake would have clamped and rounded silently).
    assert_eq!(cam.cam.control(fakecam::CID_FOCUS_ABSOLUTE), Some(0));
    assert_eq!(cam.cam.control(fakecam::CID_BRIGHTNESS), Some(0));
    assert_eq!(cam.cam.control(fakecam::CID_CONTRAST), Some(32));
    // Bodies that are not a JSON object of values.
    for (body, wanted) in [
        ("not json", "not JSON"),
        ("[1]", "JSON object"),
        ("{}", "1 to 64"),
        ("{\"brightness\": 1.5}", "whole number"),
        ("{\"brightness\": null}", "expected a number"),
        ("{\"Bright ness\": 1}", "not a control key"),
    ] {
        let (status, e) = call_with(server.addr, "PATCH", "/cams/default/controls", JSON, body);
        assert_eq!(status, 400, "{body}: {e}");
        assert!(e["error"].as_str().unwrap().contains(wanted), "{body}: {e}");
    }
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("c{i}"), json!(1))).collect();
    let (status, _) = patch(&server, Value::Object(many));
    assert_eq!(status, 400);
    let (status, _) = call_with(
        server.addr,
        "PATCH",
        "/cams/default/controls",
        JSON,
        &format!("{{\"brightness\": \"{}\"}}", "x".repeat(20_000)),
    );
    assert_eq!(status, 413, "a body over 16 KiB");
}

#[test]
fn a_slow_control_does_not_stall_the_stream() {
    let cam = camera("slow");
    let server = serve(&cam, &["--capture", "always"]);
    let mut s = server.stream("/stream");
    s.next_part().unwrap();
    let addr = server.addr;
    let started = Instant::now();
    let writer = std::thread::spawn(move || {
        let r = call_with(
            addr,
            "PATCH",
            "/cams/default/controls",
            JSON,
            "{\"pan_absolute\": 7200}",
        );
        (r, Instant::now())
    });
    let mut frames = Vec::new();
    while !writer.is_finished() {
        frames.push(s.next_part().unwrap().received);
    }
    let ((status, body), done) = writer.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"]["pan_absolute"],
        json!({"result": "done", "value": 7200})
    );
    let took = done - started;
    assert!(
        took >= Duration::from_millis(1900),
        "the write was slow: {took:?}"
    );
    let during = frames.iter().filter(|t| **t < done).count();
    let gap = frames
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    eprintln!("slow control: write took {took:?}; {during} frames meanwhile, longest gap {gap:?}");
    assert!(
        during >= 10,
        "frames kept coming while the write ran: {during}"
    );
    assert_eq!(cam.cam.control(fakecam::CID_PAN_ABSOLUTE), Some(7200));
}

fn hup(server: &Server) {
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
}

fn config(cam: &Cam, capture: &str, controls: &str) -> String {
    format!(
        "[cameras.default]\ndevice = \"{}\"\nresolution = \"320x240\"\nfps = 30\ncapture = \"{capture}\"\nlinger = \"300ms\"\n\n[cameras.default.controls]\n{controls}",
        cam.cam.device_path().display()
    )
}

#[test]
fn the_files_values_and_http_writes_survive_replug_and_reload_and_reset_goes_back_to_the_file() {
    let cam = camera("persist");
    let file = cam.dir.0.join("cams.toml");
    std::fs::write(
        &file,
        config(
            &cam,
            "always",
            "focus_automatic_continuous = false\nfocus_absolute = 30\n",
        ),
    )
    .unwrap();
    let server = Server::start(&["--config", file.to_str().unwrap()]);
    let c = &cam.cam;
    wait_control(
        c,
        fakecam::CID_FOCUS_ABSOLUTE,
        30,
        "the file's focus applied at open",
    );
    assert_eq!(c.control(fakecam::CID_FOCUS_AUTO), Some(0));
    // An HTTP write lasts, and wins over the file's value for its control.
    let (status, body) = patch(&server, json!({"brightness": 20, "focus_absolute": 50}));
    assert_eq!((status, body["ok"].clone()), (200, json!(true)), "{body}");
    let l = list(&server);
    assert_eq!(l["wanted"]["file"]["focus_absolute"], 30);
    assert_eq!(
        l["wanted"]["http"],
        json!({"brightness": 20, "focus_absolute": 50})
    );

    // Unplug and replug: the camera powers up with its defaults; mjpegd sets them again.
    c.unplug();
    let (status, body) = call_with(server.addr, "GET", "/cams/default/controls", "", "");
    assert_eq!(status, 503, "unplugged: {body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("cannot be reached"),
        "{body}"
    );
    std::thread::sleep(Duration::from_millis(300));
    c.replug();
    wait_control(
        c,
        fakecam::CID_FOCUS_ABSOLUTE,
        50,
        "the HTTP focus again after the replug",
    );
    wait_control(
        c,
        fakecam::CID_BRIGHTNESS,
        20,
        "the HTTP brightness again after the replug",
    );
    assert_eq!(c.control(fakecam::CID_FOCUS_AUTO), Some(0));

    // A reload with a changed table: applied (the camera's source restarts on the same hub); the HTTP
    // write still wins for its control.
    std::fs::write(
        &file,
        config(
            &cam,
            "always",
            "focus_automatic_continuous = false\nfocus_absolute = 40\ncontrast = 50\n",
        ),
    )
    .unwrap();
    hup(&server);
    wait_control(c, fakecam::CID_CONTRAST, 50, "the reloaded file's contrast");
    assert_eq!(c.control(fakecam::CID_FOCUS_ABSOLUTE), Some(50));

    // Reset: the driver's defaults, but the file's values where it sets them; the HTTP writes forgotten.
    let (status, body) = call_with(server.addr, "POST", "/cams/default/controls/reset", "", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"]["brightness"]["result"], "done", "{body}");
    assert_eq!(c.control(fakecam::CID_BRIGHTNESS), Some(0));
    assert_eq!(c.control(fakecam::CID_FOCUS_ABSOLUTE), Some(40));
    assert_eq!(c.control(fakecam::CID_CONTRAST), Some(50));
    assert_eq!(c.control(fakecam::CID_AUTO_EXPOSURE), Some(3));
    assert_eq!(list(&server)["wanted"]["http"], json!({}));
    c.unplug();
    std::thread::sleep(Duration::from_millis(300));
    c.replug();
    wait_control(
        c,
        fakecam::CID_FOCUS_ABSOLUTE,
        40,
        "the file's focus after reset and replug",
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        c.control(fakecam::CID_BRIGHTNESS),
        Some(0),
        "the forgotten HTTP write stays forgotten"
    );
}

#[test]
fn values_are_set_again_after_an_on_demand_idle() {
    let cam = camera("idle");
    let file = cam.dir.0.join("cams.toml");
    std::fs::write(&file, config(&cam, "on-demand", "contrast = 60\n")).unwrap();
    let server = Server::start(&["--config", file.to_str().unwrap()]);
    let c = &cam.cam;
    let (status, body) = patch(&server, json!({"brightness": 25}));
    assert_eq!(
        status, 200,
        "a write while idle reaches the camera at once: {body}"
    );
    assert_eq!(c.control(fakecam::CID_BRIGHTNESS), Some(25));
    let s = server.stream("/stream");
    wait_control(
        c,
        fakecam::CID_CONTRAST,
        60,
        "the file's contrast at the open",
    );
    drop(s);
    eventually(
        Duration::from_secs(10),
        "the camera closed after the linger",
        || (!c.stats().streaming).then_some(()),
    );
    // Another program changes them while nobody watches.
    c.set_control(fakecam::CID_BRIGHTNESS, -10);
    c.set_control(fakecam::CID_CONTRAST, 5);
    let mut s = server.stream("/stream");
    s.next_part().unwrap();
    wait_control(
        c,
        fakecam::CID_BRIGHTNESS,
        25,
        "the HTTP brightness at the next open",
    );
    wait_control(
        c,
        fakecam::CID_CONTRAST,
        60,
        "the file's contrast at the next open",
    );
}

#[test]
fn only_admins_write_controls() {
    let cam = camera("roles");
    let users = alice_and_bob(&cam.dir.0);
    let key = "0123456789abcdefKEY";
    let server = serve(
        &cam,
        &[
            "--auth-file",
            users.to_str().unwrap(),
            "--admin",
            "alice",
            "--access-key",
            key,
        ],
    );
    let body = "{\"brightness\": 10}";
    let write = |method: &str, path: &str, headers: &str| {
        call_with(server.addr, method, path, &format!("{JSON}{headers}"), body).0
    };
    for (method, path) in [
        ("PATCH", "/cams/default/controls".to_string()),
        ("POST", "/cams/default/controls/reset".to_string()),
    ] {
        assert_eq!(write(method, &path, ""), 401, "{method} {path}: anonymous");
        assert_eq!(
            write(method, &path, &basic_auth_header("bob:bob pw")),
            403,
            "{method} {path}: a viewer"
        );
        assert_eq!(
            write(method, &format!("{path}?key={key}"), ""),
            403,
            "{method} {path}: an access key watches only"
        );
        assert_eq!(
            write(
                method,
                &path,
                &format!(
                    "{}Origin: http://evil.example\r\n",
                    basic_auth_header("alice:alice pw")
                )
            ),
            403,
            "{method} {path}: cross-site"
        );
    }
    assert_eq!(
        cam.cam.control(fakecam::CID_BRIGHTNESS),
        Some(0),
        "no refused write reached the camera"
    );
    let (status, _) = call_with(
        server.addr,
        "GET",
        "/cams/default/controls",
        &basic_auth_header("bob:bob pw"),
        "",
    );
    assert_eq!(status, 200, "a viewer reads");
    assert_eq!(
        write(
            "PATCH",
            "/cams/default/controls",
            &basic_auth_header("alice:alice pw")
        ),
        200
    );
    assert_eq!(cam.cam.control(fakecam::CID_BRIGHTNESS), Some(10));
    assert_eq!(
        write(
            "POST",
            "/cams/default/controls/reset",
            &basic_auth_header("alice:alice pw")
        ),
        200
    );
    assert_eq!(cam.cam.control(fakecam::CID_BRIGHTNESS), Some(0));
}

#[test]
fn save_writes_the_values_into_the_file_and_the_next_server_applies_them() {
    let cam = camera("save");
    let file = cam.dir.0.join("cams.toml");
    let text = format!(
        "# the workshop\n{}# the lens is fixed\ncontrast = 40 # flat light\n",
        config(
            &cam,
            "always",
            "focus_automatic_continuous = false # the bed moves\n"
        )
    );
    std::fs::write(&file, &text).unwrap();
    let server = Server::start(&["--config", file.to_str().unwrap()]);
    let c = &cam.cam;
    wait_control(c, fakecam::CID_CONTRAST, 40, "the file's contrast");
    let mut s = server.stream("/stream?delivery=all");
    let first = s.next_part().unwrap().seq();
    let (status, body) = call_with(
        server.addr,
        "PATCH",
        "/cams/default/controls?save=1",
        JSON,
        &json!({"focus_absolute": 45, "exposure_auto": "Manual Mode", "exposure_time_absolute": 500, "brightness": 99})
            .to_string(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["save"], json!({"saved": true}), "{body}");
    assert_eq!(body["results"]["brightness"]["result"], "out_of_range");
    let saved = std::fs::read_to_string(&file).unwrap();
    for line in [
        "# the workshop",
        "# the lens is fixed",
        "contrast = 40 # flat light",
        "focus_automatic_continuous = false # the bed moves",
        "focus_absolute = 45",
        "auto_exposure = \"Manual Mode\"",
        "exposure_time_absolute = 500",
    ] {
        assert!(saved.contains(line), "{line:?} in:\n{saved}");
    }
    assert!(
        !saved.contains("brightness"),
        "a refused value is not saved:\n{saved}"
    );
    // The camera's all client saw no gap: saving did not restart its source.
    for k in 1..=30 {
        assert_eq!(s.next_part().unwrap().seq(), first + k, "no gap");
    }
    drop(s);
    drop(server);
    // A new server (the HTTP writes forgotten with the old one) on a camera back at its defaults.
    c.unplug();
    c.replug();
    assert_eq!(c.control(fakecam::CID_FOCUS_ABSOLUTE), Some(0));
    let _server = Server::start(&["--config", file.to_str().unwrap()]);
    wait_control(c, fakecam::CID_FOCUS_ABSOLUTE, 45, "the saved focus");
    wait_control(
        c,
        fakecam::CID_EXPOSURE_TIME_ABSOLUTE,
        500,
        "the saved exposure",
    );
    assert_eq!(c.control(fakecam::CID_AUTO_EXPOSURE), Some(1));
}

#[test]
fn queued_writes_to_one_control_are_coalesced_and_a_busy_camera_holds_no_other_back() {
    let (a, b) = (camera("busy-a"), camera("busy-b"));
    let file = a.dir.0.join("cams.toml");
    let mut text = String::new();
    for (name, cam) in [("a", &a), ("b", &b)] {
        text += &format!(
            "[cameras.{name}]\ndevice = \"{}\"\nresolution = \"320x240\"\nfps = 30\ncapture = \"always\"\n\n",
            cam.cam.device_path().display()
        );
    }
    std::fs::write(&file, text).unwrap();
    let server = Server::start(&["--config", file.to_str().unwrap()]);
    let addr = server.addr;
    let send = move |path: &'static str, body: String| {
        std::thread::spawn(move || call_with(addr, "PATCH", path, JSON, &body))
    };
    // Camera a's worker is busy for 2 s with a slow control...
    let slow = send(
        "/cams/a/controls",
        json!({"pan_absolute": 3600}).to_string(),
    );
    std::thread::sleep(Duration::from_millis(300));
    // ...meanwhile camera b answers, and its writes reach it.
    let (status, body) = call_with(
        addr,
        "PATCH",
        "/cams/b/controls",
        JSON,
        "{\"brightness\": 5}",
    );
    assert_eq!((status, body["ok"].clone()), (200, json!(true)), "{body}");
    assert!(
        !slow.is_finished(),
        "b answered while a's slow write was still running"
    );
    assert_eq!(b.cam.control(fakecam::CID_BRIGHTNESS), Some(5));
    // Writes to one control of a queue up behind the slow one: only the last reaches the camera.
    let mut queued = Vec::new();
    for v in 1..=4 {
        queued.push(send(
            "/cams/a/controls",
            json!({"brightness": v * 10}).to_string(),
        ));
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(
        !slow.is_finished(),
        "the writes were queued behind the slow one"
    );
    let results: Vec<String> = queued
        .into_iter()
        .map(|t| {
            let (status, body) = t.join().unwrap();
            assert_eq!(status, 200, "{body}");
            body["results"]["brightness"]["result"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(results, ["coalesced", "coalesced", "coalesced", "done"]);
    assert_eq!(a.cam.control(fakecam::CID_BRIGHTNESS), Some(40));
    let (status, body) = slow.join().unwrap();
    assert_eq!((status, body["ok"].clone()), (200, json!(true)), "{body}");
}

#[test]
fn a_camera_that_resets_its_focus_once_streaming_gets_it_set_again() {
    let cam = camera("refocus");
    let c = &cam.cam;
    c.reset_focus_on_stream(true);
    let file = cam.dir.0.join("cams.toml");
    std::fs::write(
        &file,
        config(
            &cam,
            "always",
            "focus_automatic_continuous = false\nfocus_absolute = 30\n",
        ),
    )
    .unwrap();
    let _server = Server::start(&["--config", file.to_str().unwrap()]);
    // The fake resets focus 10 frames after STREAMON; mjpegd's check 2 s after the open sets it again.
    c.wait_stats(Duration::from_secs(10), |s| s.frames_served > 20)
        .expect("frames flow");
    wait_control(
        c,
        fakecam::CID_FOCUS_ABSOLUTE,
        30,
        "focus set again after the camera's reset",
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.control(fakecam::CID_FOCUS_ABSOLUTE), Some(30));
}
