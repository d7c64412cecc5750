//! A unix socket listener for a reverse proxy on the same host (`--listen unix:/PATH?mode=0660`).
//!
//! The socket file is made safely, even in a folder others can write to:
//! - a file already at the path is removed only when it is a socket no one answers on (left by a
//!   server that died); a socket someone still serves is "in use", and anything that is not a socket
//!   (a config file given by mistake) is never touched;
//! - the socket is bound inside a private directory made beside the path (`mkdtemp`, mode 0700), given
//!   its mode there, then renamed over the path in one step: it never exists at the path with the
//!   umask's permissions, and a proxy never finds the path missing while a stale socket is replaced;
//! - nothing is ever changed by a path someone else could swap: the mode is set and the socket renamed
//!   relative to the private directory's descriptor (`fchmodat`, `renameat`), where no other user can
//!   put a symlink. (Binding a temporary name in the shared folder and then `chmod`-ing it by path let a
//!   racer rename a symlink over the name and have a file of its choice made world-writable.) Before
//!   bind, the socket's own mode is narrowed with `fchmod` on its descriptor, which Linux applies to the
//!   file bind creates;
//! - at shutdown the file is removed, if it is still the one this server made.

use anyhow::Context;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A unix socket file this server made, removed when dropped (if it is still ours).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// Device and inode of the file at bind time.
    id: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.id {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

impl SocketFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The name of the socket inside the private directory.
const INNER: &std::ffi::CStr = c"s";

/// Binds a listening unix stream socket at `path` with permission bits `mode`.
pub fn bind(path: &Path, mode: u32) -> anyhow::Result<(tokio::net::UnixListener, SocketFile)> {
    clear_stale(path)?;
    let private = PrivateDir::create(path)
        .with_context(|| format!("cannot create a socket in {}", parent(path).display()))?;
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    // Never looser than asked from the start (bind applies the umask on top).
    fchmod(&socket, mode)?;
    socket
        .bind(&socket2::SockAddr::unix(private.path.join("s"))?)
        .with_context(|| format!("cannot create a socket in {}", parent(path).display()))?;
    let placed = (|| {
        private.chmod_socket(mode)?;
        socket.listen(super::listen::BACKLOG)?;
        private.move_socket_to(path)?;
        std::fs::symlink_metadata(path)
    })();
    drop(private);
    let meta = placed.with_context(|| format!("cannot place the socket at {}", path.display()))?;
    socket.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(socket.into())?;
    Ok((
        listener,
        SocketFile {
            path: path.to_path_buf(),
            id: (meta.dev(), meta.ino()),
        },
    ))
}

fn cstring(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL in the path"))
}

fn check(ret: libc::c_int) -> std::io::Result<()> {
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sets the mode of the socket itself (not of a file): Linux creates the bound file with it (less the
/// umask).
fn fchmod(socket: &socket2::Socket, mode: u32) -> std::io::Result<()> {
    // SAFETY: a plain syscall on a descriptor we own.
    check(unsafe { libc::fchmod(socket.as_raw_fd(), mode as libc::mode_t) })
}

/// A directory only this user can write in, beside the socket's path, made for the bind and removed
/// after it; held by descriptor so every change inside it is relative to the directory made, whatever
/// someone does to the name.
struct PrivateDir {
    path: PathBuf,
    fd: OwnedFd,
    id: (u64, u64),
}

impl PrivateDir {
    fn create(beside: &Path) -> std::io::Result<PrivateDir> {
        let name = beside
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let template = cstring(&parent(beside).join(format!(".{name}.XXXXXX")))?;
        let mut template = template.into_bytes_with_nul();
        // SAFETY: a NUL-terminated buffer that mkdtemp rewrites in place (the Xs only).
        let made = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
        if made.is_null() {
            return Err(std::io::Error::last_os_error());
        }
        template.pop();
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(&template));
        let opened = (|| {
            let c = cstring(&path)?;
            // SAFETY: opening a path we just made; O_NOFOLLOW refuses a symlink swapped in for it.
            let fd = unsafe {
                libc::open(
                    c.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            };
            check(fd)?;
            // SAFETY: a descriptor open() just returned, owned from here on.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let meta = std::fs::File::from(fd.try_clone()?).metadata()?;
            // SAFETY: geteuid cannot fail.
            let me = unsafe { libc::geteuid() };
            if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o7777 != 0o700 {
                return Err(std::io::Error::other(format!(
                    "{} was replaced while it was being made",
                    path.display()
                )));
            }
            Ok((fd, (meta.dev(), meta.ino())))
        })();
        match opened {
            Ok((fd, id)) => Ok(PrivateDir { path, fd, id }),
            Err(e) => {
                let _ = std::fs::remove_dir(&path);
                Err(e)
            }
        }
    }

    /// Gives the bound socket its mode, inside the private directory (no one else can have put a
    /// symlink there; one found anyway is refused).
    fn chmod_socket(&self, mode: u32) -> std::io::Result<()> {
        // SAFETY: a zeroed stat is a valid out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid directory descriptor, a NUL-terminated name and an out-parameter.
        check(unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                INNER.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(std::io::Error::other("the bound socket was replaced"));
        }
        // SAFETY: as above.
        check(unsafe {
            libc::fchmodat(self.fd.as_raw_fd(), INNER.as_ptr(), mode as libc::mode_t, 0)
        })
    }

    /// Renames the socket from the private directory to `to`.
    fn move_socket_to(&self, to: &Path) -> std::io::Result<()> {
        let to = cstring(to)?;
        // SAFETY: a valid directory descriptor and NUL-terminated names.
        check(unsafe {
            libc::renameat(
                self.fd.as_raw_fd(),
                INNER.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
            )
        })
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        // SAFETY: a valid directory descriptor and a NUL-terminated name; a failure (already moved out)
        // is fine.
        unsafe { libc::unlinkat(self.fd.as_raw_fd(), INNER.as_ptr(), 0) };
        // The directory by name, only if the name is still the directory made (and it is empty).
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.id {
                let _ = std::fs::remove_dir(&self.path);
            }
        }
    }
}

/// Removes a stale socket at `path`; refuses a live one and anything that is not a socket.
fn clear_stale(path: &Path) -> anyhow::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", path.display())),
    };
    if !meta.file_type().is_socket() {
        anyhow::bail!(
            "{} exists and is not a socket: not removing it (choose another path)",
            path.display()
        );
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => anyhow::bail!("{} is in use: another server answers on it", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing a stale socket left by an earlier run");
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove the stale socket {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot check the socket {}", path.display())),
    }
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("/"))
}
