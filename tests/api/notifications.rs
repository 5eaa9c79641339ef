//! The notifier: `notify-me` subscriptions are told by email (through a local SMTP sink,
//! Python's `aiosmtpd`, started here) and by signed webhooks (a local HTTP receiver)
//! when a drone is assigned, at pickup and at completion; a failing webhook is tried
//! again, then listed and counted. Everything stays on 127.0.0.1. Without `aiosmtpd`
//! (`python3 -m pip install aiosmtpd`) the email test says it was skipped.

use crate::helpers::{Api, Server, location, temp_dir};
use chrono::Utc;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// An SMTP server on 127.0.0.1 that prints every message it receives as a JSON line.
const SMTP_SINK: &str = r#"
import json, sys
from aiosmtpd.controller import Controller

class Sink:
    async def handle_DATA(self, server, session, envelope):
        print(json.dumps({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                          "data": envelope.content.decode("utf-8", "replace")}), flush=True)
        return "250 OK"

controller = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"#;

struct SmtpSink {
    child: Child,
    addr: String,
    mails: std::sync::mpsc::Receiver<Value>,
}

impl SmtpSink {
    /// Starts the sink, or `None` when `aiosmtpd` is not installed.
    fn start() -> Option<SmtpSink> {
        let installed = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new("python3")
            .args(["-c", SMTP_SINK, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let (tx, mails) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line == "ready" {
                    let _ = ready_tx.send(());
                } else if let Ok(mail) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(mail);
                }
            }
        });
        ready
            .recv_timeout(Duration::from_secs(20))
            .expect("the SMTP sink starts");
        Some(SmtpSink {
            child,
            addr: format!("127.0.0.1:{port}"),
            mails,
        })
    }

    /// The next email received (within 20 s).
    fn next(&self) -> Value {
        self.mails
            .recv_timeout(Duration::from_secs(20))
            .expect("an email arrives")
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request the HTTP receiver got.
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// An HTTP receiver on 127.0.0.1 answering every POST with `status`; its URL, the
/// requests and how many came.
async fn receiver(status: u16) -> (String, mpsc::UnboundedReceiver<Received>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let url = format!(
        "http://{}/hooks/delivery",
        listener.local_addr().expect("addr")
    );
    let (tx, rx) = mpsc::unbounded_channel();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, length) = loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end - 4]).to_string();
                let headers = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
                    .collect();
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(Received {
                    headers,
                    body: buf[head_end..head_end + length].to_vec(),
                });
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = socket.write_all(reply.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (url, rx, hits)
}

async fn next_hook(hooks: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(20), hooks.recv())
        .await
        .expect("a webhook arrives")
        .expect("the receiver runs")
}

/// A delivery of a new account with a drone registered for it (dispatch is manual).
async fn delivery_and_drone(api: &Api, drone: &str) -> String {
    let (owner, _) = api.register_account("Notified").await;
    api.register_drone(drone, 5.0).await;
    let (delivery, _) = api.schedule(&owner, 1.0).await;
    delivery
}

async fn notify_me(api: &Api, delivery: &str, body: Value) -> Value {
    let response = api
        .post(&format!("/api/v1/deliveries/{delivery}/notify-me"), body)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("json")
}

fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Checks the webhook's signature with `secret` and returns its JSON.
fn verified(hook: &Received, secret: &str) -> Value {
    assert_eq!(
        hook.headers.get("x-signature"),
        Some(&signature(secret, &hook.body)),
        "signed with the subscription's secret"
    );
    serde_json::from_slice(&hook.body).expect("a JSON body")
}

/// Waits (up to 10 s) until `/metrics` has the line `line`.
async fn metric_reaches(api: &Api, line: &str) {
    let started = Instant::now();
    loop {
        let metrics = api.get("/metrics").await.text().await.expect("metrics");
        if metrics.lines().any(|l| l == line) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no {line} in {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn subscribers_get_an_email_and_signed_webhooks_at_assignment_pickup_and_completion() {
    let Some(smtp) = SmtpSink::start() else {
        println!("skipped: the notification test needs `python3 -m pip install aiosmtpd`");
        return;
    };
    let (url, mut hooks, _) = receiver(200).await;
    let (gateway, mut texts, _) = receiver(200).await;
    let dir = temp_dir();
    let options = [
        "--dispatch",
        "manual",
        "--smtp-relay",
        smtp.addr.as_str(),
        "--sms-gateway",
        gateway.as_str(),
        "--notify-allow-private",
    ];
    let mut server = Server::start_with(dir.path(), &options);
    let api = Api::of(&server);
    api.ready().await;
    let delivery = delivery_and_drone(&api, "drone-n1").await;

    let subscribe = || async {
        let response = api
            .client
            .post(api.url(&format!("/api/v1/deliveries/{delivery}/notify-me")))
            .header("Idempotency-Key", "notify-1")
            .json(&json!({"email": "ada@example.com", "webhook": url}))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("json");
        body["webhookSecret"]
            .as_str()
            .expect("a webhook secret")
            .to_owned()
    };
    let secret = subscribe().await;
    assert_eq!(subscribe().await, secret, "a retry answers the same secret");
    // A subscription without a webhook has none.
    let texted = notify_me(&api, &delivery, json!({"sms": "+15550100"})).await;
    assert!(texted.get("webhookSecret").is_none(), "{texted}");

    assert_eq!(
        api.assign(&delivery, "drone-n1").await.status(),
        StatusCode::OK
    );
    let assigned = verified(&next_hook(&mut hooks).await, &secret);
    assert_eq!(assigned["kind"], "droneAssigned");
    assert_eq!(assigned["deliveryId"], delivery.as_str());
    assert_eq!(assigned["droneId"], "drone-n1");
    assert!(
        assigned["deliveryEta"].is_string(),
        "with the ETA: {assigned}"
    );
    let event_id = assigned["eventId"].as_str().expect("the event id");
    assert_eq!(
        assigned["notificationId"],
        format!("{event_id}:webhook").as_str()
    );
    let mail = smtp.next();
    assert_eq!(mail["to"], json!(["ada@example.com"]));
    let data = mail["data"].as_str().expect("the message");
    assert!(data.contains("drone is on its way"), "{data}");
    assert!(
        data.contains("drone-n1") && data.contains("Estimated delivery"),
        "{data}"
    );
    assert!(
        data.contains(&format!("{event_id}:email")),
        "the id: {data}"
    );
    let text: Value = serde_json::from_slice(&next_hook(&mut texts).await.body).expect("JSON");
    assert_eq!(text["to"], "+15550100");
    assert_eq!(text["notificationId"], format!("{event_id}:sms").as_str());
    let words = text["text"].as_str().expect("text");
    assert!(words.contains("Estimated delivery"), "{text}");

    let picked = api
        .post(&format!("/api/v1/deliveries/{delivery}/pickup"), json!({}))
        .await;
    assert_eq!(picked.status(), StatusCode::OK);
    let picked = verified(&next_hook(&mut hooks).await, &secret);
    assert_eq!(picked["kind"], "pickedUp");
    assert_eq!(picked["stage"], "HeadedToDropoff");
    assert!(
        smtp.next()["data"]
            .as_str()
            .expect("text")
            .contains("picked up")
    );

    let done = api
        .post(
            &format!("/api/v1/deliveries/{delivery}/confirmations"),
            json!({"confirmationType": "None", "location": location(47.65, -122.30), "at": Utc::now()}),
        )
        .await;
    assert_eq!(done.status(), StatusCode::OK);
    let completed = verified(&next_hook(&mut hooks).await, &secret);
    assert_eq!(completed["kind"], "completed");
    assert_eq!(completed["stage"], "Completed");
    let mail = smtp.next();
    assert!(
        mail["data"].as_str().expect("text").contains("delivered"),
        "{mail}"
    );

    // Counted once settled (a moment after the receiver has it).
    metric_reaches(&api, r#"notifications_sent_total{channel="webhook"} 3"#).await;
    metric_reaches(&api, r#"notifications_sent_total{channel="email"} 3"#).await;
    metric_reaches(&api, r#"notifications_sent_total{channel="sms"} 3"#).await;
    let (status, failures) = api.get_json("/api/v1/notifications/failures").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(failures, json!({"failures": []}));

    // The SMS of the pickup and the completion.
    let mut ids = Vec::new();
    while let Ok(text) = texts.try_recv() {
        let text: Value = serde_json::from_slice(&text.body).expect("JSON");
        ids.push(text["notificationId"].clone());
    }
    let ids_sent =
        [&picked, &completed].map(|n| json!(format!("{}:sms", n["eventId"].as_str().expect("id"))));
    assert_eq!(ids, ids_sent);
    // A restart folds the log again, and sends nothing it sent before.
    server.stop();
    let server = Server::start_with(dir.path(), &options);
    let api = Api::of(&server);
    api.ready().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(hooks.try_recv().is_err(), "no webhook sent again");
    assert!(texts.try_recv().is_err(), "no SMS sent again");
    assert!(
        smtp.mails.recv_timeout(Duration::from_millis(100)).is_err(),
        "no email sent again"
    );
}

#[tokio::test]
async fn a_failing_webhook_is_tried_again_then_listed_and_counted() {
    let (url, _hooks, hits) = receiver(503).await;
    let dir = temp_dir();
    let server = Server::start_with(
        dir.path(),
        &[
            "--dispatch",
            "manual",
            "--notify-allow-private",
            "--notify-attempts",
            "3",
            "--notify-backoff-ms",
            "20",
        ],
    );
    let api = Api::of(&server);
    api.ready().await;
    let delivery = delivery_and_drone(&api, "drone-n2").await;
    notify_me(&api, &delivery, json!({"webhook": url})).await;
    assert_eq!(
        api.assign(&delivery, "drone-n2").await.status(),
        StatusCode::OK
    );

    let started = Instant::now();
    let failure = loop {
        let (_, body) = api.get_json("/api/v1/notifications/failures").await;
        if let Some(failure) = body["failures"].as_array().and_then(|f| f.first()) {
            break failure.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no failure listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(failure["channel"], "webhook");
    assert_eq!(failure["kind"], "droneAssigned");
    assert_eq!(failure["deliveryId"], delivery.as_str());
    assert_eq!(failure["attempts"], 3);
    assert_eq!(failure["target"], url.as_str());
    assert!(
        failure["error"].as_str().expect("why").contains("503"),
        "{failure}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 3, "tried three times");
    metric_reaches(&api, r#"notifications_failed_total{channel="webhook"} 1"#).await;
    metric_reaches(&api, r#"notification_retries_total{channel="webhook"} 2"#).await;

    // Operators and analysts only.
    let tenant = api.with_key("dd_acct_not-a-key-of-anyone-0000");
    assert_ne!(
        tenant.get("/api/v1/notifications/failures").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn webhooks_to_private_addresses_are_refused_by_default() {
    let (url, _hooks, hits) = receiver(200).await;
    let dir = temp_dir();
    let server = Server::start_with(dir.path(), &["--dispatch", "manual"]);
    let api = Api::of(&server);
    api.ready().await;
    let delivery = delivery_and_drone(&api, "drone-n3").await;
    notify_me(&api, &delivery, json!({"webhook": url})).await;
    assert_eq!(
        api.assign(&delivery, "drone-n3").await.status(),
        StatusCode::OK
    );
    let started = Instant::now();
    let failure = loop {
        let (_, body) = api.get_json("/api/v1/notifications/failures").await;
        if let Some(failure) = body["failures"].as_array().and_then(|f| f.first()) {
            break failure.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no failure listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(failure["attempts"], 1, "not tried again: {failure}");
    assert!(
        failure["error"].as_str().expect("why").contains("refused"),
        "{failure}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing was sent");
}
