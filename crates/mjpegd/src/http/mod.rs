//! The HTTP surface: mjpegd's own small HTTP/1.1 server.
//!
//! Why not hyper: an MJPEG stream to an HTTP/1.1 client must be close-delimited, not chunked (VLC and
//! several embedded players reject chunked MJPEG), and hyper always chunks a body of unknown length on
//! HTTP/1.1. The stream path is also the hot path: each part should leave as one sendfile from the frame's
//! shared memfd (or, over TLS, one vectored write of three shared buffers), with no per-client copy,
//! allocation or task beyond the connection's own. What mjpegd serves is small, so owning it costs
//! little. Request to response, in order: [`connection`] runs the loop of one connection; [`request`]
//! reads a head with httparse within size and time limits, and [`body`] a request body within its bound;
//! [`auth`] says who is asking and [`access`] whether they may write; [`route`] names the camera and
//! resource; [`handlers`] holds one handler per route (those that answer, and those that take the
//! connection over); [`response`] writes small complete responses, [`stream`] writes MJPEG, [`websocket`] checks and answers
//! a WebSocket handshake, and [`metrics`] the Prometheus exposition.

pub mod access;
pub mod app;
pub mod auth;
pub mod body;
pub mod connection;
pub mod handlers;
pub mod limits;
pub mod metrics;
pub mod query;
pub mod recordings;
pub mod request;
pub mod response;
pub mod route;
pub mod state;
pub mod state_cache;
pub mod stream;
pub mod websocket;
