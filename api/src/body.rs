use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, TryStreamExt};
use warp::{Filter, Rejection};

/// Largest request body any endpoint accepts (a telemetry batch is the biggest).
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

/// Rejection for a body over the limit; the server's recover maps it to 413.
#[derive(Debug)]
pub struct BodyTooLarge;
impl warp::reject::Reject for BodyTooLarge {}

/// The whole request body, refused with [`BodyTooLarge`] as soon as it passes `limit`
/// (by `Content-Length` up front, or while streaming a chunked body).
pub fn limited_body(limit: usize) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and_then(move |length: Option<u64>| async move {
            match length {
                Some(n) if n > limit as u64 => Err(warp::reject::custom(BodyTooLarge)),
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
    while let Some(mut chunk) = stream
        .try_next()
        .await
        .map_err(|_| warp::reject::custom(BodyTooLarge))?
    {
        if body.len() + chunk.remaining() > limit {
            return Err(warp::reject::custom(BodyTooLarge));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            body.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(body.freeze())
}
