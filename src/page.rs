//! The tracking page (SPEC §5, §6): plain HTML, CSS and a little JavaScript shipped in
//! the binary, with a base map drawn as SVG, so it works offline. The files are public;
//! their data come from the streams, with a tracking token (`/track/{id}?t=`) or an
//! operator's key that mints short-lived fleet stream tokens.

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use warp::reply::Response;

const INDEX: &str = include_str!("page/index.html");
const TRACK: &str = include_str!("page/track.html");
const JS: &str = "text/javascript; charset=utf-8";
const ASSETS: [(&str, &str, &str); 5] = [
    (
        "page.css",
        "text/css; charset=utf-8",
        include_str!("page/page.css"),
    ),
    ("map.js", JS, include_str!("page/map.js")),
    ("track.js", JS, include_str!("page/track.js")),
    ("fleet.js", JS, include_str!("page/fleet.js")),
    (
        "basemap.svg",
        "image/svg+xml",
        include_str!("page/basemap.svg"),
    ),
];

/// The paths of the page's files (served without a key).
pub fn is_page(path: &str) -> bool {
    path == "/"
        || path
            .strip_prefix("/track/")
            .is_some_and(|id| !id.is_empty() && !id.contains('/'))
        || path
            .strip_prefix("/assets/")
            .is_some_and(|name| ASSETS.iter().any(|(n, _, _)| *n == name))
}

fn file(body: &'static str, content_type: &'static str) -> Response {
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Nothing from elsewhere: no scripts, styles, fonts or tiles from the internet.
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:"),
    );
    response
}

pub fn routes() -> BoxedFilter<(Response,)> {
    let html = "text/html; charset=utf-8";
    // Paths before methods: a method filter that failed first would turn every other
    // path's 404 into a 405.
    let index = warp::path::end()
        .and(warp::get())
        .map(move || file(INDEX, html));
    let track = warp::path!("track" / String)
        .and(warp::get())
        .map(move |_id: String| file(TRACK, html));
    let assets =
        warp::path!("assets" / String)
            .and(warp::get())
            .and_then(|name: String| async move {
                match ASSETS.iter().find(|(n, _, _)| *n == name) {
                    Some((_, content_type, body)) => Ok(file(body, content_type)),
                    None => Err(warp::reject::not_found()),
                }
            });
    index.or(track).unify().or(assets).unify().boxed()
}
