//! The HTTP edge: slow and idle connections are closed after the header timeout, the
//! connection cap refuses one more without disturbing the others, a client that goes
//! away is no error in the log, and the log is plain text off a terminal or JSON.

use crate::helpers::{Api, OPERATOR_KEY, Server, temp_dir};
use reqwest::StatusCode;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn address(server: &Server) -> String {
    server
        .base
        .strip_prefix("http://")
        .expect("an http URL")
        .to_owned()
}

/// Reads until the server closes the connection (or `within` passes); true if it closed.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).expect("read timeout");
    let mut buffer = [0u8; 4096];
    let started = Instant::now();
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false, // timed out: still open
        }
        if started.elapsed() > within {
            return false;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_and_idle_connections_are_closed_after_the_header_timeout() {
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), &["--header-timeout-secs", "1"]);
    Api::of(&server).ready().await;
    let addr = address(&server);

    // Headers that never end (slowloris).
    let mut slow = TcpStream::connect(&addr).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    assert!(
        closed_within(&mut slow, Duration::from_secs(5)),
        "slow headers kept"
    );

    // Idle after an answer, on a keep-alive connection.
    let mut idle = TcpStream::connect(&addr).expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut buffer = [0u8; 1024];
    let read = idle.read(&mut buffer).expect("an answer");
    assert!(
        String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buffer[..read])
    );
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)),
        "idle connection kept"
    );

    // A client that keeps talking is served all along.
    let api = Api::of(&server);
    for _ in 0..3 {
        assert_eq!(api.get("/healthz").await.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

/// Sends a request on `stream` and reads the start of its answer.
fn ask(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).expect("write");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buffer = [0u8; 4096];
    let read = stream.read(&mut buffer).unwrap_or(0);
    String::from_utf8_lossy(&buffer[..read]).into_owned()
}

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

/// The head and the first bytes of a command whose body never ends (until `finish`).
fn half_a_command() -> String {
    format!(
        "POST /api/v1/accounts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR_KEY}\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{{\"name\":"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn at_the_connection_cap_a_new_connection_closes_a_silent_or_idle_one_and_only_busy_ones_refuse_it()
 {
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), &["--max-connections", "2"]);
    let addr = address(&server);
    // Ready, asked on connections that close (a pooled client would hold a slot).
    let started = Instant::now();
    loop {
        let mut probe = TcpStream::connect(&addr).expect("connect");
        let answer = ask(
            &mut probe,
            "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Full: one connection that has spoken and idles, one that never says a word.
    let mut talker = TcpStream::connect(&addr).expect("connect");
    assert!(ask(&mut talker, HEALTHZ).starts_with("HTTP/1.1 200"));
    let mut silent = TcpStream::connect(&addr).expect("connect");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A third is served: the silent one makes room, the talker keeps its connection.
    let mut third = TcpStream::connect(&addr).expect("the kernel accepts it");
    assert!(
        ask(&mut third, HEALTHZ).starts_with("HTTP/1.1 200"),
        "served"
    );
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)),
        "the silent one closed"
    );
    assert!(
        ask(&mut talker, HEALTHZ).starts_with("HTTP/1.1 200"),
        "the talker stays"
    );

    // Both busy (a command whose body is still coming): a fourth is refused.
    for busy in [&mut talker, &mut third] {
        busy.write_all(half_a_command().as_bytes()).expect("write");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = TcpStream::connect(&addr).expect("the kernel accepts it");
    let _ = fourth.write_all(HEALTHZ.as_bytes());
    assert!(
        closed_within(&mut fourth, Duration::from_secs(5)),
        "a connection beyond busy ones was served"
    );
    // The busy ones still get their answers; then there is room again, and the refusal
    // was counted.
    for busy in [&mut talker, &mut third] {
        let answer = ask(busy, "\"x\"}          ");
        assert!(answer.starts_with("HTTP/1.1 "), "answered: {answer}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fifth = TcpStream::connect(&addr).expect("connect");
    let metrics =
        format!("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR_KEY}\r\n\r\n");
    fifth.write_all(metrics.as_bytes()).expect("write");
    fifth
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 65536];
    while !String::from_utf8_lossy(&answer).contains("http_connections_refused_total ") {
        let read = fifth.read(&mut buffer).expect("metrics");
        assert!(read > 0, "closed");
        answer.extend_from_slice(&buffer[..read]);
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("http_connections_refused_total ") && !l.ends_with(" 0")),
        "{text}"
    );
}

/// Starts the server logging at `info` into a file; returns it and the log's path.
fn logged(dir: &std::path::Path, extra: &[&str]) -> (Server, std::path::PathBuf) {
    let log = dir.join("server.log");
    let file = std::fs::File::create(&log).expect("log file");
    let data = dir.join("data");
    let data = data.to_string_lossy();
    let mut args = vec!["serve", "--data-dir", data.as_ref(), "--dispatch", "manual"];
    args.extend_from_slice(extra);
    // At info, so that there are lines (start-up, shutdown) whatever the test's level.
    let server = Server::run_logging_to(&args, Stdio::from(file), "info");
    (server, log)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_is_no_error_and_the_log_has_no_colours_off_a_terminal() {
    let dir = temp_dir();
    let (server, log) = logged(dir.path(), &[]);
    Api::of(&server).ready().await;
    let addr = address(&server);
    for _ in 0..5 {
        // Half a request, then gone.
        let mut stream = TcpStream::connect(&addr).expect("connect");
        let half = format!(
            "POST /api/v1/accounts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR_KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":"
        );
        stream.write_all(half.as_bytes()).expect("write");
        drop(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(server);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("INFO"),
        "the server logged nothing at info: {text}"
    );
    assert!(!text.contains("ERROR"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escapes in a log file: {text:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_log_format_json_every_line_is_a_json_object() {
    let dir = temp_dir();
    let (server, log) = logged(dir.path(), &["--log-format", "json"]);
    let api = Api::of(&server);
    api.ready().await;
    assert_eq!(api.get("/healthz").await.status(), StatusCode::OK);
    drop(server);
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the server logged nothing at info");
    for line in lines {
        let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!("not JSON ({e}): {line}");
        });
        assert!(value.get("level").is_some(), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_too_long_target_is_414_and_too_large_headers_are_431_as_problems() {
    let (_dir, _server, api) = crate::helpers::spawn_app();
    let before = api.events_appended().await;
    let long = format!("/api/v1/deliveries/{}", "x".repeat(9000));
    let response = api.get(&long).await;
    assert_eq!(response.status(), StatusCode::URI_TOO_LONG);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let response = api
        .client
        .post(api.url("/api/v1/accounts"))
        .header("x-padding", "y".repeat(40 * 1024))
        .json(&serde_json::json!({"name": "Contoso", "email": "ops@contoso.example"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    let problem: serde_json::Value = response.json().await.expect("a problem body");
    assert_eq!(problem["status"], 431);
    assert_eq!(api.events_appended().await, before);
}

/// How many of `answers` had each status, and whether every 429/503 said when to retry.
fn tally(answers: &[(StatusCode, bool)], status: StatusCode) -> usize {
    answers.iter().filter(|(s, _)| *s == status).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_key_beyond_its_rate_gets_429_with_retry_after_and_nothing_is_written() {
    let dir = temp_dir();
    let server = Server::start_with(
        dir.path(),
        &["--dispatch", "manual", "--rate-limit-per-key", "5"],
    );
    let operator = Api::of(&server);
    let (account, _, key) = operator.register_tenant("Contoso").await;
    let tenant = operator.with_key(&key);
    let before = operator.events_appended().await;
    let mut answers = Vec::new();
    for _ in 0..30 {
        let response = tenant
            .post(
                "/api/v1/deliveries",
                crate::helpers::schedule_body(&account, 1.0),
            )
            .await;
        let retry = response.headers().contains_key("retry-after");
        answers.push((response.status(), retry));
    }
    let accepted = tally(&answers, StatusCode::ACCEPTED);
    let limited = tally(&answers, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(accepted + limited, 30, "{answers:?}");
    assert!(
        (10..=14).contains(&accepted),
        "a burst of 10, then 5/s: {answers:?}"
    );
    assert!(
        answers
            .iter()
            .all(|(s, retry)| *s != StatusCode::TOO_MANY_REQUESTS || *retry)
    );
    // Two events per delivery scheduled, none for a refused one.
    assert_eq!(
        operator.events_appended().await,
        before + 2.0 * accepted as f64
    );
    // The operator is not limited.
    for _ in 0..30 {
        assert_eq!(
            operator.get("/api/v1/drones").await.status(),
            StatusCode::OK
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_that_wait_too_long_for_the_write_path_are_shed_at_once_with_nothing_written() {
    let dir = temp_dir();
    let server = Server::start_with(
        dir.path(),
        &[
            "--dispatch",
            "manual",
            "--max-writes-in-flight",
            "1",
            "--shed-after-ms",
            "1",
        ],
    );
    let api = Api::of(&server);
    let (account, _) = api.register_account("Contoso").await;
    let before = api.events_appended().await;
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (api, account) = (api.clone(), account.clone());
        tasks.push(tokio::spawn(async move {
            let response = api
                .post(
                    "/api/v1/deliveries",
                    crate::helpers::schedule_body(&account, 1.0),
                )
                .await;
            let retry = response.headers().contains_key("retry-after");
            (response.status(), retry)
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task"));
    }
    let accepted = tally(&answers, StatusCode::ACCEPTED);
    let shed = tally(&answers, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(accepted + shed, 64, "{answers:?}");
    assert!(shed > 0 && accepted > 0, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(s, retry)| *s != StatusCode::SERVICE_UNAVAILABLE || *retry)
    );
    assert_eq!(api.events_appended().await, before + 2.0 * accepted as f64);
    let metrics = api.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("http_requests_shed_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_whose_body_trickles_in_holds_no_write_slot_and_gets_408() {
    let dir = temp_dir();
    let server = Server::start_with(
        dir.path(),
        &["--max-writes-in-flight", "1", "--header-timeout-secs", "2"],
    );
    let api = Api::of(&server);
    api.ready().await;
    let before = api.events_appended().await;

    // A command whose body stops half-way, on the one slot's path.
    let mut slow = TcpStream::connect(address(&server)).expect("connect");
    slow.write_all(half_a_command().as_bytes()).expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Other commands go through meanwhile: the slow body holds no slot.
    let started = Instant::now();
    let (account, _) = api.register_account("Contoso").await;
    assert!(!account.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a command waited {:?} behind a slow body",
        started.elapsed()
    );

    // The slow one is answered 408 once its body is late, and nothing of it is written.
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert_eq!(
        api.events_appended().await,
        before + 1.0,
        "only the one account"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_that_wait_too_long_for_the_read_path_are_shed_and_the_probes_never_are() {
    let dir = temp_dir();
    let server = Server::start_with(
        dir.path(),
        &["--max-reads-in-flight", "1", "--shed-after-ms", "1"],
    );
    let api = Api::of(&server);
    api.ready().await;
    let (account, _) = api.register_account("Contoso").await;
    let history = format!("/api/v1/accounts/{account}/deliveries");

    // The one read slot is taken by a query that waits (up to 2 s) for a position the
    // log never reaches.
    let waiting = {
        let api = api.clone();
        let path = format!("{history}?consistencyToken=deliveries:0:999999");
        tokio::spawn(async move { api.get(&path).await.status() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        let response = api.get(&history).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("retry-after"));
        // The probes take no slot.
        assert_eq!(api.get("/readyz").await.status(), StatusCode::OK);
        assert_eq!(api.get("/healthz").await.status(), StatusCode::OK);
    }
    assert_eq!(waiting.await.expect("task"), StatusCode::OK);
    // The slot is free again.
    assert_eq!(api.get(&history).await.status(), StatusCode::OK);
    let metrics = api.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("http_requests_shed_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
}
