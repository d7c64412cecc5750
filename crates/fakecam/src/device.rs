//! The fake device: shared state, the FUSE filesystem serving `video0`, and the producer thread.
//!
//! Concurrency model (a port of the C prototype, adapted to fuser):
//! - fuser runs several event-loop threads; no handler ever blocks. A blocking VIDIOC_DQBUF with
//!   no finished buffer parks its `ReplyIoctl` in `State::waiters`, and the producer thread
//!   answers it when the next frame is ready (or STREAMOFF/close/unplug answers it with an error).
//!   So page-fault reads of the mmapped buffers are always served promptly.
//! - Buffer `i` is the file range `[i * buf_size, (i + 1) * buf_size)`. The producer writes a frame
//!   into its memory, then invalidates that range of the inode's page cache (notify_inval_inode),
//!   and only then marks the buffer done, so the client's next access faults in the new bytes.
//! - poll reports POLLIN|POLLRDNORM when a finished buffer is waiting, never POLLOUT; on an
//!   unplugged handle it reports POLLERR|POLLHUP.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, IoctlFlags,
    LockOwner, Notifier, OpenFlags, PollEvents, PollFlags, PollNotifier, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen, ReplyPoll, ReplyWrite, Request,
    WriteFlags,
};

use crate::controls::{self, Values, Write};
use crate::frames::Source;
use crate::v4l2::{self, Bytes};
use crate::{Format, Stats};

/// Maximum number of buffers a client may request.
pub(crate) const MAX_BUFS: usize = 32;
/// Name of the device file inside the mount.
pub(crate) const DEVICE_NAME: &str = "video0";
/// The device file's inode for plug epoch `e` is `FIRST_DEV_INO + e`: every replug is a new
/// inode, so handles opened before an unplug stay dead, as with a real re-enumerated device.
const FIRST_DEV_INO: u64 = 2;
const ENTRY_TTL: Duration = Duration::from_secs(1);
const ATTR_TTL: Duration = Duration::from_secs(3600);
/// With `focus_reset_on_stream`, the frame after STREAMON at which focus goes back to its default.
const FOCUS_RESET_AFTER_FRAMES: u64 = 10;
/// Pending poll handles kept at most (the oldest is woken when more arrive), as the prototype.
const MAX_POLLS: usize = 16;

/// Immutable configuration of a mounted camera.
pub(crate) struct Config {
    pub width: u32,
    pub height: u32,
    pub format: Format,
    pub bad_every: Option<u32>,
    /// Configured fps, listed by ENUM_FRAMEINTERVALS.
    pub nominal_fps: u32,
    /// Bytes per buffer slot in the file (page aligned).
    pub buf_size: usize,
}

impl Config {
    fn pixelformat(&self) -> u32 {
        match self.format {
            Format::Mjpeg => v4l2::PIX_FMT_MJPEG,
            Format::Yuyv => v4l2::PIX_FMT_YUYV,
        }
    }
    fn file_size(&self) -> u64 {
        (MAX_BUFS * self.buf_size) as u64
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum BufState {
    Dequeued,
    Queued,
    Filling,
    Done,
}

#[derive(Clone, Copy)]
struct Slot {
    state: BufState,
    bytesused: u32,
    sequence: u32,
    ts_sec: u64,
    ts_usec: u64,
}

impl Slot {
    const EMPTY: Slot = Slot {
        state: BufState::Dequeued,
        bytesused: 0,
        sequence: 0,
        ts_sec: 0,
        ts_usec: 0,
    };
}

struct OpenHandle {
    epoch: u64,
    nonblock: bool,
}

struct Waiter {
    fh: u64,
    reply: ReplyIoctl,
}

pub(crate) struct State {
    /// Plug epoch; see `FIRST_DEV_INO`.
    epoch: u64,
    plugged: bool,
    pub(crate) shutdown: bool,
    pub(crate) fps: u32,
    handles: HashMap<u64, OpenHandle>,
    next_fh: u64,
    total_opens: u64,
    frames_served: u64,
    /// The handle that owns the buffers (REQBUFS with count > 0), and its inode.
    owner: Option<(u64, u64)>,
    nbufs: usize,
    slots: [Slot; MAX_BUFS],
    queued: VecDeque<usize>,
    done: VecDeque<usize>,
    streaming: bool,
    /// Bumped whenever the queues are reset, so a fill in flight across a reset is discarded.
    stream_gen: u64,
    sequence: u32,
    /// Frames produced since STREAMON: selects the source frame and drives `bad_every`.
    produced: u64,
    waiters: VecDeque<Waiter>,
    polls: Vec<PollNotifier>,
    /// The controls' values (back to their defaults at every replug).
    pub(crate) controls: Values,
    /// Plays a camera that puts its focus back to the default shortly after streaming starts.
    pub(crate) focus_reset_on_stream: bool,
}

/// Everything shared by the FUSE handlers, the producer thread and the `FakeCam` handle.
pub(crate) struct Shared {
    pub(crate) cfg: Config,
    pub(crate) state: Mutex<State>,
    /// Wakes the producer (STREAMON, S_PARM, shutdown).
    pub(crate) wake: Condvar,
    bufs: Vec<RwLock<Vec<u8>>>,
    pub(crate) notifier: OnceLock<Notifier>,
}

/// Replies and notifications to send once the state lock is released.
#[derive(Default)]
struct Deferred {
    errors: Vec<(ReplyIoctl, Errno)>,
    polls: Vec<PollNotifier>,
}

impl Deferred {
    fn send(self) {
        for (r, e) in self.errors {
            r.error(e);
        }
        for p in self.polls {
            let _ = p.notify();
        }
    }
}

impl Shared {
    pub(crate) fn new(cfg: Config, fps: u32) -> Shared {
        // calloc'd: untouched pages cost no memory.
        let bufs = (0..MAX_BUFS)
            .map(|_| RwLock::new(vec![0u8; cfg.buf_size]))
            .collect();
        Shared {
            cfg,
            state: Mutex::new(State {
                epoch: 0,
                plugged: true,
                shutdown: false,
                fps,
                handles: HashMap::new(),
                next_fh: 1,
                total_opens: 0,
                frames_served: 0,
                owner: None,
                nbufs: 0,
                slots: [Slot::EMPTY; MAX_BUFS],
                queued: VecDeque::new(),
                done: VecDeque::new(),
                streaming: false,
                stream_gen: 0,
                sequence: 0,
                produced: 0,
                waiters: VecDeque::new(),
                polls: Vec::new(),
                controls: Values::defaults(),
                focus_reset_on_stream: false,
            }),
            wake: Condvar::new(),
            bufs,
            notifier: OnceLock::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stats(&self) -> Stats {
        let st = self.lock();
        Stats {
            open_handles: st.handles.len(),
            streaming: st.streaming,
            total_opens: st.total_opens,
            frames_served: st.frames_served,
            fps: st.fps,
            plugged: st.plugged,
        }
    }

    /// Stops streaming and resets the queues; pending DQBUFs get `err`.
    fn stop_streaming(st: &mut State, err: Errno, d: &mut Deferred) {
        st.streaming = false;
        st.stream_gen += 1;
        st.queued.clear();
        st.done.clear();
        for s in st.slots.iter_mut() {
            s.state = BufState::Dequeued;
        }
        d.errors
            .extend(st.waiters.drain(..).map(|w| (w.reply, err)));
    }

    fn free_buffers(st: &mut State, err: Errno, d: &mut Deferred) {
        Self::stop_streaming(st, err, d);
        st.nbufs = 0;
        st.owner = None;
    }

    /// Simulates unplugging: see `FakeCam::unplug`.
    pub(crate) fn unplug(&self) {
        let mut d = Deferred::default();
        {
            let mut st = self.lock();
            if !st.plugged {
                return;
            }
            st.plugged = false;
            Self::free_buffers(&mut st, Errno::ENODEV, &mut d);
            // Wake every poller so it re-polls and sees POLLERR|POLLHUP.
            d.polls = std::mem::take(&mut st.polls);
        }
        d.send();
        if let Some(n) = self.notifier.get() {
            let _ = n.inval_entry(INodeNo::ROOT, OsStr::new(DEVICE_NAME));
        }
    }

    /// Brings the device back as a new inode: see `FakeCam::replug`.
    pub(crate) fn replug(&self) {
        {
            let mut st = self.lock();
            if st.plugged {
                return;
            }
            st.epoch += 1;
            st.plugged = true;
            // A camera powers up with its defaults.
            st.controls = Values::defaults();
        }
        if let Some(n) = self.notifier.get() {
            let _ = n.inval_entry(INodeNo::ROOT, OsStr::new(DEVICE_NAME));
        }
    }

    /// Called when the `FakeCam` goes away: like an unplug, and stops the producer.
    pub(crate) fn shutdown(&self) {
        self.unplug();
        self.lock().shutdown = true;
        self.wake.notify_all();
    }

    fn attr(&self, ino: u64) -> FileAttr {
        let now = SystemTime::now();
        let dir = ino == INodeNo::ROOT.0;
        FileAttr {
            ino: INodeNo(ino),
            size: if dir { 0 } else { self.cfg.file_size() },
            blocks: 0,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind: if dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: if dir { 0o755 } else { 0o666 },
            nlink: if dir { 2 } else { 1 },
            uid: unsafe { libc::geteuid() },
            gid: unsafe { libc::getegid() },
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn fill_buffer(&self, st: &State, i: usize, b: &mut [u8]) {
        let s = &st.slots[i];
        b.zero(0, v4l2::SIZE_BUFFER);
        b.set_u32(0, i as u32);
        b.set_u32(4, v4l2::BUF_TYPE_VIDEO_CAPTURE);
        let mut flags = v4l2::BUF_FLAG_MAPPED | v4l2::BUF_FLAG_TIMESTAMP_MONOTONIC;
        match s.state {
            BufState::Queued | BufState::Filling => flags |= v4l2::BUF_FLAG_QUEUED,
            BufState::Done => flags |= v4l2::BUF_FLAG_DONE,
            BufState::Dequeued => {}
        }
        b.set_u32(8, s.bytesused);
        b.set_u32(12, flags);
        b.set_u32(16, v4l2::FIELD_NONE);
        b.set_u64(24, s.ts_sec);
        b.set_u64(32, s.ts_usec);
        b.set_u32(56, s.sequence);
        b.set_u32(60, v4l2::MEMORY_MMAP);
        b.set_u32(64, (i * self.cfg.buf_size) as u32);
        b.set_u32(72, self.cfg.buf_size as u32);
    }

    fn fill_pix(&self, f: &mut [u8]) {
        let c = &self.cfg;
        f.zero(8, v4l2::SIZE_FORMAT);
        f.set_u32(8, c.width);
        f.set_u32(12, c.height);
        f.set_u32(16, c.pixelformat());
        f.set_u32(20, v4l2::FIELD_NONE);
        match c.format {
            Format::Mjpeg => {
                f.set_u32(24, 0);
                f.set_u32(28, c.buf_size as u32);
                f.set_u32(32, v4l2::COLORSPACE_JPEG);
            }
            Format::Yuyv => {
                f.set_u32(24, c.width * 2);
                f.set_u32(28, c.width * c.height * 2);
                f.set_u32(32, v4l2::COLORSPACE_SRGB);
            }
        }
    }

    /// Handles one ioctl. `Ok(Some(bytes))` is the reply payload, `Ok(None)` means the reply was
    /// parked (blocking DQBUF) and `reply` was consumed.
    fn ioctl(
        self: &std::sync::Arc<Self>,
        fh: u64,
        cmd: u32,
        input: &[u8],
        reply: ReplyIoctl,
    ) -> Option<(ReplyIoctl, Result<Vec<u8>, Errno>)> {
        let mut d = Deferred::default();
        let res = {
            let mut st = self.lock();
            let Some(h) = st.handles.get(&fh) else {
                return Some((reply, Err(Errno::EBADF)));
            };
            if !st.plugged || h.epoch != st.epoch {
                return Some((reply, Err(Errno::ENODEV)));
            }
            let nonblock = h.nonblock;
            if v4l2::ioc_type(cmd) != b'V' {
                return Some((reply, Err(Errno::ENOTTY)));
            }
            // Restricted ioctl: the kernel copied _IOC_SIZE bytes in for _IOC_WRITE commands.
            let size = ((cmd >> 16) & 0x3fff) as usize;
            let mut buf = vec![0u8; size];
            let n = input.len().min(size);
            buf[..n].copy_from_slice(&input[..n]);
            if (cmd >> 30) & 1 == 1 && input.len() < size {
                return Some((reply, Err(Errno::EINVAL)));
            }
            match self.ioctl_locked(&mut st, fh, nonblock, cmd, buf, &mut d) {
                Dispatch::Reply(r) => r,
                Dispatch::Park => {
                    st.waiters.push_back(Waiter { fh, reply });
                    drop(st);
                    d.send();
                    return None;
                }
                Dispatch::Slow { id, value, payload } => {
                    // A slow control transfer: answered from a thread of its own, so the FUSE
                    // threads (and the frames) carry on meanwhile.
                    let epoch = st.epoch;
                    drop(st);
                    d.send();
                    let shared = self.clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(controls::SLOW_WRITE);
                        let mut st = shared.lock();
                        if !st.plugged || st.epoch != epoch {
                            drop(st);
                            return reply.error(Errno::ENODEV);
                        }
                        st.controls.set(id, value);
                        drop(st);
                        reply.ioctl(0, &payload);
                    });
                    return None;
                }
            }
        };
        d.send();
        Some((reply, res))
    }

    fn ioctl_locked(
        &self,
        st: &mut State,
        fh: u64,
        nonblock: bool,
        cmd: u32,
        mut b: Vec<u8>,
        d: &mut Deferred,
    ) -> Dispatch {
        use Dispatch::Reply as R;
        let c = &self.cfg;
        let is_owner = st.owner.map(|o| o.0) == Some(fh);
        let busy = st.owner.is_some() && !is_owner;
        match cmd {
            v4l2::VIDIOC_QUERYCAP => {
                b.set_str(0, 16, "fakecam");
                let card = match c.format {
                    Format::Mjpeg => "FUSE fake camera (MJPEG)",
                    Format::Yuyv => "FUSE fake camera (YUYV)",
                };
                b.set_str(16, 32, card);
                b.set_str(48, 32, "platform:fakecam-fuse");
                b.set_u32(80, (6 << 16) | (1 << 8));
                let dev = v4l2::CAP_VIDEO_CAPTURE | v4l2::CAP_STREAMING;
                b.set_u32(84, dev | v4l2::CAP_DEVICE_CAPS);
                b.set_u32(88, dev);
                R(Ok(b))
            }
            v4l2::VIDIOC_ENUM_FMT => {
                if b.u32_at(0) != 0 || b.u32_at(4) != v4l2::BUF_TYPE_VIDEO_CAPTURE {
                    return R(Err(Errno::EINVAL));
                }
                b.zero(8, v4l2::SIZE_FMTDESC);
                let (flags, desc) = match c.format {
                    Format::Mjpeg => (v4l2::FMT_FLAG_COMPRESSED, "Motion-JPEG"),
                    Format::Yuyv => (0, "YUYV 4:2:2"),
                };
                b.set_u32(8, flags);
                b.set_str(12, 32, desc);
                b.set_u32(44, c.pixelformat());
                R(Ok(b))
            }
            v4l2::VIDIOC_G_FMT | v4l2::VIDIOC_S_FMT | v4l2::VIDIOC_TRY_FMT => {
                if b.u32_at(0) != v4l2::BUF_TYPE_VIDEO_CAPTURE {
                    return R(Err(Errno::EINVAL));
                }
                if cmd == v4l2::VIDIOC_S_FMT && (busy || st.streaming) {
                    return R(Err(Errno::EBUSY));
                }
                // Whatever was asked, the one supported format is granted.
                self.fill_pix(&mut b);
                R(Ok(b))
            }
            v4l2::VIDIOC_ENUM_FRAMESIZES => {
                if b.u32_at(0) != 0 || b.u32_at(4) != c.pixelformat() {
                    return R(Err(Errno::EINVAL));
                }
                b.zero(8, v4l2::SIZE_FRMSIZEENUM);
                b.set_u32(8, v4l2::FRMSIZE_TYPE_DISCRETE);
                b.set_u32(12, c.width);
                b.set_u32(16, c.height);
                R(Ok(b))
            }
            v4l2::VIDIOC_ENUM_FRAMEINTERVALS => {
                if b.u32_at(0) != 0
                    || b.u32_at(4) != c.pixelformat()
                    || b.u32_at(8) != c.width
                    || b.u32_at(12) != c.height
                {
                    return R(Err(Errno::EINVAL));
                }
                b.zero(16, v4l2::SIZE_FRMIVALENUM);
                b.set_u32(16, v4l2::FRMIVAL_TYPE_DISCRETE);
                b.set_u32(20, 1);
                b.set_u32(24, c.nominal_fps);
                R(Ok(b))
            }
            v4l2::VIDIOC_G_PARM | v4l2::VIDIOC_S_PARM => {
                if b.u32_at(0) != v4l2::BUF_TYPE_VIDEO_CAPTURE {
                    return R(Err(Errno::EINVAL));
                }
                if cmd == v4l2::VIDIOC_S_PARM {
                    let (num, den) = (b.u32_at(12), b.u32_at(16));
                    if num != 0 && den != 0 {
                        let fps = (den as u64 + num as u64 / 2) / num as u64;
                        st.fps = fps.clamp(1, 120) as u32;
                        self.wake.notify_all();
                    }
                }
                b.zero(4, v4l2::SIZE_STREAMPARM);
                b.set_u32(4, v4l2::CAP_TIMEPERFRAME);
                b.set_u32(12, 1);
                b.set_u32(16, st.fps);
                b.set_u32(24, 2);
                R(Ok(b))
            }
            v4l2::VIDIOC_ENUMINPUT => {
                if b.u32_at(0) != 0 {
                    return R(Err(Errno::EINVAL));
                }
                b.zero(4, v4l2::SIZE_INPUT);
                b.set_str(4, 32, "Camera");
                b.set_u32(36, v4l2::INPUT_TYPE_CAMERA);
                R(Ok(b))
            }
            v4l2::VIDIOC_G_INPUT => R(Ok(vec![0; 4])),
            v4l2::VIDIOC_S_INPUT => {
                if b.u32_at(0) != 0 {
                    return R(Err(Errno::EINVAL));
                }
                R(Ok(b))
            }
            v4l2::VIDIOC_REQBUFS => {
                if b.u32_at(4) != v4l2::BUF_TYPE_VIDEO_CAPTURE || b.u32_at(8) != v4l2::MEMORY_MMAP {
                    return R(Err(Errno::EINVAL));
                }
                if busy || st.streaming {
                    return R(Err(Errno::EBUSY));
                }
                let n = (b.u32_at(0) as usize).min(MAX_BUFS);
                Self::free_buffers(st, Errno::EINVAL, d);
                st.slots = [Slot::EMPTY; MAX_BUFS];
                if n > 0 {
                    st.nbufs = n;
                    st.owner = Some((fh, FIRST_DEV_INO + st.epoch));
                }
                b.set_u32(0, n as u32);
                b.set_u32(12, v4l2::BUF_CAP_SUPPORTS_MMAP);
                b[16] = 0;
                R(Ok(b))
            }
            v4l2::VIDIOC_QUERYBUF | v4l2::VIDIOC_QBUF => {
                if b.u32_at(4) != v4l2::BUF_TYPE_VIDEO_CAPTURE {
                    return R(Err(Errno::EINVAL));
                }
                if busy {
                    return R(Err(Errno::EBUSY));
                }
                let i = b.u32_at(0) as usize;
                if i >= st.nbufs {
                    return R(Err(Errno::EINVAL));
                }
                if cmd == v4l2::VIDIOC_QBUF {
                    if b.u32_at(60) != v4l2::MEMORY_MMAP || st.slots[i].state != BufState::Dequeued
                    {
                        return R(Err(Errno::EINVAL));
                    }
                    st.slots[i].state = BufState::Queued;
                    st.queued.push_back(i);
                }
                self.fill_buffer(st, i, &mut b);
                R(Ok(b))
            }
            v4l2::VIDIOC_DQBUF => {
                if b.u32_at(4) != v4l2::BUF_TYPE_VIDEO_CAPTURE {
                    return R(Err(Errno::EINVAL));
                }
                if busy {
                    return R(Err(Errno::EBUSY));
                }
                if let Some(i) = st.done.pop_front() {
                    st.slots[i].state = BufState::Dequeued;
                    st.frames_served += 1;
                    self.fill_buffer(st, i, &mut b);
                    return R(Ok(b));
                }
                if !st.streaming {
                    return R(Err(Errno::EINVAL));
                }
                let in_flight = st.slots[..st.nbufs]
                    .iter()
                    .any(|s| matches!(s.state, BufState::Queued | BufState::Filling));
                if !in_flight {
                    // Nothing queued: it would block forever.
                    return R(Err(Errno::EINVAL));
                }
                if nonblock {
                    return R(Err(Errno::EAGAIN));
                }
                Dispatch::Park
            }
            v4l2::VIDIOC_STREAMON => {
                if b.u32_at(0) != v4l2::BUF_TYPE_VIDEO_CAPTURE {
                    return R(Err(Errno::EINVAL));
                }
                if busy {
                    return R(Err(Errno::EBUSY));
                }
                if st.nbufs == 0 {
                    return R(Err(Errno::EINVAL));
                }
                if !st.streaming {
                    st.streaming = true;
                    st.sequence = 0;
                    st.produced = 0;
                    self.wake.notify_all();
                }
                R(Ok(Vec::new()))
            }
            v4l2::VIDIOC_STREAMOFF => {
                if b.u32_at(0) != v4l2::BUF_TYPE_VIDEO_CAPTURE {
                    return R(Err(Errno::EINVAL));
                }
                if busy {
                    return R(Err(Errno::EBUSY));
                }
                Self::stop_streaming(st, Errno::EINVAL, d);
                R(Ok(Vec::new()))
            }
            v4l2::VIDIOC_QUERYCTRL => R(st.controls.query(b)),
            v4l2::VIDIOC_QUERY_EXT_CTRL => R(st.controls.query_ext(b)),
            v4l2::VIDIOC_QUERYMENU => R(st.controls.query_menu(b)),
            v4l2::VIDIOC_G_CTRL => R(st.controls.get_ctrl(b)),
            v4l2::VIDIOC_S_CTRL => match st.controls.set_ctrl(b) {
                Ok(Write::Done(payload)) => R(Ok(payload)),
                Ok(Write::Slow { id, value }) => {
                    let mut payload = vec![0u8; 8];
                    payload.set_u32(0, id);
                    payload.set_u32(4, value as u32);
                    Dispatch::Slow { id, value, payload }
                }
                Err(e) => R(Err(e)),
            },
            // Arrays behind a pointer: a FUSE restricted ioctl cannot carry them.
            v4l2::VIDIOC_G_EXT_CTRLS | v4l2::VIDIOC_S_EXT_CTRLS | v4l2::VIDIOC_TRY_EXT_CTRLS => {
                R(Err(Errno::EINVAL))
            }
            _ => R(Err(Errno::ENOTTY)),
        }
    }

    /// The producer thread: paces frames at the current fps and fills queued buffers.
    ///
    /// The source only advances when a buffer is filled: no frame is ever skipped, so a slow
    /// client sees every file in order (frames are late rather than dropped).
    pub(crate) fn run_producer(&self, mut source: Source) {
        // Time of the last frame tick; None right after STREAMON (first frame at once).
        let mut last: Option<Instant> = None;
        loop {
            // Wait for the next frame time (or for streaming to start). The deadline is
            // recomputed on every wake-up, so an S_PARM takes effect at once.
            let mut st = self.lock();
            let period = loop {
                if st.shutdown {
                    return;
                }
                if !st.streaming {
                    st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                    last = None;
                    continue;
                }
                let period = Duration::from_secs(1) / st.fps.max(1);
                let now = Instant::now();
                let due = last.map_or(now, |l| l + period);
                if now >= due {
                    break period;
                }
                st = self
                    .wake
                    .wait_timeout(st, due - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            };
            let now = Instant::now();
            // Keep the cadence, but after a stall (or an fps change) restart from now: no burst.
            last = Some(match last {
                Some(l) if now < l + 2 * period => l + period,
                _ => now,
            });
            let Some(i) = st.queued.pop_front() else {
                continue; // client is late: this frame slot is lost, nothing consumed
            };
            st.slots[i].state = BufState::Filling;
            let gen = st.stream_gen;
            let n = st.produced;
            st.produced += 1;
            let owner_ino = st.owner.map(|o| o.1).unwrap_or(FIRST_DEV_INO);
            if st.focus_reset_on_stream && n == FOCUS_RESET_AFTER_FRAMES {
                st.controls.reset(controls::CID_FOCUS_ABSOLUTE);
            }
            let brightness = st.controls.get(controls::CID_BRIGHTNESS).unwrap_or(0);
            drop(st);

            let mut len = {
                let mut mem = self.bufs[i].write().unwrap_or_else(|e| e.into_inner());
                source.render(n, self.cfg.width, self.cfg.height, brightness, &mut mem)
            };
            if let Some(every) = self.cfg.bad_every.filter(|&e| e > 0) {
                let k = n + 1;
                if k.is_multiple_of(every as u64) {
                    // Alternate: truncated to half, then empty.
                    len = if (k / every as u64) % 2 == 1 {
                        len / 2
                    } else {
                        0
                    };
                }
            }
            if let Some(notifier) = self.notifier.get() {
                let off = (i * self.cfg.buf_size) as i64;
                if let Err(e) =
                    notifier.inval_inode(INodeNo(owner_ino), off, self.cfg.buf_size as i64)
                {
                    eprintln!("fakecam: notify_inval_inode: {e}");
                }
            }
            let (ts_sec, ts_usec) = monotonic_now();

            let mut d = Deferred::default();
            let mut ready: Option<(ReplyIoctl, Vec<u8>)> = None;
            {
                let mut st = self.lock();
                if st.stream_gen != gen || st.slots[i].state != BufState::Filling || !st.streaming {
                    if st.stream_gen == gen && st.slots[i].state == BufState::Filling {
                        st.slots[i].state = BufState::Dequeued;
                    }
                    continue;
                }
                let seq = st.sequence;
                st.sequence = st.sequence.wrapping_add(1);
                st.slots[i] = Slot {
                    state: BufState::Done,
                    bytesused: len as u32,
                    sequence: seq,
                    ts_sec,
                    ts_usec,
                };
                if let Some(w) = st.waiters.pop_front() {
                    debug_assert_eq!(st.owner.map(|o| o.0), Some(w.fh));
                    st.slots[i].state = BufState::Dequeued;
                    st.frames_served += 1;
                    let mut b = vec![0u8; v4l2::SIZE_BUFFER];
                    self.fill_buffer(&st, i, &mut b);
                    ready = Some((w.reply, b));
                } else {
                    st.done.push_back(i);
                }
                d.polls = std::mem::take(&mut st.polls);
            }
            if let Some((reply, b)) = ready {
                reply.ioctl(0, &b);
            }
            d.send();
        }
    }
}

enum Dispatch {
    Reply(Result<Vec<u8>, Errno>),
    Park,
    /// A slow control write, answered later.
    Slow {
        id: u32,
        value: i32,
        payload: Vec<u8>,
    },
}

fn monotonic_now() -> (u64, u64) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64, (ts.tv_nsec / 1000) as u64)
}

/// The FUSE filesystem: a root directory holding the single device file.
pub(crate) struct CamFs(pub(crate) std::sync::Arc<Shared>);

impl CamFs {
    fn is_dev_ino(&self, ino: INodeNo) -> bool {
        ino.0 >= FIRST_DEV_INO
    }
}

impl Filesystem for CamFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let st = self.0.lock();
        if parent != INodeNo::ROOT || name != DEVICE_NAME || !st.plugged {
            return reply.error(Errno::ENOENT);
        }
        let ino = FIRST_DEV_INO + st.epoch;
        drop(st);
        reply.entry_with_ttls(&ENTRY_TTL, &ATTR_TTL, &self.0.attr(ino), Generation(0));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino != INodeNo::ROOT && !self.is_dev_ino(ino) {
            return reply.error(Errno::ENOENT);
        }
        reply.attr(&ATTR_TTL, &self.0.attr(ino.0));
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != INodeNo::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let st = self.0.lock();
        let mut entries = vec![
            (INodeNo::ROOT, FileType::Directory, "."),
            (INodeNo::ROOT, FileType::Directory, ".."),
        ];
        if st.plugged {
            entries.push((
                INodeNo(FIRST_DEV_INO + st.epoch),
                FileType::RegularFile,
                DEVICE_NAME,
            ));
        }
        drop(st);
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(ino, i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if ino == INodeNo::ROOT {
            return reply.error(Errno::EISDIR);
        }
        let mut st = self.0.lock();
        if !st.plugged || ino.0 != FIRST_DEV_INO + st.epoch {
            return reply.error(Errno::ENOENT);
        }
        let fh = st.next_fh;
        st.next_fh += 1;
        st.total_opens += 1;
        let nonblock = flags.0 & libc::O_NONBLOCK != 0;
        let epoch = st.epoch;
        st.handles.insert(fh, OpenHandle { epoch, nonblock });
        drop(st);
        reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut d = Deferred::default();
        {
            let mut st = self.0.lock();
            st.handles.remove(&fh.0);
            if st.owner.map(|o| o.0) == Some(fh.0) {
                Shared::free_buffers(&mut st, Errno::EBADF, &mut d);
            }
        }
        d.send();
        reply.ok();
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // Serves the buffer memory (page faults of the mmapped buffers land here). Handles of an
        // unplugged device are still served so that touching a mapped buffer never SIGBUSes, as
        // with a real driver whose buffers stay valid until munmap.
        let bs = self.0.cfg.buf_size as u64;
        let total = self.0.cfg.file_size();
        let end = (offset + size as u64).min(total);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut pos = offset;
        while pos < end {
            let i = (pos / bs) as usize;
            let within = (pos % bs) as usize;
            let take = ((end - pos) as usize).min(bs as usize - within);
            let mem = self.0.bufs[i].read().unwrap_or_else(|e| e.into_inner());
            out.extend_from_slice(&mem[within..within + take]);
            pos += take as u64;
        }
        reply.data(&out);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // Write-back of dirty shared-mapping pages: accepted and ignored.
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        out_size: u32,
        reply: ReplyIoctl,
    ) {
        if let Some((reply, res)) = self.0.ioctl(fh.0, cmd, in_data, reply) {
            match res {
                Ok(mut data) => {
                    data.truncate(out_size as usize);
                    reply.ioctl(0, &data);
                }
                Err(e) => reply.error(e),
            }
        }
    }

    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        ph: PollNotifier,
        _events: PollEvents,
        _flags: PollFlags,
        reply: ReplyPoll,
    ) {
        let mut evicted = None;
        let revents = {
            let mut st = self.0.lock();
            let dead = match st.handles.get(&fh.0) {
                Some(h) => !st.plugged || h.epoch != st.epoch,
                None => true,
            };
            if dead {
                PollEvents::POLLERR | PollEvents::POLLHUP
            } else {
                if st.polls.len() >= MAX_POLLS {
                    evicted = Some(st.polls.remove(0));
                }
                st.polls.push(ph);
                let ready =
                    st.owner.map(|o| o.0) == Some(fh.0) && st.streaming && !st.done.is_empty();
                if ready {
                    PollEvents::POLLIN | PollEvents::POLLRDNORM
                } else {
                    PollEvents::empty()
                }
            }
        };
        if let Some(p) = evicted {
            let _ = p.notify();
        }
        reply.poll(revents);
    }
}
