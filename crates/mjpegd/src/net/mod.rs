//! Connection plumbing below HTTP: binding the listener and the file-descriptor limit ([`listen`]), the
//! [`Transport`] trait over plain TCP and TLS ([`transport`]), and HTTPS with certificate reload ([`tls`]).

pub mod listen;
pub mod tls;
pub mod transport;

pub use listen::{listen, raise_fd_limit};
pub use transport::Transport;
