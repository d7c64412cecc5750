//! The cameras API: cameras listed, created, changed and removed over HTTP, keyed exactly like the
//! config file's `[cameras.NAME]` tables.
//!
//! | request | does |
//! |---|---|
//! | `GET /api/cameras` | every camera: its keys as the file gives them, its state, its URLs; and whether the asker may write (`can_write`) |
//! | `GET /api/cameras/NAME` | one camera |
//! | `PUT /api/cameras/NAME` | creates the camera, or makes it have exactly the keys given (201 / 200) |
//! | `PATCH /api/cameras/NAME` | changes only the keys given; `null` removes a key |
//! | `DELETE /api/cameras/NAME` | removes the camera; its clients' streams end |
//!
//! Reads are a viewer's; writes are an admin's, not made cross-site, with a JSON body of at most
//! [`MAX_BODY`] ([`super::access`]). A write is checked, saved and applied by the control plane
//! ([`crate::control`]); a bad value is a 400 naming the key. Answers are JSON.

use super::Ctx;
use crate::control::{Change, WriteError};
use crate::http::access;
use crate::http::app::App;
use crate::http::body::Body;
use crate::http::response::Response;
use crate::http::state::camera_summary;
use serde_json::{json, Value as Json};
use tokio::io::{AsyncRead, AsyncWrite};

/// Largest request body of an API write.
pub const MAX_BODY: usize = 64 * 1024;

/// Which API resource a path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `/api/cameras`
    Cameras,
    /// `/api/cameras/NAME`
    Camera(String),
}

/// Routes a path under `/api/`; None if it names nothing.
pub fn target(path: &str) -> Option<Target> {
    let rest = path.strip_prefix("/api/cameras")?;
    match rest {
        "" | "/" => Some(Target::Cameras),
        name => {
            let name = name.strip_prefix('/')?.trim_end_matches('/');
            (!name.is_empty() && !name.contains('/')).then(|| Target::Camera(name.to_string()))
        }
    }
}

/// Answers an API request; a write's body is read from `body`.
pub async fn answer<R: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx<'_>,
    target: Target,
    body: &mut Body<'_, R>,
) -> Response {
    let app = ctx.app;
    let method = ctx.request.method.as_str();
    match (method, target) {
        ("GET" | "HEAD", Target::Cameras) => {
            let cameras = app.cameras();
            let mut list = Vec::with_capacity(cameras.len());
            for (index, camera) in cameras.iter().enumerate() {
                list.push(described(ctx, index, camera.name()).await);
            }
            // What the asker may do, so a page shows admins their controls and viewers none.
            let can_write = access::may_write(ctx.verdict, &ctx.client).is_ok();
            Response::json_value(
                200,
                &json!({ "cameras": list, "saved_to": saved_to(ctx), "can_write": can_write }),
            )
        }
        ("GET" | "HEAD", Target::Camera(name)) => match index_of(app, &name) {
            Some(index) => Response::json_value(200, &described(ctx, index, &name).await),
            None => not_found(&name),
        },
        ("PUT" | "PATCH" | "DELETE", Target::Camera(name)) => write(ctx, method, name, body).await,
        (_, Target::Cameras) => not_allowed("GET, HEAD"),
        (_, Target::Camera(_)) => not_allowed("GET, HEAD, PUT, PATCH, DELETE"),
    }
}

async fn write<R: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx<'_>,
    method: &str,
    name: String,
    body: &mut Body<'_, R>,
) -> Response {
    let app = ctx.app;
    let with_body = method != "DELETE";
    // Who and from where first: a refused write is answered before its body is read.
    if let Err(refusal) = access::check_write(ctx.verdict, &ctx.client, ctx.request, with_body) {
        let response = error(refusal.status, refusal.reason.trim_end().to_string());
        return if refusal.status == 401 {
            response.header("WWW-Authenticate", crate::http::auth::CHALLENGE)
        } else {
            response
        };
    }
    let control = ctx.control;
    let change = if with_body {
        let keys = match super::json_object(
            ctx,
            body,
            MAX_BODY,
            "a JSON object keyed like a [cameras.NAME] table, e.g. {\"source\": \"pattern\", \"fps\": 15}",
        )
        .await
        {
            Ok(keys) => keys,
            Err(response) => return response,
        };
        if method == "PUT" {
            Change::Put(name.clone(), keys)
        } else {
            Change::Patch(name.clone(), keys)
        }
    } else {
        Change::Delete(name.clone())
    };
    let deleting = matches!(change, Change::Delete(_));
    match control.write(app, change).await {
        Ok(written) => {
            let mut answer = json!({
                "saved": written.saved,
                "applied": {
                    "added": written.status.added,
                    "restarted": written.status.restarted,
                    "removed": written.status.removed,
                },
            });
            if !written.saved {
                answer["note"] =
                    json!("mjpegd runs without --config: this change lasts until it restarts");
            }
            if deleting {
                answer["removed"] = json!(name);
                return Response::json_value(200, &answer);
            }
            let created = written.status.added.contains(&name);
            if let Some(index) = index_of(app, &name) {
                answer["camera"] = described(ctx, index, &name).await;
            }
            Response::json_value(if created { 201 } else { 200 }, &answer)
        }
        Err(e) => {
            let (status, message) = e.status();
            let mut body = json!({ "error": message });
            if let WriteError::Invalid { key: Some(key), .. } = &e {
                body["key"] = json!(key);
            }
            Response::json_value(status, &body)
        }
    }
}

/// A camera as the API shows it: its keys in the configuration, its state and URLs.
async fn described(ctx: &Ctx<'_>, index: usize, name: &str) -> Json {
    let cameras = ctx.app.cameras();
    let mut doc = match cameras.get(index) {
        Some(camera) => camera_summary(index, camera),
        None => json!({ "name": name }),
    };
    let settings = ctx.control.camera_keys(name).await.unwrap_or_default();
    doc["settings"] = Json::Object(settings);
    doc
}

fn index_of(app: &App, name: &str) -> Option<usize> {
    app.cameras().iter().position(|c| c.name() == name)
}

/// Where writes are saved (null: in memory only).
fn saved_to(ctx: &Ctx<'_>) -> Json {
    ctx.control
        .path()
        .map_or(Json::Null, |p| json!(p.display().to_string()))
}

fn error(status: u16, message: String) -> Response {
    super::json_error(status, message)
}

fn not_found(name: &str) -> Response {
    error(
        404,
        format!("no camera {name:?}; GET /api/cameras lists them"),
    )
    .keep()
}

fn not_allowed(allow: &str) -> Response {
    error(405, format!("method not allowed here: {allow}")).header("Allow", allow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(target("/api/cameras"), Some(Target::Cameras));
        assert_eq!(target("/api/cameras/"), Some(Target::Cameras));
        assert_eq!(
            target("/api/cameras/front"),
            Some(Target::Camera("front".into()))
        );
        assert_eq!(
            target("/api/cameras/front/"),
            Some(Target::Camera("front".into()))
        );
        assert_eq!(target("/api/cameras/a/b"), None);
        assert_eq!(target("/api/camerasx"), None);
        assert_eq!(target("/api/other"), None);
    }
}
