//! Who may push to a camera: the key a pusher presents, checked against the camera's.
//!
//! Every way of pushing (multipart and per-frame POSTs in [`super::push`], a WebSocket in
//! [`super::push_ws`]) admits its pusher here and asks here again, frame by frame, whether the camera
//! still takes that pusher's frames, so the rule lives in one place.

use crate::camera::Camera;
use crate::http::request::Request;
use crate::source::spec::SourceSpec;

/// The key the request presents, if any: `?key=` or `Authorization: Bearer KEY`.
pub(super) fn presented_key(request: &Request) -> Option<&str> {
    request.param("key").or_else(|| {
        request
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer ").or(a.strip_prefix("bearer ")))
            .map(str::trim)
    })
}

/// Whether `camera` still takes frames from a pusher that presented `key` (a reload may have made it
/// another kind of source, or changed its key).
pub(super) fn still_pushed(camera: &Camera, key: Option<&str>) -> bool {
    match camera.settings().source {
        SourceSpec::Push(Some(k)) => key.is_none_or(|given| k.matches(given)),
        _ => false,
    }
}
