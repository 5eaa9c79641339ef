//! The query endpoints of SPEC §5. Query parameters are parsed here; every failure is
//! rendered by `QueryError::problem`.

use crate::error::QueryError;
use crate::service::{Freshness, HistoryFilter, QueryService};
use api::{ConsistencyToken, Principal, TOKEN_HEADER};
use chrono::{DateTime, Utc};
use domain::{DroneStatus, Stage};
use serde::Serialize;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use warp::filters::BoxedFilter;
use warp::http::HeaderMap;
use warp::http::header::{ETAG, HeaderValue};
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

/// All query routes under `/api/v1`.
pub fn routes(service: Svc) -> BoxedFilter<(Response,)> {
    let api = || warp::path("api").and(warp::path("v1"));
    let common = move || {
        warp::get()
            .and(with(service.clone()))
            .and(warp::query::<Params>())
            .and(warp::header::headers_cloned())
            .and(warp::ext::get::<Principal>())
    };

    let delivery = api()
        .and(warp::path!("deliveries" / String))
        .and(common())
        .then(
            |id: String, svc: Svc, q: Params, h: HeaderMap, who: Principal| async move {
                let result = async { svc.delivery(&who, &id, &freshness(&q, &h)?).await }.await;
                let version = result.as_ref().ok().map(|(v, _)| v.version);
                render(&svc, "delivery", result, version)
            },
        )
        .boxed();

    let status = api()
        .and(warp::path!("deliveries" / String / "status"))
        .and(common())
        .then(
            |id: String, svc: Svc, q: Params, h: HeaderMap, who: Principal| async move {
                let result =
                    async { svc.delivery_status(&who, &id, &freshness(&q, &h)?).await }.await;
                let version = result.as_ref().ok().map(|(v, _)| v.version);
                render(&svc, "delivery-status", result, version)
            },
        )
        .boxed();

    let timeline = api()
        .and(warp::path!("deliveries" / String / "events"))
        .and(common())
        .then(
            |id: String, svc: Svc, q: Params, h: HeaderMap, who: Principal| async move {
                let result = async {
                    let (events, fresh) = svc.timeline(&who, &id, &freshness(&q, &h)?).await?;
                    Ok((
                        serde_json::json!({"deliveryId": id, "events": events}),
                        fresh,
                    ))
                }
                .await;
                render(&svc, "delivery-events", result, None)
            },
        )
        .boxed();

    let by_stage = api()
        .and(warp::path!("deliveries"))
        .and(common())
        .then(
            |svc: Svc, q: Params, h: HeaderMap, who: Principal| async move {
                let result = async {
                    reads_all(&who)?;
                    let stage = q
                        .get("stage")
                        .ok_or_else(|| {
                            QueryError::Invalid("stage is required (e.g. ?stage=Failed)".into())
                        })
                        .and_then(|s| stage(s))?;
                    let cursor = cursor(&q);
                    svc.deliveries_in_stage(stage, cursor, limit(&q)?, &freshness(&q, &h)?)
                        .await
                }
                .await;
                render(&svc, "deliveries-in-stage", result, None)
            },
        )
        .boxed();

    let history = api()
        .and(warp::path!("accounts" / String / "deliveries"))
        .and(common())
        .then(
            |id: String, svc: Svc, q: Params, h: HeaderMap, who: Principal| async move {
                let result = async {
                    let stage = q.get("stage").map(|s| stage(s)).transpose()?;
                    let filter = HistoryFilter {
                        stage,
                        from: time(&q, "from")?,
                        to: time(&q, "to")?,
                        cursor: cursor(&q).map(str::to_owned),
                        limit: limit(&q)?,
                    };
                    svc.history(&who, &id, &filter, &freshness(&q, &h)?).await
                }
                .await;
                render(&svc, "account-deliveries", result, None)
            },
        )
        .boxed();

    let invoice = api()
        .and(warp::path!("accounts" / String / "invoice"))
        .and(common())
        .then(
            |id: String, svc: Svc, q: Params, h: HeaderMap, who: Principal| async move {
                let result = async {
                    let year = param::<i32>(&q, "year")?
                        .filter(|y| (1970..=9999).contains(y))
                        .ok_or_else(|| {
                            QueryError::Invalid("year (1970-9999) is required".into())
                        })?;
                    let month = param::<u32>(&q, "month")?
                        .filter(|m| (1..=12).contains(m))
                        .ok_or_else(|| QueryError::Invalid("month (1-12) is required".into()))?;
                    svc.invoice(&who, &id, year, month, &freshness(&q, &h)?)
                        .await
                }
                .await;
                render(&svc, "invoice", result, None)
            },
        )
        .boxed();

    let drone = api()
        .and(warp::path!("drones" / String))
        .and(common())
        .then(
            |id: String, svc: Svc, q: Params, h: HeaderMap, who: Principal| async move {
                let result = async {
                    reads_all(&who)?;
                    svc.drone(&id, &freshness(&q, &h)?).await
                }
                .await;
                let version = result.as_ref().ok().map(|(v, _)| v.version);
                render(&svc, "drone", result, version)
            },
        )
        .boxed();

    let fleet = api()
        .and(warp::path!("drones"))
        .and(common())
        .then(
            |svc: Svc, q: Params, h: HeaderMap, who: Principal| async move {
                let result = async {
                    reads_all(&who)?;
                    let status = match q.get("status").filter(|s| !s.is_empty()) {
                        Some(s) => Some(
                            s.parse::<DroneStatus>()
                                .map_err(|e| QueryError::Invalid(e.to_string()))?,
                        ),
                        None => None,
                    };
                    let cursor = cursor(&q);
                    if let Some(c) = cursor {
                        fleet_cursor(c)?;
                    }
                    svc.fleet(status, cursor, limit(&q)?, &freshness(&q, &h)?)
                        .await
                }
                .await;
                render(&svc, "fleet", result, None)
            },
        )
        .boxed();

    let dead_letters = api()
        .and(warp::path!("dead-letters"))
        .and(common())
        .then(
            |svc: Svc, q: Params, _h: HeaderMap, who: Principal| async move {
                let result = async {
                    reads_all(&who)?;
                    let items = svc.dead_letters(limit(&q)?).await?;
                    Ok((serde_json::json!({ "items": items }), true))
                }
                .await;
                render(&svc, "dead-letters", result, None)
            },
        )
        .boxed();

    by_stage
        .or(dead_letters)
        .unify()
        .or(delivery)
        .unify()
        .or(status)
        .unify()
        .or(timeline)
        .unify()
        .or(history)
        .unify()
        .or(invoice)
        .unify()
        .or(drone)
        .unify()
        .or(fleet)
        .unify()
        .boxed()
}
