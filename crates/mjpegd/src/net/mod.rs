//! Connection plumbing below HTTP: binding the listener and the file-descriptor limit ([`listen`]), the
//! [`Transport`] trait over plain TCP and TLS ([`transport`]), HTTPS with certificate reload ([`tls`]), and frames'
//! parts in kernel-shareable memory for sendfile ([`shared_part`]).

pub mod listen;
pub mod shared_part;
pub mod tls;
pub mod transport;

pub use listen::{listen, raise_fd_limit};
pub use transport::Transport;
