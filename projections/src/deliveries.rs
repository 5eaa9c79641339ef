use crate::error::ProjectionError;
use crate::projection::{Projection, Source, Staged, Staging};
use async_trait::async_trait;
use domain::Delivery;
use read_model::tables::{
    ACCOUNT_DELIVERIES, DELIVERIES, DELIVERIES_BY_STAGE, DELIVERY_TIMELINE, SINGLE_ROW,
    history_key, timeline_key,
};
use read_model::views::{DeliverySummary, DeliveryView, TimelineEntry};
use read_model::{Model, models};
use schemas::events::Envelope;

/// A delivery, its timeline, its line in the owner's history and in the list of its stage.
/// The delivery is folded with the domain's own `Delivery::apply`.
pub struct DeliveriesProjection;

#[async_trait]
impl Projection for DeliveriesProjection {
    fn model(&self) -> Model {
        models::DELIVERIES
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
        let before = current.map(|(view, _)| view);
        let Some(view) = DeliveryView::folded(before.as_ref(), envelope) else {
            return Ok(()); // an event before its creation: nothing to show
        };
        let version = view.version;
        staged.put(
            DELIVERY_TIMELINE,
            id,
            &timeline_key(version),
            TimelineEntry::of(envelope),
            version,
        );
        let summary = summary(&view);
        let key = history_key(summary.created_at, id);
        let stage = view.stage();
        // The owner's history and the stage's list hold the same line: encoded once.
        let line = Staging::of(summary);
        staged.put_staging(
            ACCOUNT_DELIVERIES,
            &view.delivery.owner_id,
            &key,
            &line,
            version,
        );
        if let Some(old) = before.map(|b| b.stage())
            && old != stage
        {
            staged.delete(DELIVERIES_BY_STAGE, old.as_str(), &key, version);
        }
        staged.put_staging(DELIVERIES_BY_STAGE, stage.as_str(), &key, &line, version);
        staged.guard(DELIVERIES, id, SINGLE_ROW, view, version);
        Ok(())
    }
}

fn summary(view: &DeliveryView) -> DeliverySummary {
    let d: &Delivery = &view.delivery;
    DeliverySummary {
        delivery_id: view.delivery_id.clone(),
        owner_id: d.owner_id.clone(),
        stage: view.stage(),
        drone_id: d.drone_id.clone(),
        pickup_time: d.pickup_time,
        deadline: d.deadline,
        expedited: d.expedited,
        reason: d.reason.clone(),
        created_at: d.created_at.unwrap_or(view.updated_at),
        updated_at: view.updated_at,
        version: view.version,
    }
}
