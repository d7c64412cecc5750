//! Listening: the socket with a deep accept queue, and the open-file limit every connection counts against.

/// The accept queue asked for (the kernel caps it at net.core.somaxconn).
pub const BACKLOG: i32 = 8192;

/// Binds the listening socket with a deep accept queue (the kernel caps it at net.core.somaxconn): when
/// thousands of players connect at once, a short queue makes the kernel drop connections before mjpegd
/// ever sees them.
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG as u32)
}

/// Raises the open-file limit to the hard limit (each client is a file descriptor) and returns it.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}
