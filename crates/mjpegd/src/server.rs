//! The server: listening, accepting, and stopping cleanly.
//!
//! One task per connection; stream clients beyond `--max-clients` are turned away with a 503 rather than
//! left hanging. Running out of file descriptors is survived too: a spare descriptor is given up to accept
//! the waiting connection and answer it 503 (else it would hang in the accept queue), and accept errors are
//! logged at most once per 5 s with their count (an attacker cannot flood the log). On
//! shutdown the listener closes, every connection is told to end, and the process exits once they have
//! (or after a short grace period).

use crate::http::app::App;
use crate::http::limits::{refuse, Refused};
use crate::http::routes::handle_connection;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accepts and serves connections until `shutdown` is cancelled, then waits (up to a few seconds) for the
/// connections to end.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let mut spare = SpareFd::open();
    let mut failures = AcceptFailures::default();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => break,
        };
        match accepted {
            Ok((socket, addr)) => {
                failures.settled();
                let permit = match app.connections.admit(addr.ip()) {
                    Ok(p) => p,
                    Err(why) => {
                        let counter = match why {
                            Refused::Total => &app.counters.max_connections,
                            Refused::PerAddress => &app.counters.max_connections_per_address,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        if app.config.tls.is_none() {
                            refuse(socket, why);
                        }
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                // One head timeout from accept covers a TLS handshake and the first request head.
                let deadline = tokio::time::Instant::now() + app.config.limits.head_timeout;
                let (app, shutdown) = (app.clone(), shutdown.clone());
                match app.config.tls.as_ref().map(|t| t.acceptor()) {
                    None => tracker.spawn(async move {
                        handle_connection(app, socket, addr, shutdown, deadline).await;
                        drop(permit);
                    }),
                    Some(acceptor) => tracker.spawn(async move {
                        let handshake = tokio::time::timeout_at(deadline, acceptor.accept(socket));
                        let tls = tokio::select! {
                            r = handshake => r,
                            _ = shutdown.cancelled() => return,
                        };
                        match tls {
                            Ok(Ok(tls)) => {
                                app.counters
                                    .tls_handshakes_completed
                                    .fetch_add(1, Ordering::Relaxed);
                                handle_connection(app, tls, addr, shutdown, deadline).await
                            }
                            Ok(Err(e)) => {
                                app.counters.tls_handshakes.fetch_add(1, Ordering::Relaxed);
                                tracing::debug!(%addr, error = %e, "TLS handshake failed");
                            }
                            Err(_) => {
                                app.counters.tls_handshakes.fetch_add(1, Ordering::Relaxed);
                                app.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        drop(permit);
                    }),
                };
            }
            Err(e) => {
                failures.note(&e);
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
                    && spare.shed(&listener, app.config.tls.is_none())
                {
                    app.counters.max_connections.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                // Out of descriptors with no spare, or another failure: give connections time to close.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(3), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
}

/// A descriptor held in reserve so that a connection can still be accepted, answered and closed when the
/// process is out of descriptors.
struct SpareFd(Option<std::fs::File>);

impl SpareFd {
    fn open() -> SpareFd {
        SpareFd(std::fs::File::open("/dev/null").ok())
    }

    /// Frees the spare, accepts one waiting connection, answers it 503 (`answer`: plain HTTP; a TLS
    /// connection is only closed), closes it and takes the spare back. False if there was no spare or
    /// nothing could be accepted.
    fn shed(&mut self, listener: &TcpListener, answer: bool) -> bool {
        if self.0.take().is_none() {
            *self = SpareFd::open();
            return false;
        }
        // The listener is non-blocking: this takes a waiting connection or fails at once.
        let accepted = socket2::SockRef::from(listener).accept();
        if let Ok((socket, _)) = &accepted {
            if answer && socket.set_nonblocking(true).is_ok() {
                let _ = socket.send(crate::http::limits::refusal(Refused::Total));
                // (a request already there is read, so the close ends the connection, not resets it)
                let _ = std::io::Read::read(&mut &*socket, &mut [0u8; 4096]);
            }
        }
        let shed = accepted.is_ok();
        drop(accepted);
        *self = SpareFd::open();
        shed
    }
}

/// Accept failures, logged at most once per [`AcceptFailures::EVERY`] with how many there were.
#[derive(Default)]
struct AcceptFailures {
    unlogged: u64,
    last_log: Option<std::time::Instant>,
}

impl AcceptFailures {
    const EVERY: Duration = Duration::from_secs(5);

    fn note(&mut self, e: &std::io::Error) {
        self.unlogged += 1;
        let now = std::time::Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= Self::EVERY)
        {
            tracing::warn!("accept failed {} times: {e}", self.unlogged);
            self.unlogged = 0;
            self.last_log = Some(now);
        }
    }

    /// After a successful accept: reports the failures not reported yet, once their period is over.
    fn settled(&mut self) {
        if self.unlogged > 0 && self.last_log.is_some_and(|t| t.elapsed() >= Self::EVERY) {
            tracing::warn!("accept failed {} more times", self.unlogged);
            self.unlogged = 0;
            self.last_log = Some(std::time::Instant::now());
        }
    }
}

/// The address a listener is bound to, for printing URLs.
pub fn url_of(addr: SocketAddr) -> String {
    url_with_scheme("http", addr)
}

/// The same with another scheme (https).
pub fn url_with_scheme(scheme: &str, addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V6(a) => format!("{scheme}://[{}]:{}", a.ip(), a.port()),
        SocketAddr::V4(a) => format!("{scheme}://{}:{}", a.ip(), a.port()),
    }
}
