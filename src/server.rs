//! The HTTP server: our own accept loop on hyper, so that the edge has the limits a
//! public service needs (warp's `serve` has none of them):
//! - a header timeout: a client must send a request's headers within it of connecting or
//!   of its last answer, so slow (slowloris) and idle keep-alive connections are closed
//!   (hyper has one timer for both; a pooling client must drop idle connections sooner);
//! - a cap on connections served at once: at the cap a new connection makes room by
//!   closing a silent one (connected, never sent a request) or else the oldest idle
//!   keep-alive one, as nginx does; only when every one is busy is it refused;
//! - a client that goes away mid-request is a `debug` line, not an error;
//! - graceful shutdown: the listener closes, connections finish the request in hand;
//! - the edge in front of every route ([`Edge`]): the caller is authenticated once, before
//!   any route sees the request; a command's body is read whole (within the body
//!   timeout) before it takes a slot on the write path, so a client that sends its body
//!   slowly holds only its own connection.

use api::{
    Authenticator, BODY_LIMIT_BYTES, DRAIN_LIMIT_BYTES, Principal, Problem, Unauthenticated,
};
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{IntCounter, IntGauge, Registry};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use warp::Reply;
use warp::filters::BoxedFilter;
use warp::http::header::{AUTHORIZATION, CONNECTION, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use warp::http::{Method, Request, StatusCode};
use warp::reply::Response;

/// Paths served without a key: the probes of an orchestrator.
const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// Served without a key: the probes, and the tracking page's files (its data are not).
fn open_path(path: &str) -> bool {
    OPEN_PATHS.contains(&path) || crate::page::is_page(path)
}

/// Reads that take a tracking token (`?t=`) in place of a key: what a browser's
/// `EventSource` opens (it cannot send `Authorization`), and the status a page shows.
fn takes_tracking_token(path: &str) -> bool {
    let delivery = path
        .strip_prefix("/api/v1/deliveries/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(id, tail)| !id.is_empty() && matches!(tail, "status" | "status/stream"));
    delivery || path == "/api/v1/drones/stream"
}

/// The `t` parameter of a query string.
fn tracking_token(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == "t")
        .map(|(_, value)| value.into_owned())
}
/// The longest request target (path and query) answered as more than a 414.
const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header bytes (names and values) a request may carry; beyond it, 431.
/// (hyper refuses far larger heads itself, with an empty 431.)
const MAX_HEADER_BYTES: usize = 32 * 1024;

#[derive(Clone, Debug)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    /// Requests per second an account or analyst key may send (with a burst of twice
    /// as many); `None`: no limit. Operator and workflow keys are not limited.
    pub rate_per_key: Option<f64>,
    /// Commands (non-GET requests) under way at once; more wait for a slot.
    pub writes_in_flight: usize,
    /// Queries (GET and HEAD, the probes aside) under way at once; more wait for a slot.
    pub reads_in_flight: usize,
    /// How long a request may wait for a slot before it is shed (503 + `Retry-After`).
    pub shed_after: Duration,
    /// A command's body must arrive within this of its headers, else 408.
    pub body_timeout: Duration,
}

/// What the edge counts on `/metrics`, with the connection counts.
#[derive(Clone)]
pub struct ServerMetrics {
    open: IntGauge,
    refused: IntCounter,
    shed: IntCounter,
    rate_limited: IntCounter,
}

impl ServerMetrics {
    pub fn new(registry: &Registry) -> Result<ServerMetrics, prometheus::Error> {
        let open = IntGauge::new("http_connections_open", "HTTP connections being served")?;
        let refused = IntCounter::new(
            "http_connections_refused_total",
            "HTTP connections closed at once because the connection cap was reached",
        )?;
        let shed = IntCounter::new(
            "http_requests_shed_total",
            "Commands answered 503 at once because the write path stayed full for longer than the shedding bound",
        )?;
        let rate_limited = IntCounter::new(
            "http_requests_rate_limited_total",
            "Requests answered 429 because their key sent more than its rate",
        )?;
        for counter in [&refused, &shed, &rate_limited] {
            registry.register(Box::new(counter.clone()))?;
        }
        registry.register(Box::new(open.clone()))?;
        Ok(ServerMetrics {
            open,
            refused,
            shed,
            rate_limited,
        })
    }
}

/// What every request passes before the routes, in this order: bounded size (414, 431),
/// authentication (401), the key's rate (429), and for commands a slot on the write path
/// within the shedding bound (503). The principal goes into the request's extensions,
/// where the handlers find it (`warp::ext::get`).
#[derive(Clone)]
pub struct Edge {
    routes: BoxedFilter<(Response,)>,
    auth: Arc<Authenticator>,
    guard: Arc<Guard>,
}

struct Guard {
    rate: Option<RateLimits>,
    writes: Arc<Semaphore>,
    reads: Arc<Semaphore>,
    shed_after: Duration,
    body_timeout: Duration,
    metrics: ServerMetrics,
}

impl Edge {
    pub fn new(
        routes: BoxedFilter<(Response,)>,
        auth: Arc<Authenticator>,
        limits: &Limits,
        metrics: ServerMetrics,
    ) -> Edge {
        let guard = Guard {
            rate: limits.rate_per_key.map(RateLimits::new),
            writes: Arc::new(Semaphore::new(limits.writes_in_flight.max(1))),
            reads: Arc::new(Semaphore::new(limits.reads_in_flight.max(1))),
            shed_after: limits.shed_after,
            body_timeout: limits.body_timeout,
            metrics,
        };
        Edge {
            routes,
            auth,
            guard: Arc::new(guard),
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for Edge {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let mut routes = warp::service(self.routes.clone());
        let auth = self.auth.clone();
        let guard = self.guard.clone();
        Box::pin(async move {
            if let Some(refused) = oversized(&request) {
                return Ok(refused);
            }
            if !open_path(request.uri().path()) {
                let header = request.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
                let token = match (header, request.method()) {
                    (None, &Method::GET | &Method::HEAD)
                        if takes_tracking_token(request.uri().path()) =>
                    {
                        tracking_token(request.uri().query())
                    }
                    _ => None,
                };
                let principal = match token {
                    Some(token) => auth.viewer(&token),
                    None => auth.principal(header).await,
                };
                let principal = match principal {
                    Ok(principal) => principal,
                    Err(why) => return Ok(unauthenticated(&why)),
                };
                if let Some(wait) = guard.rate.as_ref().and_then(|r| r.take(&principal)) {
                    guard.metrics.rate_limited.inc();
                    return Ok(retry_later(
                        StatusCode::TOO_MANY_REQUESTS,
                        "this key sent more requests than its rate allows",
                        wait,
                    ));
                }
                request.extensions_mut().insert(principal);
            }
            let writes = !matches!(*request.method(), Method::GET | Method::HEAD);
            let answer = if writes {
                // The body first, holding no slot; then a slot for the work itself.
                let (parts, body) = request.into_parts();
                let body = match read_body(body, guard.body_timeout).await {
                    Ok(body) => body,
                    Err(refused) => return Ok(refused),
                };
                let Some(_slot) = guard.slot(&guard.writes, "write").await else {
                    return Ok(shed("the write path is full; nothing was done"));
                };
                let request = Request::from_parts(parts, Full::new(body));
                answered(tower_service::Service::call(&mut routes, request)).await
            } else if open_path(request.uri().path()) {
                answered(tower_service::Service::call(&mut routes, request)).await
            } else {
                let Some(_slot) = guard.slot(&guard.reads, "read").await else {
                    return Ok(shed("the read path is full"));
                };
                answered(tower_service::Service::call(&mut routes, request)).await
            };
            Ok(answer)
        })
    }
}

impl Guard {
    /// A slot of `slots`, or `None` (counted as shed) when none came within `shed_after`.
    async fn slot(&self, slots: &Arc<Semaphore>, path: &str) -> Option<OwnedSemaphorePermit> {
        match tokio::time::timeout(self.shed_after, slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => Some(slot),
            _ => {
                self.metrics.shed.inc();
                tracing::debug!(path, "request shed");
                None
            }
        }
    }
}

/// 503 with `Retry-After`, for a request shed before any work.
fn shed(why: &str) -> Response {
    retry_later(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("{why}; retry after a moment"),
        Duration::from_secs(1),
    )
}

/// The route's answer; a handler that panics is a bug, and its client still gets an
/// answer (500) and the connection stays usable.
async fn answered(answer: impl Future<Output = Result<Response, Infallible>>) -> Response {
    match AssertUnwindSafe(answer).catch_unwind().await {
        Ok(Ok(answer)) => answer,
        Ok(Err(never)) => match never {},
        Err(_) => {
            tracing::error!("a request handler panicked");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the server failed on this request",
            )
            .into_response()
        }
    }
}

/// A command's whole body, within `timeout`. Past [`BODY_LIMIT_BYTES`] the rest is read
/// and dropped (up to [`DRAIN_LIMIT_BYTES`], so the client sees the 413 rather than a
/// broken pipe) and the answer is 413; past the drain limit the connection closes.
async fn read_body(mut body: Incoming, timeout: Duration) -> Result<Bytes, Response> {
    let read = async {
        let mut kept = BytesMut::new();
        let mut seen: u64 = 0;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                ));
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            seen += data.len() as u64;
            if seen > DRAIN_LIMIT_BYTES {
                break;
            }
            if seen <= BODY_LIMIT_BYTES as u64 {
                kept.extend_from_slice(&data);
            }
        }
        if seen > BODY_LIMIT_BYTES as u64 {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {BODY_LIMIT_BYTES} bytes"),
            ));
        }
        Ok(kept.freeze())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(problem)) => Err(problem.into_response()),
        Err(_) => {
            let mut response = Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s of its headers",
                    timeout.as_secs()
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            Err(response)
        }
    }
}

/// 414 or 431 as a problem, for heads too large to serve.
fn oversized(request: &Request<Incoming>) -> Option<Response> {
    let uri = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if uri > MAX_URI_BYTES {
        let detail = format!("the request target is longer than {MAX_URI_BYTES} bytes");
        return Some(Problem::new(StatusCode::URI_TOO_LONG, detail).into_response());
    }
    let head: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if head > MAX_HEADER_BYTES {
        let detail = format!("the request's headers are larger than {MAX_HEADER_BYTES} bytes");
        return Some(
            Problem::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, detail).into_response(),
        );
    }
    None
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

/// A problem with `Retry-After` (whole seconds, at least 1).
fn retry_later(status: StatusCode, detail: &str, wait: Duration) -> Response {
    let mut response = Problem::new(status, detail).into_response();
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
}

/// A token bucket per account (or analyst) key: `rate` tokens a second, up to twice as
/// many saved.
struct RateLimits {
    rate: f64,
    buckets: Mutex<HashMap<Principal, (f64, Instant)>>,
}

impl RateLimits {
    fn new(rate: f64) -> RateLimits {
        RateLimits {
            rate: rate.max(0.001),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `who`; `Some(wait)` when there is none.
    fn take(&self, who: &Principal) -> Option<Duration> {
        if who.is_operator() {
            return None;
        }
        let burst = self.rate * 2.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, at) = buckets.entry(who.clone()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

/// How long shutdown waits for connections to finish the request in hand.
const DRAIN: Duration = Duration::from_secs(10);

/// When the cap is reached, how long a new connection waits for the one it evicted.
const EVICTION_WAIT: Duration = Duration::from_millis(50);

/// The connections being served, oldest first: each one's signal to close once idle, and
/// whether it has sent a request yet.
#[derive(Default)]
struct Connections {
    next: u64,
    open: BTreeMap<u64, (Arc<Notify>, Arc<AtomicBool>)>,
}

impl Connections {
    fn add(&mut self, close: Arc<Notify>, spoke: Arc<AtomicBool>) -> u64 {
        self.next += 1;
        self.open.insert(self.next, (close, spoke));
        self.next
    }

    /// Asks one connection to close once idle: the oldest that never sent a request (a
    /// silent socket), else the oldest (an idle keep-alive one closes at once, a busy one
    /// after its request) — as nginx reuses idle keep-alive connections when it runs out.
    fn evict_one(&self) {
        let silent = self
            .open
            .values()
            .find(|(_, spoke)| !spoke.load(Ordering::Relaxed));
        if let Some((close, _)) = silent.or_else(|| self.open.values().next()) {
            close.notify_one();
        }
    }

    fn close_all(&self) {
        for (close, _) in self.open.values() {
            close.notify_one();
        }
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
    let connections = Arc::new(Mutex::new(Connections::default()));
    let registry = || connections.lock().unwrap_or_else(|e| e.into_inner());
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
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // Full: make room by closing an idle connection, not by refusing this one.
                registry().evict_one();
                match tokio::time::timeout(EVICTION_WAIT, slots.clone().acquire_owned()).await {
                    Ok(Ok(slot)) => slot,
                    _ => {
                        metrics.refused.inc();
                        drop(stream);
                        continue;
                    }
                }
            }
        };
        let close = Arc::new(Notify::new());
        let spoke = Arc::new(AtomicBool::new(false));
        let id = registry().add(close.clone(), spoke.clone());
        let service = Spoken {
            edge: service.clone(),
            spoke,
        };
        let builder = builder.clone();
        let connections = connections.clone();
        let open = metrics.open.clone();
        open.inc();
        tokio::spawn(async move {
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = close.notified() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = ended {
                // A client that went away, timed out or spoke no HTTP: nothing to fix here.
                tracing::debug!(%error, "connection ended with an error");
            }
            connections
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .open
                .remove(&id);
            open.dec();
            drop(slot);
        });
    }
    drop(listener);
    // Every connection finishes the request in hand, then closes.
    registry().close_all();
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain time; closing them");
    }
}

/// The edge, noting that its connection has sent a request.
#[derive(Clone)]
struct Spoken {
    edge: Edge,
    spoke: Arc<AtomicBool>,
}

impl hyper::service::Service<Request<Incoming>> for Spoken {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.spoke.store(true, Ordering::Relaxed);
        self.edge.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_its_rate_and_the_operator_no_limit() {
        let limits = RateLimits::new(10.0);
        let tenant = Principal::Account("a1".into());
        let taken = (0..25).filter(|_| limits.take(&tenant).is_none()).count();
        assert_eq!(taken, 20, "a burst of twice the rate");
        let wait = limits.take(&tenant).expect("no token left");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(
            limits.take(&Principal::Account("a2".into())).is_none(),
            "each key its own"
        );
        assert!((0..1000).all(|_| limits.take(&Principal::Operator).is_none()));
    }
}
