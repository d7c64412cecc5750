//! Changing the config file the way a person would: one camera's keys at a time, everything else left as
//! it was written.
//!
//! The cameras API writes its changes into the file mjpegd runs from, so the file stays the truth: a
//! restart or a SIGHUP after an API write changes nothing. The file is edited with `toml_edit`, not
//! re-serialised, so the user's comments, key order, blank lines and formatting survive everywhere a change
//! did not touch; a changed value keeps its key's place and the comment after it. What comes in is JSON
//! (keyed exactly like a `[cameras.NAME]` table); what is checked is the whole resulting file, by the same
//! parser as at startup ([`crate::config::parse`]), so an API write is exactly as valid as the same edit by
//! hand. The file is replaced atomically ([`write_atomic`]): written beside it, synced, renamed over it.

use serde_json::{Map, Value as Json};
use std::io::Write;
use std::path::Path;
use toml_edit::{DocumentMut, Item, Table, TableLike, Value};

/// Why an edit cannot be made (a 400, naming the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditError {
    /// The key at fault (`""`: the request as a whole).
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for EditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

fn error(key: &str, message: impl Into<String>) -> EditError {
    EditError {
        key: key.to_string(),
        message: message.into(),
    }
}

/// Most levels of nested tables accepted in a camera's JSON.
const MAX_DEPTH: usize = 4;

/// A JSON value as the TOML value a person would write for it.
fn to_toml(key: &str, v: &Json, depth: usize) -> Result<Item, EditError> {
    if depth > MAX_DEPTH {
        return Err(error(key, "nested too deep"));
    }
    Ok(match v {
        Json::Null => return Err(error(key, "null is only for removing a key (PATCH)")),
        Json::Bool(b) => Item::Value(Value::from(*b)),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Item::Value(Value::from(i)),
            (None, Some(f)) if f.is_finite() => Item::Value(Value::from(f)),
            _ => return Err(error(key, "number out of range")),
        },
        Json::String(s) => Item::Value(Value::from(s.as_str())),
        Json::Array(items) => {
            let mut array = toml_edit::Array::new();
            for item in items {
                match to_toml(key, item, depth + 1)? {
                    Item::Value(v) => array.push(v),
                    _ => return Err(error(key, "a list holds plain values only")),
                }
            }
            Item::Value(Value::Array(array))
        }
        Json::Object(map) => {
            let mut table = Table::new();
            for (k, v) in map {
                table.insert(k, to_toml(&format!("{key}.{k}"), v, depth + 1)?);
            }
            Item::Table(table)
        }
    })
}

/// A TOML item as JSON (for `GET /api/cameras`).
fn to_json(item: &Item) -> Json {
    match item {
        Item::None => Json::Null,
        Item::Value(v) => value_to_json(v),
        Item::Table(t) => table_to_json(t),
        Item::ArrayOfTables(a) => Json::Array(a.iter().map(|t| table_to_json(t)).collect()),
    }
}

fn value_to_json(v: &Value) -> Json {
    match v {
        Value::String(s) => Json::String(s.value().clone()),
        Value::Integer(i) => Json::from(*i.value()),
        Value::Float(f) => {
            serde_json::Number::from_f64(*f.value()).map_or(Json::Null, Json::Number)
        }
        Value::Boolean(b) => Json::Bool(*b.value()),
        Value::Datetime(d) => Json::String(d.value().to_string()),
        Value::Array(a) => Json::Array(a.iter().map(value_to_json).collect()),
        Value::InlineTable(t) => Json::Object(
            t.iter()
                .map(|(k, v)| (k.to_string(), value_to_json(v)))
                .collect(),
        ),
    }
}

fn table_to_json(t: &dyn TableLike) -> Json {
    Json::Object(t.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect())
}

/// Sets `key` in `table` to `new`, keeping the key's place, its decoration (the comment after a value)
/// and, when the value is unchanged, the value exactly as written.
fn set_key(table: &mut dyn TableLike, key: &str, new: Item) {
    match (table.get_mut(key), new) {
        (Some(Item::Value(old)), Item::Value(mut v)) => {
            if value_to_json(old) == value_to_json(&v) {
                return;
            }
            *v.decor_mut() = old.decor().clone();
            *old = v;
        }
        (Some(Item::Table(old)), Item::Table(new)) => {
            let keys: Vec<String> = old.iter().map(|(k, _)| k.to_string()).collect();
            for k in keys {
                if !new.contains_key(&k) {
                    old.remove(&k);
                }
            }
            for (k, v) in new.into_iter() {
                set_key(old, &k, v);
            }
        }
        (_, new) => {
            table.insert(key, new);
        }
    }
}

/// The `cameras` table of the document, made if missing.
fn cameras_mut(doc: &mut DocumentMut) -> Result<&mut dyn TableLike, EditError> {
    let item = doc.entry("cameras").or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    item.as_table_like_mut()
        .ok_or_else(|| error("cameras", "is not a table in the file"))
}

/// The keys of camera `name` as the file gives them, or None if the file has no such camera.
pub fn camera_keys(doc: &DocumentMut, name: &str) -> Option<Map<String, Json>> {
    let table = doc
        .get("cameras")?
        .as_table_like()?
        .get(name)?
        .as_table_like()?;
    match table_to_json(table) {
        Json::Object(m) => Some(m.iter().map(|(k, v)| (k.clone(), shown(k, v))).collect()),
        _ => None,
    }
}

/// Camera keys whose values are never shown (the API shows `"***"`).
const SECRET_KEYS: &[&str] = &["push-key", "source-auth", "event-key"];
/// Camera keys that hold URLs (or a command line): shown without the credentials in them.
const URL_KEYS: &[&str] = &["source", "control-url"];

/// A key's value as the API shows it: a secret only as being there, a URL without its credentials.
fn shown(key: &str, value: &Json) -> Json {
    match value {
        _ if SECRET_KEYS.contains(&key) => Json::String("***".into()),
        Json::String(s) if URL_KEYS.contains(&key) => {
            Json::String(crate::source::url::redact_urls(s).into_owned())
        }
        other => other.clone(),
    }
}

/// A value sent back exactly as it was shown (`"***"`, a URL without its credentials) keeps the value the
/// file has: what a client read and writes back unchanged does not overwrite a secret with its mask.
fn restore_hidden(doc: &DocumentMut, name: &str, keys: &mut Map<String, Json>) {
    let Some(table) = doc
        .get("cameras")
        .and_then(|c| c.as_table_like())
        .and_then(|c| c.get(name))
        .and_then(|t| t.as_table_like())
    else {
        return;
    };
    let Json::Object(raw) = table_to_json(table) else {
        return;
    };
    for (k, v) in keys.iter_mut() {
        if let Some(old) = raw.get(k) {
            if *v != *old && *v == shown(k, old) {
                *v = old.clone();
            }
        }
    }
}

/// The names of the file's cameras, in its order.
pub fn camera_names(doc: &DocumentMut) -> Vec<String> {
    doc.get("cameras")
        .and_then(|c| c.as_table_like())
        .map(|t| t.iter().map(|(k, _)| k.to_string()).collect())
        .unwrap_or_default()
}

/// Creates camera `name` with exactly `keys`, or makes an existing one have exactly them (unchanged keys
/// stay as written; keys not given are removed).
pub fn put_camera(
    doc: &mut DocumentMut,
    name: &str,
    keys: &Map<String, Json>,
) -> Result<(), EditError> {
    let mut keys = keys.clone();
    restore_hidden(doc, name, &mut keys);
    let keys = &keys;
    let mut items = Vec::with_capacity(keys.len());
    for (k, v) in keys {
        items.push((k.clone(), to_toml(k, v, 0)?));
    }
    let cameras = cameras_mut(doc)?;
    match cameras.get_mut(name).and_then(|c| c.as_table_like_mut()) {
        Some(table) => {
            let gone: Vec<String> = table
                .iter()
                .map(|(k, _)| k.to_string())
                .filter(|k| !keys.contains_key(k))
                .collect();
            for k in gone {
                table.remove(&k);
            }
            for (k, item) in items {
                set_key(table, &k, item);
            }
        }
        None => {
            let mut table = Table::new();
            for (k, item) in items {
                table.insert(&k, item);
            }
            cameras.insert(name, Item::Table(table));
        }
    }
    Ok(())
}

/// Changes only the keys `patch` gives on camera `name` (`null` removes a key). Err if there is no such
/// camera in the document.
pub fn patch_camera(
    doc: &mut DocumentMut,
    name: &str,
    patch: &Map<String, Json>,
) -> Result<(), EditError> {
    let mut patch = patch.clone();
    restore_hidden(doc, name, &mut patch);
    let patch = &patch;
    let mut items = Vec::with_capacity(patch.len());
    for (k, v) in patch {
        items.push((
            k.clone(),
            (!v.is_null()).then(|| to_toml(k, v, 0)).transpose()?,
        ));
    }
    let cameras = cameras_mut(doc)?;
    let table = cameras
        .get_mut(name)
        .and_then(|c| c.as_table_like_mut())
        .ok_or_else(|| error("", format!("no camera {name:?}")))?;
    for (k, item) in items {
        match item {
            None => {
                table.remove(&k);
            }
            Some(item) => set_key(table, &k, item),
        }
    }
    Ok(())
}

/// Removes camera `name`; false if there was none.
pub fn remove_camera(doc: &mut DocumentMut, name: &str) -> bool {
    doc.get_mut("cameras")
        .and_then(|c| c.as_table_like_mut())
        .and_then(|t| t.remove(name))
        .is_some()
}

/// Which camera key of `name`'s table the 1-based `line` of `text` (the edited file) falls on, for an
/// error found by the config parser at that line.
pub fn key_at_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let key = l.split('=').next()?.trim().trim_matches('"');
    (!key.is_empty() && !key.starts_with('[') && !key.starts_with('#')).then(|| key.to_string())
}

/// Replaces the file at `path` with `text` atomically: a new file beside it (same folder, so the rename
/// cannot cross file systems; same permissions), written and synced, renamed over the old one, and the
/// folder synced so the rename survives a power cut. Readers see the old file or the new, never a part.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file path"))?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.mjpegd-{}.tmp", std::process::id()));
    let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FILE: &str = r#"# My cameras
listen = "127.0.0.1:8080"   # loopback only

[cameras.front]
source = "pattern"
fps   = 15        # slow is fine
quality = 70

# The garage camera
[cameras.garage]
device = "/dev/video0"
resolution = "1280x720"
"#;

    fn obj(v: Json) -> Map<String, Json> {
        match v {
            Json::Object(m) => m,
            _ => panic!("an object"),
        }
    }

    #[test]
    fn a_patch_changes_only_its_keys_and_keeps_every_comment() {
        let mut doc: DocumentMut = FILE.parse().unwrap();
        patch_camera(&mut doc, "front", &obj(json!({"fps": 30, "quality": null}))).unwrap();
        let text = doc.to_string();
        assert_eq!(
            text,
            FILE.replace(
                "fps   = 15        # slow is fine",
                "fps   = 30        # slow is fine"
            )
            .replace("quality = 70\n", "")
        );
        assert!(patch_camera(&mut doc, "nope", &obj(json!({"fps": 1}))).is_err());
    }

    #[test]
    fn a_push_key_is_never_shown() {
        let doc: DocumentMut =
            "[cameras.door]\nsource = \"push\"\npush-key = \"0123456789abcdef-secret\"\n"
                .parse()
                .unwrap();
        assert_eq!(
            camera_keys(&doc, "door").unwrap(),
            obj(json!({"source": "push", "push-key": "***"}))
        );
        let doc: DocumentMut =
            "[cameras.door]\nevents = \"/e\"\nevent-key = \"0123456789abcdef-secret\"\n"
                .parse()
                .unwrap();
        assert_eq!(
            camera_keys(&doc, "door").unwrap(),
            obj(json!({"events": "/e", "event-key": "***"}))
        );
    }

    #[test]
    fn a_put_replaces_a_camera_and_leaves_unchanged_keys_as_written() {
        let mut doc: DocumentMut = FILE.parse().unwrap();
        put_camera(
            &mut doc,
            "front",
            &obj(json!({"source": "pattern", "fps": 15, "resolution": "640x480"})),
        )
        .unwrap();
        let text = doc.to_string();
        assert!(
            text.contains("fps   = 15        # slow is fine\n"),
            "{text}"
        );
        assert!(!text.contains("quality"), "{text}");
        assert!(text.contains("resolution = \"640x480\""), "{text}");
        assert!(
            text.contains("# The garage camera\n[cameras.garage]"),
            "{text}"
        );
        // A new camera goes at the end, as a table of its own.
        put_camera(
            &mut doc,
            "back",
            &obj(json!({"source": "http://10.0.0.5/stream", "drop-thumbnails": true})),
        )
        .unwrap();
        let text = doc.to_string();
        assert!(
            text.ends_with(
                "[cameras.back]\nsource = \"http://10.0.0.5/stream\"\ndrop-thumbnails = true\n"
            ),
            "{text}"
        );
        assert_eq!(camera_names(&doc), ["front", "garage", "back"]);
        assert_eq!(
            camera_keys(&doc, "back").unwrap(),
            obj(json!({"source": "http://10.0.0.5/stream", "drop-thumbnails": true}))
        );
        assert!(remove_camera(&mut doc, "garage"));
        assert!(!remove_camera(&mut doc, "garage"));
        let text = doc.to_string();
        assert!(
            !text.contains("garage") && text.starts_with("# My cameras\n"),
            "{text}"
        );
    }

    #[test]
    fn values_json_cannot_hold_in_toml_are_refused_with_their_key() {
        let mut doc: DocumentMut = FILE.parse().unwrap();
        let e = put_camera(&mut doc, "x", &obj(json!({"fps": null}))).unwrap_err();
        assert_eq!(e.key, "fps");
        let e = put_camera(&mut doc, "x", &obj(json!({"a": [{"b": 1}]}))).unwrap_err();
        assert_eq!(e.key, "a");
        let deep = json!({"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}});
        assert!(put_camera(&mut doc, "x", &obj(deep)).is_err());
        assert_eq!(doc.to_string(), FILE, "a refused edit changes nothing");
    }

    #[test]
    fn secrets_are_shown_masked_and_a_mask_written_back_keeps_the_secret() {
        let file = "[cameras.door]\nsource = \"http://admin:S3cret@cam/stream\"\nsource-auth = \"u:S3cret\"\n";
        let mut doc: DocumentMut = file.parse().unwrap();
        let shown = camera_keys(&doc, "door").unwrap();
        let text = Json::Object(shown.clone()).to_string();
        assert!(!text.contains("S3cret"), "{text}");
        assert_eq!(shown["source-auth"], "***");
        // What was read, written back whole, changes nothing.
        put_camera(&mut doc, "door", &shown).unwrap();
        assert_eq!(doc.to_string(), file);
        patch_camera(&mut doc, "door", &obj(json!({"source-auth": "***"}))).unwrap();
        assert_eq!(doc.to_string(), file);
        // A new value is taken.
        patch_camera(&mut doc, "door", &obj(json!({"source-auth": "u:new"}))).unwrap();
        assert!(doc.to_string().contains("u:new"));
    }

    #[test]
    fn errors_are_placed_on_keys() {
        assert_eq!(key_at_line(FILE, 6), Some("fps".into()));
        assert_eq!(key_at_line(FILE, 4), None);
        assert_eq!(key_at_line(FILE, 99), None);
    }

    #[test]
    fn the_file_is_replaced_whole_with_its_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("mjpegd-edit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cams.toml");
        std::fs::write(&file, "old").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&file, "new text\n").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new text\n");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
