//! The workflow's rules as a state machine: given the events the log holds (fed as the
//! command side writes them, with versions counted per aggregate), when the dispatcher is
//! asked at a given time, then it decides exactly these commands.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use domain::{Decision, DispatchPolicy, Dispatcher, FlightModel, Location, distance_km};
use schemas::events::{
    ConfirmationType, DeliveryCompleted, DeliveryCreated, DeliveryPickedUp, DroneAssigned, Event,
};

use crate::fixtures::*;

// --- the harness -------------------------------------------------------------------------

/// The dispatcher and the version of each aggregate's stream, as the log has them.
struct World {
    dispatcher: Dispatcher,
    versions: BTreeMap<String, u64>,
}

fn given_a_dispatcher() -> World {
    given_a_dispatcher_with(DispatchPolicy::default())
}

fn given_a_dispatcher_with(policy: DispatchPolicy) -> World {
    World {
        dispatcher: Dispatcher::new(FlightModel::default(), policy),
        versions: BTreeMap::new(),
    }
}

/// What one call of `decide` answered.
struct Decided(Vec<Decision>);

impl Decided {
    #[track_caller]
    fn then_expect(self, expected: Vec<Decision>) -> Vec<Decision> {
        assert_eq!(self.0, expected);
        self.0
    }

    #[track_caller]
    fn then_nothing(self) {
        assert_eq!(self.0, vec![]);
    }

    /// Exactly one decision, for further checks.
    #[track_caller]
    fn then_one(self) -> Decision {
        assert_eq!(self.0.len(), 1, "{:?}", self.0);
        self.0.into_iter().next().expect("one decision")
    }
}

impl World {
    fn next_version(&mut self, id: &str) -> u64 {
        let version = self.versions.entry(id.to_owned()).or_default();
        *version += 1;
        *version
    }

    fn version(&self, id: &str) -> u64 {
        self.versions.get(id).copied().unwrap_or_default()
    }

    /// An event of a drone's own stream: the drone's next version.
    fn drone(&mut self, id: &str, event: Event, when: DateTime<Utc>) -> &mut Self {
        let version = self.next_version(id);
        self.dispatcher.apply_drone(id, version, &event, when);
        self
    }

    /// Telemetry: the drone's version stays as it is.
    fn report(
        &mut self,
        id: &str,
        position: Location,
        battery_pct: f64,
        when: DateTime<Utc>,
    ) -> &mut Self {
        let version = self.version(id);
        let event = position_reported(position, battery_pct, when);
        self.dispatcher.apply_drone(id, version, &event, when);
        self
    }

    /// An event of a delivery's stream: the delivery's next version.
    fn delivery(&mut self, id: &str, event: Event, when: DateTime<Utc>) -> &mut Self {
        let version = self.next_version(id);
        self.dispatcher.apply_delivery(id, version, &event, when);
        self
    }

    /// A fact written to both streams (assignment, pickup, completion).
    fn both(
        &mut self,
        delivery_id: &str,
        drone_id: &str,
        event: Event,
        when: DateTime<Utc>,
    ) -> &mut Self {
        self.delivery(delivery_id, event.clone(), when)
            .drone(drone_id, event, when)
    }

    fn assigned(&mut self, delivery_id: &str, drone_id: &str, when: DateTime<Utc>) -> &mut Self {
        self.both(
            delivery_id,
            drone_id,
            assignment(delivery_id, drone_id),
            when,
        )
    }

    fn picked_up(&mut self, delivery_id: &str, drone_id: &str, when: DateTime<Utc>) -> &mut Self {
        let event = Event::DeliveryPickedUp(DeliveryPickedUp {
            delivery_id: delivery_id.into(),
            drone_id: drone_id.into(),
            at: when,
        });
        self.both(delivery_id, drone_id, event, when)
    }

    fn completed(&mut self, delivery_id: &str, drone_id: &str, when: DateTime<Utc>) -> &mut Self {
        let event = Event::DeliveryCompleted(DeliveryCompleted {
            delivery_id: delivery_id.into(),
            drone_id: drone_id.into(),
            confirmation_type: ConfirmationType::None,
            location: dropoff(),
            at: when,
            blob: None,
        });
        self.both(delivery_id, drone_id, event, when)
    }

    /// `decide` without a tick: what the events since the last call changed.
    fn when_deciding(&mut self, now: DateTime<Utc>) -> Decided {
        Decided(self.dispatcher.decide(now, false))
    }

    /// `decide` on a tick: also the rules that depend on time alone.
    fn when_ticking(&mut self, now: DateTime<Utc>) -> Decided {
        Decided(self.dispatcher.decide(now, true))
    }

    /// The command was refused (or could not be sent).
    fn refused(&mut self, decision: &Decision, now: DateTime<Utc>) -> &mut Self {
        self.dispatcher.settle(decision, false, now);
        self
    }
}

fn t0() -> DateTime<Utc> {
    at(9, 0)
}

fn ms(n: i64) -> TimeDelta {
    TimeDelta::milliseconds(n)
}

/// A delivery from the fixtures' pickup to their drop-off, to go as soon as possible.
fn asap() -> DeliveryCreated {
    DeliveryCreated {
        owner_id: ACCOUNT.into(),
        pickup: pickup(),
        dropoff: dropoff(),
        pickup_time: None,
        deadline: None,
        expedited: false,
        confirmation_required: ConfirmationType::None,
        package_id: PACKAGE.into(),
        package_weight_kg: WEIGHT_KG,
    }
}

fn created(delivery: DeliveryCreated) -> Event {
    Event::DeliveryCreated(delivery)
}

fn assignment(delivery_id: &str, drone_id: &str) -> Event {
    Event::DroneAssigned(DroneAssigned {
        delivery_id: delivery_id.into(),
        drone_id: drone_id.into(),
        route_km: 13.5,
        attempt: format!("{drone_id}-for-{delivery_id}"),
    })
}

fn assign(delivery_id: &str, version: u64, drone_id: &str) -> Decision {
    Decision::Assign {
        delivery_id: delivery_id.into(),
        version,
        drone_id: drone_id.into(),
    }
}

/// The default drone, based downtown (~2 km from the pickup).
fn downtown_drone() -> Event {
    drone_registered()
}

/// A drone based at the drop-off (~5.3 km from the pickup).
fn dropoff_drone() -> Event {
    drone_registered_at(dropoff(), PAYLOAD_KG, RANGE_KM)
}

/// `DRONE` registered and `DELIVERY` waiting, assigned to it at `t0`.
fn a_drone_on_its_way(delivery: DeliveryCreated) -> World {
    let mut world = given_a_dispatcher();
    world
        .drone(DRONE, downtown_drone(), at(8, 0))
        .delivery(DELIVERY, created(delivery), at(8, 55))
        .assigned(DELIVERY, DRONE, t0());
    world
}

/// `DRONE` has delivered `DELIVERY` and flies home.
fn a_drone_returning() -> World {
    let mut world = a_drone_on_its_way(asap());
    world
        .picked_up(DELIVERY, DRONE, at(9, 5))
        .completed(DELIVERY, DRONE, at(9, 12));
    world
}

// --- dispatch: which drone -----------------------------------------------------------------

#[test]
fn a_waiting_delivery_goes_to_the_nearest_idle_drone_that_fits() {
    let mut world = given_a_dispatcher();
    world
        .drone(DRONE, dropoff_drone(), at(8, 0))
        .drone(OTHER_DRONE, downtown_drone(), at(8, 0))
        .delivery(DELIVERY, created(asap()), t0());

    world
        .when_deciding(t0())
        .then_expect(vec![assign(DELIVERY, 1, OTHER_DRONE)]);
}

#[test]
fn an_idle_drone_is_where_it_last_reported() {
    let mut world = given_a_dispatcher();
    world
        .drone(DRONE, dropoff_drone(), at(8, 0))
        .drone(OTHER_DRONE, downtown_drone(), at(8, 0))
        .report(DRONE, pickup(), 100.0, at(8, 50))
        .delivery(DELIVERY, created(asap()), t0());

    world
        .when_deciding(t0())
        .then_expect(vec![assign(DELIVERY, 1, DRONE)]);
}

#[test]
fn a_nearer_drone_whose_payload_is_too_small_is_passed_over() {
    let mut world = given_a_dispatcher();
    world
        .drone(DRONE, dropoff_drone(), at(8, 0))
        .drone(
            OTHER_DRONE,
            drone_registered_with(WEIGHT_KG / 2.0, RANGE_KM),
            at(8, 0),
        )
        .delivery(DELIVERY, created(asap()), t0());

    world
        .when_deciding(t0())
        .then_expect(vec![assign(DELIVERY, 1, DRONE)]);
}

#[test]
fn a_nearer_drone_whose_battery_is_too_low_is_passed_over() {
    let mut world = given_a_dispatcher();
    world
        .drone(DRONE, dropoff_drone(), at(8, 0))
        .drone(OTHER_DRONE, downtown_drone(), at(8, 0))
        // ~13.5 km from downtown needs ~34% and 20% must remain.
        .report(OTHER_DRONE, home(), 50.0, at(8, 50))
        .delivery(DELIVERY, created(asap()), t0());

    world
        .when_deciding(t0())
        .then_expect(vec![assign(DELIVERY, 1, DRONE)]);
}

#[test]
fn one_pass_never_gives_one_drone_to_two_deliveries() {
    let mut world = given_a_dispatcher();
    world
        .drone(DRONE, downtown_drone(), at(8, 0))
        .delivery(DELIVERY, created(asap()), t0())
        .delivery(OTHER_DELIVERY, created(asap()), t0() + ms(1));

    world
        .when_deciding(t0())
        .then_expect(vec![assign(DELIVERY, 1, DRONE)]);
    // The second waits for a drone.
    world.when_ticking(t0() + ms(10)).then_nothing();
    assert_eq!(world.dispatcher.queued(), 2);
}

#[test]
fn a_drone_held_by_an_undecided_assignment_is_not_given_to_another_delivery() {
    let mut world = given_a_dispatcher();
    world
        .drone(DRONE, downtown_drone(), at(8, 0))
        .delivery(DELIVERY, created(asap()), t0());
    world
        .when_deciding(t0())
        .then_expect(vec![assign(DELIVERY, 1, DRONE)]);

    world.delivery(OTHER_DELIVERY, created(asap()), t0() + ms(100));

    world.when_deciding(t0() + ms(100)).then_nothing();
}

#[test]
fn a_drone_stays_held_until_its_own_stream_shows_the_assignment() {
    let mut world = given_a_dispatcher();
    world
        .drone(DRONE, downtown_drone(), at(8, 0))
        .delivery(DELIVERY, created(asap()), t0());
    world
        .when_deciding(t0())
        .then_expect(vec![assign(DELIVERY, 1, DRONE)]);

    // The delivery's topic is read first; the drone's stream is behind.
    world
        .delivery(DELIVERY, assignment(DELIVERY, DRONE), t0() + ms(50))
        .delivery(OTHER_DELIVERY, created(asap()), t0() + ms(100));

    world
        .when_ticking(t0() + TimeDelta::seconds(40))
        .then_nothing();
}

// --- dispatch: in which order ----------------------------------------------------------------

#[test]
fn an_expedited_delivery_goes_first_even_if_created_later() {
    let mut world = given_a_dispatcher();
    world
        .drone(DRONE, downtown_drone(), at(8, 0))
        .delivery(DELIVERY, created(asap()), t0())
        .delivery(
            OTHER_DELIVERY,
            created(DeliveryCreated {
                expedited: true,
                ..asap()
            }),
            t0() + TimeDelta::minutes(1),
        );

    world
        .when_deciding(t0() + TimeDelta::minutes(1))
        .then_expect(vec![assign(OTHER_DELIVERY, 1, DRONE)]);
}

#[test]
fn among_equals_the_earliest_deadline_goes_first_and_no_deadline_last() {
    let mut world = given_a_dispatcher();
    world
        .drone(DRONE, downtown_drone(), at(8, 0))
        .drone(OTHER_DRONE, dropoff_drone(), at(8, 0))
        .delivery("no-deadline", created(asap()), t0())
        .delivery(
            DELIVERY,
            created(DeliveryCreated {
                deadline: Some(at(12, 0)),
                ..asap()
            }),
            t0() + ms(1),
        )
        .delivery(
            OTHER_DELIVERY,
            created(DeliveryCreated {
                deadline: Some(at(11, 0)),
                ..asap()
            }),
            t0() + ms(2),
        );

    // Two drones for three deliveries: the nearer to the earliest deadline.
    world.when_deciding(t0() + ms(2)).then_expect(vec![
        assign(OTHER_DELIVERY, 1, DRONE),
        assign(DELIVERY, 1, OTHER_DRONE),
    ]);
}

#[test]
fn among_equals_the_oldest_goes_first() {
    let mut world = given_a_dispatcher();
    world
        .drone(DRONE, downtown_drone(), at(8, 0))
        .delivery(OTHER_DELIVERY, created(asap()), t0())
        .delivery(DELIVERY, created(asap()), t0() + ms(1));

    world
        .when_deciding(t0() + ms(1))
        .then_expect(vec![assign(OTHER_DELIVERY, 1, DRONE)]);
}

#[test]
fn the_policy_can_turn_the_expedited_rule_off() {
    let mut world = given_a_dispatcher_with(DispatchPolicy {
        expedited_first: false,
        ..DispatchPolicy::default()
    });
    world
        .drone(DRONE, downtown_drone(), at(8, 0))
        .delivery(OTHER_DELIVERY, created(asap()), t0())
        .delivery(
            DELIVERY,
            created(DeliveryCreated {
                expedited: true,
                ..asap()
            }),
            t0() + TimeDelta::minutes(1),
        );

    world
        .when_deciding(t0() + TimeDelta::minutes(1))
        .then_expect(vec![assign(OTHER_DELIVERY, 1, DRONE)]);
}

// --- dispatch: waiting for a drone -------------------------------------------------------------

#[test]
fn with_no_drone_free_a_delivery_waits() {
    let mut world = given_a_dispatcher();
    world
        .drone(DRONE, downtown_drone(), at(8, 0))
        .delivery(OTHER_DELIVERY, created(asap()), at(8, 58))
        .assigned(OTHER_DELIVERY, DRONE, at(8, 59))
        .report(DRONE, aloft(home()), 99.0, t0())
        .delivery(DELIVERY, created(asap()), t0());

    world.when_deciding(t0()).then_nothing();
    world
        .when_ticking(t0() + TimeDelta::seconds(1))
        .then_nothing();
    assert_eq!(world.dispatcher.queued(), 1);
}

#[test]
fn a_drone_registered_later_takes_the_waiting_delivery() {
    let mut world = given_a_dispatcher();
    world
        .drone(OTHER_DRONE, downtown_drone(), at(8, 0))
        .drone(OTHER_DRONE, drone_grounded(), at(8, 10))
        .delivery(DELIVERY, created(asap()), t0());
    world.when_deciding(t0()).then_nothing();

    world.drone(DRONE, downtown_drone(), t0() + TimeDelta::minutes(5));

    world
        .when_deciding(t0() + TimeDelta::minutes(5))
        .then_expect(vec![assign(DELIVERY, 1, DRONE)]);
}

#[test]
fn a_drone_returned_to_service_takes_the_waiting_delivery() {
    let mut world = given_a_dispatcher();
    world
        .drone(DRONE, downtown_drone(), at(8, 0))
        .drone(DRONE, drone_grounded(), at(8, 10))
        .delivery(DELIVERY, created(asap()), t0());
    world.when_deciding(t0()).then_nothing();

    world.drone(DRONE, drone_returned(), t0() + TimeDelta::minutes(5));

    world
        .when_deciding(t0() + TimeDelta::minutes(5))
        .then_expect(vec![assign(DELIVERY, 1, DRONE)]);
}

#[test]
fn with_no_drone_registered_at_all_a_delivery_just_waits() {
    let mut world = given_a_dispatcher();
    world.delivery(DELIVERY, created(asap()), t0());

    world.when_deciding(t0()).then_nothing();
    world
        .when_ticking(t0() + TimeDelta::minutes(1))
        .then_nothing();

    world.drone(DRONE, downtown_drone(), t0() + TimeDelta::minutes(2));
    world
        .when_deciding(t0() + TimeDelta::minutes(2))
        .then_expect(vec![assign(DELIVERY, 1, DRONE)]);
}

#[test]
fn telemetry_read_before_its_drone_registration_is_no_fleet_yet() {
    let mut world = given_a_dispatcher();
    // The telemetry topic is read ahead of the drones' topic.
    world
        .report(DRONE, home(), 100.0, at(8, 59))
        .delivery(DELIVERY, created(asap()), t0());

    world.when_deciding(t0()).then_nothing();
    world
        .when_ticking(t0() + TimeDelta::minutes(1))
        .then_nothing();

    world.drone(DRONE, downtown_drone(), t0() + TimeDelta::minutes(2));
    world
        .when_deciding(t0() + TimeDelta::minutes(2))
        .then_expect(vec![assign(DELIVERY, 1, DRONE)]);
}

#[test]
fn a_delivery_too_heavy_for_every_drone_of_the_fleet_fails() {
    let mut world = given_a_dispatcher();
    world
        .drone(DRONE, downtown_drone(), at(8, 0))
        .drone(OTHER_DRONE, dropoff_drone(), at(8, 0))
        .delivery(
            DELIVERY,
            created(DeliveryCreated {
                package_weight_kg: PAYLOAD_KG + 1.0,
                ..asap()
            }),
            t0(),
        );

    let decision = world.when_deciding(t0()).then_one();
    assert!(
        matches!(&decision, Decision::Fail { delivery_id, version: 1, reason }
            if delivery_id == DELIVERY && !reason.is_empty()),
        "{decision:?}"
    );
}

#[test]
fn a_delivery_whose_route_is_beyond_every_drones_range_fails() {
    let mut world = given_a_dispatcher();
    world
        .drone(DRONE, downtown_drone(), at(8, 0))
        .drone(OTHER_DRONE, dropoff_drone(), at(8, 0))
        .delivery(
            DELIVERY,
            created(DeliveryCreated {
                dropoff: portland(),
                ..asap()
            }),
            t0(),
        );

    let decision = world.when_deciding(t0()).then_one();
    assert!(
        matches!(&decision, Decision::Fail { delivery_id, version: 1, reason }
            if delivery_id == DELIVERY && !reason.is_empty()),
        "{decision:?}"
    );
}

#[test]
fn a_delivery_no_drone_could_ever_carry_fails_even_while_every_drone_is_busy() {
    let mut world = given_a_dispatcher();
    world
        .drone(DRONE, downtown_drone(), at(8, 0))
        .drone(DRONE, drone_grounded(), at(8, 10))
        .delivery(
            DELIVERY,
            created(DeliveryCreated {
                package_weight_kg: PAYLOAD_KG + 1.0,
                ..asap()
            }),
            t0(),
        );

    let decision = world.when_deciding(t0()).then_one();
    assert!(
        matches!(&decision, Decision::Fail { delivery_id, version: 1, .. } if delivery_id == DELIVERY),
        "{decision:?}"
    );
}

#[test]
fn an_unconfirmed_failure_is_decided_again_unless_a_drone_that_can_carry_it_joined() {
    // A delivery too heavy for the fleet, whose failure is decided once.
    let failed_once = || {
        let mut world = given_a_dispatcher();
        world.drone(DRONE, downtown_drone(), at(8, 0)).delivery(
            DELIVERY,
            created(DeliveryCreated {
                package_weight_kg: PAYLOAD_KG + 1.0,
                ..asap()
            }),
            t0(),
        );
        assert!(matches!(
            world.when_deciding(t0()).then_one(),
            Decision::Fail { .. }
        ));
        world
    };
    // The log never shows the failure: once the decision expired, a tick decides again.
    let later = t0() + TimeDelta::hours(1);
    let mut world = failed_once();
    assert!(matches!(
        world.when_ticking(later).then_one(),
        Decision::Fail { .. }
    ));

    // Had a drone that can carry it joined meanwhile, it would be assigned instead.
    let mut world = failed_once();
    world.drone(
        OTHER_DRONE,
        drone_registered_at(home(), PAYLOAD_KG + 5.0, RANGE_KM),
        t0() + TimeDelta::minutes(1),
    );
    world
        .when_ticking(later)
        .then_expect(vec![assign(DELIVERY, 1, OTHER_DRONE)]);
}

#[test]
fn a_delivery_with_a_future_pickup_time_is_assigned_once_its_drone_must_leave() {
    let mut world = given_a_dispatcher();
    world.drone(DRONE, downtown_drone(), at(8, 0)).delivery(
        DELIVERY,
        created(DeliveryCreated {
            pickup_time: Some(at(11, 0)),
            ..asap()
        }),
        t0(),
    );
    let model = FlightModel::default();
    let lead = model.takeoff
        + model.flight_time(distance_km(&home(), &pickup()), SPEED_MPS)
        + model.landing;
    let leave = at(11, 0) - lead - DispatchPolicy::default().margin;

    world.when_deciding(t0()).then_nothing();
    world.when_ticking(leave - ms(1)).then_nothing();
    world
        .when_ticking(leave)
        .then_expect(vec![assign(DELIVERY, 1, DRONE)]);
}

#[test]
fn a_delivery_still_waiting_at_its_deadline_fails() {
    let mut world = given_a_dispatcher();
    world
        .drone(DRONE, downtown_drone(), at(8, 0))
        .drone(DRONE, drone_grounded(), at(8, 10))
        .delivery(
            DELIVERY,
            created(DeliveryCreated {
                deadline: Some(at(10, 0)),
                ..asap()
            }),
            t0(),
        );

    world.when_deciding(t0()).then_nothing();
    world.when_ticking(at(10, 0) - ms(1)).then_nothing();
    let decision = world.when_ticking(at(10, 0)).then_one();
    assert!(
        matches!(&decision, Decision::Fail { delivery_id, version: 1, reason }
            if delivery_id == DELIVERY && !reason.is_empty()),
        "{decision:?}"
    );
}

// --- the flight, from telemetry ----------------------------------------------------------------

#[test]
fn a_drone_reporting_at_the_pickup_after_its_assignment_picks_up() {
    let mut world = a_drone_on_its_way(asap());
    world.report(DRONE, aloft(pickup()), 95.0, at(9, 3));

    world
        .when_deciding(at(9, 3))
        .then_expect(vec![Decision::PickUp {
            delivery_id: DELIVERY.into(),
            version: 2,
        }]);
}

#[test]
fn a_report_at_the_pickup_from_before_the_assignment_is_no_pickup() {
    let mut world = given_a_dispatcher();
    world
        .drone(DRONE, downtown_drone(), at(8, 0))
        .report(DRONE, pickup(), 100.0, at(8, 58))
        .delivery(DELIVERY, created(asap()), at(8, 59))
        .assigned(DELIVERY, DRONE, t0());

    world.when_deciding(t0()).then_nothing();
    world
        .when_ticking(t0() + TimeDelta::seconds(10))
        .then_nothing();
}

#[test]
fn a_drone_reporting_at_the_dropoff_completes_where_and_when_it_reported() {
    let mut world = a_drone_on_its_way(asap());
    world.picked_up(DELIVERY, DRONE, at(9, 5));
    // About 11 m from the drop-off: within the arrival radius.
    let there = point(47.6607, -122.3123);
    world.report(DRONE, there, 80.0, at(9, 11));

    world
        .when_deciding(at(9, 11) + ms(300))
        .then_expect(vec![Decision::Complete {
            delivery_id: DELIVERY.into(),
            version: 3,
            location: there,
            at: at(9, 11),
        }]);
}

#[test]
fn a_drone_at_the_dropoff_does_not_complete_a_delivery_that_requires_a_confirmation() {
    let mut world = a_drone_on_its_way(DeliveryCreated {
        confirmation_required: ConfirmationType::Picture,
        ..asap()
    });
    world
        .picked_up(DELIVERY, DRONE, at(9, 5))
        .report(DRONE, dropoff(), 80.0, at(9, 11));

    world.when_deciding(at(9, 11)).then_nothing();
    world.when_ticking(at(9, 11) + ms(500)).then_nothing();
}

#[test]
fn a_returning_drone_reporting_at_home_docks() {
    let mut world = a_drone_returning();
    world.report(DRONE, home(), 60.0, at(9, 20));

    world
        .when_deciding(at(9, 20))
        .then_expect(vec![Decision::Dock {
            drone_id: DRONE.into(),
            version: 4,
        }]);
}

#[test]
fn a_charging_drone_is_ready_once_its_battery_reaches_ready_pct() {
    let mut world = a_drone_returning();
    world
        .report(DRONE, home(), 50.0, at(9, 20))
        .drone(DRONE, drone_docked(), at(9, 21));
    // 30 points to 80% at 2% a minute, from docking.
    let charged = at(9, 36);

    world.when_deciding(at(9, 21)).then_nothing();
    world.when_ticking(charged - ms(1)).then_nothing();
    world
        .when_ticking(charged)
        .then_expect(vec![Decision::Ready {
            drone_id: DRONE.into(),
            version: 5,
        }]);
}

#[test]
fn a_charging_drone_that_never_reported_counts_as_charged() {
    // No telemetry at all: the operator docked it.
    let mut world = a_drone_returning();
    world.drone(DRONE, drone_docked(), at(9, 21));

    world
        .when_ticking(at(9, 21) + ms(1))
        .then_expect(vec![Decision::Ready {
            drone_id: DRONE.into(),
            version: 5,
        }]);
}

// --- compensation ------------------------------------------------------------------------------

#[test]
fn a_grounded_drone_headed_to_pickup_is_unassigned() {
    let mut world = a_drone_on_its_way(asap());
    world.drone(DRONE, drone_grounded(), at(9, 2));

    let decision = world.when_deciding(at(9, 2)).then_one();
    assert!(
        matches!(&decision, Decision::Unassign { delivery_id, version: 2, reason }
            if delivery_id == DELIVERY && !reason.is_empty()),
        "{decision:?}"
    );
}

#[test]
fn a_grounded_drone_after_pickup_fails_its_delivery() {
    let mut world = a_drone_on_its_way(asap());
    world
        .picked_up(DELIVERY, DRONE, at(9, 5))
        .drone(DRONE, drone_grounded(), at(9, 7));

    let decision = world.when_deciding(at(9, 7)).then_one();
    assert!(
        matches!(&decision, Decision::Fail { delivery_id, version: 3, reason }
            if delivery_id == DELIVERY && !reason.is_empty()),
        "{decision:?}"
    );
}

#[test]
fn a_drone_on_a_delivery_silent_longer_than_silent_after_is_grounded() {
    let mut world = a_drone_on_its_way(asap());
    world.report(DRONE, aloft(home()), 99.0, at(9, 1));
    let silent_after = DispatchPolicy::default().silent_after;

    world.when_deciding(at(9, 1)).then_nothing();
    world.when_ticking(at(9, 1) + silent_after).then_nothing();
    let decision = world
        .when_ticking(at(9, 1) + silent_after + ms(1))
        .then_one();
    assert!(
        matches!(&decision, Decision::Ground { drone_id, version: 2, reason }
            if drone_id == DRONE && !reason.is_empty()),
        "{decision:?}"
    );
}

#[test]
fn a_drone_on_a_delivery_that_never_reported_is_silent_from_its_assignment() {
    let mut world = a_drone_on_its_way(asap());
    let silent_after = DispatchPolicy::default().silent_after;

    world.when_ticking(t0() + silent_after).then_nothing();
    let decision = world.when_ticking(t0() + silent_after + ms(1)).then_one();
    assert!(
        matches!(&decision, Decision::Ground { drone_id, version: 2, .. } if drone_id == DRONE),
        "{decision:?}"
    );
}

#[test]
fn unassigning_failing_and_grounding_are_the_compensations() {
    let delivery_id = || DELIVERY.to_owned();
    let drone_id = || DRONE.to_owned();
    let reason = || "why".to_owned();
    let compensations = [
        Decision::Unassign {
            delivery_id: delivery_id(),
            version: 2,
            reason: reason(),
        },
        Decision::Fail {
            delivery_id: delivery_id(),
            version: 2,
            reason: reason(),
        },
        Decision::Ground {
            drone_id: drone_id(),
            version: 2,
            reason: reason(),
        },
    ];
    let others = [
        assign(DELIVERY, 1, DRONE),
        Decision::PickUp {
            delivery_id: delivery_id(),
            version: 2,
        },
        Decision::Complete {
            delivery_id: delivery_id(),
            version: 3,
            location: dropoff(),
            at: t0(),
        },
        Decision::Dock {
            drone_id: drone_id(),
            version: 4,
        },
        Decision::Ready {
            drone_id: drone_id(),
            version: 5,
        },
    ];
    for decision in &compensations {
        assert!(decision.is_compensation(), "{decision:?}");
    }
    for decision in &others {
        assert!(!decision.is_compensation(), "{decision:?}");
    }
}

// --- tentative decisions -------------------------------------------------------------------------

/// `DRONE` idle downtown and `DELIVERY` waiting for it.
fn a_delivery_and_a_drone() -> World {
    let mut world = given_a_dispatcher();
    world
        .drone(DRONE, downtown_drone(), at(8, 0))
        .delivery(DELIVERY, created(asap()), t0());
    world
}

#[test]
fn a_decision_is_not_made_again_before_the_log_shows_it() {
    let mut world = a_delivery_and_a_drone();

    world
        .when_deciding(t0())
        .then_expect(vec![assign(DELIVERY, 1, DRONE)]);
    world.when_deciding(t0() + ms(100)).then_nothing();
    world.when_ticking(t0() + ms(200)).then_nothing();
}

#[test]
fn a_refused_decision_is_made_again_after_retry_after_with_the_same_key() {
    let mut world = a_delivery_and_a_drone();
    let retry_after = DispatchPolicy::default().retry_after;
    let first = world
        .when_deciding(t0())
        .then_expect(vec![assign(DELIVERY, 1, DRONE)]);

    world.refused(&first[0], t0() + ms(20));

    world
        .when_deciding(t0() + ms(20) + retry_after - ms(1))
        .then_nothing();
    let again = world
        .when_deciding(t0() + ms(20) + retry_after)
        .then_expect(first.clone());
    assert_eq!(again[0].idempotency_key(), first[0].idempotency_key());
}

#[test]
fn once_the_log_shows_its_effect_a_decision_is_not_made_again() {
    let mut world = a_delivery_and_a_drone();
    world
        .when_deciding(t0())
        .then_expect(vec![assign(DELIVERY, 1, DRONE)]);

    world.assigned(DELIVERY, DRONE, t0() + ms(50));

    let confirm_within = DispatchPolicy::default().confirm_within;
    world.when_deciding(t0() + ms(60)).then_nothing();
    world
        .when_ticking(t0() + confirm_within + ms(1))
        .then_nothing();
}

#[test]
fn a_decision_not_confirmed_within_confirm_within_is_made_again() {
    let mut world = a_delivery_and_a_drone();
    let confirm_within = DispatchPolicy::default().confirm_within;
    let first = world
        .when_deciding(t0())
        .then_expect(vec![assign(DELIVERY, 1, DRONE)]);

    world
        .when_deciding(t0() + confirm_within - ms(1))
        .then_nothing();
    world
        .when_deciding(t0() + confirm_within)
        .then_expect(first);
}

#[test]
fn a_refused_fail_of_a_delivery_no_drone_could_carry_is_made_again() {
    let mut world = given_a_dispatcher();
    world.drone(DRONE, downtown_drone(), at(8, 0)).delivery(
        DELIVERY,
        created(DeliveryCreated {
            package_weight_kg: PAYLOAD_KG + 1.0,
            ..asap()
        }),
        t0(),
    );
    let fail = world.when_deciding(t0()).then_one();
    assert!(matches!(fail, Decision::Fail { .. }), "{fail:?}");

    world.refused(&fail, t0());

    let retry_after = DispatchPolicy::default().retry_after;
    let again = world.when_ticking(t0() + retry_after).then_one();
    assert_eq!(again, fail);
    assert_eq!(again.idempotency_key(), fail.idempotency_key());
}

#[test]
fn a_refused_pickup_is_made_again_on_a_tick_after_retry_after() {
    let mut world = a_drone_on_its_way(asap());
    world.report(DRONE, pickup(), 95.0, at(9, 3));
    let pick_up = world.when_deciding(at(9, 3)).then_one();
    assert!(matches!(pick_up, Decision::PickUp { .. }), "{pick_up:?}");

    world.refused(&pick_up, at(9, 3));

    let retry_after = DispatchPolicy::default().retry_after;
    world
        .when_ticking(at(9, 3) + retry_after - ms(1))
        .then_nothing();
    world
        .when_ticking(at(9, 3) + retry_after)
        .then_expect(vec![pick_up]);
}

#[test]
fn the_idempotency_key_names_the_action_the_aggregate_and_its_version() {
    assert_eq!(
        assign(DELIVERY, 1, DRONE).idempotency_key(),
        "workflow:assign:delivery-1:1"
    );
    assert_eq!(
        Decision::Dock {
            drone_id: DRONE.into(),
            version: 4,
        }
        .idempotency_key(),
        "workflow:dock:drone-1:4"
    );
    // Another version of the same aggregate is another command.
    assert_ne!(
        assign(DELIVERY, 1, DRONE).idempotency_key(),
        assign(DELIVERY, 2, DRONE).idempotency_key()
    );
}

#[test]
fn a_delivery_event_read_twice_changes_nothing() {
    let mut world = a_delivery_and_a_drone();
    world
        .when_deciding(t0())
        .then_expect(vec![assign(DELIVERY, 1, DRONE)]);
    world.assigned(DELIVERY, DRONE, t0() + ms(50));

    // A restarted consumer reads the creation again.
    world
        .dispatcher
        .apply_delivery(DELIVERY, 1, &created(asap()), t0());

    world.when_ticking(t0() + ms(60)).then_nothing();
    assert_eq!(world.dispatcher.queued(), 0);
}

// --- determinism ---------------------------------------------------------------------------------

/// Two drones at the same spot, two deliveries, refusals and expiries: every choice that
/// could depend on the order of a hash map.
fn busy_morning(world: &mut World) -> Vec<Vec<Decision>> {
    let mut decided = Vec::new();
    world
        .drone(DRONE, downtown_drone(), at(8, 0))
        .drone(OTHER_DRONE, downtown_drone(), at(8, 0))
        .drone("drone-3", downtown_drone(), at(8, 0))
        .delivery(DELIVERY, created(asap()), t0())
        .delivery(OTHER_DELIVERY, created(asap()), t0())
        .delivery("delivery-3", created(asap()), t0());
    let first = world.dispatcher.decide(t0(), false);
    for decision in &first {
        world.refused(decision, t0());
    }
    decided.push(first);
    decided.push(world.dispatcher.decide(t0() + TimeDelta::seconds(1), false));
    decided.push(world.dispatcher.decide(t0() + TimeDelta::minutes(1), true));
    decided
}

#[test]
fn the_same_events_give_the_same_decisions() {
    let expected = busy_morning(&mut given_a_dispatcher());
    assert_eq!(expected[0].len(), 3, "{expected:?}");
    for _ in 0..32 {
        assert_eq!(busy_morning(&mut given_a_dispatcher()), expected);
    }
}
