//! The page at `/` with several cameras: every camera live at once in headless Chromium, past the
//! browser's six connections per host, each tile fed by snapshot long polls (`?after=SEQ`).

#[path = "common/chromium.rs"]
mod chromium;
mod common;
use chromium::page_result;
use common::*;
use std::time::{Duration, Instant};

const CAMERAS: usize = 9;

fn wall_config(dir: &TempDir) -> std::path::PathBuf {
    let text: String = (0..CAMERAS)
        .map(|i| {
            format!(
                "[cameras.cam{i}]\nsource = \"pattern\"\nresolution = \"320x240\"\nfps = 10\ncapture = \"always\"\n\n"
            )
        })
        .collect();
    let path = dir.0.join("wall.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_page_shows_nine_cameras_live_at_once_in_chromium() {
    let dir = TempDir::new("wall");
    let config = wall_config(&dir);
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let json = page_result(&format!("http://{}/?measure=4", server.addr), &dir.0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let tiles = v["tiles"].as_array().unwrap();
    assert_eq!(tiles.len(), CAMERAS, "{v}");
    let fps: Vec<f64> = tiles.iter().map(|t| t["fps"].as_f64().unwrap()).collect();
    let kib: f64 = tiles
        .iter()
        .map(|t| t["bytes_per_second"].as_f64().unwrap())
        .sum::<f64>()
        / 1024.0;
    let latency: Vec<f64> = tiles
        .iter()
        .map(|t| t["latency_ms_median"].as_f64().unwrap_or(-1.0))
        .collect();
    eprintln!("wall: {CAMERAS} cameras at 10 fps: tile fps {fps:.1?}, page total {kib:.0} KiB/s, capture-to-display median ms {latency:.0?}");
    for t in tiles {
        // 10 fps cameras for about 4 s: every tile must have moved on several times, not just loaded once.
        assert!(t["shown"] == true, "{t}");
        assert!(t["distinct"].as_u64().unwrap() >= 10, "{t}");
    }
}

#[test]
fn slow_cameras_do_not_hold_the_fast_ones_back() {
    // Six cameras at 1 fps would hold all six of the browser's connections with their long polls if the
    // page asked them as eagerly as the fast ones.
    let dir = TempDir::new("wall-slow");
    let text: String = (0..8)
        .map(|i| {
            let fps = if i < 6 { 1 } else { 10 };
            format!("[cameras.cam{i}]\nsource = \"pattern\"\nresolution = \"160x120\"\nfps = {fps}\ncapture = \"always\"\n\n")
        })
        .collect();
    let config = dir.0.join("slow.toml");
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let json = page_result(&format!("http://{}/?measure=5", server.addr), &dir.0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let tiles = v["tiles"].as_array().unwrap();
    assert_eq!(tiles.len(), 8, "{v}");
    let fps = |name: &str| {
        tiles.iter().find(|t| t["name"] == name).unwrap()["fps"]
            .as_f64()
            .unwrap()
    };
    eprintln!(
        "wall with slow cameras: fast tiles {:.1} and {:.1} fps, a slow one {:.1}",
        fps("cam6"),
        fps("cam7"),
        fps("cam0")
    );
    for fast in ["cam6", "cam7"] {
        assert!(fps(fast) >= 5.0, "{fast}: {v}");
    }
    assert!(fps("cam0") >= 0.5, "{v}");
}

#[test]
fn a_snapshot_after_a_sequence_waits_for_a_newer_frame() {
    let server = Server::start(&["--capture", "always", "--fps", "5"]);
    let first = server.get("/snapshot");
    assert_eq!(first.status, 200);
    let seq: u64 = first.headers["x-frame-sequence"].parse().unwrap();
    for path in [
        format!("/snapshot?after={seq}"),
        format!("/cams/default/snapshot?after={seq}"),
        format!("/?action=snapshot&after={seq}"),
    ] {
        let asked = Instant::now();
        let r = server.get(&path);
        assert_eq!(r.status, 200, "{path}");
        let got: u64 = r.headers["x-frame-sequence"].parse().unwrap();
        assert!(got > seq, "{path}: {got} after {seq}");
        assert!(asked.elapsed() < Duration::from_secs(2), "{path}");
    }
    // A number never issued (the page outlived a server restart) gets the newest frame at once.
    let asked = Instant::now();
    let r = server.get("/snapshot?after=999999999");
    assert_eq!(r.status, 200);
    assert!(asked.elapsed() < Duration::from_secs(1));
    for bad in [
        "/snapshot?after=-1",
        "/snapshot?after=soon",
        "/jpg?after=99999999999999999999999",
    ] {
        let r = server.get(bad);
        assert_eq!(r.status, 400, "{bad}");
        assert!(String::from_utf8_lossy(&r.body).contains("after"), "{bad}");
    }
}

#[test]
fn with_one_camera_the_page_is_still_the_single_view() {
    let server = Server::start(&[]);
    let html = String::from_utf8(server.get("/").body).unwrap();
    assert!(html.contains(r#"data-base="/""#));
    let dir = TempDir::new("wall-two");
    std::fs::write(
        dir.0.join("two.toml"),
        "[cameras.a]\nsource = \"pattern\"\n[cameras.b]\nsource = \"pattern\"\n",
    )
    .unwrap();
    let two = Server::start(&["--config", dir.0.join("two.toml").to_str().unwrap()]);
    let html = String::from_utf8(two.get("/").body).unwrap();
    assert!(
        html.contains("all cameras") && html.contains("after"),
        "the wall"
    );
}
