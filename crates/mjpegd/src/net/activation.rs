//! Socket activation: the listening sockets systemd (or `systemd-socket-activate`) opened and passed as
//! descriptors 3, 4, ... with `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES` (sd_listen_fds(3)).
//!
//! The environment is checked before any descriptor is touched: `LISTEN_PID` must be this process (else
//! the sockets were meant for a parent and are left alone), `LISTEN_FDS` a count from 1 to
//! [`MAX_PASSED`], `LISTEN_FDNAMES` as many valid names. Each descriptor must then be an open, listening
//! stream socket of a family mjpegd serves (IPv4, IPv6, unix): a stray file or a datagram socket is an
//! error that says which descriptor, never a panic or a silent misbehaviour. Taken descriptors are made
//! close-on-exec, so `exec:` sources never inherit them. (The sd-notify crate's `listen_fds` takes any
//! count up to 2^32 and checks none of this, so this part is mjpegd's own.)

use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// First descriptor systemd passes.
const FIRST_FD: RawFd = 3;
/// Most passed sockets accepted.
pub const MAX_PASSED: usize = 64;

/// One socket systemd passed.
#[derive(Debug)]
pub struct PassedSocket {
    pub fd: RawFd,
    /// Its `FileDescriptorName=` (systemd's default is the socket unit's name).
    pub name: String,
    pub socket: socket2::Socket,
}

/// Set once the passed descriptors have been taken: they must have one owner.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Whether systemd passed sockets to this process (the environment only, checked; nothing is taken).
pub fn offered() -> anyhow::Result<bool> {
    Ok(read_env()?.is_some())
}

/// Takes the sockets systemd passed to this process (none when it passed none, or passed them to
/// another process). Call once.
pub fn take() -> anyhow::Result<Vec<PassedSocket>> {
    let Some((count, names)) = read_env()? else {
        return Ok(Vec::new());
    };
    if TAKEN.swap(true, Ordering::AcqRel) {
        anyhow::bail!("the sockets passed by systemd were already taken");
    }
    let mut taken = Vec::with_capacity(count);
    for (i, name) in names.into_iter().enumerate() {
        let fd = FIRST_FD + i as RawFd;
        taken.push(take_fd(fd, name)?);
    }
    Ok(taken)
}

/// The count and names from the environment, if the sockets are meant for this process.
fn read_env() -> anyhow::Result<Option<(usize, Vec<String>)>> {
    let Some(pid) = var("LISTEN_PID")? else {
        return Ok(None);
    };
    let pid: u32 = pid
        .parse()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| anyhow::anyhow!("LISTEN_PID={pid:?}: expected a process id"))?;
    if pid != std::process::id() {
        return Ok(None);
    }
    let fds = var("LISTEN_FDS")?.ok_or_else(|| {
        anyhow::anyhow!("LISTEN_PID names this process but LISTEN_FDS is not set")
    })?;
    let count: usize = fds
        .parse()
        .ok()
        .filter(|n| (1..=MAX_PASSED).contains(n))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "LISTEN_FDS={fds:?}: expected a number of sockets from 1 to {MAX_PASSED}"
            )
        })?;
    let names = match var("LISTEN_FDNAMES")? {
        None => vec!["unknown".to_string(); count],
        Some(names) => {
            let names: Vec<String> = names.split(':').map(str::to_string).collect();
            if names.len() != count {
                anyhow::bail!(
                    "LISTEN_FDNAMES has {} names for LISTEN_FDS={count} sockets",
                    names.len()
                );
            }
            for name in &names {
                super::address::check_fd_name(name)
                    .map_err(|e| anyhow::anyhow!("LISTEN_FDNAMES: {e}"))?;
            }
            names
        }
    };
    Ok(Some((count, names)))
}

/// An environment variable, if set; an error if it is not text or is absurdly long.
fn var(name: &str) -> anyhow::Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) if v.len() > 64 * 1024 => anyhow::bail!("{name} is longer than 64 KiB"),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => anyhow::bail!("{name} is not valid text"),
    }
}

/// Checks that `fd` is a listening stream socket mjpegd can serve, and takes it.
fn take_fd(fd: RawFd, name: String) -> anyhow::Result<PassedSocket> {
    let what = format!("descriptor {fd} passed by systemd ({name})");
    // SAFETY: fstat only writes the struct passed by pointer; a closed descriptor fails with EBADF.
    let is_socket = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            anyhow::bail!("{what}: {}", std::io::Error::last_os_error());
        }
        st.st_mode & libc::S_IFMT == libc::S_IFSOCK
    };
    if !is_socket {
        anyhow::bail!("{what} is not a socket");
    }
    // SAFETY: the descriptor is open, is a socket, and is owned by nothing else in this process (LISTEN_*
    // hands it to this process, and TAKEN makes sure it is taken once).
    let socket = unsafe { socket2::Socket::from_raw_fd(fd) };
    socket.set_cloexec(true)?;
    if socket.r#type()? != socket2::Type::STREAM {
        anyhow::bail!(
            "{what} is not a stream socket (ListenStream= is needed, not ListenDatagram=)"
        );
    }
    if !socket.is_listener()? {
        anyhow::bail!("{what} is not listening (Accept=no is needed)");
    }
    let domain = socket.domain()?;
    if ![
        socket2::Domain::IPV4,
        socket2::Domain::IPV6,
        socket2::Domain::UNIX,
    ]
    .contains(&domain)
    {
        anyhow::bail!("{what} is of a family mjpegd does not serve ({domain:?})");
    }
    socket.set_nonblocking(true)?;
    Ok(PassedSocket { fd, name, socket })
}
