use crate::error::ProjectionError;
use crate::projection::{Projection, Source, Staged};
use async_trait::async_trait;
use read_model::tables::{DRONE_POSITIONS, DRONES, FLEET, SINGLE_ROW, WHOLE_FLEET};
use read_model::views::{DroneDetails, DronePosition, DroneView};
use read_model::{Model, models};
use schemas::events::{Envelope, Event};

/// Drones, the fleet by status, and each drone's latest telemetry.
pub struct DronesProjection;

#[async_trait]
impl Projection for DronesProjection {
    fn model(&self) -> Model {
        models::DRONES
    }

    async fn project(
        &self,
        envelope: &Envelope,
        _source: Source,
        staged: &mut Staged<'_>,
    ) -> Result<(), ProjectionError> {
        let meta = &envelope.metadata;
        let id = &meta.aggregate_id;
        if let Event::DronePositionReported(e) = &envelope.event {
            let position = DronePosition {
                position: e.position,
                battery_pct: e.battery_pct,
                at: e.at,
            };
            // Versioned by the time of the report: the store keeps the newest, so a report
            // older than the one shown changes nothing (clients may send out of order) and
            // no read is needed; of two of the same time the later in the log wins.
            let version = u64::try_from(e.at.timestamp_micros()).unwrap_or(0);
            staged.put(DRONE_POSITIONS, WHOLE_FLEET, id, position, version);
            return Ok(());
        }
        let current: Option<(DroneView, u64)> = staged.view(DRONES, id, SINGLE_ROW).await?;
        if current
            .as_ref()
            .is_some_and(|(_, v)| *v >= meta.aggregate_version)
        {
            return Ok(()); // applied already
        }
        let before = current.map(|(view, _)| view);
        // The status machine is the domain's: fold the event into the domain's drone.
        let Some(view) = DroneView::folded(before.as_ref(), envelope) else {
            return Ok(());
        };
        let (status, version) = (view.status(), view.version);
        // The fleet row is what a page shows (a page is one scan); it moves with the status.
        if let Some(old) = before.map(|b| b.status()).filter(|old| *old != status) {
            staged.delete(FLEET, old.as_str(), id, version);
        }
        staged.put(FLEET, status.as_str(), id, DroneDetails::of(&view), version);
        staged.guard(DRONES, id, SINGLE_ROW, view, version);
        Ok(())
    }
}
