use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, TryStreamExt};
use warp::{Filter, Rejection};

/// Largest request body any endpoint accepts (a telemetry batch is the biggest).
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

/// A body over the limit but under this much is read and thrown away before the 413 is
/// sent: a client still sending when the server hangs up gets a broken pipe instead of
/// the answer. Past it the connection is dropped at once.
const DRAIN_LIMIT_BYTES: u64 = 16 * 1024 * 1024;

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
