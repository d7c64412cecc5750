//! `/recordings` and `/cams/NAME/recordings`: the segments on disk, listed off the runtime
//! ([`crate::http::recordings`]).

use super::Ctx;
use crate::camera::Camera;
use crate::http::response::Response;
use std::sync::Arc;

/// The segments of `camera`, or of every recording camera.
pub async fn list(ctx: &Ctx<'_>, camera: Option<Arc<Camera>>) -> Response {
    let which: Vec<_> = match camera {
        Some(c) => vec![c],
        None => ctx.cameras.to_vec(),
    };
    // Listing folders is file work: off the runtime.
    let body =
        tokio::task::spawn_blocking(move || crate::http::recordings::list(&which).to_string())
            .await
            .unwrap_or_default();
    Response::json(body)
}
