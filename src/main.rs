//! `drone-delivery`: one binary, several roles (SPEC §2). `serve` runs them all in one
//! process on the embedded default and is what runs when no role is named.

use clap::{Parser, Subcommand};
use drone_delivery::settings::{Role, WorkflowArgs};
use drone_delivery::{App, Settings, telemetry};
use std::net::SocketAddr;
use std::path::PathBuf;

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
    role: Option<Command>,
    /// With no role named, `serve` runs with these.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Runs every role in one process: command and query APIs on one address,
    /// projectors and the workflow, on the embedded event log and read store in
    /// `--data-dir`.
    Serve(ServeArgs),
    /// Runs the workflow alone (`serve --roles workflow`): it follows the log and sends
    /// its commands to the command API at `--command-url`. The embedded log is
    /// single-process, so on the embedded default `serve` runs the workflow itself; this
    /// role is for a log another process does not hold.
    Workflow(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address of the HTTP API.
    #[arg(long, env = "DRONE_DELIVERY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory of the embedded event log and read models.
    #[arg(long, env = "DRONE_DELIVERY_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
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
    let app = match cli.role {
        Some(Command::Workflow(mut args)) => {
            args.roles = vec![Role::Workflow];
            serve(args).await?
        }
        Some(Command::Serve(args)) => serve(args).await?,
        None => serve(cli.serve).await?,
    };
    // One machine-readable line, so scripts and tests learn the port chosen for `:0`.
    println!("drone-delivery listening on http://{}", app.addr);
    shutdown_signal().await;
    tracing::info!("shutting down");
    app.stop().await;
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<App> {
    let mut settings = Settings::new(args.listen, args.data_dir);
    if !args.roles.is_empty() {
        settings.roles = args.roles;
    }
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
