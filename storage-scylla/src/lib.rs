//! The ScyllaDB `ReadStore` on the `scylla` driver ([ADR 13]).
//!
//! Every read-model table is a CQL table `(p text, c text, v blob, PRIMARY KEY (p, c))`:
//! the port's partition key is the CQL partition key, its clustering key the clustering
//! column, so every `get` and `scan` reads one partition (no `ALLOW FILTERING`, no
//! scatter). A row's version is its write timestamp (`USING TIMESTAMP`): the higher
//! version wins and a delete wins a tie, natively and without a read. Checkpoints live in
//! `projector_checkpoints`, one partition per (projection, topic, partition), and are
//! written only after every write of their apply was acknowledged. Statements are
//! prepared once and routed token-aware; the consistency level is a setting.
//!
//! [ADR 13]: ../../docs/adr/0013-the-read-store-on-scylladb.md

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
pub use scylla::statement::Consistency;
use scylla::statement::prepared::PreparedStatement;
use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::sync::Mutex;
use std::time::Duration;
use storage::{Checkpoint, Offset, Order, ReadStore, Row, Scan, StorageError, Write};

/// Writes of one apply in flight at once.
const CONCURRENCY: usize = 64;
/// Rows per page of a scan.
const PAGE: i32 = 1000;
const CHECKPOINTS: &str = "projector_checkpoints";
const MIGRATIONS: &str = "schema_migrations";

/// Where the cluster is and how to talk to it.
#[derive(Clone, Debug)]
pub struct ScyllaSettings {
    /// `host:port` of some nodes; the driver discovers the rest.
    pub nodes: Vec<String>,
    pub keyspace: String,
    pub login: Option<(String, String)>,
    /// Of every read and write.
    pub consistency: Consistency,
    /// Of the keyspace, when the migrations create it.
    pub replication_factor: u32,
    /// Requests go to this datacenter's nodes first.
    pub datacenter: Option<String>,
    pub request_timeout: Duration,
}

impl ScyllaSettings {
    pub fn new(nodes: &str, keyspace: &str) -> ScyllaSettings {
        ScyllaSettings {
            nodes: nodes.split(',').map(str::to_owned).collect(),
            keyspace: keyspace.to_owned(),
            login: None,
            consistency: Consistency::LocalQuorum,
            replication_factor: 1,
            datacenter: None,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// `one`, `quorum`, `local_quorum`, … as CQL names them (case and `-` or `_` aside).
pub fn parse_consistency(name: &str) -> Result<Consistency, String> {
    let normal = name.to_ascii_lowercase().replace('-', "_");
    Ok(match normal.as_str() {
        "any" => Consistency::Any,
        "one" => Consistency::One,
        "two" => Consistency::Two,
        "three" => Consistency::Three,
        "quorum" => Consistency::Quorum,
        "all" => Consistency::All,
        "local_quorum" => Consistency::LocalQuorum,
        "each_quorum" => Consistency::EachQuorum,
        "local_one" => Consistency::LocalOne,
        _ => {
            return Err(format!(
                "{name:?} is not a consistency level: use one, quorum, local_quorum, local_one, each_quorum or all"
            ));
        }
    })
}

/// A versioned schema change: the read-model tables it creates. Each runs once per
/// keyspace (recorded in `schema_migrations`), and every statement is `IF NOT EXISTS`, so
/// a migration cut short runs again harmlessly.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    pub version: i32,
    pub description: &'static str,
    pub tables: &'static [&'static str],
}

/// The statements a store prepares, one per table and shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Shape {
    Put(String),
    Delete(String),
    Get(String),
    Scan {
        table: String,
        from: Option<&'static str>,
        to: Option<&'static str>,
        descending: bool,
    },
    PutCheckpoint,
    GetCheckpoint,
}

impl Shape {
    /// The read-model table a statement works on.
    fn table(&self) -> Option<&str> {
        match self {
            Shape::Put(t) | Shape::Delete(t) | Shape::Get(t) => Some(t),
            Shape::Scan { table, .. } => Some(table),
            Shape::PutCheckpoint | Shape::GetCheckpoint => None,
        }
    }
}

pub struct ScyllaReadStore {
    session: Session,
    keyspace: String,
    statements: Mutex<HashMap<Shape, PreparedStatement>>,
    /// Tables known to exist; others are created at their first write (the read models'
    /// by the migrations, ahead of time).
    tables: Mutex<HashSet<String>>,
}

fn unavailable(error: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(format!("ScyllaDB: {error}"))
}

/// CQL identifiers: a letter, then letters, digits and `_`, at most 48.
fn identifier(name: &str) -> Result<&str, StorageError> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 48;
    if valid {
        Ok(name)
    } else {
        Err(StorageError::Invalid(format!(
            "{name:?} is not a ScyllaDB table or keyspace name (a letter, then letters, digits or _, at most 48)"
        )))
    }
}

/// CQL refuses an empty partition key; the port allows one. Every key gets a prefix.
fn partition_key(partition: &str) -> String {
    format!("/{partition}")
}

fn timestamp(version: u64) -> Result<i64, StorageError> {
    i64::try_from(version).map_err(|_| {
        StorageError::Invalid(format!("version {version} is beyond a write timestamp"))
    })
}

impl ScyllaReadStore {
    /// Connects, creates the keyspace if it is missing (with the settings' replication
    /// factor) and runs the migrations not yet recorded.
    pub async fn connect(
        settings: &ScyllaSettings,
        migrations: &[Migration],
    ) -> Result<ScyllaReadStore, StorageError> {
        let keyspace = identifier(&settings.keyspace)?.to_owned();
        let mut policy = DefaultPolicy::builder().token_aware(true);
        if let Some(datacenter) = &settings.datacenter {
            policy = policy.prefer_datacenter(datacenter.clone());
        }
        let profile = ExecutionProfile::builder()
            .consistency(settings.consistency)
            .load_balancing_policy(policy.build())
            .request_timeout(Some(settings.request_timeout))
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(&settings.nodes)
            .default_execution_profile_handle(profile.into_handle());
        if let Some((user, password)) = &settings.login {
            builder = builder.user(user, password);
        }
        let session = builder.build().await.map_err(unavailable)?;
        let store = ScyllaReadStore {
            session,
            keyspace,
            statements: Mutex::new(HashMap::new()),
            tables: Mutex::new(HashSet::new()),
        };
        store
            .ddl(&format!(
                "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = \
             {{'class': 'NetworkTopologyStrategy', 'replication_factor': {}}}",
                store.keyspace, settings.replication_factor
            ))
            .await?;
        store
            .ddl(&format!(
                "CREATE TABLE IF NOT EXISTS {}.{CHECKPOINTS} (projection text, topic text, \
                 log_partition int, next bigint, writer text, \
                 PRIMARY KEY ((projection, topic, log_partition)))",
                store.keyspace
            ))
            .await?;
        store
            .ddl(&format!(
                "CREATE TABLE IF NOT EXISTS {}.{MIGRATIONS} (version int PRIMARY KEY, \
                 description text, applied_at_ms bigint)",
                store.keyspace
            ))
            .await?;
        store.migrate(migrations).await?;
        store.refresh_tables().await?;
        Ok(store)
    }

    /// The migrations recorded in the keyspace, in order.
    pub async fn applied_migrations(&self) -> Result<Vec<i32>, StorageError> {
        let result = self
            .session
            .query_unpaged(
                format!("SELECT version FROM {}.{MIGRATIONS}", self.keyspace),
                (),
            )
            .await
            .map_err(unavailable)?;
        let rows = result.into_rows_result().map_err(unavailable)?;
        let mut versions = rows
            .rows::<(i32,)>()
            .map_err(corrupt)?
            .map(|row| row.map(|(v,)| v).map_err(corrupt))
            .collect::<Result<Vec<_>, _>>()?;
        versions.sort_unstable();
        Ok(versions)
    }

    /// Runs the migrations not yet recorded, lowest version first; returns how many ran.
    pub async fn migrate(&self, migrations: &[Migration]) -> Result<usize, StorageError> {
        let applied = self.applied_migrations().await?;
        let mut pending: Vec<&Migration> = migrations
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .collect();
        pending.sort_by_key(|m| m.version);
        for migration in &pending {
            for table in migration.tables {
                self.create_table(table).await?;
            }
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            self.session
                .query_unpaged(
                    format!(
                        "INSERT INTO {}.{MIGRATIONS} (version, description, applied_at_ms) \
                         VALUES (?, ?, ?)",
                        self.keyspace
                    ),
                    (migration.version, migration.description, now_ms),
                )
                .await
                .map_err(unavailable)?;
            tracing::info!(
                version = migration.version,
                migration.description,
                "ScyllaDB migration applied"
            );
        }
        Ok(pending.len())
    }

    async fn ddl(&self, statement: &str) -> Result<(), StorageError> {
        self.session
            .query_unpaged(statement, ())
            .await
            .map_err(unavailable)?;
        // Every node must know the schema before statements that use it are prepared.
        self.session
            .await_schema_agreement()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn create_table(&self, table: &str) -> Result<(), StorageError> {
        let table = identifier(table)?;
        self.ddl(&format!(
            "CREATE TABLE IF NOT EXISTS {}.{table} (p text, c text, v blob, PRIMARY KEY (p, c)) \
             WITH CLUSTERING ORDER BY (c ASC)",
            self.keyspace
        ))
        .await?;
        self.known_tables().insert(table.to_owned());
        Ok(())
    }

    fn known_tables(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Learns which tables exist (another process may have created some).
    async fn refresh_tables(&self) -> Result<(), StorageError> {
        let result = self
            .session
            .query_unpaged(
                "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
                (self.keyspace.as_str(),),
            )
            .await
            .map_err(unavailable)?;
        let rows = result.into_rows_result().map_err(unavailable)?;
        let names = rows
            .rows::<(String,)>()
            .map_err(corrupt)?
            .map(|row| row.map(|(name,)| name).map_err(corrupt))
            .collect::<Result<Vec<_>, _>>()?;
        self.known_tables().extend(names);
        Ok(())
    }

    /// Whether `table` exists, asking the cluster once more when it is not known here.
    async fn exists(&self, table: &str) -> Result<bool, StorageError> {
        if self.known_tables().contains(table) {
            return Ok(true);
        }
        self.refresh_tables().await?;
        Ok(self.known_tables().contains(table))
    }

    async fn statement(&self, shape: Shape) -> Result<PreparedStatement, StorageError> {
        if let Some(prepared) = self
            .statements
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&shape)
        {
            return Ok(prepared.clone());
        }
        let ks = &self.keyspace;
        let cql = match &shape {
            Shape::Put(t) => {
                format!("INSERT INTO {ks}.{t} (p, c, v) VALUES (?, ?, ?) USING TIMESTAMP ?")
            }
            Shape::Delete(t) => {
                format!("DELETE FROM {ks}.{t} USING TIMESTAMP ? WHERE p = ? AND c = ?")
            }
            Shape::Get(t) => {
                format!("SELECT c, v, WRITETIME(v) FROM {ks}.{t} WHERE p = ? AND c = ?")
            }
            Shape::Scan {
                table,
                from,
                to,
                descending,
            } => {
                let mut cql = format!("SELECT c, v, WRITETIME(v) FROM {ks}.{table} WHERE p = ?");
                if let Some(op) = from {
                    cql.push_str(&format!(" AND c {op} ?"));
                }
                if let Some(op) = to {
                    cql.push_str(&format!(" AND c {op} ?"));
                }
                if *descending {
                    cql.push_str(" ORDER BY c DESC");
                }
                cql.push_str(" LIMIT ?");
                cql
            }
            Shape::PutCheckpoint => format!(
                "INSERT INTO {ks}.{CHECKPOINTS} (projection, topic, log_partition, next, writer) \
                 VALUES (?, ?, ?, ?, ?)"
            ),
            Shape::GetCheckpoint => format!(
                "SELECT next, writer FROM {ks}.{CHECKPOINTS} \
                 WHERE projection = ? AND topic = ? AND log_partition = ?"
            ),
        };
        let mut prepared = self.session.prepare(cql).await.map_err(unavailable)?;
        // Writes carry their own timestamps and checkpoints are plain upserts: retrying
        // any of them changes nothing.
        prepared.set_is_idempotent(true);
        if matches!(shape, Shape::Scan { .. }) {
            prepared.set_page_size(PAGE);
        }
        self.statements
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(shape, prepared.clone());
        Ok(prepared)
    }

    async fn write(&self, write: Write) -> Result<(), StorageError> {
        let table = match &write {
            Write::Put { table, .. } | Write::Delete { table, .. } => identifier(table)?.to_owned(),
        };
        if !self.exists(&table).await? {
            self.create_table(&table).await?;
        }
        match write {
            Write::Put {
                partition,
                clustering,
                value,
                version,
                ..
            } => {
                let statement = self.statement(Shape::Put(table)).await?;
                let values = (
                    partition_key(&partition),
                    clustering,
                    value.to_vec(),
                    timestamp(version)?,
                );
                self.session
                    .execute_unpaged(&statement, values)
                    .await
                    .map_err(unavailable)?;
            }
            Write::Delete {
                partition,
                clustering,
                version,
                ..
            } => {
                let statement = self.statement(Shape::Delete(table)).await?;
                let values = (timestamp(version)?, partition_key(&partition), clustering);
                self.session
                    .execute_unpaged(&statement, values)
                    .await
                    .map_err(unavailable)?;
            }
        }
        Ok(())
    }

    async fn put_checkpoint(&self, checkpoint: Checkpoint) -> Result<(), StorageError> {
        let statement = self.statement(Shape::PutCheckpoint).await?;
        let next = i64::try_from(checkpoint.next).map_err(|_| {
            StorageError::Invalid(format!("offset {} is too large", checkpoint.next))
        })?;
        let values = (
            checkpoint.projection,
            checkpoint.topic,
            log_partition(checkpoint.partition)?,
            next,
            checkpoint.writer,
        );
        self.session
            .execute_unpaged(&statement, values)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_checkpoint(
        &self,
        projection: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<(Offset, Option<String>)>, StorageError> {
        let statement = self.statement(Shape::GetCheckpoint).await?;
        let result = self
            .session
            .execute_unpaged(&statement, (projection, topic, log_partition(partition)?))
            .await
            .map_err(unavailable)?;
        let rows = result.into_rows_result().map_err(unavailable)?;
        let row = rows
            .maybe_first_row::<(i64, Option<String>)>()
            .map_err(corrupt)?;
        Ok(row.map(|(next, writer)| (next.max(0) as Offset, writer)))
    }
}

fn log_partition(partition: u32) -> Result<i32, StorageError> {
    i32::try_from(partition)
        .map_err(|_| StorageError::Invalid(format!("partition {partition} is too large")))
}

fn corrupt(error: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("ScyllaDB row: {error}"))
}

fn row((clustering, value, written): (String, Vec<u8>, i64)) -> Row {
    Row {
        clustering,
        value: Bytes::from(value),
        version: written.max(0) as u64,
    }
}

#[async_trait]
impl ReadStore for ScyllaReadStore {
    /// The writes concurrently, then (once every one was acknowledged) the checkpoints.
    async fn apply(
        &self,
        writes: Vec<Write>,
        checkpoints: Vec<Checkpoint>,
    ) -> Result<(), StorageError> {
        stream::iter(writes.into_iter().map(|w| self.write(w)))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        stream::iter(checkpoints.into_iter().map(|c| self.put_checkpoint(c)))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn get(
        &self,
        table: &str,
        partition: &str,
        clustering: &str,
    ) -> Result<Option<Row>, StorageError> {
        if !self.exists(identifier(table)?).await? {
            return Ok(None);
        }
        let statement = self.statement(Shape::Get(table.to_owned())).await?;
        let result = self
            .session
            .execute_unpaged(&statement, (partition_key(partition), clustering))
            .await
            .map_err(unavailable)?;
        let rows = result.into_rows_result().map_err(unavailable)?;
        let found = rows
            .maybe_first_row::<(String, Vec<u8>, i64)>()
            .map_err(corrupt)?;
        Ok(found.map(row))
    }

    async fn scan(
        &self,
        table: &str,
        partition: &str,
        scan: Scan,
    ) -> Result<Vec<Row>, StorageError> {
        if scan.limit == 0 || !self.exists(identifier(table)?).await? {
            return Ok(Vec::new());
        }
        let bound = |b: &Bound<String>, inclusive: &'static str, exclusive: &'static str| match b {
            Bound::Included(key) => (Some(inclusive), Some(key.clone())),
            Bound::Excluded(key) => (Some(exclusive), Some(key.clone())),
            Bound::Unbounded => (None, None),
        };
        let (from_op, from) = bound(&scan.from, ">=", ">");
        let (to_op, to) = bound(&scan.to, "<=", "<");
        let shape = Shape::Scan {
            table: table.to_owned(),
            from: from_op,
            to: to_op,
            descending: scan.order == Order::Descending,
        };
        let statement = self.statement(shape).await?;
        let limit = i32::try_from(scan.limit).unwrap_or(i32::MAX);
        let key = partition_key(partition);
        let pager = match (from, to) {
            (Some(from), Some(to)) => {
                self.session
                    .execute_iter(statement, (key, from, to, limit))
                    .await
            }
            (Some(bound), None) | (None, Some(bound)) => {
                self.session
                    .execute_iter(statement, (key, bound, limit))
                    .await
            }
            (None, None) => self.session.execute_iter(statement, (key, limit)).await,
        }
        .map_err(unavailable)?;
        let rows = pager
            .rows_stream::<(String, Vec<u8>, i64)>()
            .map_err(corrupt)?;
        rows.take(scan.limit)
            .map(|r| r.map(row).map_err(unavailable))
            .try_collect()
            .await
    }

    async fn create_tables(&self, tables: &[String]) -> Result<(), StorageError> {
        for table in tables {
            if !self.exists(table).await? {
                self.create_table(table).await?;
            }
        }
        Ok(())
    }

    /// `DROP TABLE` (no tombstones left behind), then the checkpoints' rows.
    async fn drop_tables(
        &self,
        tables: &[String],
        checkpoints: &[(String, String, u32)],
    ) -> Result<(), StorageError> {
        for table in tables {
            let table = identifier(table)?;
            self.ddl(&format!("DROP TABLE IF EXISTS {}.{table}", self.keyspace))
                .await?;
            self.known_tables().remove(table);
            // Statements prepared on the table are void with it.
            self.statements
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .retain(|shape, _| shape.table() != Some(table));
        }
        for (projection, topic, partition) in checkpoints {
            self.session
                .query_unpaged(
                    format!(
                        "DELETE FROM {}.{CHECKPOINTS} WHERE projection = ? AND topic = ? \
                         AND log_partition = ?",
                        self.keyspace
                    ),
                    (
                        projection.as_str(),
                        topic.as_str(),
                        log_partition(*partition)?,
                    ),
                )
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn checkpoint(
        &self,
        projection: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<Offset>, StorageError> {
        Ok(self
            .get_checkpoint(projection, topic, partition)
            .await?
            .map(|(next, _)| next))
    }

    async fn checkpoint_writer(
        &self,
        projection: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<String>, StorageError> {
        Ok(self
            .get_checkpoint(projection, topic, partition)
            .await?
            .and_then(|(_, writer)| writer))
    }
}
