//! Operations endpoints: liveness, readiness, metrics and the API description.

use api::Problem;
use prometheus::{Encoder, Registry, TextEncoder};
use schemas::events::Topic;
use std::sync::Arc;
use storage::{EventLog, ReadStore};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::http::header::{CONTENT_TYPE, HeaderValue};
use warp::reply::Response;
use warp::{Filter, Reply};

const OPENAPI: &str = include_str!("openapi.json");
/// How long `/readyz` waits for a store to answer.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// A condition of the process's roles for `/readyz`: `Err(why)` while not ready.
pub type ReadyCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The operations endpoints of a process; `store` is the read store if the process has
/// one (readiness asks every store the process uses, then every role's `checks`).
pub fn routes(
    log: Arc<dyn EventLog>,
    store: Option<Arc<dyn ReadStore>>,
    registry: Registry,
    checks: Vec<ReadyCheck>,
) -> BoxedFilter<(Response,)> {
    let checks = Arc::new(checks);
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&serde_json::json!({"status": "ok"})).into_response());

    let readyz = warp::path!("readyz").and(warp::get()).then(move || {
        let (log, store, checks) = (log.clone(), store.clone(), checks.clone());
        async move {
            // Ready when the stores answer, within a short time (a broker that does not
            // answer makes the process not ready, not a hanging probe).
            let log_ok = match tokio::time::timeout(
                READY_WITHIN,
                log.end_offset(Topic::Deliveries.name(), 0),
            )
            .await
            {
                Ok(answer) => answer.map(|_| ()),
                Err(_) => Err(storage::StorageError::Unavailable(format!(
                    "the event log did not answer within {READY_WITHIN:?}"
                ))),
            };
            let store_ok = match &store {
                Some(store) => store
                    .checkpoint("deliveries", Topic::Deliveries.name(), 0)
                    .await
                    .map(|_| ()),
                None => Ok(()),
            };
            let roles_ok = checks.iter().try_for_each(|check| check());
            match (log_ok, store_ok, roles_ok) {
                (Ok(_), Ok(_), Ok(())) => {
                    warp::reply::json(&serde_json::json!({"status": "ready"})).into_response()
                }
                (Err(e), _, _) | (_, Err(e), _) => {
                    Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}"))
                        .into_response()
                }
                (_, _, Err(why)) => {
                    Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}"))
                        .into_response()
                }
            }
        }
    });

    // Counts across every tenant: for operators and analysts (and their scrapers).
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(warp::ext::get::<api::Principal>())
        .map(move |who: api::Principal| {
            if !who.reads_all() {
                return Problem::new(
                    StatusCode::FORBIDDEN,
                    "only operator and analyst keys read the metrics",
                )
                .into_response();
            }
            let mut body = Vec::new();
            let encoder = TextEncoder::new();
            match encoder.encode(&registry.gather(), &mut body) {
                Ok(()) => {
                    let mut response = Response::new(body.into());
                    if let Ok(v) = HeaderValue::from_str(encoder.format_type()) {
                        response.headers_mut().insert(CONTENT_TYPE, v);
                    }
                    response
                }
                Err(e) => {
                    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
                }
            }
        });

    let openapi = warp::path!("api" / "v1" / "openapi.json")
        .and(warp::get())
        .map(|| {
            let mut response = Response::new(OPENAPI.into());
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        });

    healthz
        .or(readyz)
        .unify()
        .or(metrics)
        .unify()
        .or(openapi)
        .unify()
        .boxed()
}

/// The methods of each path of the API description, as (segments, methods); a segment
/// `{…}` matches any one segment.
fn described_paths() -> Vec<(Vec<String>, Vec<String>)> {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(OPENAPI) else {
        return Vec::new();
    };
    let Some(paths) = doc["paths"].as_object() else {
        return Vec::new();
    };
    paths
        .iter()
        .map(|(path, item)| {
            let segments = path
                .trim_matches('/')
                .split('/')
                .map(str::to_owned)
                .collect();
            let mut methods: Vec<String> = item
                .as_object()
                .map(|ops| {
                    ops.keys()
                        .filter(|k| {
                            ["get", "put", "post", "delete", "patch", "head"].contains(&k.as_str())
                        })
                        .map(|k| k.to_ascii_uppercase())
                        .collect()
                })
                .unwrap_or_default();
            if methods.iter().any(|m| m == "GET") && !methods.iter().any(|m| m == "HEAD") {
                methods.push("HEAD".to_owned());
            }
            (segments, methods)
        })
        .collect()
}

/// Placed after every route: a request for a path the API describes, with a method it
/// does not take, gets 405 with `Allow` (the methods it does take). Anything else is
/// left to the other routes' rejections.
pub fn method_not_allowed() -> BoxedFilter<(Response,)> {
    let paths = Arc::new(described_paths());
    warp::path::full()
        .and(warp::method())
        .and_then(
            move |full: warp::path::FullPath, method: warp::http::Method| {
                let paths = paths.clone();
                async move {
                    let segments: Vec<&str> = full.as_str().trim_matches('/').split('/').collect();
                    let allowed: Vec<&String> = paths
                        .iter()
                        .filter(|(template, _)| {
                            template.len() == segments.len()
                                && template
                                    .iter()
                                    .zip(&segments)
                                    .all(|(t, s)| t.starts_with('{') || t == s)
                        })
                        .flat_map(|(_, methods)| methods)
                        .collect();
                    if allowed.is_empty() || allowed.iter().any(|m| m.as_str() == method.as_str()) {
                        return Err(warp::reject::not_found());
                    }
                    let mut names: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
                    names.sort_unstable();
                    names.dedup();
                    let mut response = Problem::new(
                        StatusCode::METHOD_NOT_ALLOWED,
                        format!("{method} is not allowed here; use {}", names.join(", ")),
                    )
                    .into_response();
                    if let Ok(value) = HeaderValue::from_str(&names.join(", ")) {
                        response
                            .headers_mut()
                            .insert(warp::http::header::ALLOW, value);
                    }
                    Ok::<_, warp::Rejection>(response)
                }
            },
        )
        .boxed()
}
