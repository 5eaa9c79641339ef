use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, TryStreamExt};
use warp::{Filter, Rejection};

/// Largest request body any endpoint accepts (a telemetry batch is the biggest).
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

/// A body over the limit but under this much is read and thrown away before the 413 is
/// sent: a client still sending when the server hangs up gets a broken pipe instead of
/// the answer. Past it the connection is dropped at once.
pub const DRAIN_LIMIT_BYTES: u64 = 16 * 1024 * 1024;

/// Rejection for a body that is not JSON by its `Content-Type`; recover maps it to 415.
#[derive(Debug)]
pub struct NotJson;
impl warp::reject::Reject for NotJson {}

/// True for `application/json` and `application/*+json`, parameters aside.
fn is_json(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// Refuses (with [`NotJson`]) a request that has a body but no JSON `Content-Type`; an
/// empty body needs none.
pub fn json_content(headers: &warp::http::HeaderMap, body: &Bytes) -> Result<(), Rejection> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let json = headers
        .get(warp::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json);
    if json {
        Ok(())
    } else {
        Err(warp::reject::custom(NotJson))
    }
}

/// Rejection for a body over the limit; the server's recover maps it to 413.
#[derive(Debug)]
pub struct BodyTooLarge;
impl warp::reject::Reject for BodyTooLarge {}

/// The whole request body, refused with [`BodyTooLarge`] when it passes `limit`
/// (whether `Content-Length` says so up front or a chunked body grows past it).
pub fn limited_body(limit: usize) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and_then(|length: Option<u64>| async move {
            match length {
                Some(n) if n > DRAIN_LIMIT_BYTES => Err(warp::reject::custom(BodyTooLarge)),
                _ => Ok(()),
            }
        })
        .untuple_one()
        .and(warp::body::stream())
        .and_then(move |stream| collect(stream, limit))
}

async fn collect<S, B>(stream: S, limit: usize) -> Result<Bytes, Rejection>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut stream = Box::pin(stream);
    let mut body = BytesMut::new();
    let mut seen: u64 = 0;
    while let Some(mut chunk) = stream
        .try_next()
        .await
        .map_err(|_| warp::reject::custom(BodyTooLarge))?
    {
        seen += chunk.remaining() as u64;
        if seen > DRAIN_LIMIT_BYTES {
            return Err(warp::reject::custom(BodyTooLarge));
        }
        if seen > limit as u64 {
            body.clear(); // over the limit: keep reading, keep nothing
            chunk.advance(chunk.remaining());
            continue;
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            body.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    if seen > limit as u64 {
        return Err(warp::reject::custom(BodyTooLarge));
    }
    Ok(body.freeze())
}
