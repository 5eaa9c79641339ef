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
    /// How often a busy topic's projector applies a batch at most (see
    /// `projections::Projector::new`): the price is up to this much read-model lag.
    pub projector_pace: Duration,
}

impl Settings {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Settings {
        Settings {
            listen,
            data_dir,
            max_consistency_wait: Duration::from_secs(2),
            projector_pace: Duration::from_millis(1),
        }
    }
}
