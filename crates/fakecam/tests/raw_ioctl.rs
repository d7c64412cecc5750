//! Tests with raw ioctls on blocking and non-blocking fds: the paths the `v4l` crate does not
//! take (it always opens O_NONBLOCK and polls before DQBUF).

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use fakecam::{FakeCam, Format, FrameSource, Options};

use common::write_jpegs;

const VIDIOC_REQBUFS: u64 = 0xc014_5608;
const VIDIOC_QUERYBUF: u64 = 0xc058_5609;
const VIDIOC_QBUF: u64 = 0xc058_560f;
const VIDIOC_DQBUF: u64 = 0xc058_5611;
const VIDIOC_STREAMON: u64 = 0x4004_5612;
const VIDIOC_G_PARM: u64 = 0xc0cc_5615;
const VIDIOC_S_PARM: u64 = 0xc0cc_5616;
const VIDIOC_ENUM_FRAMEINTERVALS: u64 = 0xc034_564b;
const VIDIOC_QUERYCTRL: u64 = 0xc044_5624;
const VIDIOC_LOG_STATUS: u64 = 0x5646;

/// An open fd on the device, closed on drop.
struct Fd(i32);

impl Fd {
    fn open(path: &Path, nonblock: bool) -> std::io::Result<Fd> {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        let flags = libc::O_RDWR | if nonblock { libc::O_NONBLOCK } else { 0 };
        let fd = unsafe { libc::open(c.as_ptr(), flags) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Fd(fd))
    }

    /// ioctl on a struct held as bytes; Err(errno).
    fn ioctl(&self, cmd: u64, arg: &mut [u8]) -> Result<(), i32> {
        let r = unsafe { libc::ioctl(self.0, cmd as _, arg.as_mut_ptr()) };
        if r < 0 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap())
        } else {
            Ok(())
        }
    }

    fn reqbufs(&self, count: u32) -> Result<u32, i32> {
        let mut b = [0u8; 20];
        put(&mut b, 0, count);
        put(&mut b, 4, 1); // VIDEO_CAPTURE
        put(&mut b, 8, 1); // MMAP
        self.ioctl(VIDIOC_REQBUFS, &mut b).map(|_| get(&b, 0))
    }

    fn buf_op(&self, cmd: u64, index: u32) -> Result<[u8; 88], i32> {
        let mut b = [0u8; 88];
        put(&mut b, 0, index);
        put(&mut b, 4, 1);
        put(&mut b, 60, 1);
        self.ioctl(cmd, &mut b).map(|_| b)
    }

    fn streamon(&self) -> Result<(), i32> {
        let mut t = 1u32.to_ne_bytes();
        self.ioctl(VIDIOC_STREAMON, &mut t)
    }

    fn poll(&self, timeout_ms: i32) -> i16 {
        let mut p = libc::pollfd {
            fd: self.0,
            events: libc::POLLIN | libc::POLLOUT,
            revents: 0,
        };
        let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        assert!(n >= 0);
        p.revents
    }

    /// REQBUFS `n`, mmap, queue all and STREAMON. Returns the mappings.
    fn start(&self, n: u32) -> Vec<Mapping> {
        assert_eq!(self.reqbufs(n), Ok(n));
        let maps = (0..n)
            .map(|i| {
                let b = self.buf_op(VIDIOC_QUERYBUF, i).unwrap();
                let (off, len) = (get(&b, 64), get(&b, 72) as usize);
                let p = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        len,
                        libc::PROT_READ,
                        libc::MAP_SHARED,
                        self.0,
                        off as i64,
                    )
                };
                assert_ne!(p, libc::MAP_FAILED);
                Mapping(p as *mut u8, len)
            })
            .collect();
        for i in 0..n {
            self.buf_op(VIDIOC_QBUF, i).unwrap();
        }
        self.streamon().unwrap();
        maps
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        unsafe { libc::close(self.0) };
    }
}

struct Mapping(*mut u8, usize);

impl Mapping {
    fn bytes(&self, len: usize) -> Vec<u8> {
        unsafe { std::slice::from_raw_parts(self.0, len.min(self.1)) }.to_vec()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.0 as *mut _, self.1) };
    }
}

fn put(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}
fn get(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().unwrap())
}

fn mjpeg_dir_cam(
    tmp: &Path,
    files: usize,
    fps: u32,
    bad_every: Option<u32>,
) -> (FakeCam, Vec<Vec<u8>>) {
    let jpegs = write_jpegs(&tmp.join("frames"), files, 64, 48);
    let cam = FakeCam::mount(
        &tmp.join("cam"),
        Options {
            width: 64,
            height: 48,
            fps,
            format: Format::Mjpeg,
            frames: FrameSource::Dir(tmp.join("frames")),
            bad_every,
        },
    )
    .unwrap();
    (cam, jpegs)
}

#[test]
fn blocking_dqbuf_waits_for_paced_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let (cam, files) = mjpeg_dir_cam(tmp.path(), 3, 20, None);
    let fd = Fd::open(&cam.device_path(), false).unwrap();
    let maps = fd.start(3);
    let t0 = Instant::now();
    for k in 0..10 {
        let b = fd.buf_op(VIDIOC_DQBUF, 0).unwrap();
        let (i, used, seq) = (get(&b, 0) as usize, get(&b, 8) as usize, get(&b, 56));
        assert_eq!(seq, k as u32);
        assert_eq!(maps[i].bytes(used), files[k % 3], "frame {k}");
        fd.buf_op(VIDIOC_QBUF, i as u32).unwrap();
    }
    // 10 frames at 20 fps: about half a second; certainly not a burst.
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(400), "10 frames in {took:?}");
    assert!(took < Duration::from_secs(3), "10 frames in {took:?}");
}

#[test]
fn nonblocking_dqbuf_gives_eagain_and_poll_reports_only_pollin() {
    let tmp = tempfile::tempdir().unwrap();
    let (cam, files) = mjpeg_dir_cam(tmp.path(), 2, 5, None);
    let fd = Fd::open(&cam.device_path(), true).unwrap();
    let maps = fd.start(2);
    // POLLIN|POLLOUT are asked for: only POLLIN comes back (the kernel masks revents with the
    // requested events, so the POLLRDNORM the device also reports is not visible here).
    let dq = |k: usize| {
        let rev = fd.poll(2000);
        assert_eq!(rev, libc::POLLIN, "revents {rev:#x}");
        let b = fd.buf_op(VIDIOC_DQBUF, 0).unwrap();
        assert_eq!(
            maps[get(&b, 0) as usize].bytes(get(&b, 8) as usize),
            files[k]
        );
        get(&b, 0)
    };
    // The first frame comes right after STREAMON.
    let i = dq(0);
    fd.buf_op(VIDIOC_QBUF, i).unwrap();
    // The next one is a 200 ms period away: no event yet (never POLLOUT), DQBUF says EAGAIN.
    assert_eq!(fd.poll(0), 0);
    assert_eq!(fd.buf_op(VIDIOC_DQBUF, 0).unwrap_err(), libc::EAGAIN);
    dq(1);
}

#[test]
fn second_reqbufs_owner_gets_ebusy_until_the_owner_closes() {
    let tmp = tempfile::tempdir().unwrap();
    let (cam, _) = mjpeg_dir_cam(tmp.path(), 2, 30, None);
    let a = Fd::open(&cam.device_path(), false).unwrap();
    let b = Fd::open(&cam.device_path(), false).unwrap();
    let maps = a.start(2);
    assert_eq!(b.reqbufs(2), Err(libc::EBUSY));
    assert_eq!(b.streamon(), Err(libc::EBUSY));
    assert!(cam.stats().streaming);
    drop(maps);
    drop(a);
    let s = cam
        .wait_stats(Duration::from_secs(2), |s| s.open_handles == 1)
        .unwrap();
    assert!(!s.streaming);
    assert_eq!(b.reqbufs(2), Ok(2));
}

#[test]
fn s_parm_changes_fps_and_g_parm_reports_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (cam, _) = mjpeg_dir_cam(tmp.path(), 1, 30, None);
    let fd = Fd::open(&cam.device_path(), false).unwrap();
    let parm = |cmd: u64, num: u32, den: u32| {
        let mut p = [0u8; 204];
        put(&mut p, 0, 1);
        put(&mut p, 12, num);
        put(&mut p, 16, den);
        fd.ioctl(cmd, &mut p).unwrap();
        (get(&p, 12), get(&p, 16))
    };
    assert_eq!(parm(VIDIOC_G_PARM, 0, 0), (1, 30));
    assert_eq!(parm(VIDIOC_S_PARM, 1, 15), (1, 15));
    assert_eq!(parm(VIDIOC_G_PARM, 0, 0), (1, 15));
    assert_eq!(cam.stats().fps, 15);
    assert_eq!(parm(VIDIOC_S_PARM, 1, 1000), (1, 120));
    assert_eq!(parm(VIDIOC_S_PARM, 1001, 30000), (1, 30));
    assert_eq!(parm(VIDIOC_S_PARM, 10, 1), (1, 1));

    // ENUM_FRAMEINTERVALS lists the configured rate; QUERYCTRL of id 0 (no control) is EINVAL;
    // unknown ioctls: ENOTTY.
    let mut iv = [0u8; 52];
    put(&mut iv, 4, u32::from_le_bytes(*b"MJPG"));
    put(&mut iv, 8, 64);
    put(&mut iv, 12, 48);
    fd.ioctl(VIDIOC_ENUM_FRAMEINTERVALS, &mut iv).unwrap();
    assert_eq!((get(&iv, 16), get(&iv, 20), get(&iv, 24)), (1, 1, 30));
    put(&mut iv, 0, 1);
    assert_eq!(
        fd.ioctl(VIDIOC_ENUM_FRAMEINTERVALS, &mut iv),
        Err(libc::EINVAL)
    );
    assert_eq!(
        fd.ioctl(VIDIOC_QUERYCTRL, &mut [0u8; 68]),
        Err(libc::EINVAL)
    );
    assert_eq!(fd.ioctl(VIDIOC_LOG_STATUS, &mut []), Err(libc::ENOTTY));
}

#[test]
fn bad_every_truncates_and_empties_alternately() {
    let tmp = tempfile::tempdir().unwrap();
    let (cam, files) = mjpeg_dir_cam(tmp.path(), 4, 60, Some(3));
    let fd = Fd::open(&cam.device_path(), false).unwrap();
    let maps = fd.start(4);
    for k in 0..12usize {
        let b = fd.buf_op(VIDIOC_DQBUF, 0).unwrap();
        let (i, used) = (get(&b, 0) as usize, get(&b, 8) as usize);
        let file = &files[k % 4];
        let got = maps[i].bytes(used);
        match k + 1 {
            3 | 9 => assert_eq!(got, file[..file.len() / 2], "frame {k}: truncated"),
            6 | 12 => assert!(got.is_empty(), "frame {k}: empty"),
            _ => assert_eq!(&got, file, "frame {k}: intact"),
        }
        fd.buf_op(VIDIOC_QBUF, i as u32).unwrap();
    }
}

#[test]
fn unplug_wakes_a_blocked_dqbuf_with_enodev() {
    let tmp = tempfile::tempdir().unwrap();
    // 1 fps: the DQBUF below blocks for up to a second unless the unplug wakes it.
    let (cam, _) = mjpeg_dir_cam(tmp.path(), 1, 1, None);
    let fd = Fd::open(&cam.device_path(), false).unwrap();
    let _maps = fd.start(2);
    fd.buf_op(VIDIOC_DQBUF, 0).unwrap(); // the first frame is immediate
    let t0 = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(150));
            cam.unplug();
        });
        assert_eq!(fd.buf_op(VIDIOC_DQBUF, 0).unwrap_err(), libc::ENODEV);
    });
    assert!(
        t0.elapsed() < Duration::from_millis(700),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(fd.poll(0), libc::POLLERR | libc::POLLHUP);
    assert_eq!(fd.reqbufs(0), Err(libc::ENODEV));
    assert_eq!(
        Fd::open(&cam.device_path(), false)
            .err()
            .unwrap()
            .raw_os_error(),
        Some(libc::ENOENT)
    );
    // Old fds stay dead after a replug; new ones work.
    cam.replug();
    assert_eq!(fd.reqbufs(2), Err(libc::ENODEV));
    let fresh = Fd::open(&cam.device_path(), false).unwrap();
    assert_eq!(fresh.reqbufs(2), Ok(2));
}

#[test]
fn dropping_the_cam_while_a_client_holds_it_detaches_without_hanging() {
    let tmp = tempfile::tempdir().unwrap();
    let (cam, files) = mjpeg_dir_cam(tmp.path(), 2, 30, None);
    let mountpoint = cam.mountpoint().to_path_buf();
    let fd = Fd::open(&cam.device_path(), false).unwrap();
    let maps = fd.start(2);
    let b = fd.buf_op(VIDIOC_DQBUF, 0).unwrap();
    let i = get(&b, 0) as usize;

    let t0 = Instant::now();
    drop(cam);
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "drop took {:?}",
        t0.elapsed()
    );
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(&*mountpoint.to_string_lossy()),
        "still mounted"
    );
    // The client's fd is dead, but its mapped buffer is still readable (no SIGBUS).
    assert_eq!(fd.buf_op(VIDIOC_QBUF, i as u32).unwrap_err(), libc::ENODEV);
    assert_eq!(maps[i].bytes(get(&b, 8) as usize), files[0]);
}

const VIDIOC_QUERYMENU: u64 = 0xc02c_5625;
const VIDIOC_G_CTRL: u64 = 0xc008_561b;
const VIDIOC_S_CTRL: u64 = 0xc008_561c;
const VIDIOC_QUERY_EXT_CTRL: u64 = 0xc0e8_5667;
const NEXT_CTRL: u32 = 0x8000_0000;

fn ctrl(fd: &Fd, cmd: u64, id: u32, value: i32) -> Result<i32, i32> {
    let mut b = [0u8; 8];
    put(&mut b, 0, id);
    put(&mut b, 4, value as u32);
    fd.ioctl(cmd, &mut b).map(|_| get(&b, 4) as i32)
}

fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

#[test]
fn controls_enumerate_with_next_ctrl_and_menus_have_gaps() {
    let tmp = tempfile::tempdir().unwrap();
    let (cam, _) = mjpeg_dir_cam(tmp.path(), 2, 30, None);
    let fd = Fd::open(&cam.device_path(), false).unwrap();
    let mut names = Vec::new();
    let mut id = 0;
    loop {
        let mut q = [0u8; 68];
        put(&mut q, 0, id | NEXT_CTRL);
        if fd.ioctl(VIDIOC_QUERYCTRL, &mut q) == Err(libc::EINVAL) {
            break;
        }
        assert!(get(&q, 0) > id, "ids go up");
        id = get(&q, 0);
        names.push(c_str(&q[8..40]));
    }
    assert_eq!(names.len(), 12, "{names:?}");
    assert_eq!(
        names[0], "User Controls",
        "class headings come too, as UVC's"
    );
    assert!(names.contains(&"Exposure Time, Absolute".to_string()));
    let menu = |index: u32| {
        let mut m = [0u8; 44];
        put(&mut m, 0, fakecam::CID_AUTO_EXPOSURE);
        put(&mut m, 4, index);
        fd.ioctl(VIDIOC_QUERYMENU, &mut m).map(|_| c_str(&m[8..40]))
    };
    assert_eq!(menu(0), Err(libc::EINVAL));
    assert_eq!(menu(1).as_deref(), Ok("Manual Mode"));
    assert_eq!(menu(2), Err(libc::EINVAL));
    assert_eq!(menu(3).as_deref(), Ok("Aperture Priority Mode"));
    let mut q = [0u8; 232];
    put(&mut q, 0, fakecam::CID_BRIGHTNESS);
    fd.ioctl(VIDIOC_QUERY_EXT_CTRL, &mut q).unwrap();
    assert_eq!(i64::from_ne_bytes(q[40..48].try_into().unwrap()), -64);
    // Inactive while auto is on: the write is refused, as uvcvideo refuses it.
    assert_eq!(
        ctrl(&fd, VIDIOC_S_CTRL, fakecam::CID_EXPOSURE_TIME_ABSOLUTE, 100),
        Err(libc::EACCES)
    );
    // Out of range: clamped silently, as the kernel does.
    ctrl(&fd, VIDIOC_S_CTRL, fakecam::CID_BRIGHTNESS, 500).unwrap();
    assert_eq!(ctrl(&fd, VIDIOC_G_CTRL, fakecam::CID_BRIGHTNESS, 0), Ok(64));
    assert_eq!(
        ctrl(&fd, VIDIOC_G_CTRL, fakecam::CID_PAN_RELATIVE, 0),
        Err(libc::EACCES),
        "write-only"
    );
    // Defaults again after a replug.
    drop(fd);
    cam.unplug();
    cam.replug();
    let fd = Fd::open(&cam.device_path(), false).unwrap();
    assert_eq!(ctrl(&fd, VIDIOC_G_CTRL, fakecam::CID_BRIGHTNESS, 0), Ok(0));
}

#[test]
fn a_slow_control_write_does_not_hold_frames_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (cam, _) = mjpeg_dir_cam(tmp.path(), 2, 30, None);
    let capture = Fd::open(&cam.device_path(), false).unwrap();
    let _maps = capture.start(4);
    let path = cam.device_path();
    let writer = std::thread::spawn(move || {
        let fd = Fd::open(&path, false).unwrap();
        let started = Instant::now();
        let r = ctrl(&fd, VIDIOC_S_CTRL, fakecam::CID_PAN_ABSOLUTE, 3600);
        (r, started.elapsed())
    });
    let mut frames = 0;
    while !writer.is_finished() {
        let b = capture.buf_op(VIDIOC_DQBUF, 0).unwrap();
        capture.buf_op(VIDIOC_QBUF, get(&b, 0)).unwrap();
        frames += 1;
    }
    let (r, took) = writer.join().unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert!(took >= fakecam::SLOW_WRITE, "{took:?}");
    assert!(frames >= 20, "{frames} frames during a {took:?} write");
    assert_eq!(cam.control(fakecam::CID_PAN_ABSOLUTE), Some(3600));
}
