//! The HTTP contract shared by the command and query sides: problem details
//! (RFC 9457), consistency tokens for read-your-writes, and the request-body limit.

mod auth;
mod body;
mod problem;
mod recover;
mod token;
mod tracking;
mod webhook;

pub use auth::{
    AccountKeys, Authenticator, NoAccounts, Principal, Unauthenticated, hex, key_hash, new_key,
    workflow_key,
};
pub use body::{
    BODY_LIMIT_BYTES, BodyTooLarge, DRAIN_LIMIT_BYTES, NotJson, json_content, limited_body,
};
pub use problem::Problem;
pub use recover::recover;
pub use token::{ConsistencyToken, Position, TOKEN_HEADER};
pub use tracking::{STREAM_TOKEN_TTL, TRACKING_TTL, TrackingTokens, Watch};
pub use webhook::{SIGNATURE_HEADER, webhook_secret, webhook_signature};

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

/// The routes tried in turn, as one filter (none: nothing matches, a 404).
pub fn one_of(routes: Vec<BoxedFilter<(Response,)>>) -> BoxedFilter<(Response,)> {
    routes
        .into_iter()
        .reduce(|all, more| all.or(more).unify().boxed())
        .unwrap_or_else(|| {
            warp::any()
                .and_then(|| async { Err::<Response, _>(warp::reject::not_found()) })
                .boxed()
        })
}
