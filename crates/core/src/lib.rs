//! The sans-IO heart of mjpegd.
//!
//! Data flows one way: a source's JPEGs enter a [`hub::Hub`], which numbers them and hands each client the
//! next frame its [`delivery::Policy`] allows; the server writes it out. Nothing in this crate touches a
//! socket, a device, a clock or an async runtime: bytes and times are passed in, decisions come out. That
//! keeps the hub, the delivery policies, the stream [`parse`]rs, the recording format ([`mkv`], read back by [`mkv_read`]), the pre-roll ([`preroll`]), the arithmetic of size variants ([`variant`]), who gets the next transcode slot
//! ([`transcode_queue`]) and a pusher's frame-rate cap ([`rate_cap`]) unit-testable without I/O and portable to small targets.
//!
//! [`digest`] is HTTP Digest authentication (RFC 7616) as a relay answers a camera: challenges in, header
//! values out, the random client nonce brought by the caller.

pub mod delivery;
pub mod digest;
pub mod frame;
pub mod hub;
pub mod mkv;
pub mod mkv_read;
pub mod parse;
pub mod preroll;
pub mod rate_cap;
pub mod replay;
pub mod transcode_queue;
pub mod variant;

pub use delivery::{ClientId, EvictCause, Policy};
pub use frame::Frame;
pub use hub::{Hub, HubConfig, Next};
