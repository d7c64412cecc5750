//! The pages: a camera's (its stream and state), and at `/` with several cameras the wall of all of
//! them, fed by snapshot long polls.

use super::Ctx;
use crate::camera::Camera;
use crate::http::response::Response;

/// One camera's page: its stream and state.
const INDEX_HTML: &str = include_str!("../index.html");
/// Every camera at once, fed by snapshot long polls (the file says why).
const WALL_HTML: &str = include_str!("../wall.html");
/// Camera management for admins, in both pages where they say `{{ADMIN}}` (shows nothing to viewers).
const ADMIN_HTML: &str = include_str!("../admin.html");

/// `camera`'s page, or (None: `/`) the first camera's page, or the wall when there are several.
pub fn get(ctx: &Ctx<'_>, camera: Option<&Camera>) -> Response {
    let page = match camera {
        Some(c) => INDEX_HTML.replace("{{BASE}}", &format!("/cams/{}/", c.name())),
        None if ctx.cameras.len() > 1 => WALL_HTML.to_string(),
        None => INDEX_HTML.replace("{{BASE}}", "/"),
    };
    Response::html(page.replace("{{ADMIN}}", ADMIN_HTML))
}
