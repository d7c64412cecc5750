//! # fakecam: a fake V4L2 camera on a FUSE file
//!
//! This machine (and CI) has no `/dev/video*` and cannot load `v4l2loopback` or `vivid`. fakecam
//! mounts a tiny FUSE filesystem whose single regular file, `video0`, behaves like a V4L2 capture
//! device for anything that uses the MMAP streaming I/O: the `v4l` crate, ustreamer, and mjpegd
//! itself. It is a Rust port of the C prototype in `shared/fakecam-prototype`.
//!
//! What it serves:
//! - **ioctls** through FUSE "restricted" ioctls (the kernel copies the size encoded in the ioctl
//!   number): QUERYCAP, ENUM_FMT, G/S/TRY_FMT, ENUM_FRAMESIZES, ENUM_FRAMEINTERVALS, G/S_PARM,
//!   ENUMINPUT, G/S_INPUT, REQBUFS (MMAP only), QUERYBUF, QBUF, DQBUF, STREAMON/OFF, and the
//!   controls of a UVC webcam through QUERYCTRL (with NEXT_CTRL), QUERY_EXT_CTRL, QUERYMENU,
//!   G_CTRL and S_CTRL (see the `controls` module: auto/manual pairs, menu gaps, a slow control,
//!   defaults at replug, brightness visible in the generated picture). The *_EXT_CTRLS arrays
//!   answer EINVAL, anything else ENOTTY. USERPTR, DMABUF, EXPBUF and the `read()` I/O method are
//!   not offered.
//! - **one format**: the configured size and pixel format (MJPEG or YUYV) is all ENUM_FMT and
//!   ENUM_FRAMESIZES list, and S_FMT grants it whatever is asked, as a real driver grants what it
//!   can. S_PARM changes the frame rate (clamped to 1..=120); G_PARM reports it.
//! - **mmap**: buffer `i` is the file range at `i * buf_size`; frames reach the client's mapping
//!   through the page cache.
//! - **poll**: POLLIN when a buffer is done; POLLERR|POLLHUP once unplugged; never POLLOUT.
//!
//! Frames are paced at the fps by a producer thread. Frame `n` after STREAMON is file
//! `n % count` of the folder (or pattern `n`): every STREAMON starts again at the first file, and
//! a frame is only consumed when a queued buffer is available, so a slow client gets every frame
//! in order (late, never skipped).
//!
//! ```no_run
//! use fakecam::{FakeCam, Options};
//! let cam = FakeCam::mount(std::path::Path::new("/tmp/cam"), Options::default())?;
//! println!("camera at {}", cam.device_path().display());
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Requirements: `/dev/fuse`, and either root (mounts directly) or the `fusermount3` binary
//! (Debian package `fuse3`). Each `FakeCam` needs its own (empty) mount directory; distinct
//! directories can be mounted concurrently, so tests may run in parallel.

mod controls;
mod device;
mod frames;
mod v4l2;

/// The V4L2 ids of the fake camera's controls, for tests.
pub use controls::{
    CID_AUTO_EXPOSURE, CID_BRIGHTNESS, CID_CONTRAST, CID_EXPOSURE_TIME_ABSOLUTE,
    CID_FOCUS_ABSOLUTE, CID_FOCUS_AUTO, CID_IRIS_ABSOLUTE, CID_PAN_ABSOLUTE, CID_PAN_RELATIVE,
    CID_PAN_RESET, SLOW_WRITE,
};

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fuser::{Config as FuseConfig, MountOption, Session, SessionACL, SessionUnmounter};

use device::{CamFs, Config, Shared, DEVICE_NAME};
use frames::Source;

/// Pixel format the camera delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Motion-JPEG (`MJPG`): each buffer holds one JPEG; `bytesused` is its length.
    Mjpeg,
    /// Packed YUV 4:2:2 (`YUYV`): `width * height * 2` bytes per frame, `bytesperline = width * 2`.
    Yuyv,
}

/// Where the frames come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameSource {
    /// The `*.jpg`/`*.jpeg` files of a folder, in file-name order, looping. In MJPEG they are
    /// served byte-identical (whatever their own size); in YUYV they are decoded and scaled to the
    /// configured size.
    Dir(PathBuf),
    /// A generated moving pattern (scrolling colour bars) with the frame number drawn in the
    /// top-left corner; encoded to JPEG (quality 80) in MJPEG mode.
    Generated,
}

/// How to build the camera.
#[derive(Clone, Debug)]
pub struct Options {
    /// Frame width in pixels (even for YUYV).
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Initial frame rate; VIDIOC_S_PARM can change it (1..=120).
    pub fps: u32,
    /// The single pixel format offered.
    pub format: Format,
    /// Frame content.
    pub frames: FrameSource,
    /// Simulates a broken camera: every Nth buffer (N, 2N, 3N, ... after STREAMON) is delivered
    /// damaged, alternately truncated to half its bytes and empty (`bytesused == 0`). The frame
    /// source still advances. Applies to both formats. `None` or `Some(0)`: every buffer intact.
    pub bad_every: Option<u32>,
}

impl Default for Options {
    /// 640x480 MJPEG at 30 fps from the generated pattern.
    fn default() -> Options {
        Options {
            width: 640,
            height: 480,
            fps: 30,
            format: Format::Mjpeg,
            frames: FrameSource::Generated,
            bad_every: None,
        }
    }
}

/// A snapshot of the camera's counters, for assertions in tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// File descriptors currently open on the device (including handles left over from before
    /// an unplug; they go when the client closes them).
    pub open_handles: usize,
    /// Whether a client is streaming (between STREAMON and STREAMOFF/close/unplug).
    pub streaming: bool,
    /// Successful opens since mount.
    pub total_opens: u64,
    /// Buffers handed to clients by VIDIOC_DQBUF since mount.
    pub frames_served: u64,
    /// Current frame rate (as last set by VIDIOC_S_PARM).
    pub fps: u32,
    /// False between `unplug()` and `replug()`.
    pub plugged: bool,
}

/// A mounted fake camera. Dropping it unplugs the device and unmounts the filesystem.
pub struct FakeCam {
    shared: Arc<Shared>,
    mountpoint: PathBuf,
    unmounter: Option<SessionUnmounter>,
    session: Option<JoinHandle<io::Result<()>>>,
    producer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FakeCam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCam")
            .field("mountpoint", &self.mountpoint)
            .finish_non_exhaustive()
    }
}

impl FakeCam {
    /// Mounts a camera on `dir` (created if missing; it should be empty and not already a mount
    /// point). The device file is `dir/video0`. Returns once the mount is live.
    ///
    /// Errors: invalid options (zero size, odd YUYV width, a frame folder without JPEGs), or the
    /// mount failing (no `/dev/fuse`, not root and no `fusermount3`).
    pub fn mount(dir: &Path, opts: Options) -> io::Result<FakeCam> {
        if opts.width == 0 || opts.height == 0 || opts.width > 8192 || opts.height > 8192 {
            return Err(invalid("width and height must be within 1..=8192"));
        }
        if opts.format == Format::Yuyv && !opts.width.is_multiple_of(2) {
            return Err(invalid("YUYV needs an even width"));
        }
        let source = Source::new(&opts)?;
        let page = 4096;
        let need = source.max_len(opts.width, opts.height).max(4 << 20);
        let buf_size = need.div_ceil(page) * page;
        let fps = opts.fps.clamp(1, 120);
        let cfg = Config {
            width: opts.width,
            height: opts.height,
            format: opts.format,
            bad_every: opts.bad_every,
            nominal_fps: fps,
            buf_size,
        };
        let shared = Arc::new(Shared::new(cfg, fps));

        std::fs::create_dir_all(dir)?;
        let mountpoint = dir.canonicalize()?;
        let mut fuse_cfg = FuseConfig::default();
        fuse_cfg.mount_options = vec![
            MountOption::FSName("fakecam".into()),
            MountOption::Subtype("fakecam".into()),
        ];
        // Root may let every user in (ustreamer or test binaries running as another user);
        // others would need user_allow_other in /etc/fuse.conf, so they keep the default.
        // SAFETY: geteuid has no preconditions.
        fuse_cfg.acl = if unsafe { libc::geteuid() } == 0 {
            SessionACL::All
        } else {
            SessionACL::Owner
        };
        // Handlers never block, but page-fault reads may arrive while an ioctl is served.
        fuse_cfg.n_threads = Some(4);

        let mut session = Session::new(CamFs(shared.clone()), &mountpoint, &fuse_cfg)?;
        let _ = shared.notifier.set(session.notifier());
        let unmounter = session.unmount_callable();
        let session = std::thread::Builder::new()
            .name("fakecam-fuse".into())
            .spawn(move || session.run())?;
        let producer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("fakecam-producer".into())
                .spawn(move || shared.run_producer(source))?
        };
        Ok(FakeCam {
            shared,
            mountpoint,
            unmounter: Some(unmounter),
            session: Some(session),
            producer: Some(producer),
        })
    }

    /// Path of the device file (`dir/video0`, with `dir` canonicalized). Open it with
    /// `v4l::Device::with_path` or hand it to a V4L2 program.
    pub fn device_path(&self) -> PathBuf {
        self.mountpoint.join(DEVICE_NAME)
    }

    /// The mount directory (canonicalized).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Simulates pulling the USB cable: the device file disappears (lookup and open give
    /// ENOENT), streaming stops and the buffers are freed, every ioctl on an fd opened before
    /// gets ENODEV (a DQBUF blocked at that moment returns ENODEV at once), and poll on those fds
    /// reports POLLERR|POLLHUP (pollers are woken). Those fds stay dead even after `replug`;
    /// the client must close them. Mapped buffers stay readable until unmapped, as with a real
    /// driver, so no client gets SIGBUS. Idempotent.
    pub fn unplug(&self) {
        self.shared.unplug();
    }

    /// Plugs the device back in: `video0` reappears (as a new inode) and can be opened and
    /// streamed again. Idempotent.
    pub fn replug(&self) {
        self.shared.replug();
    }

    /// The current value of control `id` (None: no such control), as the camera holds it.
    pub fn control(&self, id: u32) -> Option<i32> {
        self.shared.lock().controls.get(id)
    }

    /// Changes control `id` behind the client's back (clamped to its range), as another program
    /// running `v4l2-ctl` would.
    pub fn set_control(&self, id: u32, value: i32) {
        self.shared.lock().controls.set(id, value);
    }

    /// Plays a camera that puts `focus_absolute` back to its default shortly after each STREAMON (10
    /// frames in), as some real cameras do.
    pub fn reset_focus_on_stream(&self, on: bool) {
        self.shared.lock().focus_reset_on_stream = on;
    }

    /// Current counters.
    ///
    /// Note: `close()` returns before the kernel tells the FUSE server about it, so
    /// `open_handles` (and `streaming`, when the owner closes) change shortly *after* a client
    /// closes the device: use [`FakeCam::wait_stats`] rather than asserting right away.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Polls [`FakeCam::stats`] every few milliseconds until `pred` holds (`Ok`) or `timeout`
    /// passes (`Err` with the last snapshot).
    pub fn wait_stats(
        &self,
        timeout: Duration,
        pred: impl Fn(&Stats) -> bool,
    ) -> Result<Stats, Stats> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.stats();
            if pred(&s) {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                return Err(s);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for FakeCam {
    /// Unplugs (failing pending requests), stops the producer and unmounts. If a client still
    /// holds the device open or mapped, the mount is detached lazily (MNT_DETACH /
    /// `fusermount3 -uz`) without waiting, and the FUSE threads keep answering (ENODEV for
    /// ioctls) until that client closes it.
    fn drop(&mut self) {
        self.shared.shutdown();
        if let Some(p) = self.producer.take() {
            let _ = p.join();
        }
        // A plain unmount fails (EBUSY) while a client still has the device open or mapped.
        let unmounted = self
            .unmounter
            .take()
            .is_some_and(|mut u| u.unmount().is_ok())
            && !is_mounted(&self.mountpoint);
        if !unmounted {
            // Detach lazily and do not wait: the FUSE threads keep answering (ENODEV for ioctls,
            // buffer bytes for page faults) until the last client closes the device, then end.
            lazy_unmount(&self.mountpoint);
            return;
        }
        if let Some(s) = self.session.take() {
            // The loop ends as soon as the kernel drops the connection.
            let deadline = Instant::now() + Duration::from_secs(2);
            while !s.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if s.is_finished() {
                let _ = s.join();
            }
        }
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_string())
}

/// Whether `path` is listed as a mount point in /proc/self/mountinfo.
fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    // Field 5 is the mount point (spaces etc. are octal-escaped; our paths rarely have them).
    info.lines().any(|l| l.split(' ').nth(4) == Some(&*want))
}

fn lazy_unmount(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        return;
    }
    let _ = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg("--")
        .arg(path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}
