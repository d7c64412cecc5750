//! `/metrics`: the Prometheus (or OpenMetrics, by `Accept`) exposition ([`crate::http::metrics`]).

use super::Ctx;
use crate::http::response::Response;

pub fn get(ctx: &Ctx<'_>) -> Response {
    let (content_type, body) = crate::http::metrics::render(ctx.app, ctx.request.header("accept"));
    Response {
        content_type,
        ..Response::json(body)
    }
}
