//! `--spawn`: a `drone-delivery serve` of the generator's own, on a fresh data directory
//! and a free port, stopped when the run ends.

use crate::client::{Connection, Outcome, Target};
use anyhow::{Context, bail};
use hyper::{Method, StatusCode};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Spawned {
    pub url: String,
    /// The operator key it was started with.
    pub key: String,
    child: Child,
    /// The data directory and the server's log; removed with it.
    dir: tempfile::TempDir,
}

impl Spawned {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn start(bin: Option<PathBuf>, extra: &[String]) -> anyhow::Result<Spawned> {
        let bin = match bin {
            Some(bin) => bin,
            None => std::env::current_exe()?.with_file_name("drone-delivery"),
        };
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let listen = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let key = format!("loadgen-operator-{}", std::process::id());
        let child = Command::new(&bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen")
            .arg(&listen)
            .arg("--operator-key")
            .arg(&key)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (build it: cargo build --release)",
                    bin.display()
                )
            })?;
        let mut spawned = Spawned {
            url: format!("http://{listen}"),
            key,
            child,
            dir,
        };
        spawned.ready().await?;
        eprintln!("started {} at {}", bin.display(), spawned.url);
        Ok(spawned)
    }

    /// Waits until `/readyz` answers 200.
    async fn ready(&mut self) -> anyhow::Result<()> {
        let mut connection = Connection::new(Target::parse(&self.url)?);
        let started = Instant::now();
        loop {
            if let Outcome::Status(StatusCode::OK, _) =
                connection.send(Method::GET, "/readyz", None).await
            {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                let log =
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
                bail!("the server exited ({status}):\n{log}");
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the server was not ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
