//! Reading one HTTP/1.x request head from a connection, within limits.
//!
//! A request is read as its head: method, target, headers, and how its body is framed ([`Framing`]); the
//! body itself is left on the connection for the handler that wants it ([`super::body`]). Reading the
//! head is bounded in time (a slowloris trickling bytes is cut off) and size (431 past the limit);
//! whatever httparse rejects is a 400. Shapes used for request smuggling (a body on a GET or HEAD,
//! Content-Length together with Transfer-Encoding, repeated or non-numeric Content-Length, a transfer
//! coding other than `chunked`) are refused outright.

use bytes::{Buf, BytesMut};
use percent_encoding::percent_decode_str;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Limits on reading a request head.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Bytes of request line plus headers.
    pub max_head: usize,
    /// Number of header fields.
    pub max_headers: usize,
    /// Time for the whole head to arrive once its first byte has.
    pub head_timeout: Duration,
    /// Time a kept-alive connection may sit idle before its next request.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head: 8 * 1024,
            max_headers: 64,
            head_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// How a request's body is framed, from its headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length: N` (N > 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// The parts of a request mjpegd routes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The percent-decoded path, e.g. `/stream`.
    pub path: String,
    /// Query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Header fields with lowercase names.
    pub headers: Vec<(String, String)>,
    /// How the body that follows the head is framed.
    pub framing: Framing,
}

impl Request {
    /// The first value of a header (name in lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client wants the connection kept open after the response.
    pub fn keep_alive(&self) -> bool {
        let connection = self.header("connection").map(|v| v.to_ascii_lowercase());
        match self.version {
            1 => !connection.is_some_and(|c| c.contains("close")),
            _ => connection.is_some_and(|c| c.contains("keep-alive")),
        }
    }
}

/// Why no request could be read.
#[derive(Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The connection closed (or went idle past the idle timeout) before a request began: close quietly.
    Closed,
    /// The head did not arrive in time: 408, then close.
    Timeout,
    /// The head or its fields exceed the limits: 431, then close.
    TooLarge,
    /// Not HTTP, or a shape mjpegd refuses: 400 with the reason, then close.
    Malformed(&'static str),
}

/// Reads and parses the next request head from `io`. `buf` carries bytes already read (pipelining); the
/// bytes of the parsed head are consumed from it.
pub async fn read_request<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Request, RequestError> {
    // Wait (up to the idle timeout) for the first byte, then give the whole head the head timeout.
    if buf.is_empty() {
        match tokio::time::timeout(limits.idle_timeout, io.read_buf(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Err(RequestError::Closed),
            Ok(Ok(_)) => {}
        }
    }
    let deadline = tokio::time::Instant::now() + limits.head_timeout;
    loop {
        if let Some(request) = parse(buf, limits)? {
            return Ok(request);
        }
        if buf.len() >= limits.max_head {
            return Err(RequestError::TooLarge);
        }
        buf.reserve(1024.min(limits.max_head - buf.len()));
        match tokio::time::timeout_at(deadline, io.read_buf(buf)).await {
            Ok(Ok(0)) => return Err(RequestError::Closed),
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(RequestError::Closed),
            Err(_) => return Err(RequestError::Timeout),
        }
    }
}

/// Parses a complete head at the start of `buf`, consuming it; `None` if more bytes are needed.
pub fn parse(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Request>, RequestError> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooLarge),
        Err(_) => return Err(RequestError::Malformed("malformed request")),
    };
    if len > limits.max_head {
        return Err(RequestError::TooLarge);
    }
    let method = req.method.unwrap_or_default().to_string();
    let target = req.path.unwrap_or_default();
    let version = req.version.unwrap_or(1);
    let mut fields = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| RequestError::Malformed("header value is not UTF-8"))?;
        fields.push((h.name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let request = build(method, target, version, fields)?;
    buf.advance(len);
    Ok(Some(request))
}

fn build(
    method: String,
    target: &str,
    version: u8,
    headers: Vec<(String, String)>,
) -> Result<Request, RequestError> {
    let lengths: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.as_str())
        .collect();
    let codings: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "transfer-encoding")
        .map(|(_, v)| v.as_str())
        .collect();
    if lengths.len() > 1 || codings.len() > 1 || (!codings.is_empty() && !lengths.is_empty()) {
        return Err(RequestError::Malformed(
            "conflicting message length headers",
        ));
    }
    let framing = if let Some(coding) = codings.first() {
        if !coding.eq_ignore_ascii_case("chunked") {
            return Err(RequestError::Malformed(
                "unsupported transfer coding (only chunked)",
            ));
        }
        Framing::Chunked
    } else if let Some(length) = lengths.first() {
        if length.is_empty() || !length.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RequestError::Malformed("Content-Length is not a number"));
        }
        match length.parse::<u64>() {
            Ok(0) => Framing::None,
            Ok(n) => Framing::Length(n),
            Err(_) => return Err(RequestError::Malformed("Content-Length is not a number")),
        }
    } else {
        Framing::None
    };
    if framing != Framing::None && (method == "GET" || method == "HEAD") {
        return Err(RequestError::Malformed("a GET or HEAD request has no body"));
    }
    if version == 1 && !headers.iter().any(|(n, _)| n == "host") {
        return Err(RequestError::Malformed("HTTP/1.1 request without Host"));
    }
    // Origin form only ("/path?query"); absolute form is for proxies, which mjpegd is not.
    if !target.starts_with('/') {
        return Err(RequestError::Malformed(
            "request target must start with '/'",
        ));
    }
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let path = percent_decode_str(raw_path)
        .decode_utf8()
        .map_err(|_| RequestError::Malformed("path is not UTF-8"))?
        .into_owned();
    if path.contains('\0') {
        return Err(RequestError::Malformed("NUL in path"));
    }
    // Dashboards append their own "?nonce=..." to URLs that already have a query
    // (`/?action=stream?nonce_dashboard=123`): a second '?' separates parameters like '&'.
    let raw_query = raw_query.replace('?', "&");
    let query = form_urlencoded::parse(raw_query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .take(64)
        .collect();
    Ok(Request {
        method,
        path,
        query,
        version,
        headers,
        framing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(input: &[u8]) -> Result<Request, RequestError> {
        let mut io = input;
        let mut buf = BytesMut::new();
        read_request(&mut io, &mut buf, &Limits::default()).await
    }

    #[tokio::test]
    async fn parses_path_query_and_headers() {
        let r = read(
            b"GET /st%72eam?delivery=all&fps=5 HTTP/1.1\r\nHost: x\r\nUser-Agent: VLC\r\n\r\n",
        )
        .await
        .unwrap();
        assert_eq!(r.path, "/stream");
        assert_eq!(r.param("delivery"), Some("all"));
        assert_eq!(r.param("fps"), Some("5"));
        assert_eq!(r.header("user-agent"), Some("VLC"));
        assert!(r.keep_alive());
    }

    #[tokio::test]
    async fn refuses_smuggling_shapes_and_garbage() {
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n",
            b"HEAD / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n",
            b"PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET http://evil/ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"GET /a b c HTTP/1.1\r\n\r\n",
        ] {
            assert!(matches!(read(bad).await, Err(RequestError::Malformed(_))), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[tokio::test]
    async fn bodies_of_writes_are_framed() {
        let r = read(b"PUT /api/cameras/a HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(r.framing, Framing::Length(12));
        let r = read(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(r.framing, Framing::Chunked);
        let r = read(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(r.framing, Framing::None);
    }

    #[tokio::test]
    async fn oversized_heads_are_refused() {
        let mut big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 10_000));
        big.extend(b"\r\n\r\n");
        assert_eq!(read(&big).await, Err(RequestError::TooLarge));
    }

    #[tokio::test]
    async fn a_trickled_head_times_out() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let limits = Limits {
            head_timeout: Duration::from_millis(100),
            ..Limits::default()
        };
        use tokio::io::AsyncWriteExt;
        client.write_all(b"GET / HT").await.unwrap();
        let mut buf = BytesMut::new();
        let r = read_request(&mut server, &mut buf, &limits).await;
        assert_eq!(r, Err(RequestError::Timeout));
    }

    #[tokio::test]
    async fn pipelined_requests_are_read_one_by_one() {
        let mut io = &b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.0\r\n\r\n"[..];
        let mut buf = BytesMut::new();
        let limits = Limits::default();
        assert_eq!(
            read_request(&mut io, &mut buf, &limits).await.unwrap().path,
            "/a"
        );
        let b = read_request(&mut io, &mut buf, &limits).await.unwrap();
        assert_eq!(
            (b.path.as_str(), b.version, b.keep_alive()),
            ("/b", 0, false)
        );
    }
}
