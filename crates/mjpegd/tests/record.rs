//! Recording against the real binary, read back by ffprobe and ffmpeg (not by mjpegd's own code): segments
//! whose frames are the source's, in order, across boundaries; a recording that survives `kill -9`.
//! Needs ffmpeg and ffprobe (installed by scripts/setup.sh).

mod common;
#[path = "common/recordings.rs"]
mod recordings;
#[path = "common/upstream.rs"]
mod upstream;
use common::*;
use recordings::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use upstream::{make_jpegs, Style, Upstream};

/// mjpegd recording the 10 fps test pattern into `dir`.
fn recording(dir: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--fps", "10", "--record", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[test]
fn segments_hold_every_frame_in_order_across_their_boundaries() {
    let dir = TempDir::new("record-segments");
    let mut server = recording(&dir.0, &["--record-segment", "1s"]);
    // What a viewer is sent, to compare with what ffmpeg reads back.
    let mut viewer = server.stream("/stream?delivery=all");
    let sent: Vec<Vec<u8>> = (0..10).map(|_| viewer.next_part().unwrap().body).collect();
    drop(viewer);
    // On-demand capture: the recorder alone keeps the source running.
    eventually(Duration::from_secs(10), "4 segments", || {
        (segments(&dir.0).len() >= 4).then_some(())
    });
    let state = server.state();
    let rec = &state["recording"];
    assert_eq!(rec["state"], "recording", "{state}");
    assert!(rec["frames_written"].as_u64().unwrap() >= 20, "{rec}");
    assert_eq!(rec["frames_lost"], 0, "{rec}");
    assert!(server.stop().success());
    let files = segments(&dir.0);
    assert!(files[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("default-"));
    let mut counters = Vec::new();
    for file in &files {
        let probe = ffprobe(file, "stream=codec_name,width,height");
        assert!(
            probe.contains("codec_name=mjpeg") && probe.contains("width=320"),
            "{probe}"
        );
        let jpegs = jpegs_of(file);
        assert!(!jpegs.is_empty(), "{}", file.display());
        counters.extend(jpegs.iter().map(|j| counter(j)));
    }
    // Byte-identical to what the viewer got: no re-encoding.
    let recorded: Vec<Vec<u8>> = files.iter().flat_map(|f| jpegs_of(f)).collect();
    for jpeg in &sent {
        assert!(
            recorded.contains(jpeg),
            "a frame sent to a viewer is not in the recording as it was"
        );
    }
    // The pattern counts every frame it makes: consecutive across every boundary, nothing doubled.
    for w in counters.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{counters:?}");
    }
    // Timestamps step at the source's rate: ffprobe's packet times 0.1 s apart.
    let times = pts(&files[1]);
    assert!(times.len() >= 5, "{times:?}");
    for w in times.windows(2) {
        let step = w[1] - w[0];
        assert!((0.05..0.2).contains(&step), "{times:?}");
    }
}

#[test]
fn after_kill_9_the_segment_being_written_plays_to_within_a_second() {
    let dir = TempDir::new("record-kill");
    let mut server = recording(&dir.0, &[]);
    eventually(Duration::from_secs(10), "3 s recorded", || {
        (server.state()["recording"]["frames_written"]
            .as_u64()
            .unwrap()
            >= 30)
            .then_some(())
    });
    let written = server.state()["recording"]["frames_written"]
        .as_u64()
        .unwrap();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGKILL) };
    let _ = server.child.wait();
    let files = segments(&dir.0);
    assert_eq!(files.len(), 1);
    let jpegs = jpegs_of(&files[0]);
    // Everything written to the kernel survives a process crash; at 10 fps a second is 10 frames.
    assert!(
        jpegs.len() as u64 + 10 >= written,
        "{} of {written}",
        jpegs.len()
    );
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&files[0])
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(decode.status.success());
}

#[test]
fn finished_segments_satisfy_mkvextract_and_mkvpropedit_and_keep_every_frame() {
    let dir = TempDir::new("record-mkvtoolnix");
    let mut server = recording(&dir.0, &["--record-segment", "1s"]);
    eventually(Duration::from_secs(15), "3 finished segments", || {
        (segments(&dir.0).len() >= 4).then_some(())
    });
    // The frames the recorder says it wrote into each finished segment.
    let listed: serde_json::Value =
        serde_json::from_slice(&server.get("/recordings").body).unwrap();
    assert!(server.stop().success());
    let listed = listed["result"]["recordings"].as_array().unwrap().clone();
    let files = segments(&dir.0);
    let out = dir.0.join("timestamps.txt");
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        let frames = listed
            .iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r["frames"].as_u64());
        // One timestamp per frame, and the end of the last frame (here the same time: the blocks carry
        // no duration).
        let (times, stamps) = mkv_timestamps(file, &out);
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{name}: {stamps}");
        assert_eq!(times.first(), Some(&0), "{name}: {stamps}");
        let count = times.len() as u64 - 1;
        if let Some(frames) = frames {
            assert_eq!(count, frames, "{name}: {stamps}");
        }
        let probe = ffprobe(file, "stream=nb_read_frames");
        assert_eq!(probe.trim(), format!("nb_read_frames={count}"), "{name}");
        assert_mkvpropedit_edits(file);
        // Edited, it still holds every frame, and the title it was given.
        let probe = ffprobe(file, "stream=nb_read_frames:format_tags=title");
        assert!(
            probe.contains(&format!("nb_read_frames={count}")),
            "{name}: {probe}"
        );
        assert!(probe.contains("title=x"), "{name}: {probe}");
    }
    // Segments closed while the server ran, and the one closed at its stop, have their counts listed.
    assert!(
        files
            .iter()
            .filter(|f| listed
                .iter()
                .any(|r| r["name"] == f.file_name().unwrap().to_str().unwrap()
                    && r["frames"].is_u64()))
            .count()
            >= 3,
        "{listed:?}"
    );
}

/// A tmpfs of `size` mounted on `dir`, unmounted on drop (the test runs as root, like CI).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount runs");
        assert!(ok.success(), "mounting a tmpfs needs root (as CI has)");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_counts_the_lost_frames_keeps_viewers_going_and_recording_resumes() {
    let dir = TempDir::new("record-full");
    let disk = dir.0.join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let tmpfs = Tmpfs::mount(&disk, "1m");
    // Ballast fills most of the disk; freeing it later gives space back without touching the recordings.
    let ballast = disk.join("ballast");
    std::fs::write(&ballast, vec![0u8; 850 << 10]).unwrap();
    let server = Server::start(&[
        "--fps",
        "20",
        "--record",
        disk.to_str().unwrap(),
        "--capture",
        "always",
    ]);
    // (Frames differ in size: near the end a small one may still fit, so wait for a failing moment.)
    let state = eventually(Duration::from_secs(20), "the disk full", || {
        let st = server.state();
        (st["recording"]["frames_lost"].as_u64().unwrap() >= 5
            && st["recording"]["state"] == "failing")
            .then_some(st)
    });
    let rec = &state["recording"];
    assert!(
        rec["last_error"].as_str().unwrap().contains("space"),
        "{rec}"
    );
    // Viewers do not wait for the disk.
    let mut viewer = server.stream("/stream");
    let start = std::time::Instant::now();
    let mut frames = 0;
    while start.elapsed() < Duration::from_secs(2) {
        viewer.next_part().unwrap();
        frames += 1;
    }
    assert!(frames >= 30, "{frames} frames in 2 s at 20 fps");
    // No empty file per failed frame.
    let files = segments(&disk);
    assert!(files.len() <= 3, "{files:?}");
    // Space comes back: recording resumes by itself, in a new segment.
    std::fs::remove_file(&ballast).unwrap();
    let written = server.state()["recording"]["frames_written"]
        .as_u64()
        .unwrap();
    let state = eventually(Duration::from_secs(10), "recording again", || {
        let st = server.state();
        (st["recording"]["state"] == "recording"
            && st["recording"]["frames_written"].as_u64().unwrap() > written + 10)
            .then_some(st)
    });
    let current = state["recording"]["segment"].as_str().unwrap();
    assert!(disk.join(current).exists(), "{state}");
    drop(viewer);
    drop(server);
    drop(tmpfs);
}

#[test]
fn retention_by_size_and_by_age_deletes_the_oldest_segments_never_the_current_one() {
    for (what, flag, value) in [
        ("size", "--record-max-size", "50KB"),
        ("age", "--record-keep", "1s"),
    ] {
        let dir = TempDir::new(&format!("record-keep-{what}"));
        let server = recording(&dir.0, &["--record-segment", "1s", flag, value]);
        eventually(Duration::from_secs(15), "several segments written", || {
            let st = server.state();
            let written = st["recording"]["frames_written"].as_u64().unwrap();
            (written >= 50).then_some(())
        });
        // 5 s of 1 s segments were written; the old ones are gone, the one being written is there. (Read
        // until the listing and the state agree: a segment may turn over between the two.)
        eventually(Duration::from_secs(5), "the current segment kept", || {
            let current = server.state()["recording"]["segment"].as_str()?.to_string();
            let files = segments(&dir.0);
            assert!(files.len() <= 3, "{what}: {files:?}");
            files
                .iter()
                .any(|f| f.file_name().unwrap().to_str() == Some(current.as_str()))
                .then_some(())
        });
    }
}

#[test]
fn recordings_are_listed_and_served_with_ranges_and_nothing_else_is_reachable() {
    let dir = TempDir::new("record-http");
    std::fs::write(dir.0.join("secret.txt"), b"not for you").unwrap();
    let mut server = recording(&dir.0, &["--record-segment", "1s"]);
    eventually(Duration::from_secs(10), "a finished segment", || {
        (segments(&dir.0).len() >= 2).then_some(())
    });
    for path in ["/recordings", "/cams/default/recordings"] {
        let r = server.get(path);
        assert_eq!(r.status, 200, "{path}");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let list = v["result"]["recordings"].as_array().unwrap().clone();
        assert!(list.len() >= 2, "{v}");
        let first = &list[0];
        assert_eq!(first["camera"], "default");
        assert!(first["frames"].as_u64().unwrap() >= 5, "{first}");
        assert!(
            first["start"].as_str().unwrap().starts_with("20"),
            "{first}"
        );
        assert_eq!(list.last().unwrap()["writing"], true);
    }
    let files = segments(&dir.0);
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    let whole = std::fs::read(&files[0]).unwrap();
    let r = server.get(&format!("/recordings/{name}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["accept-ranges"], "bytes");
    assert_eq!(r.body, whole);
    let ranged = request(
        server.addr,
        &format!("GET /recordings/{name} HTTP/1.1\r\nHost: t\r\nRange: bytes=100-199\r\n\r\n"),
    );
    assert_eq!(ranged.status, 206);
    assert_eq!(
        ranged.headers["content-range"],
        format!("bytes 100-199/{}", whole.len())
    );
    assert_eq!(ranged.body, whole[100..200]);
    // A range with a sign is not the RFC 9110 syntax (digits only): ignored, the whole file is sent.
    for bad in ["bytes=+5-9", "bytes=-+5", "bytes=5-+9", "bytes=+5-"] {
        let r = request(
            server.addr,
            &format!("GET /recordings/{name} HTTP/1.1\r\nHost: t\r\nRange: {bad}\r\n\r\n"),
        );
        assert_eq!(r.status, 200, "{bad}");
        assert_eq!(r.body, whole, "{bad}");
    }
    let past = request(
        server.addr,
        &format!(
            "GET /recordings/{name} HTTP/1.1\r\nHost: t\r\nRange: bytes={}-\r\n\r\n",
            whole.len()
        ),
    );
    assert_eq!(past.status, 416);
    for bad in [
        "/recordings/secret.txt",
        "/recordings/..%2fsecret.txt",
        "/recordings/%2e%2e/etc/passwd",
        "/recordings/other-20261124T000000.000Z.mkv",
    ] {
        assert_eq!(server.get(bad).status, 404, "{bad}");
    }
    assert!(server.stop().success());
}

/// A name the recorder would give `default`'s segment: the only kind of name `/recordings/FILE` serves.
const RACED: &str = "default-20200101T000000.000Z.mkv";

#[test]
fn a_symlink_swapped_over_a_segment_never_serves_what_it_points_to() {
    let dir = TempDir::new("record-race");
    let outside = TempDir::new("record-race-secret");
    // Tests may run as root: the secret is recognised by its content, not protected by its mode.
    let marker = "MJPEGD-SECRET-MARKER-5f1c";
    let secret = outside.0.join("secret");
    std::fs::write(&secret, format!("{marker}\n")).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let server = recording(&dir.0, &[]);
    // The racer: a regular file, then a link to the secret, renamed over the name in turn.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let racer = {
        let (dir, secret, stop) = (dir.0.clone(), secret.clone(), stop.clone());
        std::thread::spawn(move || {
            let (target, reg, link) = (dir.join(RACED), dir.join(".reg"), dir.join(".link"));
            let template = dir.join(".template");
            std::fs::write(&template, b"an ordinary recording").unwrap();
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::remove_file(&reg);
                std::fs::hard_link(&template, &reg).unwrap();
                std::fs::rename(&reg, &target).unwrap();
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(&secret, &link).unwrap();
                std::fs::rename(&link, &target).unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    let (mut requests, mut served, mut leaks) = (0u32, 0u32, 0u32);
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(3) && requests < 5000 {
        let r = server.get(&format!("/recordings/{RACED}"));
        requests += 1;
        if find(&r.body, marker.as_bytes()).is_some() {
            leaks += 1;
        } else if r.status == 200 {
            assert_eq!(r.body, b"an ordinary recording");
            served += 1;
        } else {
            assert_eq!(r.status, 404);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = racer.join().unwrap();
    assert_eq!(
        leaks, 0,
        "the secret was served {leaks} times in {requests} requests ({swaps} swaps)"
    );
    // The race was run: the regular file was served sometimes, the link refused other times.
    assert!(served > 0, "{served} of {requests} served");
    assert!(served < requests, "{served} of {requests} served");
}

#[test]
fn cameras_sharing_a_folder_prune_and_list_only_their_own_segments() {
    let dir = TempDir::new("record-shared");
    let folder = dir.0.join("rec");
    let config = dir.0.join("cams.toml");
    // `a`'s size limit holds its current segment only; `a-b`, whose names start with `a-`, keeps everything.
    std::fs::write(
        &config,
        format!(
            r#"[cameras.a]
source = "pattern"
fps = 10
record = "{0}"
record-segment = "1s"
record-max-size = "10KB"

[cameras.a-b]
source = "pattern"
fps = 10
record = "{0}"
record-segment = "1s"
"#,
            folder.display()
        ),
    )
    .unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let names = |prefix: &str| -> Vec<String> {
        segments(&folder)
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .filter(|n| n.starts_with(prefix))
            .collect()
    };
    let first_ab = eventually(Duration::from_secs(10), "a-b's first segment", || {
        names("a-b-").first().cloned()
    });
    // Several turns of `a`'s segments, each followed by its pruning.
    eventually(Duration::from_secs(20), "4 s of a-b recorded", || {
        let st = server.get("/cams/a-b/state");
        let v: serde_json::Value = serde_json::from_slice(&st.body).unwrap();
        (v["result"]["recording"]["frames_written"].as_u64()? >= 40).then_some(())
    });
    let ab = names("a-b-");
    assert!(
        ab.contains(&first_ab),
        "a-b's first segment deleted: {ab:?}"
    );
    assert!(ab.len() >= 4, "{ab:?}");
    let v: serde_json::Value = serde_json::from_slice(&server.get("/cams/a-b/state").body).unwrap();
    let rec = &v["result"]["recording"];
    assert_eq!(rec["frames_lost"], 0, "{rec}");
    let current = rec["segment"].as_str().unwrap();
    assert!(folder.join(current).exists(), "{rec}");
    // `a` did prune its own.
    let a: Vec<String> = names("a-2");
    assert!(a.len() <= 3, "{a:?}");
    // Listings: `a`'s are a's alone; the whole list has each file once, under its own camera.
    let list = |path: &str| -> Vec<(String, String)> {
        let v: serde_json::Value = serde_json::from_slice(&server.get(path).body).unwrap();
        v["result"]["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["camera"].as_str().unwrap().to_string(),
                    r["name"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let of_a = list("/cams/a/recordings");
    assert!(!of_a.is_empty());
    assert!(
        of_a.iter().all(|(c, n)| c == "a" && n.starts_with("a-2")),
        "{of_a:?}"
    );
    let all = list("/recordings");
    for (camera, name) in &all {
        let expected = if name.starts_with("a-b-") { "a-b" } else { "a" };
        assert_eq!(camera, expected, "{all:?}");
        assert_eq!(all.iter().filter(|(_, n)| n == name).count(), 1, "{all:?}");
    }
    // A file is served as the camera it belongs to.
    assert_eq!(server.get(&format!("/recordings/{first_ab}")).status, 200);
}

#[test]
fn a_source_alternating_picture_sizes_turns_segments_at_a_bounded_rate() {
    let dir = TempDir::new("record-sizes");
    let mut frames = Vec::new();
    for (a, b) in make_jpegs(4, 320, 240)
        .into_iter()
        .zip(make_jpegs(4, 322, 240))
    {
        frames.push(a);
        frames.push(b);
    }
    let up = Upstream::start(Style::esp32(), frames, 20);
    let (server, log) = Server::start_logged(&[
        "--source",
        &up.url("/mjpeg/1"),
        "--capture",
        "always",
        "--record",
        dir.0.to_str().unwrap(),
    ]);
    eventually(Duration::from_secs(10), "frames recorded", || {
        (server.state()["recording"]["frames_written"].as_u64()? >= 10).then_some(())
    });
    std::thread::sleep(Duration::from_secs(6));
    let rec = server.state()["recording"].clone();
    let written = rec["frames_written"].as_u64().unwrap();
    assert!(written >= 60, "{rec}");
    // About 7 s at 20 fps, every frame a size change: a segment may turn for its size every 5 s at most.
    let files = segments(&dir.0);
    assert!(
        files.len() <= 3,
        "{} files for {written} frames",
        files.len()
    );
    assert!(
        rec["size_changes_absorbed"].as_u64().unwrap() >= 50,
        "{rec}"
    );
    let lines = log
        .lines()
        .into_iter()
        .filter(|l| l.contains("recording") || l.contains("picture size"))
        .count();
    assert!(lines <= 6, "{lines} log lines: {:?}", log.lines());
    // Nor does the source's log grow with the changes: one line as it comes online, then at most one a
    // minute about its size changes.
    let source_lines = log
        .lines()
        .into_iter()
        .filter(|l| l.contains("source online") || l.contains("size changed"))
        .count();
    assert!(
        source_lines <= 3,
        "{source_lines} source lines: {:?}",
        log.lines()
    );
    // A segment holding both sizes plays: every frame copies out whole and ffmpeg decodes them all.
    drop(server);
    let jpegs = jpegs_of(&files[0]);
    let sizes: std::collections::BTreeSet<_> = jpegs.iter().map(|j| size_of(j)).collect();
    assert_eq!(sizes.len(), 2, "{sizes:?}");
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&files[0])
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        decode.status.success(),
        "{}",
        String::from_utf8_lossy(&decode.stderr)
    );
}
