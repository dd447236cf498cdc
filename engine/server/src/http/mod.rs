//! The HTTP/JSON gateway and admin API (axum), SPEC.md's table call by call.
//!
//! - [`extract`]: body, header and path extractors that answer bad input with JSON `400`s;
//! - [`body`]: request bodies and their validation into commands;
//! - [`render`]: outcomes as JSON, money at full scale;
//! - [`handlers`]: one per call; [`openapi`]: the document generated from them;
//! - [`auth`]: API keys and roles (shared with the binary protocol);
//! - [`metrics`]: counters for `/metrics`; [`error`]: the error body.
//!
//! Limits: request bodies above [`BODY_LIMIT_BYTES`] get `413`; at most
//! [`HttpLimits::connections_max`] connections are served at once (more wait in the backlog);
//! a slow or silent client is cut off by [`HttpLimits::header_timeout`] and
//! [`HttpLimits::idle_timeout`].

pub mod body;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod metrics;
pub mod openapi;
pub mod program_doc;
pub mod render;

use crate::auth::{self, Auth};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use error::ApiError;
use runtime::Engine;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest accepted request body.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// Every route pattern, as counted in metrics and listed in the OpenAPI document.
pub const ROUTES: &[&str] = &[
    "/v1/programs",
    "/v1/cards",
    "/v1/cards/{id}",
    "/v1/cards/{id}/top-ups",
    "/v1/cards/{id}/spends",
    "/v1/cards/{id}/holds",
    "/v1/holds/{id}/increment",
    "/v1/holds/{id}/capture",
    "/v1/holds/{id}/void",
    "/v1/refunds",
    "/v1/cards/{id}/cash-out",
    "/v1/cards/{id}/reversals",
    "/v1/cards/{id}/points/redeem",
    "/v1/cards/{id}/grants",
    "/v1/cards/{id}/freeze",
    "/v1/cards/{id}/unfreeze",
    "/v1/cards/{id}/close",
    "/v1/cards/{id}/transactions",
    "/v1/float",
    "/v1/events",
    "/metrics",
    "/healthz",
    "/openapi.json",
];

/// Paths that answer without an API key (probes).
const PUBLIC_PATHS: &[&str] = &["/healthz"];

/// What the handlers share: the engine, the keys, the counters.
pub struct AppInner {
    pub engine: Engine,
    pub auth: Auth,
    pub metrics: metrics::HttpMetrics,
}

/// Cheap-to-clone handle on [`AppInner`].
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

impl AppState {
    /// Built once at startup; the metrics get one counter set per route of `ROUTES`.
    pub fn new(engine: Engine, auth: Auth) -> AppState {
        AppState(Arc::new(AppInner {
            engine,
            auth,
            metrics: metrics::HttpMetrics::new(ROUTES),
        }))
    }
}

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

/// Limits of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Connections served at once; further ones wait in the listen backlog.
    pub connections_max: usize,
    /// A request's head must have arrived this long after the connection began waiting for it
    /// (it opened, or the previous answer went out), or the connection is closed: a head sent
    /// a byte at a time, a connection that never sends, an idle keep-alive connection. Its body
    /// then has as long again, or the answer is `408 request_timeout`.
    pub header_timeout: Duration,
    /// A connection that waits to read or write with no byte moving either way for this long
    /// is closed ([`crate::idle::Idle`]): a client that never reads its answers, a body that
    /// stops coming.
    pub idle_timeout: Duration,
}

/// Default of `svault serve --header-timeout-secs`.
pub const HEADER_TIMEOUT_SECS_DEFAULT: u64 = 10;
/// Default of `svault serve --idle-timeout-secs`.
pub const IDLE_TIMEOUT_SECS_DEFAULT: u64 = 60;

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connections_max: 4096,
            header_timeout: Duration::from_secs(HEADER_TIMEOUT_SECS_DEFAULT),
            idle_timeout: Duration::from_secs(IDLE_TIMEOUT_SECS_DEFAULT),
        }
    }
}

/// The router with every route, auth, metrics and the body limit.
pub fn router(app: AppState) -> Router {
    use handlers as h;
    Router::new()
        .route("/v1/programs", post(h::upsert_program))
        .route("/v1/cards", post(h::open_card))
        .route("/v1/cards/{id}", get(h::get_card))
        .route("/v1/cards/{id}/top-ups", post(h::top_up))
        .route("/v1/cards/{id}/spends", post(h::spend))
        .route("/v1/cards/{id}/holds", post(h::hold))
        .route("/v1/holds/{id}/increment", post(h::increment))
        .route("/v1/holds/{id}/capture", post(h::capture))
        .route("/v1/holds/{id}/void", post(h::void))
        .route("/v1/refunds", post(h::refund))
        .route("/v1/cards/{id}/cash-out", post(h::cash_out))
        .route("/v1/cards/{id}/reversals", post(h::reversal))
        .route("/v1/cards/{id}/points/redeem", post(h::redeem))
        .route("/v1/cards/{id}/grants", post(h::grant))
        .route("/v1/cards/{id}/freeze", post(h::freeze))
        .route("/v1/cards/{id}/unfreeze", post(h::unfreeze))
        .route("/v1/cards/{id}/close", post(h::close))
        .route("/v1/cards/{id}/transactions", get(h::transactions))
        .route("/v1/float", get(h::float))
        .route("/v1/events", get(h::events))
        .route("/metrics", get(h::metrics))
        .route("/healthz", get(h::healthz))
        .route("/openapi.json", get(openapi::openapi))
        .fallback(h::no_route)
        .method_not_allowed_fallback(h::wrong_method)
        .layer(middleware::from_fn_with_state(app.clone(), authenticate))
        .layer(middleware::from_fn_with_state(app.clone(), count))
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .with_state(app)
}

/// Checks `Authorization: Bearer KEY` and hands the caller to the handlers.
async fn authenticate(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    if PUBLIC_PATHS.contains(&req.uri().path()) {
        req.extensions_mut().insert(auth::Caller::unrestricted());
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").map(str::trim).unwrap_or(""));
    match app.auth.check(presented) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(auth::AuthError::Missing) => {
            ApiError::unauthorized("missing Authorization: Bearer KEY").into_response()
        }
        Err(auth::AuthError::Unknown) => ApiError::unauthorized("unknown API key").into_response(),
    }
}

/// Counts every answered request by route pattern and status.
async fn count(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let resp = next.run(req).await;
    app.metrics.count(route.as_deref(), resp.status().as_u16());
    resp
}

/// A listener that serves at most `connections_max` connections at once and sets `TCP_NODELAY`.
pub struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
}

impl LimitedListener {
    /// `connections_max` of 0 is taken as 1; past the limit, `accept` waits until a connection
    /// closes, so the kernel backlog absorbs the rest.
    pub fn new(inner: TcpListener, connections_max: usize) -> LimitedListener {
        LimitedListener {
            inner,
            permits: Arc::new(Semaphore::new(connections_max.max(1))),
        }
    }
}

/// A connection holding one of the listener's permits until it closes.
pub struct LimitedStream {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok(permit) = self.permits.clone().acquire_owned().await else {
                // The semaphore is never closed; wait and retry rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (
                        LimitedStream {
                            inner: stream,
                            _permit: permit,
                        },
                        addr,
                    );
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves HTTP/1.1 on `listener` until `shutdown` resolves, then finishes in-flight requests.
///
/// hyper's connection builder rather than `axum::serve`, which sets no timeouts: the header
/// timeout runs on hyper's timer, the idle timeout on the socket ([`crate::idle::Idle`]).
pub async fn serve(
    listener: TcpListener,
    app: AppState,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::Listener;
    let mut listener = LimitedListener::new(listener, limits.connections_max);
    // A body must arrive within the head's limit too: the idle timer alone would let a body
    // trickled a byte at a time hold the connection for hours.
    let app = router(app).layer(axum::Extension(extract::BodyDeadline(
        limits.header_timeout,
    )));
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        let io = hyper_util::rt::TokioIo::new(crate::idle::Idle::new(stream, limits.idle_timeout));
        let conn = graceful.watch(builder.serve_connection(io, service.clone()));
        tokio::spawn(async move {
            // A timeout or a reset ends this connection only; there is nobody to tell.
            if let Err(e) = conn.await {
                tracing::debug!("http connection closed: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
