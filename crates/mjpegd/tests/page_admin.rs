//! The pages as a person uses them, in headless Chromium driven by playwright (tests/page_admin.py):
//! an admin manages cameras from the page (with no credentials configured, from this machine; and as a
//! Basic-auth user named in `--admin`), a viewer sees no controls, and the camera page shows no raw JSON.
//! Needs Debian's `chromium` and Python's `playwright` (both installed by scripts/setup.sh).

mod common;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// Runs tests/page_admin.py with `args`; panics with its output unless it passes.
fn playwright(args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/page_admin.py");
    let started = Instant::now();
    let out = Command::new("timeout")
        .arg("120")
        .arg("python3")
        .arg(&script)
        .args(args)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "page_admin.py {} ({:.1} s):\n{stdout}{stderr}",
        args[0],
        started.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success() && stdout.contains("PAGE OK"),
        "page_admin.py {args:?} failed"
    );
}

/// A config file with `names` as pattern cameras, the first with keys the form has no field for and a
/// comment, so that an edit through the page must keep them.
fn config(dir: &TempDir, names: &[&str]) -> String {
    let mut text = String::from("# kept by the page\n");
    for (i, name) in names.iter().enumerate() {
        text.push_str(&format!(
            "[cameras.{name}]\nsource = \"pattern\"\nresolution = \"160x120\"\nfps = 5\n"
        ));
        if i == 0 {
            text.push_str(
                "capture = \"always\" # a comment on a key\nmax-variants = 3\nlinger = \"7s\"\n",
            );
        }
        text.push('\n');
    }
    let path = dir.0.join("cameras.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// An auth file with `alice` (password "alice pw") and `bob` (password "bob pw").
fn users(dir: &TempDir) -> String {
    let path = dir.0.join("users");
    let lines: String = ["alice", "bob"]
        .iter()
        .map(|u| format!("{u}:{}\n", bcrypt::hash(format!("{u} pw"), 4).unwrap()))
        .collect();
    std::fs::write(&path, lines).unwrap();
    path.to_str().unwrap().to_string()
}

fn url(server: &Server) -> String {
    format!("http://{}/", server.addr)
}

#[test]
fn an_admin_on_this_machine_adds_edits_and_removes_a_camera_from_the_page() {
    // No credentials configured: a loopback client is the admin. One camera: / is its page.
    let dir = TempDir::new("page-admin-local");
    let config = config(&dir, &["front"]);
    let server = Server::start(&["--config", &config]);
    playwright(&["admin", &url(&server), "--config", &config]);
}

#[test]
fn a_basic_auth_admin_manages_cameras_from_the_wall() {
    let dir = TempDir::new("page-admin-basic");
    let config = config(&dir, &["front", "back"]);
    let users = users(&dir);
    let server = Server::start(&[
        "--config",
        &config,
        "--auth-file",
        &users,
        "--admin",
        "alice",
    ]);
    playwright(&[
        "admin",
        &url(&server),
        "--config",
        &config,
        "--user",
        "alice:alice pw",
    ]);
}

#[test]
fn a_viewer_sees_no_management_buttons() {
    let dir = TempDir::new("page-viewer");
    let config = config(&dir, &["front", "back"]);
    let users = users(&dir);
    let server = Server::start(&[
        "--config",
        &config,
        "--auth-file",
        &users,
        "--admin",
        "alice",
    ]);
    playwright(&[
        "viewer",
        &url(&server),
        "--config",
        &config,
        "--user",
        "bob:bob pw",
        "--admin-user",
        "alice:alice pw",
    ]);
}

#[test]
fn the_camera_page_shows_no_raw_json() {
    let server = Server::start(&["--fps", "5"]);
    playwright(&["nojson", &url(&server)]);
    // And the page's source has no JSON.stringify of state left.
    let html = String::from_utf8(server.get("/").body).unwrap();
    assert!(!html.contains("JSON.stringify(s."), "state printed as JSON");
    // Self-contained: the admin part is in the page itself, nothing is loaded from elsewhere.
    assert!(html.contains("mjpegdAdmin") && !html.contains("{{ADMIN}}"));
    for external in ["src=\"http", "href=\"http", "<link", "@import", "url("] {
        assert!(!html.contains(external), "{external}");
    }
}
