//! [`EmbeddedReadStore`]: read-model rows and projector checkpoints in a fjall database.
//!
//! Keyspaces:
//! * `rows`: `len table | len partition | clustering bytes` →
//!   `version (u64 BE) | flag (0 live, 1 tombstone) | value`. Deleted rows stay as
//!   tombstones so a late, older put cannot bring them back (like ScyllaDB's tombstones,
//!   but never purged).
//! * `checkpoints`: `len projection | len topic | partition (u32 BE)` → next (u64 BE),
//!   then the UTF-8 writer id when the checkpoint kept one.

use crate::disk::{DEFAULT_DISK_RESERVE_BYTES, DiskGuard, FreeSpace};
use crate::keys::{self, RowMeta};
use crate::{Checkpoint, Offset, Order, ReadStore, Row, Scan, StorageError, Write};
use crate::{blocking, engine, open_database};
use async_trait::async_trait;
use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

const ROWS: &str = "rows";
const CHECKPOINTS: &str = "checkpoints";

/// The read store of the embedded deployment. See the module docs for the layout.
#[derive(Clone)]
pub struct EmbeddedReadStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    rows: Keyspace,
    checkpoints: Keyspace,
    /// Serializes `apply` so its read-compare-write of versions is not interleaved, and
    /// holds the versions of rows written lately: busy rows (a drone's position) are
    /// compared without a read. Exact, since every write goes through `apply`.
    apply_lock: Mutex<Versions>,
    disk: DiskGuard,
}

/// Row versions kept in memory at most (about 100 bytes each).
const VERSION_CACHE_ROWS: usize = 1 << 19;

/// The versions of the rows written lately, in two halves: when the newer one is full
/// the older is forgotten and the newer takes its place, so the rows written last (the
/// ones the next events change) stay known and a row's newest version is always the one
/// found first.
#[derive(Default)]
struct Versions {
    newer: foldhash::HashMap<Vec<u8>, RowMeta>,
    older: foldhash::HashMap<Vec<u8>, RowMeta>,
    fresh: Fresh,
}

/// Hashes of fresh tables' keys kept at most (8–16 bytes each).
const FRESH_KEYS: usize = 1 << 22;

/// The tables that were empty when created (a rebuild's new generation), each with the
/// hash of every key written to it since: a key whose hash is not there was never
/// written, so its write needs no version read (a rebuild's new rows are most of its
/// writes, and the read of a missing row was a fifth of its time). A hash that is there
/// only means "maybe": the row is read as any other. Past [`FRESH_KEYS`] hashes the
/// tables are forgotten and every row is read again.
#[derive(Default)]
struct Fresh {
    tables: foldhash::HashMap<String, foldhash::HashSet<u64>>,
    keys: usize,
    hasher: foldhash::fast::RandomState,
}

impl Fresh {
    /// Notes a write of `key` to `table`; true when the row cannot exist yet.
    fn first_write(&mut self, table: &str, key: &[u8]) -> bool {
        let Some(hashes) = self.tables.get_mut(table) else {
            return false;
        };
        if !hashes.insert(self.hasher.hash_one(key)) {
            return false;
        }
        self.keys += 1;
        if self.keys > FRESH_KEYS {
            self.tables.clear();
            self.keys = 0;
        }
        true
    }
}

impl Versions {
    fn get(&self, key: &[u8]) -> Option<&RowMeta> {
        self.newer.get(key).or_else(|| self.older.get(key))
    }

    fn extend(&mut self, written: Vec<(Vec<u8>, RowMeta)>) {
        if self.newer.len() + written.len() > VERSION_CACHE_ROWS / 2 {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.extend(written);
    }

    fn clear(&mut self) {
        self.newer.clear();
        self.older.clear();
    }
}

impl EmbeddedReadStore {
    /// Opens the store in `dir` (created if missing), keeping
    /// [`DEFAULT_DISK_RESERVE_BYTES`] free on its disk.
    pub fn open(dir: &Path) -> Result<EmbeddedReadStore, StorageError> {
        EmbeddedReadStore::open_with_reserve(dir, DEFAULT_DISK_RESERVE_BYTES, None)
    }

    /// Opens the store keeping `reserve` bytes free on its disk, as `free` reports them
    /// (`None`: `statvfs` of `dir`): below them an apply is refused (`Unavailable`, and
    /// the projector retries) before the engine's journal could fail on a full disk.
    pub fn open_with_reserve(
        dir: &Path,
        reserve: u64,
        free: Option<FreeSpace>,
    ) -> Result<EmbeddedReadStore, StorageError> {
        let db = open_database(dir)?;
        let disk = DiskGuard::new(dir, reserve, free, "the read store");
        let rows = db.keyspace(ROWS, rows_options).map_err(engine)?;
        let checkpoints = db
            .keyspace(CHECKPOINTS, KeyspaceCreateOptions::default)
            .map_err(engine)?;
        Ok(EmbeddedReadStore {
            inner: Arc::new(Inner {
                db,
                rows,
                checkpoints,
                apply_lock: Mutex::new(Versions::default()),
                disk,
            }),
        })
    }
}

/// The rows' engine settings: the defaults but for compaction, which waits for 16 tables
/// in the first level instead of 4. Rows are written far more than read (every event
/// rewrites several, a query reads one partition), and with 4 a rebuild spent about a
/// third of its time compacting and stalled behind it: 1.8× the rebuild throughput at
/// 200K events (BENCHMARKS.md), for a point read that checks a few more bloom filters.
/// fjall stalls writes from 20 first-level tables on, so 16 stays clear of that.
fn rows_options() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default().compaction_strategy(Arc::new(
        fjall::compaction::Leveled::default().with_l0_threshold(16),
    ))
}

impl Inner {
    fn apply(&self, writes: Vec<Write>, checkpoints: Vec<Checkpoint>) -> Result<(), StorageError> {
        self.disk.check().map_err(StorageError::Unavailable)?;
        // Encode the checkpoints first so bad input fails before anything is read.
        let mut positions: HashMap<Vec<u8>, Vec<u8>> = HashMap::with_capacity(checkpoints.len());
        for checkpoint in checkpoints {
            let key = keys::checkpoint_key(
                &checkpoint.projection,
                &checkpoint.topic,
                checkpoint.partition,
            )?;
            let mut value = checkpoint.next.to_be_bytes().to_vec();
            value.extend_from_slice(checkpoint.writer.unwrap_or_default().as_bytes());
            positions.insert(key, value);
        }

        let mut versions = self
            .apply_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The winning change per row. Several writes to one row in one call are merged
        // here because a fjall batch must not hold one key twice (same sequence number).
        let mut winners: foldhash::HashMap<Vec<u8>, (RowMeta, Bytes)> =
            foldhash::HashMap::with_capacity_and_hasher(writes.len(), Default::default());
        for write in writes {
            let (table, partition, clustering, meta, value) = match write {
                Write::Put {
                    table,
                    partition,
                    clustering,
                    value,
                    version,
                } => (
                    table,
                    partition,
                    clustering,
                    RowMeta {
                        version,
                        deleted: false,
                    },
                    value,
                ),
                Write::Delete {
                    table,
                    partition,
                    clustering,
                    version,
                } => (
                    table,
                    partition,
                    clustering,
                    RowMeta {
                        version,
                        deleted: true,
                    },
                    Bytes::new(),
                ),
            };
            let key = keys::row_key(&table, &partition, &clustering)?;
            // Noted before the write lands: a write that then fails leaves a hash of a
            // row that is not there, which only costs a read.
            let new_row = versions.fresh.first_write(&table, &key);
            let current = match winners
                .get(&key)
                .map(|(meta, _)| meta)
                .or(versions.get(&key))
            {
                Some(meta) => Some(*meta),
                None if new_row => None,
                None => self
                    .rows
                    .get(&key)
                    .map_err(engine)?
                    .map(|raw| keys::decode_row_value(&raw).map(|(meta, _)| meta))
                    .transpose()?,
            };
            if current.is_none_or(|current| meta.replaces(current)) {
                winners.insert(key, (meta, value));
            }
        }

        // No fsync: the log is the source of truth and the checkpoints travel in the
        // same atomic batch, so a crash only makes the projector replay from the last
        // checkpoint that reached the journal.
        let mut batch = self.db.batch();
        let mut written = Vec::with_capacity(winners.len());
        for (key, (meta, value)) in winners {
            batch.insert(
                &self.rows,
                key.as_slice(),
                keys::encode_row_value(meta, &value),
            );
            written.push((key, meta));
        }
        for (key, next) in positions {
            batch.insert(&self.checkpoints, key, next);
        }
        batch.commit().map_err(engine)?;
        versions.extend(written);
        Ok(())
    }

    /// Notes the tables with no row (tombstones count) as fresh.
    fn created(&self, tables: Vec<(String, Vec<u8>)>) -> Result<(), StorageError> {
        let mut versions = self
            .apply_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (table, prefix) in tables {
            if versions.fresh.tables.contains_key(&table) {
                continue;
            }
            if self.rows.prefix(&prefix).next().is_none() {
                versions.fresh.tables.insert(table, Default::default());
            }
        }
        Ok(())
    }

    /// Deletes every row under each prefix, in batches so a big table does not become
    /// one huge batch, then the checkpoints, and forgets the cached versions (a dropped
    /// row is gone, not a tombstone).
    fn drop_rows(
        &self,
        prefixes: &[Vec<u8>],
        checkpoints: Vec<Vec<u8>>,
    ) -> Result<(), StorageError> {
        const DROP_BATCH: usize = 16 * 1024;
        for prefix in prefixes {
            loop {
                let keys: Vec<fjall::UserKey> = self
                    .rows
                    .prefix(prefix)
                    .take(DROP_BATCH)
                    .map(|entry| entry.key().map_err(engine))
                    .collect::<Result<_, _>>()?;
                if keys.is_empty() {
                    break;
                }
                let mut batch = self.db.batch();
                for key in keys {
                    batch.remove(&self.rows, key);
                }
                batch.commit().map_err(engine)?;
            }
        }
        let mut batch = self.db.batch();
        for key in checkpoints {
            batch.remove(&self.checkpoints, key);
        }
        batch.commit().map_err(engine)?;
        self.apply_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        Ok(())
    }

    fn scan(&self, prefix: &[u8], scan: &Scan) -> Result<Vec<Row>, StorageError> {
        if scan.limit == 0 || range_is_empty(&scan.from, &scan.to) {
            return Ok(Vec::new());
        }
        let key = |clustering: &String| [prefix, clustering.as_bytes()].concat();
        let lower = match &scan.from {
            Bound::Included(c) => Bound::Included(key(c)),
            Bound::Excluded(c) => Bound::Excluded(key(c)),
            Bound::Unbounded => Bound::Included(prefix.to_vec()),
        };
        let upper = match &scan.to {
            Bound::Included(c) => Bound::Included(key(c)),
            Bound::Excluded(c) => Bound::Excluded(key(c)),
            Bound::Unbounded => keys::prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded),
        };
        let range = self.rows.range((lower, upper));
        let entries: Box<dyn Iterator<Item = fjall::Guard>> = match scan.order {
            Order::Ascending => Box::new(range),
            Order::Descending => Box::new(range.rev()),
        };
        let mut rows = Vec::new();
        for entry in entries {
            let (key, raw) = entry.into_inner().map_err(engine)?;
            let (meta, value) = keys::decode_row_value(&raw)?;
            if meta.deleted {
                continue;
            }
            rows.push(Row {
                clustering: clustering_of(&key, prefix)?,
                value: Bytes::copy_from_slice(value),
                version: meta.version,
            });
            if rows.len() == scan.limit {
                break;
            }
        }
        Ok(rows)
    }
}

/// True when no clustering key can lie between the bounds (a reversed range would
/// otherwise reach the engine).
fn range_is_empty(from: &Bound<String>, to: &Bound<String>) -> bool {
    match (from, to) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
        _ => false,
    }
}

fn clustering_of(key: &[u8], prefix: &[u8]) -> Result<String, StorageError> {
    key.strip_prefix(prefix)
        .and_then(|rest| String::from_utf8(rest.to_vec()).ok())
        .ok_or_else(|| {
            StorageError::Corrupt("row key does not hold a UTF-8 clustering key".to_owned())
        })
}

#[async_trait]
impl ReadStore for EmbeddedReadStore {
    /// Each apply is one fjall batch.
    fn atomic(&self) -> bool {
        true
    }

    async fn apply(
        &self,
        writes: Vec<Write>,
        checkpoints: Vec<Checkpoint>,
    ) -> Result<(), StorageError> {
        if writes.is_empty() && checkpoints.is_empty() {
            return Ok(());
        }
        let inner = Arc::clone(&self.inner);
        let items = (writes.len() + checkpoints.len()) as u64;
        blocking(items, move || inner.apply(writes, checkpoints)).await
    }

    async fn get(
        &self,
        table: &str,
        partition: &str,
        clustering: &str,
    ) -> Result<Option<Row>, StorageError> {
        let Ok(key) = keys::row_key(table, partition, clustering) else {
            // Too long to have been stored.
            return Ok(None);
        };
        let Some(raw) = self.inner.rows.get(&key).map_err(engine)? else {
            return Ok(None);
        };
        let (meta, value) = keys::decode_row_value(&raw)?;
        Ok((!meta.deleted).then(|| Row {
            clustering: clustering.to_owned(),
            value: Bytes::copy_from_slice(value),
            version: meta.version,
        }))
    }

    async fn scan(
        &self,
        table: &str,
        partition: &str,
        scan: Scan,
    ) -> Result<Vec<Row>, StorageError> {
        let Ok(prefix) = keys::row_prefix(table, partition) else {
            return Ok(Vec::new());
        };
        let inner = Arc::clone(&self.inner);
        let items = u64::try_from(scan.limit).unwrap_or(u64::MAX);
        blocking(items, move || inner.scan(&prefix, &scan)).await
    }

    /// Nothing to create (a table is a key prefix); a table with no row yet is noted as
    /// fresh, so its new rows are written without a version read (see `Fresh`).
    async fn create_tables(&self, tables: &[String]) -> Result<(), StorageError> {
        let tables = tables
            .iter()
            .map(|table| Ok((table.clone(), keys::name_prefix(table)?)))
            .collect::<Result<Vec<_>, StorageError>>()?;
        let inner = Arc::clone(&self.inner);
        blocking(u64::MAX, move || inner.created(tables)).await
    }

    async fn drop_tables(
        &self,
        tables: &[String],
        checkpoints: &[(String, String, u32)],
    ) -> Result<(), StorageError> {
        let prefixes = tables
            .iter()
            .map(|table| keys::name_prefix(table))
            .collect::<Result<Vec<_>, _>>()?;
        let checkpoints = checkpoints
            .iter()
            .map(|(projection, topic, partition)| {
                keys::checkpoint_key(projection, topic, *partition)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let inner = Arc::clone(&self.inner);
        blocking(u64::MAX, move || inner.drop_rows(&prefixes, checkpoints)).await
    }

    async fn checkpoint(
        &self,
        projection: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<Offset>, StorageError> {
        let Ok(key) = keys::checkpoint_key(projection, topic, partition) else {
            return Ok(None);
        };
        self.inner
            .checkpoints
            .get(key)
            .map_err(engine)?
            .map(|raw| keys::decode_u64(raw.get(..8).unwrap_or(&raw), "checkpoint"))
            .transpose()
    }

    async fn checkpoint_writer(
        &self,
        projection: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<String>, StorageError> {
        let Ok(key) = keys::checkpoint_key(projection, topic, partition) else {
            return Ok(None);
        };
        let Some(raw) = self.inner.checkpoints.get(key).map_err(engine)? else {
            return Ok(None);
        };
        let writer = raw.get(8..).unwrap_or_default();
        if writer.is_empty() {
            return Ok(None);
        }
        String::from_utf8(writer.to_vec())
            .map(Some)
            .map_err(|_| StorageError::Corrupt("a checkpoint's writer is not UTF-8".into()))
    }
}
