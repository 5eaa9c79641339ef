//! `drone-delivery`: one binary, several roles (SPEC §2). `serve` runs them all in one
//! process on the embedded default and is what runs when no role is named.

use clap::{Parser, Subcommand};
use drone_delivery::settings::{Role, StorageArgs, WorkflowArgs};
use drone_delivery::{App, Settings, telemetry};
use std::net::SocketAddr;

// The server allocates and frees many small buffers per request and per event; glibc's
// allocator spent a fifth of the CPU under telemetry load (perf), mimalloc much less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "Event-sourced CQRS backend for drone delivery",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    role: Option<Subcommands>,
    /// With no role named, `serve` runs with these.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Subcommands {
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
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address of the HTTP API (and of `/healthz`, `/readyz`, `/metrics`).
    #[arg(long, env = "DRONE_DELIVERY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    storage: StorageArgs,
    /// The read models the projector builds, e.g. `--only deliveries,drones` (all when
    /// not given).
    #[arg(long, env = "DRONE_DELIVERY_ONLY", value_delimiter = ',')]
    only: Vec<String>,
    /// The roles to run (all by default), e.g. `--roles command-api,projector`.
    #[arg(long, env = "DRONE_DELIVERY_ROLES", value_enum, value_delimiter = ',')]
    roles: Vec<Role>,
    /// Where the workflow sends its commands when this process runs no command API.
    #[arg(long, env = "DRONE_DELIVERY_COMMAND_URL")]
    command_url: Option<String>,
    /// A busy topic's projector applies a batch at most this often (ms): more events per
    /// read-store write, at the price of up to this much more read-model lag.
    #[arg(long, env = "DRONE_DELIVERY_PROJECTOR_PACE_MS", default_value_t = 1)]
    projector_pace_ms: u64,
    #[command(flatten)]
    workflow: WorkflowArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init_logging();
    let cli = Cli::parse();
    let (args, role) = match cli.role {
        Some(Subcommands::Serve(args)) => (args, None),
        Some(Subcommands::CommandApi(args)) => (args, Some(Role::CommandApi)),
        Some(Subcommands::Projector(args)) => (args, Some(Role::Projector)),
        Some(Subcommands::QueryApi(args)) => (args, Some(Role::QueryApi)),
        Some(Subcommands::Workflow(args)) => (args, Some(Role::Workflow)),
        None => (cli.serve, None),
    };
    let app = serve(args, role).await?;
    // One machine-readable line, so scripts and tests learn the port chosen for `:0`.
    println!("drone-delivery listening on http://{}", app.addr);
    shutdown_signal().await;
    tracing::info!("shutting down");
    app.stop().await;
    Ok(())
}

async fn serve(args: ServeArgs, role: Option<Role>) -> anyhow::Result<App> {
    let mut settings = Settings::new(args.listen, args.storage.data_dir.clone());
    args.storage
        .apply(&mut settings)
        .map_err(anyhow::Error::msg)?;
    if let Some(role) = role {
        settings.roles = vec![role];
    } else if !args.roles.is_empty() {
        settings.roles = args.roles;
    }
    let known: Vec<&str> = projections::models::ALL.iter().map(|m| m.name).collect();
    if let Some(unknown) = args.only.iter().find(|n| !known.contains(&n.as_str())) {
        anyhow::bail!("--only {unknown}: the read models are {}", known.join(", "));
    }
    settings.only = args.only;
    settings.command_url = args.command_url;
    settings.projector_pace = std::time::Duration::from_millis(args.projector_pace_ms);
    args.workflow
        .apply(&mut settings)
        .map_err(anyhow::Error::msg)?;
    App::start(settings).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
