//! The command endpoints of SPEC §5: parse the request once at the edge (body, path id,
//! `Idempotency-Key`, `If-Match`), call the service, render the answer. Every failure is
//! rendered by `CommandError::problem`.

use crate::bodies::{self, parse_id};
use crate::completion::ToCompletion;
use crate::error::CommandError;
use crate::peers::{Forward, OwnedElsewhere, STEPS_PATH, StepCall};
use crate::service::{Accepted, CommandContext, CommandService};
use api::{BODY_LIMIT_BYTES, Principal, TOKEN_HEADER, limited_body};
use bytes::Bytes;
use serde_json::json;
use std::sync::Arc;
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::http::StatusCode;
use warp::http::header::{CACHE_CONTROL, ETAG, HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};
use warp::reply::Response;
use warp::{Filter, Reply};

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, CommandError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| CommandError::Invalid(format!("header {name} is not visible ASCII")))
        })
        .transpose()
}

const MAX_CORRELATION_ID: usize = 128;

/// Fleet and account commands: the operator's (and the workflow's).
fn operator_only(who: &Principal) -> Result<(), CommandError> {
    if who.is_operator() {
        Ok(())
    } else {
        Err(CommandError::Forbidden(format!(
            "only the operator key may do this ({who} may not)"
        )))
    }
}

/// Commands a tenant may send for what it owns; an analyst changes nothing.
fn may_change(who: &Principal) -> Result<(), CommandError> {
    if *who == Principal::Analyst {
        Err(CommandError::Forbidden(
            "an analyst key reads and changes nothing".into(),
        ))
    } else {
        Ok(())
    }
}

/// What every command handler gets: the service, who asks, and the request.
struct Input {
    svc: Svc,
    who: Principal,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Input {
    /// The request as it came, in case another process owns what it addresses.
    fn forward(&self) -> (Svc, Forward) {
        let request = Forward {
            method: self.method.clone(),
            path: self.path.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
        };
        (self.svc.clone(), request)
    }

    /// `Idempotency-Key` (scoped to the principal and `command`), `If-Match` (`"3"`,
    /// `W/"3"` or `3`) and `X-Correlation-Id`.
    fn context(&self, command: &str) -> Result<CommandContext, CommandError> {
        let headers = &self.headers;
        let idempotency_key = header(headers, "idempotency-key")?
            .map(|key| {
                if key.is_empty() || key.len() > 255 {
                    Err(CommandError::Invalid(
                        "Idempotency-Key must be 1 to 255 characters".into(),
                    ))
                } else {
                    Ok(CommandContext::scoped_key(&self.who, command, key))
                }
            })
            .transpose()?;
        let expected_version = header(headers, "if-match")?
            .map(|v| {
                let bare = v.trim().trim_start_matches("W/").trim_matches('"');
                bare.parse::<u64>().map_err(|_| {
                    CommandError::Invalid(format!("If-Match {v:?} is not an aggregate version"))
                })
            })
            .transpose()?;
        // Copied into every event the command writes: bounded, and printable as it is.
        let correlation_id = header(headers, "x-correlation-id")?
            .map(|id| {
                if id.is_empty()
                    || id.len() > MAX_CORRELATION_ID
                    || !id.bytes().all(|b| b.is_ascii_graphic())
                {
                    Err(CommandError::Invalid(format!(
                        "X-Correlation-Id must be 1 to {MAX_CORRELATION_ID} visible ASCII characters"
                    )))
                } else {
                    Ok(id.to_string())
                }
            })
            .transpose()?;
        // Only a keyed command is ever compared with another (and the fingerprint parses
        // the body a second time).
        let fingerprint = match &idempotency_key {
            Some(_) => CommandContext::fingerprint(&self.path, &self.body),
            None => String::new(),
        };
        Ok(CommandContext {
            idempotency_key,
            expected_version,
            correlation_id,
            principal: self.who.clone(),
            fingerprint,
        })
    }
}

/// How an accepted command is answered.
struct Shape {
    status: StatusCode,
    id_field: &'static str,
    location: Option<String>,
    /// A new account key, shown this once.
    api_key: Option<String>,
    /// A new delivery's tracking link, for its customer.
    tracking_url: Option<String>,
    /// The secret a notify-me's webhook messages are signed with.
    webhook_secret: Option<String>,
}

fn render(result: Result<Accepted, CommandError>, shape: Shape) -> Response {
    match result {
        Ok(accepted) => {
            let token = accepted.token.to_string();
            let mut body = json!({
                shape.id_field: accepted.id,
                "version": accepted.version,
                "consistencyToken": token,
            });
            if let Some(key) = shape.api_key {
                body["apiKey"] = json!(key);
            }
            if let Some(url) = shape.tracking_url {
                body["trackingUrl"] = json!(url);
            }
            if let Some(secret) = shape.webhook_secret {
                body["webhookSecret"] = json!(secret);
            }
            // A replayed creation answers as the first request did.
            let mut response =
                warp::reply::with_status(warp::reply::json(&body), shape.status).into_response();
            let headers = response.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", accepted.version)) {
                headers.insert(ETAG, v);
            }
            if let Ok(v) = HeaderValue::from_str(&token) {
                headers.insert(TOKEN_HEADER, v);
            }
            if let Some(location) = shape.location
                && let Ok(v) = HeaderValue::from_str(&location)
            {
                headers.insert(LOCATION, v);
            }
            if accepted.replayed {
                headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            // A key is a secret: no cache keeps it.
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => refused(&e),
    }
}

/// The problem a refused command is answered with; one refused because another process
/// owns what it addresses says which partition, for [`to_completion`] to forward it.
fn refused(e: &CommandError) -> Response {
    if e.status().is_server_error() && e.retry_after().is_none() {
        tracing::warn!(error = %e, "command failed");
    }
    let mut response = e.problem().into_response();
    if let Some(seconds) = e.retry_after() {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    if let CommandError::Elsewhere { partition } = e {
        response.extensions_mut().insert(OwnedElsewhere(*partition));
    }
    response
}

fn answer(status: StatusCode, id_field: &'static str) -> Shape {
    Shape {
        status,
        id_field,
        location: None,
        api_key: None,
        tracking_url: None,
        webhook_secret: None,
    }
}

fn created(id_field: &'static str, location: Option<String>) -> Shape {
    Shape {
        location,
        ..answer(StatusCode::CREATED, id_field)
    }
}

type Svc = Arc<CommandService>;

/// Runs a handler to its end even if the client goes away (see [`ToCompletion`]); a
/// request it refused before deciding anything, because another process owns what it
/// addresses, goes to that process.
async fn to_completion(
    (svc, request): (Svc, Forward),
    handler: impl Future<Output = Response> + Send + 'static,
) -> Response {
    let response = ToCompletion::new(handler).await;
    match response.extensions().get::<OwnedElsewhere>() {
        Some(&OwnedElsewhere(partition)) => svc.peers.forward(partition, &request).await,
        None => response,
    }
}

/// The service, the principal the edge authenticated, the path, the headers and the
/// (limited, JSON) body.
fn input(service: Svc) -> impl Filter<Extract = (Input,), Error = warp::Rejection> + Clone {
    warp::any()
        .map(move || service.clone())
        .and(warp::ext::get::<Principal>())
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(limited_body(BODY_LIMIT_BYTES))
        .and_then(
            |svc: Svc,
             who: Principal,
             method: Method,
             path: warp::path::FullPath,
             headers: HeaderMap,
             body: Bytes| async move {
                api::json_content(&headers, &body)?;
                Ok::<_, warp::Rejection>(Input {
                    svc,
                    who,
                    method,
                    path: path.as_str().to_string(),
                    headers,
                    body,
                })
            },
        )
}

async fn register_account(r: Input) -> Response {
    let run = async {
        operator_only(&r.who)?;
        let ctx = r.context("register-account")?;
        let cmd = bodies::register_account(&r.body)?;
        r.svc.register_account(&ctx, &cmd).await
    };
    match run.await {
        Ok((accepted, key)) => {
            let location = Some(format!("/api/v1/accounts/{}", accepted.id));
            let shape = Shape {
                api_key: Some(key),
                ..created("accountId", location)
            };
            render(Ok(accepted), shape)
        }
        Err(e) => render(Err(e), created("accountId", None)),
    }
}

async fn suspend_account(id: String, r: Input) -> Response {
    let run = async {
        operator_only(&r.who)?;
        let ctx = r.context("suspend-account")?;
        let id = parse_id("account", &id)?;
        r.svc
            .suspend_account(&ctx, &id, bodies::reason(&r.body)?)
            .await
    };
    render(run.await, answer(StatusCode::OK, "accountId"))
}

async fn reactivate_account(id: String, r: Input) -> Response {
    let run = async {
        operator_only(&r.who)?;
        let ctx = r.context("reactivate-account")?;
        let id = parse_id("account", &id)?;
        r.svc.reactivate_account(&ctx, &id).await
    };
    render(run.await, answer(StatusCode::OK, "accountId"))
}

/// `POST /accounts/{id}/keys`: the operator, or the account itself.
async fn rotate_account_key(id: String, r: Input) -> Response {
    let run = async {
        may_change(&r.who)?;
        let ctx = r.context("rotate-account-key")?;
        let id = parse_id("account", &id)?;
        if !r.who.sees(&id) {
            return Err(CommandError::NotFound {
                kind: "account",
                id,
            });
        }
        r.svc.rotate_account_key(&ctx, &id).await
    };
    match run.await {
        Ok((accepted, key)) => {
            let shape = Shape {
                api_key: Some(key),
                ..answer(StatusCode::OK, "accountId")
            };
            render(Ok(accepted), shape)
        }
        Err(e) => render(Err(e), answer(StatusCode::OK, "accountId")),
    }
}

async fn register_drone(id: String, r: Input) -> Response {
    let run = async {
        operator_only(&r.who)?;
        let ctx = r.context("register-drone")?;
        let id = parse_id("drone", &id)?;
        let cmd = bodies::register_drone(&r.body)?;
        r.svc.register_drone(&ctx, &id, &cmd).await
    };
    let result = run.await;
    let status = match &result {
        Ok(a) if a.replayed => StatusCode::OK,
        _ => StatusCode::CREATED,
    };
    let location = result
        .as_ref()
        .ok()
        .map(|a| format!("/api/v1/drones/{}", a.id));
    render(
        result,
        Shape {
            location,
            ..answer(status, "droneId")
        },
    )
}

async fn report_telemetry(id: String, r: Input) -> Response {
    let run = async {
        operator_only(&r.who)?;
        let ctx = r.context("report-telemetry")?;
        let reading = bodies::telemetry(&id, &r.body)?;
        r.svc
            .report_telemetry(&ctx, std::slice::from_ref(&reading))
            .await
    };
    render(run.await, answer(StatusCode::ACCEPTED, "droneId"))
}

async fn ground_drone(id: String, r: Input) -> Response {
    let run = async {
        operator_only(&r.who)?;
        let ctx = r.context("ground-drone")?;
        let id = parse_id("drone", &id)?;
        r.svc
            .ground_drone(&ctx, &id, bodies::reason(&r.body)?)
            .await
    };
    render(run.await, answer(StatusCode::OK, "droneId"))
}

async fn dock_drone(id: String, r: Input) -> Response {
    let run = async {
        operator_only(&r.who)?;
        let ctx = r.context("dock-drone")?;
        let id = parse_id("drone", &id)?;
        r.svc.dock_drone(&ctx, &id).await
    };
    render(run.await, answer(StatusCode::OK, "droneId"))
}

async fn return_drone(id: String, r: Input) -> Response {
    let run = async {
        operator_only(&r.who)?;
        let ctx = r.context("return-drone")?;
        let id = parse_id("drone", &id)?;
        r.svc.return_drone(&ctx, &id).await
    };
    render(run.await, answer(StatusCode::OK, "droneId"))
}

async fn report_telemetry_batch(r: Input) -> Response {
    let run = async {
        operator_only(&r.who)?;
        let ctx = r.context("report-telemetry")?;
        let readings = bodies::telemetry_batch(&r.body)?;
        let count = readings.len();
        r.svc
            .report_telemetry(&ctx, &readings)
            .await
            .map(|a| (a, count))
    };
    match run.await {
        Ok((accepted, count)) => {
            let token = accepted.token.to_string();
            let body = json!({"accepted": count, "consistencyToken": token});
            let mut response =
                warp::reply::with_status(warp::reply::json(&body), StatusCode::ACCEPTED)
                    .into_response();
            if accepted.replayed {
                response
                    .headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            response
        }
        Err(e) => refused(&e),
    }
}

async fn schedule_delivery(r: Input) -> Response {
    let run = async {
        may_change(&r.who)?;
        let ctx = r.context("schedule-delivery")?;
        let cmd = bodies::schedule_delivery(&r.body)?;
        if !r.who.sees(&cmd.owner_id) {
            return Err(CommandError::Forbidden(format!(
                "an account key schedules for its own account only, not for {}",
                cmd.owner_id
            )));
        }
        r.svc.schedule_delivery(&ctx, &cmd).await
    };
    let result = run.await;
    let location = result
        .as_ref()
        .ok()
        .map(|a| format!("/api/v1/deliveries/{}", a.id));
    let tracking_url = result.as_ref().ok().map(|a| r.svc.tracking_url(&a.id));
    render(
        result,
        Shape {
            location,
            tracking_url,
            ..answer(StatusCode::ACCEPTED, "deliveryId")
        },
    )
}

async fn assign_drone(id: String, r: Input) -> Response {
    let run = async {
        operator_only(&r.who)?;
        let ctx = r.context("assign-drone")?;
        let id = parse_id("delivery", &id)?;
        let drone_id = bodies::assign_drone(&r.body)?;
        r.svc.assign_drone(&ctx, &id, &drone_id).await
    };
    render(run.await, answer(StatusCode::OK, "deliveryId"))
}

async fn unassign_drone(id: String, r: Input) -> Response {
    let run = async {
        operator_only(&r.who)?;
        let ctx = r.context("unassign-drone")?;
        let id = parse_id("delivery", &id)?;
        let reason = bodies::given_reason(&r.body)?;
        r.svc.unassign_drone(&ctx, &id, &reason).await
    };
    render(run.await, answer(StatusCode::OK, "deliveryId"))
}

async fn fail_delivery(id: String, r: Input) -> Response {
    let run = async {
        operator_only(&r.who)?;
        let ctx = r.context("fail-delivery")?;
        let id = parse_id("delivery", &id)?;
        let reason = bodies::given_reason(&r.body)?;
        r.svc.fail_delivery(&ctx, &id, &reason).await
    };
    render(run.await, answer(StatusCode::OK, "deliveryId"))
}

async fn pick_up(id: String, r: Input) -> Response {
    let run = async {
        operator_only(&r.who)?;
        let ctx = r.context("pick-up")?;
        let id = parse_id("delivery", &id)?;
        r.svc.pick_up(&ctx, &id).await
    };
    render(run.await, answer(StatusCode::OK, "deliveryId"))
}

async fn complete_delivery(id: String, r: Input) -> Response {
    let run = async {
        may_change(&r.who)?;
        let ctx = r.context("complete-delivery")?;
        let id = parse_id("delivery", &id)?;
        let confirmation = bodies::confirmation(&r.body)?;
        r.svc.complete(&ctx, &id, &confirmation).await
    };
    render(run.await, answer(StatusCode::OK, "deliveryId"))
}

async fn notify_me(id: String, r: Input) -> Response {
    let run = async {
        may_change(&r.who)?;
        let ctx = r.context("notify-me")?;
        let id = parse_id("delivery", &id)?;
        let contacts = bodies::notify_me(&r.body)?;
        r.svc.request_notifications(&ctx, &id, &contacts).await
    };
    match run.await {
        Ok((accepted, secret)) => {
            let shape = Shape {
                webhook_secret: secret,
                ..answer(StatusCode::OK, "deliveryId")
            };
            render(Ok(accepted), shape)
        }
        Err(e) => render(Err(e), answer(StatusCode::OK, "deliveryId")),
    }
}

async fn reschedule_delivery(id: String, r: Input) -> Response {
    let run = async {
        may_change(&r.who)?;
        let ctx = r.context("reschedule-delivery")?;
        let id = parse_id("delivery", &id)?;
        let changes = bodies::reschedule(&r.body)?;
        r.svc.reschedule_delivery(&ctx, &id, &changes).await
    };
    render(run.await, answer(StatusCode::OK, "deliveryId"))
}

async fn cancel_delivery(id: String, r: Input) -> Response {
    let run = async {
        may_change(&r.who)?;
        let ctx = r.context("cancel-delivery")?;
        let id = parse_id("delivery", &id)?;
        r.svc
            .cancel_delivery(&ctx, &id, bodies::reason(&r.body)?)
            .await
    };
    render(run.await, answer(StatusCode::OK, "deliveryId"))
}

/// All command routes under `/api/v1`, one handler each. The edge in front of them
/// authenticated the caller; each handler checks what that caller may do. A path or
/// method no route takes is left to the 404/405 after them.
pub fn routes(service: Svc) -> BoxedFilter<(Response,)> {
    let steps = service.clone();
    let input = move || input(service.clone());
    let api = || warp::path("api").and(warp::path("v1"));
    let routes: Vec<BoxedFilter<(Response,)>> = vec![
        api()
            .and(warp::path!("accounts"))
            .and(warp::post())
            .and(input())
            .then(|r: Input| to_completion(r.forward(), register_account(r)))
            .boxed(),
        api()
            .and(warp::path!("accounts" / String / "suspend"))
            .and(warp::post())
            .and(input())
            .then(|id, r: Input| to_completion(r.forward(), suspend_account(id, r)))
            .boxed(),
        api()
            .and(warp::path!("accounts" / String / "reactivate"))
            .and(warp::post())
            .and(input())
            .then(|id, r: Input| to_completion(r.forward(), reactivate_account(id, r)))
            .boxed(),
        api()
            .and(warp::path!("accounts" / String / "keys"))
            .and(warp::post())
            .and(input())
            .then(|id, r: Input| to_completion(r.forward(), rotate_account_key(id, r)))
            .boxed(),
        api()
            .and(warp::path!("drones" / String))
            .and(warp::put())
            .and(input())
            .then(|id, r: Input| to_completion(r.forward(), register_drone(id, r)))
            .boxed(),
        api()
            .and(warp::path!("drones" / String / "telemetry"))
            .and(warp::post())
            .and(input())
            .then(|id, r: Input| to_completion(r.forward(), report_telemetry(id, r)))
            .boxed(),
        api()
            .and(warp::path!("drones" / String / "ground"))
            .and(warp::post())
            .and(input())
            .then(|id, r: Input| to_completion(r.forward(), ground_drone(id, r)))
            .boxed(),
        api()
            .and(warp::path!("drones" / String / "dock"))
            .and(warp::post())
            .and(input())
            .then(|id, r: Input| to_completion(r.forward(), dock_drone(id, r)))
            .boxed(),
        api()
            .and(warp::path!("drones" / String / "return"))
            .and(warp::post())
            .and(input())
            .then(|id, r: Input| to_completion(r.forward(), return_drone(id, r)))
            .boxed(),
        api()
            .and(warp::path!("telemetry"))
            .and(warp::post())
            .and(input())
            .then(|r: Input| to_completion(r.forward(), report_telemetry_batch(r)))
            .boxed(),
        api()
            .and(warp::path!("deliveries"))
            .and(warp::post())
            .and(input())
            .then(|r: Input| to_completion(r.forward(), schedule_delivery(r)))
            .boxed(),
        api()
            .and(warp::path!("deliveries" / String / "assign-drone"))
            .and(warp::post())
            .and(input())
            .then(|id, r: Input| to_completion(r.forward(), assign_drone(id, r)))
            .boxed(),
        api()
            .and(warp::path!("deliveries" / String / "unassign-drone"))
            .and(warp::post())
            .and(input())
            .then(|id, r: Input| to_completion(r.forward(), unassign_drone(id, r)))
            .boxed(),
        api()
            .and(warp::path!("deliveries" / String / "fail"))
            .and(warp::post())
            .and(input())
            .then(|id, r: Input| to_completion(r.forward(), fail_delivery(id, r)))
            .boxed(),
        api()
            .and(warp::path!("deliveries" / String / "pickup"))
            .and(warp::post())
            .and(input())
            .then(|id, r: Input| to_completion(r.forward(), pick_up(id, r)))
            .boxed(),
        api()
            .and(warp::path!("deliveries" / String / "confirmations"))
            .and(warp::post())
            .and(input())
            .then(|id, r: Input| to_completion(r.forward(), complete_delivery(id, r)))
            .boxed(),
        api()
            .and(warp::path!("deliveries" / String / "notify-me"))
            .and(warp::post())
            .and(input())
            .then(|id, r: Input| to_completion(r.forward(), notify_me(id, r)))
            .boxed(),
        api()
            .and(warp::path!("deliveries" / String))
            .and(warp::patch())
            .and(input())
            .then(|id, r: Input| to_completion(r.forward(), reschedule_delivery(id, r)))
            .boxed(),
        api()
            .and(warp::path!("deliveries" / String))
            .and(warp::delete())
            .and(input())
            .then(|id, r: Input| to_completion(r.forward(), cancel_delivery(id, r)))
            .boxed(),
        warp::path!("internal" / "v1" / "steps")
            .and(warp::post())
            .and(warp::any().map(move || steps.clone()))
            .and(warp::ext::get::<Principal>())
            .and(limited_body(BODY_LIMIT_BYTES))
            .then(|svc: Svc, who: Principal, body: Bytes| {
                ToCompletion::new(async move { peer_step(svc, who, body).await })
            })
            .boxed(),
    ];
    api::one_of(routes)
}

/// `POST /internal/v1/steps`: a step or a read another `command-api` asks of this one.
async fn peer_step(svc: Svc, who: Principal, body: Bytes) -> Response {
    let run = async {
        operator_only(&who)?;
        let call: StepCall = serde_json::from_slice(&body)
            .map_err(|e| CommandError::Invalid(format!("{STEPS_PATH}: not a step: {e}")))?;
        svc.step(call).await
    };
    match run.await {
        Ok(reply) => warp::reply::json(&reply).into_response(),
        Err(e) => refused(&e),
    }
}
