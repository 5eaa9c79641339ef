//! The HTTP server: our own accept loop on hyper, so that the edge has the limits a
//! public service needs (warp's `serve` has none of them):
//! - a header timeout: a client must send a request's headers within it of connecting or
//!   of its last answer, so slow (slowloris) and idle keep-alive connections are closed
//!   (hyper has one timer for both; a pooling client must drop idle connections sooner);
//! - a cap on connections served at once: one more is closed as soon as it is accepted,
//!   and the sockets of the others are never at risk;
//! - a client that goes away mid-request is a `debug` line, not an error;
//! - graceful shutdown: the listener closes, connections finish the request in hand;
//! - the edge in front of every route ([`Edge`]): the caller is authenticated once, before
//!   any route sees the request.

use api::{Authenticator, Problem, Unauthenticated};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use prometheus::{IntCounter, IntGauge, Registry};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use warp::Reply;
use warp::filters::BoxedFilter;
use warp::http::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use warp::http::{Request, StatusCode};
use warp::reply::Response;

/// Paths served without a key: the probes of an orchestrator.
const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// What every request passes before the routes: authentication. The principal goes into
/// the request's extensions, where the handlers find it (`warp::ext::get`).
#[derive(Clone)]
pub struct Edge {
    routes: BoxedFilter<(Response,)>,
    auth: Arc<Authenticator>,
}

impl Edge {
    pub fn new(routes: BoxedFilter<(Response,)>, auth: Arc<Authenticator>) -> Edge {
        Edge { routes, auth }
    }
}

impl hyper::service::Service<Request<Incoming>> for Edge {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let mut routes = warp::service(self.routes.clone());
        let auth = self.auth.clone();
        Box::pin(async move {
            if !OPEN_PATHS.contains(&request.uri().path()) {
                let header = request.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
                match auth.principal(header).await {
                    Ok(principal) => {
                        request.extensions_mut().insert(principal);
                    }
                    Err(why) => return Ok(unauthenticated(&why)),
                }
            }
            tower_service::Service::call(&mut routes, request).await
        })
    }
}

/// 401 with the challenge RFC 6750 asks for.
fn unauthenticated(why: &Unauthenticated) -> Response {
    let mut response = Problem::new(StatusCode::UNAUTHORIZED, why.to_string()).into_response();
    let challenge = match why {
        Unauthenticated::Missing => "Bearer realm=\"drone-delivery\"",
        _ => "Bearer realm=\"drone-delivery\", error=\"invalid_token\"",
    };
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

/// How long shutdown waits for connections to finish the request in hand.
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// Connection counts on `/metrics`.
#[derive(Clone)]
pub struct ServerMetrics {
    open: IntGauge,
    refused: IntCounter,
}

impl ServerMetrics {
    pub fn new(registry: &Registry) -> Result<ServerMetrics, prometheus::Error> {
        let open = IntGauge::new("http_connections_open", "HTTP connections being served")?;
        let refused = IntCounter::new(
            "http_connections_refused_total",
            "HTTP connections closed at once because the connection cap was reached",
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        Ok(ServerMetrics { open, refused })
    }
}

/// Serves `service` on `listener` until `stop` turns true.
pub async fn run(
    listener: TcpListener,
    service: Edge,
    limits: Limits,
    metrics: ServerMetrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, typically: wait a little rather than spin.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.refused.inc();
            drop(stream);
            continue;
        };
        let connection = builder.serve_connection(TokioIo::new(stream), service.clone());
        let connection = graceful.watch(connection);
        let open = metrics.open.clone();
        open.inc();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // A client that went away, timed out or spoke no HTTP: nothing to fix here.
                tracing::debug!(%error, "connection ended with an error");
            }
            open.dec();
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain time; closing them");
    }
}
