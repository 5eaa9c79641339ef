//! `drone-delivery`: one binary, several roles (SPEC §2). `serve` runs them all in one
//! process on the embedded default and is what runs when no role is named.

use drone_delivery::cli::{Cli, CliError};
use drone_delivery::{App, telemetry};

// The server allocates and frees many small buffers per request and per event; glibc's
// allocator spent a fifth of the CPU under telemetry load (perf), mimalloc much less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = match Cli::parse_layered(std::env::args_os()) {
        Ok(cli) => cli,
        // Clap prints its own errors, help and version, and exits with their code.
        Err(CliError::Clap(e)) => e.exit(),
        Err(CliError::Config(e)) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let migrates = cli.migrates();
    let (args, role) = cli.into_role();
    telemetry::init_logging(args.log_format);
    let settings = args.settings(role).map_err(anyhow::Error::msg)?;
    if migrates {
        println!("{}", drone_delivery::migrate(&settings).await?);
        return Ok(());
    }
    let app = App::start(settings).await?;
    // One machine-readable line, so scripts and tests learn the port chosen for `:0`.
    println!("drone-delivery listening on http://{}", app.addr);
    shutdown_signal().await;
    tracing::info!("shutting down");
    app.stop().await;
    Ok(())
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
