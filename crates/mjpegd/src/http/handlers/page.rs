//! The pages: a camera's (its stream, state and recordings), and at `/` with several cameras the wall of all of
//! them, fed by snapshot long polls.

use super::Ctx;
use crate::camera::Camera;
use crate::http::response::Response;
use crate::source::esp32::VARS;

/// One camera's page: its stream and state.
const INDEX_HTML: &str = include_str!("../index.html");
/// Every camera at once, fed by snapshot long polls (the file says why).
const WALL_HTML: &str = include_str!("../wall.html");
/// Camera management for admins, in both pages where they say `{{ADMIN}}` (shows nothing to viewers).
const ADMIN_HTML: &str = include_str!("../admin.html");
/// A camera's recordings: timeline, replay player, downloads, in its page where it says `{{RECORDINGS}}`.
const RECORDINGS_HTML: &str = include_str!("../recordings.html");
/// A camera's picture settings for admins, in its page where it says `{{PANEL}}` (nothing for viewers).
const PANEL_HTML: &str = include_str!("../panel.html");

/// `camera`'s page, or (None: `/`) the first camera's page, or the wall when there are several.
pub fn get(ctx: &Ctx<'_>, camera: Option<&Camera>) -> Response {
    let page = match camera {
        Some(c) => INDEX_HTML.replace("{{BASE}}", &format!("/cams/{}/", c.name())),
        None if ctx.cameras.len() > 1 => WALL_HTML.to_string(),
        None => INDEX_HTML.replace("{{BASE}}", "/"),
    };
    Response::html(
        page.replace("{{ADMIN}}", ADMIN_HTML)
            .replace("{{PANEL}}", &panel())
            .replace("{{RECORDINGS}}", RECORDINGS_HTML),
    )
}

/// The panel, with the ESP32 firmware's vars and ranges as the server checks them.
fn panel() -> String {
    let vars: Vec<serde_json::Value> = VARS
        .iter()
        .map(|(name, min, max)| serde_json::json!([name, min, max]))
        .collect();
    PANEL_HTML.replace(
        "{{ESP32_VARS}}",
        &serde_json::Value::Array(vars).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_panel_carries_the_firmwares_vars_and_no_placeholder() {
        let p = panel();
        assert!(!p.contains("{{"), "every placeholder filled");
        assert!(p.contains(r#"["framesize",0,24]"#) && p.contains(r#"["led_intensity",0,255]"#));
    }
}
