//! The accept loop of `cpn serve`: plain HTTP or TLS (rustls), HTTP/1.1 by hyper, with
//! limits so idle sockets cannot starve the server.
//!
//! - At most `max_connections` connections are served at once (bounded by the process's
//!   file-descriptor limit, which `raise_fd_limit` lifts to its hard maximum). At the limit
//!   the connection idle the longest (no request in flight: never sent one, or between
//!   keep-alive requests) is closed to make room; only when every connection is busy does
//!   the loop wait, leaving new ones in the kernel's backlog.
//! - A client has `header_timeout` to finish its TLS handshake and each request head; the
//!   same timer bounds the idle time between keep-alive requests (hyper starts it whenever
//!   it waits for a head).
//! - Every request carries `ConnectInfo<SocketAddr>` (the peer), for per-address limits.
//! - Shutdown stops accepting, asks each connection to finish its request in flight and
//!   close, and returns when all have.

use axum::Router;
use axum::extract::ConnectInfo;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

/// Default of `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Time to finish a TLS handshake or a request head, and the keep-alive idle limit.
pub(crate) const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// File descriptors kept for the store, logs, attempts' files and the local agent.
const RESERVED_FDS: u64 = 512;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// Length of the kernel's accept queue asked for (the kernel caps it at `somaxconn`): a
/// burst of connects beyond it is dropped and retried by clients only after 1 s.
const LISTEN_BACKLOG: u32 = 4096;

/// Listens on `addr` with a deep accept queue (tokio's `TcpListener::bind` asks for 1024).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Raises the soft limit of open files to the hard limit; returns the soft limit in force.
pub(crate) fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(error = %e, soft, hard, "cannot raise the open-files limit");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

/// `requested`, lowered so that connections cannot use up the descriptors the rest of the
/// server needs.
pub(crate) fn effective_max_connections(requested: usize, fd_limit: u64) -> usize {
    let room = fd_limit.saturating_sub(RESERVED_FDS).max(64);
    requested.clamp(1, usize::try_from(room).unwrap_or(usize::MAX))
}

/// One open connection, as the accept loop sees it.
struct Slot {
    /// Requests whose response has not been fully sent.
    busy: AtomicUsize,
    evicted: AtomicBool,
    evict: Notify,
}

#[derive(Default)]
struct Connections {
    /// By accept order: the first idle one is the one idle the longest.
    open: Mutex<BTreeMap<u64, Arc<Slot>>>,
    /// Evicted but not closed yet.
    evicting: AtomicUsize,
    closed: Notify,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Slot>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live(&self) -> usize {
        self.lock()
            .len()
            .saturating_sub(self.evicting.load(Ordering::Relaxed))
    }

    /// Closes the connection idle the longest; false when every connection is busy.
    fn evict_oldest_idle(&self) -> bool {
        let open = self.lock();
        for slot in open.values() {
            if slot.busy.load(Ordering::Acquire) == 0 && !slot.evicted.swap(true, Ordering::AcqRel)
            {
                self.evicting.fetch_add(1, Ordering::Relaxed);
                slot.evict.notify_one();
                return true;
            }
        }
        false
    }

    fn remove(&self, id: u64) {
        if let Some(slot) = self.lock().remove(&id)
            && slot.evicted.load(Ordering::Acquire)
        {
            self.evicting.fetch_sub(1, Ordering::Relaxed);
        }
        self.closed.notify_waiters();
    }
}

/// Removes a connection from the table when its task ends, however it ends.
struct Registered(Arc<Connections>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.remove(self.1);
    }
}

/// Counts a request as in flight until its response body is dropped (sent or abandoned).
struct InFlight(Arc<Slot>);

impl InFlight {
    fn new(slot: Arc<Slot>) -> Self {
        slot.busy.fetch_add(1, Ordering::AcqRel);
        InFlight(slot)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

fn fd_exhausted(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == nix::libc::EMFILE || code == nix::libc::ENFILE)
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let conns = Arc::new(Connections::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut next_id: u64 = 0;
    'accept: loop {
        // Make room first, so the connection accepted next is served at once.
        while conns.live() >= limits.max_connections {
            let closed = conns.closed.notified();
            if conns.evict_oldest_idle() {
                continue;
            }
            tokio::select! {
                _ = closed => {}
                _ = &mut shutdown => break 'accept,
            }
        }
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if fd_exhausted(&e) => {
                tracing::warn!(error = %e, "out of file descriptors: closing the longest idle connection");
                conns.evict_oldest_idle();
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let slot = Arc::new(Slot {
            busy: AtomicUsize::new(0),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        });
        conns.lock().insert(id, slot.clone());
        let registered = Registered(conns.clone(), id);
        let router = router.clone();
        let tls = tls.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let _registered = registered;
            let evict = slot.evict.notified();
            tokio::select! {
                // Dropping the connection closes the socket.
                _ = evict => {}
                _ = connection(stream, peer, tls, router, slot.clone(), limits, stop) => {}
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    loop {
        let closed = conns.closed.notified();
        if conns.lock().is_empty() {
            break;
        }
        closed.await;
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    slot: Arc<Slot>,
    limits: Limits,
    stop: watch::Receiver<bool>,
) {
    match tls {
        None => http(stream, peer, router, slot, limits, stop).await,
        Some(acceptor) => {
            let mut stopping = stop.clone();
            let handshake = tokio::time::timeout(limits.header_timeout, acceptor.accept(stream));
            let done = tokio::select! {
                h = handshake => h,
                // No request started yet: nothing to finish when the server stops.
                _ = stopping.wait_for(|s| *s) => return,
            };
            match done {
                Ok(Ok(tls_stream)) => http(tls_stream, peer, router, slot, limits, stop).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn http<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    slot: Arc<Slot>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let in_flight = InFlight::new(slot.clone());
        let router = router.clone();
        async move {
            let response = tower::ServiceExt::oneshot(router, req.map(axum::body::Body::new))
                .await
                .unwrap_or_else(|never: Infallible| match never {});
            Ok::<_, Infallible>(response.map(|body| {
                axum::body::Body::new(body.map_frame(move |frame| {
                    let _ = &in_flight;
                    frame
                }))
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    if *stop.borrow() {
        conn.as_mut().graceful_shutdown();
    }
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            return;
        }
        _ = stop.changed() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_leaves_descriptors_for_the_rest() {
        assert_eq!(effective_max_connections(10_000, 1_048_576), 10_000);
        assert_eq!(effective_max_connections(10_000, 20_000), 10_000);
        assert_eq!(effective_max_connections(10_000, 4096), 4096 - 512);
        assert_eq!(effective_max_connections(10_000, 100), 64);
    }

    #[test]
    fn eviction_picks_the_oldest_idle_connection() {
        let conns = Connections::default();
        let slots: Vec<Arc<Slot>> = (0..3)
            .map(|i| {
                let s = Arc::new(Slot {
                    busy: AtomicUsize::new(usize::from(i == 0)),
                    evicted: AtomicBool::new(false),
                    evict: Notify::new(),
                });
                conns.lock().insert(i as u64, s.clone());
                s
            })
            .collect();
        assert_eq!(conns.live(), 3);
        assert!(conns.evict_oldest_idle());
        assert!(!slots[0].evicted.load(Ordering::Relaxed), "busy: kept");
        assert!(slots[1].evicted.load(Ordering::Relaxed));
        assert_eq!(conns.live(), 2);
        assert!(conns.evict_oldest_idle());
        assert!(!conns.evict_oldest_idle(), "only the busy one is left");
        conns.remove(1);
        conns.remove(2);
        assert_eq!(conns.live(), 1);
        assert_eq!(conns.evicting.load(Ordering::Relaxed), 0);
    }
}
