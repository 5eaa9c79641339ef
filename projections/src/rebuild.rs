//! Rebuilds without downtime (blue/green) and the host that runs projectors through them.
//!
//! [`rebuild`] marks a new generation of one read model as `building` in its
//! `model_generations` row, waits until that generation, written from offset zero, has
//! reached the log's end as it was at the start and every position the current
//! generation had applied, switches `current` over with one write, and drops the old
//! generation after [`Current::GRACE`]. The queries go on reading the current generation
//! the whole time (see [`read_model::generations`]).
//!
//! A [`Host`] runs a process's projectors: each model's current generation, and the one
//! being built when a rebuild is under way; it follows the rows (woken at once by a
//! rebuild in the same process, else every [`generations::REFRESH`]), so a projector
//! process on Kafka takes part in a rebuild started elsewhere and moves on to the new
//! generation at the switch.

use crate::Projection;
use crate::projector::{CaughtUp, Projector};
use read_model::generations::{self, Current, Generations, qualified};
use read_model::{Model, models};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{EventLog, Offset, ReadStore, StorageError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Members of each group a rebuilding generation runs: one per core.
fn rebuild_members() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How often a rebuild looks at how far the new generation got.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// The running tasks of one generation of one model, and the switch that stops them.
struct Running {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Started as the generation being rebuilt (a member per core).
    rebuilding: bool,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Starts `projection` in `generation`; a generation being rebuilt runs a member per
/// core (it has the whole log to read, and the one it replaces serves meanwhile).
async fn start(
    projector: &Projector,
    projection: &Arc<dyn Projection>,
    generation: u32,
    rebuilding: bool,
) -> Result<(Running, CaughtUp), StorageError> {
    let (stop, stopped) = watch::channel(false);
    let mut projector = projector.for_generation(projection.model(), generation);
    if rebuilding {
        projector = projector.members(rebuild_members());
    }
    let (tasks, caught_up) = projector
        .spawn(std::slice::from_ref(projection), stopped)
        .await?;
    Ok((
        Running {
            stop,
            tasks,
            rebuilding,
        },
        caught_up,
    ))
}

/// Runs a process's projectors, each model in the generations its row names.
pub struct Host {
    projector: Projector,
    projections: Vec<Arc<dyn Projection>>,
    current: Current,
}

impl Host {
    /// `projector` on the real store (not a renaming view); `current` is the process's,
    /// which the host keeps up to date with what it runs.
    pub fn new(
        projector: Projector,
        projections: Vec<Arc<dyn Projection>>,
        current: Current,
    ) -> Host {
        Host {
            projector,
            projections,
            current,
        }
    }

    /// Starts every projection in its current generation (and the one being built, if
    /// any) and then follows their rows until `shutdown`. The readiness it answers is
    /// the first current generations' catch-up.
    pub async fn spawn(
        self,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(JoinHandle<()>, CaughtUp), StorageError> {
        let store = self.projector.store().clone();
        let mut running: BTreeMap<(&'static str, u32), Running> = BTreeMap::new();
        let mut first = Vec::new();
        for projection in &self.projections {
            let model = projection.model();
            let (rows, _) = generations::read(store.as_ref(), model).await?;
            self.current.set(&model, rows.current);
            let (run, caught_up) = start(&self.projector, projection, rows.current, false).await?;
            running.insert((model.name, rows.current), run);
            first.push(caught_up);
        }
        let mut changed = self.current.subscribe();
        let task = tokio::spawn(async move {
            loop {
                if let Err(error) = self.follow(store.as_ref(), &mut running).await {
                    tracing::warn!(%error, "cannot follow the read models' generations");
                }
                tokio::select! {
                    _ = changed.changed() => {}
                    _ = tokio::time::sleep(generations::REFRESH) => {}
                    _ = shutdown.wait_for(|stopped| *stopped) => break,
                }
            }
            for (_, run) in running {
                run.stop().await;
            }
        });
        Ok((task, CaughtUp::of(first)))
    }

    /// Starts the generations the rows name and stops the others. A rebuilt generation
    /// that now serves is restarted with one member, as the serving ones run, so that it
    /// takes no more of the cores than they did.
    async fn follow(
        &self,
        store: &dyn ReadStore,
        running: &mut BTreeMap<(&'static str, u32), Running>,
    ) -> Result<(), StorageError> {
        for projection in &self.projections {
            let model = projection.model();
            let (rows, _) = generations::read(store, model).await?;
            if rows.current < self.current.of(&model) {
                continue; // read before a switch this process already knows of
            }
            let wanted: Vec<u32> = std::iter::once(rows.current).chain(rows.building).collect();
            let stale: Vec<(&'static str, u32)> = running
                .iter()
                .filter(|((name, generation), run)| {
                    *name == model.name
                        && (!wanted.contains(generation)
                            || run.rebuilding != (rows.building == Some(*generation)))
                })
                .map(|(key, _)| *key)
                .collect();
            for key in stale {
                if let Some(run) = running.remove(&key) {
                    tracing::info!(model = model.name, generation = key.1, "projector stopped");
                    run.stop().await;
                }
            }
            for generation in wanted {
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    running.entry((model.name, generation))
                {
                    let rebuilding = rows.building == Some(generation);
                    let (run, _) =
                        start(&self.projector, projection, generation, rebuilding).await?;
                    tracing::info!(model = model.name, generation, "projector started");
                    slot.insert(run);
                }
            }
            if self.current.of(&model) < rows.current {
                self.current.set(&model, rows.current);
            }
        }
        Ok(())
    }
}

/// Where a rebuild stands, for its progress bar.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RebuildProgress {
    pub generation: u32,
    /// Records the new generation has passed, over every partition of its topics.
    pub applied: u64,
    /// Records it must pass before the switch: the log's end as it was at the start, or
    /// the current generation's position where that is further on.
    pub total: u64,
    /// The new generation serves; the old one is dropped after the grace.
    pub switched: bool,
}

/// What a finished rebuild did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rebuilt {
    pub generation: u32,
    pub replaced: u32,
    pub records: u64,
    /// From the start to the switch.
    pub took: Duration,
}

/// How [`rebuild`] runs.
pub struct RebuildOptions {
    /// Run the new generation's projector here, until the old generation is dropped
    /// (`None`: a [`Host`] in this process runs it, as in a running server).
    pub build_here: Option<Projector>,
    /// How long the replaced generation stays after the switch before it is dropped.
    pub grace: Duration,
}

/// Rebuilds `model` into a new generation while the current one serves, switches over
/// and drops the old one. `progress` hears where it stands after every look.
pub async fn rebuild(
    log: &dyn EventLog,
    store: &Arc<dyn ReadStore>,
    model: Model,
    current: &Current,
    options: RebuildOptions,
    mut progress: impl FnMut(RebuildProgress) + Send,
) -> Result<Rebuilt, StorageError> {
    let started = Instant::now();
    let (rows, version) = generations::read(store.as_ref(), model).await?;
    let generation = rows.next();
    let replaced = rows.current;
    // A clean slate: what an earlier rebuild left, and anything under the new names.
    for leftover in rows
        .building
        .iter()
        .chain(&rows.retired)
        .chain([&generation])
    {
        drop_generation(log, store.as_ref(), model, *leftover).await?;
    }
    store
        .create_tables(&generations::tables_of(model, generation))
        .await?;
    let building = Generations {
        current: replaced,
        building: Some(generation),
        retired: Vec::new(),
    };
    generations::write(store.as_ref(), model, &building, version + 1).await?;
    current.touch();
    tracing::info!(model = model.name, generation, "rebuild started");

    let here = match &options.build_here {
        Some(projector) => {
            let projection = crate::all()
                .into_iter()
                .find(|p| p.name() == model.name)
                .ok_or_else(|| StorageError::Invalid(format!("no projection {}", model.name)))?;
            Some(start(projector, &projection, generation, true).await?.0)
        }
        None => None,
    };
    let outcome = watch_until_ready(log, store.as_ref(), model, generation, &mut progress).await;
    let records = match outcome {
        Ok(records) => records,
        Err(error) => {
            if let Some(run) = here {
                run.stop().await;
            }
            return Err(error);
        }
    };

    // The switch: one write of the row, if no other rebuild took the model over.
    let (rows, version) = generations::read(store.as_ref(), model).await?;
    if rows.building != Some(generation) {
        if let Some(run) = here {
            run.stop().await;
        }
        return Err(superseded(model, generation));
    }
    let switched = Generations {
        current: generation,
        building: None,
        retired: vec![replaced],
    };
    generations::write(store.as_ref(), model, &switched, version + 1).await?;
    current.set(&model, generation);
    let took = started.elapsed();
    progress(RebuildProgress {
        generation,
        applied: records,
        total: records,
        switched: true,
    });
    tracing::info!(
        model = model.name,
        generation,
        replaced,
        records,
        took_ms = took.as_millis() as u64,
        "switched to the rebuilt read model"
    );

    // Readers elsewhere learn of the switch within a refresh, and the hosts there take
    // the new generation over; then the old one goes.
    tokio::time::sleep(options.grace).await;
    if let Some(run) = here {
        run.stop().await;
    }
    drop_generation(log, store.as_ref(), model, replaced).await?;
    let (mut rows, version) = generations::read(store.as_ref(), model).await?;
    rows.retired.retain(|g| *g != replaced);
    generations::write(store.as_ref(), model, &rows, version + 1).await?;
    Ok(Rebuilt {
        generation,
        replaced,
        records,
        took,
    })
}

fn superseded(model: Model, generation: u32) -> StorageError {
    StorageError::Unavailable(format!(
        "another rebuild of {} took over from generation {generation}",
        model.name
    ))
}

/// Waits until `generation` has passed the log's end as it was at the start and the
/// current generation's position, in every partition; the records it passed.
async fn watch_until_ready(
    log: &dyn EventLog,
    store: &dyn ReadStore,
    model: Model,
    generation: u32,
    progress: &mut (impl FnMut(RebuildProgress) + Send),
) -> Result<u64, StorageError> {
    let mut targets: Vec<(&'static str, u32, Offset)> = Vec::new();
    for topic in model.topics {
        for partition in 0..log.partitions(topic.name()).await? {
            targets.push((
                topic.name(),
                partition,
                log.end_offset(topic.name(), partition).await?,
            ));
        }
    }
    let name = qualified(model.name, generation);
    loop {
        let (rows, _) = generations::read(store, model).await?;
        if rows.building != Some(generation) {
            return Err(superseded(model, generation));
        }
        let live = qualified(model.name, rows.current);
        let (mut applied, mut total, mut ready) = (0, 0, true);
        for (topic, partition, end) in &targets {
            let next = store
                .checkpoint(&name, topic, *partition)
                .await?
                .unwrap_or(0);
            let serving = store
                .checkpoint(&live, topic, *partition)
                .await?
                .unwrap_or(0);
            let target = (*end).max(serving);
            applied += next.min(target);
            total += target;
            ready &= next >= target;
        }
        progress(RebuildProgress {
            generation,
            applied,
            total,
            switched: false,
        });
        if ready {
            return Ok(applied);
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

/// Removes a generation's tables and checkpoints.
async fn drop_generation(
    log: &dyn EventLog,
    store: &dyn ReadStore,
    model: Model,
    generation: u32,
) -> Result<(), StorageError> {
    let name = qualified(model.name, generation).into_owned();
    let mut checkpoints = Vec::new();
    for topic in model.topics {
        for partition in 0..log.partitions(topic.name()).await? {
            checkpoints.push((name.clone(), topic.name().to_owned(), partition));
        }
    }
    store
        .drop_tables(&generations::tables_of(model, generation), &checkpoints)
        .await
}

/// The model a `--projection` names.
pub fn model_named(name: &str) -> Result<Model, String> {
    models::named(name).ok_or_else(|| {
        let names: Vec<&str> = models::ALL.iter().map(|m| m.name).collect();
        format!("no read model {name:?}: one of {}", names.join(", "))
    })
}
