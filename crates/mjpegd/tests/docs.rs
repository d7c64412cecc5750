//! The documentation keeps up with the program: every long flag of `mjpegd --help` (which the man page
//! is generated from, and must list too) is written as `--flag` somewhere in docs/*.md, every config key
//! the parser accepts (camera keys and server keys, read from the "unknown field ..., expected one of ..."
//! error of `mjpegd check-config` on a file with a bogus key) has a row in docs/cameras.md's key tables,
//! and every link from README.md or docs/*.md to a local file (and heading) points at one that exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mjpegd");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("MJPEGD_LISTEN")
        .output()
        .expect("mjpegd runs");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The long flags `--name` in `text` (letters, digits and `-` after the two dashes).
fn long_flags(text: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("--") {
        let before_ok = at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric();
        let after = &rest[at + 2..];
        let len = after
            .bytes()
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            .count();
        let name = &after[..len];
        if before_ok && name.len() > 1 && name.as_bytes()[0].is_ascii_lowercase() {
            flags.insert(name.to_string());
        }
        rest = &after[len..];
    }
    flags
}

/// The server's flags, as `mjpegd --help` lists them (not --help and --version).
fn help_flags() -> BTreeSet<String> {
    let (ok, help) = run(&["--help"]);
    assert!(ok, "mjpegd --help failed: {help}");
    let mut flags = long_flags(&help);
    flags.remove("help");
    flags.remove("version");
    flags
}

/// The keys the config parser accepts where `bogus` stands in `toml`, from its error message.
fn keys_expected(toml: &str) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("mjpegd-docs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("bogus-{}.toml", toml.len()));
    std::fs::write(&file, toml).unwrap();
    let (ok, out) = run(&["check-config", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    assert!(!ok, "check-config accepted a bogus key: {out}");
    let list = out
        .split_once("expected one of ")
        .unwrap_or_else(|| panic!("no list of keys in: {out}"))
        .1;
    let keys: Vec<String> = list
        .lines()
        .next()
        .unwrap()
        .split(", ")
        .map(|k| k.trim().trim_matches('`').to_string())
        .collect();
    assert!(keys.len() > 5, "too few keys parsed from: {out}");
    keys
}

fn camera_keys() -> Vec<String> {
    keys_expected("[cameras.a]\nsource = \"pattern\"\nbogus-key-for-docs-test = 1\n")
}

fn server_keys() -> Vec<String> {
    keys_expected("bogus-key-for-docs-test = 1\n")
}

/// docs/*.md, by file name.
fn pages() -> Vec<(String, String)> {
    let mut pages: Vec<(String, String)> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    pages.sort();
    assert!(pages.len() >= 8, "docs/ has too few pages: {pages:?}");
    pages
}

/// The flags of `flags` that no page writes as `--flag` (followed by something that ends the name).
fn undocumented_flags(flags: &BTreeSet<String>, pages: &[(String, String)]) -> Vec<String> {
    let written: BTreeSet<String> = pages.iter().flat_map(|(_, t)| long_flags(t)).collect();
    flags
        .iter()
        .filter(|f| !written.contains(*f))
        .cloned()
        .collect()
}

/// The keys of `keys` without a table row of their own (`` | `key` | ``) in `table`.
fn keys_without_row(keys: &[String], table: &str) -> Vec<String> {
    keys.iter()
        .filter(|k| {
            let row = format!("| `{k}` |");
            !table.lines().any(|l| l.trim_start().starts_with(&row))
        })
        .cloned()
        .collect()
}

#[test]
fn every_flag_of_help_is_in_the_man_page_and_the_docs() {
    let flags = help_flags();
    for expected in ["listen", "config", "trusted-proxy", "admin", "log-format"] {
        assert!(
            flags.contains(expected),
            "--{expected} not found in --help: {flags:?}"
        );
    }
    let (ok, man) = run(&["man"]);
    assert!(ok, "mjpegd man failed");
    // roff: `\-` is a dash, `\fB` ... `\fR` switch fonts.
    let man = man
        .replace("\\-", "-")
        .replace("\\fB", " ")
        .replace("\\fI", " ")
        .replace("\\fR", " ");
    let man_flags = long_flags(&man);
    let not_in_man: Vec<_> = flags.difference(&man_flags).collect();
    assert!(not_in_man.is_empty(), "the man page lacks {not_in_man:?}");

    let pages = pages();
    let missing = undocumented_flags(&flags, &pages);
    assert!(
        missing.is_empty(),
        "flags of `mjpegd --help` documented nowhere in docs/*.md (write them as `--flag`): {missing:?}"
    );
    // The check can fail: a flag the docs do not have is reported.
    let mut more = flags.clone();
    more.insert("no-such-flag".into());
    assert_eq!(undocumented_flags(&more, &pages), vec!["no-such-flag"]);
}

#[test]
fn every_config_key_has_a_row_in_the_cameras_page() {
    let camera = camera_keys();
    let mut server = server_keys();
    for expected in ["source", "device", "warmup-frames"] {
        assert!(camera.iter().any(|k| k == expected), "{camera:?}");
    }
    for expected in ["listen", "trusted-proxies", "admins", "cameras"] {
        assert!(server.iter().any(|k| k == expected), "{server:?}");
    }
    // `cameras` is the table of `[cameras.NAME]` tables, not a key with a value.
    server.retain(|k| k != "cameras");
    let table = std::fs::read_to_string(repo().join("docs/cameras.md")).unwrap();
    let keys: Vec<String> = camera.into_iter().chain(server).collect();
    let missing = keys_without_row(&keys, &table);
    assert!(
        missing.is_empty(),
        "config keys without a row (| `key` | ...) in docs/cameras.md: {missing:?}"
    );
    // The check can fail: a row taken out is reported.
    let first = &keys[0];
    let cut: String = table
        .lines()
        .filter(|l| !l.starts_with(&format!("| `{first}` |")))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(keys_without_row(&keys, &cut), vec![first.clone()]);
}

/// GitHub's anchor of a heading: lower case, punctuation left out, spaces as dashes.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of the headings of a Markdown text (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect()
}

/// The targets of the inline links `[text](target)` of a Markdown text.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        match after.find(')') {
            Some(end) => {
                out.push(after[..end].to_string());
                rest = &after[end..];
            }
            None => break,
        }
    }
    out
}

/// The local links of `text` (in the file at `from`) that point at nothing: a missing file, or a `#heading`
/// its Markdown file does not have.
fn broken_links(from: &Path, text: &str) -> Vec<String> {
    let dir = from.parent().unwrap();
    let mut broken = Vec::new();
    for link in links(text) {
        if link.contains("://") || link.starts_with("mailto:") {
            continue;
        }
        let (path, fragment) = match link.split_once('#') {
            Some((p, f)) => (p, Some(f)),
            None => (link.as_str(), None),
        };
        let target = if path.is_empty() {
            from.to_path_buf()
        } else {
            dir.join(path)
        };
        if !target.exists() {
            broken.push(link.clone());
            continue;
        }
        if let Some(fragment) = fragment {
            if target.extension().is_some_and(|e| e == "md") {
                let heads = anchors(&std::fs::read_to_string(&target).unwrap());
                if !heads.contains(fragment) {
                    broken.push(link.clone());
                }
            }
        }
    }
    broken
}

#[test]
fn the_readme_links_every_page_and_no_link_is_broken() {
    let readme_path = repo().join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let docs_links: Vec<String> = links(&readme)
        .into_iter()
        .filter(|l| l.starts_with("docs/"))
        .collect();
    assert!(
        docs_links.len() >= 8,
        "README links too few docs: {docs_links:?}"
    );
    assert!(
        docs_links.iter().any(|l| l == "docs/recipes/README.md"),
        "README does not link docs/recipes/README.md"
    );
    for (name, _) in pages() {
        let link = format!("docs/{name}");
        assert!(docs_links.contains(&link), "README.md does not link {link}");
    }
    let mut broken = broken_links(&readme_path, &readme);
    for (name, text) in pages() {
        let path = repo().join("docs").join(&name);
        broken.extend(
            broken_links(&path, &text)
                .into_iter()
                .map(|l| format!("docs/{name}: {l}")),
        );
    }
    assert!(broken.is_empty(), "broken links: {broken:?}");
    // The check can fail: a link to a page or a heading that does not exist is reported.
    assert_eq!(
        broken_links(
            &readme_path,
            "[a](docs/no-such-page.md) [b](docs/api.md#no-such-heading) [c](docs/api.md#the-cameras-api)"
        ),
        vec!["docs/no-such-page.md", "docs/api.md#no-such-heading"]
    );
}

#[test]
fn the_readme_stays_a_front_door() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 150,
        "README.md has {lines} lines: move reference text into docs/"
    );
    for command in [
        "bash scripts/run.sh",
        "bash scripts/test.sh",
        "http://127.0.0.1:8080",
    ] {
        assert!(readme.contains(command), "README.md lacks {command}");
    }
}

#[test]
fn the_debian_package_ships_the_docs() {
    let manifest = std::fs::read_to_string(repo().join("crates/mjpegd/Cargo.toml")).unwrap();
    for asset in [
        r#"["../../README.md", "usr/share/doc/mjpegd/README.md", "644"]"#,
        r#"["../../docs/*.md", "usr/share/doc/mjpegd/docs/", "644"]"#,
    ] {
        assert!(
            manifest.contains(asset),
            "[package.metadata.deb] assets lack {asset}"
        );
    }
}
