//! What one `command-api` asks of another: the steps of a two-partition command on an
//! aggregate the other owns, reads of aggregates the other owns, and whole requests for
//! a partition number it does not own (forwarded with the client's `Authorization`, so
//! the owner checks the caller as if it had been asked itself).
//!
//! A step asked of a peer is the same code the peer runs for itself (`steps.rs`), under
//! its own shard lock and fence; the answer is one JSON document. The peers authenticate
//! with the operator's key, which every instance of a deployment holds.

use crate::error::CommandError;
use crate::ownership::Ownership;
use crate::service::CommandContext;
use api::{Position, Principal, Problem};
use bytes::Bytes;
use domain::{Account, Delivery, Drone, Job};
use schemas::events::DroneAssigned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use warp::http::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use warp::http::{Method, StatusCode};
use warp::reply::Response;

/// The route a peer's steps arrive on.
pub const STEPS_PATH: &str = "/internal/v1/steps";
/// Header on a forwarded request: the instance that forwarded it (forwarded once only).
pub const FORWARDED_HEADER: &str = "x-forwarded-by-command-api";

/// How long a step or a forwarded request may take at a peer.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// What a command's steps carry into the events they write at a peer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepContext {
    pub idempotency_key: Option<String>,
    pub correlation_id: Option<String>,
    pub principal: String,
    pub fingerprint: String,
}

impl StepContext {
    pub fn of(ctx: &CommandContext) -> StepContext {
        StepContext {
            idempotency_key: ctx.idempotency_key.clone(),
            correlation_id: ctx.correlation_id.clone(),
            principal: ctx.principal.to_string(),
            fingerprint: ctx.fingerprint.clone(),
        }
    }

    pub fn context(&self) -> CommandContext {
        CommandContext {
            idempotency_key: self.idempotency_key.clone(),
            expected_version: None,
            correlation_id: self.correlation_id.clone(),
            principal: Principal::named(&self.principal),
            fingerprint: self.fingerprint.clone(),
        }
    }
}

/// A step or a read asked of the owner of the aggregate.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "camelCase")]
pub enum StepCall {
    /// Reserve the drone for the delivery (assign-drone's step 2).
    Reserve {
        ctx: StepContext,
        drone_id: String,
        delivery_id: String,
        job: Job,
        attempt: String,
    },
    /// Release the drone of the reservation `attempt` (the compensation).
    Release {
        ctx: StepContext,
        drone_id: String,
        delivery_id: String,
        attempt: String,
        reason: String,
    },
    /// Bring the drone's stream in line with its delivery's.
    Follow { ctx: StepContext, drone_id: String },
    /// Give up a reservation whose commit stalled, at the delivery.
    Abandon {
        delivery_id: String,
        drone_id: String,
        attempt: String,
    },
    /// The delivery's state, once no record of it is on its way.
    Delivery { id: String },
    /// The account's state, once no record of it is on its way.
    Account { id: String },
    /// Drones' states and versions (telemetry checks a report against them).
    Drones { ids: Vec<String> },
}

/// A peer's answer to a [`StepCall`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "camelCase")]
pub enum StepReply {
    Reserved {
        reservation: DroneAssigned,
        at: Option<Position>,
    },
    Written {
        at: Option<Position>,
    },
    /// Whether the reservation was given up (false: its command is still deciding).
    Abandoned {
        abandoned: bool,
    },
    /// The drone's stream says what its delivery's does (`undecided`: the delivery
    /// neither took nor gave up this reservation, `(delivery, attempt)`).
    Followed {
        at: Option<Position>,
        undecided: Option<(String, String)>,
    },
    Delivery {
        state: Option<Box<Delivery>>,
    },
    Account {
        state: Option<Account>,
    },
    Drones {
        states: Vec<(String, u64, Drone)>,
    },
}

/// The other `command-api` processes of the deployment, reached at the addresses their
/// markers name.
pub struct Peers {
    ownership: Arc<Ownership>,
    client: reqwest::Client,
    /// The operator's key: peers are the deployment's own.
    key: String,
}

impl Peers {
    pub fn new(ownership: Arc<Ownership>, operator_key: &str) -> Peers {
        Peers {
            ownership,
            client: reqwest::Client::builder()
                .timeout(PEER_TIMEOUT)
                .build()
                .unwrap_or_default(),
            key: operator_key.to_owned(),
        }
    }

    pub fn ownership(&self) -> &Arc<Ownership> {
        &self.ownership
    }

    /// Asks the owner of `partition` for a step. Its refusals come back as they are
    /// (4xx); an owner that cannot be reached, or no longer owns the aggregate, is 503.
    pub async fn call(&self, partition: u32, call: &StepCall) -> Result<StepReply, CommandError> {
        let owner = self
            .ownership
            .owner_of(partition)
            .ok_or(CommandError::Moving { partition })?;
        let response = self
            .client
            .post(format!("{}{STEPS_PATH}", owner.address))
            .bearer_auth(&self.key)
            .json(call)
            .send()
            .await
            .map_err(|e| {
                CommandError::Unavailable(format!(
                    "the owner of partition {partition} ({}) cannot be reached: {e}",
                    owner.address
                ))
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            CommandError::Unavailable(format!("the owner of partition {partition}: {e}"))
        })?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                CommandError::Internal(format!("a peer's answer does not parse: {e}"))
            });
        }
        let detail = serde_json::from_slice::<Problem>(&body)
            .map(|p| p.detail)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        Err(match StatusCode::from_u16(status.as_u16()) {
            Ok(status) if status.is_client_error() => CommandError::Peer { status, detail },
            _ => CommandError::Unavailable(format!(
                "the owner of partition {partition} answered {status}: {detail}"
            )),
        })
    }

    /// Sends a whole request to the owner of `partition` and answers with its answer;
    /// 503 with `Retry-After` when there is no other owner to send it to (the number is
    /// changing hands) or the request was forwarded here already.
    pub async fn forward(&self, partition: u32, request: &Forward) -> Response {
        let refuse = |why: String| {
            let mut response =
                warp::Reply::into_response(Problem::new(StatusCode::SERVICE_UNAVAILABLE, why));
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            response
        };
        if request.headers.contains_key(FORWARDED_HEADER) {
            return refuse(format!(
                "partition {partition} of the command topics is changing hands; retry"
            ));
        }
        let Some(owner) = self.ownership.owner_of(partition) else {
            return refuse(format!(
                "partition {partition} of the command topics has no owner yet; retry"
            ));
        };
        let Ok(method) = reqwest::Method::from_bytes(request.method.as_str().as_bytes()) else {
            return refuse("the request's method cannot be forwarded".into());
        };
        let mut outgoing = self
            .client
            .request(method, format!("{}{}", owner.address, request.path))
            .body(request.body.clone());
        for (name, value) in &request.headers {
            if !hop_by_hop(name.as_str()) {
                outgoing = outgoing.header(name.as_str(), value.as_bytes());
            }
        }
        let sent = outgoing
            .header(FORWARDED_HEADER, self.ownership.instance())
            .send()
            .await;
        let answer = match sent {
            Ok(answer) => answer,
            Err(e) => {
                return refuse(format!(
                    "the owner of partition {partition} ({}) cannot be reached: {e}",
                    owner.address
                ));
            }
        };
        let status = answer.status().as_u16();
        let headers: Vec<(String, Vec<u8>)> = answer
            .headers()
            .iter()
            .filter(|(name, _)| !hop_by_hop(name.as_str()))
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect();
        let body = match answer.bytes().await {
            Ok(body) => body,
            Err(e) => return refuse(format!("the owner of partition {partition}: {e}")),
        };
        let mut response = Response::new(body.into());
        *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) = (
                warp::http::header::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(&value),
            ) {
                response.headers_mut().append(name, value);
            }
        }
        response
    }
}

/// A request as it came, to send on to the owner of its partition.
#[derive(Clone)]
pub struct Forward {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "host" | "connection" | "content-length" | "transfer-encoding" | "keep-alive" | "upgrade"
    )
}

/// The partition number an answer says its request belongs to, when the request was
/// refused before anything was written because another process owns it.
#[derive(Clone, Copy, Debug)]
pub struct OwnedElsewhere(pub u32);
