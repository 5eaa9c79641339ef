//! The notifier's rules as a fold: given the log's events, the messages owed.

use chrono::{DateTime, TimeDelta, Utc};
use domain::{
    Account, Aggregate, Delivery, DeliveryPlan, Drone, Event, FlightModel, RegisterAccount,
    RegisterDrone, Telemetry, location,
};
use notifier::{Channel, Kind, Message, Watcher};
use schemas::events::{ConfirmationType, Envelope, EventMetadata, NotificationRequested};
use uuid::Uuid;

/// Envelopes of one aggregate, numbered as its stream grows.
struct Stream {
    id: &'static str,
    version: u64,
}

impl Stream {
    fn wrap(&mut self, event: Event, at: DateTime<Utc>) -> Envelope {
        self.version += 1;
        Envelope {
            metadata: EventMetadata {
                event_id: Uuid::new_v4(),
                aggregate_id: self.id.into(),
                aggregate_version: self.version,
                occurred_at: at,
                causation_id: "test".into(),
                correlation_id: "test".into(),
                principal: "operator".into(),
            },
            event,
        }
    }
}

fn kinds(messages: &[Message]) -> Vec<(Kind, &'static str)> {
    messages
        .iter()
        .map(|m| (m.notice.kind, m.channel.name()))
        .collect()
}

#[test]
fn subscribers_hear_of_the_assignment_a_moved_eta_the_pickup_and_the_completion() {
    let t0 = Utc::now();
    let mut watcher = Watcher::new(FlightModel::default(), TimeDelta::seconds(300));
    let (mut d, mut r) = (
        Stream {
            id: "dlv-1",
            version: 0,
        },
        Stream {
            id: "drone-1",
            version: 0,
        },
    );
    let home = location(47.60, -122.30, 0.0).expect("a place");
    let registered = Drone::default()
        .register(&RegisterDrone::new("X8", 5.0, 60.0, 15.0, home).expect("a drone"))
        .expect("registers");
    let mut drone = Drone::replay(&registered, t0);
    for event in registered {
        assert!(watcher.apply_drone(&r.wrap(event, t0)).is_empty());
    }
    let account = Account::replay(
        &Account::default()
            .register(
                &RegisterAccount::new("Contoso", "ops@contoso.example").expect("an account"),
                "",
            )
            .expect("registers"),
        t0,
    );
    let plan = DeliveryPlan::new(
        location(47.61, -122.33, 0.0).expect("a pickup"),
        location(47.65, -122.30, 0.0).expect("a drop-off"),
        None,
        None,
    )
    .expect("a plan");
    let created = Delivery::default()
        .schedule(
            "acct-1",
            &account,
            &plan,
            false,
            ConfirmationType::None,
            "pkg-1",
            1.0,
        )
        .expect("scheduled");
    let mut delivery = Delivery::replay(&created, t0);
    for event in created {
        assert!(watcher.apply_delivery(&d.wrap(event, t0)).is_empty());
    }
    let subscribed = Event::NotificationRequested(NotificationRequested {
        email: Some("ada@example.com".into()),
        sms: None,
        webhook: Some("https://hooks.example.com/d".into()),
    });
    delivery.apply(&subscribed, t0);
    assert!(watcher.apply_delivery(&d.wrap(subscribed, t0)).is_empty());
    let webhook_version = d.version;

    let reserved = drone
        .reserve(
            "drone-1",
            "dlv-1",
            &delivery.job().expect("a job"),
            "attempt-1",
        )
        .expect("reserved");
    let Some(Event::DroneAssigned(reservation)) = reserved.first() else {
        unreachable!()
    };
    let t1 = t0 + TimeDelta::seconds(1);
    let assigned = delivery.assign_drone(reservation).expect("assigned");
    for event in &reserved {
        drone.apply(event, t1);
        assert!(watcher.apply_drone(&r.wrap(event.clone(), t1)).is_empty());
    }
    let mut owed = Vec::new();
    for event in assigned {
        delivery.apply(&event, t1);
        owed.extend(watcher.apply_delivery(&d.wrap(event, t1)));
    }
    assert_eq!(
        kinds(&owed),
        [
            (Kind::DroneAssigned, "email"),
            (Kind::DroneAssigned, "webhook")
        ]
    );
    let told = owed[0].notice.delivery_eta.expect("with the ETA");
    assert_eq!(owed[0].notice.drone_id.as_deref(), Some("drone-1"));
    assert_eq!(
        owed[1].channel,
        Channel::Webhook {
            url: "https://hooks.example.com/d".into(),
            version: webhook_version,
        }
    );
    assert_ne!(owed[0].id(), owed[1].id(), "one id per channel");

    // Reports on schedule move the ETA by less than the threshold: nothing to tell.
    let report = |at: DateTime<Utc>, lat: f64, lon: f64| {
        let telemetry =
            Telemetry::new(location(lat, lon, 60.0).expect("a place"), 90.0, at).expect("a report");
        drone
            .report_position(&telemetry, at, TimeDelta::seconds(30))
            .expect("accepted")
    };
    let t2 = t1 + TimeDelta::seconds(40);
    for event in report(t2, 47.601, -122.301) {
        assert!(watcher.apply_drone(&r.wrap(event, t2)).is_empty());
    }
    // Far off its course half an hour later: the ETA moves past the threshold.
    let t3 = t1 + TimeDelta::minutes(30);
    let moved: Vec<Message> = report(t3, 47.30, -122.90)
        .into_iter()
        .flat_map(|event| watcher.apply_drone(&r.wrap(event, t3)))
        .collect();
    assert_eq!(
        kinds(&moved),
        [(Kind::EtaChanged, "email"), (Kind::EtaChanged, "webhook")]
    );
    let new_eta = moved[0].notice.delivery_eta.expect("the new ETA");
    assert!(
        new_eta - told > TimeDelta::seconds(300),
        "{told} → {new_eta}"
    );

    let t4 = t3 + TimeDelta::minutes(1);
    let picked = delivery.pick_up("dlv-1", t4).expect("picked up");
    let owed: Vec<Message> = picked
        .into_iter()
        .flat_map(|event| {
            delivery.apply(&event, t4);
            watcher.apply_delivery(&d.wrap(event, t4))
        })
        .collect();
    assert_eq!(
        kinds(&owed),
        [(Kind::PickedUp, "email"), (Kind::PickedUp, "webhook")]
    );

    let failed = Event::DeliveryFailed(schemas::events::DeliveryFailed {
        reason: "storm".into(),
    });
    let t5 = t4 + TimeDelta::minutes(1);
    let owed = watcher.apply_delivery(&d.wrap(failed, t5));
    assert_eq!(
        kinds(&owed),
        [(Kind::Failed, "email"), (Kind::Failed, "webhook")]
    );
    assert_eq!(watcher.watched(), 0, "a finished delivery is let go");
}
