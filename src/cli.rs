//! The command line: the roles and their options, each a flag with an environment
//! variable, and the optional config file under both (see [`crate::config`]).

use crate::Settings;
use crate::config::{self, ConfigFile};
use crate::settings::{NotifyArgs, Role, StorageArgs, WorkflowArgs};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "drone-delivery",
    version,
    about = "Event-sourced CQRS backend for drone delivery",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub role: Option<Subcommands>,
    /// With no role named, `serve` runs with these.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Subcommands {
    /// Runs every role in one process (or those of `--roles`): command and query APIs on
    /// one address, projectors and the workflow; by default on the embedded event log and
    /// read store in `--data-dir`.
    Serve(ServeArgs),
    /// The command API alone (`serve --roles command-api`): the one writer of the log.
    CommandApi(ServeArgs),
    /// The projectors alone (`serve --roles projector`); `--only NAME,…` picks read models.
    Projector(ServeArgs),
    /// The query API alone (`serve --roles query-api`).
    QueryApi(ServeArgs),
    /// The workflow alone (`serve --roles workflow`): it follows the log and sends its
    /// commands to the command API at `--command-url`.
    Workflow(ServeArgs),
    /// The notifier alone (`serve --roles notifier`): it follows the log and tells
    /// `notify-me` subscribers by email (`--smtp-relay`), SMS (`--sms-gateway`) and
    /// webhook; its failures at `/api/v1/notifications/failures`.
    Notifier(ServeArgs),
    /// Brings the read store's schema to this build's (`--store scylla://…`: creates the
    /// keyspace and runs the migrations not yet recorded there) and exits. Roles that
    /// use the store do the same at start-up.
    Migrate(ServeArgs),
    /// Reads the whole history (`--data-dir` of a stopped server, or `--log kafka://…`)
    /// and reports deliveries per day, the on-time rate, the time to assignment, pickup
    /// and delivery, drone use, cancellations, failures and per-account totals.
    Analytics(AnalyticsArgs),
    /// Rebuilds a read model from offset zero into a new generation while the current
    /// one keeps serving, then switches over and drops the old one: through a running
    /// server (`--url`), on a stopped `--data-dir`, or on Kafka (`--log kafka://…`).
    Replay(ReplayArgs),
    /// A customer and a fleet for a running server: registers an account and `--drones`
    /// drones around `--city`, schedules `--rate` deliveries a second and flies the
    /// drones the workflow assigns, posting their telemetry, for `--duration`; then
    /// prints what it did.
    Simulate(SimulateArgs),
}

/// How `analytics` prints its report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
}

#[derive(clap::Args, Debug)]
pub struct AnalyticsArgs {
    /// Only deliveries scheduled at or after this time (RFC 3339).
    #[arg(long)]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Only deliveries scheduled before this time (RFC 3339).
    #[arg(long)]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: ReportFormat,
    /// Also draw deliveries per day and the on-time rate into this SVG file.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// Re-runs the recorded demand (deliveries as scheduled, the fleet as registered,
    /// speeds as flown) through the workflow's dispatcher with these settings changed —
    /// `battery-reserve=PCT`, `fleet=N`, `expedited-first=on|off`, comma-separated — and
    /// reports the outcome beside the recorded one. The recorded settings are this
    /// command's workflow options (`--battery-reserve-pct`, `--takeoff-secs`, …), as the
    /// workflow ran with them.
    #[arg(long, value_name = "KEY=VALUE,...", conflicts_with = "chart")]
    pub what_if: Option<analytics::Changes>,
    /// Where the log is, as for `serve`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// The read model to rebuild.
    #[arg(long, value_parser = read_model)]
    pub projection: String,
    /// A running process that hosts the projectors (`serve`, `projector`): the rebuild
    /// runs there, through its operator endpoint, with the operator key
    /// (`--operator-key`, or the data directory's `operator.key`).
    #[arg(long)]
    pub url: Option<String>,
    /// Where the log and the read store are, as for `serve`, when there is no `--url`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Drones in the fleet.
    #[arg(long, default_value_t = 10)]
    pub drones: usize,
    /// Deliveries scheduled per second.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Drones fly this many times their speed (telemetry keeps real time stamps; the
    /// server's charging is not sped up).
    #[arg(long, default_value_t = 1.0)]
    pub speedup: f64,
    /// How long to run (`90s`, `5m`, `1h`); then scheduling stops and it exits.
    #[arg(long, default_value = "3m", value_parser = crate::simulate::parse_duration)]
    pub duration: std::time::Duration,
    /// At most this many deliveries; the run ends early once they are all delivered.
    #[arg(long)]
    pub deliveries: Option<u64>,
    /// Schedule nothing while this many of the account's deliveries wait for a drone
    /// (default: no limit, the rate is kept whatever the fleet delivers).
    #[arg(long)]
    pub max_waiting: Option<usize>,
    /// The city's centre, `LATITUDE,LONGITUDE` (default: Seattle downtown).
    #[arg(long, default_value = "47.61,-122.33", value_parser = crate::simulate::parse_city)]
    pub city: (f64, f64),
    /// Homes, pickups and drop-offs lie within this many km of the centre.
    #[arg(long, default_value_t = 3.0)]
    pub radius_km: f64,
    /// Drone ids are `FLEET-01`, …; drones already registered under them are flown on
    /// from where they are (default: a new fleet each run, `sim-<random>`).
    #[arg(long)]
    pub fleet: Option<String>,
    /// The operator's API key; default: `<data-dir>/operator.key`, which `serve`
    /// generated.
    #[arg(long, env = "DRONE_DELIVERY_OPERATOR_KEY", hide_env_values = true)]
    pub operator_key: Option<String>,
    /// The data directory of the server whose operator key to use.
    #[arg(long, env = "DRONE_DELIVERY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Battery (%) a drone gains per minute on its charger: the server's setting, so
    /// that the simulated battery agrees with the server's estimate.
    #[arg(
        long,
        env = "DRONE_DELIVERY_CHARGE_PCT_PER_MINUTE",
        default_value_t = 2.0
    )]
    pub charge_pct_per_minute: f64,
    /// Battery (%) used per km: the server's setting (default: a full battery flies the
    /// drone's range).
    #[arg(long, env = "DRONE_DELIVERY_DRAIN_PCT_PER_KM")]
    pub drain_pct_per_km: Option<f64>,
    /// Seed of the random homes, pickups and drop-offs (default: a new one each run).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl SimulateArgs {
    /// The simulation these options ask for (the key read from the data directory when
    /// none is given).
    pub fn config(self) -> anyhow::Result<crate::simulate::SimConfig> {
        let operator_key = crate::simulate::operator_key(self.operator_key, &self.data_dir)?;
        let seed = self.seed.unwrap_or_else(crate::simulate::random_seed);
        let fleet = self
            .fleet
            // Not from the seed: a rerun with the same seed still gets a fleet of its own.
            .unwrap_or_else(|| format!("sim-{:06x}", crate::simulate::random_seed() & 0xff_ffff));
        if !(self.charge_pct_per_minute.is_finite() && self.charge_pct_per_minute >= 0.0) {
            anyhow::bail!("--charge-pct-per-minute must be 0 or more");
        }
        if self
            .drain_pct_per_km
            .is_some_and(|d| !(d.is_finite() && d > 0.0))
        {
            anyhow::bail!("--drain-pct-per-km must be above 0");
        }
        Ok(crate::simulate::SimConfig {
            url: self.url,
            operator_key,
            drones: self.drones,
            rate: self.rate,
            speedup: self.speedup,
            duration: Some(self.duration),
            max_deliveries: self.deliveries,
            max_waiting: self.max_waiting,
            city: self.city,
            radius_km: self.radius_km,
            fleet,
            charge_pct_per_minute: self.charge_pct_per_minute,
            drain_pct_per_km: self.drain_pct_per_km,
            seed,
            progress_every: std::time::Duration::from_secs(10),
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// A TOML file of settings, keyed by the long flag names (`partitions = 12`); the
    /// environment and the command line override it.
    #[arg(long, env = "DRONE_DELIVERY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// How log lines are written to stderr: `text` (coloured on a terminal only) or
    /// `json`, one object per line for log shippers.
    #[arg(
        long,
        env = "DRONE_DELIVERY_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: crate::telemetry::LogFormat,
    /// Address of the HTTP API (and of `/healthz`, `/readyz`, `/metrics`).
    #[arg(long, env = "DRONE_DELIVERY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// The read models the projector builds, e.g. `--only deliveries,drones` (all when
    /// not given).
    #[arg(
        long,
        env = "DRONE_DELIVERY_ONLY",
        value_delimiter = ',',
        value_parser = read_model
    )]
    pub only: Vec<String>,
    /// The roles to run (all by default), e.g. `--roles command-api,projector`.
    #[arg(long, env = "DRONE_DELIVERY_ROLES", value_enum, value_delimiter = ',')]
    pub roles: Vec<Role>,
    /// Where the workflow sends its commands when this process runs no command API.
    #[arg(long, env = "DRONE_DELIVERY_COMMAND_URL")]
    pub command_url: Option<String>,
    /// Where the other `command-api` processes reach this one (on Kafka; its markers
    /// name it): by default `http://` and the address it listens on.
    #[arg(long, env = "DRONE_DELIVERY_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// A busy topic's projector applies a batch at most this often (ms): more events per
    /// read-store write, at the price of up to this much more read-model lag.
    #[arg(long, env = "DRONE_DELIVERY_PROJECTOR_PACE_MS", default_value_t = 1)]
    pub projector_pace_ms: u64,
    /// A client must send a request's headers within this many seconds of opening the
    /// connection or of its last answer, or the connection is closed (slow or idle
    /// clients cannot hold sockets for ever); a command's body must follow its headers
    /// within as long again, or it is answered 408.
    #[arg(long, env = "DRONE_DELIVERY_HEADER_TIMEOUT_SECS", default_value_t = 30)]
    pub header_timeout_secs: u64,
    /// A live stream sends a heartbeat comment after this many seconds without an event.
    #[arg(
        long,
        env = "DRONE_DELIVERY_STREAM_HEARTBEAT_SECS",
        default_value_t = 15
    )]
    pub stream_heartbeat_secs: u64,
    /// Connections served at once; beyond it a new connection is closed at once.
    #[arg(long, env = "DRONE_DELIVERY_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Requests per second one account or analyst key may send (bursts of twice as
    /// many); beyond it, 429 with `Retry-After`. 0: no limit. Operator keys are not limited.
    #[arg(
        long,
        env = "DRONE_DELIVERY_RATE_LIMIT_PER_KEY",
        default_value_t = 500.0
    )]
    pub rate_limit_per_key: f64,
    /// Free space (MiB) the embedded log and read store keep on their disk: with less,
    /// appends answer 503 and `/readyz` says why, and the projectors wait, until space
    /// returns (no restart needed).
    #[arg(long, env = "DRONE_DELIVERY_LOG_DISK_RESERVE_MB", default_value_t = 64)]
    pub log_disk_reserve_mb: u64,
    /// Commands served at once; more wait for a slot.
    #[arg(
        long,
        env = "DRONE_DELIVERY_MAX_WRITES_IN_FLIGHT",
        default_value_t = 1024
    )]
    pub max_writes_in_flight: usize,
    /// Queries served at once; more wait for a slot (the probes `/healthz` and `/readyz`
    /// never do).
    #[arg(
        long,
        env = "DRONE_DELIVERY_MAX_READS_IN_FLIGHT",
        default_value_t = 4096
    )]
    pub max_reads_in_flight: usize,
    /// How long a command or query may wait for a slot (ms) before it is shed: 503 with
    /// `Retry-After` at once, nothing done, instead of work its client has given up on.
    #[arg(long, env = "DRONE_DELIVERY_SHED_AFTER_MS", default_value_t = 1000)]
    pub shed_after_ms: u64,
    /// The operator's API key (all rights). When none is given, the embedded default
    /// generates one at the first start into `<data-dir>/operator.key` and prints it once;
    /// with Kafka every process must be given the same.
    #[arg(long, env = "DRONE_DELIVERY_OPERATOR_KEY", hide_env_values = true)]
    pub operator_key: Option<String>,
    /// An analyst's API key: reads every tenant, changes nothing (none when not given).
    #[arg(long, env = "DRONE_DELIVERY_ANALYST_KEY", hide_env_values = true)]
    pub analyst_key: Option<String>,
    /// How long an `Idempotency-Key` is remembered (hours): a retry within it gets the
    /// first answer; later the key is forgotten.
    #[arg(
        long,
        env = "DRONE_DELIVERY_IDEMPOTENCY_RETENTION_HOURS",
        default_value_t = 24
    )]
    pub idempotency_retention_hours: u32,
    #[command(flatten)]
    pub workflow: WorkflowArgs,
    #[command(flatten)]
    pub notify: NotifyArgs,
    /// Also flies a simulated fleet over Seattle against this server (the simulator of
    /// `simulate`, with a dozen drones and a delivery every two seconds) until it stops,
    /// so that there is something to watch at once.
    #[arg(long, env = "DRONE_DELIVERY_DEMO")]
    pub demo: bool,
}

/// Why the command line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Clap's own (bad flag, bad value; also `--help` and `--version`, which it prints).
    #[error(transparent)]
    Clap(#[from] clap::Error),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
}

impl Cli {
    /// Reads the command line in layers: built-in defaults < the config file (`--config`
    /// or `DRONE_DELIVERY_CONFIG`) < environment variables < flags. The file's values
    /// become the flags' defaults before the real parse, so clap's own order does the
    /// rest.
    pub fn parse_layered<I, T>(args: I) -> Result<Cli, CliError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let first = Cli::command().try_get_matches_from(&args)?;
        let path = first
            .subcommand()
            .map_or(&first, |(_, sub)| sub)
            // `simulate` has no `--config` (it reads no settings file).
            .try_get_one::<PathBuf>("config")
            .ok()
            .flatten()
            .cloned();
        match path {
            None => Ok(Cli::from_arg_matches(&first)?),
            Some(path) => Cli::parse_with(&ConfigFile::read(&path)?, args),
        }
    }

    /// Reads the command line over the values of `file`.
    pub fn parse_with<I, T>(file: &ConfigFile, args: I) -> Result<Cli, CliError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = file.apply(Cli::command())?.try_get_matches_from(args)?;
        Ok(Cli::from_arg_matches(&matches)?)
    }

    /// True for `migrate`, which runs no role.
    pub fn migrates(&self) -> bool {
        matches!(self.role, Some(Subcommands::Migrate(_)))
    }

    /// `simulate`'s options, taken out, when that is the command; it runs no role.
    pub fn take_simulation(&mut self) -> Option<SimulateArgs> {
        match self.role.take() {
            Some(Subcommands::Simulate(args)) => Some(args),
            other => {
                self.role = other;
                None
            }
        }
    }

    /// `analytics`' options, taken out, when that is the command; it runs no role.
    pub fn take_analytics(&mut self) -> Option<AnalyticsArgs> {
        match self.role.take() {
            Some(Subcommands::Analytics(args)) => Some(args),
            other => {
                self.role = other;
                None
            }
        }
    }

    /// `replay`'s options, taken out, when that is the command; it runs no role.
    pub fn take_replay(&mut self) -> Option<ReplayArgs> {
        match self.role.take() {
            Some(Subcommands::Replay(args)) => Some(args),
            other => {
                self.role = other;
                None
            }
        }
    }

    /// The role named (`None`: `serve`) and its options (`simulate`, which runs no
    /// role, is taken out first with [`Cli::take_simulation`]).
    pub fn into_role(self) -> (ServeArgs, Option<Role>) {
        match self.role {
            Some(Subcommands::Serve(args)) => (args, None),
            Some(Subcommands::CommandApi(args)) => (args, Some(Role::CommandApi)),
            Some(Subcommands::Projector(args)) => (args, Some(Role::Projector)),
            Some(Subcommands::QueryApi(args)) => (args, Some(Role::QueryApi)),
            Some(Subcommands::Workflow(args)) => (args, Some(Role::Workflow)),
            Some(Subcommands::Notifier(args)) => (args, Some(Role::Notifier)),
            Some(Subcommands::Migrate(args)) => (args, None),
            Some(Subcommands::Analytics(args)) => (args.serve, None),
            Some(Subcommands::Replay(args)) => (args.serve, None),
            Some(Subcommands::Simulate(_)) | None => (self.serve, None),
        }
    }
}

impl ServeArgs {
    /// The settings of a process that runs `role` (every role when `None`, or those of
    /// `--roles`); refuses values that make no sense.
    pub fn settings(self, role: Option<Role>) -> Result<Settings, String> {
        let mut settings = Settings::new(self.listen, self.storage.data_dir.clone());
        self.storage.apply(&mut settings)?;
        if let Some(role) = role {
            settings.roles = vec![role];
        } else if !self.roles.is_empty() {
            settings.roles = self.roles;
        }
        settings.only = self.only;
        settings.command_url = self.command_url;
        settings.advertise_url = self.advertise_url;
        settings.projector_pace = std::time::Duration::from_millis(self.projector_pace_ms);
        settings.header_timeout = std::time::Duration::from_secs(self.header_timeout_secs.max(1));
        settings.max_connections = self.max_connections.max(1);
        settings.stream_heartbeat =
            std::time::Duration::from_secs(self.stream_heartbeat_secs.max(1));
        for (name, key) in [
            ("operator", &self.operator_key),
            ("analyst", &self.analyst_key),
        ] {
            if let Some(key) = key
                && !(16..=256).contains(&key.len())
            {
                return Err(format!("the {name} key must be 16 to 256 characters"));
            }
            if key
                .as_ref()
                .is_some_and(|k| !k.bytes().all(|b| b.is_ascii_graphic()))
            {
                return Err(format!("the {name} key must be visible ASCII characters"));
            }
        }
        if !(self.rate_limit_per_key >= 0.0 && self.rate_limit_per_key.is_finite()) {
            return Err("--rate-limit-per-key must be 0 (no limit) or more".into());
        }
        settings.rate_limit_per_key =
            (self.rate_limit_per_key > 0.0).then_some(self.rate_limit_per_key);
        settings.max_writes_in_flight = self.max_writes_in_flight.max(1);
        settings.max_reads_in_flight = self.max_reads_in_flight.max(1);
        settings.log_disk_reserve = self.log_disk_reserve_mb.saturating_mul(1024 * 1024);
        settings.shed_after = std::time::Duration::from_millis(self.shed_after_ms.max(1));
        settings.operator_key = self.operator_key;
        settings.analyst_key = self.analyst_key;
        settings.idempotency_retention =
            chrono::TimeDelta::hours(i64::from(self.idempotency_retention_hours.max(1)));
        self.workflow.apply(&mut settings);
        self.notify.apply(&mut settings);
        Ok(settings)
    }
}

/// The name of a read model (`--only`).
fn read_model(name: &str) -> Result<String, String> {
    let known: Vec<&str> = read_model::models::ALL.iter().map(|m| m.name).collect();
    if known.contains(&name) {
        Ok(name.to_owned())
    } else {
        Err(format!("the read models are {}", known.join(", ")))
    }
}
