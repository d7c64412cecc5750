//! Relaying an upstream MJPEG server: an ESP32-CAM, mjpg-streamer, µStreamer, go2rtc, an IP camera, or
//! another mjpegd; or polling a camera that only serves still JPEGs.
//!
//! One upstream connection feeds every client of this server (the supervisor opens it once, and with
//! `--capture on-demand` only while someone watches). HTTP/1.0 and 1.1, chunked or close-delimited bodies
//! are hyper's job; cutting the body into frames is [`MultipartParser`]'s, which tolerates the quirks real
//! cameras have (boundaries quoted or not, with or without a leading `--`, a declared boundary that the body
//! does not use, parts without Content-Length) and bounds memory whatever the upstream sends. Anything it
//! cannot make sense of drops the connection; the supervisor reconnects with back-off and shows "no signal"
//! meanwhile. Requests and their authentication (Basic, Digest) are [`UpstreamClient`]'s.
//!
//! A URL that answers `Content-Type: image/jpeg` (an ESP32's `/capture`, a `snapshot.jpg`), or one written
//! `snapshot+http://...` whatever its answers say, is a snapshot camera: it is polled at the camera's
//! `fps` with one request in flight on one keep-alive connection. The next request goes out one frame
//! interval after the previous one went out, or as soon as its answer is in if that took longer: a slower
//! camera sets the rate itself, with no backlog and no burst to catch up. Each answer is one frame,
//! bounded like a part, checked and counted by the supervisor like any other; an error, an answer that
//! does not come within the read timeout, or a status other than 2xx ends the run, and the supervisor
//! retries with its back-off.

use super::upstream::UpstreamClient;
use super::url::RelayUrl;
use super::{Captured, Source, SourceError, SourceInfo};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use mjpegd_core::parse::multipart::{boundary_from_content_type, MultipartParser};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Largest part (or polled still) accepted from an upstream.
pub const MAX_PART: usize = 16 << 20;

/// What a stream request accepts.
const ACCEPT_STREAM: &str = "multipart/x-mixed-replace, */*";
/// What a poll accepts.
const ACCEPT_STILL: &str = "image/jpeg, */*;q=0.5";

/// Where and how to reach the upstream.
#[derive(Clone, Debug)]
pub struct RelayOptions {
    /// The upstream, parsed (and checked) with the configuration.
    pub url: RelayUrl,
    /// Credentials (override any in the URL): Basic, or Digest when the upstream asks for it.
    pub credentials: Option<(String, String)>,
    pub connect_timeout: Duration,
    /// Longest silence from the upstream before the connection is dropped and retried (for a snapshot
    /// camera: longest wait for one answer).
    pub read_timeout: Duration,
    /// Shown in `/state` as the wanted rate; a snapshot camera's polling rate.
    pub fps: f64,
}

/// How the upstream delivers frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A `multipart/x-mixed-replace` stream (or anything else that is not a still).
    Stream,
    /// One JPEG per request, polled.
    Snapshot,
}

/// A relay source.
pub struct Relay {
    options: RelayOptions,
    client: UpstreamClient,
    /// What the last open found (None before the first).
    mode: Option<Mode>,
    running: Option<Running>,
}

enum Running {
    Stream {
        body: Incoming,
        parser: MultipartParser,
    },
    Snapshot {
        /// The still that came with the open, not handed over yet.
        first: Option<Bytes>,
        /// When the next poll may go out.
        next_at: Instant,
    },
}

/// True for a Content-Type that says the answer is one still JPEG.
fn is_still(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(essence.as_str(), "image/jpeg" | "image/jpg" | "image/pjpeg")
}

impl Relay {
    /// A relay of an upstream whose URL was checked when the configuration was parsed: nothing here can
    /// fail.
    pub fn new(options: RelayOptions) -> Relay {
        let client = UpstreamClient::new(
            options.url.clone(),
            options.credentials.clone(),
            options.connect_timeout,
            options.read_timeout,
        );
        Relay {
            options,
            client,
            mode: None,
            running: None,
        }
    }

    /// The time between two polls.
    fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.options.fps.clamp(0.001, 1000.0))
    }

    /// Reads one still's body whole, within [`MAX_PART`] and the read timeout.
    async fn read_still(&self, response: hyper::Response<Incoming>) -> Result<Bytes, SourceError> {
        let url = self.options.url.to_string();
        if let Some(len) = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            if len > MAX_PART as u64 {
                return Err(SourceError::broken(format!(
                    "{url}: a still of {len} bytes (at most {MAX_PART})"
                )));
            }
        }
        let deadline = Instant::now() + self.options.read_timeout;
        let mut body = response.into_body();
        let mut all = BytesMut::new();
        loop {
            let frame = tokio::time::timeout_at(deadline, body.frame())
                .await
                .map_err(|_| {
                    SourceError::timeout(format!(
                        "{url}: a still not read within {:?}",
                        self.options.read_timeout
                    ))
                })?;
            match frame {
                None => return Ok(all.freeze()),
                Some(Err(e)) => {
                    return Err(SourceError::lost(format!(
                        "{url}: while reading a still: {e}"
                    )))
                }
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        if all.len() + data.len() > MAX_PART {
                            return Err(SourceError::broken(format!(
                                "{url}: a still larger than {MAX_PART} bytes"
                            )));
                        }
                        all.extend_from_slice(data);
                    }
                }
            }
        }
    }

    /// `GET`s the URL and checks the status.
    async fn request(&mut self, accept: &str) -> Result<hyper::Response<Incoming>, SourceError> {
        let response = self.client.get(accept).await?;
        if !response.status().is_success() {
            self.client.disconnect();
            return Err(SourceError::unavailable(format!(
                "{}: upstream answered {}",
                self.options.url,
                response.status()
            )));
        }
        Ok(response)
    }
}

impl Source for Relay {
    fn describe(&self) -> String {
        let mut how = Vec::new();
        if self.mode == Some(Mode::Snapshot) {
            how.push(format!("stills polled at up to {} fps", self.options.fps));
        }
        if self.client.scheme() == "Digest" {
            how.push("Digest auth".to_string());
        }
        if how.is_empty() {
            format!("relay of {}", self.options.url)
        } else {
            format!("relay of {} ({})", self.options.url, how.join(", "))
        }
    }

    async fn open(&mut self) -> Result<SourceInfo, SourceError> {
        self.close();
        let url = self.options.url.to_string();
        let forced = self.options.url.snapshot;
        let started = Instant::now();
        let response = self
            .request(if forced { ACCEPT_STILL } else { ACCEPT_STREAM })
            .await?;
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(200)
            .collect::<String>();
        if forced || is_still(&content_type) {
            if self.mode != Some(Mode::Snapshot) {
                tracing::info!(%url, %content_type, fps = self.options.fps, "upstream serves stills: polling it");
            }
            self.mode = Some(Mode::Snapshot);
            let first = self.read_still(response).await?;
            self.running = Some(Running::Snapshot {
                first: Some(first),
                next_at: started + self.interval(),
            });
        } else {
            let boundary = boundary_from_content_type(&content_type);
            if boundary.is_none() && !content_type.to_ascii_lowercase().starts_with("multipart/") {
                tracing::warn!(%url, %content_type, "upstream does not say it is multipart; looking for parts anyway");
            }
            self.mode = Some(Mode::Stream);
            self.running = Some(Running::Stream {
                body: response.into_body(),
                parser: MultipartParser::new(boundary.as_deref(), MAX_PART),
            });
        }
        Ok(SourceInfo {
            width: 0,
            height: 0,
            fps: self.options.fps,
            encoder: crate::hub::Encoder::None,
        })
    }

    async fn next_frame(&mut self) -> Result<Captured, SourceError> {
        let read_timeout = self.options.read_timeout;
        let interval = self.interval();
        match self.running.as_mut() {
            None => Err(SourceError::broken("not open")),
            Some(Running::Snapshot { first, next_at }) => {
                if let Some(jpeg) = first.take() {
                    return Ok(Captured {
                        jpeg,
                        at: SystemTime::now(),
                    });
                }
                // One request in flight: the next goes out an interval after this one was due (so the
                // timer's slack does not lower the rate), or an interval after it really went out when
                // it went out late (a slow answer): no burst to catch up.
                let due = *next_at;
                tokio::time::sleep_until(due).await;
                let now = Instant::now();
                if let Some(Running::Snapshot { next_at, .. }) = self.running.as_mut() {
                    *next_at = if now.saturating_duration_since(due) < interval / 2 {
                        due + interval
                    } else {
                        now + interval
                    };
                }
                let response = self.request(ACCEPT_STILL).await?;
                let jpeg = self.read_still(response).await?;
                Ok(Captured {
                    jpeg,
                    at: SystemTime::now(),
                })
            }
            Some(Running::Stream { body, parser }) => loop {
                match parser.next_part() {
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
                let frame = tokio::time::timeout(read_timeout, body.frame())
                    .await
                    .map_err(|_| {
                        SourceError::timeout(format!("upstream silent for {read_timeout:?}"))
                    })?;
                match frame {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            parser.push(&data);
                        }
                    }
                    Some(Err(e)) => {
                        return Err(SourceError::lost(format!(
                            "upstream connection failed: {e}"
                        )))
                    }
                    None => return Err(SourceError::lost("upstream closed the stream")),
                }
            },
        }
    }

    fn close(&mut self) {
        // Released whole (a camera that serves one client at a time is free for others), and a stream
        // read part-way could not carry another request anyway.
        self.running = None;
        self.client.disconnect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(url: &str) -> Relay {
        Relay::new(RelayOptions {
            url: RelayUrl::parse(url).unwrap(),
            credentials: None,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            fps: 4.0,
        })
    }

    #[test]
    fn described_without_credentials_and_with_its_mode() {
        let mut r = relay("http://admin:s%40cret@cam.local:8081/mjpeg/1?x=1");
        assert_eq!(r.describe(), "relay of http://cam.local:8081/mjpeg/1?x=1");
        r.mode = Some(Mode::Snapshot);
        assert_eq!(
            r.describe(),
            "relay of http://cam.local:8081/mjpeg/1?x=1 (stills polled at up to 4 fps)"
        );
        assert_eq!(r.interval(), Duration::from_millis(250));
    }

    #[test]
    fn stills_are_told_by_their_content_type() {
        for still in [
            "image/jpeg",
            "IMAGE/JPEG; charset=x",
            " image/jpg",
            "image/pjpeg",
        ] {
            assert!(is_still(still), "{still}");
        }
        for not in [
            "multipart/x-mixed-replace; boundary=frame",
            "",
            "text/html",
            "image/jpegx",
        ] {
            assert!(!is_still(not), "{not}");
        }
    }
}
