//! The fake camera's controls, modelled on what a UVC webcam (a Logitech C920) exposes, so mjpegd's
//! control code meets the awkward parts of real cameras in tests:
//!
//! - auto/manual pairs: `exposure_time_absolute` is INACTIVE (and refuses writes with EACCES) while
//!   `auto_exposure` is 3 (Aperture Priority Mode); `focus_absolute` while `focus_automatic_continuous` is
//!   on;
//! - a menu with gaps: `auto_exposure` offers only 1 and 3 (QUERYMENU of 0 or 2 is EINVAL);
//! - a step: `focus_absolute` moves in steps of 5, `pan_absolute` of 3600;
//! - a read-only control (`iris_absolute`) and a write-only one (`pan_relative`, G_CTRL is EACCES);
//! - a button (`pan_reset`), a type mjpegd does not write;
//! - a slow control: writing `pan_absolute` takes [`SLOW_WRITE`], as a UVC control transfer can;
//! - the control class entries (`User Controls`, `Camera Controls`) that enumeration returns;
//! - values clamped and rounded to the step by S_CTRL, as the kernel does (a value out of range is
//!   silently changed, never refused);
//! - every value back to its default on replug, as a real camera powers up with its defaults;
//! - on request ([`crate::FakeCam::reset_focus_on_stream`]), `focus_absolute` back to its default shortly
//!   after streaming starts, as some cameras do (why crowsnest sets focus again);
//! - a visible effect: `brightness` shifts the generated picture's luma by its value.
//!
//! Only the fixed-size ioctls are served (QUERYCTRL with V4L2_CTRL_FLAG_NEXT_CTRL, QUERY_EXT_CTRL,
//! QUERYMENU, G_CTRL, S_CTRL): a FUSE restricted ioctl cannot follow the pointer inside *_EXT_CTRLS.

use std::time::Duration;

use fuser::Errno;

use crate::v4l2::Bytes;

/// How long a write of the slow control (`pan_absolute`) takes.
pub const SLOW_WRITE: Duration = Duration::from_secs(2);

pub const CID_BRIGHTNESS: u32 = 0x0098_0900;
pub const CID_CONTRAST: u32 = 0x0098_0901;
pub const CID_AUTO_EXPOSURE: u32 = 0x009a_0901;
pub const CID_EXPOSURE_TIME_ABSOLUTE: u32 = 0x009a_0902;
pub const CID_PAN_RELATIVE: u32 = 0x009a_0904;
pub const CID_PAN_RESET: u32 = 0x009a_0906;
pub const CID_PAN_ABSOLUTE: u32 = 0x009a_0908;
pub const CID_FOCUS_ABSOLUTE: u32 = 0x009a_090a;
pub const CID_FOCUS_AUTO: u32 = 0x009a_090c;
pub const CID_IRIS_ABSOLUTE: u32 = 0x009a_0911;
const CID_USER_CLASS: u32 = 0x0098_0001;
const CID_CAMERA_CLASS: u32 = 0x009a_0001;

const TYPE_INTEGER: u32 = 1;
const TYPE_BOOLEAN: u32 = 2;
const TYPE_MENU: u32 = 3;
const TYPE_BUTTON: u32 = 4;
const TYPE_CTRL_CLASS: u32 = 6;

const FLAG_READ_ONLY: u32 = 0x0004;
const FLAG_INACTIVE: u32 = 0x0010;
const FLAG_WRITE_ONLY: u32 = 0x0040;
const FLAG_NEXT_CTRL: u32 = 0x8000_0000;
const FLAG_NEXT_COMPOUND: u32 = 0x4000_0000;

/// `V4L2_EXPOSURE_APERTURE_PRIORITY`: the camera's auto exposure.
const EXPOSURE_APERTURE_PRIORITY: i32 = 3;

struct Def {
    id: u32,
    kind: u32,
    name: &'static str,
    min: i32,
    max: i32,
    step: i32,
    default: i32,
    flags: u32,
    /// Menu entries (index, label); gaps are indexes left out.
    menu: &'static [(u32, &'static str)],
}

const fn int(id: u32, name: &'static str, min: i32, max: i32, step: i32, default: i32) -> Def {
    Def {
        id,
        kind: TYPE_INTEGER,
        name,
        min,
        max,
        step,
        default,
        flags: 0,
        menu: &[],
    }
}

/// Sorted by id, as NEXT_CTRL enumeration walks them.
const DEFS: &[Def] = &[
    Def {
        kind: TYPE_CTRL_CLASS,
        flags: FLAG_READ_ONLY | FLAG_WRITE_ONLY,
        ..int(CID_USER_CLASS, "User Controls", 0, 0, 0, 0)
    },
    int(CID_BRIGHTNESS, "Brightness", -64, 64, 1, 0),
    int(CID_CONTRAST, "Contrast", 0, 100, 1, 32),
    Def {
        kind: TYPE_CTRL_CLASS,
        flags: FLAG_READ_ONLY | FLAG_WRITE_ONLY,
        ..int(CID_CAMERA_CLASS, "Camera Controls", 0, 0, 0, 0)
    },
    Def {
        kind: TYPE_MENU,
        menu: &[(1, "Manual Mode"), (3, "Aperture Priority Mode")],
        ..int(CID_AUTO_EXPOSURE, "Auto Exposure", 0, 3, 1, 3)
    },
    int(
        CID_EXPOSURE_TIME_ABSOLUTE,
        "Exposure Time, Absolute",
        3,
        2047,
        1,
        250,
    ),
    Def {
        flags: FLAG_WRITE_ONLY,
        ..int(CID_PAN_RELATIVE, "Pan, Relative", -36000, 36000, 3600, 0)
    },
    Def {
        kind: TYPE_BUTTON,
        flags: FLAG_WRITE_ONLY,
        ..int(CID_PAN_RESET, "Pan, Reset", 0, 0, 0, 0)
    },
    int(CID_PAN_ABSOLUTE, "Pan, Absolute", -36000, 36000, 3600, 0),
    int(CID_FOCUS_ABSOLUTE, "Focus, Absolute", 0, 250, 5, 0),
    Def {
        kind: TYPE_BOOLEAN,
        ..int(CID_FOCUS_AUTO, "Focus, Automatic Continuous", 0, 1, 1, 1)
    },
    Def {
        flags: FLAG_READ_ONLY,
        ..int(CID_IRIS_ABSOLUTE, "Iris, Absolute", 0, 20, 1, 8)
    },
];

/// The current values, one per entry of the table.
pub(crate) struct Values(Vec<i32>);

/// What an S_CTRL does.
pub(crate) enum Write {
    /// Done at once; the reply payload.
    Done(Vec<u8>),
    /// A slow control: the caller answers after [`SLOW_WRITE`] by calling [`Values::set`] with this.
    Slow { id: u32, value: i32 },
}

impl Values {
    pub(crate) fn defaults() -> Values {
        Values(DEFS.iter().map(|d| d.default).collect())
    }

    /// The value of control `id` (for the picture and for tests).
    pub(crate) fn get(&self, id: u32) -> Option<i32> {
        DEFS.iter().position(|d| d.id == id).map(|i| self.0[i])
    }

    /// Sets control `id` to `value` as a driver would (clamped, rounded to the step). For slow writes
    /// finishing, and for tests that play another program changing a control.
    pub(crate) fn set(&mut self, id: u32, value: i32) {
        if let Some(i) = DEFS.iter().position(|d| d.id == id) {
            self.0[i] = clamp(&DEFS[i], value);
        }
    }

    /// Control `id` back to its default.
    pub(crate) fn reset(&mut self, id: u32) {
        if let Some(i) = DEFS.iter().position(|d| d.id == id) {
            self.0[i] = DEFS[i].default;
        }
    }

    fn flags(&self, d: &Def) -> u32 {
        let inactive = match d.id {
            CID_EXPOSURE_TIME_ABSOLUTE => {
                self.get(CID_AUTO_EXPOSURE) == Some(EXPOSURE_APERTURE_PRIORITY)
            }
            CID_FOCUS_ABSOLUTE => self.get(CID_FOCUS_AUTO) == Some(1),
            _ => false,
        };
        d.flags | if inactive { FLAG_INACTIVE } else { 0 }
    }

    /// The control `id` names, or (with NEXT_CTRL) the first one after it.
    fn find(id: u32) -> Result<&'static Def, Errno> {
        if id & FLAG_NEXT_CTRL != 0 {
            let after = id & !(FLAG_NEXT_CTRL | FLAG_NEXT_COMPOUND);
            DEFS.iter().find(|d| d.id > after).ok_or(Errno::EINVAL)
        } else {
            DEFS.iter().find(|d| d.id == id).ok_or(Errno::EINVAL)
        }
    }

    /// VIDIOC_QUERYCTRL (68 bytes).
    pub(crate) fn query(&self, mut b: Vec<u8>) -> Result<Vec<u8>, Errno> {
        let d = Self::find(b.u32_at(0))?;
        b.zero(0, 68);
        b.set_u32(0, d.id);
        b.set_u32(4, d.kind);
        b.set_str(8, 32, d.name);
        b.set_u32(40, d.min as u32);
        b.set_u32(44, d.max as u32);
        b.set_u32(48, d.step as u32);
        b.set_u32(52, d.default as u32);
        b.set_u32(56, self.flags(d));
        Ok(b)
    }

    /// VIDIOC_QUERY_EXT_CTRL (232 bytes: 64-bit range, element size and count).
    pub(crate) fn query_ext(&self, mut b: Vec<u8>) -> Result<Vec<u8>, Errno> {
        let d = Self::find(b.u32_at(0))?;
        b.zero(0, 232);
        b.set_u32(0, d.id);
        b.set_u32(4, d.kind);
        b.set_str(8, 32, d.name);
        b.set_u64(40, d.min as i64 as u64);
        b.set_u64(48, d.max as i64 as u64);
        b.set_u64(56, d.step as u64);
        b.set_u64(64, d.default as i64 as u64);
        b.set_u32(72, self.flags(d));
        b.set_u32(76, 4); // elem_size
        b.set_u32(80, 1); // elems
        Ok(b)
    }

    /// VIDIOC_QUERYMENU (44 bytes).
    pub(crate) fn query_menu(&self, mut b: Vec<u8>) -> Result<Vec<u8>, Errno> {
        let (id, index) = (b.u32_at(0), b.u32_at(4));
        let d = DEFS.iter().find(|d| d.id == id).ok_or(Errno::EINVAL)?;
        let (_, label) = d
            .menu
            .iter()
            .find(|(i, _)| *i == index)
            .ok_or(Errno::EINVAL)?;
        b.zero(8, 44);
        b.set_str(8, 32, label);
        Ok(b)
    }

    /// VIDIOC_G_CTRL (8 bytes).
    pub(crate) fn get_ctrl(&self, mut b: Vec<u8>) -> Result<Vec<u8>, Errno> {
        let i = self.index(b.u32_at(0))?;
        let d = &DEFS[i];
        if d.flags & FLAG_WRITE_ONLY != 0 {
            return Err(Errno::EACCES);
        }
        b.set_u32(4, self.0[i] as u32);
        Ok(b)
    }

    /// VIDIOC_S_CTRL (8 bytes).
    pub(crate) fn set_ctrl(&mut self, b: Vec<u8>) -> Result<Write, Errno> {
        let i = self.index(b.u32_at(0))?;
        let d = &DEFS[i];
        let value = b.u32_at(4) as i32;
        if d.flags & FLAG_READ_ONLY != 0 {
            return Err(Errno::EACCES);
        }
        if self.flags(d) & FLAG_INACTIVE != 0 {
            // What uvcvideo answers for a control its auto control overrides.
            return Err(Errno::EACCES);
        }
        if d.kind == TYPE_MENU && !d.menu.iter().any(|(i, _)| *i as i32 == value) {
            return Err(Errno::EINVAL);
        }
        if d.kind == TYPE_BUTTON {
            return Ok(Write::Done(b));
        }
        if d.id == CID_PAN_ABSOLUTE {
            return Ok(Write::Slow { id: d.id, value });
        }
        if d.flags & FLAG_WRITE_ONLY == 0 {
            self.0[i] = clamp(d, value);
        }
        let mut b = b;
        b.set_u32(4, clamp(d, value) as u32);
        Ok(Write::Done(b))
    }

    fn index(&self, id: u32) -> Result<usize, Errno> {
        DEFS.iter()
            .position(|d| d.id == id && d.kind != TYPE_CTRL_CLASS)
            .ok_or(Errno::EINVAL)
    }
}

/// Clamped to the range and rounded to the nearest step from the minimum, as v4l2-ctrls does.
fn clamp(d: &Def, value: i32) -> i32 {
    let v = value.clamp(d.min, d.max) as i64;
    if d.step <= 1 {
        return v as i32;
    }
    let (min, step) = (d.min as i64, d.step as i64);
    let rounded = min + ((v - min + step / 2) / step) * step;
    (if rounded > d.max as i64 {
        rounded - step
    } else {
        rounded
    }) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enumeration_walks_every_entry_in_id_order() {
        let v = Values::defaults();
        let mut id = 0;
        let mut names = Vec::new();
        while let Ok(b) = v.query({
            let mut b = vec![0u8; 68];
            b.set_u32(0, id | FLAG_NEXT_CTRL);
            b
        }) {
            id = b.u32_at(0);
            names.push(DEFS.iter().find(|d| d.id == id).unwrap().name);
        }
        assert_eq!(names.len(), DEFS.len());
        assert_eq!(names[1], "Brightness");
    }

    #[test]
    fn writes_clamp_round_and_respect_auto() {
        let mut v = Values::defaults();
        let ctrl = |id: u32, value: i32| {
            let mut b = vec![0u8; 8];
            b.set_u32(0, id);
            b.set_u32(4, value as u32);
            b
        };
        assert!(matches!(
            v.set_ctrl(ctrl(CID_EXPOSURE_TIME_ABSOLUTE, 100)),
            Err(Errno::EACCES)
        ));
        assert!(matches!(
            v.set_ctrl(ctrl(CID_AUTO_EXPOSURE, 2)),
            Err(Errno::EINVAL)
        ));
        assert!(v.set_ctrl(ctrl(CID_AUTO_EXPOSURE, 1)).is_ok());
        assert!(v.set_ctrl(ctrl(CID_EXPOSURE_TIME_ABSOLUTE, 100)).is_ok());
        assert_eq!(v.get(CID_EXPOSURE_TIME_ABSOLUTE), Some(100));
        assert!(v.set_ctrl(ctrl(CID_FOCUS_AUTO, 0)).is_ok());
        assert!(v.set_ctrl(ctrl(CID_FOCUS_ABSOLUTE, 33)).is_ok());
        assert_eq!(v.get(CID_FOCUS_ABSOLUTE), Some(35));
        assert!(v.set_ctrl(ctrl(CID_BRIGHTNESS, 1000)).is_ok());
        assert_eq!(v.get(CID_BRIGHTNESS), Some(64));
        assert!(matches!(
            v.set_ctrl(ctrl(CID_IRIS_ABSOLUTE, 1)),
            Err(Errno::EACCES)
        ));
        assert!(matches!(
            v.get_ctrl(ctrl(CID_PAN_RELATIVE, 0)),
            Err(Errno::EACCES)
        ));
        assert!(matches!(
            v.set_ctrl(ctrl(CID_PAN_ABSOLUTE, 3600)),
            Ok(Write::Slow { .. })
        ));
    }
}
