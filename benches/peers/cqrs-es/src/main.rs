//! A peer of the drone-delivery server for side-by-side benchmarks: the same small HTTP
//! workload (register an account, schedule a delivery, read its status) on cqrs-es 0.5 and
//! postgres-es 0.5 over PostgreSQL, written the way the cqrs-es demo is.
//!
//!   DATABASE_URL=postgres://… cqrs-es-peer --listen 127.0.0.1:8088 [--pool-size N]
//!
//! Routes: `POST /api/v1/accounts` → 201 `{"accountId"}`, `POST /api/v1/deliveries` → 202
//! `{"deliveryId"}`, `GET /api/v1/deliveries/{id}/status` → 200 view / 404, `GET /readyz`,
//! `GET /healthz`.

mod domain;
mod queries;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use cqrs_es::AggregateError;
use cqrs_es::persist::ViewRepository;
use postgres_es::{PostgresCqrs, postgres_cqrs};
use serde::Deserialize;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Pool, Postgres};

use crate::domain::{
    Account, AccountCommand, Delivery, DeliveryCommand, DeliveryPlan, DeliveryServices, DomainError,
};
use crate::queries::StatusRepository;

struct App {
    accounts: PostgresCqrs<Account>,
    deliveries: PostgresCqrs<Delivery>,
    status: Arc<StatusRepository>,
    view_failures: Arc<AtomicU64>,
    pool: Pool<Postgres>,
}

type Shared = Arc<App>;

struct Config {
    listen: SocketAddr,
    database_url: String,
    pool_size: u32,
    check_owner: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: cqrs-es-peer [--listen HOST:PORT] [--pool-size N] [--no-owner-check]\n\
         env: DATABASE_URL (required), PEER_LISTEN, PEER_POOL_SIZE"
    );
    std::process::exit(2)
}

fn config() -> Config {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
    let mut listen = std::env::var("PEER_LISTEN").unwrap_or_else(|_| "127.0.0.1:8088".into());
    let mut pool_size = std::env::var("PEER_POOL_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2 * cpus + 4);
    let mut check_owner = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .unwrap_or_else(|| usage())
        };
        match flag.as_str() {
            "--listen" => listen = value(),
            "--pool-size" => pool_size = value().parse().unwrap_or_else(|_| usage()),
            "--no-owner-check" => check_owner = false,
            _ => usage(),
        }
    }
    let Ok(database_url) = std::env::var("DATABASE_URL") else {
        eprintln!("DATABASE_URL is not set");
        usage()
    };
    let listen = listen.parse().unwrap_or_else(|e| {
        eprintln!("bad listen address {listen}: {e}");
        usage()
    });
    Config {
        listen,
        database_url,
        pool_size: pool_size.max(1),
        check_owner,
    }
}

async fn connect(config: &Config) -> Pool<Postgres> {
    let options = PgPoolOptions::new()
        .max_connections(config.pool_size)
        .acquire_timeout(Duration::from_secs(10));
    let mut tries = 0;
    loop {
        match options.clone().connect(&config.database_url).await {
            Ok(pool) => return pool,
            Err(e) if tries < 50 => {
                tries += 1;
                eprintln!("waiting for the database: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                eprintln!("cannot connect to the database: {e}");
                std::process::exit(1)
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let config = config();
    let pool = connect(&config).await;
    if let Err(e) = sqlx::raw_sql(include_str!("schema.sql"))
        .execute(&pool)
        .await
    {
        eprintln!("cannot create the schema: {e}");
        std::process::exit(1)
    }

    let (status_query, status, view_failures) = queries::delivery_status(pool.clone());
    let app = Arc::new(App {
        accounts: postgres_cqrs(pool.clone(), vec![], ()),
        deliveries: postgres_cqrs(
            pool.clone(),
            vec![Box::new(status_query)],
            DeliveryServices::new(pool.clone(), config.check_owner),
        ),
        status,
        view_failures,
        pool,
    });

    let router = Router::new()
        .route("/api/v1/accounts", post(register_account))
        .route("/api/v1/deliveries", post(schedule_delivery))
        .route("/api/v1/deliveries/{id}/status", get(delivery_status))
        .route("/readyz", get(ready))
        .route("/healthz", get(healthy))
        .with_state(app.clone());

    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", config.listen);
            std::process::exit(1)
        }
    };
    eprintln!(
        "cqrs-es peer listening on http://{} (pool {}, owner check {})",
        config.listen, config.pool_size, config.check_owner
    );
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown())
        .await
    {
        eprintln!("server error: {e}");
    }
    let failures = app.view_failures.load(Ordering::Relaxed);
    eprintln!("stopped; view update failures: {failures}");
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

// ---------------------------------------------------------------------------------------
// Handlers
//
// Commands run in a task of their own. hyper drops a handler's future when its client
// disconnects, and cqrs-es's `execute` commits the events and only then updates the views:
// dropped in between, the events stay and the view row never comes (seen at the end of
// every wrk run, when wrk closes its connections). A spawned task finishes regardless.

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

fn command_error(e: AggregateError<DomainError>) -> Response {
    match e {
        AggregateError::UserError(DomainError::Invalid(m)) => error(StatusCode::BAD_REQUEST, m),
        AggregateError::UserError(e @ DomainError::UnknownOwner(_)) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, e)
        }
        AggregateError::UserError(DomainError::Conflict(m)) => error(StatusCode::CONFLICT, m),
        AggregateError::UserError(DomainError::Unavailable(m)) => {
            error(StatusCode::SERVICE_UNAVAILABLE, m)
        }
        AggregateError::AggregateConflict => error(StatusCode::CONFLICT, "aggregate conflict"),
        AggregateError::DatabaseConnectionError(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        e => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RegisterAccountBody {
    name: String,
    email: String,
}

async fn register_account(State(app): State<Shared>, body: Bytes) -> Response {
    let body: RegisterAccountBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let id = uuid::Uuid::new_v4().to_string();
    let command = AccountCommand::RegisterAccount {
        name: body.name,
        email: body.email,
    };
    let task = {
        let id = id.clone();
        tokio::spawn(async move { app.accounts.execute(&id, command).await })
    };
    match task.await {
        Ok(Ok(())) => (StatusCode::CREATED, Json(json!({ "accountId": id }))).into_response(),
        Ok(Err(e)) => command_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn schedule_delivery(State(app): State<Shared>, body: Bytes) -> Response {
    let plan: DeliveryPlan = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let id = uuid::Uuid::new_v4().to_string();
    let command = DeliveryCommand::ScheduleDelivery(plan);
    let task = {
        let id = id.clone();
        tokio::spawn(async move { app.deliveries.execute(&id, command).await })
    };
    match task.await {
        Ok(Ok(())) => (StatusCode::ACCEPTED, Json(json!({ "deliveryId": id }))).into_response(),
        Ok(Err(e)) => command_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn delivery_status(State(app): State<Shared>, Path(id): Path<String>) -> Response {
    match app.status.load(&id).await {
        Ok(Some(view)) => Json(view).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no delivery {id}")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

async fn ready(State(app): State<Shared>) -> Response {
    match sqlx::query("SELECT 1").execute(&app.pool).await {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

async fn healthy() -> &'static str {
    "ok\n"
}
