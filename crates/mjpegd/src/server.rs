//! The server: accepting on every listener, and stopping cleanly.
//!
//! One accept loop per listener (TCP, TLS, unix socket, or a socket systemd passed), one task per
//! connection; stream clients beyond `--max-clients` are turned away with a 503 rather than
//! left hanging. Running out of file descriptors is survived too: a spare descriptor is given up to accept
//! the waiting connection and answer it 503 (else it would hang in the accept queue), and accept errors are
//! logged at most once per 5 s with their count (an attacker cannot flood the log). On
//! shutdown the listener closes, every connection is told to end, and the process exits once they have
//! (or after a short grace period).

use crate::control::Control;
use crate::http::app::App;
use crate::http::connection::handle_connection;
use crate::http::limits::{refuse, Permit, Refused};
use crate::net::proxy_protocol::read_header;
use crate::net::{Conn, Listener, Peer};
use crate::service::watchdog::AcceptProbe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accepts and serves connections on every listener until `shutdown` is cancelled, then waits (up to a
/// few seconds) for the connections to end. Each listener has its own accept loop (with its own spare
/// descriptor), answering its watchdog probe between connections.
pub async fn serve(
    listeners: Vec<(Listener, AcceptProbe)>,
    app: Arc<App>,
    control: Arc<Control>,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    // Every spare is opened before any loop accepts: a loop started late would find the descriptors
    // already taken by another loop's connections.
    let with_spares: Vec<_> = listeners
        .into_iter()
        .map(|(listener, probe)| (listener, probe, SpareFd::open()))
        .collect();
    let loops: Vec<_> = with_spares
        .into_iter()
        .map(|(listener, probe, spare)| {
            tokio::spawn(accept_loop(
                listener,
                probe,
                spare,
                app.clone(),
                control.clone(),
                shutdown.clone(),
                tracker.clone(),
            ))
        })
        .collect();
    for l in loops {
        let _ = l.await;
    }
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(3), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
}

/// One listener's accept loop; its connections' tasks go to `tracker`.
#[allow(clippy::too_many_arguments)]
async fn accept_loop(
    listener: Listener,
    mut probe: AcceptProbe,
    mut spare: SpareFd,
    app: Arc<App>,
    control: Arc<Control>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut failures = AcceptFailures::default();
    let tls = if listener.tls {
        app.config.tls.clone()
    } else {
        None
    };
    loop {
        let accepted = tokio::select! {
            r = std::future::poll_fn(|cx| {
                let _turn = accept_turn();
                listener.poll_accept(cx)
            }) => r,
            Some(reply) = probe.recv() => {
                let _ = reply.send(());
                continue;
            }
            _ = shutdown.cancelled() => break,
        };
        match accepted {
            Ok((conn, peer)) => {
                failures.settled();
                // A proxy's connections are counted under the clients it names, once it has named them.
                let proxied = listener.proxy_protocol || app.config.trusted_proxies.trusts(&peer);
                let admitted = if proxied {
                    app.connections.admit_unkeyed()
                } else {
                    app.connections.admit(peer.ip())
                };
                let permit = match admitted {
                    Ok(p) => p,
                    Err(why) => {
                        let counter = match why {
                            Refused::Total => &app.counters.max_connections,
                            Refused::PerAddress => &app.counters.max_connections_per_address,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        if tls.is_none() {
                            refuse(conn, why);
                        }
                        continue;
                    }
                };
                // One head timeout from accept covers a TLS handshake and the first request head.
                let deadline = tokio::time::Instant::now() + app.config.limits.head_timeout;
                let (app, control, shutdown) = (app.clone(), control.clone(), shutdown.clone());
                let (proxy_protocol, tls) = (listener.proxy_protocol, tls.clone());
                tracker.spawn(async move {
                    serve_connection(
                        app,
                        control,
                        conn,
                        peer,
                        permit,
                        proxy_protocol,
                        tls,
                        shutdown,
                        deadline,
                    )
                    .await
                });
            }
            Err(e) => {
                failures.note(&e, &listener);
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
                    && spare.shed(&listener, tls.is_none())
                {
                    app.counters.max_connections.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                // Out of descriptors with no spare, or another failure: give connections time to close.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One accepted connection, from its PROXY header (on a listener that requires one) and its TLS
/// handshake (on an HTTPS listener) to its last request.
#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    app: Arc<App>,
    control: Arc<Control>,
    conn: Conn,
    mut peer: Peer,
    mut permit: Permit,
    proxy_protocol: bool,
    tls: Option<Arc<crate::net::tls::Tls>>,
    shutdown: CancellationToken,
    deadline: tokio::time::Instant,
) {
    if proxy_protocol {
        let header = match &conn {
            Conn::Tcp(s) => read_header(s, peer, deadline).await,
            Conn::Unix(s) => read_header(s, peer, deadline).await,
        };
        match header {
            Ok(named) => peer = named,
            Err(e) => {
                app.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(addr = %peer, error = %e, "connection closed");
                return;
            }
        }
        if let Err(why) = permit.rekey(peer.ip()) {
            app.counters
                .max_connections_per_address
                .fetch_add(1, Ordering::Relaxed);
            if tls.is_none() {
                refuse(conn, why);
            }
            return;
        }
    }
    match (conn, tls.as_ref()) {
        (Conn::Unix(socket), _) => {
            handle_connection(app, control, socket, peer, permit, shutdown, deadline).await
        }
        (Conn::Tcp(socket), None) => {
            let _ = socket.set_nodelay(true);
            handle_connection(app, control, socket, peer, permit, shutdown, deadline).await
        }
        (Conn::Tcp(socket), Some(server_tls)) => {
            let _ = socket.set_nodelay(true);
            let handshake = tokio::time::timeout_at(deadline, server_tls.handshake(socket));
            let tls = tokio::select! {
                r = handshake => r,
                _ = shutdown.cancelled() => return,
            };
            match tls {
                Ok(Ok(tls)) => {
                    app.counters
                        .tls_handshakes_completed
                        .fetch_add(1, Ordering::Relaxed);
                    handle_connection(app, control, tls, peer, permit, shutdown, deadline).await
                }
                Ok(Err(e)) => {
                    app.counters.tls_handshakes.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(addr = %peer, error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    app.counters.tls_handshakes.fetch_add(1, Ordering::Relaxed);
                    app.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Taken for every accept system call and for the whole of a [`SpareFd::shed`]. With several listeners,
/// the descriptor one loop's spare frees for its 503 must not be taken by another loop's ordinary accept
/// (that loop would keep a connection, and this one would lose its spare and leave its queue hanging).
/// Held only across non-blocking system calls, never an await.
static ACCEPT_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn accept_turn() -> std::sync::MutexGuard<'static, ()> {
    ACCEPT_TURN.lock().unwrap_or_else(|e| e.into_inner())
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
    fn shed(&mut self, listener: &Listener, answer: bool) -> bool {
        let _turn = accept_turn();
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

    fn note(&mut self, e: &std::io::Error, listener: &Listener) {
        self.unlogged += 1;
        let now = std::time::Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= Self::EVERY)
        {
            tracing::warn!(listener = %listener, "accept failed {} times: {e}", self.unlogged);
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
