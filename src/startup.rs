//! Start-up: opens the stores, makes sure the topics exist, folds the write model, starts
//! the projectors, serves the command, query and operations endpoints on one address, and
//! starts the workflow, which sends its commands to that address like any client.

use crate::Settings;
use crate::keys;
use crate::ops;
use crate::server;
use crate::settings::{LogLocation, Role, ScyllaOptions, StoreLocation};
use anyhow::Context;
use api::Authenticator;
use command_side::ownership::{OWNERS_TOPIC, Ownership};
use command_side::{ACTIVE_WORKFLOW, CommandMetrics, CommandService, KeySettings, Lease, Writers};
use domain::Dispatcher;
use projections::{Host, Projector, ProjectorMetrics};
use prometheus::Registry;
use query_side::{Live, QueryMetrics, QueryService, Streams};
use read_model::Progress;
use read_model::generations::{Current, Generational};
use schemas::Codec;
use schemas::events::Topic;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use storage::{EventLog, ReadStore, TopicSpec};
use storage_embedded::{DataDirLock, EmbeddedLog, EmbeddedReadStore};
use storage_kafka::{KafkaLog, KafkaSettings};
use storage_scylla::{Migration, ScyllaReadStore, ScyllaSettings};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use workflow::{CommandClient, WorkflowMetrics};

/// Partitions each topic is created with: the same count on every command topic;
/// telemetry, the busiest, its own.
pub fn topic_specs(settings: &Settings) -> Vec<TopicSpec> {
    Topic::ALL
        .into_iter()
        .map(|topic| TopicSpec {
            name: topic.name().to_string(),
            partitions: match topic {
                Topic::DroneTelemetry => settings.telemetry_partitions,
                _ => settings.partitions,
            },
        })
        .collect()
}

/// Opens the event log at its location.
pub(crate) fn open_log(settings: &Settings) -> anyhow::Result<Arc<dyn EventLog>> {
    Ok(match settings.log_location() {
        LogLocation::Embedded(dir) => {
            let log = EmbeddedLog::open_with_reserve(&dir, settings.log_disk_reserve, None)
                .context("cannot open the event log")?;
            Arc::new(log)
        }
        LogLocation::Kafka { brokers } => Arc::new(
            KafkaLog::connect(kafka_settings(settings, &brokers))
                .context("cannot set up the Kafka client")?,
        ),
    })
}

/// The Kafka adapter's settings: its clients (producer, consumers, admin) all get
/// `settings.kafka.client`, the security settings among them.
fn kafka_settings(settings: &Settings, brokers: &str) -> KafkaSettings {
    let mut kafka = KafkaSettings::new(brokers);
    kafka.replication_factor = settings.kafka.replication_factor;
    kafka.telemetry_topics = vec![Topic::DroneTelemetry.name().to_owned()];
    kafka.telemetry_retention = settings.kafka.telemetry_retention;
    kafka.client = settings.kafka.client.clone();
    kafka.topic_prefix = settings.kafka.topic_prefix.clone();
    kafka
}

/// Opens the read store at its location.
pub(crate) async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn ReadStore>> {
    match settings.store_location() {
        StoreLocation::Embedded(dir) => {
            rebuild_if_outdated(&dir, read_model::tables::LAYOUT)
                .with_context(|| format!("cannot prepare the read store in {}", dir.display()))?;
            Ok(Arc::new(
                EmbeddedReadStore::open_with_reserve(&dir, settings.log_disk_reserve, None)
                    .context("cannot open the read store")?,
            ))
        }
        StoreLocation::Scylla { nodes, keyspace } => Ok(Arc::new(
            open_scylla(&nodes, &keyspace, &settings.scylla).await?,
        )),
    }
}

/// The file in an embedded read store's directory that names the layout it was written in.
const LAYOUT_FILE: &str = "read-model-layout";

/// An embedded read store written in another layout (or by a build from before layouts
/// were named) is emptied: it is a cache of the log, and the projectors rebuild it from
/// offset zero. Then the directory is marked with `layout`.
fn rebuild_if_outdated(dir: &std::path::Path, layout: u32) -> std::io::Result<()> {
    let marker = dir.join(LAYOUT_FILE);
    let written = std::fs::read_to_string(&marker).ok();
    if written.as_deref().map(str::trim) == Some(layout.to_string().as_str()) {
        return Ok(());
    }
    let holds_data = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if holds_data {
        tracing::warn!(
            dir = %dir.display(),
            found = written.as_deref().map_or("none", str::trim),
            layout,
            "the read models were written in another layout; rebuilding them from the log"
        );
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(marker, layout.to_string())
}

/// The schema of the read models on ScyllaDB, one version per change: a build that adds
/// a table adds a migration (ADR 13).
pub const SCYLLA_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "the read-model tables of issue 9",
        // Every table but the last, which came with migration 2.
        tables: read_model::tables::ALL.split_at(13).0,
    },
    Migration {
        version: 2,
        description: "model_generations, for blue/green rebuilds",
        tables: &[read_model::tables::MODEL_GENERATIONS],
    },
];

/// Connects to ScyllaDB and brings the keyspace to this build's schema (the migrations
/// not yet recorded there run; the others are skipped).
pub async fn open_scylla(
    nodes: &str,
    keyspace: &str,
    options: &ScyllaOptions,
) -> anyhow::Result<ScyllaReadStore> {
    let mut settings = ScyllaSettings::new(nodes, keyspace);
    settings.login = options.username.clone().map(|user| {
        (
            user,
            options
                .password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default(),
        )
    });
    settings.consistency = options.consistency;
    settings.replication_factor = options.replication_factor;
    settings.datacenter = options.datacenter.clone();
    ScyllaReadStore::connect(&settings, SCYLLA_MIGRATIONS)
        .await
        .with_context(|| format!("cannot open the read store at scylla://{nodes}/{keyspace}"))
}

/// `drone-delivery migrate`: the read store's schema brought to this build's; what it did.
pub async fn migrate(settings: &Settings) -> anyhow::Result<String> {
    match settings.store_location() {
        StoreLocation::Embedded(dir) => Ok(format!(
            "the embedded read store ({}) keeps no schema: nothing to migrate",
            dir.display()
        )),
        StoreLocation::Scylla { nodes, keyspace } => {
            let store = open_scylla(&nodes, &keyspace, &settings.scylla).await?;
            let versions = store.applied_migrations().await?;
            Ok(format!(
                "scylla://{nodes}/{keyspace}: schema at migrations {versions:?} (this build has {})",
                SCYLLA_MIGRATIONS.len()
            ))
        }
    }
}

/// The codec: with a schema registry, every schema registered and framed with the ids it
/// gave (ADR 7); otherwise the checked-in manifest's ids.
pub(crate) async fn codec(settings: &Settings) -> anyhow::Result<Codec> {
    let Some(registry) = &settings.schema_registry else {
        return Ok(Codec::new()?);
    };
    let codec = schemas::registry::register(&registry.client_config())
        .await
        .context("cannot register the schemas with the schema registry")?;
    tracing::info!(registry = %registry.url, codec = ?codec, "schemas registered");
    Ok(codec)
}

/// The running system: all roles in this process.
pub struct App {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    // Held for as long as the app runs: a second process on the directory fails fast.
    _lock: Option<DataDirLock>,
}

impl App {
    /// Starts on the stores the settings name (by default both embedded in
    /// `settings.data_dir`, which one process holds at a time).
    pub async fn start(settings: Settings) -> anyhow::Result<App> {
        let uses_store = settings.runs(Role::Projector) || settings.runs(Role::QueryApi);
        let embedded = matches!(settings.log_location(), LogLocation::Embedded(_))
            || (uses_store && matches!(settings.store_location(), StoreLocation::Embedded(_)));
        let lock = embedded
            .then(|| DataDirLock::acquire(&settings.data_dir))
            .transpose()?;
        let log = open_log(&settings)?;
        let store = if uses_store {
            Some(open_store(&settings).await?)
        } else {
            None
        };
        let mut app = App::start_with(settings, log, store).await?;
        app._lock = lock;
        Ok(app)
    }

    /// Starts the roles of `settings` on the given stores (other adapters, or tests that
    /// inject faults); `store` is needed by the projector and query-api roles only.
    pub async fn start_with(
        settings: Settings,
        log: Arc<dyn EventLog>,
        store: Option<Arc<dyn ReadStore>>,
    ) -> anyhow::Result<App> {
        let registry = Registry::new();
        let codec = codec(&settings).await?;
        log.create_topics(&topic_specs(&settings))
            .await
            .context("cannot create the topics")?;
        let operator_key = keys::operator_key(&settings)?;
        let (shutdown, stop) = watch::channel(false);
        let mut tasks = Vec::new();
        // Where account keys are looked up: the command side's own fold when it runs
        // here (current to the last command), else the read model.
        let mut account_keys: Option<Arc<dyn api::AccountKeys>> = None;
        let needs_store = settings.runs(Role::Projector) || settings.runs(Role::QueryApi);
        let raw_store = match (store, needs_store) {
            (Some(store), true) => Some(store),
            (None, true) => anyhow::bail!("the projector and query-api roles need a read store"),
            (_, false) => None,
        };
        // Readers see each read model in its current generation (a rebuild writes the
        // next one beside it and switches over): the projector host and a rebuild here
        // switch this process at once, the refresh learns of switches made elsewhere.
        let current = Current::new();
        let store: Option<Arc<dyn ReadStore>> = match &raw_store {
            Some(raw) => {
                current
                    .refresh(raw.as_ref())
                    .await
                    .context("cannot read the read models' generations")?;
                tasks.push(tokio::spawn(
                    current.clone().follow(raw.clone(), stop.clone()),
                ));
                Some(Arc::new(Generational::current(
                    raw.clone(),
                    current.clone(),
                )))
            }
            None => None,
        };
        // The roles' endpoints, and what each needs before the process is ready.
        let mut routes: Option<BoxedFilter<(Response,)>> = None;
        let mut add = |more: BoxedFilter<(Response,)>| {
            routes = Some(match routes.take() {
                Some(routes) => routes.or(more).unify().boxed(),
                None => more,
            });
        };
        let mut checks: Vec<ops::ReadyCheck> = Vec::new();
        if settings.runs(Role::CommandApi) {
            let written = log.clone();
            checks.push(Arc::new(move || match written.write_failure() {
                Some(why) => Err(format!("the event log cannot take writes: {why}")),
                None => Ok(()),
            }));
        }

        // Several command-api processes share the command topics on Kafka, each the
        // owner of the partition numbers its group assigns it; the embedded log's
        // directory lock makes this process the only one.
        let mut several_writers = None;
        if settings.runs(Role::CommandApi) {
            let writers = match settings.log_location() {
                LogLocation::Embedded(_) => Writers::Only,
                LogLocation::Kafka { .. } => Writers::Several,
            };
            let partitions = log.partitions(Topic::Deliveries.name()).await?;
            if writers == Writers::Several {
                log.create_topics(&[TopicSpec {
                    name: OWNERS_TOPIC.into(),
                    partitions,
                }])
                .await
                .context("cannot create the owners topic")?;
            }
            let ownership = Arc::new(Ownership::new(partitions));
            let joined = ownership.clone();
            checks.push(Arc::new(move || {
                if joined.joined() {
                    Ok(())
                } else {
                    Err("the command-api has not taken its partitions yet".into())
                }
            }));
            let commands = CommandService::open(
                log.clone(),
                codec.clone(),
                CommandMetrics::new(&registry)?,
                settings.max_clock_skew,
                ownership,
                writers,
                KeySettings {
                    operator_key: operator_key.clone(),
                    retention: settings.idempotency_retention,
                },
            )
            .await
            .context("cannot fold the event log")?;
            let commands = Arc::new(commands);
            account_keys = Some(commands.clone());
            let reconciler = commands.clone();
            let stopped = stop.clone();
            tasks.push(tokio::spawn(async move {
                reconciler
                    .reconcile_every(Duration::from_secs(1), stopped)
                    .await;
            }));
            if writers == Writers::Several {
                several_writers = Some(commands.clone());
            }
            add(command_side::http::routes(commands));
        }
        // The embedded store is held by one process: when every projection runs here
        // too, no other projector builds it, and reads wait on these projectors' progress.
        let progress = (settings.runs(Role::QueryApi)
            && settings.runs(Role::Projector)
            && settings.only.is_empty()
            && matches!(settings.store_location(), StoreLocation::Embedded(_)))
        .then(Progress::new);
        if let (true, Some(store)) = (settings.runs(Role::QueryApi), &store) {
            let mut queries = QueryService::new(
                store.clone(),
                settings.max_consistency_wait,
                settings.flight.clone(),
                QueryMetrics::new(&registry)?,
                api::TrackingTokens::new(&operator_key),
            );
            if let Some(progress) = &progress {
                queries = queries.notified_by(progress.clone());
            }
            let queries = Arc::new(queries);
            account_keys.get_or_insert_with(|| queries.clone());
            let live = Arc::new(Live::new());
            tasks.extend(live.start(log.clone(), codec.clone(), store.clone(), stop.clone()));
            let streams = Streams::new(
                queries.clone(),
                live,
                settings.stream_heartbeat,
                stop.clone(),
            );
            add(query_side::http::routes(queries, Arc::new(streams)));
        }
        if let (true, Some(store)) = (settings.runs(Role::Projector), &raw_store) {
            let mut projector = Projector::new(
                log.clone(),
                store.clone(),
                codec.clone(),
                ProjectorMetrics::new(&registry)?,
                settings.projector_pace,
            );
            if let Some(progress) = &progress {
                projector = projector.notifying(progress.clone());
            }
            let chosen: Vec<_> = projections::all()
                .into_iter()
                .filter(|p| settings.only.is_empty() || settings.only.iter().any(|n| n == p.name()))
                .collect();
            let host = Host::new(projector, chosen, current.clone());
            let (hosting, caught_up) = host.spawn(stop.clone()).await?;
            tasks.push(hosting);
            add(crate::replay::routes(crate::replay::Replays::new(
                log.clone(),
                store.clone(),
                current.clone(),
            )));
            checks.push(Arc::new(move || {
                if caught_up.all() {
                    Ok(())
                } else {
                    Err("the projectors have not caught up with the log yet".into())
                }
            }));
        }
        let workflow_metrics = settings
            .runs(Role::Workflow)
            .then(|| WorkflowMetrics::new(&registry))
            .transpose()?;
        let workflow_ready = Arc::new(AtomicBool::new(false));
        // A standby is ready: it is there to take over.
        let workflow_standby = Arc::new(AtomicBool::new(false));
        if settings.runs(Role::Workflow) {
            let (ready, standby) = (workflow_ready.clone(), workflow_standby.clone());
            checks.push(Arc::new(move || {
                if ready.load(Ordering::Acquire) || standby.load(Ordering::Acquire) {
                    Ok(())
                } else {
                    Err("the workflow has not folded the log yet".into())
                }
            }));
        }
        let notifier = if settings.runs(Role::Notifier) {
            let ready = Arc::new(AtomicBool::new(false));
            let notifier = notifier::Notifier::new(
                log.clone(),
                codec.clone(),
                notifier_config(&settings),
                &operator_key,
                notifier::NotifierMetrics::new(&registry)?,
                ready.clone(),
            )
            .await?;
            add(notifier::routes(notifier.ledger()));
            checks.push(Arc::new(move || {
                if ready.load(Ordering::Acquire) {
                    Ok(())
                } else {
                    Err("the notifier has not folded the log yet".into())
                }
            }));
            Some(notifier)
        } else {
            None
        };
        let server_metrics = server::ServerMetrics::new(&registry)?;
        add(ops::routes(log.clone(), store, registry, checks));
        if settings.runs(Role::QueryApi) {
            add(crate::page::routes());
        }
        let routes = routes
            .context("no routes")?
            .or(ops::method_not_allowed())
            .unify()
            .recover(api::recover)
            .unify()
            .boxed();
        let limits = server::Limits {
            header_timeout: settings.header_timeout,
            max_connections: settings.max_connections,
            rate_per_key: settings.rate_limit_per_key,
            writes_in_flight: settings.max_writes_in_flight,
            reads_in_flight: settings.max_reads_in_flight,
            shed_after: settings.shed_after,
            body_timeout: settings.header_timeout,
        };
        let auth = Authenticator::new(
            &operator_key,
            settings.analyst_key.as_deref(),
            account_keys.unwrap_or_else(|| Arc::new(api::NoAccounts)),
        );
        let (addr, server) = serve(
            settings.listen,
            server::Edge::new(routes, Arc::new(auth), &limits, server_metrics.clone()),
            limits,
            server_metrics,
            stop.clone(),
        )?;
        tasks.push(server);
        tracing::info!(%addr, roles = ?settings.roles, "serving");
        if let Some(commands) = several_writers {
            // Peers reach this process where it listens: its markers say so from now.
            let ownership = commands.ownership().clone();
            ownership.set_address(
                settings
                    .advertise_url
                    .clone()
                    .unwrap_or_else(|| local_url(addr)),
            );
            let logged = |what: &'static str| {
                move |done: Result<(), storage::StorageError>| {
                    if let Err(e) = done {
                        tracing::error!(error = %e, "{what} stopped");
                    }
                }
            };
            let (l, s) = (log.clone(), stop.clone());
            let owners = command_side::group::follow_owners(ownership, l, s);
            tasks.push(tokio::spawn(async move {
                logged("the owners follower")(owners.await)
            }));
            let (c, l, s) = (commands.clone(), log.clone(), stop.clone());
            let keys = command_side::group::follow_account_keys(c, l, s);
            tasks.push(tokio::spawn(async move {
                logged("the account keys follower")(keys.await)
            }));
            let group = command_side::group::follow_the_group(commands, log.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                logged("the owners group")(group.await)
            }));
        }

        if let Some(notifier) = notifier {
            tasks.push(tokio::spawn(notifier.run(stop.clone())));
        }
        if let Some(metrics) = workflow_metrics {
            let command_url = match (&settings.command_url, settings.runs(Role::CommandApi)) {
                (Some(url), _) => url.clone(),
                (None, true) => local_url(addr),
                (None, false) => anyhow::bail!(
                    "the workflow sends its commands to a command API: give --command-url, or run the command-api role in this process"
                ),
            };
            let client = CommandClient::new(&command_url, &api::workflow_key(&operator_key))
                .context("cannot build the HTTP client")?;
            let term = WorkflowTerm {
                log,
                codec,
                client,
                flight: settings.flight.clone(),
                policy: settings.dispatch_policy(),
                metrics,
                ready: workflow_ready,
                standby: workflow_standby,
                // On Kafka other workflow processes may run: one decides, the others
                // stand by (the embedded log's lock already makes this one alone).
                lease: matches!(settings.log_location(), LogLocation::Kafka { .. })
                    .then(|| (addr.to_string(), settings.writer_session)),
            };
            tasks.push(tokio::spawn(term.run(stop)));
        }
        Ok(App {
            addr,
            shutdown,
            tasks,
            _lock: None,
        })
    }

    /// Runs `task` beside the roles (`serve --demo`'s simulator) with the shutdown signal,
    /// so it stops when they do, and [`App::stop`] waits for it.
    pub fn run_beside<F>(&mut self, task: impl FnOnce(watch::Receiver<bool>) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let stop = self.shutdown.subscribe();
        self.tasks.push(tokio::spawn(task(stop)));
    }

    /// Stops serving and the projectors, and waits for them.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The notifier's configuration from the settings; its ledger lives in the data
/// directory.
fn notifier_config(settings: &Settings) -> notifier::NotifierConfig {
    notifier::NotifierConfig {
        channels: settings.notify.channels.clone(),
        flight: settings.flight.clone(),
        eta_threshold: settings.notify.eta_threshold,
        state_dir: settings.data_dir.join("notifier"),
    }
}

/// Serves `edge` on `listen` until `stop` turns true.
fn serve(
    listen: SocketAddr,
    edge: server::Edge,
    limits: server::Limits,
    metrics: server::ServerMetrics,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = listen_on(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(server::run(listener, edge, limits, metrics, stop));
    Ok((addr, task))
}

/// Where a process on this machine reaches `addr` (an unspecified address listens on
/// loopback too).
pub fn local_url(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        match addr {
            SocketAddr::V4(_) => std::net::IpAddr::from([127, 0, 0, 1]),
            SocketAddr::V6(_) => std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        }
    } else {
        addr.ip()
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// A listener whose accepted connections have Nagle's algorithm off (Linux passes
/// `TCP_NODELAY` on to accepted sockets): request/response latency matters here.
fn listen_on(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The workflow role over its life: on Kafka it stands by while another instance is the
/// active workflow, takes over when that one's heartbeats stop, folds the log afresh and
/// decides until it stops or is taken over (then stands by again).
struct WorkflowTerm {
    log: Arc<dyn EventLog>,
    codec: Codec,
    client: CommandClient,
    flight: domain::FlightModel,
    policy: domain::DispatchPolicy,
    metrics: WorkflowMetrics,
    ready: Arc<AtomicBool>,
    standby: Arc<AtomicBool>,
    /// This process's address and the heartbeat session, when the role is leased.
    lease: Option<(String, Duration)>,
}

impl WorkflowTerm {
    async fn run(self, stop: watch::Receiver<bool>) {
        loop {
            let lease = match &self.lease {
                None => Lease::exclusive(),
                Some((address, session)) => {
                    self.standby.store(true, Ordering::Release);
                    let taken = Lease::standby(
                        ACTIVE_WORKFLOW,
                        self.log.clone(),
                        self.codec.clone(),
                        address.clone(),
                        *session,
                        stop.clone(),
                    )
                    .await;
                    match taken {
                        Ok(Some(lease)) => lease,
                        Ok(None) => return,
                        Err(error) => {
                            tracing::error!(%error, "cannot take the workflow's lease; trying again");
                            tokio::time::sleep(*session).await;
                            continue;
                        }
                    }
                }
            };
            tracing::info!(instance = lease.instance(), "this is the active workflow");
            self.standby.store(false, Ordering::Release);
            self.metrics.active.set(1);
            let held = lease.clone();
            let workflow = workflow::Workflow::new(
                self.log.clone(),
                self.codec.clone(),
                self.client.clone(),
                Dispatcher::new(self.flight.clone(), self.policy.clone()),
                self.metrics.clone(),
                self.ready.clone(),
                Arc::new(move || held.holds()),
            )
            .await;
            let failed = match workflow {
                Ok(workflow) => {
                    workflow.run(stop.clone()).await;
                    false
                }
                Err(error) => {
                    tracing::error!(%error, "the workflow cannot read the log");
                    true
                }
            };
            self.metrics.active.set(0);
            self.ready.store(false, Ordering::Release);
            // Stopped or taken over: a standby need not wait a session.
            lease.release().await;
            if *stop.borrow() || self.lease.is_none() {
                return;
            }
            if failed {
                // Let another instance try before this one does again.
                if let Some((_, session)) = &self.lease {
                    tokio::time::sleep(*session).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_read_store_of_another_layout_is_emptied_and_one_of_this_layout_is_kept() {
        let root = tempfile::tempdir().expect("dir");
        let dir = root.path().join("views");
        // A new directory: created and marked.
        super::rebuild_if_outdated(&dir, 7).expect("prepared");
        let marker = dir.join(super::LAYOUT_FILE);
        assert_eq!(std::fs::read_to_string(&marker).expect("marker"), "7");
        // Data of this layout stays.
        std::fs::write(dir.join("rows"), "kept").expect("write");
        super::rebuild_if_outdated(&dir, 7).expect("prepared");
        assert!(dir.join("rows").exists());
        // Another layout: emptied and marked anew.
        super::rebuild_if_outdated(&dir, 8).expect("prepared");
        assert!(!dir.join("rows").exists());
        assert_eq!(std::fs::read_to_string(&marker).expect("marker"), "8");
        // A directory from before the marker, holding data: emptied too.
        std::fs::remove_file(&marker).expect("remove");
        std::fs::write(dir.join("rows"), "old").expect("write");
        super::rebuild_if_outdated(&dir, 8).expect("prepared");
        assert!(!dir.join("rows").exists());
    }

    use super::*;
    use crate::cli::Cli;

    fn settings(args: &[&str]) -> Settings {
        let args = ["drone-delivery", "serve"].iter().chain(args);
        let (serve, role) = Cli::parse_layered(args).expect("parsed").into_role();
        serve.settings(role).expect("settings")
    }

    /// The security flags reach every Kafka client, and this build's librdkafka takes
    /// them: TLS and SCRAM need its `ssl` feature (no broker is contacted to create them).
    #[test]
    fn every_kafka_client_is_created_with_the_security_settings() {
        let settings = settings(&[
            "--log",
            "kafka://127.0.0.1:1",
            "--kafka-security-protocol",
            "SASL_SSL",
            "--kafka-sasl-mechanism",
            "SCRAM-SHA-512",
            "--kafka-sasl-username",
            "drones",
            "--kafka-sasl-password",
            "hunter2",
            "--kafka-option",
            "ssl.endpoint.identification.algorithm=https",
        ]);
        let kafka = kafka_settings(&settings, "127.0.0.1:1");
        for (key, value) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "drones"),
            ("sasl.password", "hunter2"),
        ] {
            assert!(
                kafka.client.contains(&(key.to_owned(), value.to_owned())),
                "{key}"
            );
        }
        let shown = format!("{kafka:?} {settings:?}");
        assert!(shown.contains("drones"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        if let Err(e) = open_log(&settings) {
            panic!("{e:#}");
        }
    }

    #[test]
    fn a_setting_librdkafka_refuses_is_a_clear_error_at_start_up() {
        let settings = settings(&[
            "--log",
            "kafka://127.0.0.1:1",
            "--kafka-option",
            "securty.protocol=SSL",
        ]);
        let error = match open_log(&settings) {
            Ok(_) => panic!("librdkafka took securty.protocol"),
            Err(e) => format!("{e:#}"),
        };
        assert!(error.contains("cannot set up the Kafka client"), "{error}");
        assert!(error.contains("securty.protocol"), "{error}");
    }
}
