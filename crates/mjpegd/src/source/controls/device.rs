//! The ioctls of camera controls, on `v4l::v4l2::ioctl` and the `v4l_sys` structs.
//!
//! The `v4l` crate's own control API panics on control types it does not know and has bugs in
//! `set_controls`, so this small layer takes only the fixed-size ioctls every V4L2 driver serves:
//! QUERYCTRL (walked with V4L2_CTRL_FLAG_NEXT_CTRL), QUERYMENU, G_CTRL and S_CTRL. A control of a type
//! it does not write is still listed (read-only for mjpegd), never a panic. Every call blocks (a UVC
//! control transfer can take seconds): only the controls worker calls these.

use super::values::{key_of, Info, Kind, MenuEntry};
use std::io;
use std::os::raw::c_void;
use std::path::Path;
use v4l::v4l2;
use v4l::v4l2::vidioc;
use v4l::v4l_sys::{v4l2_control, v4l2_queryctrl, v4l2_querymenu};

const FLAG_NEXT_CTRL: u32 = 0x8000_0000;
/// Most controls listed (a UVC camera has 10 to 30); a driver that never ends its list stops here.
const MAX_CONTROLS: usize = 256;
/// Most menu entries asked per menu.
const MAX_MENU: u32 = 64;

/// An open device, closed on drop.
pub struct Device(i32);

impl Device {
    pub fn open(path: &Path) -> io::Result<Device> {
        v4l2::open(path, libc::O_RDWR | libc::O_CLOEXEC).map(Device)
    }

    fn ioctl<T>(&self, request: vidioc::_IOC_TYPE, arg: &mut T) -> io::Result<()> {
        loop {
            // SAFETY: `arg` is the struct `request` is defined with, valid for the call.
            match unsafe { v4l2::ioctl(self.0, request, arg as *mut T as *mut c_void) } {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    /// Every control (control class headings left out), in the driver's order.
    pub fn list(&self) -> io::Result<Vec<Info>> {
        let mut out = Vec::new();
        let mut id = 0u32;
        while out.len() < MAX_CONTROLS {
            // SAFETY: a plain C struct; all zeroes is valid.
            let mut q: v4l2_queryctrl = unsafe { std::mem::zeroed() };
            q.id = id | FLAG_NEXT_CTRL;
            match self.ioctl(vidioc::VIDIOC_QUERYCTRL, &mut q) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
                Err(e) => return Err(e),
            }
            if q.id <= id {
                break; // a driver going backwards would loop for ever
            }
            id = q.id;
            let info = self.info_of(&q);
            if info.kind != Kind::Class {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Control `id` as the driver describes it now (its flags change with its auto control).
    pub fn query(&self, id: u32) -> io::Result<Info> {
        // SAFETY: a plain C struct; all zeroes is valid.
        let mut q: v4l2_queryctrl = unsafe { std::mem::zeroed() };
        q.id = id;
        self.ioctl(vidioc::VIDIOC_QUERYCTRL, &mut q)?;
        Ok(self.info_of(&q))
    }

    fn info_of(&self, q: &v4l2_queryctrl) -> Info {
        let name = c_string(&q.name);
        let kind = Kind::from_raw(q.type_);
        let menu = if matches!(kind, Kind::Menu | Kind::IntegerMenu) {
            self.menu(q.id, q.minimum, q.maximum, kind)
        } else {
            Vec::new()
        };
        Info {
            id: q.id,
            key: key_of(&name),
            name,
            kind,
            min: q.minimum,
            max: q.maximum,
            step: q.step,
            default: q.default_value,
            flags: q.flags,
            menu,
        }
    }

    /// The entries of a menu; indexes the driver refuses are gaps, left out.
    fn menu(&self, id: u32, min: i32, max: i32, kind: Kind) -> Vec<MenuEntry> {
        let first = min.max(0) as u32;
        let last = (max.max(0) as u32).min(first.saturating_add(MAX_MENU - 1));
        (first..=last)
            .filter_map(|index| {
                // SAFETY: a plain C struct; all zeroes is valid.
                let mut m: v4l2_querymenu = unsafe { std::mem::zeroed() };
                m.id = id;
                m.index = index;
                self.ioctl(vidioc::VIDIOC_QUERYMENU, &mut m).ok()?;
                // SAFETY: the driver filled the union member its control type uses.
                let label = unsafe {
                    if kind == Kind::IntegerMenu {
                        let value = m.__bindgen_anon_1.value;
                        value.to_string()
                    } else {
                        c_string(&m.__bindgen_anon_1.name)
                    }
                };
                Some(MenuEntry { index, label })
            })
            .collect()
    }

    /// G_CTRL.
    pub fn get(&self, id: u32) -> io::Result<i32> {
        let mut c = v4l2_control { id, value: 0 };
        self.ioctl(vidioc::VIDIOC_G_CTRL, &mut c)?;
        Ok(c.value)
    }

    /// S_CTRL.
    pub fn set(&self, id: u32, value: i32) -> io::Result<()> {
        let mut c = v4l2_control { id, value };
        self.ioctl(vidioc::VIDIOC_S_CTRL, &mut c)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = v4l2::close(self.0);
    }
}

/// A NUL-terminated C string of a fixed array, lossily as UTF-8.
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}
