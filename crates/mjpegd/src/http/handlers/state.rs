//! `/state` and `/cams/NAME/state`: the status document (µStreamer's shape, with mjpegd's additions), a
//! bounded page of clients (`?clients_offset=`, `?clients_limit=`), built off the runtime and shared by
//! the pollers of a crowded camera ([`crate::http::state`]).

use super::Ctx;
use crate::camera::Camera;
use crate::http::response::Response;
use crate::http::state::{state_body, Page};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The document of `camera`, or of every camera.
pub async fn get(ctx: &Ctx<'_>, camera: Option<Arc<Camera>>) -> Response {
    let request = ctx.request;
    match Page::from_query(
        request.param("clients_offset"),
        request.param("clients_limit"),
    ) {
        Ok(page) => {
            let shared = state_body(ctx.app, camera, ctx.verdict.sees_clients(), page).await;
            Response::json(Bytes::from_owner(Shared(shared)))
        }
        Err(why) => {
            ctx.app
                .counters
                .bad_requests
                .fetch_add(1, Ordering::Relaxed);
            Response::text(400, format!("{why}\n"))
        }
    }
}

/// A document shared between pollers, served without a copy.
struct Shared(Arc<String>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}
