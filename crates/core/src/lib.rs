//! The sans-IO heart of mjpegd.
//!
//! Nothing in this crate touches a socket, a device, a clock or an async runtime: time and bytes are passed in,
//! decisions come out. That keeps the frame hub, the delivery policies and the stream parsers unit-testable
//! without I/O and portable to small targets.

pub mod parse;
