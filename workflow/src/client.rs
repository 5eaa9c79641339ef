//! Sends the dispatcher's decisions to the command API over HTTP, like any client.

use domain::Decision;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// How a command went.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    /// 2xx: done (or done before, for a retried key).
    Accepted,
    /// 4xx: the command side refused it (the workflow's view was behind the log).
    Refused { status: u16, detail: String },
    /// No answer, or a 5xx: it may or may not have been applied; the same key is safe
    /// to send again.
    Failed(String),
}

impl Sent {
    pub fn accepted(&self) -> bool {
        matches!(self, Sent::Accepted)
    }

    /// The metric label.
    pub fn outcome(&self) -> &'static str {
        match self {
            Sent::Accepted => "accepted",
            Sent::Refused { .. } => "refused",
            Sent::Failed(_) => "failed",
        }
    }
}

/// The command API at `base` (e.g. `http://127.0.0.1:8080`).
#[derive(Clone, Debug)]
pub struct CommandClient {
    base: String,
    http: Client,
}

impl CommandClient {
    /// `key` authenticates the workflow (its own key, derived from the operator's).
    pub fn new(base: &str, key: &str) -> Result<CommandClient, reqwest::Error> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Ok(mut value) = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")) {
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        Ok(CommandClient {
            base: base.trim_end_matches('/').to_owned(),
            http: Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(64)
                .default_headers(headers)
                .build()?,
        })
    }

    /// The request a decision becomes: path under `/api/v1`, and the body.
    fn request(decision: &Decision) -> (String, Value) {
        match decision {
            Decision::Assign {
                delivery_id,
                drone_id,
                ..
            } => (
                format!("deliveries/{delivery_id}/assign-drone"),
                json!({"droneId": drone_id}),
            ),
            Decision::Unassign {
                delivery_id,
                reason,
                ..
            } => (
                format!("deliveries/{delivery_id}/unassign-drone"),
                json!({"reason": reason}),
            ),
            Decision::Fail {
                delivery_id,
                reason,
                ..
            } => (
                format!("deliveries/{delivery_id}/fail"),
                json!({"reason": reason}),
            ),
            Decision::PickUp { delivery_id, .. } => {
                (format!("deliveries/{delivery_id}/pickup"), Value::Null)
            }
            Decision::Complete {
                delivery_id,
                location,
                at,
                ..
            } => (
                format!("deliveries/{delivery_id}/confirmations"),
                json!({"confirmationType": "None", "location": location, "at": at}),
            ),
            Decision::Dock { drone_id, .. } => (format!("drones/{drone_id}/dock"), Value::Null),
            Decision::Ready { drone_id, .. } => (format!("drones/{drone_id}/return"), Value::Null),
            Decision::Ground {
                drone_id, reason, ..
            } => (
                format!("drones/{drone_id}/ground"),
                json!({"reason": reason}),
            ),
        }
    }

    pub async fn send(&self, decision: &Decision) -> Sent {
        let (path, body) = Self::request(decision);
        let version = decision.version();
        let mut request = self
            .http
            .post(format!("{}/api/v1/{path}", self.base))
            .header("idempotency-key", decision.idempotency_key())
            .header("if-match", format!("\"{version}\""))
            .header("x-correlation-id", "workflow");
        if !body.is_null() {
            request = request.json(&body);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => Sent::Accepted,
            Ok(response) => {
                let status = response.status();
                let detail = response.text().await.unwrap_or_default();
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    Sent::Failed(format!("{status}: {detail}"))
                } else {
                    Sent::Refused {
                        status: status.as_u16(),
                        detail,
                    }
                }
            }
            Err(error) => Sent::Failed(error.to_string()),
        }
    }
}
