use crate::error::ProjectionError;
use async_trait::async_trait;
use bytes::Bytes;
use read_model::Model;
use schemas::events::{Envelope, Topic};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::any::Any;
use std::sync::{Arc, OnceLock};
use storage::{ReadStore, Row, Stamp, Write};

/// Where an event was read from; telemetry rows are versioned by offset.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    pub topic: Topic,
    pub partition: u32,
    pub offset: u64,
}

/// A read model builder: folds the events of its topics into its tables.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    fn model(&self) -> Model;

    fn name(&self) -> &'static str {
        self.model().name
    }

    fn topics(&self) -> &'static [Topic] {
        self.model().topics
    }

    /// Stages the writes one event causes. The row whose version says the event was
    /// applied (the one a replay reads to skip it) is staged with [`Staged::guard`], the
    /// others with [`Staged::put`] and [`Staged::delete`]: on a store without atomic
    /// batches the projector lands the guards only after every other row of the batch,
    /// so a replay from the last checkpoint redoes every event whose guard is missing.
    async fn project(
        &self,
        envelope: &Envelope,
        source: Source,
        staged: &mut Staged<'_>,
    ) -> Result<(), ProjectionError>;
}

/// A batch's writes in the two phases a store without atomic batches lands them in.
#[derive(Debug, Default)]
pub struct Writes {
    pub rows: Vec<Write>,
    /// The rows that say an event was applied; they land after every row of `rows`.
    pub guards: Vec<Write>,
}

/// A row value staged in a batch: kept as the projection made it until the batch is
/// written, so a later event of the batch reads it back without decoding it, and a row
/// several events of the batch change is encoded once, as it ends up.
#[derive(Clone)]
pub struct Staging(Arc<dyn StagedValue>);

impl Staging {
    /// `value`, to be put in one or more rows (encoded once for all of them).
    pub fn of<T: Serialize + Send + Sync + 'static>(value: T) -> Staging {
        Staging(Arc::new(Lazy {
            value,
            encoded: OnceLock::new(),
        }))
    }
}

trait StagedValue: Send + Sync {
    fn encoded(&self) -> Bytes;
    fn as_any(&self) -> &dyn Any;
}

struct Lazy<T> {
    value: T,
    encoded: OnceLock<Bytes>,
}

impl<T: Serialize + Send + Sync + 'static> StagedValue for Lazy<T> {
    fn encoded(&self) -> Bytes {
        self.encoded
            .get_or_init(|| {
                // Views are plain data; serializing them cannot fail.
                Bytes::from(serde_json::to_vec(&self.value).unwrap_or_default())
            })
            .clone()
    }

    fn as_any(&self) -> &dyn Any {
        &self.value
    }
}

/// A row's key in a batch: table, partition, clustering.
type RowKey = (&'static str, String, String);

/// What a batch knows of a row: as the store had it, or as the batch changes it.
enum Known {
    Stored(Option<Row>),
    Staged(Change),
}

/// The winning change of a batch to one row (as the store would pick it, see
/// [`Change::replaces`]).
struct Change {
    /// `None`: a delete.
    value: Option<Staging>,
    version: u64,
    /// Whether it is the guard of an event (see [`Projection::project`]).
    guard: bool,
    /// Its place among the batch's changed rows, so writes keep the order first staged.
    order: usize,
}

impl Change {
    fn stamp(&self) -> Stamp {
        Stamp {
            version: self.version,
            deleted: self.value.is_none(),
        }
    }

    /// The store's own rule ([`Stamp::replaces`]), so merging changes here lands what
    /// the store would keep.
    fn replaces(&self, current: &Change) -> bool {
        self.stamp().replaces(current.stamp())
    }

    fn row(&self, clustering: &str) -> Option<Row> {
        self.value.as_ref().map(|value| Row {
            clustering: clustering.to_owned(),
            value: value.0.encoded(),
            version: self.version,
        })
    }
}

/// The writes of one batch, and the rows as they will be once it is applied: a
/// projection that reads a row it wrote earlier in the batch sees its own write.
pub struct Staged<'a> {
    store: &'a dyn ReadStore,
    rows: foldhash::HashMap<RowKey, Known>,
    /// How many rows the batch changes.
    changed: usize,
}

impl<'a> Staged<'a> {
    pub fn new(store: &'a dyn ReadStore) -> Staged<'a> {
        Staged {
            store,
            rows: foldhash::HashMap::default(),
            changed: 0,
        }
    }

    /// The batch's writes, each changed row once as it ends up: the rows, then the
    /// guards that vouch for them.
    pub fn into_writes(self) -> Writes {
        let mut changes: Vec<(RowKey, Change)> = self
            .rows
            .into_iter()
            .filter_map(|(key, known)| match known {
                Known::Staged(change) => Some((key, change)),
                Known::Stored(_) => None,
            })
            .collect();
        changes.sort_unstable_by_key(|(_, change)| change.order);
        let mut writes = Writes::default();
        for ((table, partition, clustering), change) in changes {
            let phase = if change.guard {
                &mut writes.guards
            } else {
                &mut writes.rows
            };
            phase.push(match change.value {
                Some(value) => Write::Put {
                    table: table.to_owned(),
                    partition,
                    clustering,
                    value: value.0.encoded(),
                    version: change.version,
                },
                None => Write::Delete {
                    table: table.to_owned(),
                    partition,
                    clustering,
                    version: change.version,
                },
            });
        }
        writes
    }

    pub async fn get(
        &mut self,
        table: &'static str,
        partition: &str,
        clustering: &str,
    ) -> Result<Option<Row>, ProjectionError> {
        self.row((table, partition.to_owned(), clustering.to_owned()))
            .await
    }

    /// The row at `key`: as the batch has it, else read once from the store.
    async fn row(&mut self, key: RowKey) -> Result<Option<Row>, ProjectionError> {
        match self.rows.get(&key) {
            Some(Known::Stored(row)) => return Ok(row.clone()),
            Some(Known::Staged(change)) => return Ok(change.row(&key.2)),
            None => {}
        }
        let row = self.store.get(key.0, &key.1, &key.2).await?;
        self.rows.insert(key, Known::Stored(row.clone()));
        Ok(row)
    }

    /// A row decoded as `T`, with its version. A row the batch staged as a `T` is read
    /// back as it was staged.
    pub async fn view<T: DeserializeOwned + Clone + 'static>(
        &mut self,
        table: &'static str,
        partition: &str,
        clustering: &str,
    ) -> Result<Option<(T, u64)>, ProjectionError> {
        let key = (table, partition.to_owned(), clustering.to_owned());
        if let Some(Known::Staged(change)) = self.rows.get(&key) {
            let Some(value) = &change.value else {
                return Ok(None);
            };
            if let Some(view) = value.0.as_any().downcast_ref::<T>() {
                return Ok(Some((view.clone(), change.version)));
            }
        }
        let Some(row) = self.row(key).await? else {
            return Ok(None);
        };
        let view = serde_json::from_slice(&row.value).map_err(|e| ProjectionError::BadRow {
            table,
            key: format!("{partition}/{clustering}"),
            reason: e.to_string(),
        })?;
        Ok(Some((view, row.version)))
    }

    pub fn put<T: Serialize + Send + Sync + 'static>(
        &mut self,
        table: &'static str,
        partition: &str,
        clustering: &str,
        value: T,
        version: u64,
    ) {
        self.put_staging(table, partition, clustering, &Staging::of(value), version);
    }

    /// Puts a value staged once for several rows.
    pub fn put_staging(
        &mut self,
        table: &'static str,
        partition: &str,
        clustering: &str,
        value: &Staging,
        version: u64,
    ) {
        self.stage(
            table,
            partition,
            clustering,
            Some(value.clone()),
            version,
            false,
        );
    }

    /// Puts the event's guard row: the one a replay reads to tell the event was applied.
    pub fn guard<T: Serialize + Send + Sync + 'static>(
        &mut self,
        table: &'static str,
        partition: &str,
        clustering: &str,
        value: T,
        version: u64,
    ) {
        let value = Some(Staging::of(value));
        self.stage(table, partition, clustering, value, version, true);
    }

    pub fn delete(&mut self, table: &'static str, partition: &str, clustering: &str, version: u64) {
        self.stage(table, partition, clustering, None, version, false);
    }

    fn stage(
        &mut self,
        table: &'static str,
        partition: &str,
        clustering: &str,
        value: Option<Staging>,
        version: u64,
        guard: bool,
    ) {
        let key = (table, partition.to_owned(), clustering.to_owned());
        let mut change = Change {
            value,
            version,
            guard,
            order: self.changed,
        };
        match self.rows.get_mut(&key) {
            Some(Known::Staged(current)) => {
                if change.replaces(current) {
                    change.order = current.order;
                    *current = change;
                }
            }
            Some(known) => {
                *known = Known::Staged(change);
                self.changed += 1;
            }
            None => {
                self.rows.insert(key, Known::Staged(change));
                self.changed += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage_embedded::EmbeddedReadStore;

    #[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
    struct View {
        n: u32,
    }

    fn summary(writes: &[Write]) -> Vec<(String, String, Option<String>, u64)> {
        writes
            .iter()
            .map(|write| match write {
                Write::Put {
                    partition,
                    clustering,
                    value,
                    version,
                    ..
                } => (
                    partition.clone(),
                    clustering.clone(),
                    Some(String::from_utf8_lossy(value).into_owned()),
                    *version,
                ),
                Write::Delete {
                    partition,
                    clustering,
                    version,
                    ..
                } => (partition.clone(), clustering.clone(), None, *version),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_batch_writes_each_row_once_as_the_store_would_keep_it_and_reads_its_own_values() {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedReadStore::open(dir.path()).expect("store");
        let mut staged = Staged::new(&store);
        assert_eq!(staged.view::<View>("t", "a", "").await.expect("read"), None);

        // Three changes to one guard row: the highest version is the one read and written.
        staged.guard("t", "a", "", View { n: 1 }, 1);
        staged.guard("t", "a", "", View { n: 2 }, 2);
        staged.guard("t", "a", "", View { n: 0 }, 1); // late and older: loses
        let read = staged.view::<View>("t", "a", "").await.expect("read");
        assert_eq!(read, Some((View { n: 2 }, 2)));

        // A put then a delete of the same version: the delete wins, and reads as absent.
        staged.put("u", "x", "1", View { n: 7 }, 3);
        staged.delete("u", "x", "1", 3);
        assert_eq!(staged.get("u", "x", "1").await.expect("read"), None);
        // One value in two rows; a put replaces a put of the same version.
        let shared = Staging::of(View { n: 9 });
        staged.put("u", "y", "1", View { n: 8 }, 4);
        staged.put_staging("u", "y", "1", &shared, 4);
        staged.put_staging("u", "z", "1", &shared, 4);

        let writes = staged.into_writes();
        let row = |p: &str, v: Option<&str>, version| {
            (p.to_owned(), "1".to_owned(), v.map(str::to_owned), version)
        };
        assert_eq!(
            summary(&writes.rows),
            vec![
                row("x", None, 3),
                row("y", Some(r#"{"n":9}"#), 4),
                row("z", Some(r#"{"n":9}"#), 4),
            ],
            "each row once, in the order first staged"
        );
        assert_eq!(
            summary(&writes.guards),
            vec![(
                "a".to_owned(),
                String::new(),
                Some(r#"{"n":2}"#.to_owned()),
                2
            )]
        );
    }
}
