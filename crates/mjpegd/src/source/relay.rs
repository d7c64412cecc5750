//! Relaying an upstream MJPEG server: an ESP32-CAM, mjpg-streamer, µStreamer, go2rtc, an IP camera, or
//! another mjpegd.
//!
//! One upstream connection feeds every client of this server (the supervisor opens it once, and with
//! `--capture on-demand` only while someone watches). HTTP/1.0 and 1.1, chunked or close-delimited bodies
//! are hyper's job; cutting the body into frames is [`MultipartParser`]'s, which tolerates the quirks real
//! cameras have (boundaries quoted or not, with or without a leading `--`, a declared boundary that the body
//! does not use, parts without Content-Length) and bounds memory whatever the upstream sends. Anything it
//! cannot make sense of drops the connection; the supervisor reconnects with back-off and shows "no signal"
//! meanwhile.

use super::url::RelayUrl;
use super::{Captured, Source, SourceError, SourceInfo};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mjpegd_core::parse::multipart::{boundary_from_content_type, MultipartParser};
use std::time::{Duration, SystemTime};
use tokio::net::TcpStream;

/// Largest part accepted from an upstream.
pub const MAX_PART: usize = 16 << 20;

/// Where and how to reach the upstream.
#[derive(Clone, Debug)]
pub struct RelayOptions {
    /// The upstream, parsed (and checked) with the configuration.
    pub url: RelayUrl,
    /// Credentials for Basic auth (overrides any in the URL).
    pub credentials: Option<(String, String)>,
    pub connect_timeout: Duration,
    /// Longest silence from the upstream before the connection is dropped and retried.
    pub read_timeout: Duration,
    /// Shown in `/state` as the wanted rate.
    pub fps: f64,
}

/// A relay source.
pub struct Relay {
    options: RelayOptions,
    /// The `Authorization` header, from the credentials (given, or in the URL).
    authorization: Option<String>,
    running: Option<Running>,
}

struct Running {
    body: Incoming,
    parser: MultipartParser,
    _conn: tokio::task::JoinHandle<()>,
}

/// Basic auth for `user:password`.
fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

impl Relay {
    /// A relay of an upstream whose URL was checked when the configuration was parsed: nothing here can
    /// fail.
    pub fn new(options: RelayOptions) -> Relay {
        let authorization = options
            .credentials
            .as_ref()
            .or(options.url.credentials.as_ref())
            .map(|(user, pass)| basic(user, pass));
        Relay {
            options,
            authorization,
            running: None,
        }
    }

    /// The URL without credentials, for logs and `/state`.
    fn public_url(&self) -> String {
        self.options.url.to_string()
    }
}

impl Source for Relay {
    fn describe(&self) -> String {
        format!("relay of {}", self.public_url())
    }

    async fn open(&mut self) -> Result<SourceInfo, SourceError> {
        self.close();
        let t = self.options.url.clone();
        let url = self.public_url();
        let stream = tokio::time::timeout(
            self.options.connect_timeout,
            TcpStream::connect((t.host.as_str(), t.port)),
        )
        .await
        .map_err(|_| SourceError::unavailable(format!("{url}: connect timed out")))?
        .map_err(|e| SourceError::unavailable(format!("{url}: cannot connect: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(64 * 1024)
            .handshake::<_, http_body_util::Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| SourceError::unavailable(format!("{url}: {e}")))?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let host = t.host_header();
        let mut request = hyper::Request::get(t.path_and_query.as_str())
            .header("Host", host)
            .header("User-Agent", concat!("mjpegd/", env!("CARGO_PKG_VERSION")))
            .header("Accept", "multipart/x-mixed-replace, */*");
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        let request = request
            .body(http_body_util::Empty::new())
            .map_err(|e| SourceError::unavailable(format!("{url}: {e}")))?;
        let response =
            tokio::time::timeout(self.options.read_timeout, sender.send_request(request))
                .await
                .map_err(|_| {
                    SourceError::unavailable(format!(
                        "{url}: no response within {:?}",
                        self.options.read_timeout
                    ))
                })?
                .map_err(|e| SourceError::unavailable(format!("{url}: {e}")))?;
        if !response.status().is_success() {
            return Err(SourceError::unavailable(format!(
                "{url}: upstream answered {}",
                response.status()
            )));
        }
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let boundary = boundary_from_content_type(&content_type);
        if boundary.is_none() && !content_type.to_ascii_lowercase().starts_with("multipart/") {
            tracing::warn!(%url, %content_type, "upstream does not say it is multipart; looking for parts anyway");
        }
        self.running = Some(Running {
            body: response.into_body(),
            parser: MultipartParser::new(boundary.as_deref(), MAX_PART),
            _conn: conn,
        });
        Ok(SourceInfo {
            width: 0,
            height: 0,
            fps: self.options.fps,
            encoder: crate::hub::Encoder::None,
        })
    }

    async fn next_frame(&mut self) -> Result<Captured, SourceError> {
        let read_timeout = self.options.read_timeout;
        let running = self
            .running
            .as_mut()
            .ok_or_else(|| SourceError::broken("not open"))?;
        loop {
            match running.parser.next_part() {
                Some(Ok(part)) => {
                    return Ok(Captured {
                        jpeg: part.body,
                        at: SystemTime::now(),
                    })
                }
                Some(Err(e)) => {
                    return Err(SourceError::broken(format!(
                        "upstream stream is broken: {e}"
                    )))
                }
                None => {}
            }
            let frame = tokio::time::timeout(read_timeout, running.body.frame())
                .await
                .map_err(|_| {
                    SourceError::timeout(format!("upstream silent for {read_timeout:?}"))
                })?;
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        running.parser.push(&data);
                    }
                }
                Some(Err(e)) => {
                    return Err(SourceError::lost(format!(
                        "upstream connection failed: {e}"
                    )))
                }
                None => return Err(SourceError::lost("upstream closed the stream")),
            }
        }
    }

    fn close(&mut self) {
        if let Some(r) = self.running.take() {
            r._conn.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(url: &str, credentials: Option<(&str, &str)>) -> Relay {
        Relay::new(RelayOptions {
            url: RelayUrl::parse(url).unwrap(),
            credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            fps: 30.0,
        })
    }

    #[test]
    fn credentials_become_basic_auth_and_are_not_described() {
        let r = relay("http://admin:s%40cret@cam.local:8081/mjpeg/1?x=1", None);
        assert_eq!(r.authorization.as_deref(), Some("Basic YWRtaW46c0BjcmV0"));
        assert_eq!(r.describe(), "relay of http://cam.local:8081/mjpeg/1?x=1");
        // --source-auth wins over the URL's.
        let r = relay("http://x:y@10.0.0.5", Some(("u", "p")));
        assert_eq!(r.authorization.as_deref(), Some("Basic dTpw"));
        assert!(relay("http://10.0.0.5/", None).authorization.is_none());
    }
}
