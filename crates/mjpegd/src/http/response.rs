//! Writing the small, complete responses: errors, snapshots, status JSON, the page.

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Headers that forbid any cache from keeping a response (the same set µStreamer sends).
pub const NO_CACHE: &str = "Cache-Control: no-store, no-cache, must-revalidate, proxy-revalidate, pre-check=0, post-check=0, max-age=0\r\nPragma: no-cache\r\nExpires: Mon, 3 Jan 2000 12:34:56 GMT\r\n";

/// The `Server` header of mjpegd's own URLs.
pub const SERVER_MJPEGD: &str = concat!("mjpegd/", env!("CARGO_PKG_VERSION"));
/// The `Server` header of mjpg-streamer's URLs (`/?action=...`, `/input.json`, crowsnest's `/webcamN/?action=`):
/// clients such as Octolapse check that it begins with `MJPG-Streamer` before they send control commands.
pub const SERVER_MJPG_STREAMER: &str =
    concat!("MJPG-Streamer/0.2 (mjpegd ", env!("CARGO_PKG_VERSION"), ")");

/// A complete response: status, extra header lines (each ending in CRLF), body. It owns its body (a
/// frame's JPEG is shared, not copied), so a handler builds it and the connection writes it.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: String,
    pub body: Bytes,
    /// Close the connection after this response.
    pub close: bool,
    /// The `Server` header ([`SERVER_MJPEGD`] unless the URL is another server's dialect).
    pub server: &'static str,
}

impl Response {
    /// A plain-text response (errors, one-line reasons).
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: String::new(),
            body: Bytes::from(body.into()),
            close: status >= 400,
            server: SERVER_MJPEGD,
        }
    }

    /// A JSON document that must not be cached.
    pub fn json(body: impl Into<Bytes>) -> Response {
        Response {
            status: 200,
            content_type: "application/json",
            headers: NO_CACHE.to_string(),
            body: body.into(),
            close: false,
            server: SERVER_MJPEGD,
        }
    }

    /// A JSON value with its status (an error closes the connection).
    pub fn json_value(status: u16, value: &serde_json::Value) -> Response {
        Response {
            status,
            close: status >= 400,
            ..Response::json(value.to_string())
        }
    }

    /// An HTML page that must not be cached.
    pub fn html(body: impl Into<Bytes>) -> Response {
        Response {
            content_type: "text/html; charset=utf-8",
            ..Response::json(body)
        }
    }

    /// Keeps the connection open after this (error) response: a miss such as a browser's
    /// `/favicon.ico` does not cost the connection.
    pub fn keep(self) -> Response {
        Response {
            close: false,
            ..self
        }
    }

    /// Answers with `server` as the `Server` header.
    pub fn server(self, server: &'static str) -> Response {
        Response { server, ..self }
    }

    /// Adds a header line.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push_str(name);
        self.headers.push_str(": ");
        self.headers.push_str(value);
        self.headers.push_str("\r\n");
        self
    }

    /// Sets what the Connection header says for a request that asked for `keep_alive`: `close` (and the
    /// connection closes after the response) unless it is kept alive; an HTTP/1.0 client, which closes by
    /// default, is told `keep-alive` when it is kept. A response that closes anyway stays closing.
    pub fn persist(mut self, keep_alive: bool, http10: bool) -> Self {
        self.close |= !keep_alive;
        if !self.close && http10 {
            self = self.header("Connection", "keep-alive");
        }
        self
    }

    /// Writes the response; with `head_only` (a HEAD request) the body is left out but its length is
    /// announced.
    pub async fn write<W: AsyncWrite + Unpin>(
        &self,
        w: &mut W,
        head_only: bool,
        extra: &str,
    ) -> std::io::Result<()> {
        let head =
            format!(
            "HTTP/1.1 {} {}\r\nServer: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}{}{}\r\n",
            self.status,
            reason(self.status),
            self.server,
            self.content_type,
            self.body.len(),
            if self.close { "Connection: close\r\n" } else { "" },
            self.headers,
            extra,
        );
        if head_only || self.body.is_empty() {
            w.write_all(head.as_bytes()).await?;
        } else {
            let mut buf = bytes::Buf::chain(head.as_bytes(), &self.body[..]);
            w.write_all_buf(&mut buf).await?;
        }
        w.flush().await
    }
}

/// The reason phrase of a status code mjpegd sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        201 => "Created",
        206 => "Partial Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn head_of(r: Response) -> String {
        let mut out = Vec::new();
        r.write(&mut out, true, "").await.unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn the_connection_header_says_what_happens_to_the_connection() {
        let ok = || Response::text(200, "x");
        let h = head_of(ok().persist(true, true)).await;
        assert!(
            h.contains("Connection: keep-alive\r\n") && !h.contains("close"),
            "{h}"
        );
        let h = head_of(ok().persist(true, false)).await;
        assert!(!h.contains("Connection:"), "{h}");
        for http10 in [true, false] {
            let h = head_of(ok().persist(false, http10)).await;
            assert!(
                h.contains("Connection: close\r\n") && !h.contains("keep-alive"),
                "{h}"
            );
            let h = head_of(Response::text(400, "x").persist(true, http10)).await;
            assert!(
                h.contains("Connection: close\r\n") && !h.contains("keep-alive"),
                "{h}"
            );
        }
    }
}
