use crate::error::ProjectionError;
use async_trait::async_trait;
use bytes::Bytes;
use read_model::Model;
use schemas::events::{Envelope, Topic};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use storage::{ReadStore, Row, Write};

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

/// The writes of one batch, and the rows as they will be once it is applied: a
/// projection that reads a row it wrote earlier in the batch sees its own write.
pub struct Staged<'a> {
    store: &'a dyn ReadStore,
    writes: Vec<Write>,
    guards: Vec<Write>,
    rows: HashMap<(&'static str, String, String), Option<Row>>,
}

impl<'a> Staged<'a> {
    pub fn new(store: &'a dyn ReadStore) -> Staged<'a> {
        Staged {
            store,
            writes: Vec::new(),
            guards: Vec::new(),
            rows: HashMap::new(),
        }
    }

    /// The batch's writes: the rows, then the guards that vouch for them.
    pub fn into_writes(self) -> Writes {
        Writes {
            rows: self.writes,
            guards: self.guards,
        }
    }

    pub async fn get(
        &mut self,
        table: &'static str,
        partition: &str,
        clustering: &str,
    ) -> Result<Option<Row>, ProjectionError> {
        let key = (table, partition.to_string(), clustering.to_string());
        if let Some(row) = self.rows.get(&key) {
            return Ok(row.clone());
        }
        let row = self.store.get(table, partition, clustering).await?;
        self.rows.insert(key, row.clone());
        Ok(row)
    }

    /// A row decoded as `T`, with its version.
    pub async fn view<T: DeserializeOwned>(
        &mut self,
        table: &'static str,
        partition: &str,
        clustering: &str,
    ) -> Result<Option<(T, u64)>, ProjectionError> {
        let Some(row) = self.get(table, partition, clustering).await? else {
            return Ok(None);
        };
        let view = serde_json::from_slice(&row.value).map_err(|e| ProjectionError::BadRow {
            table,
            key: format!("{partition}/{clustering}"),
            reason: e.to_string(),
        })?;
        Ok(Some((view, row.version)))
    }

    pub fn put(
        &mut self,
        table: &'static str,
        partition: &str,
        clustering: &str,
        value: &impl Serialize,
        version: u64,
    ) {
        let write = self.staged_put(table, partition, clustering, value, version);
        self.writes.push(write);
    }

    /// Puts the event's guard row: the one a replay reads to tell the event was applied.
    pub fn guard(
        &mut self,
        table: &'static str,
        partition: &str,
        clustering: &str,
        value: &impl Serialize,
        version: u64,
    ) {
        let write = self.staged_put(table, partition, clustering, value, version);
        self.guards.push(write);
    }

    fn staged_put(
        &mut self,
        table: &'static str,
        partition: &str,
        clustering: &str,
        value: &impl Serialize,
        version: u64,
    ) -> Write {
        // Views are plain data; serializing them cannot fail.
        let value = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
        self.rows.insert(
            (table, partition.to_string(), clustering.to_string()),
            Some(Row {
                clustering: clustering.to_string(),
                value: value.clone(),
                version,
            }),
        );
        Write::Put {
            table: table.to_string(),
            partition: partition.to_string(),
            clustering: clustering.to_string(),
            value,
            version,
        }
    }

    pub fn delete(&mut self, table: &'static str, partition: &str, clustering: &str, version: u64) {
        self.rows
            .insert((table, partition.to_string(), clustering.to_string()), None);
        self.writes.push(Write::Delete {
            table: table.to_string(),
            partition: partition.to_string(),
            clustering: clustering.to_string(),
            version,
        });
    }
}
