//! A unix socket listener for a reverse proxy on the same host (`--listen unix:/PATH?mode=0660`).
//!
//! The socket file is made safely:
//! - a file already at the path is removed only when it is a socket no one answers on (left by a
//!   server that died); a socket someone still serves is "in use", and anything that is not a socket
//!   (a config file given by mistake) is never touched;
//! - the socket is bound under a temporary name beside the path, given its mode, then renamed over the
//!   path in one step: it never exists at the path with the umask's permissions, and a proxy never finds
//!   the path missing while a stale socket is replaced;
//! - at shutdown the file is removed, if it is still the one this server made.

use anyhow::Context;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
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

/// Binds a listening unix stream socket at `path` with permission bits `mode`.
pub fn bind(path: &Path, mode: u32) -> anyhow::Result<(tokio::net::UnixListener, SocketFile)> {
    clear_stale(path)?;
    let tmp = temporary_name(path);
    let _ = std::fs::remove_file(&tmp); // left by a crash between bind and rename of this very pid
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    socket
        .bind(&socket2::SockAddr::unix(&tmp)?)
        .with_context(|| format!("cannot create a socket in {}", parent(path).display()))?;
    let placed = (|| {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        socket.listen(super::listen::BACKLOG)?;
        std::fs::rename(&tmp, path)?;
        std::fs::symlink_metadata(path)
    })();
    let meta = match placed {
        Ok(meta) => meta,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e)
                .with_context(|| format!("cannot place the socket at {}", path.display()));
        }
    };
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

fn temporary_name(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    parent(path).join(format!(
        ".{}.{}.tmp",
        name.unwrap_or_default(),
        std::process::id()
    ))
}
