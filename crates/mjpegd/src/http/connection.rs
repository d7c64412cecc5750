//! The life of one connection: read a request, resolve its client, authenticate, route it to its
//! handler, let the handler answer; again, while the connection is kept alive.
//!
//! Routes: `/stream` (aliases `/mjpeg/1`, `/?action=stream`), `/snapshot` (aliases `/jpg`,
//! `/?action=snapshot`), `/state`, `/metrics`, `/recordings`, the cameras API under `/api/cameras` and the
//! page at `/` ([`super::route`]). A connection may carry several small requests (keep-alive); a stream
//! or a download takes it over until it ends ([`super::handlers`]).

use super::auth::Verdict;
use super::body::Body;
use super::handlers::{self, Ctx, Handler};
use super::limits::Permit;
use super::request::{read_request, RequestError};
use super::response::Response;
use super::route::route;
use crate::control::Control;
use crate::http::app::App;
use crate::net::{Peer, Transport};
use bytes::BytesMut;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Serves requests on one connection until it closes, turns into a stream that ends, or the server stops.
/// The first request head must have arrived by `first_deadline` (the accept time plus the head timeout,
/// which a TLS handshake has already spent part of).
#[allow(clippy::too_many_arguments)]
pub async fn handle_connection<T: Transport>(
    app: Arc<App>,
    control: Arc<Control>,
    mut io: T,
    addr: Peer,
    mut permit: Permit,
    shutdown: CancellationToken,
    first_deadline: Instant,
) {
    let mut buf = BytesMut::with_capacity(1024);
    let mut first = true;
    loop {
        // A new connection has the head timeout for its first request from the moment it was accepted
        // (handshake included): idle connections that never send anything are not kept for the (longer)
        // keep-alive idle time, and TLS does not get the head timeout twice.
        let limits = &app.config.limits;
        let deadline = if first {
            first_deadline
        } else {
            Instant::now() + limits.idle_timeout + limits.head_timeout
        };
        first = false;
        let read = tokio::time::timeout_at(deadline, read_request(&mut io, &mut buf, limits));
        let request = tokio::select! {
            r = read => r.unwrap_or(Err(RequestError::Timeout)),
            _ = shutdown.cancelled() => return,
        };
        // A snapshot's max_delay counts from here, before any password check.
        let arrived = SystemTime::now();
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                let (status, reason) = match e {
                    RequestError::Closed => return,
                    RequestError::Timeout => {
                        app.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                        (408, "request head not received in time\n")
                    }
                    RequestError::TooLarge => (431, "request head too large\n"),
                    RequestError::Malformed(why) => {
                        app.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%addr, why, "bad request");
                        let _ = Response::text(400, format!("bad request: {why}\n"))
                            .write(&mut io, false, &app.cors)
                            .await;
                        super::limits::linger_close(&mut io).await;
                        return;
                    }
                };
                if status == 431 {
                    app.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
                }
                let _ = Response::text(status, reason)
                    .write(&mut io, false, &app.cors)
                    .await;
                if status == 431 {
                    super::limits::linger_close(&mut io).await;
                }
                return;
            }
        };
        // Behind a trusted proxy, the client is the one the proxy names; it is counted under its own
        // address from here on (a refusal then is this client's, not the proxy's).
        let client = app.config.trusted_proxies.client(
            addr,
            request
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
        if let Err(why) = permit.rekey(client.ip()) {
            app.counters
                .max_connections_per_address
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(addr = %client, "too many connections from this address");
            let _ = io.write_all(super::limits::refusal(why)).await;
            super::limits::linger_close(&mut io).await;
            return;
        }
        let head_only = request.method == "HEAD";
        let verdict = match &app.auth() {
            Some(auth) => auth.check(&request, client.ip()).await,
            None => Verdict::Open,
        };
        // A pusher's `?key=` is its camera's push key, which the server's access keys do not know: the push
        // handler checks it (and refuses, as here, a request that has no right to push).
        // An event trigger's key (`event-key`) likewise: the events handler checks it.
        let pushing = verdict == Verdict::Refused
            && (super::route::is_push(&request.path)
                || super::route::is_event_trigger(&request.path));
        if !verdict.admitted() && !pushing {
            let server = super::route::server_of(&request.path, request.param("action"));
            refuse(
                &app,
                &mut io,
                &request.path,
                client,
                verdict,
                head_only,
                server,
            )
            .await;
            return;
        }
        let keep_alive = request.keep_alive();
        let http10 = request.version == 0;
        let cameras = app.cameras();
        let names: Vec<&str> = cameras.iter().map(|c| c.name()).collect();
        let action = request.param("action");
        let route = route(&request.path, action, request.param("plugin"), &names);
        let server = super::route::server_of(&request.path, action);
        let ctx = Ctx {
            app: &app,
            control: &control,
            request: &request,
            client,
            verdict,
            cameras: &cameras,
            arrived,
            server,
        };
        let answer = match handlers::handler(route, &request.method, &cameras) {
            Handler::TakeOver(take_over) => {
                handlers::take_over(&ctx, take_over, io, buf).await;
                return;
            }
            Handler::Answer(answer) => answer,
        };
        // A small response has the write timeout to leave, like a frame: a client that asks and never
        // reads does not hold its connection forever. Each response says whether the connection stays
        // open, and the connection does what it said; a body left unread closes it.
        let respond = async {
            let mut body = Body::of(&mut io, &mut buf, &request);
            let response = handlers::answer(&ctx, answer, &mut body)
                .await
                .server(server);
            let unread = !body.is_empty() && !body.finished();
            let mut response = response.persist(keep_alive, http10);
            response.close |= unread;
            response
                .write(&mut io, head_only, &app.cors)
                .await
                .map(|_| (response.close, unread))
        };
        // A snapshot may wait for a frame (a long poll): shutdown does not wait for it.
        let outcome = tokio::select! {
            r = tokio::time::timeout(app.config.write_timeout, respond) => r,
            _ = shutdown.cancelled() => return,
        };
        let Ok(outcome) = outcome else {
            app.counters.timeouts.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match outcome {
            Ok((false, _)) => continue,
            Ok((true, true)) => {
                // What the client still sends of its body is read and dropped, so the close does not
                // reset the connection under the response.
                super::limits::linger_close(&mut io).await;
                return;
            }
            _ => return,
        }
    }
}

/// Answers a request that was not let in: 503 when the password checks are busy, 401 otherwise.
async fn refuse<T: Transport>(
    app: &App,
    io: &mut T,
    path: &str,
    client: Peer,
    verdict: Verdict,
    head_only: bool,
    server: &'static str,
) {
    let refusal = if verdict == Verdict::Busy {
        app.counters
            .password_checks_busy
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(addr = %client, path = %path, "password checks busy");
        Response::text(
            503,
            "too many password checks waiting: try again in a few seconds\n",
        )
        .header("Retry-After", "2")
    } else {
        app.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(addr = %client, path = %path, "unauthorized");
        Response::text(401, "authentication required\n")
            .header("WWW-Authenticate", super::auth::CHALLENGE)
    }
    .server(server);
    let _ = tokio::time::timeout(
        app.config.write_timeout,
        refusal.write(io, head_only, &app.cors),
    )
    .await;
}
