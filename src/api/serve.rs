//! Serving a router on a listener, with the bounds an endpoint facing browsers and the
//! internet needs ([`HttpLimits`]): at most `max_connections` open at once (one over is
//! closed at once), the request head within `header_timeout` (also between requests on a
//! kept-alive connection, so an idle or slow-writing client cannot hold a connection), and
//! the whole request, body included, answered within `request_timeout` (else 408).
//!
//! `axum::serve` has none of these (hyper's header timeout needs a timer it does not set),
//! so this is our own accept loop over hyper's HTTP/1 connection, one task per connection.
//! With a certificate ([`super::tls`]) the listener speaks HTTPS only; the TLS handshake
//! counts against the head timeout.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// `[http]` bounds, for every HTTP listener (public and admin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
        }
    }
}

/// Counters for `/metrics`, per listener.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Connections closed at once: `max_connections` reached.
    pub refused: AtomicU64,
    /// Requests answered 408: not done within `request_timeout`.
    pub timed_out: AtomicU64,
    /// Requests answered 429 by [`super::limit`]: the network's request rate.
    pub limited_requests: AtomicU64,
    /// Requests answered 429 by [`super::limit`]: the network's failed authentications.
    pub limited_auth: AtomicU64,
}

/// Both listeners' counters, for the public router's `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct HttpCounters {
    pub public: Arc<HttpStats>,
    pub admin: Arc<HttpStats>,
}

/// Serve `router` on `listener` until `cancel`; then open connections finish their request
/// and close.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: Option<TlsAcceptor>,
    stats: Arc<HttpStats>,
    cancel: CancellationToken,
) {
    let request_timeout = limits.request_timeout;
    let timeouts = stats.clone();
    let router = router.layer(middleware::from_fn(move |request: Request, next: Next| {
        let timeouts = timeouts.clone();
        async move {
            match tokio::time::timeout(request_timeout, next.run(request)).await {
                Ok(response) => response,
                Err(_) => {
                    timeouts.timed_out.fetch_add(1, Ordering::Relaxed);
                    (
                        StatusCode::REQUEST_TIMEOUT,
                        "request not complete in time\n",
                    )
                        .into_response()
                }
            }
        }
    }));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    debug!(%error, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = cancel.cancelled() => return,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let router = router.clone();
        let cancel = cancel.clone();
        let header_timeout = limits.header_timeout;
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(tls) = tls else {
                return connection(stream, peer, router, header_timeout, cancel).await;
            };
            match tokio::time::timeout(header_timeout, tls.accept(stream)).await {
                Ok(Ok(stream)) => connection(stream, peer, router, header_timeout, cancel).await,
                Ok(Err(error)) => debug!(%error, %peer, "TLS handshake failed"),
                Err(_) => debug!(%peer, "TLS handshake not done in time"),
            }
        });
    }
}

/// One connection, plain or TLS, until it ends or `cancel` (then it finishes its request).
async fn connection<IO>(
    io: IO,
    peer: SocketAddr,
    router: Router,
    header_timeout: Duration,
    cancel: CancellationToken,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        // The RUM endpoints read the peer (client network, rate limit).
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        async move {
            let response: Result<Response, Infallible> =
                tower_service::Service::call(&mut router, request).await;
            response
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                debug!(%error, %peer, "HTTP connection ended");
            }
        }
        () = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
