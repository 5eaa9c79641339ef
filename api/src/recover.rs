use crate::body::{BodyTooLarge, NotJson};
use crate::problem::Problem;
use std::convert::Infallible;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Rejection, Reply};

/// Turns what no route accepted into a problem response (the one `recover` of the server).
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    let problem = if rejection.is_not_found() {
        Problem::new(StatusCode::NOT_FOUND, "no such resource")
    } else if rejection.find::<BodyTooLarge>().is_some() {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than {} bytes",
                crate::BODY_LIMIT_BYTES
            ),
        )
    } else if rejection.find::<NotJson>().is_some() {
        Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the request body must be JSON, sent with Content-Type: application/json",
        )
    } else if rejection.find::<warp::reject::InvalidQuery>().is_some() {
        Problem::new(StatusCode::BAD_REQUEST, "the query string is malformed")
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        Problem::new(StatusCode::BAD_REQUEST, e.to_string())
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "the method is not allowed on this resource",
        )
    } else {
        tracing::error!(?rejection, "unhandled rejection");
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "unhandled request")
    };
    Ok(problem.into_response())
}
