//! Start-up: opens the stores, makes sure the topics exist, folds the write model, starts
//! the projectors, serves the command, query and operations endpoints on one address, and
//! starts the workflow, which sends its commands to that address like any client.

use crate::Settings;
use crate::ops;
use crate::settings::Role;
use anyhow::Context;
use command_side::{CommandMetrics, CommandService};
use domain::Dispatcher;
use projections::{Projector, ProjectorMetrics};
use prometheus::Registry;
use query_side::{QueryMetrics, QueryService};
use schemas::Codec;
use schemas::events::Topic;
use std::net::SocketAddr;
use std::sync::Arc;
use storage::{EventLog, ReadStore, TopicSpec};
use storage_embedded::{DataDirLock, EmbeddedLog, EmbeddedReadStore};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use warp::Filter;
use workflow::{CommandClient, WorkflowMetrics};

/// Partitions each topic is created with. Telemetry gets more: it is the busiest.
pub fn topic_specs() -> Vec<TopicSpec> {
    Topic::ALL
        .into_iter()
        .map(|topic| TopicSpec {
            name: topic.name().to_string(),
            partitions: match topic {
                Topic::DroneTelemetry => 16,
                _ => 8,
            },
        })
        .collect()
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
    /// Starts on the embedded default: log and read models in `settings.data_dir`.
    pub async fn start(settings: Settings) -> anyhow::Result<App> {
        let lock = DataDirLock::acquire(&settings.data_dir)?;
        let log = EmbeddedLog::open(&settings.data_dir.join("log"))
            .context("cannot open the event log")?;
        let store = EmbeddedReadStore::open(&settings.data_dir.join("views"))
            .context("cannot open the read store")?;
        let mut app = App::start_with(settings, Arc::new(log), Arc::new(store)).await?;
        app._lock = Some(lock);
        Ok(app)
    }

    /// Starts the roles of `settings` on the given stores (other adapters, or tests that
    /// inject faults).
    pub async fn start_with(
        settings: Settings,
        log: Arc<dyn EventLog>,
        store: Arc<dyn ReadStore>,
    ) -> anyhow::Result<App> {
        let registry = Registry::new();
        let codec = Codec::new()?;
        log.create_topics(&topic_specs())
            .await
            .context("cannot create the topics")?;
        let (shutdown, stop) = watch::channel(false);
        let mut tasks = Vec::new();
        let uses_store = settings.runs(Role::Projector) || settings.runs(Role::QueryApi);
        let mut routes = ops::routes(
            log.clone(),
            uses_store.then(|| store.clone()),
            registry.clone(),
        );

        if settings.runs(Role::CommandApi) {
            let commands = CommandService::open(
                log.clone(),
                codec.clone(),
                CommandMetrics::new(&registry)?,
                settings.max_clock_skew,
            )
            .await
            .context("cannot fold the event log")?;
            routes = command_side::http::routes(Arc::new(commands))
                .or(routes)
                .unify()
                .boxed();
        }
        if settings.runs(Role::QueryApi) {
            let queries = QueryService::new(
                store.clone(),
                settings.max_consistency_wait,
                settings.flight.clone(),
                QueryMetrics::new(&registry)?,
            );
            routes = query_side::http::routes(Arc::new(queries))
                .or(routes)
                .unify()
                .boxed();
        }
        if settings.runs(Role::Projector) {
            let projector = Projector::new(
                log.clone(),
                store.clone(),
                codec.clone(),
                ProjectorMetrics::new(&registry)?,
                settings.projector_pace,
            );
            tasks.extend(projector.spawn(&projections::all(), stop.clone()).await?);
        }
        let workflow_metrics = settings
            .runs(Role::Workflow)
            .then(|| WorkflowMetrics::new(&registry))
            .transpose()?;

        let routes = routes.recover(api::recover).unify().boxed();
        let (addr, server) = serve(settings.listen, routes, stop.clone())?;
        tasks.push(server);
        tracing::info!(%addr, roles = ?settings.roles, "serving");

        if let Some(metrics) = workflow_metrics {
            let command_url = match (&settings.command_url, settings.runs(Role::CommandApi)) {
                (Some(url), _) => url.clone(),
                (None, true) => local_url(addr),
                (None, false) => anyhow::bail!(
                    "the workflow sends its commands to a command API: give --command-url, or run the command-api role in this process"
                ),
            };
            let workflow = workflow::Workflow::new(
                log,
                codec,
                CommandClient::new(&command_url).context("cannot build the HTTP client")?,
                Dispatcher::new(settings.flight.clone(), settings.dispatch_policy()),
                metrics,
            )
            .await?;
            tasks.push(tokio::spawn(workflow.run(stop)));
        }
        Ok(App {
            addr,
            shutdown,
            tasks,
            _lock: None,
        })
    }

    /// Stops serving and the projectors, and waits for them.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Serves `routes` on `listen` until `stop` turns true.
fn serve(
    listen: SocketAddr,
    routes: warp::filters::BoxedFilter<(warp::reply::Response,)>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = listen_on(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        warp::serve(routes)
            .incoming(listener)
            .graceful(async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            })
            .run()
            .await;
    });
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
