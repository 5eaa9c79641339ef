//! The read store conformance suite against a real ScyllaDB at `SCYLLA_URI`
//! (`host:port[,host:port…]`, or `scylla://` before it). ScyllaDB cannot be installed on
//! the project's machines, so without it the test says it was skipped.

use storage::conformance::{self, unique_name};
use storage_scylla::{Migration, ScyllaReadStore, ScyllaSettings};

/// Settings for a keyspace of this run's own, if a cluster was given.
pub fn cluster() -> Option<ScyllaSettings> {
    let Ok(uri) = std::env::var("SCYLLA_URI") else {
        eprintln!("skipped: SCYLLA_URI is not set, so the ScyllaDB adapter was not tested");
        return None;
    };
    let nodes = uri.strip_prefix("scylla://").unwrap_or(&uri);
    let nodes = nodes.split('/').next().unwrap_or(nodes);
    Some(ScyllaSettings::new(nodes, &unique_name("conformance")))
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "two tables",
        tables: &["first_table", "second_table"],
    },
    Migration {
        version: 2,
        description: "a third",
        tables: &["third_table"],
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_read_store_passes_the_read_store_suite() {
    let Some(settings) = cluster() else { return };
    let store = ScyllaReadStore::connect(&settings, &[])
        .await
        .expect("connect");
    conformance::read_store_suite(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_each_and_in_order() {
    let Some(settings) = cluster() else { return };
    let store = ScyllaReadStore::connect(&settings, &MIGRATIONS[..1])
        .await
        .expect("connect");
    assert_eq!(store.applied_migrations().await.expect("applied"), [1]);
    // A later build brings the second; running them all again runs only that one.
    assert_eq!(store.migrate(MIGRATIONS).await.expect("migrate"), 1);
    assert_eq!(store.migrate(MIGRATIONS).await.expect("migrate"), 0);
    assert_eq!(store.applied_migrations().await.expect("applied"), [1, 2]);
    // Connecting again (the next start-up) changes nothing.
    let again = ScyllaReadStore::connect(&settings, MIGRATIONS)
        .await
        .expect("connect");
    assert_eq!(again.migrate(MIGRATIONS).await.expect("migrate"), 0);
}
