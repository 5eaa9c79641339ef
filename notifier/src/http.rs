//! `GET /api/v1/notifications/failures`: the messages given up on, newest first, for
//! operators and analysts.

use crate::SharedLedger;
use api::{Principal, Problem};
use serde::Deserialize;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

#[derive(Deserialize)]
struct Page {
    limit: Option<usize>,
}

pub fn routes(ledger: SharedLedger) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "v1" / "notifications" / "failures")
        .and(warp::get())
        .and(warp::ext::get::<Principal>())
        .and(warp::query::<Page>())
        .map(move |who: Principal, page: Page| {
            if !who.reads_all() {
                return Problem::new(
                    StatusCode::FORBIDDEN,
                    "only operator and analyst keys read the notification failures",
                )
                .into_response();
            }
            let limit = match page.limit {
                None => 50,
                Some(limit @ 1..=500) => limit,
                Some(_) => {
                    return Problem::new(StatusCode::BAD_REQUEST, "limit must be 1 to 500")
                        .into_response();
                }
            };
            let failures = crate::lock(&ledger).failures(limit);
            warp::reply::json(&serde_json::json!({ "failures": failures })).into_response()
        })
        .boxed()
}
