//! A frame's whole multipart part, written once into memory the kernel can share between sockets.
//!
//! Writing a frame to N sockets with write(2) copies it N times from user memory into socket buffers;
//! profiled at 2,000 clients, that copy alone was a third of the server's CPU time. Instead, each new frame
//! is written once into a memfd (a file in RAM) and every plain-TCP client is sent its part with
//! sendfile(2), which hands the socket references to the file's pages instead of copies (on loopback the
//! receiving socket still copies; a real NIC copies nothing).
//!
//! The file holds `part_head | JPEG | PART_TAIL | ADVANCE_HEAD`, so both header modes are one contiguous
//! range of it: a normal part is `part_head | JPEG | PART_TAIL`, an advance-headers part (whose headers went
//! ahead with the previous boundary) is `JPEG | PART_TAIL | ADVANCE_HEAD`: exactly the bytes the vectored
//! writer sends, which stays the path for TLS and for frames that have no file (see [`crate::hub`]).
//!
//! A page handed to a socket stays referenced by it after sendfile returns, until the client has
//! acknowledged it: memory a send may still hold must never be rewritten. The file is sealed against
//! writing, shrinking and growing before anyone sends from it (F_SEAL_WRITE and friends, enforced by the
//! kernel), and closed when the last client drops it; its pages live on as long as a socket holds them.
//!
//! Each part open is a descriptor. The hubs keep only their newest few, but a client blocked mid-send
//! keeps its part open until the write ends (at most the write timeout), so at most [`MAX_OPEN`] parts are
//! open in the whole process, taken from the descriptors [`crate::security::FD_RESERVE`] keeps back from
//! connections; past that a frame simply has no part and is written from its bytes.

use mjpegd_core::frame::{ADVANCE_HEAD, PART_TAIL};
use mjpegd_core::Frame;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The most parts open at once in the process.
pub const MAX_OPEN: usize = 32;

/// Parts open now.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// A claim on one of `max` places counted by `open`, given back when dropped.
#[derive(Debug)]
struct Slot(&'static AtomicUsize);

impl Slot {
    fn take(open: &'static AtomicUsize, max: usize) -> Option<Slot> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Slot(open))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One frame's part, in a sealed memfd.
#[derive(Debug)]
pub struct SharedPart {
    /// The frame's sequence number.
    pub seq: u64,
    file: OwnedFd,
    head: usize,
    body: usize,
    _slot: Slot,
}

impl SharedPart {
    /// Writes `frame`'s part into a new sealed memfd (one copy of the frame, whatever the number of clients).
    /// None when [`MAX_OPEN`] parts are open already.
    pub fn new(frame: &Frame) -> io::Result<Option<SharedPart>> {
        let Some(slot) = Slot::take(&OPEN, MAX_OPEN) else {
            return Ok(None);
        };
        // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new descriptor we own, or -1.
        let raw = unsafe {
            libc::memfd_create(
                c"mjpegd-part".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor just returned to us and owned by nothing else.
        let mut file = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
        file.write_all(&frame.part_head)?;
        file.write_all(&frame.jpeg)?;
        file.write_all(PART_TAIL)?;
        file.write_all(ADVANCE_HEAD)?;
        let seals =
            libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: F_ADD_SEALS takes an int argument and touches no memory of ours.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(SharedPart {
            seq: frame.seq,
            file: file.into(),
            head: frame.part_head.len(),
            body: frame.jpeg.len() + PART_TAIL.len(),
            _slot: slot,
        }))
    }

    /// Where in the file the part of this header mode lies: (offset, length).
    pub fn range(&self, advance_headers: bool) -> (u64, usize) {
        if advance_headers {
            (self.head as u64, self.body + ADVANCE_HEAD.len())
        } else {
            (0, self.head + self.body)
        }
    }

    /// The file, for sendfile.
    pub fn file(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// One non-blocking sendfile(2) from `file` at `offset` (at most `len` bytes) into the socket `socket`.
/// Returns the bytes the socket took; WouldBlock when it has no room.
pub fn send_file(
    socket: RawFd,
    file: BorrowedFd<'_>,
    offset: u64,
    len: usize,
) -> io::Result<usize> {
    let mut off = offset as libc::off_t;
    loop {
        // SAFETY: sendfile reads `off` and writes the advanced offset back through the pointer, which points
        // at a live local; both descriptors are open for the duration of the call (the caller borrows them).
        let n = unsafe { libc::sendfile(socket, file.as_raw_fd(), &mut off, len) };
        match n {
            n if n > 0 => return Ok(n as usize),
            0 if len > 0 => return Err(io::ErrorKind::WriteZero.into()),
            0 => return Ok(0),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::os::unix::fs::FileExt;

    /// The whole file, read from its start (the descriptor's own offset is at its end after writing).
    fn read_all(part: &SharedPart) -> Vec<u8> {
        let file = File::from(part.file.try_clone().unwrap());
        let mut all = vec![0; file.metadata().unwrap().len() as usize];
        file.read_exact_at(&mut all, 0).unwrap();
        all
    }

    #[test]
    fn both_header_modes_are_one_range_holding_the_writers_bytes() {
        let frame = Frame::new(
            42,
            1_700_000_000_123_456,
            Bytes::from_static(b"\xff\xd8abc\xff\xd9"),
        );
        let part = SharedPart::new(&frame).unwrap().unwrap();
        let all = read_all(&part);
        let (off, len) = part.range(false);
        let normal = [&frame.part_head[..], &frame.jpeg[..], PART_TAIL].concat();
        assert_eq!(&all[off as usize..off as usize + len], &normal[..]);
        let (off, len) = part.range(true);
        let advance = [&frame.jpeg[..], PART_TAIL, ADVANCE_HEAD].concat();
        assert_eq!(&all[off as usize..off as usize + len], &advance[..]);
        assert_eq!(part.seq, 42);
    }

    #[test]
    fn the_file_cannot_be_rewritten_or_resized() {
        let frame = Frame::new(1, 2, Bytes::from(vec![7u8; 100_000]));
        let part = SharedPart::new(&frame).unwrap().unwrap();
        let file = File::from(part.file.try_clone().unwrap());
        assert!(file.write_at(b"x", 0).is_err(), "sealed against writing");
        assert!(file.set_len(10).is_err(), "sealed against shrinking");
        assert!(file.set_len(1 << 20).is_err(), "sealed against growing");
        assert_eq!(
            read_all(&part).len(),
            frame.size() + PART_TAIL.len() + ADVANCE_HEAD.len()
        );
    }

    #[test]
    fn places_are_limited_and_given_back() {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let mut held: Vec<Slot> = (0..3).map_while(|_| Slot::take(&COUNT, 3)).collect();
        assert_eq!(held.len(), 3);
        assert!(Slot::take(&COUNT, 3).is_none(), "no fourth place");
        held.pop();
        assert!(
            Slot::take(&COUNT, 3).is_some(),
            "a dropped place is given back"
        );
        drop(held);
        assert_eq!(COUNT.load(Ordering::Relaxed), 0);
    }
}
