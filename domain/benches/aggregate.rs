//! Aggregate decide and apply: the pure work of the write model behind one command
//! (a decision on the folded state) and behind a replay (folding the events back).
//!
//! * `aggregate/delivery`: `Delivery::schedule` (the decision, with the owner folded),
//!   and `Delivery::apply` of its `DeliveryCreated` to a fresh delivery.
//! * `aggregate/account`, `aggregate/drone`: `register` and `apply` of what it returns.
//! * `aggregate/delivery_lifecycle`: folding a delivery through its whole life (created,
//!   assigned, picked up, completed), the events made by the domain's own decisions.
//!
//! Throughput is commands decided or events folded per second:
//!
//!   cargo bench -p domain --bench aggregate

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use domain::{
    Account, Aggregate, Confirmation, ConfirmationType, Delivery, DeliveryPlan, Drone, Event,
    Location, RegisterAccount, RegisterDrone, Stage, location,
};
use std::hint::black_box;
use std::time::Duration;

const ACCOUNT: &str = "0c7d2a8e-1f3b-4a5c-9d6e-7f8a9b0c1d2e";
const DRONE: &str = "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d";
const DELIVERY: &str = "3f6c1f0e-8d4b-4c1e-9a57-2b7e5a3f1c88";
const PACKAGE: &str = "5e4d3c2b-1a09-4f8e-8d7c-6b5a4f3e2d1c";
const ATTEMPT: &str = "7b6a5f4e-3d2c-4b1a-9f8e-7d6c5b4a3f2e";
const WEIGHT_KG: f64 = 1.2;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0)
        .single()
        .expect("time")
}

fn point(latitude: f64, longitude: f64) -> Location {
    location(latitude, longitude, 0.0).expect("a valid location")
}

/// Everything a command needs, parsed once as the HTTP edge would.
struct Inputs {
    register_account: RegisterAccount,
    register_drone: RegisterDrone,
    /// The owner, registered and active.
    account: Account,
    plan: DeliveryPlan,
}

fn inputs() -> Inputs {
    let register_account =
        RegisterAccount::new("Contoso Pharmacy", "ops@contoso.example").expect("account");
    let register_drone =
        RegisterDrone::new("DJI FlyCart 30", 5.0, 40.0, 15.0, point(47.6062, -122.3321))
            .expect("drone");
    let registered = Account::default()
        .register(&register_account, "")
        .expect("registers");
    let account = Account::replay(&registered, now());
    let plan = DeliveryPlan::new(
        point(47.6205, -122.3493),
        point(47.6606, -122.3123),
        Some(now() + TimeDelta::minutes(30)),
        Some(now() + TimeDelta::hours(3)),
    )
    .expect("plan");
    Inputs {
        register_account,
        register_drone,
        account,
        plan,
    }
}

fn schedule(delivery: &Delivery, inputs: &Inputs) -> Vec<Event> {
    delivery
        .schedule(
            ACCOUNT,
            &inputs.account,
            &inputs.plan,
            false,
            ConfirmationType::None,
            PACKAGE,
            WEIGHT_KG,
        )
        .expect("schedules")
}

/// A delivery's whole stream, each event with when it happened, made by the domain's
/// decisions in turn: scheduled, the drone reserved and taken, picked up, handed over.
fn lifecycle(inputs: &Inputs) -> Vec<(Event, DateTime<Utc>)> {
    let mut stream: Vec<(Event, DateTime<Utc>)> = Vec::new();
    let mut delivery = Delivery::default();
    let mut record = |delivery: &mut Delivery, events: Vec<Event>, at: DateTime<Utc>| {
        for event in events {
            delivery.apply(&event, at);
            stream.push((event, at));
        }
    };

    record(&mut delivery, schedule(&Delivery::default(), inputs), now());

    let registered = Drone::default()
        .register(&inputs.register_drone)
        .expect("registers");
    let drone = Drone::replay(&registered, now());
    let job = delivery.job().expect("awaits a drone");
    let reserved = drone
        .reserve(DRONE, DELIVERY, &job, ATTEMPT)
        .expect("reserves");
    let Some(Event::DroneAssigned(reservation)) = reserved.first() else {
        panic!("a reservation is a DroneAssigned");
    };
    let assigned = delivery.assign_drone(reservation).expect("assigns");
    record(&mut delivery, assigned, now() + TimeDelta::minutes(1));

    let picked_up_at = now() + TimeDelta::minutes(31);
    let picked_up = delivery.pick_up(DELIVERY, picked_up_at).expect("picks up");
    record(&mut delivery, picked_up, picked_up_at);

    let completed_at = now() + TimeDelta::minutes(45);
    let confirmation =
        Confirmation::new(ConfirmationType::None, delivery.dropoff, completed_at, None)
            .expect("confirmation");
    let completed = delivery
        .complete(DELIVERY, &confirmation)
        .expect("completes");
    record(&mut delivery, completed, completed_at);

    stream
}

fn delivery(c: &mut Criterion) {
    let inputs = inputs();
    let fresh = Delivery::default();
    let created = schedule(&fresh, &inputs);
    let at = now();

    let mut group = c.benchmark_group("aggregate/delivery");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    group.bench_function("schedule", |b| {
        b.iter(|| {
            black_box(&fresh).schedule(
                black_box(ACCOUNT),
                black_box(&inputs.account),
                black_box(&inputs.plan),
                black_box(false),
                black_box(ConfirmationType::None),
                black_box(PACKAGE),
                black_box(WEIGHT_KG),
            )
        })
    });
    group.throughput(Throughput::Elements(created.len() as u64));
    group.bench_function("apply/DeliveryCreated", |b| {
        b.iter_batched(
            Delivery::default,
            |mut delivery| {
                for event in &created {
                    delivery.apply(black_box(event), black_box(at));
                }
                delivery
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn account(c: &mut Criterion) {
    let inputs = inputs();
    let fresh = Account::default();
    let registered = fresh
        .register(&inputs.register_account, "")
        .expect("registers");

    let mut group = c.benchmark_group("aggregate/account");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    group.bench_function("register", |b| {
        b.iter(|| black_box(&fresh).register(black_box(&inputs.register_account), ""))
    });
    group.throughput(Throughput::Elements(registered.len() as u64));
    group.bench_function("apply/AccountRegistered", |b| {
        b.iter_batched(
            Account::default,
            |mut account| {
                for event in &registered {
                    account.apply(black_box(event));
                }
                account
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn drone(c: &mut Criterion) {
    let inputs = inputs();
    let fresh = Drone::default();
    let registered = fresh.register(&inputs.register_drone).expect("registers");
    let at = now();

    let mut group = c.benchmark_group("aggregate/drone");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    group.bench_function("register", |b| {
        b.iter(|| black_box(&fresh).register(black_box(&inputs.register_drone)))
    });
    group.throughput(Throughput::Elements(registered.len() as u64));
    group.bench_function("apply/DroneRegistered", |b| {
        b.iter_batched(
            Drone::default,
            |mut drone| {
                for event in &registered {
                    drone.apply(black_box(event), black_box(at));
                }
                drone
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn delivery_lifecycle(c: &mut Criterion) {
    let inputs = inputs();
    let stream = lifecycle(&inputs);
    assert_eq!(stream.len(), 4, "created, assigned, picked up, completed");
    let folded = stream
        .iter()
        .fold(Delivery::default(), |mut delivery, (event, at)| {
            delivery.apply(event, *at);
            delivery
        });
    assert_eq!(
        folded.stage,
        Some(Stage::Completed),
        "the fold ends completed"
    );

    let mut group = c.benchmark_group("aggregate/delivery_lifecycle");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(stream.len() as u64));
    group.bench_function("apply/created_assigned_picked_up_completed", |b| {
        b.iter_batched(
            Delivery::default,
            |mut delivery| {
                for (event, at) in &stream {
                    delivery.apply(black_box(event), *at);
                }
                delivery
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, delivery, account, drone, delivery_lifecycle);
criterion_main!(benches);
