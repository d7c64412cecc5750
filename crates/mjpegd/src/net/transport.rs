//! The connections mjpegd serves: plain TCP, TLS over it, or a unix socket, behind one trait, so the HTTP
//! side does not care which.

use std::os::fd::AsRawFd;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// A connection mjpegd can serve: plain TCP (and, later, TLS over it).
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Prepares the connection for streaming: no Nagle delay, and the send buffer size if one is set.
    fn tune_for_stream(&self, _send_buffer: Option<usize>) {}

    /// Makes the coming close abortive (SO_LINGER 0): the kernel discards the send queue and resets the
    /// connection, so a client that was evicted does not go on receiving the frames queued for it.
    fn discard_unsent_on_close(&self) {}

    /// Bytes written but not yet acknowledged by the client (the kernel's send queue), if known.
    fn unsent_bytes(&self) -> Option<usize> {
        None
    }
}

impl Transport for TcpStream {
    fn tune_for_stream(&self, send_buffer: Option<usize>) {
        let _ = self.set_nodelay(true);
        if let Some(size) = send_buffer {
            let _ = socket2::SockRef::from(self).set_send_buffer_size(size);
        }
    }

    fn discard_unsent_on_close(&self) {
        let _ = socket2::SockRef::from(self).set_linger(Some(Duration::ZERO));
    }

    fn unsent_bytes(&self) -> Option<usize> {
        let queued = outq(self.as_raw_fd())?;
        // A reset connection keeps its unacknowledged count forever: report nothing, so the caller's next
        // write fails and ends the stream. (Asked only when something is queued: the common case costs one
        // system call.)
        if queued > 0 && !matches!(self.take_error(), Ok(None)) {
            return None;
        }
        Some(queued)
    }
}

/// A unix socket (a reverse proxy on this host): no Nagle to turn off; the send queue is what the peer
/// has not read yet.
impl Transport for UnixStream {
    fn tune_for_stream(&self, send_buffer: Option<usize>) {
        if let Some(size) = send_buffer {
            let _ = socket2::SockRef::from(self).set_send_buffer_size(size);
        }
    }

    fn discard_unsent_on_close(&self) {}

    fn unsent_bytes(&self) -> Option<usize> {
        let queued = outq(self.as_raw_fd())?;
        if queued > 0 && !matches!(self.take_error(), Ok(None)) {
            return None;
        }
        Some(queued)
    }
}

/// Bytes in a socket's send queue (SIOCOUTQ): for TCP, sent but not acknowledged; for a unix socket, not
/// yet read by the peer.
fn outq(fd: std::os::fd::RawFd) -> Option<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int through the pointer.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
    (rc == 0).then_some(queued.max(0) as usize)
}
