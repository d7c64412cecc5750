//! Connection plumbing below HTTP: what a `--listen` says ([`address`]), binding TCP listeners and the
//! file-descriptor limit ([`listen`]), unix sockets ([`unix`]), sockets passed by systemd
//! ([`activation`]), the bound listeners and their connections ([`listener`]), who a client is
//! ([`peer`]), who it is behind a trusted reverse proxy ([`forwarded`], [`proxy_protocol`]), the [`Transport`] trait over TCP, unix sockets and TLS ([`transport`]), and HTTPS with
//! certificate reload ([`tls`]), and frames' parts in kernel-shareable memory for sendfile
//! ([`shared_part`]).

pub mod activation;
pub mod address;
pub mod forwarded;
pub mod listen;
pub mod listener;
pub mod peer;
pub mod proxy_protocol;
pub mod shared_part;
pub mod tls;
pub mod transport;
pub mod unix;

pub use address::ListenSpec;
pub use listen::{listen, raise_fd_limit};
pub use listener::{Conn, Listener};
pub use peer::Peer;
pub use transport::Transport;
