//! A relay's requests to its upstream: one keep-alive connection, and the credentials given the way the
//! upstream asks for them.
//!
//! Why a file of its own: the relay's two modes (an endless multipart stream, and a still JPEG polled at
//! the camera's rate) make the same requests, and both must answer the same cameras' authentication.
//! With credentials, the first request carries Basic, as the relay always did (cameras that want Basic
//! need no extra round trip). A `401` with a `Digest` challenge (RFC 7616, what Dahua and Hikvision
//! ask for) is answered at once with [`mjpegd_core::digest`], and from then on this upstream gets Digest
//! only, never Basic again: the nonce is reused on every later request (a poll, a reconnect) with the
//! nonce count incremented, for as long as the camera accepts it. A `stale=true` challenge, or a
//! refusal of a nonce the camera had accepted before (cameras that expire nonces without saying
//! `stale`), is answered with the new nonce and is not a failure; a fresh nonce refused means the
//! credentials are wrong, which the supervisor shows in `/state` and retries with its back-off.
//!
//! The connection is reused while the upstream keeps it open; one it closed (after a `Connection:
//! close` answer, or while idle) is replaced before the next request, and a request that finds a reused
//! connection dead is sent once more on a fresh one. Everything read is bounded: a 401's body, the
//! challenge (see the core module), the time to connect and to answer.

use super::url::RelayUrl;
use super::SourceError;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use mjpegd_core::digest::{self, Offer};
use std::time::Duration;
use tokio::net::TcpStream;

/// Most bytes of a 401's body read (and thrown away) to keep its connection.
const MAX_DISCARDED: usize = 64 * 1024;
/// Most requests sent for one answer (Basic, then Digest, then a stale nonce renewed).
const MAX_ATTEMPTS: usize = 3;

/// How requests are authenticated now.
enum Auth {
    None,
    /// `Authorization: Basic`, sent with every request.
    Basic(String),
    /// Answering a Digest challenge; `accepted` once the upstream took a request made with this nonce.
    Digest {
        session: digest::Session,
        accepted: bool,
    },
}

impl Auth {
    fn scheme(&self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::Basic(_) => "Basic",
            Auth::Digest { .. } => "Digest",
        }
    }
}

struct Connection {
    sender: SendRequest<http_body_util::Empty<Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Requests to one upstream.
pub struct UpstreamClient {
    url: RelayUrl,
    credentials: Option<(String, String)>,
    auth: Auth,
    connection: Option<Connection>,
    connect_timeout: Duration,
    read_timeout: Duration,
}

impl UpstreamClient {
    /// `credentials` win over the URL's.
    pub fn new(
        url: RelayUrl,
        credentials: Option<(String, String)>,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> UpstreamClient {
        let credentials = credentials.or_else(|| url.credentials.clone());
        let auth = match &credentials {
            Some((user, pass)) => Auth::Basic(basic(user, pass)),
            None => Auth::None,
        };
        UpstreamClient {
            url,
            credentials,
            auth,
            connection: None,
            connect_timeout,
            read_timeout,
        }
    }

    /// `Basic`, `Digest` or `none`: how the next request will be authenticated.
    pub fn scheme(&self) -> &'static str {
        self.auth.scheme()
    }

    /// Closes the connection (a stream that is not read to its end cannot be reused).
    pub fn disconnect(&mut self) {
        self.connection = None;
    }

    fn authorization(&mut self) -> Option<String> {
        let (user, pass) = self.credentials.as_ref()?;
        match &mut self.auth {
            Auth::None => None,
            Auth::Basic(header) => Some(header.clone()),
            Auth::Digest { session, .. } => {
                Some(session.authorization(user, pass, "GET", &self.url.path_and_query))
            }
        }
    }

    /// Makes sure there is an open connection: the one kept, if the upstream has not closed it (true), or
    /// a new one (false).
    async fn connect(&mut self) -> Result<bool, SourceError> {
        let alive = match &mut self.connection {
            Some(c) if !c.sender.is_closed() => {
                tokio::time::timeout(self.read_timeout, c.sender.ready())
                    .await
                    .is_ok_and(|r| r.is_ok())
            }
            _ => false,
        };
        if alive {
            return Ok(true);
        }
        self.connection = None;
        let url = self.url.to_string();
        let stream = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((self.url.host.as_str(), self.url.port)),
        )
        .await
        .map_err(|_| SourceError::unavailable(format!("{url}: connect timed out")))?
        .map_err(|e| SourceError::unavailable(format!("{url}: cannot connect: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(64 * 1024)
            .handshake::<_, http_body_util::Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| SourceError::unavailable(format!("{url}: {e}")))?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        self.connection = Some(Connection { sender, task });
        Ok(false)
    }

    /// `GET`s the URL, authenticating as the upstream asks; the answer is not a 401 (a refusal is an
    /// error). The caller reads the body to its end before the next request, or disconnects.
    pub async fn get(&mut self, accept: &str) -> Result<hyper::Response<Incoming>, SourceError> {
        let url = self.url.to_string();
        let mut retried_dead = false;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let authorization = self.authorization();
            let mut request = hyper::Request::get(self.url.path_and_query.as_str())
                .header("Host", self.url.host_header())
                .header("User-Agent", concat!("mjpegd/", env!("CARGO_PKG_VERSION")))
                .header("Accept", accept);
            if let Some(a) = &authorization {
                request = request.header("Authorization", a);
            }
            let request = request
                .body(http_body_util::Empty::new())
                .map_err(|e| SourceError::unavailable(format!("{url}: {e}")))?;
            let reused = self.connect().await?;
            let connection = self.connection.as_mut().expect("connected");
            let sent =
                tokio::time::timeout(self.read_timeout, connection.sender.send_request(request))
                    .await;
            let response = match sent {
                Err(_) => {
                    self.connection = None;
                    return Err(SourceError::unavailable(format!(
                        "{url}: no response within {:?}",
                        self.read_timeout
                    )));
                }
                Ok(Err(_)) if reused && !retried_dead => {
                    // The upstream closed the kept connection as the request went out: once more on a
                    // new one (the nonce count moved on, which servers accept).
                    self.connection = None;
                    retried_dead = true;
                    attempts -= 1;
                    continue;
                }
                Ok(Err(e)) => {
                    self.connection = None;
                    return Err(SourceError::unavailable(format!("{url}: {e}")));
                }
                Ok(Ok(r)) => r,
            };
            let closes = response
                .headers()
                .get_all(hyper::header::CONNECTION)
                .iter()
                .any(|v| {
                    v.to_str()
                        .is_ok_and(|v| v.to_ascii_lowercase().contains("close"))
                })
                || response.version() == hyper::Version::HTTP_10;
            if response.status() != hyper::StatusCode::UNAUTHORIZED {
                if let Auth::Digest { accepted, .. } = &mut self.auth {
                    *accepted = true;
                }
                // One the upstream closes after this answer is replaced before the next request.
                return Ok(response);
            }
            let offer = digest::offer(
                response
                    .headers()
                    .get_all(hyper::header::WWW_AUTHENTICATE)
                    .iter()
                    .map(|v| v.as_bytes()),
            );
            if closes || !self.discard(response.into_body()).await {
                self.connection = None;
            }
            self.answer(offer, attempts)?;
        }
    }

    /// Reads and drops a 401's body (bounded): true when the connection may be reused.
    async fn discard(&self, mut body: Incoming) -> bool {
        let mut read = 0usize;
        let deadline = tokio::time::Instant::now() + self.read_timeout;
        loop {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Some(d) = frame.data_ref() {
                        read += d.len();
                        if read > MAX_DISCARDED {
                            return false;
                        }
                    }
                }
                Ok(None) => return true,
                Ok(Some(Err(_))) | Err(_) => return false,
            }
        }
    }

    /// Decides what to send after a 401 offering `offer`, or why to give up.
    fn answer(&mut self, offer: Offer, attempts: usize) -> Result<(), SourceError> {
        let url = self.url.to_string();
        if self.credentials.is_none() {
            return Err(SourceError::unavailable(format!(
                "{url}: upstream answered 401 Unauthorized: it wants credentials (source-auth, or user:password@ in the URL)"
            )));
        }
        let refused = |scheme: &str| {
            SourceError::unavailable(format!(
                "{url}: upstream answered 401 Unauthorized: it refused the credentials ({scheme})"
            ))
        };
        match offer {
            Offer::Digest(challenge) => {
                let retry = match &self.auth {
                    // A nonce it had accepted, expired (whether or not it says stale).
                    Auth::Digest { accepted, .. } => challenge.stale || *accepted,
                    Auth::None | Auth::Basic(_) => true,
                };
                let stale = challenge.stale;
                if !matches!(self.auth, Auth::Digest { .. }) {
                    tracing::info!(%url, algorithm = ?challenge.algorithm, session = challenge.session, "upstream asks for Digest: answering with Digest from now on");
                }
                self.auth = Auth::Digest {
                    session: digest::Session::new(challenge, &cnonce()),
                    accepted: false,
                };
                if !retry {
                    return Err(refused("Digest"));
                }
                if attempts >= MAX_ATTEMPTS {
                    return Err(SourceError::unavailable(format!(
                        "{url}: upstream answered 401 Unauthorized {attempts} times in a row{}",
                        if stale { " (stale nonces)" } else { "" }
                    )));
                }
                if stale {
                    tracing::debug!(%url, "upstream's Digest nonce went stale: answering the new one");
                }
                Ok(())
            }
            Offer::Basic => match &self.auth {
                Auth::Basic(_) => Err(refused("Basic")),
                _ => {
                    // Asked for Basic (after Digest, or with nothing sent): once.
                    let (user, pass) = self.credentials.as_ref().expect("checked above");
                    self.auth = Auth::Basic(basic(user, pass));
                    if attempts >= MAX_ATTEMPTS {
                        return Err(refused("Basic"));
                    }
                    Ok(())
                }
            },
            Offer::Unsupported(why) => Err(SourceError::unavailable(format!(
                "{url}: upstream answered 401 Unauthorized and asks for what mjpegd cannot answer: {why}"
            ))),
        }
    }
}

/// Basic auth for `user:password`.
pub fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// A fresh client nonce: 16 random bytes, base64.
fn cnonce() -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mjpegd_core::digest::Challenge;

    fn client(url: &str, credentials: Option<(&str, &str)>) -> UpstreamClient {
        UpstreamClient::new(
            RelayUrl::parse(url).unwrap(),
            credentials.map(|(u, p)| (u.to_string(), p.to_string())),
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
    }

    fn challenge(nonce: &str, stale: bool) -> Offer {
        let stale = if stale { ", stale=true" } else { "" };
        let h = format!("Digest realm=\"cam\", nonce=\"{nonce}\", qop=\"auth\"{stale}");
        let o = digest::offer([h.as_bytes()]);
        assert!(matches!(o, Offer::Digest(Challenge { .. })));
        o
    }

    #[test]
    fn credentials_are_sent_as_basic_until_digest_is_asked_for() {
        let mut c = client("http://admin:s%40cret@cam.local:8081/mjpeg/1?x=1", None);
        assert_eq!(c.authorization().as_deref(), Some("Basic YWRtaW46c0BjcmV0"));
        // --source-auth wins over the URL's.
        let mut c = client("http://x:y@10.0.0.5", Some(("u", "p")));
        assert_eq!(c.authorization().as_deref(), Some("Basic dTpw"));
        assert!(client("http://10.0.0.5/", None).authorization().is_none());
        // A Digest challenge: Digest from now on, never Basic again.
        c.answer(challenge("n1", false), 1).unwrap();
        assert_eq!(c.scheme(), "Digest");
        let a = c.authorization().unwrap();
        assert!(
            a.starts_with("Digest username=\"u\"") && a.contains("nc=00000001"),
            "{a}"
        );
        assert!(c.authorization().unwrap().contains("nc=00000002"));
        assert!(!c.authorization().unwrap().contains("dTpw"));
    }

    #[test]
    fn a_fresh_nonce_refused_is_wrong_credentials_a_stale_or_used_one_is_renewed() {
        let mut c = client("http://u:p@cam/", None);
        c.answer(challenge("n1", false), 1).unwrap();
        // The first answer to n1 refused with a new nonce: the credentials are wrong.
        let e = c.answer(challenge("n2", false), 2).unwrap_err();
        assert!(
            e.message.contains("refused the credentials (Digest)"),
            "{e}"
        );
        assert!(!e.message.contains("p@"), "{e}");
        // stale=true is renewed, not a failure.
        c.answer(challenge("n3", true), 1).unwrap();
        assert!(c
            .authorization()
            .unwrap()
            .contains("nonce=\"n3\", uri=\"/\""));
        // A nonce the camera had taken, then refused without saying stale: renewed too.
        if let Auth::Digest { accepted, .. } = &mut c.auth {
            *accepted = true;
        }
        c.answer(challenge("n4", false), 1).unwrap();
        // But not forever within one request.
        let e = c.answer(challenge("n5", true), MAX_ATTEMPTS).unwrap_err();
        assert!(e.message.contains("times in a row"), "{e}");
    }

    #[test]
    fn basic_refused_no_credentials_and_unknown_schemes_say_why() {
        let mut c = client("http://u:p@cam/", None);
        let e = c.answer(Offer::Basic, 1).unwrap_err();
        assert!(e.message.contains("refused the credentials (Basic)"), "{e}");
        let mut c = client("http://cam/", None);
        let e = c.answer(challenge("n", false), 1).unwrap_err();
        assert!(e.message.contains("wants credentials"), "{e}");
        let mut c = client("http://u:p@cam/", None);
        let e = c
            .answer(Offer::Unsupported("only bearer".into()), 1)
            .unwrap_err();
        assert!(e.message.contains("only bearer"), "{e}");
        // Asked for Basic after Digest: answered once.
        c.answer(challenge("n", false), 1).unwrap();
        c.answer(Offer::Basic, 2).unwrap();
        assert_eq!(c.scheme(), "Basic");
    }
}
