//! The WebSocket handshake (RFC 6455 section 4), checked on a request mjpegd has already read and
//! answered by mjpegd, so that the protocol itself (tungstenite, through tokio-tungstenite) runs over the
//! connection as it is, plain TCP or TLS, after the handler's own checks: a refusal stays a plain HTTP
//! answer. Used by a pushed camera's WebSocket ingest ([`super::handlers::push_ws`]) and by the viewers'
//! `/cams/NAME/ws` ([`super::handlers::ws_view`]).

use super::request::Request;
use super::response::Response;

/// Whether the request asks for a WebSocket (`Upgrade: websocket`).
pub fn wants_upgrade(request: &Request) -> bool {
    has_token(request.header("upgrade"), "websocket")
}

/// Whether a comma-separated header value holds `token` (case-insensitively).
fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// What the 101 answer says: the `Sec-WebSocket-Accept` key, and the subprotocol chosen.
pub struct Upgrade {
    accept: String,
    protocol: Option<String>,
}

impl Upgrade {
    /// The 101 answer.
    pub fn answer(&self) -> String {
        let protocol = self
            .protocol
            .as_ref()
            .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
            .unwrap_or_default();
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nServer: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{protocol}\r\n",
            super::response::SERVER_MJPEGD,
            self.accept
        )
    }
}

/// The first subprotocol the client offers, if it is a plain token of at most 64 characters. The frames
/// are the same whatever it is called, but a client that offers one (the ESP32 library offers `arduino`,
/// a browser whatever the page asks for) may refuse an answer that chooses none.
fn first_protocol(offered: Option<&str>) -> Option<String> {
    let first = offered?.split(',').next()?.trim();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    (!first.is_empty() && first.len() <= 64 && first.bytes().all(token)).then(|| first.to_string())
}

/// Checks an upgrade request (RFC 6455 section 4.2.1) and says how to answer it.
pub fn handshake(request: &Request) -> Result<Upgrade, Response> {
    let bad = |why: &str| Response::text(400, format!("bad WebSocket handshake: {why}\n"));
    if request.method != "GET" || request.version != 1 {
        return Err(bad("it must be an HTTP/1.1 GET"));
    }
    if !has_token(request.header("connection"), "upgrade") {
        return Err(bad("Connection: Upgrade is missing"));
    }
    if request.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(Response::text(426, "WebSocket version 13 only\n")
            .header("Sec-WebSocket-Version", "13"));
    }
    let key = request
        .header("sec-websocket-key")
        .map(str::trim)
        .unwrap_or("");
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD.decode(key);
    if !decoded.is_ok_and(|k| k.len() == 16) {
        return Err(bad("Sec-WebSocket-Key must be 16 bytes in base64"));
    }
    Ok(Upgrade {
        accept: tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()),
        protocol: first_protocol(request.header("sec-websocket-protocol")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn request(head: &str) -> Request {
        let mut buf = BytesMut::from(head);
        crate::http::request::parse(&mut buf, &Default::default())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn the_handshake_is_checked_and_answered_as_rfc_6455_says() {
        // The example of RFC 6455 section 1.3.
        let good = "GET /cams/door/push HTTP/1.1\r\nHost: s\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let r = request(good);
        assert!(wants_upgrade(&r));
        let upgrade = handshake(&r).ok().unwrap();
        assert_eq!(upgrade.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(upgrade.protocol, None);
        let offered = good.replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Protocol: arduino, chat\r\n\r\n",
        );
        assert_eq!(
            handshake(&request(&offered))
                .ok()
                .unwrap()
                .protocol
                .as_deref(),
            Some("arduino")
        );
        assert_eq!(first_protocol(Some("a b")), None);
        assert_eq!(first_protocol(Some(&"x".repeat(65))), None);
        let status = |head: String| handshake(&request(&head)).err().unwrap().status;
        assert_eq!(status(good.replace("Version: 13", "Version: 8")), 426);
        assert_eq!(
            status(good.replace("keep-alive, Upgrade", "keep-alive")),
            400
        );
        assert_eq!(
            status(good.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=")),
            400
        );
        assert_eq!(status(good.replace("GET", "POST")), 400);
        assert_eq!(status(good.replace("HTTP/1.1", "HTTP/1.0")), 400);
        assert!(!wants_upgrade(&request(
            "POST /cams/door/push HTTP/1.1\r\nHost: s\r\n\r\n"
        )));
        assert!(upgrade_answer_has(
            &r,
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        ));
        assert!(upgrade_answer_has(
            &request(&offered),
            "Sec-WebSocket-Protocol: arduino\r\n"
        ));
    }

    fn upgrade_answer_has(r: &Request, line: &str) -> bool {
        let answer = handshake(r).ok().unwrap().answer();
        answer.starts_with("HTTP/1.1 101 ") && answer.contains(line) && answer.ends_with("\r\n\r\n")
    }
}
