//! What a camera control is and which values it takes: pure logic, unit-tested without a device.
//!
//! Keys are v4l2-ctl's (the control's name, lower case, with runs of other characters made one `_`), and
//! the names kernels before 5.16 gave the common controls are accepted for the new ones and the other way
//! round, so a file or a client written for either kind of kernel works on both. A value is checked
//! against the control's type, range, step and menu here, before any ioctl: a driver clamps and rounds
//! what it is given without a word, so only a check beforehand can tell a user their value was wrong.
//! Which auto control a manual one depends on is not something V4L2 reports; [`auto_of`] knows the
//! standard pairs.

use serde_json::Value as Json;

/// The types of V4L2 controls (`enum v4l2_ctrl_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Integer,
    Boolean,
    Menu,
    Button,
    Integer64,
    Class,
    String,
    Bitmask,
    IntegerMenu,
    Other(u32),
}

impl Kind {
    pub fn from_raw(t: u32) -> Kind {
        match t {
            1 => Kind::Integer,
            2 => Kind::Boolean,
            3 => Kind::Menu,
            4 => Kind::Button,
            5 => Kind::Integer64,
            6 => Kind::Class,
            7 => Kind::String,
            8 => Kind::Bitmask,
            9 => Kind::IntegerMenu,
            other => Kind::Other(other),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Integer => "integer",
            Kind::Boolean => "boolean",
            Kind::Menu => "menu",
            Kind::Button => "button",
            Kind::Integer64 => "integer64",
            Kind::Class => "class",
            Kind::String => "string",
            Kind::Bitmask => "bitmask",
            Kind::IntegerMenu => "integer_menu",
            Kind::Other(_) => "unknown",
        }
    }

    /// Whether mjpegd reads and writes controls of this type (through G_CTRL/S_CTRL, 32-bit values).
    pub fn supported(self) -> bool {
        matches!(
            self,
            Kind::Integer | Kind::Boolean | Kind::Menu | Kind::IntegerMenu
        )
    }
}

pub const FLAG_DISABLED: u32 = 0x0001;
pub const FLAG_GRABBED: u32 = 0x0002;
pub const FLAG_READ_ONLY: u32 = 0x0004;
pub const FLAG_INACTIVE: u32 = 0x0010;
pub const FLAG_WRITE_ONLY: u32 = 0x0040;
pub const FLAG_VOLATILE: u32 = 0x0080;

/// The flags' names, as the listing shows them.
pub fn flag_names(flags: u32) -> Vec<&'static str> {
    [
        (FLAG_DISABLED, "disabled"),
        (FLAG_GRABBED, "grabbed"),
        (FLAG_READ_ONLY, "read-only"),
        (0x0008, "update"),
        (FLAG_INACTIVE, "inactive"),
        (0x0020, "slider"),
        (FLAG_WRITE_ONLY, "write-only"),
        (FLAG_VOLATILE, "volatile"),
        (0x0200, "execute-on-write"),
    ]
    .into_iter()
    .filter(|(f, _)| flags & f != 0)
    .map(|(_, n)| n)
    .collect()
}

/// One menu entry: its index (the value) and its label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MenuEntry {
    pub index: u32,
    pub label: String,
}

/// A control as the driver describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    pub id: u32,
    /// v4l2-ctl's name for it.
    pub key: String,
    pub name: String,
    pub kind: Kind,
    pub min: i32,
    pub max: i32,
    pub step: i32,
    pub default: i32,
    pub flags: u32,
    /// Menu entries (menus only; gaps are left out, as the driver leaves them out).
    pub menu: Vec<MenuEntry>,
}

impl Info {
    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// Whether it can be read with G_CTRL.
    pub fn readable(&self) -> bool {
        self.kind.supported() && !self.has(FLAG_WRITE_ONLY)
    }

    /// The auto control this one depends on, if any.
    pub fn depends_on(&self) -> Option<u32> {
        auto_of(self.id)
    }

    /// Whether this is the auto half of an auto/manual pair.
    pub fn is_auto(&self) -> bool {
        AUTO_PAIRS.iter().any(|(_, auto)| *auto == self.id)
    }

    /// The label of menu entry `value`, if this is a menu.
    pub fn label(&self, value: i32) -> Option<&str> {
        self.menu
            .iter()
            .find(|m| m.index as i64 == value as i64)
            .map(|m| m.label.as_str())
    }

    /// A value as the listing shows it: a boolean as true/false, anything else as its number.
    pub fn shown(&self, value: i32) -> Json {
        match self.kind {
            Kind::Boolean => Json::Bool(value != 0),
            _ => Json::from(value),
        }
    }
}

/// Manual controls and the auto control that overrides them (V4L2 ids).
const AUTO_PAIRS: &[(u32, u32)] = &[
    (0x009a_0902, 0x009a_0901), // exposure_time_absolute <- auto_exposure
    (0x009a_0911, 0x009a_0901), // iris_absolute <- auto_exposure
    (0x009a_090a, 0x009a_090c), // focus_absolute <- focus_automatic_continuous
    (0x009a_090b, 0x009a_090c), // focus_relative <- focus_automatic_continuous
    (0x0098_091a, 0x0098_090c), // white_balance_temperature <- white_balance_automatic
    (0x0098_090e, 0x0098_090c), // red_balance <- white_balance_automatic
    (0x0098_090f, 0x0098_090c), // blue_balance <- white_balance_automatic
    (0x0098_0913, 0x0098_0912), // gain <- gain_automatic
    (0x0098_0903, 0x0098_0919), // hue <- hue_automatic
];

/// The auto control overriding control `id`, if it is the manual half of a standard pair.
pub fn auto_of(id: u32) -> Option<u32> {
    AUTO_PAIRS.iter().find(|(m, _)| *m == id).map(|(_, a)| *a)
}

/// Names before kernel 5.16 and their names since.
const RENAMED: &[(&str, &str)] = &[
    ("exposure_auto", "auto_exposure"),
    ("exposure_absolute", "exposure_time_absolute"),
    ("focus_auto", "focus_automatic_continuous"),
    ("white_balance_temperature_auto", "white_balance_automatic"),
    ("exposure_auto_priority", "exposure_dynamic_framerate"),
];

/// A key in today's spelling (an old name becomes the new one; anything else is unchanged).
pub fn canonical(key: &str) -> &str {
    RENAMED
        .iter()
        .find(|(old, _)| *old == key)
        .map_or(key, |(_, new)| new)
}

/// v4l2-ctl's key for a control named `name` ("Exposure Time, Absolute" -> exposure_time_absolute).
pub fn key_of(name: &str) -> String {
    let mut key = String::with_capacity(name.len());
    let mut gap = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if gap && !key.is_empty() {
                key.push('_');
            }
            gap = false;
            key.push(c.to_ascii_lowercase());
        } else {
            gap = true;
        }
    }
    key
}

/// Longest key accepted (v4l2 names are at most 31 bytes).
pub const MAX_KEY: usize = 64;
/// Longest menu label accepted.
pub const MAX_LABEL: usize = 64;

/// Whether `key` looks like a control key: 1 to [`MAX_KEY`] bytes of `a-z`, `0-9` and `_`.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A value asked for a control, before it meets the control.
#[derive(Clone, Debug, PartialEq)]
pub enum Setting {
    Int(i64),
    Bool(bool),
    /// A menu entry's label (or a number written as text).
    Label(String),
}

impl Setting {
    /// From JSON: a number, true/false or a string; anything else is refused with a reason.
    pub fn from_json(v: &Json) -> Result<Setting, String> {
        match v {
            Json::Bool(b) => Ok(Setting::Bool(*b)),
            Json::Number(n) => n
                .as_i64()
                .map(Setting::Int)
                .ok_or_else(|| format!("{n} is not a whole number")),
            Json::String(s) if s.len() <= MAX_LABEL => Ok(Setting::Label(s.clone())),
            Json::String(_) => Err(format!("a label is at most {MAX_LABEL} bytes")),
            _ => Err("expected a number, true/false or a menu label".into()),
        }
    }

    pub fn to_json(&self) -> Json {
        match self {
            Setting::Int(n) => Json::from(*n),
            Setting::Bool(b) => Json::Bool(*b),
            Setting::Label(s) => Json::String(s.clone()),
        }
    }
}

/// Why a value cannot be written, before any ioctl.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// `out_of_range`, `invalid`, `read_only` or `not_supported`.
    pub result: &'static str,
    pub reason: String,
}

fn refused(result: &'static str, reason: String) -> Refused {
    Refused { result, reason }
}

/// The raw value `setting` means for control `info`, checked against its type, range, step and menu.
pub fn resolve(info: &Info, setting: &Setting) -> Result<i32, Refused> {
    if !info.kind.supported() {
        return Err(refused(
            "not_supported",
            format!(
                "{} is a {} control: mjpegd writes integer, boolean and menu controls",
                info.key,
                info.kind.as_str()
            ),
        ));
    }
    if info.has(FLAG_READ_ONLY) || info.has(FLAG_DISABLED) {
        return Err(refused("read_only", format!("{} is read-only", info.key)));
    }
    let n: i64 = match (info.kind, setting) {
        (Kind::Boolean, Setting::Bool(b)) => *b as i64,
        (Kind::Boolean, Setting::Int(n)) if *n == 0 || *n == 1 => *n,
        (Kind::Boolean, _) => {
            return Err(refused(
                "invalid",
                format!("{} takes true or false", info.key),
            ))
        }
        (Kind::Menu | Kind::IntegerMenu, Setting::Label(l)) => {
            match info.menu.iter().find(|m| m.label.eq_ignore_ascii_case(l)) {
                Some(m) => m.index as i64,
                None => match l.trim().parse::<i64>() {
                    Ok(n) => n,
                    Err(_) => return Err(refused("invalid", menu_reason(info, l))),
                },
            }
        }
        (_, Setting::Int(n)) => *n,
        (_, Setting::Bool(_)) => {
            return Err(refused(
                "invalid",
                format!("{} takes a number, not true/false", info.key),
            ))
        }
        (_, Setting::Label(l)) => match l.trim().parse::<i64>() {
            Ok(n) => n,
            Err(_) => {
                return Err(refused(
                    "invalid",
                    format!("{} takes a number, not {l:?}", info.key),
                ))
            }
        },
    };
    let (min, max) = (info.min as i64, info.max as i64);
    if n < min || n > max {
        return Err(refused(
            "out_of_range",
            format!("{} takes {min} to {max}, not {n}", info.key),
        ));
    }
    match info.kind {
        Kind::Menu | Kind::IntegerMenu => {
            if !info.menu.iter().any(|m| m.index as i64 == n) {
                return Err(refused("invalid", menu_reason(info, &n.to_string())));
            }
        }
        _ => {
            let step = info.step.max(1) as i64;
            if (n - min) % step != 0 {
                let below = n - (n - min) % step;
                return Err(refused(
                    "out_of_range",
                    format!(
                        "{} moves in steps of {step} from {min}: {n} is not one of them ({below} and {} are)",
                        info.key,
                        (below + step).min(max)
                    ),
                ));
            }
        }
    }
    Ok(n as i32)
}

fn menu_reason(info: &Info, asked: &str) -> String {
    let entries: Vec<String> = info
        .menu
        .iter()
        .map(|m| format!("{} ({:?})", m.index, m.label))
        .collect();
    format!(
        "{} has no entry {asked:?}: it offers {}",
        info.key,
        entries.join(", ")
    )
}

/// The position of `key` (in either spelling) among `controls`.
pub fn find<'a>(controls: &'a [Info], key: &str) -> Option<&'a Info> {
    let want = canonical(key);
    controls.iter().find(|c| canonical(&c.key) == want)
}

/// `key` without case and without anything but letters and digits: camera-streamer matches option keys
/// this way (`ExposureTime`, `exposure-time` and `exposure_time` are one key).
fn loose(key: &str) -> String {
    key.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The control `key` names, ignoring case and every character but letters and digits, in today's or
/// the pre-5.16 spelling.
pub fn find_loose<'a>(controls: &'a [Info], key: &str) -> Option<&'a Info> {
    let want = loose(key);
    if want.is_empty() {
        return None;
    }
    controls.iter().find(|c| loose(&c.key) == want).or_else(|| {
        let (_, new) = RENAMED.iter().find(|(old, _)| loose(old) == want)?;
        find(controls, new)
    })
}

/// `items` with every auto control first (in their order), then the rest (in theirs): an auto control
/// decides whether its manual ones can be written at all.
pub fn autos_first<T>(items: Vec<(Info, T)>) -> Vec<(Info, T)> {
    let (mut autos, rest): (Vec<_>, Vec<_>) = items.into_iter().partition(|(i, _)| i.is_auto());
    autos.extend(rest);
    autos
}

/// An auto-exposure-like control for the handlers' unit tests: range 0 to 3, default 3, and as a menu the
/// two entries UVC cameras offer (1 and 3, with the gap between).
#[cfg(test)]
pub(crate) fn sample_control(id: u32, name: &str, kind: Kind) -> Info {
    Info {
        id,
        key: key_of(name),
        name: name.into(),
        kind,
        min: 0,
        max: 3,
        step: 1,
        default: 3,
        flags: 0,
        menu: if kind == Kind::Menu {
            vec![
                MenuEntry {
                    index: 1,
                    label: "Manual Mode".into(),
                },
                MenuEntry {
                    index: 3,
                    label: "Aperture Priority Mode".into(),
                },
            ]
        } else {
            vec![]
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(key: &str, kind: Kind, min: i32, max: i32, step: i32) -> Info {
        Info {
            id: 0,
            key: key.into(),
            name: key.into(),
            kind,
            min,
            max,
            step,
            default: min,
            flags: 0,
            menu: vec![],
        }
    }

    fn menu() -> Info {
        Info {
            id: 0x009a_0901,
            menu: vec![
                MenuEntry {
                    index: 1,
                    label: "Manual Mode".into(),
                },
                MenuEntry {
                    index: 3,
                    label: "Aperture Priority Mode".into(),
                },
            ],
            ..info("auto_exposure", Kind::Menu, 0, 3, 1)
        }
    }

    #[test]
    fn keys_are_v4l2_ctls() {
        assert_eq!(key_of("Exposure Time, Absolute"), "exposure_time_absolute");
        assert_eq!(
            key_of("White Balance, Automatic"),
            "white_balance_automatic"
        );
        assert_eq!(key_of("  Pan/Tilt (Reset) "), "pan_tilt_reset");
        assert_eq!(key_of("Brightness"), "brightness");
        assert!(valid_key("focus_absolute") && !valid_key("Focus") && !valid_key(""));
    }

    #[test]
    fn old_names_find_new_controls_and_back() {
        let new = [menu()];
        assert_eq!(find(&new, "exposure_auto").unwrap().key, "auto_exposure");
        let old = [Info {
            key: "exposure_auto".into(),
            ..menu()
        }];
        assert_eq!(find(&old, "auto_exposure").unwrap().key, "exposure_auto");
        assert!(find(&new, "focus_auto").is_none());
    }

    #[test]
    fn values_are_checked_against_type_range_step_and_menu() {
        let focus = info("focus_absolute", Kind::Integer, 0, 250, 5);
        assert_eq!(resolve(&focus, &Setting::Int(30)), Ok(30));
        assert_eq!(resolve(&focus, &Setting::Label("30".into())), Ok(30));
        let e = resolve(&focus, &Setting::Int(33)).unwrap_err();
        assert_eq!(e.result, "out_of_range");
        assert!(
            e.reason.contains("steps of 5") && e.reason.contains("30 and 35"),
            "{}",
            e.reason
        );
        assert_eq!(
            resolve(&focus, &Setting::Int(255)).unwrap_err().result,
            "out_of_range"
        );
        assert_eq!(
            resolve(&focus, &Setting::Int(-5)).unwrap_err().result,
            "out_of_range"
        );
        assert_eq!(
            resolve(&focus, &Setting::Bool(true)).unwrap_err().result,
            "invalid"
        );
        let m = menu();
        assert_eq!(resolve(&m, &Setting::Label("manual mode".into())), Ok(1));
        assert_eq!(resolve(&m, &Setting::Int(3)), Ok(3));
        let gap = resolve(&m, &Setting::Int(2)).unwrap_err();
        assert_eq!(gap.result, "invalid");
        assert!(gap.reason.contains("Manual Mode"), "{}", gap.reason);
        assert_eq!(
            resolve(&m, &Setting::Label("Full Auto".into()))
                .unwrap_err()
                .result,
            "invalid"
        );
        let b = info("focus_automatic_continuous", Kind::Boolean, 0, 1, 1);
        assert_eq!(resolve(&b, &Setting::Bool(false)), Ok(0));
        assert_eq!(resolve(&b, &Setting::Int(1)), Ok(1));
        assert_eq!(resolve(&b, &Setting::Int(2)).unwrap_err().result, "invalid");
        let ro = Info {
            flags: FLAG_READ_ONLY,
            ..info("iris_absolute", Kind::Integer, 0, 20, 1)
        };
        assert_eq!(
            resolve(&ro, &Setting::Int(1)).unwrap_err().result,
            "read_only"
        );
        let button = info("pan_reset", Kind::Button, 0, 0, 0);
        assert_eq!(
            resolve(&button, &Setting::Int(1)).unwrap_err().result,
            "not_supported"
        );
    }

    #[test]
    fn json_values() {
        assert_eq!(
            Setting::from_json(&serde_json::json!(5)),
            Ok(Setting::Int(5))
        );
        assert_eq!(
            Setting::from_json(&serde_json::json!(true)),
            Ok(Setting::Bool(true))
        );
        assert!(Setting::from_json(&serde_json::json!(1.5)).is_err());
        assert!(Setting::from_json(&serde_json::json!([1])).is_err());
        assert!(Setting::from_json(&serde_json::json!(null)).is_err());
        assert!(Setting::from_json(&serde_json::json!("x".repeat(65))).is_err());
    }

    #[test]
    fn loose_keys_ignore_case_and_punctuation() {
        let controls = [
            menu(),
            info("exposure_time_absolute", Kind::Integer, 3, 2047, 1),
        ];
        for key in [
            "auto_exposure",
            "AutoExposure",
            "auto-exposure",
            "exposure_auto",
            "ExposureAuto",
        ] {
            assert_eq!(
                find_loose(&controls, key).unwrap().key,
                "auto_exposure",
                "{key}"
            );
        }
        assert_eq!(
            find_loose(&controls, "Exposure Time, Absolute")
                .unwrap()
                .key,
            "exposure_time_absolute"
        );
        assert_eq!(
            find_loose(&controls, "exposureabsolute").unwrap().key,
            "exposure_time_absolute"
        );
        assert!(find_loose(&controls, "exposure").is_none());
        assert!(find_loose(&controls, "__").is_none());
    }

    #[test]
    fn auto_controls_go_first() {
        let exposure = Info {
            id: 0x009a_0902,
            ..info("exposure_time_absolute", Kind::Integer, 3, 2047, 1)
        };
        let order = autos_first(vec![(exposure.clone(), 1), (menu(), 2)]);
        assert_eq!(order.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(exposure.depends_on(), Some(0x009a_0901));
    }
}
