//! Parsers for the byte streams mjpegd reads: raw concatenated JPEGs ([`jpeg`]) and
//! multipart/x-mixed-replace bodies ([`multipart`]).
//!
//! Both are push-based and sans-IO: feed them bytes as they arrive, in chunks of any size, and take out
//! whole frames. Both bound their memory whatever the input, and neither panics on any input: they are run
//! on bytes from the network and from child processes.

pub mod huffman;
pub mod jpeg;
pub mod multipart;
pub mod thumbnail;
