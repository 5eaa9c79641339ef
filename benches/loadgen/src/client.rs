//! One keep-alive HTTP/1.1 connection, one request at a time (as a browser or an SDK
//! holds a pooled connection): hyper's connection-level client, with no pool in between,
//! so the generator spends as little CPU per request as it can on the cores it shares
//! with the server.

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long a request may take before it counts as a timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server listens (`http://host:port` and nothing else) and the API key the
/// requests carry.
#[derive(Clone, Debug)]
pub struct Target {
    pub authority: String,
    pub key: Option<String>,
}

impl Target {
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("{url}: give an http://host:port URL"))?;
        let authority = rest.trim_end_matches('/').to_owned();
        if authority.is_empty() || authority.contains('/') {
            return Err(anyhow!("{url}: give an http://host:port URL, no path"));
        }
        Ok(Target {
            authority,
            key: None,
        })
    }

    /// The same server, with `key` on every request.
    pub fn with_key(self, key: Option<String>) -> Target {
        Target { key, ..self }
    }
}

/// What a request came back as.
pub enum Outcome {
    Status(StatusCode, Bytes),
    Timeout,
    /// The connection failed (refused, reset): it is made again for the next request.
    Io,
}

pub struct Connection {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    pub fn new(target: Target) -> Connection {
        Connection {
            target,
            sender: None,
        }
    }

    async fn connect(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(&self.target.authority)
                .await
                .with_context(|| format!("cannot connect to {}", self.target.authority))?;
            stream.set_nodelay(true)?;
            let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        self.sender.as_mut().ok_or_else(|| anyhow!("no connection"))
    }

    /// Sends one request and reads the whole response.
    pub async fn send(&mut self, method: Method, path: &str, body: Option<Bytes>) -> Outcome {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(method, path, body)).await {
            Ok(Ok((status, body))) => Outcome::Status(status, body),
            Ok(Err(_)) => {
                self.sender = None;
                Outcome::Io
            }
            Err(_) => {
                // The response may still come on this connection: start a new one.
                self.sender = None;
                Outcome::Timeout
            }
        }
    }

    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let authority = self.target.authority.clone();
        let authorization = self.target.key.as_ref().map(|k| format!("Bearer {k}"));
        let sender = self.connect().await?;
        sender.ready().await?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, authority);
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if let Some(authorization) = authorization {
            request = request.header(hyper::header::AUTHORIZATION, authorization);
        }
        let request = request.body(Full::new(body.unwrap_or_default()))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}
