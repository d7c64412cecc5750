//! The connections mjpegd serves: plain TCP, TLS over it, or a unix socket, behind one trait, so the HTTP
//! side does not care which.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, Interest};
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

    /// Like [`Transport::unsent_bytes`], without telling a reset connection apart: cheaper (one system call
    /// fewer when something is queued), for a first look that proceeds when the queue is short.
    fn unsent_bytes_quick(&self) -> Option<usize> {
        self.unsent_bytes()
    }

    /// How many bytes `len` bytes written take in the send queue: the same, unless the transport frames
    /// them (TLS records).
    fn wire_len(&self, len: usize) -> usize {
        len
    }

    /// Whether [`Transport::poll_send_file`] works on this connection (TCP and unix sockets: yes; TLS: no,
    /// its bytes are encrypted in user space).
    fn sends_files(&self) -> bool {
        false
    }

    /// Sends up to `len` bytes of `file` from `offset` with sendfile(2), waiting until the connection can
    /// take some. Returns how many it took.
    fn poll_send_file(
        &self,
        _cx: &mut Context<'_>,
        _file: BorrowedFd<'_>,
        _offset: u64,
        _len: usize,
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::Unsupported.into()))
    }
}

/// sendfile into a tokio socket: waits for writability, sends what fits, and on WouldBlock lets `try_io`
/// clear the readiness, so the next wait is for the socket's next writable edge.
macro_rules! poll_send_file {
    ($socket:expr, $cx:expr, $file:expr, $offset:expr, $len:expr) => {{
        let socket = $socket;
        loop {
            ready!(socket.poll_write_ready($cx))?;
            match socket.try_io(Interest::WRITABLE, || {
                super::shared_part::send_file(socket.as_raw_fd(), $file, $offset, $len)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }};
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
        outq_unless_failed(self.as_raw_fd(), || self.take_error())
    }

    fn unsent_bytes_quick(&self) -> Option<usize> {
        outq(self.as_raw_fd())
    }

    fn sends_files(&self) -> bool {
        true
    }

    fn poll_send_file(
        &self,
        cx: &mut Context<'_>,
        file: BorrowedFd<'_>,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        poll_send_file!(self, cx, file, offset, len)
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
        outq_unless_failed(self.as_raw_fd(), || self.take_error())
    }

    fn unsent_bytes_quick(&self) -> Option<usize> {
        outq(self.as_raw_fd())
    }

    fn sends_files(&self) -> bool {
        true
    }

    fn poll_send_file(
        &self,
        cx: &mut Context<'_>,
        file: BorrowedFd<'_>,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        poll_send_file!(self, cx, file, offset, len)
    }
}

/// The socket's send queue, or None when it failed: a reset connection keeps its unacknowledged count
/// forever, so nothing is reported and the caller's next write fails and ends the stream. (The error is
/// asked only when something is queued: the common case costs one system call.)
fn outq_unless_failed(
    fd: std::os::fd::RawFd,
    take_error: impl FnOnce() -> io::Result<Option<io::Error>>,
) -> Option<usize> {
    let queued = outq(fd)?;
    if queued > 0 && !matches!(take_error(), Ok(None)) {
        return None;
    }
    Some(queued)
}

/// Bytes in a socket's send queue (SIOCOUTQ): for TCP, sent but not acknowledged; for a unix socket, not
/// yet read by the peer.
fn outq(fd: std::os::fd::RawFd) -> Option<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int through the pointer.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
    (rc == 0).then_some(queued.max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::shared_part::SharedPart;
    use bytes::Bytes;
    use mjpegd_core::Frame;
    use tokio::io::AsyncReadExt;

    /// Sends both header modes' ranges of `part` through `server` with sendfile; returns the calls it took
    /// and the vectored writer's bytes for the same parts.
    async fn send_both_modes<T: Transport>(
        server: &T,
        frame: &Frame,
        part: &SharedPart,
    ) -> (usize, Vec<u8>) {
        let mut expected = Vec::new();
        let mut calls = 0;
        for advance in [false, true] {
            let (offset, len) = part.range(advance);
            let mut done = 0;
            while done < len {
                done += std::future::poll_fn(|cx| {
                    server.poll_send_file(cx, part.file(), offset + done as u64, len - done)
                })
                .await
                .unwrap();
                calls += 1;
            }
            let mut reference = Vec::new();
            crate::http::stream::write_part(&mut reference, frame, advance)
                .await
                .unwrap();
            expected.extend_from_slice(&reference);
        }
        (calls, expected)
    }

    /// A part larger than the socket takes at once leaves in several sendfile calls, each waiting for the
    /// socket to be writable again, and arrives whole and in order, in both header modes.
    #[tokio::test]
    async fn a_part_sent_from_its_file_over_tcp_arrives_byte_for_byte() {
        let jpeg: Vec<u8> = (0..700_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let frame = Frame::new(9, 1_700_000_000_000_001, Bytes::from(jpeg));
        let part = SharedPart::new(&frame).unwrap().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_recv_buffer_size(32768).unwrap();
            let mut c = socket.connect(addr).await.unwrap();
            let mut all = Vec::new();
            c.read_to_end(&mut all).await.unwrap();
            all
        });
        let (server, _) = listener.accept().await.unwrap();
        server.tune_for_stream(Some(16384));
        assert!(server.sends_files());
        let (calls, expected) = send_both_modes(&server, &frame, &part).await;
        drop(server);
        let got = client.await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes differ from the vectored writer's");
        assert!(
            calls > 2,
            "a part this size should take several sends ({calls})"
        );
    }

    /// The same over a unix socket (a proxy on this host reading mjpegd through one).
    #[tokio::test]
    async fn a_part_sent_from_its_file_over_a_unix_socket_arrives_byte_for_byte() {
        let jpeg: Vec<u8> = (0..700_000u32).map(|i| (i * 13 + i / 97) as u8).collect();
        let frame = Frame::new(10, 1_700_000_000_000_002, Bytes::from(jpeg));
        let part = SharedPart::new(&frame).unwrap().unwrap();
        let (server, mut client) = UnixStream::pair().unwrap();
        server.tune_for_stream(Some(16384));
        assert!(server.sends_files());
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.unwrap();
            all
        });
        let (calls, expected) = send_both_modes(&server, &frame, &part).await;
        drop(server);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes differ from the vectored writer's");
        assert!(
            calls > 2,
            "a part this size should take several sends ({calls})"
        );
    }
}
