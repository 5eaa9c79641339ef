//! `drone-delivery replay --projection NAME`: a read model rebuilt from offset zero into
//! a new generation while the current one serves, then switched over and the old one
//! dropped (blue/green; `projections::rebuild`).
//!
//! Where it runs:
//! * against a running process that hosts the projectors (`--url`): the operator endpoint
//!   `POST /api/v1/replays` starts the rebuild there, and the command follows
//!   `GET /api/v1/replays/{projection}` (the embedded engine is one process's);
//! * on a stopped data directory (`--data-dir`): the command is the only process, builds
//!   the new generation itself and switches at once;
//! * on Kafka (`--log kafka://… --store scylla://…`): the command builds the new
//!   generation itself, beside the projector processes (which join in and take it over
//!   at the switch), and keeps it going for a grace period before it drops the old one.

use crate::progress::Progress;
use crate::settings::{LogLocation, Settings, StoreLocation};
use crate::startup;
use anyhow::{Context, bail};
use api::{Principal, Problem};
use chrono::{DateTime, Utc};
use projections::{Projector, ProjectorMetrics, RebuildOptions, RebuildProgress, model_named};
use read_model::Model;
use read_model::generations::Current;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use storage::{EventLog, ReadStore};
use storage_embedded::DataDirLock;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

/// A rebuild as the endpoint reports it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayStatus {
    pub projection: String,
    /// `building`, `switched` (the new generation serves; the old one goes after the
    /// grace), `done` or `failed`.
    pub state: String,
    /// The generation being built (0 until the rebuild has chosen it).
    pub generation: u32,
    /// Records the new generation has passed, of `total` it must pass before the switch.
    pub applied: u64,
    pub total: u64,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// From the start to the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ReplayStatus {
    fn building(model: Model) -> ReplayStatus {
        ReplayStatus {
            projection: model.name.to_owned(),
            state: "building".into(),
            generation: 0,
            applied: 0,
            total: 0,
            started_at: Utc::now(),
            finished_at: None,
            took_ms: None,
            error: None,
        }
    }

    fn finished(&self) -> bool {
        !matches!(self.state.as_str(), "building" | "switched")
    }
}

/// The rebuilds started through this process's endpoint, by model.
#[derive(Clone)]
pub struct Replays {
    log: Arc<dyn EventLog>,
    /// The real store, not a view of it.
    store: Arc<dyn ReadStore>,
    current: Current,
    status: Arc<Mutex<HashMap<&'static str, ReplayStatus>>>,
}

impl Replays {
    pub fn new(log: Arc<dyn EventLog>, store: Arc<dyn ReadStore>, current: Current) -> Replays {
        Replays {
            log,
            store,
            current,
            status: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn status(&self, model: Model) -> Option<ReplayStatus> {
        let status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        status.get(model.name).cloned()
    }

    fn update(&self, model: Model, change: impl FnOnce(&mut ReplayStatus)) {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = status.get_mut(model.name) {
            change(entry);
        }
    }

    /// Starts a rebuild run by this process's projector host; `None` when one of the
    /// model is under way here already.
    fn start(&self, model: Model) -> Option<ReplayStatus> {
        let first = {
            let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            if status.get(model.name).is_some_and(|s| !s.finished()) {
                return None;
            }
            let first = ReplayStatus::building(model);
            status.insert(model.name, first.clone());
            first
        };
        let replays = self.clone();
        tokio::spawn(async move {
            let options = RebuildOptions {
                build_here: None,
                grace: Current::GRACE,
            };
            let watcher = replays.clone();
            let outcome = projections::rebuild(
                replays.log.as_ref(),
                &replays.store,
                model,
                &replays.current,
                options,
                move |at: RebuildProgress| {
                    watcher.update(model, |s| {
                        (s.generation, s.applied, s.total) = (at.generation, at.applied, at.total);
                        if at.switched {
                            s.state = "switched".into();
                        }
                    });
                },
            )
            .await;
            replays.update(model, |s| {
                s.finished_at = Some(Utc::now());
                match outcome {
                    Ok(rebuilt) => {
                        s.state = "done".into();
                        s.generation = rebuilt.generation;
                        s.took_ms = Some(rebuilt.took.as_millis() as u64);
                    }
                    Err(error) => {
                        tracing::error!(model = model.name, %error, "rebuild failed");
                        s.state = "failed".into();
                        s.error = Some(error.to_string());
                    }
                }
            });
        });
        Some(first)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    projection: String,
}

fn operator_only(who: &Principal) -> Option<Response> {
    (!who.is_operator()).then(|| {
        Problem::new(
            StatusCode::FORBIDDEN,
            "only the operator rebuilds read models",
        )
        .into_response()
    })
}

/// `POST /api/v1/replays` (202, or 409 while one of the model runs here) and
/// `GET /api/v1/replays/{projection}`: operators only, on a process that runs the
/// projectors.
pub fn routes(replays: Replays) -> BoxedFilter<(Response,)> {
    let starting = replays.clone();
    let start = warp::path!("api" / "v1" / "replays")
        .and(warp::post())
        .and(warp::ext::get::<Principal>())
        .and(warp::header::headers_cloned())
        .and(api::limited_body(api::BODY_LIMIT_BYTES))
        .and_then(|who, headers, body: bytes::Bytes| async move {
            api::json_content(&headers, &body)?;
            Ok::<_, warp::Rejection>((who, body))
        })
        .untuple_one()
        .map(move |who: Principal, body: bytes::Bytes| {
            if let Some(refused) = operator_only(&who) {
                return refused;
            }
            let request: ReplayRequest = match serde_json::from_slice(&body) {
                Ok(request) => request,
                Err(e) => {
                    return Problem::new(
                        StatusCode::BAD_REQUEST,
                        format!("the body is not a replay request: {e}"),
                    )
                    .into_response();
                }
            };
            let model = match model_named(&request.projection) {
                Ok(model) => model,
                Err(why) => {
                    return Problem::new(StatusCode::UNPROCESSABLE_ENTITY, why).into_response();
                }
            };
            match starting.start(model) {
                Some(status) => warp::reply::with_header(
                    warp::reply::with_status(warp::reply::json(&status), StatusCode::ACCEPTED),
                    "location",
                    format!("/api/v1/replays/{}", model.name),
                )
                .into_response(),
                None => Problem::new(
                    StatusCode::CONFLICT,
                    format!("a rebuild of {} is under way", model.name),
                )
                .into_response(),
            }
        });
    let status = warp::path!("api" / "v1" / "replays" / String)
        .and(warp::get())
        .and(warp::ext::get::<Principal>())
        .map(move |name: String, who: Principal| {
            if let Some(refused) = operator_only(&who) {
                return refused;
            }
            let model = match model_named(&name) {
                Ok(model) => model,
                Err(why) => return Problem::new(StatusCode::NOT_FOUND, why).into_response(),
            };
            match replays.status(model) {
                Some(status) => warp::reply::json(&status).into_response(),
                None => Problem::new(
                    StatusCode::NOT_FOUND,
                    format!("no rebuild of {} was started on this process", model.name),
                )
                .into_response(),
            }
        });
    start.or(status).unify().boxed()
}

/// `replay` against a running process (`url`): starts the rebuild there and follows it.
pub async fn through(url: &str, key: &str, model: Model) -> anyhow::Result<ReplayStatus> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot build the HTTP client")?;
    let base = url.trim_end_matches('/');
    let answer = client
        .post(format!("{base}/api/v1/replays"))
        .bearer_auth(key.trim())
        .json(&serde_json::json!({ "projection": model.name }))
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    if answer.status() != reqwest::StatusCode::ACCEPTED {
        let status = answer.status();
        bail!(
            "{base} refused the rebuild: {status} {}",
            answer.text().await.unwrap_or_default()
        );
    }
    let mut progress = Progress::new("replay");
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let answer = client
            .get(format!("{base}/api/v1/replays/{}", model.name))
            .bearer_auth(key.trim())
            .send()
            .await
            .with_context(|| format!("cannot reach {base}"))?;
        let status: ReplayStatus = answer
            .error_for_status()
            .context("the rebuild's status")?
            .json()
            .await
            .context("the rebuild's status")?;
        progress.at(status.applied, status.total);
        if status.finished() {
            progress.finish();
            if let Some(error) = &status.error {
                bail!("the rebuild of {} failed: {error}", model.name);
            }
            return Ok(status);
        }
    }
}

/// `replay` where nothing else holds the log's data directory (a stopped server), or on
/// Kafka: builds the new generation here.
pub async fn here(settings: &Settings, model: Model) -> anyhow::Result<projections::Rebuilt> {
    // The embedded engine is one process's: a running server holds it.
    let embedded = matches!(settings.log_location(), LogLocation::Embedded(_))
        || matches!(settings.store_location(), StoreLocation::Embedded(_));
    let _lock = if embedded {
        Some(DataDirLock::acquire(&settings.data_dir).with_context(|| {
            format!(
                "cannot open {}: a server is running on it, so rebuild through it with --url",
                settings.data_dir.display()
            )
        })?)
    } else {
        None
    };
    let log = startup::open_log(settings)?;
    let store = startup::open_store(settings).await?;
    let codec = startup::codec(settings).await?;
    let metrics = ProjectorMetrics::new(&prometheus::Registry::new())?;
    let projector = Projector::new(log.clone(), store.clone(), codec, metrics, Duration::ZERO);
    let current = Current::new();
    current.refresh(store.as_ref()).await?;
    let options = RebuildOptions {
        build_here: Some(projector),
        // Alone on a data directory, nobody reads the old generation any more.
        grace: if embedded {
            Duration::ZERO
        } else {
            Current::GRACE
        },
    };
    let mut progress = Progress::new("replay");
    let rebuilt = projections::rebuild(log.as_ref(), &store, model, &current, options, |at| {
        progress.at(at.applied, at.total)
    })
    .await
    .with_context(|| format!("cannot rebuild {}", model.name))?;
    progress.finish();
    Ok(rebuilt)
}
