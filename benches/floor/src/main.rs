//! The floor: what one durable command costs on this machine with nothing else around
//! it. Each `POST /api/v1/deliveries` (and `/api/v1/accounts`) appends its body to one
//! file and waits for `fdatasync`, then answers with an id, the shape the load
//! generator's `schedule` scenario expects; no parsing, no rules, no group commit, no
//! read side. Our sequential rate is reported as a share of this one, measured with the
//! same client in the same run.
//!
//! ```text
//! floor --listen 127.0.0.1:8090 --file /tmp/floor.log
//! ```

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::net::TcpListener;

struct Log {
    file: Mutex<File>,
    next: AtomicU64,
}

impl Log {
    /// Appends one record and makes it durable; returns its number.
    fn append(&self, body: &[u8]) -> std::io::Result<u64> {
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(&(body.len() as u32).to_be_bytes())?;
        file.write_all(body)?;
        file.sync_data()?;
        Ok(self.next.fetch_add(1, Ordering::Relaxed))
    }
}

fn answer(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

async fn handle(
    log: Arc<Log>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (field, status) = match (request.method(), request.uri().path()) {
        (&Method::POST, "/api/v1/deliveries") => ("deliveryId", StatusCode::ACCEPTED),
        (&Method::POST, "/api/v1/accounts") => ("accountId", StatusCode::CREATED),
        (&Method::GET, "/readyz" | "/healthz") => return Ok(answer(StatusCode::OK, String::new())),
        _ => return Ok(answer(StatusCode::NOT_FOUND, String::new())),
    };
    let body = request.into_body().collect().await?.to_bytes();
    let appended = tokio::task::spawn_blocking(move || log.append(&body)).await;
    Ok(match appended {
        Ok(Ok(n)) => answer(status, format!(r#"{{"{field}":"floor-{n}"}}"#)),
        _ => answer(StatusCode::SERVICE_UNAVAILABLE, String::new()),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut listen = "127.0.0.1:8090".to_owned();
    let mut path = std::env::temp_dir().join("floor.log");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(value)) => listen = value,
            ("--file", Some(value)) => path = value.into(),
            _ => anyhow::bail!("usage: floor [--listen HOST:PORT] [--file PATH]"),
        }
    }
    let file = File::options()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let log = Arc::new(Log {
        file: Mutex::new(file),
        next: AtomicU64::new(0),
    });
    let listener = TcpListener::bind(&listen).await?;
    eprintln!(
        "floor: one fdatasync per command into {} at http://{}",
        path.display(),
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let log = log.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(log.clone(), request));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
