//! The command endpoints of SPEC §5: parse the request once at the edge (body, path id,
//! `Idempotency-Key`, `If-Match`), call the service, render the answer. Every failure is
//! rendered by `CommandError::problem`.

use crate::completion::ToCompletion;
use crate::error::CommandError;
use crate::service::{Accepted, CommandContext, CommandService, Reading, ScheduleDelivery};
use api::{BODY_LIMIT_BYTES, TOKEN_HEADER, limited_body};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use domain::{
    Confirmation, DeliveryPlan, PackageInfo, RegisterAccount, RegisterDrone, Reschedule, Telemetry,
};
use schemas::events::{ConfirmationType, Location, PackageSize};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::http::header::{ETAG, HeaderMap, HeaderValue, LOCATION};
use warp::reply::Response;
use warp::{Filter, Reply};

/// Largest telemetry batch accepted in one request.
pub const MAX_TELEMETRY_BATCH: usize = 1000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LocationBody {
    latitude: f64,
    longitude: f64,
    #[serde(default)]
    altitude: f64,
}

impl LocationBody {
    fn parse(&self) -> Result<Location, CommandError> {
        Ok(domain::location(
            self.latitude,
            self.longitude,
            self.altitude,
        )?)
    }
}

fn parse_opt(l: &Option<LocationBody>) -> Result<Option<Location>, CommandError> {
    l.as_ref().map(LocationBody::parse).transpose()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RegisterAccountBody {
    name: String,
    email: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReasonBody {
    reason: Option<String>,
}

/// Why a delivery fails, or loses its drone: required, it is shown to operators.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GivenReasonBody {
    reason: String,
}

impl GivenReasonBody {
    fn parse(&self) -> Result<&str, CommandError> {
        let reason = self.reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(CommandError::Invalid(
                "reason must be 1 to 500 characters".into(),
            ));
        }
        Ok(reason)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RegisterDroneBody {
    model: String,
    payload_kg: f64,
    range_km: f64,
    speed_mps: f64,
    home: LocationBody,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TelemetryBody {
    position: LocationBody,
    battery_pct: f64,
    at: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TelemetryItemBody {
    drone_id: String,
    position: LocationBody,
    battery_pct: f64,
    at: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PackageInfoBody {
    package_id: Option<String>,
    size: PackageSize,
    weight: f64,
    tag: Option<String>,
}

fn no_confirmation() -> ConfirmationType {
    ConfirmationType::None
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ScheduleBody {
    owner_id: String,
    pickup: LocationBody,
    dropoff: LocationBody,
    pickup_time: Option<DateTime<Utc>>,
    deadline: Option<DateTime<Utc>>,
    #[serde(default)]
    expedited: bool,
    #[serde(default = "no_confirmation")]
    confirmation_required: ConfirmationType,
    package_info: PackageInfoBody,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AssignBody {
    drone_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RescheduleBody {
    pickup: Option<LocationBody>,
    dropoff: Option<LocationBody>,
    pickup_time: Option<DateTime<Utc>>,
    deadline: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfirmationBody {
    confirmation_type: ConfirmationType,
    location: LocationBody,
    at: DateTime<Utc>,
    blob: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NotifyBody {
    email: Option<String>,
    sms: Option<String>,
}

fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, CommandError> {
    serde_json::from_slice(body)
        .map_err(|e| CommandError::Invalid(format!("invalid JSON body: {e}")))
}

/// Like `json_body`, but an empty body means the default.
fn optional_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, CommandError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        json_body(body)
    }
}

/// Lets through only the actions a resource has: any other is left to the routes after
/// (405 with `Allow` where the path takes other methods, 404 where it is unknown).
fn only_actions(
    known: &'static [&'static str],
) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::path::full()
        .and_then(move |full: warp::path::FullPath| async move {
            let action = full.as_str().rsplit('/').next().unwrap_or_default();
            if known.contains(&action) {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
}

/// `POST /<kind>s/{id}/<action>` for an action the resource does not have.
fn unknown_action(kind: &str, action: &str) -> Result<Accepted, CommandError> {
    Err(CommandError::NotFound {
        kind: "action",
        id: format!("{action:?} of a {kind}"),
    })
}

/// Ids in paths and bodies: 1 to 64 characters of letters, digits, `-`, `_`, `.`.
pub fn parse_id(kind: &str, id: &str) -> Result<String, CommandError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(id.to_string())
    } else {
        Err(CommandError::Invalid(format!(
            "{kind} id {id:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
        )))
    }
}

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

/// `Idempotency-Key`, `If-Match` (`"3"`, `W/"3"` or `3`) and `X-Correlation-Id`.
fn context(headers: &HeaderMap) -> Result<CommandContext, CommandError> {
    let idempotency_key = header(headers, "idempotency-key")?
        .map(|key| {
            if key.is_empty() || key.len() > 255 {
                Err(CommandError::Invalid(
                    "Idempotency-Key must be 1 to 255 characters".into(),
                ))
            } else {
                Ok(key.to_string())
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
    Ok(CommandContext {
        idempotency_key,
        expected_version,
        correlation_id,
    })
}

struct Reply201 {
    status: StatusCode,
    id_field: &'static str,
    location: Option<String>,
}

fn render(result: Result<Accepted, CommandError>, shape: Reply201) -> Response {
    match result {
        Ok(accepted) => {
            let token = accepted.token.to_string();
            let body = json!({
                shape.id_field: accepted.id,
                "version": accepted.version,
                "consistencyToken": token,
            });
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
            response
        }
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!(error = %e, "command failed");
            }
            e.problem().into_response()
        }
    }
}

fn ok(id_field: &'static str) -> Reply201 {
    Reply201 {
        status: StatusCode::OK,
        id_field,
        location: None,
    }
}

type Svc = Arc<CommandService>;

/// Runs a handler to its end even if the client goes away (see [`ToCompletion`]).
async fn to_completion(handler: impl Future<Output = Response> + Send + 'static) -> Response {
    ToCompletion::new(handler).await
}

fn with(service: Svc) -> impl Filter<Extract = (Svc,), Error = Infallible> + Clone {
    warp::any().map(move || service.clone())
}

/// What every command handler takes: the service, the headers and the (limited) body.
fn input(
    service: Svc,
) -> impl Filter<Extract = (Svc, HeaderMap, Bytes), Error = warp::Rejection> + Clone {
    with(service)
        .and(warp::header::headers_cloned())
        .and(limited_body(BODY_LIMIT_BYTES))
        .and_then(|svc: Svc, headers: HeaderMap, body: Bytes| async move {
            api::json_content(&headers, &body)?;
            Ok::<_, warp::Rejection>((svc, headers, body))
        })
        .untuple_one()
}

/// All command routes under `/api/v1`.
pub fn routes(service: Svc) -> BoxedFilter<(Response,)> {
    let input = || input(service.clone());
    let api = || warp::path("api").and(warp::path("v1"));

    let register_account = api()
        .and(warp::path!("accounts"))
        .and(warp::post())
        .and(input())
        .then(|svc: Svc, h: HeaderMap, b: Bytes| {
            to_completion(async move {
                let run = async {
                    let ctx = context(&h)?;
                    let req: RegisterAccountBody = json_body(&b)?;
                    let cmd = RegisterAccount::new(&req.name, &req.email)?;
                    svc.register_account(&ctx, &cmd).await
                };
                let result = run.await;
                let location = result
                    .as_ref()
                    .ok()
                    .map(|a| format!("/api/v1/accounts/{}", a.id));
                render(
                    result,
                    Reply201 {
                        status: StatusCode::CREATED,
                        id_field: "accountId",
                        location,
                    },
                )
            })
        })
        .boxed();

    let account_action = api()
        .and(warp::path!("accounts" / String / String))
        .and(only_actions(&["suspend", "reactivate"]))
        .and(warp::post())
        .and(input())
        .then(
            |id: String, action: String, svc: Svc, h: HeaderMap, b: Bytes| {
                to_completion(async move {
                    let run = async {
                        let ctx = context(&h)?;
                        let id = parse_id("account", &id)?;
                        match action.as_str() {
                            "suspend" => {
                                let req: ReasonBody = optional_body(&b)?;
                                svc.suspend_account(&ctx, &id, req.reason).await
                            }
                            "reactivate" => svc.reactivate_account(&ctx, &id).await,
                            _ => unknown_action("account", &action),
                        }
                    };
                    render(run.await, ok("accountId"))
                })
            },
        )
        .boxed();

    let register_drone = api()
        .and(warp::path!("drones" / String))
        .and(warp::put())
        .and(input())
        .then(|id: String, svc: Svc, h: HeaderMap, b: Bytes| {
            to_completion(async move {
                let run = async {
                    let ctx = context(&h)?;
                    let id = parse_id("drone", &id)?;
                    let req: RegisterDroneBody = json_body(&b)?;
                    let cmd = RegisterDrone::new(
                        &req.model,
                        req.payload_kg,
                        req.range_km,
                        req.speed_mps,
                        req.home.parse()?,
                    )?;
                    svc.register_drone(&ctx, &id, &cmd).await
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
                    Reply201 {
                        status,
                        id_field: "droneId",
                        location,
                    },
                )
            })
        })
        .boxed();

    let drone_action = api()
        .and(warp::path!("drones" / String / String))
        .and(only_actions(&["telemetry", "ground", "dock", "return"]))
        .and(warp::post())
        .and(input())
        .then(
            |id: String, action: String, svc: Svc, h: HeaderMap, b: Bytes| {
                to_completion(async move {
                    let mut status = StatusCode::OK;
                    let run = async {
                        let ctx = context(&h)?;
                        let id = parse_id("drone", &id)?;
                        match action.as_str() {
                            "telemetry" => {
                                let req: TelemetryBody = json_body(&b)?;
                                let reading = Reading {
                                    drone_id: id,
                                    telemetry: Telemetry::new(
                                        req.position.parse()?,
                                        req.battery_pct,
                                        req.at,
                                    )?,
                                };
                                status = StatusCode::ACCEPTED;
                                svc.report_telemetry(&ctx, std::slice::from_ref(&reading))
                                    .await
                            }
                            "ground" => {
                                let req: ReasonBody = optional_body(&b)?;
                                svc.ground_drone(&ctx, &id, req.reason).await
                            }
                            "dock" => svc.dock_drone(&ctx, &id).await,
                            "return" => svc.return_drone(&ctx, &id).await,
                            _ => unknown_action("drone", &action),
                        }
                    };
                    let result = run.await;
                    render(
                        result,
                        Reply201 {
                            status,
                            id_field: "droneId",
                            location: None,
                        },
                    )
                })
            },
        )
        .boxed();

    let telemetry_batch = api()
        .and(warp::path!("telemetry"))
        .and(warp::post())
        .and(input())
        .then(|svc: Svc, h: HeaderMap, b: Bytes| {
            to_completion(async move {
                let run = async {
                    let ctx = context(&h)?;
                    let items: Vec<TelemetryItemBody> = json_body(&b)?;
                    if items.is_empty() || items.len() > MAX_TELEMETRY_BATCH {
                        return Err(CommandError::Invalid(format!(
                            "a telemetry batch holds 1 to {MAX_TELEMETRY_BATCH} readings"
                        )));
                    }
                    let readings = items
                        .into_iter()
                        .map(|item| {
                            Ok(Reading {
                                drone_id: parse_id("drone", &item.drone_id)?,
                                telemetry: Telemetry::new(
                                    item.position.parse()?,
                                    item.battery_pct,
                                    item.at,
                                )?,
                            })
                        })
                        .collect::<Result<Vec<_>, CommandError>>()?;
                    let count = readings.len();
                    svc.report_telemetry(&ctx, &readings)
                        .await
                        .map(|a| (a, count))
                };
                match run.await {
                    Ok((accepted, count)) => {
                        let token = accepted.token.to_string();
                        let body = json!({"accepted": count, "consistencyToken": token});
                        warp::reply::with_status(warp::reply::json(&body), StatusCode::ACCEPTED)
                            .into_response()
                    }
                    Err(e) => e.problem().into_response(),
                }
            })
        })
        .boxed();

    let schedule = api()
        .and(warp::path!("deliveries"))
        .and(warp::post())
        .and(input())
        .then(|svc: Svc, h: HeaderMap, b: Bytes| {
            to_completion(async move {
                let run = async {
                    let ctx = context(&h)?;
                    let req: ScheduleBody = json_body(&b)?;
                    let cmd = ScheduleDelivery {
                        owner_id: parse_id("account", &req.owner_id)?,
                        plan: DeliveryPlan::new(
                            req.pickup.parse()?,
                            req.dropoff.parse()?,
                            req.pickup_time,
                            req.deadline,
                        )?,
                        expedited: req.expedited,
                        confirmation_required: req.confirmation_required,
                        package_id: req
                            .package_info
                            .package_id
                            .as_deref()
                            .map(|p| parse_id("package", p))
                            .transpose()?,
                        package: PackageInfo::new(
                            req.package_info.size,
                            req.package_info.weight,
                            req.package_info.tag,
                        )?,
                    };
                    svc.schedule_delivery(&ctx, &cmd).await
                };
                let result = run.await;
                let location = result
                    .as_ref()
                    .ok()
                    .map(|a| format!("/api/v1/deliveries/{}", a.id));
                render(
                    result,
                    Reply201 {
                        status: StatusCode::ACCEPTED,
                        id_field: "deliveryId",
                        location,
                    },
                )
            })
        })
        .boxed();

    let delivery_action = api()
        .and(warp::path!("deliveries" / String / String))
        .and(only_actions(&[
            "assign-drone",
            "unassign-drone",
            "fail",
            "pickup",
            "confirmations",
            "notify-me",
        ]))
        .and(warp::post())
        .and(input())
        .then(
            |id: String, action: String, svc: Svc, h: HeaderMap, b: Bytes| {
                to_completion(async move {
                    let run = async {
                        let ctx = context(&h)?;
                        let id = parse_id("delivery", &id)?;
                        match action.as_str() {
                            "assign-drone" => {
                                let req: AssignBody = json_body(&b)?;
                                let drone_id = parse_id("drone", &req.drone_id)?;
                                svc.assign_drone(&ctx, &id, &drone_id).await
                            }
                            "unassign-drone" => {
                                let req: GivenReasonBody = json_body(&b)?;
                                svc.unassign_drone(&ctx, &id, req.parse()?).await
                            }
                            "fail" => {
                                let req: GivenReasonBody = json_body(&b)?;
                                svc.fail_delivery(&ctx, &id, req.parse()?).await
                            }
                            "pickup" => svc.pick_up(&ctx, &id).await,
                            "confirmations" => {
                                let req: ConfirmationBody = json_body(&b)?;
                                let confirmation = Confirmation::new(
                                    req.confirmation_type,
                                    req.location.parse()?,
                                    req.at,
                                    req.blob,
                                )?;
                                svc.complete(&ctx, &id, &confirmation).await
                            }
                            "notify-me" => {
                                let req: NotifyBody = json_body(&b)?;
                                svc.request_notifications(&ctx, &id, req.email, req.sms)
                                    .await
                            }
                            _ => unknown_action("delivery", &action),
                        }
                    };
                    render(run.await, ok("deliveryId"))
                })
            },
        )
        .boxed();

    let reschedule = api()
        .and(warp::path!("deliveries" / String))
        .and(warp::patch())
        .and(input())
        .then(|id: String, svc: Svc, h: HeaderMap, b: Bytes| {
            to_completion(async move {
                let run = async {
                    let ctx = context(&h)?;
                    let id = parse_id("delivery", &id)?;
                    let req: RescheduleBody = json_body(&b)?;
                    let changes = Reschedule::new(
                        parse_opt(&req.pickup)?,
                        parse_opt(&req.dropoff)?,
                        req.pickup_time,
                        req.deadline,
                    )?;
                    svc.reschedule_delivery(&ctx, &id, &changes).await
                };
                render(run.await, ok("deliveryId"))
            })
        })
        .boxed();

    let cancel = api()
        .and(warp::path!("deliveries" / String))
        .and(warp::delete())
        .and(input())
        .then(|id: String, svc: Svc, h: HeaderMap, b: Bytes| {
            to_completion(async move {
                let run = async {
                    let ctx = context(&h)?;
                    let id = parse_id("delivery", &id)?;
                    let req: ReasonBody = optional_body(&b)?;
                    svc.cancel_delivery(&ctx, &id, req.reason).await
                };
                render(run.await, ok("deliveryId"))
            })
        })
        .boxed();

    register_account
        .or(account_action)
        .unify()
        .or(register_drone)
        .unify()
        .or(drone_action)
        .unify()
        .or(telemetry_batch)
        .unify()
        .or(schedule)
        .unify()
        .or(delivery_action)
        .unify()
        .or(reschedule)
        .unify()
        .or(cancel)
        .unify()
        .boxed()
}
