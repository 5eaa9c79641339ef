//! Commands that change a delivery and its drone. The two live in different partitions,
//! and one command's effect is one record of one partition (two records can be split by
//! a failure, or by a takeover marker between them), so these commands are steps, each
//! one record, with the delivery's stream as the commit point:
//!
//! - assign-drone: (1) the delivery can take a drone; (2) the drone is reserved on its
//!   stream (`DroneAssigned` with a reservation id, the attempt); (3) the delivery takes
//!   that reservation — or refuses it, and the compensation releases the drone.
//! - every other delivery command: the delivery's record, then the drone's stream
//!   *follows* it (picked up, completed, released), computed from the two states alone
//!   ([`domain::Drone::follow`]).
//!
//! A step that failed leaves the drone pending; the reconciler runs it again (right
//! after start-up for every drone that carries a delivery, then every second for the
//! pending ones). A reservation whose commit neither landed nor was refused is
//! abandoned at the delivery first, so a late commit cannot take it after its drone
//! was released. Step ids derive from the command (its idempotency key gives the
//! attempt), so a retried command finds its own reservation.

use crate::error::CommandError;
use crate::ownership::Place;
use crate::peers::{StepCall, StepContext, StepReply};
use crate::service::{
    Accepted, CommandContext, CommandService, accepted, check_expected, existing, ready, replayed,
    visible,
};
use api::{ConsistencyToken, Position};
use domain::{Delivery, DomainError, Drone, FollowUp, Job};
use schemas::events::{DroneAssigned, Event};
use std::time::{Duration, Instant};

/// How often expired idempotency keys are swept out of memory.
const KEY_SWEEP: Duration = Duration::from_secs(60);
use tokio::sync::watch;
use uuid::Uuid;

/// A peer's answer to another step than the one asked (a peer of another build).
fn unexpected(reply: &StepReply) -> CommandError {
    CommandError::Internal(format!("a peer answered another step: {reply:?}"))
}

/// What following a drone's delivery came to.
enum Followed {
    /// The drone's stream says what the delivery's says (`at`: the record written, if any).
    Done { at: Option<Position> },
    /// The delivery has neither taken nor given up the reservation `attempt`.
    Undecided {
        delivery_id: String,
        attempt: String,
    },
}

/// Step 1 of an assignment.
enum Asked {
    /// A retry of an assignment that was carried out.
    Replayed(Accepted),
    /// The delivery's job, and the reservations it has given up.
    Job { job: Job, released: Vec<String> },
}

impl CommandService {
    /// Assigns a drone to a delivery in three steps (see the module's documentation).
    pub async fn assign_drone(
        &self,
        ctx: &CommandContext,
        id: &str,
        drone_id: &str,
    ) -> Result<Accepted, CommandError> {
        let run = async {
            let (job, released) = match self.settled(|| self.ask(ctx, id)).await? {
                Asked::Replayed(done) => return Ok(done),
                Asked::Job { job, released } => (job, released),
            };
            // A retried command (same key) makes the same reservation, unless the
            // delivery gave that one up (its commit stalled): then the retry decides
            // anew, with the key's next reservation.
            let attempt = match &ctx.idempotency_key {
                Some(key) => (1..)
                    .map(|n| match n {
                        1 => self.derived_id("reservation", key),
                        n => self.derived_id("reservation", &format!("{key}#{n}")),
                    })
                    .find(|attempt| !released.contains(attempt))
                    .unwrap_or_default(),
                None => Uuid::new_v4().to_string(),
            };
            self.in_flight_set().insert(attempt.clone());
            let assigned = self
                .reserve_and_commit(ctx, id, drone_id, &job, &attempt)
                .await;
            self.in_flight_set().remove(&attempt);
            assigned
        };
        self.counted("assign-drone", run).await
    }

    async fn reserve_and_commit(
        &self,
        ctx: &CommandContext,
        id: &str,
        drone_id: &str,
        job: &Job,
        attempt: &str,
    ) -> Result<Accepted, CommandError> {
        let (reservation, reserved_at) = self
            .settled(|| self.reserve(ctx, drone_id, id, job, attempt))
            .await?;
        match self.settled(|| self.commit(ctx, id, &reservation)).await {
            Ok(mut accepted) => {
                accepted.token = ConsistencyToken::from_positions(
                    accepted.token.positions.iter().copied().chain(reserved_at),
                );
                Ok(accepted)
            }
            Err(refused) if refused.is_refusal() => {
                let why = format!("the delivery refused the assignment: {refused}");
                let released = self
                    .settled(|| self.release(ctx, drone_id, id, attempt, &why))
                    .await;
                if let Err(e) = released {
                    tracing::warn!(drone_id, delivery_id = id, error = %e, "release failed; the reconciler retries it");
                    self.pend(drone_id);
                }
                Err(refused)
            }
            Err(unknown) => {
                // The commit may or may not have landed: the reconciler decides once the
                // delivery's partition is settled.
                self.pend(drone_id);
                Err(unknown)
            }
        }
    }

    /// Step 1: the delivery can take a drone (and the caller's `If-Match` holds).
    async fn ask(&self, ctx: &CommandContext, id: &str) -> Result<Asked, CommandError> {
        let shard = self.deliveries.lock_owned(id).await?;
        let stream = shard.get(id);
        if let Some(done) = replayed(stream, ctx, id, self.key_cutoff())? {
            return Ok(Asked::Replayed(done));
        }
        let stream = existing(&shard, id)?;
        visible(stream, ctx, id)?;
        check_expected(Some(stream), ctx, "delivery", id)?;
        Ok(Asked::Job {
            job: stream.state.job()?,
            released: stream.state.released.clone(),
        })
    }

    /// Step 2: the drone is reserved for the delivery (already, for a retried attempt),
    /// by this process or the drone's owner.
    async fn reserve(
        &self,
        ctx: &CommandContext,
        drone_id: &str,
        delivery_id: &str,
        job: &Job,
        attempt: &str,
    ) -> Result<(DroneAssigned, Option<Position>), CommandError> {
        let partition = self.drones.partition_of(drone_id);
        if self.ownership.place(partition) != Place::Elsewhere {
            return self
                .reserve_here(ctx, drone_id, delivery_id, job, attempt)
                .await;
        }
        let call = StepCall::Reserve {
            ctx: StepContext::of(ctx),
            drone_id: drone_id.to_owned(),
            delivery_id: delivery_id.to_owned(),
            job: *job,
            attempt: attempt.to_owned(),
        };
        match self.peers.call(partition, &call).await? {
            StepReply::Reserved { reservation, at } => Ok((reservation, at)),
            other => Err(unexpected(&other)),
        }
    }

    async fn reserve_here(
        &self,
        ctx: &CommandContext,
        drone_id: &str,
        delivery_id: &str,
        job: &Job,
        attempt: &str,
    ) -> Result<(DroneAssigned, Option<Position>), CommandError> {
        let shard = self.drones.lock_owned(drone_id).await?;
        ready(&shard)?;
        let unknown = Drone::default();
        let stream = shard.get(drone_id);
        let drone = stream.map_or(&unknown, |s| &s.state);
        let events = drone.reserve(drone_id, delivery_id, job, attempt)?;
        let reservation = DroneAssigned {
            delivery_id: delivery_id.to_owned(),
            drone_id: drone_id.to_owned(),
            route_km: job.route_km(&drone.home, &drone.home),
            attempt: attempt.to_owned(),
        };
        if events.is_empty() {
            return Ok((reservation, None)); // reserved by an earlier try of this command
        }
        let (_, at, _) = self
            .write("assign-drone", shard, drone_id, ctx, events)
            .await?;
        Ok((reservation, Some(at)))
    }

    /// Step 3, the commit point: the delivery takes the reservation.
    async fn commit(
        &self,
        ctx: &CommandContext,
        id: &str,
        reservation: &DroneAssigned,
    ) -> Result<Accepted, CommandError> {
        let shard = self
            .deliveries
            .lock_owned(id)
            .await
            .map_err(CommandError::after_first_step)?;
        if let Some(done) = replayed(shard.get(id), ctx, id, self.key_cutoff())? {
            return Ok(done);
        }
        let stream = existing(&shard, id)?;
        visible(stream, ctx, id)?;
        check_expected(Some(stream), ctx, "delivery", id)?;
        ready(&shard)?;
        let events = stream.state.assign_drone(reservation)?;
        let version = stream.version;
        if events.is_empty() {
            // Taken by an earlier try whose answer was lost.
            return Ok(Accepted {
                id: id.to_owned(),
                version,
                token: ConsistencyToken::default(),
                replayed: true,
            });
        }
        let (version, at, mut shard) = self.write("assign-drone", shard, id, ctx, events).await?;
        let token = ConsistencyToken::from_positions([at]);
        Ok(accepted(shard.entry(id), ctx, id, version, token))
    }

    /// The compensation: the drone is released of the reservation `attempt`, by this
    /// process or the drone's owner.
    async fn release(
        &self,
        ctx: &CommandContext,
        drone_id: &str,
        delivery_id: &str,
        attempt: &str,
        reason: &str,
    ) -> Result<Option<Position>, CommandError> {
        let partition = self.drones.partition_of(drone_id);
        if self.ownership.place(partition) != Place::Elsewhere {
            return self
                .release_here(ctx, drone_id, delivery_id, attempt, reason)
                .await;
        }
        let call = StepCall::Release {
            ctx: StepContext::of(ctx),
            drone_id: drone_id.to_owned(),
            delivery_id: delivery_id.to_owned(),
            attempt: attempt.to_owned(),
            reason: reason.to_owned(),
        };
        match self.peers.call(partition, &call).await? {
            StepReply::Written { at } => Ok(at),
            other => Err(unexpected(&other)),
        }
    }

    async fn release_here(
        &self,
        ctx: &CommandContext,
        drone_id: &str,
        delivery_id: &str,
        attempt: &str,
        reason: &str,
    ) -> Result<Option<Position>, CommandError> {
        let shard = self.drones.lock_owned(drone_id).await?;
        ready(&shard)?;
        let Some(stream) = shard.get(drone_id) else {
            return Ok(None);
        };
        let events = stream.state.release(drone_id, delivery_id, attempt, reason);
        if events.is_empty() {
            return Ok(None);
        }
        let (_, at, _) = self
            .write("release-drone", shard, drone_id, ctx, events)
            .await?;
        Ok(Some(at))
    }

    /// A command on a delivery alone; then its drone's stream follows it. The command
    /// counts once the delivery's record does: a follow-up that fails is left to the
    /// reconciler, and the answer's token then covers the delivery only.
    pub(crate) async fn on_delivery(
        &self,
        ctx: &CommandContext,
        id: &str,
        command: &'static str,
        decide: impl Fn(&Delivery) -> Result<Vec<Event>, DomainError>,
    ) -> Result<Accepted, CommandError> {
        let run = async {
            let (mut accepted, drone) = self
                .settled(|| self.on_delivery_once(ctx, id, command, &decide))
                .await?;
            if let Some(drone_id) = drone {
                match self.settled(|| self.follow(ctx, &drone_id)).await {
                    Ok(Followed::Done { at: Some(at) }) => {
                        accepted.token = ConsistencyToken::from_positions(
                            accepted.token.positions.iter().copied().chain([at]),
                        );
                    }
                    Ok(Followed::Done { at: None }) => {}
                    Ok(Followed::Undecided { .. }) => self.pend(&drone_id),
                    Err(e) => {
                        tracing::warn!(drone_id, delivery_id = id, error = %e, "the drone's follow-up failed; the reconciler retries it");
                        self.pend(&drone_id);
                    }
                }
            }
            Ok(accepted)
        };
        self.counted(command, run).await
    }

    /// The delivery's step; gives the drone it had or has.
    async fn on_delivery_once(
        &self,
        ctx: &CommandContext,
        id: &str,
        command: &'static str,
        decide: &impl Fn(&Delivery) -> Result<Vec<Event>, DomainError>,
    ) -> Result<(Accepted, Option<String>), CommandError> {
        let shard = self.deliveries.lock_owned(id).await?;
        let stream = shard.get(id);
        if let Some(done) = replayed(stream, ctx, id, self.key_cutoff())? {
            let drone = stream.and_then(|s| s.state.drone_id.clone());
            return Ok((done, drone));
        }
        let stream = existing(&shard, id)?;
        visible(stream, ctx, id)?;
        check_expected(Some(stream), ctx, "delivery", id)?;
        ready(&shard)?;
        let before = stream.state.drone_id.clone();
        let events = decide(&stream.state)?;
        let (version, at, mut shard) = self.write(command, shard, id, ctx, events).await?;
        let token = ConsistencyToken::from_positions([at]);
        let stream = shard.entry(id);
        let drone = before.or_else(|| stream.state.drone_id.clone());
        Ok((accepted(stream, ctx, id, version, token), drone))
    }

    /// Brings the drone's stream in line with the delivery it carries, here or at the
    /// drone's owner.
    async fn follow(&self, ctx: &CommandContext, drone_id: &str) -> Result<Followed, CommandError> {
        let partition = self.drones.partition_of(drone_id);
        if self.ownership.place(partition) != Place::Elsewhere {
            return self.follow_here(ctx, drone_id).await;
        }
        let call = StepCall::Follow {
            ctx: StepContext::of(ctx),
            drone_id: drone_id.to_owned(),
        };
        match self.peers.call(partition, &call).await? {
            StepReply::Followed {
                at,
                undecided: None,
            } => Ok(Followed::Done { at }),
            StepReply::Followed {
                undecided: Some((delivery_id, attempt)),
                ..
            } => Ok(Followed::Undecided {
                delivery_id,
                attempt,
            }),
            other => Err(unexpected(&other)),
        }
    }

    async fn follow_here(
        &self,
        ctx: &CommandContext,
        drone_id: &str,
    ) -> Result<Followed, CommandError> {
        // Drones come before deliveries in the lock order.
        let shard = self.drones.lock_owned(drone_id).await?;
        let Some(stream) = shard.get(drone_id) else {
            return Ok(Followed::Done { at: None });
        };
        let Some(delivery_id) = stream.state.delivery_id.clone() else {
            return Ok(Followed::Done { at: None });
        };
        let delivery = self.delivery_state(&delivery_id).await?.unwrap_or_default();
        let events = match stream.state.follow(drone_id, &delivery_id, &delivery) {
            FollowUp::InLine => return Ok(Followed::Done { at: None }),
            FollowUp::Undecided { attempt } => {
                return Ok(Followed::Undecided {
                    delivery_id,
                    attempt,
                });
            }
            FollowUp::Append(events) if events.is_empty() => {
                return Ok(Followed::Done { at: None });
            }
            FollowUp::Append(events) => events,
        };
        ready(&shard)?;
        let (_, at, _) = self
            .write("follow-delivery", shard, drone_id, ctx, events)
            .await?;
        Ok(Followed::Done { at: Some(at) })
    }

    /// Gives up a reservation whose commit stalled, at the delivery (here or at its
    /// owner); false when its command is still deciding there.
    async fn abandon(
        &self,
        delivery_id: &str,
        drone_id: &str,
        attempt: &str,
    ) -> Result<bool, CommandError> {
        let partition = self.deliveries.partition_of(delivery_id);
        if self.ownership.place(partition) != Place::Elsewhere {
            return self.abandon_here(delivery_id, drone_id, attempt).await;
        }
        let call = StepCall::Abandon {
            delivery_id: delivery_id.to_owned(),
            drone_id: drone_id.to_owned(),
            attempt: attempt.to_owned(),
        };
        match self.peers.call(partition, &call).await? {
            StepReply::Abandoned { abandoned } => Ok(abandoned),
            other => Err(unexpected(&other)),
        }
    }

    async fn abandon_here(
        &self,
        delivery_id: &str,
        drone_id: &str,
        attempt: &str,
    ) -> Result<bool, CommandError> {
        if self.in_flight_set().contains(attempt) {
            return Ok(false); // its command is still deciding
        }
        let shard = self.deliveries.lock_owned(delivery_id).await?;
        ready(&shard)?;
        let Some(stream) = shard.get(delivery_id) else {
            return Ok(true);
        };
        let events = stream.state.abandon(delivery_id, drone_id, attempt);
        if events.is_empty() {
            return Ok(true);
        }
        let ctx = CommandContext::default();
        self.write("abandon-assignment", shard, delivery_id, &ctx, events)
            .await?;
        Ok(true)
    }

    /// Brings one drone's stream in line with its delivery's; true when it is.
    async fn reconcile(&self, drone_id: &str) -> Result<bool, CommandError> {
        let ctx = CommandContext::default();
        for _ in 0..3 {
            match self.settled(|| self.follow(&ctx, drone_id)).await? {
                Followed::Done { .. } => return Ok(true),
                Followed::Undecided {
                    delivery_id,
                    attempt,
                } => {
                    let abandoned = self
                        .settled(|| self.abandon(&delivery_id, drone_id, &attempt))
                        .await?;
                    if !abandoned {
                        return Ok(false); // its command is still deciding
                    }
                }
            }
        }
        Ok(false)
    }

    /// Reconciles the pending drones; those that fail stay pending.
    pub(crate) async fn reconcile_pending(&self) {
        let drones: Vec<String> = self.pending_set().iter().cloned().collect();
        for drone_id in drones {
            match self.reconcile(&drone_id).await {
                Ok(true) => {
                    self.pending_set().remove(&drone_id);
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(drone_id, error = %e, "cannot reconcile the drone yet");
                }
            }
        }
        self.metrics
            .unreconciled
            .set(self.pending_set().len() as i64);
    }

    /// After taking partitions: every drone of theirs that carries a delivery may be
    /// behind it.
    pub(crate) async fn note_carrying_drones(&self, numbers: &[u32]) {
        for &partition in numbers {
            let shard = self.drones.lock_partition(partition).await;
            let carrying: Vec<String> = shard
                .streams()
                .filter(|(_, s)| s.state.delivery_id.is_some())
                .map(|(id, _)| id.clone())
                .collect();
            self.pending_set().extend(carrying);
        }
    }

    /// Runs the reconciler every `every` until `shutdown`.
    /// Also forgets expired idempotency keys, every [`KEY_SWEEP`].
    pub async fn reconcile_every(&self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut next_sweep = Instant::now() + KEY_SWEEP;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            if !self.pending_set().is_empty() {
                self.reconcile_pending().await;
            }
            if Instant::now() >= next_sweep {
                self.forget_old_keys().await;
                next_sweep = Instant::now() + KEY_SWEEP;
            }
        }
    }

    /// A delivery's state, here or at its owner, once no record of it is on its way.
    async fn delivery_state(&self, id: &str) -> Result<Option<Delivery>, CommandError> {
        let partition = self.deliveries.partition_of(id);
        if self.ownership.place(partition) != Place::Elsewhere {
            let shard = self.deliveries.lock_owned(id).await?;
            return Ok(shard.get(id).map(|s| s.state.clone()));
        }
        let call = StepCall::Delivery { id: id.to_owned() };
        match self.peers.call(partition, &call).await? {
            StepReply::Delivery { state } => Ok(state.map(|d| *d)),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs a step a peer asks for, on an aggregate this process owns (refused with
    /// `Elsewhere` if it does not: the peer's map of owners is behind).
    pub async fn step(&self, call: StepCall) -> Result<StepReply, CommandError> {
        match call {
            StepCall::Reserve {
                ctx,
                drone_id,
                delivery_id,
                job,
                attempt,
            } => {
                let ctx = ctx.context();
                let (reservation, at) = self
                    .settled(|| self.reserve_here(&ctx, &drone_id, &delivery_id, &job, &attempt))
                    .await?;
                Ok(StepReply::Reserved { reservation, at })
            }
            StepCall::Release {
                ctx,
                drone_id,
                delivery_id,
                attempt,
                reason,
            } => {
                let ctx = ctx.context();
                let at = self
                    .settled(|| self.release_here(&ctx, &drone_id, &delivery_id, &attempt, &reason))
                    .await?;
                Ok(StepReply::Written { at })
            }
            StepCall::Follow { ctx, drone_id } => {
                let ctx = ctx.context();
                Ok(
                    match self.settled(|| self.follow_here(&ctx, &drone_id)).await? {
                        Followed::Done { at } => StepReply::Followed {
                            at,
                            undecided: None,
                        },
                        Followed::Undecided {
                            delivery_id,
                            attempt,
                        } => StepReply::Followed {
                            at: None,
                            undecided: Some((delivery_id, attempt)),
                        },
                    },
                )
            }
            StepCall::Abandon {
                delivery_id,
                drone_id,
                attempt,
            } => {
                let abandoned = self
                    .settled(|| self.abandon_here(&delivery_id, &drone_id, &attempt))
                    .await?;
                Ok(StepReply::Abandoned { abandoned })
            }
            StepCall::Delivery { id } => {
                let shard = self.deliveries.lock_owned(&id).await?;
                let state = shard.get(&id).map(|s| Box::new(s.state.clone()));
                Ok(StepReply::Delivery { state })
            }
            StepCall::Account { id } => Ok(StepReply::Account {
                state: self.account_state(&id).await?,
            }),
            StepCall::Drones { ids } => {
                let mut states = Vec::with_capacity(ids.len());
                for id in ids {
                    let shard = self.drones.lock_owned(&id).await?;
                    if let Some(stream) = shard.get(&id).filter(|s| s.exists()) {
                        states.push((id.clone(), stream.version, stream.state.clone()));
                    }
                }
                Ok(StepReply::Drones { states })
            }
        }
    }

    fn pend(&self, drone_id: &str) {
        self.pending_set().insert(drone_id.to_owned());
        self.metrics
            .unreconciled
            .set(self.pending_set().len() as i64);
    }

    fn pending_set(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn in_flight_set(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }
}
