//! The HTTP contract shared by the command and query sides: problem details
//! (RFC 9457), consistency tokens for read-your-writes, and the request-body limit.

mod auth;
mod body;
mod problem;
mod recover;
mod token;

pub use auth::{
    AccountKeys, Authenticator, NoAccounts, Principal, Unauthenticated, hex, key_hash, new_key,
    workflow_key,
};
pub use body::{BODY_LIMIT_BYTES, BodyTooLarge, NotJson, json_content, limited_body};
pub use problem::Problem;
pub use recover::recover;
pub use token::{ConsistencyToken, Position, TOKEN_HEADER};
