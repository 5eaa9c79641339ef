use crate::error::ProjectionError;
use crate::projection::{Projection, Source, Staged};
use crate::tables::{DRONE_POSITIONS, DRONES, FLEET, SINGLE_ROW};
use crate::views::{DronePosition, DroneView, FleetEntry};
use async_trait::async_trait;
use domain::Drone;
use schemas::events::{Envelope, Event, Topic};

/// Drones, the fleet by status, and each drone's latest telemetry.
pub struct DronesProjection;

#[async_trait]
impl Projection for DronesProjection {
    fn name(&self) -> &'static str {
        "drones"
    }

    fn topics(&self) -> &'static [Topic] {
        &[Topic::Drones, Topic::DroneTelemetry]
    }

    async fn project(
        &self,
        envelope: &Envelope,
        source: Source,
        staged: &mut Staged<'_>,
    ) -> Result<(), ProjectionError> {
        let meta = &envelope.metadata;
        let id = &meta.aggregate_id;
        if let Event::DronePositionReported(e) = &envelope.event {
            // One drone's reports share a partition, so offsets order them.
            let position = DronePosition {
                position: e.position,
                battery_pct: e.battery_pct,
                at: e.at,
            };
            staged.put(
                DRONE_POSITIONS,
                id,
                SINGLE_ROW,
                &position,
                source.offset + 1,
            );
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
        // The status machine is the domain's: fold the event into a domain drone.
        let mut drone = before.as_ref().map(to_domain).unwrap_or_default();
        drone.apply(&envelope.event);
        let Some(status) = drone.status else {
            return Ok(());
        };
        let version = meta.aggregate_version;
        let view = DroneView {
            drone_id: id.clone(),
            model: drone.model,
            payload_kg: drone.payload_kg,
            range_km: drone.range_km,
            speed_mps: drone.speed_mps,
            home: drone.home,
            status,
            delivery_id: drone.delivery_id,
            version,
            updated_at: meta.occurred_at,
        };
        staged.put(DRONES, id, SINGLE_ROW, &view, version);
        match before.map(|b| b.status) {
            Some(old) if old == status => {}
            old => {
                if let Some(old) = old {
                    staged.delete(FLEET, old.as_str(), id, version);
                }
                let entry = FleetEntry {
                    drone_id: id.clone(),
                    version,
                };
                staged.put(FLEET, status.as_str(), id, &entry, version);
            }
        }
        Ok(())
    }
}

fn to_domain(view: &DroneView) -> Drone {
    Drone {
        model: view.model.clone(),
        payload_kg: view.payload_kg,
        range_km: view.range_km,
        speed_mps: view.speed_mps,
        home: view.home,
        status: Some(view.status),
        delivery_id: view.delivery_id.clone(),
        ..Drone::default()
    }
}
