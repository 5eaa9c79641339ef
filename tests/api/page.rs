//! The tracking page in a real browser: `tests/page/track.mjs` drives Debian's chromium
//! through playwright-core against a server with automatic dispatch (the customer's page
//! during a flight, the operator's fleet page) and saves screenshots under
//! `target/page-screenshots/`. `.ci/run` installs chromium and `npm ci`s the script's
//! one dependency; without them the test says it was skipped.

use crate::helpers::{OPERATOR_KEY, Server, temp_dir};
use std::path::Path;
use std::process::Command;

#[test]
fn the_tracking_pages_show_a_flight_live_in_a_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !root
        .join("tests/page/node_modules/playwright-core")
        .exists()
        || !Path::new(&chromium).exists()
    {
        println!("skipped: the page test needs chromium and `npm ci --prefix tests/page`");
        return;
    }
    let dir = temp_dir();
    // Automatic dispatch: the workflow assigns the drone and flies it from telemetry.
    let server = Server::start_with(dir.path(), &[]);
    let shots = root.join("target/page-screenshots");
    std::fs::create_dir_all(&shots).expect("a screenshot directory");
    let status = Command::new("node")
        .arg(root.join("tests/page/track.mjs"))
        .args([server.base.as_str(), OPERATOR_KEY])
        .arg(&shots)
        .env("CHROMIUM", &chromium)
        .status()
        .expect("node runs");
    assert!(status.success(), "the page test failed: {status}");
}
