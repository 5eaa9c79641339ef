//! A random workload of events for the projection tests (torn applies, rebuilds), and
//! every read-model row it can have touched.
#![allow(dead_code)] // each test binary uses its own part

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use domain::{DroneStatus, Stage};
use proptest::prelude::*;
use read_model::tables::{
    ACCOUNT_DELIVERIES, ACCOUNT_KEYS, ACCOUNTS, DELIVERIES, DELIVERIES_BY_STAGE, DELIVERY_TIMELINE,
    DRONE_POSITIONS, DRONES, FLEET, INVOICE_LINES, INVOICE_TRIPS, WHOLE_FLEET, invoice_partition,
};
use schemas::Codec;
use schemas::events::*;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use storage::{NewRecord, Order, ReadStore, Scan};
use uuid::Uuid;

/// Log partitions of every topic in these tests.
pub const PARTITIONS: u32 = 3;

/// An embedded log in `dir` with every topic, [`PARTITIONS`] each.
pub async fn log_in(dir: &std::path::Path) -> std::sync::Arc<storage_embedded::EmbeddedLog> {
    let log = storage_embedded::EmbeddedLog::open(dir).expect("log");
    let specs: Vec<storage::TopicSpec> = Topic::ALL
        .iter()
        .map(|t| storage::TopicSpec {
            name: t.name().into(),
            partitions: PARTITIONS,
        })
        .collect();
    storage::EventLog::create_topics(&log, &specs)
        .await
        .expect("topics");
    std::sync::Arc::new(log)
}

/// One step of a workload; the builder turns it into events when it is valid for the
/// state so far and skips it otherwise. `pick` chooses the aggregate, `value` a time or
/// a variant.
#[derive(Clone, Debug)]
pub struct Step {
    kind: u8,
    pick: u16,
    value: u16,
}

pub fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (0u8..14, any::<u16>(), any::<u16>()).prop_map(|(kind, pick, value)| Step {
            kind,
            pick,
            value,
        }),
        10..90,
    )
}

#[derive(Clone, Copy, PartialEq)]
pub enum Leg {
    Open,
    Assigned(usize),
    PickedUp(usize),
    Closed,
}

pub struct Account {
    pub id: String,
    pub version: u64,
    suspended: bool,
}

pub struct Drone {
    pub id: String,
    pub version: u64,
    busy: bool,
    returning: bool,
}

pub struct Delivery {
    pub id: String,
    pub version: u64,
    leg: Leg,
    attempts: u32,
}

/// Builds a workload's records and remembers every key the read models can hold.
pub struct Workload {
    codec: Codec,
    pub records: Vec<NewRecord>,
    minute: i64,
    pub accounts: Vec<Account>,
    pub drones: Vec<Drone>,
    pub deliveries: Vec<Delivery>,
    pub key_hashes: BTreeSet<String>,
}

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0)
        .single()
        .expect("time")
}

fn place(n: u16) -> Location {
    Location {
        latitude: 47.5 + f64::from(n % 100) / 1000.0,
        longitude: -122.4 + f64::from(n % 77) / 1000.0,
        altitude: 0.0,
    }
}

impl Workload {
    pub fn new(codec: Codec) -> Workload {
        Workload {
            codec,
            records: Vec::new(),
            minute: 0,
            accounts: Vec::new(),
            drones: Vec::new(),
            deliveries: Vec::new(),
            key_hashes: BTreeSet::new(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        base() + TimeDelta::minutes(self.minute)
    }

    fn emit(&mut self, topic: Topic, id: &str, version: u64, event: Event) {
        let envelope = Envelope {
            metadata: EventMetadata {
                event_id: Uuid::new_v4(),
                aggregate_id: id.into(),
                aggregate_version: version,
                occurred_at: self.now(),
                causation_id: "cmd:torn".into(),
                correlation_id: "cmd:torn".into(),
                principal: "operator".into(),
            },
            event,
        };
        self.records.push(NewRecord {
            topic: topic.name().into(),
            key: id.into(),
            value: Bytes::from(self.codec.encode(&envelope).expect("encode")),
            headers: Vec::new(),
        });
    }

    fn account_event(&mut self, at: usize, event: Event) {
        let account = &mut self.accounts[at];
        account.version += 1;
        let (id, version) = (account.id.clone(), account.version);
        self.emit(Topic::Accounts, &id, version, event);
    }

    fn drone_event(&mut self, at: usize, event: Event) {
        let drone = &mut self.drones[at];
        drone.version += 1;
        let (id, version) = (drone.id.clone(), drone.version);
        self.emit(Topic::Drones, &id, version, event);
    }

    fn delivery_event(&mut self, at: usize, event: Event) {
        let delivery = &mut self.deliveries[at];
        delivery.version += 1;
        let (id, version) = (delivery.id.clone(), delivery.version);
        self.emit(Topic::Deliveries, &id, version, event);
    }

    /// An event both aggregates record, on both topics (as the two-step commands do).
    fn both(&mut self, delivery: usize, drone: usize, event: Event) {
        self.delivery_event(delivery, event.clone());
        self.drone_event(drone, event);
    }

    fn hash(&mut self, n: u16) -> String {
        let hash = format!("{:064x}", u64::from(n) + 1_000 * self.records.len() as u64);
        self.key_hashes.insert(hash.clone());
        hash
    }

    pub fn step(&mut self, step: &Step) {
        self.minute += 1;
        let pick = usize::from(step.pick);
        let account = (!self.accounts.is_empty()).then(|| pick % self.accounts.len());
        let drone = (!self.drones.is_empty()).then(|| pick % self.drones.len());
        let delivery = (!self.deliveries.is_empty()).then(|| pick % self.deliveries.len());
        match step.kind {
            0 => {
                let id = format!("acct-{}", self.accounts.len());
                let api_key_hash = self.hash(step.value);
                self.accounts.push(Account {
                    id: id.clone(),
                    version: 0,
                    suspended: false,
                });
                let at = self.accounts.len() - 1;
                let event = Event::AccountRegistered(AccountRegistered {
                    name: format!("Account {id}"),
                    email: format!("{id}@example.com"),
                    api_key_hash,
                });
                self.account_event(at, event);
            }
            1 | 2 => {
                let Some(at) = account else { return };
                let suspend = !self.accounts[at].suspended;
                self.accounts[at].suspended = suspend;
                let event = if suspend {
                    Event::AccountSuspended(AccountSuspended {
                        reason: step.value.is_multiple_of(2).then(|| "unpaid".into()),
                    })
                } else {
                    Event::AccountReactivated(AccountReactivated {})
                };
                self.account_event(at, event);
            }
            3 => {
                let Some(at) = account else { return };
                let api_key_hash = self.hash(step.value);
                self.account_event(
                    at,
                    Event::AccountKeyRotated(AccountKeyRotated { api_key_hash }),
                );
            }
            4 => {
                let id = format!("drone-{}", self.drones.len());
                self.drones.push(Drone {
                    id,
                    version: 0,
                    busy: false,
                    returning: false,
                });
                let at = self.drones.len() - 1;
                let event = Event::DroneRegistered(DroneRegistered {
                    model: "X8".into(),
                    payload_kg: 5.0,
                    range_km: 40.0,
                    speed_mps: 15.0,
                    home: place(step.value),
                });
                self.drone_event(at, event);
            }
            5 => {
                // Reports arrive out of order: any time in the workload's ten hours.
                let Some(at) = drone else { return };
                let id = self.drones[at].id.clone();
                let version = self.drones[at].version;
                let reported = base() + TimeDelta::minutes(i64::from(step.value % 600));
                let event = Event::DronePositionReported(DronePositionReported {
                    position: place(step.value),
                    battery_pct: f64::from(step.value % 101),
                    at: reported,
                });
                self.emit(Topic::DroneTelemetry, &id, version, event);
            }
            6 | 7 => {
                let Some(owner) = account else { return };
                let id = format!("del-{}", self.deliveries.len());
                self.deliveries.push(Delivery {
                    id: id.clone(),
                    version: 0,
                    leg: Leg::Open,
                    attempts: 0,
                });
                let at = self.deliveries.len() - 1;
                let deadline = step
                    .value
                    .is_multiple_of(3)
                    .then(|| self.now() + TimeDelta::hours(2));
                let event = Event::DeliveryCreated(DeliveryCreated {
                    owner_id: self.accounts[owner].id.clone(),
                    pickup: place(step.value),
                    dropoff: place(step.value / 3),
                    pickup_time: None,
                    deadline,
                    expedited: step.value.is_multiple_of(5),
                    confirmation_required: ConfirmationType::None,
                    package_id: format!("pkg-{at}"),
                    package_weight_kg: 1.0 + f64::from(step.value % 4),
                });
                self.delivery_event(at, event);
            }
            8 => {
                let Some(at) = delivery else { return };
                let free = self.drones.iter().position(|d| !d.busy && !d.returning);
                let (Leg::Open, Some(drone)) = (self.deliveries[at].leg, free) else {
                    return;
                };
                self.deliveries[at].attempts += 1;
                self.deliveries[at].leg = Leg::Assigned(drone);
                self.drones[drone].busy = true;
                let event = Event::DroneAssigned(DroneAssigned {
                    delivery_id: self.deliveries[at].id.clone(),
                    drone_id: self.drones[drone].id.clone(),
                    route_km: 1.0 + f64::from(step.value % 30),
                    attempt: format!("attempt-{}", self.deliveries[at].attempts),
                });
                self.both(at, drone, event);
            }
            9 => {
                let Some(at) = delivery else { return };
                let Leg::Assigned(drone) = self.deliveries[at].leg else {
                    return;
                };
                self.deliveries[at].leg = Leg::Open;
                self.drones[drone].busy = false;
                let event = Event::DroneUnassigned(DroneUnassigned {
                    delivery_id: self.deliveries[at].id.clone(),
                    drone_id: self.drones[drone].id.clone(),
                    reason: "battery".into(),
                    attempt: format!("attempt-{}", self.deliveries[at].attempts),
                });
                self.both(at, drone, event);
            }
            10 => {
                let Some(at) = delivery else { return };
                let Leg::Assigned(drone) = self.deliveries[at].leg else {
                    return;
                };
                self.deliveries[at].leg = Leg::PickedUp(drone);
                let event = Event::DeliveryPickedUp(DeliveryPickedUp {
                    delivery_id: self.deliveries[at].id.clone(),
                    drone_id: self.drones[drone].id.clone(),
                    at: self.now(),
                });
                self.both(at, drone, event);
            }
            11 => {
                let Some(at) = delivery else { return };
                let Leg::PickedUp(drone) = self.deliveries[at].leg else {
                    return;
                };
                self.deliveries[at].leg = Leg::Closed;
                self.drones[drone].busy = false;
                self.drones[drone].returning = true;
                let event = Event::DeliveryCompleted(DeliveryCompleted {
                    delivery_id: self.deliveries[at].id.clone(),
                    drone_id: self.drones[drone].id.clone(),
                    confirmation_type: ConfirmationType::None,
                    location: place(step.value),
                    at: self.now(),
                    blob: None,
                });
                self.both(at, drone, event);
            }
            12 => {
                if let Some(drone) = self.drones.iter().position(|d| d.returning) {
                    self.drones[drone].returning = false;
                    self.drone_event(drone, Event::DroneDocked(DroneDocked {}));
                } else if let Some(at) = delivery.filter(|&d| self.deliveries[d].leg == Leg::Open) {
                    let event = Event::DeliveryRescheduled(DeliveryRescheduled {
                        pickup: place(step.value),
                        dropoff: place(step.value / 7),
                        pickup_time: Some(self.now() + TimeDelta::hours(1)),
                        deadline: Some(self.now() + TimeDelta::hours(4)),
                    });
                    self.delivery_event(at, event);
                }
            }
            _ => {
                let Some(at) = delivery else { return };
                if self.deliveries[at].leg != Leg::Open {
                    return;
                }
                self.deliveries[at].leg = Leg::Closed;
                let event = if step.value.is_multiple_of(2) {
                    Event::DeliveryCancelled(DeliveryCancelled {
                        reason: Some("changed my mind".into()),
                    })
                } else {
                    Event::DeliveryFailed(DeliveryFailed {
                        reason: "no landing spot".into(),
                    })
                };
                self.delivery_event(at, event);
            }
        }
    }
}

pub type Rows = Vec<(String, u64, Bytes)>;

/// Every row of every read-model table the workload can have touched, and every
/// checkpoint, read through the port.
pub async fn read_models(store: &dyn ReadStore, workload: &Workload) -> BTreeMap<String, Rows> {
    let mut partitions: Vec<(&str, String)> = Vec::new();
    for d in &workload.deliveries {
        for table in [DELIVERIES, DELIVERY_TIMELINE, INVOICE_TRIPS] {
            partitions.push((table, d.id.clone()));
        }
    }
    for a in &workload.accounts {
        partitions.push((ACCOUNTS, a.id.clone()));
        partitions.push((ACCOUNT_DELIVERIES, a.id.clone()));
        for month in [11, 12] {
            partitions.push((INVOICE_LINES, invoice_partition(&a.id, 2026, month)));
        }
    }
    for hash in &workload.key_hashes {
        partitions.push((ACCOUNT_KEYS, hash.clone()));
    }
    for d in &workload.drones {
        partitions.push((DRONES, d.id.clone()));
    }
    partitions.push((DRONE_POSITIONS, WHOLE_FLEET.into()));
    for stage in Stage::ALL {
        partitions.push((DELIVERIES_BY_STAGE, stage.as_str().into()));
    }
    for status in DroneStatus::ALL {
        partitions.push((FLEET, status.as_str().into()));
    }
    let mut all = BTreeMap::new();
    for (table, partition) in partitions {
        let scan = Scan {
            from: Bound::Unbounded,
            to: Bound::Unbounded,
            order: Order::Ascending,
            limit: 100_000,
        };
        let rows = store.scan(table, &partition, scan).await.expect("scan");
        let rows = rows
            .into_iter()
            .map(|r| (r.clustering, r.version, r.value))
            .collect();
        all.insert(format!("{table}/{partition}"), rows);
    }
    for projection in projections::all() {
        for topic in projection.topics() {
            for partition in 0..PARTITIONS {
                let name = (projection.name(), topic.name(), partition);
                let next = store.checkpoint(name.0, name.1, partition).await;
                let writer = store.checkpoint_writer(name.0, name.1, partition).await;
                let key = format!("checkpoint/{}/{}/{partition}", name.0, name.1);
                let value = format!("{:?} {:?}", next.expect("next"), writer.expect("writer"));
                all.insert(key, vec![(String::new(), 0, Bytes::from(value))]);
            }
        }
    }
    all
}
