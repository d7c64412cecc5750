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
    /// `http://[user:pass@]host[:port]/path`.
    pub url: String,
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
    target: Target,
    running: Option<Running>,
}

#[derive(Clone, Debug)]
struct Target {
    host: String,
    port: u16,
    path_and_query: String,
    authorization: Option<String>,
}

struct Running {
    body: Incoming,
    parser: MultipartParser,
    _conn: tokio::task::JoinHandle<()>,
}

/// Splits an `http://` URL into what a request needs; credentials in the URL become Basic auth.
fn parse_url(url: &str, credentials: &Option<(String, String)>) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// upstreams are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => match p.parse::<u16>() {
            Ok(p) => (h, p),
            Err(_) => return Err(format!("{url}: bad port {p:?}")),
        },
        _ => (hostport, 80),
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let creds = credentials.clone().or_else(|| {
        userinfo.map(|u| match u.split_once(':') {
            Some((user, pass)) => (decode(user), decode(pass)),
            None => (decode(u), String::new()),
        })
    });
    let authorization = creds.map(|(user, pass)| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    });
    Ok(Target {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        path_and_query: path.to_string(),
        authorization,
    })
}

impl Relay {
    /// Checks the URL now, so that a typo fails at start rather than in the retry loop.
    pub fn new(options: RelayOptions) -> Result<Relay, String> {
        let target = parse_url(&options.url, &options.credentials)?;
        Ok(Relay {
            options,
            target,
            running: None,
        })
    }

    /// The URL without credentials, for logs and `/state`.
    fn public_url(&self) -> String {
        let t = &self.target;
        format!("http://{}:{}{}", t.host, t.port, t.path_and_query)
    }
}

impl Source for Relay {
    fn describe(&self) -> String {
        format!("relay of {}", self.public_url())
    }

    async fn open(&mut self) -> Result<SourceInfo, SourceError> {
        self.close();
        let t = self.target.clone();
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
        let host = if t.port == 80 {
            t.host.clone()
        } else {
            format!("{}:{}", t.host, t.port)
        };
        let mut request = hyper::Request::get(t.path_and_query.as_str())
            .header("Host", host)
            .header("User-Agent", concat!("mjpegd/", env!("CARGO_PKG_VERSION")))
            .header("Accept", "multipart/x-mixed-replace, */*");
        if let Some(auth) = &t.authorization {
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

    #[test]
    fn urls_and_credentials() {
        let t = parse_url("http://admin:s%40cret@cam.local:8081/mjpeg/1?x=1", &None).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path_and_query.as_str()),
            ("cam.local", 8081, "/mjpeg/1?x=1")
        );
        assert_eq!(t.authorization.as_deref(), Some("Basic YWRtaW46c0BjcmV0"));
        let t = parse_url("http://10.0.0.5", &Some(("u".into(), "p".into()))).unwrap();
        assert_eq!((t.port, t.path_and_query.as_str()), (80, "/"));
        assert_eq!(t.authorization.as_deref(), Some("Basic dTpw"));
        let t = parse_url("http://[::1]:9000/stream", &None).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert!(parse_url("https://x/", &None).is_err());
        assert!(parse_url("http://x:notaport/", &None).is_err());
    }
}
