//! mjpegd: one source, many MJPEG clients, each with its own delivery policy.
//!
//! Data flows one way: a [`source`] yields JPEGs; its supervisor publishes them into a [`hub`] (the shared
//! face of [`mjpegd_core::Hub`], where the delivery policies live); each client's [`http::stream`] writer
//! awaits its next frame from the hub and writes it to its socket. The [`server`] accepts connections and
//! the [`cli`] wires it all from flags. The binary is a thin wrapper over [`cli`].

pub mod bench;
pub mod camera;
pub mod cli;
pub mod config;
pub mod control;
pub mod events;
pub mod http;
pub mod hub;
pub mod logging;
pub mod manual;
pub mod net;
pub mod record;
pub mod reload;
pub mod render;
pub mod replays;
pub mod security;
pub mod server;
pub mod service;
pub mod source;
pub mod still;
pub mod timelapse;
pub mod variant;
