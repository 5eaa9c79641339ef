use crate::error::ProjectionError;
use crate::projection::{Projection, Source, Staged};
use async_trait::async_trait;
use chrono::Datelike;
use read_model::tables::{INVOICE_LINES, INVOICE_TRIPS, SINGLE_ROW, invoice_partition};
use read_model::views::{InvoiceLine, InvoiceTrip};
use read_model::{Model, models};
use schemas::events::{Envelope, Event};

/// Completed deliveries per account and month, with what they cost the fleet.
pub struct InvoicesProjection;

#[async_trait]
impl Projection for InvoicesProjection {
    fn model(&self) -> Model {
        models::INVOICES
    }

    async fn project(
        &self,
        envelope: &Envelope,
        _source: Source,
        staged: &mut Staged<'_>,
    ) -> Result<(), ProjectionError> {
        let meta = &envelope.metadata;
        let id = &meta.aggregate_id;
        let version = meta.aggregate_version;
        if let Event::DeliveryCreated(e) = &envelope.event {
            let trip = InvoiceTrip {
                owner_id: e.owner_id.clone(),
                weight_kg: e.package_weight_kg,
                route_km: None,
                assigned_at: None,
            };
            staged.guard(INVOICE_TRIPS, id, SINGLE_ROW, trip, version);
            return Ok(());
        }
        let Some((mut trip, trip_version)) = staged
            .view::<InvoiceTrip>(INVOICE_TRIPS, id, SINGLE_ROW)
            .await?
        else {
            return Ok(());
        };
        if trip_version >= version {
            return Ok(()); // applied already
        }
        match &envelope.event {
            Event::DroneAssigned(e) => {
                trip.route_km = Some(e.route_km);
                trip.assigned_at = Some(meta.occurred_at);
            }
            Event::DeliveryRescheduled(_) | Event::DroneUnassigned(_) => {
                trip.route_km = None;
                trip.assigned_at = None;
            }
            Event::DeliveryCompleted(e) => {
                let hours = trip
                    .assigned_at
                    .map(|a| (e.at - a).num_milliseconds().max(0) as f64 / 3_600_000.0)
                    .unwrap_or(0.0);
                let line = InvoiceLine {
                    delivery_id: id.clone(),
                    completed_at: e.at,
                    weight_kg: trip.weight_kg,
                    drone_km: trip.route_km.unwrap_or(0.0),
                    drone_hours: hours,
                };
                let partition = invoice_partition(&trip.owner_id, e.at.year(), e.at.month());
                staged.put(INVOICE_LINES, &partition, id, line, version);
            }
            _ => {}
        }
        staged.guard(INVOICE_TRIPS, id, SINGLE_ROW, trip, version);
        Ok(())
    }
}
