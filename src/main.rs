//! `drone-delivery`: one binary, several roles (SPEC §2). `serve` runs them all in one
//! process on the embedded default and is what runs when no role is named; `simulate`
//! is a client of a running server.

use drone_delivery::cli::{AnalyticsArgs, Cli, CliError, ReplayArgs, ReportFormat, SimulateArgs};
use drone_delivery::simulate::{self, SimConfig};
use drone_delivery::{App, telemetry};

// The server allocates and frees many small buffers per request and per event; glibc's
// allocator spent a fifth of the CPU under telemetry load (perf), mimalloc much less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = match Cli::parse_layered(std::env::args_os()) {
        Ok(cli) => cli,
        // Clap prints its own errors, help and version, and exits with their code.
        Err(CliError::Clap(e)) => e.exit(),
        Err(CliError::Config(e)) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if let Some(args) = cli.take_simulation() {
        run_simulation(args).await;
    }
    if let Some(args) = cli.take_analytics() {
        return run_analytics(args).await;
    }
    if let Some(args) = cli.take_replay() {
        return run_replay(args).await;
    }
    let migrates = cli.migrates();
    let (args, role) = cli.into_role();
    telemetry::init_logging(args.log_format);
    let demo = args.demo;
    let settings = args.settings(role).map_err(anyhow::Error::msg)?;
    if migrates {
        println!("{}", drone_delivery::migrate(&settings).await?);
        return Ok(());
    }
    if demo {
        SimConfig::check_demo(&settings)?;
    }
    let mut app = App::start(settings.clone()).await?;
    // One machine-readable line, so scripts and tests learn the port chosen for `:0`.
    println!("drone-delivery listening on http://{}", app.addr);
    if demo {
        let config = SimConfig::demo(&settings, app.addr)?;
        app.run_beside(move |stop| simulate::demo(config, stop));
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    app.stop().await;
    Ok(())
}

/// `analytics`: reads the history, prints the report in the format asked for.
async fn run_analytics(args: AnalyticsArgs) -> anyhow::Result<()> {
    telemetry::init_logging(args.serve.log_format);
    let settings = args.serve.settings(None).map_err(anyhow::Error::msg)?;
    if let Some(changes) = &args.what_if {
        let report =
            drone_delivery::analytics::what_if(&settings, changes, args.from, args.to).await?;
        match args.format {
            ReportFormat::Table => print!("{}", report.table()),
            ReportFormat::Csv => print!("{}", report.csv()),
            ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        }
        return Ok(());
    }
    let report = drone_delivery::analytics::report(&settings, args.from, args.to).await?;
    match args.format {
        ReportFormat::Table => print!("{}", report.table()),
        ReportFormat::Csv => print!("{}", report.csv()),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    if let Some(path) = &args.chart {
        analytics::draw_chart(&report, path)?;
        eprintln!("analytics: chart written to {}", path.display());
    }
    Ok(())
}

/// `replay`: rebuilds one read model, through a running server or here.
async fn run_replay(args: ReplayArgs) -> anyhow::Result<()> {
    telemetry::init_logging(args.serve.log_format);
    let settings = args.serve.settings(None).map_err(anyhow::Error::msg)?;
    let model = projections::model_named(&args.projection).map_err(anyhow::Error::msg)?;
    match &args.url {
        Some(url) => {
            let key = drone_delivery::keys::operator_key(&settings)?;
            let done = drone_delivery::replay::through(url, &key, model).await?;
            println!(
                "replay: {} rebuilt as generation {} ({} records, switched after {} ms)",
                model.name,
                done.generation,
                done.applied,
                done.took_ms.unwrap_or_default()
            );
        }
        None => {
            let done = drone_delivery::replay::here(&settings, model).await?;
            println!(
                "replay: {} rebuilt as generation {} ({} records, switched after {} ms)",
                model.name,
                done.generation,
                done.records,
                done.took.as_millis()
            );
        }
    }
    Ok(())
}

/// `simulate`: runs until its duration is over (or Ctrl-C), prints its one-line summary
/// and exits; exit code 1 with the reason when it cannot start.
async fn run_simulation(args: SimulateArgs) -> ! {
    telemetry::init_logging(telemetry::LogFormat::Text);
    let config = match args.config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    match simulate::run(config, stopped).await {
        Ok(summary) => {
            println!("{summary}");
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
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
