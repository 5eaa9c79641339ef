use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What `serve` needs to start: where to listen and where the data lives.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// How long a query waits for a consistency token or `minVersion` at most.
    pub max_consistency_wait: Duration,
}

impl Settings {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Settings {
        Settings {
            listen,
            data_dir,
            max_consistency_wait: Duration::from_secs(2),
        }
    }
}
