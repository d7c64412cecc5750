//! What the Debian package ships, checked with the real tools: the units pass `systemd-analyze verify`
//! (with the real binary as ExecStart and the generated man page as their documentation), the
//! sysusers.d file makes the `mjpegd` user in `video` with the real `systemd-sysusers`, the default
//! config passes `mjpegd check-config`, the man page and completions come from the CLI, and
//! `--log-format json` writes JSON lines. (`bash scripts/package.sh` builds the package itself and lists
//! it with dpkg-deb: a release build is too slow for every test run.)

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_mjpegd");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn output(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("the command runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_units_pass_systemd_analyze_verify_and_say_what_the_readme_promises() {
    let dir = TempDir::new("units");
    let units = repo().join("packaging/systemd");
    let service = std::fs::read_to_string(units.join("mjpegd.service")).unwrap();
    let socket = std::fs::read_to_string(units.join("mjpegd.socket")).unwrap();
    // verify checks that ExecStart's binary exists and that Documentation=man:mjpegd(1) opens: point it
    // at the binary under test and the man page it generates.
    assert!(service.contains("ExecStart=/usr/bin/mjpegd --config /etc/mjpegd/mjpegd.toml"));
    std::fs::write(
        dir.0.join("mjpegd.service"),
        service.replace("/usr/bin/mjpegd", BIN),
    )
    .unwrap();
    std::fs::write(dir.0.join("mjpegd.socket"), &socket).unwrap();
    let man1 = dir.0.join("man/man1");
    std::fs::create_dir_all(&man1).unwrap();
    let (ok, page, _) = output(Command::new(BIN).arg("man"));
    assert!(ok);
    std::fs::write(man1.join("mjpegd.1"), page).unwrap();
    let (ok, out, err) = output(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(dir.0.join("mjpegd.socket"))
            .arg(dir.0.join("mjpegd.service"))
            .env("MANPATH", dir.0.join("man"))
            .env("SYSTEMD_LOG_LEVEL", "notice"),
    );
    // verify exits 0 even for unknown keys: any message at all is a failure.
    assert!(ok && err.trim().is_empty(), "verify:\n{out}{err}");

    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=30s",
        "Restart=on-failure",
        "User=mjpegd",
        "SupplementaryGroups=video",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=no",
        "DeviceAllow=char-video4linux rw",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
        "StateDirectory=mjpegd",
        "ConfigurationDirectory=mjpegd",
        "LimitNOFILE=65536",
    ] {
        assert!(
            service.lines().any(|l| l == line),
            "mjpegd.service lacks {line}"
        );
    }
    assert!(socket.lines().any(|l| l == "ListenStream=127.0.0.1:8080"));
}

#[test]
fn the_sysusers_file_makes_the_mjpegd_user_in_the_video_group() {
    let root = TempDir::new("sysroot");
    let etc = root.0.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    std::fs::write(etc.join("group"), "root:x:0:\nvideo:x:44:\n").unwrap();
    let (ok, out, err) = output(
        Command::new("systemd-sysusers")
            .arg(format!("--root={}", root.0.display()))
            .arg(repo().join("packaging/systemd/mjpegd.sysusers")),
    );
    assert!(ok, "{out}{err}");
    let passwd = std::fs::read_to_string(etc.join("passwd")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("mjpegd:"))
        .unwrap_or_else(|| panic!("no mjpegd user in\n{passwd}"));
    let fields: Vec<&str> = user.split(':').collect();
    let uid: u32 = fields[2].parse().unwrap();
    assert!((1..1000).contains(&uid), "a system uid: {user}");
    assert_eq!(fields[5], "/var/lib/mjpegd");
    assert!(fields[6].ends_with("nologin"), "{user}");
    let group = std::fs::read_to_string(etc.join("group")).unwrap();
    assert!(group.lines().any(|l| l == "video:x:44:mjpegd"), "{group}");
    assert!(group.lines().any(|l| l.starts_with("mjpegd:x:")), "{group}");
}

#[test]
fn the_default_config_passes_check_config() {
    let (ok, out, err) = output(
        Command::new(BIN)
            .arg("check-config")
            .arg(repo().join("packaging/mjpegd.toml")),
    );
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("test: "), "{out}");
}

#[test]
fn the_man_page_and_completions_come_from_the_cli() {
    let (ok, page, _) = output(Command::new(BIN).arg("man"));
    assert!(ok);
    assert!(page.contains(".TH mjpegd 1"), "{page}");
    for flag in ["listen", "log\\-format", "tls\\-cert", "config"] {
        assert!(
            page.contains(&format!("\\-\\-{flag}")),
            "man page lacks --{flag}"
        );
    }
    // The roff renders with man(1) without a warning.
    let (ok, text, err) = output(
        Command::new("sh")
            .arg("-c")
            .arg(format!("{BIN} man | MANWIDTH=100 man --warnings -l -")),
    );
    assert!(ok && err.trim().is_empty(), "man: {err}");
    // (man marks bold text by overstriking: "c\bc")
    let mut plain = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    assert!(plain.contains("--listen <LISTENER>"), "{plain}");

    let (ok, bash, _) = output(Command::new(BIN).args(["completions", "bash"]));
    assert!(ok && bash.contains("--listen") && bash.contains("check-config"));
    let dir = TempDir::new("completions");
    let file = dir.0.join("mjpegd.bash");
    std::fs::write(&file, &bash).unwrap();
    let (ok, _, err) = output(Command::new("bash").arg("-n").arg(&file));
    assert!(ok, "bash -n: {err}");
    for shell in ["zsh", "fish"] {
        let (ok, script, _) = output(Command::new(BIN).args(["completions", shell]));
        assert!(ok && script.contains("listen"), "{shell}");
    }
    let (ok, _, err) = output(Command::new(BIN).args(["completions", "tcsh"]));
    assert!(!ok && err.contains("possible values"), "{err}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    for by_env in [false, true] {
        let mut cmd = Command::new(BIN);
        cmd.args(["--listen", "127.0.0.1:0", "--resolution", "160x120"])
            .args(["--capture", "always"])
            .env("MJPEGD_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if by_env {
            cmd.env("MJPEGD_LOG_FORMAT", "json");
        } else {
            cmd.args(["--log-format", "json"]);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let addr = listening_address(&mut child);
        let server = Server { child, addr };
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        while let Some(Ok(line)) = lines.next() {
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert_eq!(v["level"], "INFO", "{line}");
            assert!(
                v["timestamp"].is_string() && v["target"].is_string(),
                "{line}"
            );
            seen.push(v);
            if seen.iter().any(|v| v["message"] == "source online") {
                break;
            }
        }
        let online = seen
            .iter()
            .find(|v| v["message"] == "source online")
            .unwrap();
        // Fields sit beside the message, ready to index.
        assert_eq!(online["width"], 160, "{online}");
        drop(server);
    }
}
