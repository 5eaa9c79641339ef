//! The query endpoints of SPEC §5. Query parameters are parsed here; every failure is
//! rendered by `QueryError::problem`.

use crate::error::QueryError;
use crate::service::{Freshness, HistoryFilter, QueryService};
use crate::streams::{Events, Refused, Streams};
use api::{ConsistencyToken, Principal, TOKEN_HEADER};
use chrono::{DateTime, Utc};
use domain::{DroneStatus, Stage};
use serde::Serialize;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use warp::filters::BoxedFilter;
use warp::http::header::{ETAG, HeaderValue};
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;
/// Set to `false` on answers that did not reach the asked-for freshness in time.
const FRESH_HEADER: &str = "x-consistency-reached";

type Params = HashMap<String, String>;
type Svc = Arc<QueryService>;

fn param<T: std::str::FromStr>(params: &Params, name: &str) -> Result<Option<T>, QueryError> {
    params
        .get(name)
        .map(|v| {
            v.parse::<T>().map_err(|_| {
                QueryError::Invalid(format!("query parameter {name}={v:?} is not valid"))
            })
        })
        .transpose()
}

fn freshness(params: &Params, headers: &HeaderMap) -> Result<Freshness, QueryError> {
    let token = |t: &str| t.parse::<ConsistencyToken>().map_err(QueryError::Invalid);
    // Both are checked; the query parameter wins.
    let header = match headers.get(TOKEN_HEADER) {
        Some(v) => Some(token(v.to_str().map_err(|_| {
            QueryError::Invalid(format!("header {TOKEN_HEADER} is not visible ASCII"))
        })?)?),
        None => None,
    };
    let query = params
        .get("consistencyToken")
        .map(|t| token(t))
        .transpose()?;
    // Versions are Avro longs: one past i64::MAX names no version there can be.
    let min_version = param::<u64>(params, "minVersion")?;
    if min_version.is_some_and(|v| i64::try_from(v).is_err()) {
        return Err(QueryError::Invalid(
            "minVersion must be at most 9223372036854775807".into(),
        ));
    }
    Ok(Freshness {
        token: query.or(header),
        min_version,
    })
}

/// The fleet's cursor: `<status>/<drone id>` of the last drone served.
fn fleet_cursor(cursor: &str) -> Result<(), QueryError> {
    let valid = cursor.split_once('/').is_some_and(|(status, id)| {
        status.parse::<DroneStatus>().is_ok()
            && (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    });
    if valid {
        Ok(())
    } else {
        Err(QueryError::Invalid(format!(
            "cursor {cursor:?} is not a fleet cursor (<status>/<drone id>)"
        )))
    }
}

/// `nextCursor` of the previous page; empty is the first page.
fn cursor(params: &Params) -> Option<&str> {
    params
        .get("cursor")
        .map(String::as_str)
        .filter(|c| !c.is_empty())
}

fn limit(params: &Params) -> Result<usize, QueryError> {
    match param::<usize>(params, "limit")? {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(QueryError::Invalid(format!(
            "limit {n} is outside 1..={MAX_PAGE}"
        ))),
    }
}

fn time(params: &Params, name: &str) -> Result<Option<DateTime<Utc>>, QueryError> {
    params
        .get(name)
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| QueryError::Invalid(format!("{name}={v:?} is not an RFC 3339 time")))
        })
        .transpose()
}

fn stage(s: &str) -> Result<Stage, QueryError> {
    s.parse::<Stage>()
        .map_err(|_| QueryError::Invalid(format!("stage {s:?} is not a delivery stage")))
}

fn render<T: Serialize>(
    svc: &QueryService,
    query: &str,
    result: Result<(T, bool), QueryError>,
    version: Option<u64>,
) -> Response {
    let response = match result {
        Ok((body, fresh)) => {
            let mut response = warp::reply::json(&body).into_response();
            let headers = response.headers_mut();
            if !fresh {
                headers.insert(FRESH_HEADER, HeaderValue::from_static("false"));
            }
            if let Some(v) = version.and_then(|v| HeaderValue::from_str(&format!("\"{v}\"")).ok()) {
                headers.insert(ETAG, v);
            }
            response
        }
        Err(e) => e.problem().into_response(),
    };
    svc.metrics
        .queries
        .with_label_values(&[query, response.status().as_str()])
        .inc();
    response
}

fn with(service: Svc) -> impl Filter<Extract = (Svc,), Error = Infallible> + Clone {
    warp::any().map(move || service.clone())
}

/// The fleet, every tenant's deliveries by stage, dead letters: operators' and
/// analysts' reads.
fn reads_all(who: &Principal) -> Result<(), QueryError> {
    if who.reads_all() {
        Ok(())
    } else {
        Err(QueryError::Forbidden(
            "only operator and analyst keys read this".into(),
        ))
    }
}

/// What every query handler gets: the service, the query string, the headers and the
/// principal the edge authenticated.
struct Query {
    svc: Svc,
    params: Params,
    headers: HeaderMap,
    who: Principal,
}

impl Query {
    fn freshness(&self) -> Result<Freshness, QueryError> {
        freshness(&self.params, &self.headers)
    }
}

async fn delivery(id: String, q: Query) -> Response {
    let result = async {
        match time(&q.params, "at")? {
            Some(at) => q.svc.delivery_at(&q.who, &id, at, &q.freshness()?).await,
            None => q.svc.delivery(&q.who, &id, &q.freshness()?).await,
        }
    }
    .await;
    let version = result.as_ref().ok().map(|(v, _)| v.version);
    render(&q.svc, "delivery", result, version)
}

async fn delivery_status(id: String, q: Query) -> Response {
    let result = async {
        match time(&q.params, "at")? {
            Some(at) if q.who.reads_all() || q.who.account().is_some() => {
                q.svc
                    .delivery_status_at(&q.who, &id, at, &q.freshness()?)
                    .await
            }
            // A tracking token follows the delivery now, not its past.
            Some(_) => Err(QueryError::Forbidden(
                "a tracking token reads the current status only".into(),
            )),
            None => q.svc.delivery_status(&q.who, &id, &q.freshness()?).await,
        }
    }
    .await;
    let version = result.as_ref().ok().map(|(v, _)| v.version);
    render(&q.svc, "delivery-status", result, version)
}

async fn timeline(id: String, q: Query) -> Response {
    let result = async {
        let (events, fresh) = q.svc.timeline(&q.who, &id, &q.freshness()?).await?;
        Ok((
            serde_json::json!({"deliveryId": id, "events": events}),
            fresh,
        ))
    }
    .await;
    render(&q.svc, "delivery-events", result, None)
}

/// `GET /deliveries?stage=`: every tenant's deliveries in one stage.
async fn deliveries_in_stage(q: Query) -> Response {
    let result = async {
        reads_all(&q.who)?;
        let stage = q
            .params
            .get("stage")
            .ok_or_else(|| QueryError::Invalid("stage is required (e.g. ?stage=Failed)".into()))
            .and_then(|s| stage(s))?;
        let limit = limit(&q.params)?;
        q.svc
            .deliveries_in_stage(stage, cursor(&q.params), limit, &q.freshness()?)
            .await
    }
    .await;
    render(&q.svc, "deliveries-in-stage", result, None)
}

async fn history(id: String, q: Query) -> Response {
    let result = async {
        let p = &q.params;
        let filter = HistoryFilter {
            stage: p.get("stage").map(|s| stage(s)).transpose()?,
            from: time(p, "from")?,
            to: time(p, "to")?,
            cursor: cursor(p).map(str::to_owned),
            limit: limit(p)?,
        };
        q.svc.history(&q.who, &id, &filter, &q.freshness()?).await
    }
    .await;
    render(&q.svc, "account-deliveries", result, None)
}

async fn invoice(id: String, q: Query) -> Response {
    let result = async {
        let year = param::<i32>(&q.params, "year")?
            .filter(|y| (1970..=9999).contains(y))
            .ok_or_else(|| QueryError::Invalid("year (1970-9999) is required".into()))?;
        let month = param::<u32>(&q.params, "month")?
            .filter(|m| (1..=12).contains(m))
            .ok_or_else(|| QueryError::Invalid("month (1-12) is required".into()))?;
        q.svc
            .invoice(&q.who, &id, year, month, &q.freshness()?)
            .await
    }
    .await;
    render(&q.svc, "invoice", result, None)
}

async fn drone(id: String, q: Query) -> Response {
    let result = async {
        reads_all(&q.who)?;
        q.svc.drone(&id, &q.freshness()?).await
    }
    .await;
    let version = result.as_ref().ok().map(|(v, _)| v.version);
    render(&q.svc, "drone", result, version)
}

async fn fleet(q: Query) -> Response {
    let result = async {
        reads_all(&q.who)?;
        let status = match q.params.get("status").filter(|s| !s.is_empty()) {
            Some(s) => Some(
                s.parse::<DroneStatus>()
                    .map_err(|e| QueryError::Invalid(e.to_string()))?,
            ),
            None => None,
        };
        let cursor = cursor(&q.params);
        if let Some(c) = cursor {
            fleet_cursor(c)?;
        }
        let limit = limit(&q.params)?;
        q.svc.fleet(status, cursor, limit, &q.freshness()?).await
    }
    .await;
    render(&q.svc, "fleet", result, None)
}

/// An event stream's answer: the events with a heartbeat comment when nothing else is
/// sent, so proxies keep the connection and clients notice a dead one.
fn sse(events: Events, heartbeat: Duration) -> Response {
    let events = futures_util::stream::unfold(events, |mut events| async move {
        events.recv().await.map(|event| (event, events))
    });
    let events = warp::sse::keep_alive()
        .interval(heartbeat)
        .text("heartbeat")
        .stream(events);
    let mut response = warp::sse::reply(events).into_response();
    // Tell nginx and its kind not to buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

fn streamed(
    svc: &QueryService,
    kind: &str,
    result: Result<Events, Refused>,
    heartbeat: Duration,
) -> Response {
    let response = match result {
        Ok(events) => sse(events, heartbeat),
        // A stream that has ended: 204 tells an EventSource not to reconnect.
        Err(Refused::Ended) => StatusCode::NO_CONTENT.into_response(),
        Err(Refused::Problem(e)) => e.problem().into_response(),
    };
    svc.metrics
        .queries
        .with_label_values(&[kind, response.status().as_str()])
        .inc();
    response
}

async fn delivery_stream(id: String, q: Query, streams: Arc<Streams>) -> Response {
    let last = q
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let result = match q.freshness() {
        Ok(asked) => streams.delivery(&q.who, &id, last.as_deref(), &asked).await,
        Err(e) => Err(Refused::Problem(e)),
    };
    streamed(
        &q.svc,
        "delivery-status-stream",
        result,
        streams.heartbeat(),
    )
}

async fn fleet_stream(q: Query, streams: Arc<Streams>) -> Response {
    let result = streams.fleet(&q.who).await;
    streamed(&q.svc, "fleet-stream", result, streams.heartbeat())
}

/// The body of `POST /stream-tokens`: empty or `{}` (the fleet), or `{"deliveryId": ".."}`.
fn token_request(body: &[u8]) -> Result<Option<String>, QueryError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let invalid =
        |why: &str| QueryError::Invalid(format!("the body is not a stream token request: {why}"));
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| invalid(&e.to_string()))?;
    let object = value
        .as_object()
        .ok_or_else(|| invalid("not a JSON object"))?;
    if let Some(name) = object.keys().find(|k| *k != "deliveryId") {
        return Err(invalid(&format!("unknown field {name:?}")));
    }
    match object.get("deliveryId") {
        None => Ok(None),
        Some(serde_json::Value::String(id)) => Ok(Some(id.clone())),
        Some(_) => Err(invalid("deliveryId must be a string")),
    }
}

async fn stream_token(svc: Svc, who: Principal, body: bytes::Bytes) -> Response {
    let result = async {
        let delivery_id = token_request(&body)?;
        svc.stream_token(&who, delivery_id.as_deref()).await
    }
    .await;
    let response = match result {
        Ok(token) => {
            let mut response =
                warp::reply::with_status(warp::reply::json(&token), StatusCode::CREATED)
                    .into_response();
            response.headers_mut().insert(
                warp::http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            );
            response
        }
        Err(e) => e.problem().into_response(),
    };
    svc.metrics
        .queries
        .with_label_values(&["stream-token", response.status().as_str()])
        .inc();
    response
}

async fn dead_letters(q: Query) -> Response {
    let result = async {
        reads_all(&q.who)?;
        let items = q.svc.dead_letters(limit(&q.params)?).await?;
        Ok((serde_json::json!({ "items": items }), true))
    }
    .await;
    render(&q.svc, "dead-letters", result, None)
}

/// All query routes under `/api/v1`, one handler each (the edge in front authenticated
/// the caller; each handler checks what it may read).
pub fn routes(service: Svc, streams: Arc<Streams>) -> BoxedFilter<(Response,)> {
    let api = || warp::path("api").and(warp::path("v1"));
    let minter = service.clone();
    let query = move || {
        warp::get()
            .and(with(service.clone()))
            .and(warp::query::<Params>())
            .and(warp::header::headers_cloned())
            .and(warp::ext::get::<Principal>())
            .map(|svc, params, headers, who| Query {
                svc,
                params,
                headers,
                who,
            })
    };
    let minting = api()
        .and(warp::path!("stream-tokens"))
        .and(warp::post())
        .and(with(minter))
        .and(warp::ext::get::<Principal>())
        .and(warp::body::bytes())
        .then(stream_token)
        .boxed();
    let streams = move || {
        let streams = streams.clone();
        warp::any().map(move || streams.clone())
    };
    let routes: Vec<BoxedFilter<(Response,)>> = vec![
        minting,
        api()
            .and(warp::path!("deliveries" / String / "status" / "stream"))
            .and(query())
            .and(streams())
            .then(delivery_stream)
            .boxed(),
        // Before `drones/{id}`, which would take `stream` for an id.
        api()
            .and(warp::path!("drones" / "stream"))
            .and(query())
            .and(streams())
            .then(fleet_stream)
            .boxed(),
        api()
            .and(warp::path!("deliveries"))
            .and(query())
            .then(deliveries_in_stage)
            .boxed(),
        api()
            .and(warp::path!("dead-letters"))
            .and(query())
            .then(dead_letters)
            .boxed(),
        api()
            .and(warp::path!("deliveries" / String))
            .and(query())
            .then(delivery)
            .boxed(),
        api()
            .and(warp::path!("deliveries" / String / "status"))
            .and(query())
            .then(delivery_status)
            .boxed(),
        api()
            .and(warp::path!("deliveries" / String / "events"))
            .and(query())
            .then(timeline)
            .boxed(),
        api()
            .and(warp::path!("accounts" / String / "deliveries"))
            .and(query())
            .then(history)
            .boxed(),
        api()
            .and(warp::path!("accounts" / String / "invoice"))
            .and(query())
            .then(invoice)
            .boxed(),
        api()
            .and(warp::path!("drones" / String))
            .and(query())
            .then(drone)
            .boxed(),
        api()
            .and(warp::path!("drones"))
            .and(query())
            .then(fleet)
            .boxed(),
    ];
    api::one_of(routes)
}
