use chrono::TimeDelta;
use domain::{DispatchPolicy, FlightModel};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use storage_scylla::Consistency;

/// Where the event log lives: `embedded:DIR` or `kafka://HOST:PORT[,HOST:PORT…]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogLocation {
    Embedded(PathBuf),
    Kafka { brokers: String },
}

impl FromStr for LogLocation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(dir) = s.strip_prefix("embedded:") {
            if dir.is_empty() {
                return Err("embedded: needs a directory, e.g. embedded:./data/log".into());
            }
            return Ok(LogLocation::Embedded(PathBuf::from(dir)));
        }
        if let Some(brokers) = s.strip_prefix("kafka://") {
            let valid = !brokers.is_empty()
                && brokers.split(',').all(|b| {
                    b.rsplit_once(':')
                        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
                });
            if !valid {
                return Err(format!(
                    "kafka://{brokers}: give brokers as HOST:PORT[,HOST:PORT…]"
                ));
            }
            return Ok(LogLocation::Kafka {
                brokers: brokers.to_owned(),
            });
        }
        Err(format!(
            "{s:?} is not a log location: use embedded:DIR or kafka://HOST:PORT[,HOST:PORT…]"
        ))
    }
}

/// Where the read models live: `embedded:DIR` or `scylla://HOST:PORT/KEYSPACE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    Embedded(PathBuf),
    Scylla { nodes: String, keyspace: String },
}

impl FromStr for StoreLocation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(dir) = s.strip_prefix("embedded:") {
            if dir.is_empty() {
                return Err("embedded: needs a directory, e.g. embedded:./data/views".into());
            }
            return Ok(StoreLocation::Embedded(PathBuf::from(dir)));
        }
        if let Some(rest) = s.strip_prefix("scylla://") {
            return match rest.split_once('/') {
                Some((nodes, keyspace)) if !nodes.is_empty() && !keyspace.is_empty() => {
                    Ok(StoreLocation::Scylla {
                        nodes: nodes.to_owned(),
                        keyspace: keyspace.to_owned(),
                    })
                }
                _ => Err(format!(
                    "scylla://{rest}: use scylla://HOST:PORT[,HOST:PORT…]/KEYSPACE"
                )),
            };
        }
        Err(format!(
            "{s:?} is not a store location: use embedded:DIR or scylla://HOST:PORT/KEYSPACE"
        ))
    }
}

/// A password or other credential: its `Debug` never shows it, so settings can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one client that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// librdkafka's `security.protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KafkaSecurityProtocol {
    #[value(name = "PLAINTEXT")]
    Plaintext,
    /// TLS.
    #[value(name = "SSL")]
    Ssl,
    #[value(name = "SASL_PLAINTEXT")]
    SaslPlaintext,
    /// SASL over TLS (managed Kafka services).
    #[value(name = "SASL_SSL")]
    SaslSsl,
}

impl KafkaSecurityProtocol {
    fn librdkafka(self) -> &'static str {
        match self {
            KafkaSecurityProtocol::Plaintext => "PLAINTEXT",
            KafkaSecurityProtocol::Ssl => "SSL",
            KafkaSecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            KafkaSecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

/// librdkafka's `sasl.mechanism`, of those this build supports (GSSAPI/Kerberos needs
/// Cyrus SASL, which it is not built with; OAUTHBEARER goes through `--kafka-option`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SaslMechanism {
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn librdkafka(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// librdkafka settings as given, `KEY=VALUE[,KEY=VALUE…]`: one `--kafka-option`, one
/// item of the config file's `kafka-option` list, or `DRONE_DELIVERY_KAFKA_OPTIONS`. A
/// comma starts a new setting only when what follows is `KEY=…`, so a value with commas
/// stays whole (`debug=broker,topic`). `Debug` hides the values of secret keys.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaClientOptions(pub Vec<(String, String)>);

impl FromStr for KafkaClientOptions {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut options: Vec<(String, String)> = Vec::new();
        for piece in s.split(',') {
            let starts_one = piece
                .split_once('=')
                .filter(|(key, _)| is_option_key(key.trim()));
            match (starts_one, options.last_mut()) {
                (Some((key, value)), _) => options.push((key.trim().to_owned(), value.to_owned())),
                (None, Some((_, value))) => {
                    value.push(',');
                    value.push_str(piece);
                }
                (None, None) if piece.trim().is_empty() => {}
                (None, None) => {
                    return Err("give librdkafka settings as KEY=VALUE[,KEY=VALUE…]".into());
                }
            }
        }
        for (_, value) in &mut options {
            *value = value.trim().to_owned();
        }
        Ok(KafkaClientOptions(options))
    }
}

/// A librdkafka property name: `linger.ms`, `sasl.username`, …
fn is_option_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

impl fmt::Debug for KafkaClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(shown_options(&self.0)).finish()
    }
}

/// Settings as `Debug` shows them: the values of secret keys hidden.
fn shown_options(options: &[(String, String)]) -> Vec<(&str, &str)> {
    options
        .iter()
        .map(|(key, value)| {
            let shown = if storage_kafka::is_secret_option(key) {
                "***"
            } else {
                value
            };
            (key.as_str(), shown)
        })
        .collect()
}

/// How the Kafka adapter creates topics and talks to the cluster.
#[derive(Clone, PartialEq)]
pub struct KafkaOptions {
    /// Before every topic and consumer-group name (several deployments on one cluster).
    pub topic_prefix: String,
    pub replication_factor: i32,
    pub telemetry_retention: Duration,
    /// librdkafka settings for every client (security: `security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`, `ssl.ca.location`; tuning).
    pub client: Vec<(String, String)>,
}

impl fmt::Debug for KafkaOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaOptions")
            .field("topic_prefix", &self.topic_prefix)
            .field("replication_factor", &self.replication_factor)
            .field("telemetry_retention", &self.telemetry_retention)
            .field("client", &shown_options(&self.client))
            .finish()
    }
}

/// How to reach ScyllaDB with `--store scylla://…`: the login, the consistency level of
/// every request, the replication factor a new keyspace gets, the local datacenter.
#[derive(Clone, Debug, PartialEq)]
pub struct ScyllaOptions {
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub consistency: Consistency,
    pub replication_factor: u32,
    pub datacenter: Option<String>,
}

impl Default for ScyllaOptions {
    fn default() -> Self {
        ScyllaOptions {
            username: None,
            password: None,
            consistency: Consistency::LocalQuorum,
            replication_factor: 1,
            datacenter: None,
        }
    }
}

/// A Confluent-compatible schema registry: where it is and how to log in (HTTP basic).
#[derive(Clone, Debug, PartialEq)]
pub struct RegistryOptions {
    /// `http://HOST:PORT` or `https://…`, without a trailing slash.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

impl RegistryOptions {
    /// What the registry client takes.
    pub fn client_config(&self) -> schemas::registry::RegistryConfig {
        schemas::registry::RegistryConfig {
            url: self.url.clone(),
            basic_auth: self.username.as_ref().map(|user| {
                let password = self.password.as_ref().map_or("", Secret::expose);
                (user.clone(), password.to_owned())
            }),
        }
    }
}

impl Default for KafkaOptions {
    fn default() -> Self {
        KafkaOptions {
            topic_prefix: String::new(),
            replication_factor: 1,
            telemetry_retention: Duration::from_secs(7 * 24 * 3600),
            client: Vec::new(),
        }
    }
}

/// Who assigns drones: the workflow (`auto`, the default) or `assign-drone` calls alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DispatchMode {
    Auto,
    Manual,
}

/// A part of the system a process runs (SPEC §2); `serve` runs them all by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The command endpoints: the one writer of the log.
    CommandApi,
    /// The projector workers that build the read models.
    Projector,
    /// The query endpoints.
    QueryApi,
    /// Dispatch, the flight and the compensations; it sends commands to a command API.
    Workflow,
    /// Tells `notify-me` subscribers of their delivery's progress (email, SMS, webhooks).
    Notifier,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::CommandApi,
        Role::Projector,
        Role::QueryApi,
        Role::Workflow,
        Role::Notifier,
    ];
}

/// What `serve` needs to start: where to listen, where the data lives, and how the
/// roles behave.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// How long a query waits for a consistency token or `minVersion` at most.
    pub max_consistency_wait: Duration,
    /// How often a busy topic's projector applies a batch at most (see
    /// `projections::Projector::new`): the price is up to this much read-model lag.
    pub projector_pace: Duration,
    /// How long a connection may take to send a request's headers (also its idle time
    /// between requests).
    pub header_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// How long a live stream stays silent before it sends a heartbeat.
    pub stream_heartbeat: Duration,
    /// Free bytes the embedded log and read store keep on their disk: below them appends
    /// wait (503) and `/readyz` says why, and the projectors' applies wait, instead of a
    /// journal write failing on a full disk.
    pub log_disk_reserve: u64,
    /// Requests per second per account or analyst key (`None`: no limit).
    pub rate_limit_per_key: Option<f64>,
    /// Commands and queries served at once, and how long one waits for a slot before it
    /// is shed.
    pub max_writes_in_flight: usize,
    pub max_reads_in_flight: usize,
    pub shed_after: Duration,
    /// How far ahead of the server's clock a telemetry report may be stamped.
    pub max_clock_skew: TimeDelta,
    pub dispatch: DispatchMode,
    /// ETAs and the battery, for the query side and the workflow alike.
    pub flight: FlightModel,
    pub policy: DispatchPolicy,
    /// The roles this process runs.
    pub roles: Vec<Role>,
    /// Where the workflow sends its commands when this process runs no command API.
    pub command_url: Option<String>,
    /// Where other `command-api` processes reach this one (default: its listen address).
    pub advertise_url: Option<String>,
    /// The event log; `None`: embedded in `data_dir/log`.
    pub log: Option<LogLocation>,
    /// The read store; `None`: embedded in `data_dir/views`.
    pub store: Option<StoreLocation>,
    pub kafka: KafkaOptions,
    /// Partitions of every command topic (the same count on each, so an aggregate's
    /// partition number is the same in all of them).
    pub partitions: u32,
    pub telemetry_partitions: u32,
    /// The read models the projector builds (all when empty).
    pub only: Vec<String>,
    /// How long the active workflow's heartbeats may stop before a standby takes over.
    pub writer_session: Duration,
    pub scylla: ScyllaOptions,
    /// The schema registry whose ids frame the records; `None`: the manifest's ids.
    pub schema_registry: Option<RegistryOptions>,
    /// `None`: generated into (or read from) `data_dir/operator.key`, on the embedded
    /// log only.
    pub operator_key: Option<String>,
    pub analyst_key: Option<String>,
    /// How long idempotency keys are remembered.
    pub idempotency_retention: TimeDelta,
    /// The notifier's channels and threshold.
    pub notify: NotifySettings,
}

/// When the notifier tells subscribers of an ETA move, and how it sends.
#[derive(Clone, Debug)]
pub struct NotifySettings {
    pub eta_threshold: TimeDelta,
    pub channels: notifier::Channels,
}

impl Default for NotifySettings {
    fn default() -> NotifySettings {
        NotifySettings {
            eta_threshold: TimeDelta::seconds(300),
            channels: notifier::Channels::default(),
        }
    }
}

/// The notifier's options, shared by `serve` and `notifier`.
#[derive(clap::Args, Clone, Debug)]
pub struct NotifyArgs {
    /// A delivery's subscribers are told when its ETA moves by more than this many
    /// seconds since they were last told.
    #[arg(
        long,
        env = "DRONE_DELIVERY_NOTIFY_ETA_THRESHOLD_SECS",
        default_value_t = 300
    )]
    pub notify_eta_threshold_secs: u32,
    /// The SMTP relay emails go to, `HOST:PORT` (plain SMTP, on the operator's network);
    /// without it emails are not sent (and listed as failures).
    #[arg(long, env = "DRONE_DELIVERY_SMTP_RELAY", value_parser = host_port)]
    pub smtp_relay: Option<String>,
    /// The sender of the notification emails.
    #[arg(
        long,
        env = "DRONE_DELIVERY_NOTIFY_EMAIL_FROM",
        default_value = "Drone Delivery <notifications@drone-delivery.invalid>"
    )]
    pub notify_email_from: String,
    /// The HTTP gateway SMS messages are POSTed to as JSON (`to`, `text`,
    /// `notificationId`); without it SMS are not sent (and listed as failures).
    #[arg(long, env = "DRONE_DELIVERY_SMS_GATEWAY", value_parser = http_url)]
    pub sms_gateway: Option<String>,
    /// Webhooks may target private, loopback and link-local addresses (refused by
    /// default: a subscriber must not reach into the operator's network).
    #[arg(long, env = "DRONE_DELIVERY_NOTIFY_ALLOW_PRIVATE")]
    pub notify_allow_private: bool,
    /// Attempts per notification, the first included, before it is given up on.
    #[arg(long, env = "DRONE_DELIVERY_NOTIFY_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub notify_attempts: u32,
    /// The pause (ms) after a notification's first failed attempt; it doubles after
    /// each (up to a minute).
    #[arg(long, env = "DRONE_DELIVERY_NOTIFY_BACKOFF_MS", default_value_t = 1000)]
    pub notify_backoff_ms: u64,
}

impl NotifyArgs {
    pub fn apply(&self, settings: &mut Settings) {
        settings.notify = NotifySettings {
            eta_threshold: TimeDelta::seconds(i64::from(self.notify_eta_threshold_secs)),
            channels: notifier::Channels {
                smtp_relay: self.smtp_relay.clone(),
                email_from: self.notify_email_from.clone(),
                sms_gateway: self.sms_gateway.clone(),
                allow_private: self.notify_allow_private,
                attempts: self.notify_attempts,
                backoff: Duration::from_millis(self.notify_backoff_ms.max(1)),
            },
        };
    }
}

/// `HOST:PORT`.
fn host_port(s: &str) -> Result<String, String> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.to_owned()),
        _ => Err("give HOST:PORT".into()),
    }
}

/// An `http` or `https` URL.
fn http_url(s: &str) -> Result<String, String> {
    if s.starts_with("http://") || s.starts_with("https://") {
        Ok(s.to_owned())
    } else {
        Err("give an http:// or https:// URL".into())
    }
}

impl Settings {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Settings {
        Settings {
            listen,
            data_dir,
            max_consistency_wait: Duration::from_secs(2),
            projector_pace: Duration::from_millis(1),
            header_timeout: Duration::from_secs(30),
            max_connections: 4096,
            stream_heartbeat: Duration::from_secs(15),
            log_disk_reserve: storage_embedded::DEFAULT_DISK_RESERVE_BYTES,
            rate_limit_per_key: Some(500.0),
            max_writes_in_flight: 1024,
            max_reads_in_flight: 4096,
            shed_after: Duration::from_secs(1),
            max_clock_skew: TimeDelta::seconds(30),
            dispatch: DispatchMode::Auto,
            flight: FlightModel::default(),
            policy: DispatchPolicy::default(),
            roles: Role::ALL.to_vec(),
            command_url: None,
            advertise_url: None,
            log: None,
            store: None,
            kafka: KafkaOptions::default(),
            partitions: 8,
            telemetry_partitions: 16,
            only: Vec::new(),
            writer_session: Duration::from_secs(10),
            scylla: ScyllaOptions::default(),
            schema_registry: None,
            operator_key: None,
            analyst_key: None,
            idempotency_retention: TimeDelta::hours(24),
            notify: NotifySettings::default(),
        }
    }

    pub fn log_location(&self) -> LogLocation {
        self.log
            .clone()
            .unwrap_or_else(|| LogLocation::Embedded(self.data_dir.join("log")))
    }

    pub fn store_location(&self) -> StoreLocation {
        self.store
            .clone()
            .unwrap_or_else(|| StoreLocation::Embedded(self.data_dir.join("views")))
    }

    pub fn runs(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

impl Settings {
    /// The dispatcher's policy, with assignment off in manual mode.
    pub fn dispatch_policy(&self) -> DispatchPolicy {
        DispatchPolicy {
            auto_assign: self.dispatch == DispatchMode::Auto,
            ..self.policy.clone()
        }
    }
}

/// The options of the flight model, the dispatcher and telemetry, shared by `serve` and
/// `workflow`.
#[derive(clap::Args, Clone, Debug)]
pub struct WorkflowArgs {
    /// `auto`: the workflow assigns drones; `manual`: only `assign-drone` calls do (the
    /// flight and the compensations still run).
    #[arg(
        long,
        env = "DRONE_DELIVERY_DISPATCH",
        value_enum,
        default_value = "auto"
    )]
    pub dispatch: DispatchMode,
    /// Battery (%) a drone must have left when it is back home.
    #[arg(
        long,
        env = "DRONE_DELIVERY_BATTERY_RESERVE_PCT",
        default_value_t = 20.0,
        value_parser = percent
    )]
    pub battery_reserve_pct: f64,
    /// A charging drone returns to service at this battery level (%).
    #[arg(
        long,
        env = "DRONE_DELIVERY_READY_PCT",
        default_value_t = 80.0,
        value_parser = percent
    )]
    pub ready_pct: f64,
    /// Battery (%) gained per minute on the charger.
    #[arg(
        long,
        env = "DRONE_DELIVERY_CHARGE_PCT_PER_MINUTE",
        default_value_t = 2.0,
        value_parser = positive
    )]
    pub charge_pct_per_minute: f64,
    /// Battery (%) used per km flown; default: a full battery flies the drone's range.
    #[arg(long, env = "DRONE_DELIVERY_DRAIN_PCT_PER_KM", value_parser = positive)]
    pub drain_pct_per_km: Option<f64>,
    /// Within this many metres of a spot a drone has arrived there.
    #[arg(
        long,
        env = "DRONE_DELIVERY_ARRIVAL_RADIUS_M",
        default_value_t = 50.0,
        value_parser = positive
    )]
    pub arrival_radius_m: f64,
    /// Seconds from the decision to cruise.
    #[arg(long, env = "DRONE_DELIVERY_TAKEOFF_SECS", default_value_t = 30)]
    pub takeoff_secs: u32,
    /// Seconds from above the spot to on the ground.
    #[arg(long, env = "DRONE_DELIVERY_LANDING_SECS", default_value_t = 30)]
    pub landing_secs: u32,
    /// Seconds to load the package at the pickup.
    #[arg(long, env = "DRONE_DELIVERY_HANDLING_SECS", default_value_t = 60)]
    pub handling_secs: u32,
    /// A delivery with a pickup time leaves this many seconds before its flight needs to.
    #[arg(
        long,
        env = "DRONE_DELIVERY_DISPATCH_MARGIN_SECS",
        default_value_t = 120
    )]
    pub dispatch_margin_secs: u32,
    /// A drone on a delivery silent for this many seconds is grounded (and its delivery
    /// unassigned before pickup, failed after).
    #[arg(long, env = "DRONE_DELIVERY_SILENT_AFTER_SECS", default_value_t = 120)]
    pub silent_after_secs: u32,
    /// Telemetry stamped further than this many seconds ahead of the server's clock is 422.
    #[arg(long, env = "DRONE_DELIVERY_MAX_CLOCK_SKEW_SECS", default_value_t = 30)]
    pub max_clock_skew_secs: u32,
}

/// A percentage, 0 to 100 (a flag's value parser: a bad value is the flag's error, on
/// the command line, in the environment and in the config file alike).
fn percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err("give a percentage between 0 and 100".into()),
    }
}

/// A number > 0.
fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err("give a number > 0".into()),
    }
}

impl WorkflowArgs {
    /// Sets the options into `settings` (their values were checked as they were parsed).
    pub fn apply(&self, settings: &mut Settings) {
        let secs = |s: u32| TimeDelta::seconds(i64::from(s));
        settings.dispatch = self.dispatch;
        settings.max_clock_skew = secs(self.max_clock_skew_secs);
        settings.flight = FlightModel {
            takeoff: secs(self.takeoff_secs),
            landing: secs(self.landing_secs),
            handling: secs(self.handling_secs),
            drain_pct_per_km: self.drain_pct_per_km,
            charge_pct_per_minute: self.charge_pct_per_minute,
            reserve_pct: self.battery_reserve_pct,
            ready_pct: self.ready_pct,
            arrival_radius_km: self.arrival_radius_m / 1000.0,
        };
        settings.policy = DispatchPolicy {
            margin: secs(self.dispatch_margin_secs),
            silent_after: secs(self.silent_after_secs),
            ..DispatchPolicy::default()
        };
    }
}

/// Where the stores are and how to reach them: every role and tool takes these.
#[derive(clap::Args, Clone, Debug)]
pub struct StorageArgs {
    /// Directory of the embedded stores (the default log and read store live in it).
    #[arg(long, env = "DRONE_DELIVERY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// The event log: `embedded:DIR` or `kafka://HOST:PORT[,HOST:PORT…]` (default: embedded
    /// in `--data-dir`).
    #[arg(long, env = "DRONE_DELIVERY_LOG")]
    pub log: Option<LogLocation>,
    /// The read store: `embedded:DIR` or `scylla://HOST:PORT/KEYSPACE` (default: embedded
    /// in `--data-dir`).
    #[arg(long, env = "DRONE_DELIVERY_STORE")]
    pub store: Option<StoreLocation>,
    /// librdkafka settings for every Kafka client (producer, consumers, admin),
    /// `KEY=VALUE[,KEY=VALUE…]`, repeatable: tuning, or security settings the
    /// `--kafka-security-…`/`--kafka-sasl-…`/`--kafka-ssl-…` flags do not cover.
    #[arg(
        long = "kafka-option",
        env = "DRONE_DELIVERY_KAFKA_OPTIONS",
        hide_env_values = true
    )]
    pub kafka_options: Vec<KafkaClientOptions>,
    /// How the Kafka clients connect: PLAINTEXT (the default), SSL (TLS), SASL_PLAINTEXT
    /// or SASL_SSL.
    #[arg(
        long,
        env = "DRONE_DELIVERY_KAFKA_SECURITY_PROTOCOL",
        value_enum,
        ignore_case = true
    )]
    pub kafka_security_protocol: Option<KafkaSecurityProtocol>,
    /// The SASL mechanism with SASL_PLAINTEXT or SASL_SSL: PLAIN, SCRAM-SHA-256 or
    /// SCRAM-SHA-512.
    #[arg(
        long,
        env = "DRONE_DELIVERY_KAFKA_SASL_MECHANISM",
        value_enum,
        ignore_case = true
    )]
    pub kafka_sasl_mechanism: Option<SaslMechanism>,
    /// The SASL user name.
    #[arg(long, env = "DRONE_DELIVERY_KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    /// The SASL password (prefer the environment or the config file to the command line,
    /// which other users of the machine can see).
    #[arg(
        long,
        env = "DRONE_DELIVERY_KAFKA_SASL_PASSWORD",
        hide_env_values = true
    )]
    pub kafka_sasl_password: Option<Secret>,
    /// PEM file of the certificate authorities that sign the brokers' TLS certificates
    /// (default: the system's).
    #[arg(long, env = "DRONE_DELIVERY_KAFKA_SSL_CA_LOCATION")]
    pub kafka_ssl_ca_location: Option<PathBuf>,
    /// The client's TLS certificate (PEM), for brokers that authenticate clients by TLS
    /// (mutual TLS).
    #[arg(long, env = "DRONE_DELIVERY_KAFKA_SSL_CERTIFICATE_LOCATION")]
    pub kafka_ssl_certificate_location: Option<PathBuf>,
    /// The private key (PEM) of `--kafka-ssl-certificate-location`.
    #[arg(long, env = "DRONE_DELIVERY_KAFKA_SSL_KEY_LOCATION")]
    pub kafka_ssl_key_location: Option<PathBuf>,
    /// The password of `--kafka-ssl-key-location`, when the key is encrypted.
    #[arg(
        long,
        env = "DRONE_DELIVERY_KAFKA_SSL_KEY_PASSWORD",
        hide_env_values = true
    )]
    pub kafka_ssl_key_password: Option<Secret>,
    /// The ScyllaDB user name (with `--store scylla://…`).
    #[arg(long, env = "DRONE_DELIVERY_SCYLLA_USERNAME")]
    pub scylla_username: Option<String>,
    /// The ScyllaDB password.
    #[arg(long, env = "DRONE_DELIVERY_SCYLLA_PASSWORD", hide_env_values = true)]
    pub scylla_password: Option<Secret>,
    /// The consistency level of every ScyllaDB read and write (`local_quorum`, `quorum`,
    /// `one`, `local_one`, `each_quorum`, `all`).
    #[arg(long, env = "DRONE_DELIVERY_SCYLLA_CONSISTENCY", default_value = "local_quorum",
          value_parser = storage_scylla::parse_consistency)]
    pub scylla_consistency: Consistency,
    /// The replication factor of the keyspace when the migrations create it (3 in
    /// production; 1 suits a single-node cluster).
    #[arg(long, env = "DRONE_DELIVERY_SCYLLA_REPLICATION_FACTOR", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub scylla_replication_factor: u32,
    /// The datacenter whose ScyllaDB nodes take this process's requests first.
    #[arg(long, env = "DRONE_DELIVERY_SCYLLA_DATACENTER")]
    pub scylla_datacenter: Option<String>,
    /// A Confluent-compatible schema registry, `http://HOST:PORT`: the schemas are
    /// registered there at start-up and records carry its ids (default: the checked-in
    /// manifest's ids).
    #[arg(long, env = "SCHEMA_REGISTRY_URL")]
    pub schema_registry_url: Option<String>,
    /// The schema registry's user name (HTTP basic authentication).
    #[arg(long, env = "DRONE_DELIVERY_SCHEMA_REGISTRY_USERNAME")]
    pub schema_registry_username: Option<String>,
    /// The schema registry's password.
    #[arg(
        long,
        env = "DRONE_DELIVERY_SCHEMA_REGISTRY_PASSWORD",
        hide_env_values = true
    )]
    pub schema_registry_password: Option<Secret>,
    /// Put before every Kafka topic and consumer-group name, so several deployments (or
    /// test runs) share one cluster.
    #[arg(long, env = "DRONE_DELIVERY_KAFKA_TOPIC_PREFIX", default_value = "")]
    pub kafka_topic_prefix: String,
    /// Replicas of the topics the Kafka adapter creates.
    #[arg(
        long,
        env = "DRONE_DELIVERY_KAFKA_REPLICATION",
        default_value_t = 1,
        value_parser = clap::value_parser!(i32).range(1..)
    )]
    pub kafka_replication: i32,
    /// How long the telemetry topic keeps its records (event topics keep them for ever).
    #[arg(
        long,
        env = "DRONE_DELIVERY_TELEMETRY_RETENTION_HOURS",
        default_value_t = 168,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub telemetry_retention_hours: u64,
    /// Seconds the active workflow's heartbeats may stop before a standby takes over (on
    /// Kafka). The command API's partitions move with its consumer group's session.
    #[arg(
        long,
        env = "DRONE_DELIVERY_WRITER_SESSION_SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub writer_session_secs: u64,
    /// Partitions of every command topic when the log creates them.
    #[arg(
        long,
        env = "DRONE_DELIVERY_PARTITIONS",
        default_value_t = 8,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub partitions: u32,
    /// Partitions of the telemetry topic when the log creates it.
    #[arg(
        long,
        env = "DRONE_DELIVERY_TELEMETRY_PARTITIONS",
        default_value_t = 16,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub telemetry_partitions: u32,
}

impl StorageArgs {
    /// Sets the options into `settings`; refuses combinations that make no sense (single
    /// values were checked as they were parsed).
    pub fn apply(&self, settings: &mut Settings) -> Result<(), String> {
        settings.data_dir = self.data_dir.clone();
        settings.log = self.log.clone();
        settings.store = self.store.clone();
        let client = self.kafka_client()?;
        settings.kafka = KafkaOptions {
            topic_prefix: self.kafka_topic_prefix.clone(),
            replication_factor: self.kafka_replication,
            telemetry_retention: Duration::from_secs(
                self.telemetry_retention_hours.saturating_mul(3600),
            ),
            client,
        };
        settings.partitions = self.partitions;
        settings.telemetry_partitions = self.telemetry_partitions;
        settings.writer_session = Duration::from_secs(self.writer_session_secs);
        if self.scylla_password.is_some() && self.scylla_username.is_none() {
            return Err("--scylla-password is set but --scylla-username is not".into());
        }
        settings.scylla = ScyllaOptions {
            username: self.scylla_username.clone(),
            password: self.scylla_password.clone(),
            consistency: self.scylla_consistency,
            replication_factor: self.scylla_replication_factor,
            datacenter: self.scylla_datacenter.clone(),
        };
        settings.schema_registry = self.schema_registry()?;
        Ok(())
    }

    /// The librdkafka settings: `--kafka-option`s and the security flags, which may not
    /// both set one key.
    fn kafka_client(&self) -> Result<Vec<(String, String)>, String> {
        let mut client: Vec<(String, String)> = Vec::new();
        let mut flags: Vec<(&str, &str, String)> = Vec::new();
        if let Some(protocol) = self.kafka_security_protocol {
            let value = protocol.librdkafka().to_owned();
            flags.push(("kafka-security-protocol", "security.protocol", value));
        }
        if let Some(mechanism) = self.kafka_sasl_mechanism {
            let value = mechanism.librdkafka().to_owned();
            flags.push(("kafka-sasl-mechanism", "sasl.mechanism", value));
        }
        if let Some(username) = &self.kafka_sasl_username {
            flags.push(("kafka-sasl-username", "sasl.username", username.clone()));
        }
        if let Some(password) = &self.kafka_sasl_password {
            let value = password.expose().to_owned();
            flags.push(("kafka-sasl-password", "sasl.password", value));
        }
        let paths = [
            (
                "kafka-ssl-ca-location",
                "ssl.ca.location",
                &self.kafka_ssl_ca_location,
            ),
            (
                "kafka-ssl-certificate-location",
                "ssl.certificate.location",
                &self.kafka_ssl_certificate_location,
            ),
            (
                "kafka-ssl-key-location",
                "ssl.key.location",
                &self.kafka_ssl_key_location,
            ),
        ];
        for (flag, key, path) in paths {
            if let Some(path) = path {
                flags.push((flag, key, path.to_string_lossy().into_owned()));
            }
        }
        if let Some(password) = &self.kafka_ssl_key_password {
            let value = password.expose().to_owned();
            flags.push(("kafka-ssl-key-password", "ssl.key.password", value));
        }
        for (key, value) in self.kafka_options.iter().flat_map(|o| &o.0) {
            if let Some((flag, ..)) = flags.iter().find(|(_, k, _)| k == key) {
                return Err(format!(
                    "--kafka-option {key}=… and --{flag} both set {key}: keep one"
                ));
            }
            client.push((key.clone(), value.clone()));
        }
        client.extend(flags.into_iter().map(|(_, k, v)| (k.to_owned(), v)));
        let get = |key: &str| {
            client
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let protocol = get("security.protocol").unwrap_or("PLAINTEXT");
        if protocol.to_ascii_uppercase().starts_with("SASL") {
            let Some(mechanism) = get("sasl.mechanism") else {
                return Err(format!(
                    "security protocol {protocol} needs --kafka-sasl-mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
                ));
            };
            let login = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
                .contains(&mechanism.to_ascii_uppercase().as_str());
            if login && (get("sasl.username").is_none() || get("sasl.password").is_none()) {
                return Err(format!(
                    "SASL {mechanism} needs --kafka-sasl-username and --kafka-sasl-password"
                ));
            }
        }
        Ok(client)
    }

    fn schema_registry(&self) -> Result<Option<RegistryOptions>, String> {
        let Some(url) = self
            .schema_registry_url
            .as_deref()
            .filter(|u| !u.is_empty())
        else {
            if self.schema_registry_username.is_some() || self.schema_registry_password.is_some() {
                return Err(
                    "--schema-registry-username/-password are set but --schema-registry-url (SCHEMA_REGISTRY_URL) is not".into(),
                );
            }
            return Ok(None);
        };
        // Checked here rather than by a value parser: clap's messages repeat the value,
        // and a URL may carry a password (which this refuses without showing it).
        let url = schemas::registry::base_url(url)
            .map_err(|e| format!("--schema-registry-url (SCHEMA_REGISTRY_URL): {e}"))?;
        if self.schema_registry_password.is_some() && self.schema_registry_username.is_none() {
            return Err(
                "--schema-registry-password is set but --schema-registry-username is not".into(),
            );
        }
        Ok(Some(RegistryOptions {
            url,
            username: self.schema_registry_username.clone(),
            password: self.schema_registry_password.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;

    fn options(s: &str) -> Vec<(String, String)> {
        s.parse::<KafkaClientOptions>().expect("options").0
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn kafka_options_split_only_where_a_key_follows() {
        assert_eq!(options("linger.ms=5"), pairs(&[("linger.ms", "5")]));
        assert_eq!(
            options(" linger.ms = 5 ,acks=all"),
            pairs(&[("linger.ms", "5"), ("acks", "all")])
        );
        assert_eq!(
            options("debug=broker,topic,msg,acks=all"),
            pairs(&[("debug", "broker,topic,msg"), ("acks", "all")]),
            "a value with commas stays whole"
        );
        assert_eq!(
            options("sasl.oauthbearer.config=scope=a principal=b"),
            pairs(&[("sasl.oauthbearer.config", "scope=a principal=b")]),
            "the first `=` ends the key"
        );
        assert_eq!(options(""), Vec::new());
        for bad in ["linger.ms", "=5", "two words=x"] {
            assert!(bad.parse::<KafkaClientOptions>().is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let cli = Cli::parse_layered([
            "drone-delivery",
            "serve",
            "--kafka-option",
            "sasl.oauthbearer.client.secret=secret-1,ssl.key.pem=secret-2,linger.ms=5",
            "--kafka-sasl-username",
            "drones",
            "--kafka-sasl-password",
            "secret-3",
            "--kafka-security-protocol",
            "sasl_ssl",
            "--kafka-sasl-mechanism",
            "plain",
            "--kafka-ssl-key-password",
            "secret-4",
            "--scylla-username",
            "reader",
            "--scylla-password",
            "secret-5",
            "--schema-registry-url",
            "http://registry:8081/",
            "--schema-registry-username",
            "ci",
            "--schema-registry-password",
            "secret-6",
        ])
        .expect("parsed");
        let shown_cli = format!("{cli:?}");
        let (serve, role) = cli.into_role();
        let settings = serve.settings(role).expect("settings");
        let shown = format!("{shown_cli}\n{settings:?}");
        for visible in [
            "drones",
            "reader",
            "ci",
            "linger.ms",
            "SASL_SSL",
            "registry:8081",
        ] {
            assert!(shown.contains(visible), "{visible}: {shown}");
        }
        assert!(!shown.contains("secret-"), "{shown}");
        // The values are there for the clients that send them.
        assert!(
            settings
                .kafka
                .client
                .contains(&("sasl.password".into(), "secret-3".into()))
        );
        assert!(
            settings
                .kafka
                .client
                .contains(&("ssl.key.password".into(), "secret-4".into()))
        );
        let registry = settings.schema_registry.expect("a registry");
        assert_eq!(registry.url, "http://registry:8081");
        let config = registry.client_config();
        assert_eq!(
            config.basic_auth,
            Some(("ci".to_owned(), "secret-6".to_owned()))
        );
        assert!(!format!("{config:?}").contains("secret-6"));
    }

    #[test]
    fn a_registry_url_with_a_password_is_refused_without_showing_it() {
        let (serve, role) = Cli::parse_layered([
            "drone-delivery",
            "--schema-registry-url",
            "https://ci:hunter2@registry.example",
        ])
        .expect("parsed")
        .into_role();
        let error = serve.settings(role).expect_err("refused");
        assert!(error.contains("--schema-registry-url"), "{error}");
        assert!(
            error.contains("credentials do not go in the URL"),
            "{error}"
        );
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn no_arguments_run_everything_embedded_in_data() {
        let (serve, role) = Cli::parse_layered(["drone-delivery"])
            .expect("parsed")
            .into_role();
        let settings = serve.settings(role).expect("settings");
        assert_eq!(settings.roles, Role::ALL);
        assert_eq!(
            settings.log_location(),
            LogLocation::Embedded(PathBuf::from("./data/log"))
        );
        assert_eq!(
            settings.store_location(),
            StoreLocation::Embedded(PathBuf::from("./data/views"))
        );
        assert!(settings.kafka.client.is_empty());
        assert_eq!(settings.schema_registry, None);
    }

    #[test]
    fn the_scylla_options_reach_the_settings_and_a_bad_level_is_refused() {
        let (serve, role) = Cli::parse_layered([
            "drone-delivery",
            "--store",
            "scylla://a:9042,b:9042/drones",
            "--scylla-consistency",
            "QUORUM",
            "--scylla-replication-factor",
            "3",
            "--scylla-datacenter",
            "eu-west",
        ])
        .expect("parsed")
        .into_role();
        let settings = serve.settings(role).expect("settings");
        assert_eq!(
            settings.store_location(),
            StoreLocation::Scylla {
                nodes: "a:9042,b:9042".into(),
                keyspace: "drones".into()
            }
        );
        assert_eq!(settings.scylla.consistency, Consistency::Quorum);
        assert_eq!(settings.scylla.replication_factor, 3);
        assert_eq!(settings.scylla.datacenter.as_deref(), Some("eu-west"));

        let defaults = Cli::parse_layered(["drone-delivery"]).expect("parsed");
        let (serve, role) = defaults.into_role();
        let settings = serve.settings(role).expect("settings");
        assert_eq!(settings.scylla.consistency, Consistency::LocalQuorum);
        assert_eq!(settings.scylla.replication_factor, 1);

        for bad in [
            &["drone-delivery", "--scylla-consistency", "mostly"][..],
            &["drone-delivery", "--scylla-replication-factor", "0"],
        ] {
            let error = Cli::parse_layered(bad).expect_err("refused").to_string();
            assert!(error.contains(bad[1]), "{error}");
        }
    }
}
