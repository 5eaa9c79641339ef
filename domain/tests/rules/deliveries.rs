//! Deliveries: scheduling, dispatch, pickup, completion, and the ways out (cancel,
//! reschedule, failure), including every refused stage transition.

use domain::{
    Account, Changes, Delivery, DeliveryPlan, DomainError, Drone, DroneStatus, ErrorKind,
    Reschedule, Stage, distance_km,
};
use schemas::events::{
    ConfirmationType, DeliveryCancelled, DeliveryCreated, DeliveryFailed, DeliveryRescheduled,
    DroneAssigned, Event, NotificationRequested,
};

use crate::fixtures::*;
use crate::framework::*;

fn account(history: &[Event]) -> Account {
    state(history)
}

fn drone(history: &[Event]) -> Drone {
    state(history)
}

fn idle_drone() -> Drone {
    drone(&[drone_registered()])
}

fn schedule(delivery: &Delivery, owner: &Account) -> Result<Vec<Event>, DomainError> {
    delivery.schedule(
        ACCOUNT,
        owner,
        &plan(),
        false,
        ConfirmationType::None,
        PACKAGE,
        WEIGHT_KG,
    )
}

fn assign(drone: Drone) -> impl FnOnce(&Delivery) -> Result<Changes, DomainError> {
    move |delivery| delivery.assign_drone(DELIVERY, DRONE, &drone)
}

fn stages_except(allowed: &[Stage]) -> impl Iterator<Item = Stage> {
    Stage::ALL.into_iter().filter(|s| !allowed.contains(s))
}

fn delivery_only(event: Event) -> Changes {
    Changes {
        delivery: vec![event],
        drone: vec![],
        drone_id: None,
    }
}

fn on_both_streams(event: Event) -> Changes {
    Changes {
        delivery: vec![event.clone()],
        drone: vec![event],
        drone_id: Some(DRONE.into()),
    }
}

fn releasing(event: Event, reason: &str) -> Changes {
    Changes {
        delivery: vec![event],
        drone: vec![drone_unassigned(DELIVERY, DRONE, reason)],
        drone_id: Some(DRONE.into()),
    }
}

fn stage_forbids(action: &'static str, stage: Stage) -> DomainError {
    DomainError::StageForbids { action, stage }
}

// --- scheduling --------------------------------------------------------------------

#[test]
fn an_active_account_schedules_a_delivery() {
    let owner = account(&[account_registered()]);
    given_nothing()
        .when(|delivery: &Delivery| schedule(delivery, &owner))
        .then_expect(vec![delivery_created()]);
}

#[test]
fn a_scheduled_delivery_is_created_with_its_plan() {
    let delivery: Delivery = state(&[delivery_created()]);
    assert_eq!(delivery.stage, Some(Stage::Created));
    assert_eq!(delivery.owner_id, ACCOUNT);
    assert_eq!((delivery.pickup, delivery.dropoff), (pickup(), dropoff()));
    assert_eq!(delivery.package_weight_kg, WEIGHT_KG);
    assert_eq!(delivery.drone_id, None);
    assert!(!Delivery::default().exists());
}

#[test]
fn a_suspended_account_cannot_schedule() {
    let owner = account(&[account_registered(), account_suspended()]);
    given_nothing()
        .when(|delivery: &Delivery| schedule(delivery, &owner))
        .then_error(DomainError::AccountNotActive);
}

#[test]
fn a_reactivated_account_can_schedule_again() {
    let owner = account(&[
        account_registered(),
        account_suspended(),
        account_reactivated(),
    ]);
    given_nothing()
        .when(|delivery: &Delivery| schedule(delivery, &owner))
        .then_accepted();
}

#[test]
fn an_unknown_owner_cannot_schedule() {
    given_nothing()
        .when(|delivery: &Delivery| schedule(delivery, &Account::default()))
        .then_error(DomainError::UnknownOwner);
}

#[test]
fn a_delivery_is_scheduled_only_once() {
    let owner = account(&[account_registered()]);
    given([delivery_created()])
        .when(|delivery: &Delivery| schedule(delivery, &owner))
        .then_error(DomainError::DeliveryAlreadyExists);
}

#[test]
fn scheduling_records_expedition_and_required_confirmation() {
    let owner = account(&[account_registered()]);
    let plan = DeliveryPlan::new(pickup(), dropoff(), None, None).expect("valid");
    given_nothing()
        .when(|delivery: &Delivery| {
            delivery.schedule(
                ACCOUNT,
                &owner,
                &plan,
                true,
                ConfirmationType::Voice,
                PACKAGE,
                3.0,
            )
        })
        .then_expect(vec![Event::DeliveryCreated(DeliveryCreated {
            owner_id: ACCOUNT.into(),
            pickup: pickup(),
            dropoff: dropoff(),
            pickup_time: None,
            deadline: None,
            expedited: true,
            confirmation_required: ConfirmationType::Voice,
            package_id: PACKAGE.into(),
            package_weight_kg: 3.0,
        })]);
}

// --- assigning a drone -------------------------------------------------------------

#[test]
fn an_idle_drone_that_fits_is_assigned_on_both_streams_with_its_route_from_home() {
    let route_km = distance_km(&home(), &pickup())
        + distance_km(&pickup(), &dropoff())
        + distance_km(&dropoff(), &home());
    given([delivery_created()])
        .when(assign(idle_drone()))
        .then_expect(on_both_streams(Event::DroneAssigned(DroneAssigned {
            delivery_id: DELIVERY.into(),
            drone_id: DRONE.into(),
            route_km,
        })));
    // A sanity check on the arithmetic: ~13.5 km round trip.
    assert!((13.0..14.5).contains(&route_km), "{route_km}");
}

#[test]
fn an_assigned_delivery_is_headed_to_pickup_and_its_drone_is_assigned() {
    let changes = given([delivery_created()])
        .when(assign(idle_drone()))
        .then_accepted();
    let delivery = state::<Delivery>(&[&[delivery_created()], &changes.delivery[..]].concat());
    assert_eq!(delivery.stage, Some(Stage::HeadedToPickup));
    assert_eq!(delivery.drone_id.as_deref(), Some(DRONE));
    assert!(delivery.assigned_at.is_some() && delivery.route_km.is_some());

    let drone = state::<Drone>(&[&[drone_registered()], &changes.drone[..]].concat());
    assert_eq!(drone.status, Some(DroneStatus::Assigned));
    assert_eq!(drone.delivery_id.as_deref(), Some(DELIVERY));
}

#[test]
fn no_delivery_is_ever_assigned_two_drones() {
    let other = drone(&[drone_registered()]);
    given([delivery_created(), drone_assigned()])
        .when(|delivery: &Delivery| delivery.assign_drone(DELIVERY, OTHER_DRONE, &other))
        .then_error(DomainError::DeliveryAlreadyHasDrone {
            drone_id: DRONE.into(),
        });
}

#[test]
fn no_delivery_is_assigned_a_second_drone_after_pickup() {
    given(delivery_in(Stage::HeadedToDropoff))
        .when(assign(idle_drone()))
        .then_error(DomainError::DeliveryAlreadyHasDrone {
            drone_id: DRONE.into(),
        });
}

#[test]
fn no_drone_carries_two_deliveries_at_once() {
    let busy = drone(&[drone_registered(), drone_assigned_to(OTHER_DELIVERY, DRONE)]);
    given([delivery_created()]).when(assign(busy)).then_error(
        DomainError::DroneCarriesAnotherDelivery {
            drone_id: DRONE.into(),
            delivery_id: OTHER_DELIVERY.into(),
        },
    );
}

#[test]
fn no_drone_carrying_a_package_is_assigned_another_delivery() {
    let flying = drone(&[
        drone_registered(),
        drone_assigned_to(OTHER_DELIVERY, DRONE),
        picked_up_by(OTHER_DELIVERY, DRONE),
    ]);
    given([delivery_created()])
        .when(assign(flying))
        .then_error_kind(ErrorKind::Conflict);
}

#[test]
fn a_drone_that_is_not_idle_is_not_assigned() {
    let grounded = drone(&[drone_registered(), drone_grounded()]);
    given([delivery_created()])
        .when(assign(grounded))
        .then_error(DomainError::DroneNotIdle {
            drone_id: DRONE.into(),
            status: DroneStatus::Grounded,
        });
    let returning = drone(&[
        drone_registered(),
        drone_assigned_to(OTHER_DELIVERY, DRONE),
        picked_up_by(OTHER_DELIVERY, DRONE),
        Event::DeliveryCompleted(schemas::events::DeliveryCompleted {
            delivery_id: OTHER_DELIVERY.into(),
            drone_id: DRONE.into(),
            confirmation_type: ConfirmationType::None,
            location: dropoff(),
            at: at(8, 0),
            blob: None,
        }),
    ]);
    given([delivery_created()])
        .when(assign(returning))
        .then_error(DomainError::DroneNotIdle {
            drone_id: DRONE.into(),
            status: DroneStatus::Returning,
        });
}

#[test]
fn an_unknown_drone_is_not_assigned() {
    given([delivery_created()])
        .when(assign(Drone::default()))
        .then_error(DomainError::UnknownDrone {
            drone_id: DRONE.into(),
        });
}

#[test]
fn a_drone_is_never_assigned_a_package_over_its_payload() {
    given([delivery_created_with(5.01, ConfirmationType::None)])
        .when(assign(idle_drone()))
        .then_error(DomainError::OverPayload {
            weight_kg: 5.01,
            payload_kg: PAYLOAD_KG,
        });
}

#[test]
fn a_package_of_exactly_the_payload_is_assigned() {
    given([delivery_created_with(PAYLOAD_KG, ConfirmationType::None)])
        .when(assign(idle_drone()))
        .then_accepted();
}

#[test]
fn a_drone_is_never_assigned_a_route_over_its_range() {
    let short_range = drone(&[drone_registered_with(PAYLOAD_KG, 10.0)]);
    let error = given([delivery_created()])
        .when(assign(short_range))
        .then_error_kind(ErrorKind::Rule);
    assert!(
        matches!(error, DomainError::OverRange { range_km, route_km } if range_km == 10.0 && route_km > 10.0),
        "{error:?}"
    );
}

#[test]
fn the_command_side_checks_the_route_from_home_and_leaves_position_and_battery_to_dispatch() {
    // Its reports put the drone in Portland with 5% left: observations the command side
    // does not fold. The workflow checks them (see the flight tests).
    let far_away = drone(&[drone_registered()]);
    given([delivery_created()])
        .when(assign(far_away))
        .then_accepted();
}

#[test]
fn a_rescheduled_delivery_can_be_assigned_a_drone() {
    given([delivery_created(), rescheduled()])
        .when(assign(idle_drone()))
        .then_accepted();
}

#[test]
fn a_drone_is_assigned_only_while_the_delivery_awaits_one() {
    for stage in stages_except(&[Stage::Created, Stage::Rescheduled]) {
        given(delivery_in(stage))
            .when(assign(idle_drone()))
            .then_error_kind(ErrorKind::Conflict);
    }
}

#[test]
fn a_finished_delivery_is_not_assigned_a_drone() {
    for stage in [Stage::Completed, Stage::Cancelled, Stage::Failed] {
        given(delivery_in(stage))
            .when(assign(idle_drone()))
            .then_error(stage_forbids("assign a drone to", stage));
    }
}

// --- pickup and completion ---------------------------------------------------------

#[test]
fn a_delivery_headed_to_pickup_is_picked_up_on_both_streams() {
    given(delivery_in(Stage::HeadedToPickup))
        .when(|delivery: &Delivery| delivery.pick_up(DELIVERY, at(10, 5)))
        .then_expect(on_both_streams(picked_up()));
}

#[test]
fn a_picked_up_delivery_is_headed_to_dropoff() {
    let delivery: Delivery = state(&delivery_in(Stage::HeadedToDropoff));
    assert_eq!(delivery.stage, Some(Stage::HeadedToDropoff));
}

#[test]
fn only_a_delivery_headed_to_pickup_is_picked_up() {
    for stage in stages_except(&[Stage::HeadedToPickup]) {
        given(delivery_in(stage))
            .when(|delivery: &Delivery| delivery.pick_up(DELIVERY, at(10, 5)))
            .then_error(stage_forbids("pick up", stage));
    }
}

#[test]
fn a_delivery_headed_to_dropoff_is_completed_on_both_streams() {
    given(delivery_in(Stage::HeadedToDropoff))
        .when(|delivery: &Delivery| {
            delivery.complete(DELIVERY, &confirmation(ConfirmationType::None))
        })
        .then_expect(on_both_streams(completed()));
}

#[test]
fn a_completed_delivery_is_completed_and_its_drone_returns() {
    let delivery: Delivery = state(&delivery_in(Stage::Completed));
    assert_eq!(delivery.stage, Some(Stage::Completed));
    assert_eq!(delivery.drone_id.as_deref(), Some(DRONE));
}

#[test]
fn completion_needs_the_required_confirmation() {
    let mut history = vec![delivery_created_with(
        WEIGHT_KG,
        ConfirmationType::FingerPrint,
    )];
    history.extend([drone_assigned(), picked_up()]);
    given(history.clone())
        .when(|delivery: &Delivery| {
            delivery.complete(DELIVERY, &confirmation(ConfirmationType::Picture))
        })
        .then_error(DomainError::ConfirmationMismatch {
            required: ConfirmationType::FingerPrint,
            given: ConfirmationType::Picture,
        });
    given(history)
        .when(|delivery: &Delivery| {
            delivery.complete(DELIVERY, &confirmation(ConfirmationType::FingerPrint))
        })
        .then_expect(on_both_streams(completed_with(
            ConfirmationType::FingerPrint,
        )));
}

#[test]
fn a_required_confirmation_is_not_waived_by_giving_none() {
    let mut history = vec![delivery_created_with(WEIGHT_KG, ConfirmationType::Voice)];
    history.extend([drone_assigned(), picked_up()]);
    given(history)
        .when(|delivery: &Delivery| {
            delivery.complete(DELIVERY, &confirmation(ConfirmationType::None))
        })
        .then_error_kind(ErrorKind::Rule);
}

#[test]
fn without_a_required_confirmation_any_proof_completes() {
    given(delivery_in(Stage::HeadedToDropoff))
        .when(|delivery: &Delivery| {
            delivery.complete(DELIVERY, &confirmation(ConfirmationType::Picture))
        })
        .then_accepted();
}

#[test]
fn only_a_delivery_headed_to_dropoff_is_completed() {
    for stage in stages_except(&[Stage::HeadedToDropoff]) {
        given(delivery_in(stage))
            .when(|delivery: &Delivery| {
                delivery.complete(DELIVERY, &confirmation(ConfirmationType::None))
            })
            .then_error(stage_forbids("complete", stage));
    }
}

// --- cancellation ------------------------------------------------------------------

#[test]
fn a_delivery_without_a_drone_is_cancelled_on_its_own_stream() {
    for stage in [Stage::Created, Stage::Rescheduled] {
        given(delivery_in(stage))
            .when(|delivery: &Delivery| delivery.cancel(DELIVERY, Some("changed mind".into())))
            .then_expect(delivery_only(Event::DeliveryCancelled(DeliveryCancelled {
                reason: Some("changed mind".into()),
            })));
    }
}

#[test]
fn cancelling_a_delivery_headed_to_pickup_releases_its_drone() {
    given(delivery_in(Stage::HeadedToPickup))
        .when(|delivery: &Delivery| delivery.cancel(DELIVERY, None))
        .then_expect(releasing(cancelled(), "cancelled"));
}

#[test]
fn a_drone_released_by_a_cancellation_can_take_another_delivery() {
    let changes = given(delivery_in(Stage::HeadedToPickup))
        .when(|delivery: &Delivery| delivery.cancel(DELIVERY, None))
        .then_accepted();
    let released = drone(&[&[drone_registered(), drone_assigned()], &changes.drone[..]].concat());
    assert!(released.is_idle());
    given([delivery_created()])
        .when(|delivery: &Delivery| delivery.assign_drone(OTHER_DELIVERY, DRONE, &released))
        .then_accepted();
}

#[test]
fn a_delivery_is_cancelled_only_before_pickup() {
    for stage in stages_except(&[Stage::Created, Stage::Rescheduled, Stage::HeadedToPickup]) {
        given(delivery_in(stage))
            .when(|delivery: &Delivery| delivery.cancel(DELIVERY, None))
            .then_error(stage_forbids("cancel", stage));
    }
}

#[test]
fn a_cancelled_delivery_is_cancelled() {
    let delivery: Delivery = state(&delivery_in(Stage::Cancelled));
    assert_eq!(delivery.stage, Some(Stage::Cancelled));
}

// --- rescheduling ------------------------------------------------------------------

fn later() -> Reschedule {
    Reschedule::new(None, None, Some(at(11, 0)), Some(at(13, 0))).expect("valid")
}

#[test]
fn rescheduling_merges_the_changes_into_the_plan() {
    let new_dropoff = point(47.65, -122.35);
    let changes = Reschedule::new(None, Some(new_dropoff), None, Some(at(14, 0))).expect("valid");
    given([delivery_created()])
        .when(|delivery: &Delivery| delivery.reschedule(DELIVERY, &changes))
        .then_expect(delivery_only(Event::DeliveryRescheduled(
            DeliveryRescheduled {
                pickup: pickup(),
                dropoff: new_dropoff,
                pickup_time: Some(at(10, 0)),
                deadline: Some(at(14, 0)),
            },
        )));
}

#[test]
fn a_rescheduled_delivery_is_rescheduled_with_its_new_plan() {
    let delivery: Delivery = state(&[delivery_created(), rescheduled()]);
    assert_eq!(delivery.stage, Some(Stage::Rescheduled));
    assert_eq!(delivery.pickup_time, Some(at(11, 0)));
    assert_eq!(delivery.deadline, Some(at(13, 0)));
}

#[test]
fn rescheduling_a_delivery_headed_to_pickup_releases_its_drone() {
    given(delivery_in(Stage::HeadedToPickup))
        .when(|delivery: &Delivery| delivery.reschedule(DELIVERY, &later()))
        .then_expect(releasing(rescheduled(), "rescheduled"));
}

#[test]
fn a_rescheduled_delivery_waits_for_a_drone_again() {
    let mut history = delivery_in(Stage::HeadedToPickup);
    history.push(rescheduled());
    let delivery: Delivery = state(&history);
    assert_eq!(delivery.stage, Some(Stage::Rescheduled));
    assert_eq!(delivery.drone_id, None);
    assert_eq!(delivery.assigned_at, None);
}

#[test]
fn a_delivery_is_rescheduled_only_before_pickup() {
    for stage in stages_except(&[Stage::Created, Stage::Rescheduled, Stage::HeadedToPickup]) {
        given(delivery_in(stage))
            .when(|delivery: &Delivery| delivery.reschedule(DELIVERY, &later()))
            .then_error(stage_forbids("reschedule", stage));
    }
}

#[test]
fn a_rescheduled_plan_keeps_its_deadline_after_its_pickup_time() {
    // The delivery's deadline is 12:00; moving the pickup to 12:30 alone would void it.
    let too_late = Reschedule::new(None, None, Some(at(12, 30)), None).expect("valid");
    given([delivery_created()])
        .when(|delivery: &Delivery| delivery.reschedule(DELIVERY, &too_late))
        .then_error(DomainError::DeadlineNotAfterPickupTime);
    let early_deadline = Reschedule::new(None, None, None, Some(at(9, 0))).expect("valid");
    given([delivery_created()])
        .when(|delivery: &Delivery| delivery.reschedule(DELIVERY, &early_deadline))
        .then_error(DomainError::DeadlineNotAfterPickupTime);
}

// --- failure and unassignment ------------------------------------------------------

#[test]
fn a_delivery_fails_from_any_unfinished_stage_releasing_its_drone() {
    let failed_with = |reason: &str| {
        Event::DeliveryFailed(DeliveryFailed {
            reason: reason.into(),
        })
    };
    for stage in [Stage::Created, Stage::Rescheduled] {
        given(delivery_in(stage))
            .when(|delivery: &Delivery| delivery.fail(DELIVERY, "no drone".into()))
            .then_expect(delivery_only(failed_with("no drone")));
    }
    for stage in [Stage::HeadedToPickup, Stage::HeadedToDropoff] {
        given(delivery_in(stage))
            .when(|delivery: &Delivery| delivery.fail(DELIVERY, "drone grounded".into()))
            .then_expect(releasing(failed_with("drone grounded"), "drone grounded"));
    }
}

#[test]
fn a_finished_delivery_cannot_fail() {
    for stage in [Stage::Completed, Stage::Cancelled, Stage::Failed] {
        given(delivery_in(stage))
            .when(|delivery: &Delivery| delivery.fail(DELIVERY, "late".into()))
            .then_error(stage_forbids("fail", stage));
    }
}

#[test]
fn a_failed_delivery_is_failed() {
    let delivery: Delivery = state(&delivery_in(Stage::Failed));
    assert_eq!(delivery.stage, Some(Stage::Failed));
}

#[test]
fn a_drone_headed_to_pickup_is_unassigned_on_both_streams() {
    given(delivery_in(Stage::HeadedToPickup))
        .when(|delivery: &Delivery| delivery.unassign_drone(DELIVERY, "drone grounded"))
        .then_expect(on_both_streams(drone_unassigned(
            DELIVERY,
            DRONE,
            "drone grounded",
        )));
}

#[test]
fn an_unassigned_delivery_waits_for_a_drone_again() {
    let mut history = delivery_in(Stage::HeadedToPickup);
    history.push(drone_unassigned(DELIVERY, DRONE, "drone grounded"));
    let delivery: Delivery = state(&history);
    assert_eq!(delivery.stage, Some(Stage::Created));
    assert_eq!(delivery.drone_id, None);
    given(history).when(assign(idle_drone())).then_accepted();
}

#[test]
fn a_drone_is_unassigned_only_before_pickup() {
    for stage in stages_except(&[Stage::HeadedToPickup]) {
        given(delivery_in(stage))
            .when(|delivery: &Delivery| delivery.unassign_drone(DELIVERY, "drone grounded"))
            .then_error(stage_forbids("unassign the drone of", stage));
    }
}

// --- notifications -----------------------------------------------------------------

#[test]
fn a_customer_asks_to_be_notified_by_email_or_sms() {
    given([delivery_created()])
        .when(|delivery: &Delivery| {
            delivery.request_notifications(Some("me@example.com".into()), None)
        })
        .then_expect(vec![Event::NotificationRequested(NotificationRequested {
            email: Some("me@example.com".into()),
            sms: None,
        })]);
}

#[test]
fn a_notification_request_needs_an_email_or_an_sms() {
    given([delivery_created()])
        .when(|delivery: &Delivery| delivery.request_notifications(None, None))
        .then_error(DomainError::NoNotificationChannel);
    given([delivery_created()])
        .when(|delivery: &Delivery| {
            delivery.request_notifications(Some(" ".into()), Some(String::new()))
        })
        .then_error(DomainError::NoNotificationChannel);
}

#[test]
fn notifications_accumulate_channels() {
    let delivery: Delivery = state(&[
        delivery_created(),
        Event::NotificationRequested(NotificationRequested {
            email: Some("me@example.com".into()),
            sms: None,
        }),
        Event::NotificationRequested(NotificationRequested {
            email: None,
            sms: Some("+15550100".into()),
        }),
    ]);
    assert_eq!(delivery.notify_email.as_deref(), Some("me@example.com"));
    assert_eq!(delivery.notify_sms.as_deref(), Some("+15550100"));
}

#[test]
fn a_finished_delivery_takes_no_notification_request() {
    for stage in [Stage::Completed, Stage::Cancelled, Stage::Failed] {
        given(delivery_in(stage))
            .when(|delivery: &Delivery| delivery.request_notifications(None, Some("+1555".into())))
            .then_error(stage_forbids("request notifications for", stage));
    }
}

// --- unknown deliveries and the whole journey --------------------------------------

#[test]
fn commands_to_an_unknown_delivery_are_not_found() {
    let not_found = |outcome: Result<Changes, DomainError>| {
        assert_eq!(outcome, Err(DomainError::DeliveryNotFound));
    };
    let nothing = Delivery::default();
    not_found(nothing.assign_drone(DELIVERY, DRONE, &idle_drone()));
    not_found(nothing.reschedule(DELIVERY, &later()));
    not_found(nothing.unassign_drone(DELIVERY, "x"));
    not_found(nothing.pick_up(DELIVERY, at(9, 0)));
    not_found(nothing.complete(DELIVERY, &confirmation(ConfirmationType::None)));
    not_found(nothing.cancel(DELIVERY, None));
    not_found(nothing.fail(DELIVERY, "x".into()));
    assert_eq!(
        nothing.request_notifications(Some("me@example.com".into()), None),
        Err(DomainError::DeliveryNotFound)
    );
}

#[test]
fn a_delivery_goes_from_created_to_completed_and_its_drone_back_to_idle() {
    let owner = account(&[account_registered()]);
    let mut delivery = Delivery::default();
    let mut drone = Drone::default();
    for event in drone
        .register(&drone_spec(PAYLOAD_KG, RANGE_KM))
        .expect("registered")
    {
        drone.apply(&event, at(9, 0));
    }
    for event in schedule(&delivery, &owner).expect("scheduled") {
        delivery.apply(&event, at(9, 0));
    }
    let record = |changes: Changes, delivery: &mut Delivery, drone: &mut Drone| {
        changes
            .delivery
            .iter()
            .for_each(|e| delivery.apply(e, at(9, 0)));
        changes.drone.iter().for_each(|e| drone.apply(e, at(9, 0)));
    };

    let changes = delivery
        .assign_drone(DELIVERY, DRONE, &drone)
        .expect("assigned");
    record(changes, &mut delivery, &mut drone);
    assert_eq!(delivery.stage, Some(Stage::HeadedToPickup));
    assert_eq!(drone.status, Some(DroneStatus::Assigned));

    let changes = delivery.pick_up(DELIVERY, at(9, 10)).expect("picked up");
    record(changes, &mut delivery, &mut drone);
    assert_eq!(delivery.stage, Some(Stage::HeadedToDropoff));
    assert_eq!(drone.status, Some(DroneStatus::EnRouteToDropoff));

    let proof = confirmation(ConfirmationType::None);
    let changes = delivery.complete(DELIVERY, &proof).expect("completed");
    record(changes, &mut delivery, &mut drone);
    assert_eq!(delivery.stage, Some(Stage::Completed));
    assert_eq!(drone.status, Some(DroneStatus::Returning));
    assert_eq!(drone.delivery_id, None);

    for event in drone.return_to_service().expect("returned") {
        drone.apply(&event, at(9, 0));
    }
    assert!(drone.is_idle());
}
