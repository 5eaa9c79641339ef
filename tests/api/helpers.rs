use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The operator key every test server is started with (`DRONE_DELIVERY_OPERATOR_KEY`)
/// and every test client sends, unless a test says otherwise.
pub const OPERATOR_KEY: &str = "test-operator-key-0123456789";

/// The server binary running on its own port and data directory.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub client: Client,
}

impl Server {
    /// Starts `drone-delivery serve` on port 0 with manual dispatch (these tests assign
    /// drones themselves) and waits for its "listening" line.
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &["--dispatch", "manual"])
    }

    /// Starts `drone-delivery serve` on port 0 with more options.
    pub fn start_with(data_dir: &Path, options: &[&str]) -> Server {
        let data_dir = data_dir.to_string_lossy();
        let mut args = vec!["serve", "--data-dir", data_dir.as_ref()];
        args.extend_from_slice(options);
        Server::run(&args)
    }

    /// Runs the binary with `args` (a role and its options) on port 0.
    pub fn run(args: &[&str]) -> Server {
        let level = std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into());
        Server::run_logging_to(args, Stdio::inherit(), &level)
    }

    /// The same, its log (stderr, at `level`) going to `stderr`.
    pub fn run_logging_to(args: &[&str], stderr: Stdio, level: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_drone-delivery"))
            // The test's own settings only: a registry set for the whole run would change
            // the schema ids the wire check expects.
            .env_remove("SCHEMA_REGISTRY_URL")
            .env("DRONE_DELIVERY_OPERATOR_KEY", OPERATOR_KEY)
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", level)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the server binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("drone-delivery listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server says where it listens");
        Server {
            child: Some(child),
            base,
            client: client(),
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("reaped");
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            child.wait().expect("reaped");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A client that sends the operator key.
pub fn client() -> Client {
    client_with_key(OPERATOR_KEY)
}

/// A client that sends `key` on every request.
pub fn client_with_key(key: &str) -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).expect("a header value"),
    );
    Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        // Sooner than any header timeout a test server has (30 s by default, 1 s in the
        // edge tests, which use raw sockets): a pooled connection is never reused just as
        // the server closes it.
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

pub fn location(latitude: f64, longitude: f64) -> Value {
    json!({"latitude": latitude, "longitude": longitude, "altitude": 0})
}

/// Talks to one server: the calls every test makes.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: Client,
}

impl Api {
    pub fn of(server: &Server) -> Api {
        Api {
            base: server.base.clone(),
            client: server.client.clone(),
        }
    }

    /// Waits (up to 20 s) until `/readyz` answers 200: the roles have caught up.
    pub async fn ready(&self) {
        let started = std::time::Instant::now();
        loop {
            if self.get("/readyz").await.status() == StatusCode::OK {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{} never became ready",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The same server, as the holder of `key`.
    pub fn with_key(&self, key: &str) -> Api {
        Api {
            base: self.base.clone(),
            client: client_with_key(key),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let response = self.get(path).await;
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn register_account(&self, name: &str) -> (String, String) {
        let (id, token, _) = self.register_tenant(name).await;
        (id, token)
    }

    /// Registers an account; returns its id, consistency token and API key.
    pub async fn register_tenant(&self, name: &str) -> (String, String, String) {
        let response = self
            .post(
                "/api/v1/accounts",
                json!({"name": name, "email": "ops@contoso.example"}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.expect("json");
        let field = |name: &str| body[name].as_str().expect(name).to_string();
        (
            field("accountId"),
            field("consistencyToken"),
            field("apiKey"),
        )
    }

    pub async fn register_drone(&self, id: &str, payload_kg: f64) {
        let response = self
            .client
            .put(self.url(&format!("/api/v1/drones/{id}")))
            .json(&drone_spec(payload_kg))
            .send()
            .await
            .expect("sent");
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "register drone {id}"
        );
    }

    /// Schedules a delivery; returns its id and consistency token.
    pub async fn schedule(&self, owner: &str, weight: f64) -> (String, String) {
        let response = self
            .post("/api/v1/deliveries", schedule_body(owner, weight))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body: Value = response.json().await.expect("json");
        (
            body["deliveryId"].as_str().expect("id").to_string(),
            body["consistencyToken"]
                .as_str()
                .expect("token")
                .to_string(),
        )
    }

    pub async fn assign(&self, delivery: &str, drone: &str) -> Response {
        self.post(
            &format!("/api/v1/deliveries/{delivery}/assign-drone"),
            json!({"droneId": drone}),
        )
        .await
    }

    /// Sum of `events_appended_total` over all topics: how much the log grew.
    pub async fn events_appended(&self) -> f64 {
        let text = self.get("/metrics").await.text().await.expect("metrics");
        text.lines()
            .filter(|l| l.starts_with("events_appended_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

pub fn drone_spec(payload_kg: f64) -> Value {
    json!({
        "model": "X8",
        "payloadKg": payload_kg,
        "rangeKm": 60,
        "speedMps": 15,
        "home": location(47.60, -122.30),
    })
}

pub fn schedule_body(owner: &str, weight: f64) -> Value {
    json!({
        "ownerId": owner,
        "pickup": location(47.61, -122.33),
        "dropoff": location(47.65, -122.30),
        "deadline": "2030-01-01T00:00:00Z",
        "expedited": false,
        "confirmationRequired": "None",
        "packageInfo": {"size": "small", "weight": weight, "tag": "books"},
    })
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// A server on a fresh data directory and a client for it; the directory lives as long
/// as the first value, the process as long as the second.
pub fn spawn_app() -> (tempfile::TempDir, Server, Api) {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let api = Api::of(&server);
    (dir, server, api)
}

/// Runs `drone-delivery replay ARGS…` to its end with the tests' operator key; what it
/// printed on stdout. Fails the test when it fails.
pub fn replay(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_drone-delivery"))
        .env("DRONE_DELIVERY_OPERATOR_KEY", OPERATOR_KEY)
        .arg("replay")
        .args(args)
        .output()
        .expect("replay runs");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    said
}
