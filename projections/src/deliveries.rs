use crate::error::ProjectionError;
use crate::projection::{Projection, Source, Staged};
use crate::tables::{
    ACCOUNT_DELIVERIES, DELIVERIES, DELIVERY_TIMELINE, SINGLE_ROW, history_key, timeline_key,
};
use crate::views::{DeliverySummary, DeliveryView, Notify, TimelineEntry};
use async_trait::async_trait;
use domain::Stage;
use schemas::events::{Envelope, Event, Topic};

/// A delivery, its timeline and its line in the owner's history.
pub struct DeliveriesProjection;

#[async_trait]
impl Projection for DeliveriesProjection {
    fn name(&self) -> &'static str {
        "deliveries"
    }

    fn topics(&self) -> &'static [Topic] {
        &[Topic::Deliveries]
    }

    async fn project(
        &self,
        envelope: &Envelope,
        _source: Source,
        staged: &mut Staged<'_>,
    ) -> Result<(), ProjectionError> {
        let meta = &envelope.metadata;
        let id = &meta.aggregate_id;
        let current: Option<(DeliveryView, u64)> = staged.view(DELIVERIES, id, SINGLE_ROW).await?;
        if current
            .as_ref()
            .is_some_and(|(_, v)| *v >= meta.aggregate_version)
        {
            return Ok(()); // applied already
        }
        let Some(mut view) = fold(current.map(|(v, _)| v), envelope) else {
            return Ok(());
        };
        view.version = meta.aggregate_version;
        view.updated_at = meta.occurred_at;

        let version = view.version;
        staged.put(DELIVERIES, id, SINGLE_ROW, &view, version);
        // The event as JSON is `{"type": .., "data": {..}}`; the entry keeps the data.
        let data = serde_json::to_value(&envelope.event)
            .ok()
            .and_then(|mut v| v.get_mut("data").map(serde_json::Value::take))
            .unwrap_or_default();
        let entry = TimelineEntry {
            version,
            kind: envelope.event.type_name().to_string(),
            event_id: meta.event_id.to_string(),
            occurred_at: meta.occurred_at,
            causation_id: meta.causation_id.clone(),
            correlation_id: meta.correlation_id.clone(),
            data,
        };
        staged.put(
            DELIVERY_TIMELINE,
            id,
            &timeline_key(version),
            &entry,
            version,
        );
        let summary = DeliverySummary {
            delivery_id: view.delivery_id.clone(),
            stage: view.stage,
            drone_id: view.drone_id.clone(),
            pickup_time: view.pickup_time,
            deadline: view.deadline,
            expedited: view.expedited,
            created_at: view.created_at,
            updated_at: view.updated_at,
            version,
        };
        staged.put(
            ACCOUNT_DELIVERIES,
            &view.owner_id,
            &history_key(view.created_at, id),
            &summary,
            version,
        );
        Ok(())
    }
}

/// The view after one event (`None` for an event that does not concern it).
fn fold(view: Option<DeliveryView>, envelope: &Envelope) -> Option<DeliveryView> {
    let at = envelope.metadata.occurred_at;
    if let Event::DeliveryCreated(e) = &envelope.event {
        return Some(DeliveryView {
            delivery_id: envelope.metadata.aggregate_id.clone(),
            owner_id: e.owner_id.clone(),
            pickup: e.pickup,
            dropoff: e.dropoff,
            pickup_time: e.pickup_time,
            deadline: e.deadline,
            expedited: e.expedited,
            confirmation_required: e.confirmation_required,
            package_id: e.package_id.clone(),
            package_weight_kg: e.package_weight_kg,
            stage: Stage::Created,
            drone_id: None,
            route_km: None,
            pickup_eta: None,
            delivery_eta: None,
            created_at: at,
            assigned_at: None,
            picked_up_at: None,
            completed_at: None,
            completed_at_location: None,
            cancelled_at: None,
            failed_at: None,
            failure_reason: None,
            notify: None,
            version: 0,
            updated_at: at,
        });
    }
    let mut view = view?;
    match &envelope.event {
        Event::DeliveryRescheduled(e) => {
            view.stage = Stage::Rescheduled;
            view.pickup = e.pickup;
            view.dropoff = e.dropoff;
            view.pickup_time = e.pickup_time;
            view.deadline = e.deadline;
            view.drone_id = None;
            view.route_km = None;
            view.pickup_eta = None;
            view.delivery_eta = None;
            view.assigned_at = None;
        }
        Event::DroneUnassigned(_) => {
            // The drone was released before pickup; the delivery waits for another.
            view.stage = Stage::Created;
            view.drone_id = None;
            view.route_km = None;
            view.pickup_eta = None;
            view.delivery_eta = None;
            view.assigned_at = None;
        }
        Event::DroneAssigned(e) => {
            view.stage = Stage::HeadedToPickup;
            view.drone_id = Some(e.drone_id.clone());
            view.route_km = Some(e.route_km);
            view.pickup_eta = e.pickup_eta;
            view.delivery_eta = e.delivery_eta;
            view.assigned_at = Some(at);
        }
        Event::DeliveryPickedUp(e) => {
            view.stage = Stage::HeadedToDropoff;
            view.picked_up_at = Some(e.at);
            view.pickup_eta = None;
        }
        Event::DeliveryCompleted(e) => {
            view.stage = Stage::Completed;
            view.completed_at = Some(e.at);
            view.completed_at_location = Some(e.location);
            view.pickup_eta = None;
            view.delivery_eta = None;
        }
        Event::DeliveryCancelled(_) => {
            view.stage = Stage::Cancelled;
            view.cancelled_at = Some(at);
            view.pickup_eta = None;
            view.delivery_eta = None;
        }
        Event::DeliveryFailed(e) => {
            view.stage = Stage::Failed;
            view.failed_at = Some(at);
            view.failure_reason = Some(e.reason.clone());
            view.pickup_eta = None;
            view.delivery_eta = None;
        }
        Event::NotificationRequested(e) => {
            view.notify = Some(Notify {
                email: e.email.clone(),
                sms: e.sms.clone(),
            });
        }
        _ => return None,
    }
    Some(view)
}
