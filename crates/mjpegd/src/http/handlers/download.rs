//! A recording's download: `/recordings/FILE` takes the connection over and sends the segment (with
//! `Range`), each chunk under the write timeout rather than the whole.

use super::Ctx;
use crate::http::recordings;
use crate::http::response::Response;
use crate::net::Transport;
use tokio::io::AsyncWriteExt;

/// Sends segment `name` (a plain file name, checked by the router) from the folder of the camera it
/// belongs to, then closes the connection.
pub async fn serve<T: Transport>(ctx: &Ctx<'_>, name: &str, mut io: T) {
    let app = ctx.app;
    // Opening is file work: off the runtime. What is served is the descriptor checked there.
    let (which, file_name) = (ctx.cameras.to_vec(), name.to_string());
    let opened = tokio::task::spawn_blocking(move || recordings::open(&which, &file_name))
        .await
        .ok()
        .flatten();
    match opened {
        Some(file) => {
            let range = ctx.request.header("range");
            if let Err(e) = recordings::serve_file(app, &mut io, file, range, ctx.head_only()).await
            {
                tracing::debug!(addr = %ctx.client, error = %e, "recording download ended");
            }
        }
        None => {
            let _ = Response::text(404, "not found: no such recording\n")
                .write(&mut io, ctx.head_only(), &app.cors)
                .await;
        }
    }
    let _ = io.shutdown().await;
}
