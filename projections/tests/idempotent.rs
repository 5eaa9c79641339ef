//! Projections are idempotent: applying the same events again (a projector that crashed
//! after its writes but before its checkpoint, on a store without atomic batches)
//! leaves every row as applying them once did.

use chrono::{TimeZone, Utc};
use projections::{Source, Staged};
use read_model::tables::{
    ACCOUNT_DELIVERIES, DELIVERIES, DELIVERY_TIMELINE, DRONE_POSITIONS, DRONES, FLEET,
    INVOICE_LINES, SINGLE_ROW, WHOLE_FLEET, invoice_partition,
};
use schemas::events::*;
use std::ops::Bound;
use storage::{Order, ReadStore, Row, Scan};
use storage_embedded::EmbeddedReadStore;
use uuid::Uuid;

fn at(minute: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, minute, 0)
        .single()
        .expect("time")
}

fn envelope(id: &str, version: u64, minute: u32, event: Event) -> Envelope {
    Envelope {
        metadata: EventMetadata {
            event_id: Uuid::new_v4(),
            aggregate_id: id.into(),
            aggregate_version: version,
            occurred_at: at(minute),
            causation_id: "cmd:test".into(),
            correlation_id: "cmd:test".into(),
            principal: "operator".into(),
        },
        event,
    }
}

fn here() -> Location {
    Location {
        latitude: 47.61,
        longitude: -122.33,
        altitude: 0.0,
    }
}

/// A delivery from creation to completion, its drone, and a telemetry report.
fn history() -> Vec<(Topic, Envelope)> {
    let assigned = DroneAssigned {
        delivery_id: "del-1".into(),
        drone_id: "drone-1".into(),
        route_km: 12.5,
        attempt: "attempt-1".into(),
    };
    let picked = DeliveryPickedUp {
        delivery_id: "del-1".into(),
        drone_id: "drone-1".into(),
        at: at(10),
    };
    let completed = DeliveryCompleted {
        delivery_id: "del-1".into(),
        drone_id: "drone-1".into(),
        confirmation_type: ConfirmationType::None,
        location: here(),
        at: at(30),
        blob: None,
    };
    vec![
        (
            Topic::Drones,
            envelope(
                "drone-1",
                1,
                0,
                Event::DroneRegistered(DroneRegistered {
                    model: "X8".into(),
                    payload_kg: 5.0,
                    range_km: 40.0,
                    speed_mps: 15.0,
                    home: here(),
                }),
            ),
        ),
        (
            Topic::Deliveries,
            envelope(
                "del-1",
                1,
                1,
                Event::DeliveryCreated(DeliveryCreated {
                    owner_id: "acct-1".into(),
                    pickup: here(),
                    dropoff: here(),
                    pickup_time: None,
                    deadline: None,
                    expedited: false,
                    confirmation_required: ConfirmationType::None,
                    package_id: "pkg-1".into(),
                    package_weight_kg: 2.0,
                }),
            ),
        ),
        (
            Topic::Deliveries,
            envelope("del-1", 2, 2, Event::DroneAssigned(assigned.clone())),
        ),
        (
            Topic::Drones,
            envelope("drone-1", 2, 2, Event::DroneAssigned(assigned)),
        ),
        (
            Topic::DroneTelemetry,
            envelope(
                "drone-1",
                2,
                5,
                Event::DronePositionReported(DronePositionReported {
                    position: here(),
                    battery_pct: 80.0,
                    at: at(5),
                }),
            ),
        ),
        (
            Topic::Deliveries,
            envelope("del-1", 3, 10, Event::DeliveryPickedUp(picked.clone())),
        ),
        (
            Topic::Drones,
            envelope("drone-1", 3, 10, Event::DeliveryPickedUp(picked)),
        ),
        (
            Topic::Deliveries,
            envelope("del-1", 4, 30, Event::DeliveryCompleted(completed.clone())),
        ),
        (
            Topic::Drones,
            envelope("drone-1", 4, 30, Event::DeliveryCompleted(completed)),
        ),
    ]
}

/// Projects the history, `times` times over, into a fresh store.
async fn project(
    events: &[(Topic, Envelope)],
    times: usize,
) -> (tempfile::TempDir, EmbeddedReadStore) {
    let dir = tempfile::tempdir().expect("dir");
    let store = EmbeddedReadStore::open(dir.path()).expect("store");
    for _ in 0..times {
        for projection in projections::all() {
            for (offset, (topic, envelope)) in events.iter().enumerate() {
                if !projection.topics().contains(topic) {
                    continue;
                }
                let mut staged = Staged::new(&store);
                let source = Source {
                    topic: *topic,
                    partition: 0,
                    offset: offset as u64,
                };
                projection
                    .project(envelope, source, &mut staged)
                    .await
                    .expect("projects");
                let writes = staged.into_writes();
                let all = writes.rows.into_iter().chain(writes.guards).collect();
                store.apply(all, Vec::new()).await.expect("applies");
            }
        }
    }
    (dir, store)
}

async fn rows(
    store: &EmbeddedReadStore,
    table: &str,
    partition: &str,
) -> Vec<(String, u64, String)> {
    let scan = Scan {
        from: Bound::Unbounded,
        to: Bound::Unbounded,
        order: Order::Ascending,
        limit: 1000,
    };
    let rows: Vec<Row> = store.scan(table, partition, scan).await.expect("scan");
    rows.into_iter()
        .map(|r| {
            let value = String::from_utf8(r.value.to_vec()).expect("utf8");
            (r.clustering, r.version, value)
        })
        .collect()
}

async fn everything(store: &EmbeddedReadStore) -> Vec<Vec<(String, u64, String)>> {
    let mut all = Vec::new();
    for (table, partition) in [
        (DELIVERIES, "del-1".to_string()),
        (DELIVERY_TIMELINE, "del-1".to_string()),
        (ACCOUNT_DELIVERIES, "acct-1".to_string()),
        (INVOICE_LINES, invoice_partition("acct-1", 2026, 11)),
        (DRONES, "drone-1".to_string()),
        (DRONE_POSITIONS, WHOLE_FLEET.to_string()),
        (FLEET, "idle".to_string()),
        (FLEET, "assigned".to_string()),
        (FLEET, "returning".to_string()),
    ] {
        all.push(rows(store, table, &partition).await);
    }
    all
}

#[tokio::test]
async fn applying_the_events_twice_changes_nothing() {
    let events = history();
    let (_a, once) = project(&events, 1).await;
    let (_b, twice) = project(&events, 2).await;
    let first = everything(&once).await;
    assert_eq!(first, everything(&twice).await);

    // And the rows are what the history says.
    let delivery = once
        .get(DELIVERIES, "del-1", SINGLE_ROW)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(delivery.version, 4);
    let view: serde_json::Value = serde_json::from_slice(&delivery.value).expect("json");
    assert_eq!(view["stage"], "Completed");
    assert_eq!(first[1].len(), 4, "four timeline entries");
    let invoice = &first[3];
    assert_eq!(invoice.len(), 1);
    let line: serde_json::Value = serde_json::from_str(&invoice[0].2).expect("json");
    assert_eq!(line["droneKm"], 12.5);
    assert_eq!(line["droneHours"], 28.0 / 60.0);
    assert!(
        first[6].is_empty() && first[7].is_empty(),
        "the drone left idle and assigned"
    );
    assert_eq!(first[8].len(), 1, "the drone is returning");
}
