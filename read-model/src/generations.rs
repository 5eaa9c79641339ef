//! Generations of a read model, for rebuilds without downtime (blue/green).
//!
//! A model's tables and checkpoints exist in generations: generation 0 under their plain
//! names, generation `n` under `<name>_g<n>` ([`qualified`]). One row per model in
//! `model_generations` ([`Generations`]) says which generation readers read (`current`)
//! and which one a rebuild is writing (`building`). A rebuild writes `building` from
//! offset zero beside the current one, then switches `current` over with one write of
//! that row, and drops the old generation once no reader can still be reading it.
//!
//! Nothing that builds or reads a model knows its generation: projections and queries
//! keep naming their tables as [`crate::tables`] does, and a [`Generational`] store in
//! front of the real one renames them — to one fixed generation for a projector, to the
//! current generation of each model ([`Current`]) for everything that reads.

use crate::Model;
use crate::models;
use crate::tables::{GENERATIONS, MODEL_GENERATIONS};
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use storage::{Checkpoint, Offset, Order, ReadStore, Row, Scan, StorageError, Write};
use tokio::sync::watch;

/// A model's generations, as its `model_generations` row holds them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generations {
    /// The generation readers read.
    pub current: u32,
    /// The generation a rebuild is writing, if one is.
    #[serde(default)]
    pub building: Option<u32>,
    /// Generations replaced or abandoned whose tables may still hold rows: the next
    /// rebuild drops them if the one that left them could not.
    #[serde(default)]
    pub retired: Vec<u32>,
}

impl Generations {
    /// The generation a new rebuild writes: above every one used before.
    pub fn next(&self) -> u32 {
        let used = self.retired.iter().chain(&self.building).copied();
        used.fold(self.current, u32::max) + 1
    }
}

/// The name of a table, or of a model's checkpoints, in `generation`.
pub fn qualified(name: &str, generation: u32) -> Cow<'_, str> {
    if generation == 0 {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!("{name}_g{generation}"))
    }
}

/// The tables of `model` in `generation`.
pub fn tables_of(model: Model, generation: u32) -> Vec<String> {
    model
        .tables
        .iter()
        .map(|table| qualified(table, generation).into_owned())
        .collect()
}

/// The model's row and its version (0 when none was written: generation 0, no rebuild).
pub async fn read(store: &dyn ReadStore, model: Model) -> Result<(Generations, u64), StorageError> {
    let Some(row) = store
        .get(MODEL_GENERATIONS, GENERATIONS, model.name)
        .await?
    else {
        return Ok((Generations::default(), 0));
    };
    let generations = serde_json::from_slice(&row.value)
        .map_err(|e| StorageError::Corrupt(format!("the generations of {}: {e}", model.name)))?;
    Ok((generations, row.version))
}

/// Writes the model's row as version `version` (one above the one read): the higher
/// version wins, so the switch to a new generation is this one write.
pub async fn write(
    store: &dyn ReadStore,
    model: Model,
    generations: &Generations,
    version: u64,
) -> Result<(), StorageError> {
    let value = serde_json::to_vec(generations)
        .map_err(|e| StorageError::Invalid(format!("generations: {e}")))?;
    let put = Write::Put {
        table: MODEL_GENERATIONS.to_owned(),
        partition: GENERATIONS.to_owned(),
        clustering: model.name.to_owned(),
        value: Bytes::from(value),
        version,
    };
    store.apply(vec![put], Vec::new()).await
}

/// The generation of each model that this process reads, shared by its query side, its
/// live feed and its projector host; refreshed from the store ([`Current::follow`]) and
/// set at once by a rebuild in this process. `changed` wakes projector hosts when a
/// model's row changed here.
#[derive(Clone, Debug)]
pub struct Current {
    generations: Arc<[AtomicU32; models::ALL.len()]>,
    changed: watch::Sender<u64>,
}

impl Default for Current {
    fn default() -> Self {
        Current::new()
    }
}

/// How often a process learns of a switch made by another process. A rebuild keeps the
/// generation it replaced for [`Current::GRACE`] after the switch, several of these.
pub const REFRESH: Duration = Duration::from_secs(1);

fn index(model: &Model) -> Option<usize> {
    models::ALL.iter().position(|m| m.name == model.name)
}

impl Current {
    /// How long a replaced generation stays readable after the switch: readers in other
    /// processes learn of the switch within [`REFRESH`], and a read that started before
    /// it (a wait for a consistency token) ends within the 2 s a wait may take.
    pub const GRACE: Duration = Duration::from_secs(5);

    pub fn new() -> Current {
        Current {
            generations: Arc::new(std::array::from_fn(|_| AtomicU32::new(0))),
            changed: watch::Sender::new(0),
        }
    }

    pub fn of(&self, model: &Model) -> u32 {
        index(model).map_or(0, |i| self.generations[i].load(Ordering::Acquire))
    }

    /// Moves the model on to `generation`; never back, since a model's current
    /// generation only grows (a reader that read the row before a switch must not undo
    /// it).
    pub fn set(&self, model: &Model, generation: u32) {
        if let Some(i) = index(model) {
            self.generations[i].fetch_max(generation, Ordering::AcqRel);
        }
        self.touch();
    }

    /// A model's row changed (a rebuild began or switched): wakes the projector hosts.
    pub fn touch(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Reads every model's row once (one scan) and takes its current generation.
    pub async fn refresh(&self, store: &dyn ReadStore) -> Result<(), StorageError> {
        let scan = Scan {
            from: Bound::Unbounded,
            to: Bound::Unbounded,
            order: Order::Ascending,
            limit: models::ALL.len() * 2,
        };
        for row in store.scan(MODEL_GENERATIONS, GENERATIONS, scan).await? {
            let Some(model) = models::named(&row.clustering) else {
                continue;
            };
            let Ok(generations) = serde_json::from_slice::<Generations>(&row.value) else {
                continue;
            };
            if let Some(i) = index(&model) {
                let before = self.generations[i].fetch_max(generations.current, Ordering::AcqRel);
                if before < generations.current {
                    tracing::info!(
                        model = model.name,
                        generation = generations.current,
                        "reading another generation of the read model"
                    );
                    self.touch();
                }
            }
        }
        Ok(())
    }

    /// Refreshes every [`REFRESH`] until `stop` turns true: how a process learns of a
    /// switch made elsewhere.
    pub async fn follow(self, store: Arc<dyn ReadStore>, mut stop: watch::Receiver<bool>) {
        loop {
            if let Err(error) = self.refresh(store.as_ref()).await {
                tracing::warn!(%error, "cannot read the read models' generations");
            }
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
        }
    }
}

/// Which generation a [`Generational`] store maps each model's names to.
#[derive(Clone, Debug)]
enum Chosen {
    /// One model's tables in one generation (a projector's view); other tables as named.
    Fixed(Model, u32),
    /// Every model's current generation (a reader's view).
    Current(Current),
}

/// A read store in front of another that renames each model's tables and checkpoints
/// to a generation of them.
#[derive(Clone)]
pub struct Generational {
    inner: Arc<dyn ReadStore>,
    chosen: Chosen,
}

impl Generational {
    /// What readers read: each model in its current generation.
    pub fn current(inner: Arc<dyn ReadStore>, current: Current) -> Generational {
        Generational {
            inner,
            chosen: Chosen::Current(current),
        }
    }

    /// What a projector of `model` in `generation` writes.
    pub fn fixed(inner: Arc<dyn ReadStore>, model: Model, generation: u32) -> Generational {
        Generational {
            inner,
            chosen: Chosen::Fixed(model, generation),
        }
    }

    fn generation(&self, model: &Model) -> u32 {
        match &self.chosen {
            Chosen::Fixed(fixed, generation) if fixed.name == model.name => *generation,
            Chosen::Fixed(..) => 0,
            Chosen::Current(current) => current.of(model),
        }
    }

    fn table<'a>(&self, table: &'a str) -> Cow<'a, str> {
        match models::ALL.iter().find(|m| m.tables.contains(&table)) {
            Some(model) => qualified(table, self.generation(model)),
            None => Cow::Borrowed(table),
        }
    }

    fn projection<'a>(&self, projection: &'a str) -> Cow<'a, str> {
        match models::named(projection) {
            Some(model) => qualified(projection, self.generation(&model)),
            None => Cow::Borrowed(projection),
        }
    }
}

/// Renames `name` in place when `rename` gives it another name (no copy otherwise).
fn rename_in_place(name: &mut String, rename: impl Fn(&str) -> Cow<'_, str>) {
    if let Cow::Owned(renamed) = rename(name) {
        *name = renamed;
    }
}

#[async_trait]
impl ReadStore for Generational {
    async fn apply(
        &self,
        writes: Vec<Write>,
        checkpoints: Vec<Checkpoint>,
    ) -> Result<(), StorageError> {
        let mut writes = writes;
        for write in &mut writes {
            rename_in_place(write.table_mut(), |t| self.table(t));
        }
        let mut checkpoints = checkpoints;
        for checkpoint in &mut checkpoints {
            rename_in_place(&mut checkpoint.projection, |p| self.projection(p));
        }
        self.inner.apply(writes, checkpoints).await
    }

    fn atomic(&self) -> bool {
        self.inner.atomic()
    }

    async fn get(
        &self,
        table: &str,
        partition: &str,
        clustering: &str,
    ) -> Result<Option<Row>, StorageError> {
        self.inner
            .get(&self.table(table), partition, clustering)
            .await
    }

    async fn scan(
        &self,
        table: &str,
        partition: &str,
        scan: Scan,
    ) -> Result<Vec<Row>, StorageError> {
        self.inner.scan(&self.table(table), partition, scan).await
    }

    async fn checkpoint(
        &self,
        projection: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<Offset>, StorageError> {
        self.inner
            .checkpoint(&self.projection(projection), topic, partition)
            .await
    }

    async fn checkpoint_writer(
        &self,
        projection: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<String>, StorageError> {
        self.inner
            .checkpoint_writer(&self.projection(projection), topic, partition)
            .await
    }

    async fn create_tables(&self, tables: &[String]) -> Result<(), StorageError> {
        let tables: Vec<String> = tables.iter().map(|t| self.table(t).into_owned()).collect();
        self.inner.create_tables(&tables).await
    }

    async fn drop_tables(
        &self,
        tables: &[String],
        checkpoints: &[(String, String, u32)],
    ) -> Result<(), StorageError> {
        let tables: Vec<String> = tables.iter().map(|t| self.table(t).into_owned()).collect();
        let checkpoints: Vec<(String, String, u32)> = checkpoints
            .iter()
            .map(|(p, t, n)| (self.projection(p).into_owned(), t.clone(), *n))
            .collect();
        self.inner.drop_tables(&tables, &checkpoints).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::{DELIVERIES, DRONES};

    #[test]
    fn generation_zero_keeps_the_plain_names_and_the_next_is_above_every_one_used() {
        assert_eq!(qualified(DELIVERIES, 0), DELIVERIES);
        assert_eq!(qualified(DELIVERIES, 3), "deliveries_g3");
        let used = Generations {
            current: 2,
            building: Some(5),
            retired: vec![7, 1],
        };
        assert_eq!(used.next(), 8);
        assert_eq!(Generations::default().next(), 1);
    }

    #[test]
    fn a_fixed_view_renames_its_model_only_and_a_current_one_follows_each_model() {
        let store: Arc<dyn ReadStore> = Arc::new(NoStore);
        let fixed = Generational::fixed(store.clone(), models::DELIVERIES, 4);
        assert_eq!(fixed.table(DELIVERIES), "deliveries_g4");
        assert_eq!(fixed.table(DRONES), DRONES);
        assert_eq!(fixed.projection("deliveries"), "deliveries_g4");
        assert_eq!(fixed.table(MODEL_GENERATIONS), MODEL_GENERATIONS);

        let current = Current::new();
        let reading = Generational::current(store, current.clone());
        assert_eq!(reading.table(DRONES), DRONES);
        current.set(&models::DRONES, 2);
        assert_eq!(reading.table(DRONES), "drones_g2");
        assert_eq!(reading.projection("drones"), "drones_g2");
        assert_eq!(reading.table(DELIVERIES), DELIVERIES);
    }

    struct NoStore;

    #[async_trait]
    impl ReadStore for NoStore {
        async fn apply(&self, _: Vec<Write>, _: Vec<Checkpoint>) -> Result<(), StorageError> {
            Ok(())
        }
        async fn get(&self, _: &str, _: &str, _: &str) -> Result<Option<Row>, StorageError> {
            Ok(None)
        }
        async fn scan(&self, _: &str, _: &str, _: Scan) -> Result<Vec<Row>, StorageError> {
            Ok(Vec::new())
        }
        async fn checkpoint(&self, _: &str, _: &str, _: u32) -> Result<Option<u64>, StorageError> {
            Ok(None)
        }
        async fn checkpoint_writer(
            &self,
            _: &str,
            _: &str,
            _: u32,
        ) -> Result<Option<String>, StorageError> {
            Ok(None)
        }
        async fn drop_tables(
            &self,
            _: &[String],
            _: &[(String, String, u32)],
        ) -> Result<(), StorageError> {
            Ok(())
        }
    }
}
