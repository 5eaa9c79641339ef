//! Deliveries: scheduling, dispatch, pickup, completion, and the ways out (cancel,
//! reschedule, failure), including every refused stage transition. A delivery command
//! writes the delivery's stream only; what the drone's stream appends after it is
//! [`Drone::follow`]'s answer, checked here next to the command. The steps of an
//! assignment one by one, and the drone's side of it, are in `assignment.rs`.

use domain::{
    Account, Aggregate, Delivery, DeliveryPlan, DomainError, Drone, DroneStatus, ErrorKind,
    FollowUp, Reschedule, Stage,
};
use schemas::events::{
    ConfirmationType, DeliveryCancelled, DeliveryCompleted, DeliveryCreated, DeliveryFailed,
    DeliveryRescheduled, Event, NotificationRequested,
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
    schedule_plan(delivery, owner, &plan())
}

fn schedule_plan(
    delivery: &Delivery,
    owner: &Account,
    plan: &DeliveryPlan,
) -> Result<Vec<Event>, DomainError> {
    delivery.schedule(
        ACCOUNT,
        owner,
        plan,
        false,
        ConfirmationType::None,
        PACKAGE,
        WEIGHT_KG,
    )
}

/// What an assignment appends to each stream.
#[derive(Debug, PartialEq)]
struct Assignment {
    drone: Vec<Event>,
    delivery: Vec<Event>,
}

/// An assignment of `drone` (as `DRONE`) as the command side runs it: the delivery's job,
/// the drone's reservation `attempt`, the delivery taking it.
fn assign_with(
    drone: Drone,
    attempt: &'static str,
) -> impl FnOnce(&Delivery) -> Result<Assignment, DomainError> {
    move |delivery| {
        let job = delivery.job()?;
        let reserved = drone.reserve(DRONE, DELIVERY, &job, attempt)?;
        let [Event::DroneAssigned(reservation)] = reserved.as_slice() else {
            panic!("expected one reservation, got {reserved:?}");
        };
        let taken = delivery.assign_drone(reservation)?;
        Ok(Assignment {
            drone: reserved,
            delivery: taken,
        })
    }
}

/// An assignment with the reservation `ATTEMPT`.
fn assign(drone: Drone) -> impl FnOnce(&Delivery) -> Result<Assignment, DomainError> {
    assign_with(drone, ATTEMPT)
}

fn stages_except(allowed: &[Stage]) -> impl Iterator<Item = Stage> {
    Stage::ALL.into_iter().filter(|s| !allowed.contains(s))
}

/// `DRONE`'s stream while it carries the delivery in `stage` (`delivery_in`'s histories).
fn drone_for(stage: Stage) -> Vec<Event> {
    match stage {
        Stage::HeadedToPickup => vec![drone_registered(), drone_assigned()],
        Stage::HeadedToDropoff => vec![drone_registered(), drone_assigned(), picked_up()],
        _ => vec![drone_registered()],
    }
}

/// What `DRONE`'s stream (`drone_history`) appends once the delivery's stream is
/// `delivery_history` followed by `events`.
fn drone_follows(
    drone_history: &[Event],
    delivery_history: &[Event],
    events: &[Event],
) -> FollowUp {
    let delivery: Delivery = state(&[delivery_history, events].concat());
    drone(drone_history).follow(DRONE, DELIVERY, &delivery)
}

/// The drone's copy of a completion: the same facts, the proof stays with the delivery.
fn completion_copy(confirmation_type: ConfirmationType) -> Event {
    Event::DeliveryCompleted(DeliveryCompleted {
        blob: None,
        ..match completed_with(confirmation_type) {
            Event::DeliveryCompleted(e) => e,
            other => unreachable!("{other:?}"),
        }
    })
}

/// The drone's release after the delivery let go of its reservation `ATTEMPT`.
fn release(reason: &str) -> FollowUp {
    FollowUp::Append(vec![drone_unassigned(DELIVERY, DRONE, reason)])
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
// The drone's side (idle, payload, range, one delivery at a time) is checked by its
// reservation: see `assignment.rs`. The delivery's side is here.

#[test]
fn an_idle_drone_that_fits_is_reserved_and_the_delivery_takes_the_same_reservation() {
    let outcome = given([delivery_created()])
        .when(assign(idle_drone()))
        .then_accepted();
    let [Event::DroneAssigned(reservation)] = outcome.drone.as_slice() else {
        panic!("expected one reservation, got {:?}", outcome.drone);
    };
    assert_eq!(
        (
            reservation.delivery_id.as_str(),
            reservation.drone_id.as_str()
        ),
        (DELIVERY, DRONE)
    );
    assert_eq!(reservation.attempt, ATTEMPT);
    assert_eq!(outcome.delivery, outcome.drone);
}

#[test]
fn an_assigned_delivery_is_headed_to_pickup_and_its_drone_is_assigned() {
    let outcome = given([delivery_created()])
        .when(assign(idle_drone()))
        .then_accepted();
    let delivery = state::<Delivery>(&[&[delivery_created()], &outcome.delivery[..]].concat());
    assert_eq!(delivery.stage, Some(Stage::HeadedToPickup));
    assert_eq!(delivery.drone_id.as_deref(), Some(DRONE));
    assert_eq!(delivery.attempt.as_deref(), Some(ATTEMPT));
    assert!(delivery.holds(DRONE, ATTEMPT));
    assert!(delivery.assigned_at.is_some() && delivery.route_km.is_some());

    let drone = state::<Drone>(&[&[drone_registered()], &outcome.drone[..]].concat());
    assert_eq!(drone.status, Some(DroneStatus::Assigned));
    assert_eq!(drone.delivery_id.as_deref(), Some(DELIVERY));
    assert_eq!(drone.attempt.as_deref(), Some(ATTEMPT));
    // Both streams say the same: nothing follows.
    assert_eq!(drone.follow(DRONE, DELIVERY, &delivery), FollowUp::InLine);
}

#[test]
fn no_delivery_is_ever_assigned_two_drones() {
    let has_drone = DomainError::DeliveryAlreadyHasDrone {
        drone_id: DRONE.into(),
    };
    // Before any drone is reserved for it...
    given([delivery_created(), drone_assigned()])
        .when(|delivery: &Delivery| delivery.job())
        .then_error(has_drone.clone());
    // ...and at the commit, when another drone was reserved meanwhile.
    given([delivery_created(), drone_assigned()])
        .when(|delivery: &Delivery| {
            delivery.assign_drone(&reservation(DELIVERY, OTHER_DRONE, OTHER_ATTEMPT))
        })
        .then_error(has_drone);
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
        // Nor does it take a reservation made before it finished.
        given(delivery_in(stage))
            .when(|delivery: &Delivery| {
                delivery.assign_drone(&reservation(DELIVERY, OTHER_DRONE, OTHER_ATTEMPT))
            })
            .then_error(stage_forbids("assign a drone to", stage));
    }
}

// --- pickup and completion ---------------------------------------------------------

#[test]
fn a_delivery_headed_to_pickup_is_picked_up_and_its_drone_follows() {
    let history = delivery_in(Stage::HeadedToPickup);
    given(history.clone())
        .when(|delivery: &Delivery| delivery.pick_up(DELIVERY, at(10, 5)))
        .then_expect(vec![picked_up()]);
    assert_eq!(
        drone_follows(&drone_for(Stage::HeadedToPickup), &history, &[picked_up()]),
        FollowUp::Append(vec![picked_up()])
    );
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
fn a_delivery_headed_to_dropoff_is_completed_and_its_drone_follows() {
    let history = delivery_in(Stage::HeadedToDropoff);
    given(history.clone())
        .when(|delivery: &Delivery| {
            delivery.complete(DELIVERY, &confirmation(ConfirmationType::None))
        })
        .then_expect(vec![completed()]);
    assert_eq!(
        drone_follows(&drone_for(Stage::HeadedToDropoff), &history, &[completed()]),
        FollowUp::Append(vec![completion_copy(ConfirmationType::None)])
    );
}

#[test]
fn a_completed_delivery_is_completed_and_its_drone_returns() {
    let delivery: Delivery = state(&delivery_in(Stage::Completed));
    assert_eq!(delivery.stage, Some(Stage::Completed));
    assert_eq!(delivery.drone_id.as_deref(), Some(DRONE));
    let mut drone_history = drone_for(Stage::HeadedToDropoff);
    drone_history.push(completion_copy(ConfirmationType::None));
    let drone = drone(&drone_history);
    assert_eq!(drone.status, Some(DroneStatus::Returning));
    assert_eq!((drone.delivery_id, drone.attempt), (None, None));
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
    given(history.clone())
        .when(|delivery: &Delivery| {
            delivery.complete(DELIVERY, &confirmation(ConfirmationType::FingerPrint))
        })
        .then_expect(vec![completed_with(ConfirmationType::FingerPrint)]);
    assert_eq!(
        drone_follows(
            &drone_for(Stage::HeadedToDropoff),
            &history,
            &[completed_with(ConfirmationType::FingerPrint)]
        ),
        FollowUp::Append(vec![completion_copy(ConfirmationType::FingerPrint)])
    );
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
            .when(|delivery: &Delivery| delivery.cancel(Some("changed mind".into())))
            .then_expect(vec![Event::DeliveryCancelled(DeliveryCancelled {
                reason: Some("changed mind".into()),
            })]);
        // An idle drone has nothing to follow.
        assert_eq!(
            drone_follows(&drone_for(stage), &delivery_in(stage), &[cancelled()]),
            FollowUp::InLine
        );
    }
}

#[test]
fn cancelling_a_delivery_headed_to_pickup_releases_its_drone() {
    let history = delivery_in(Stage::HeadedToPickup);
    given(history.clone())
        .when(|delivery: &Delivery| delivery.cancel(None))
        .then_expect(vec![cancelled()]);
    assert_eq!(
        drone_follows(&drone_for(Stage::HeadedToPickup), &history, &[cancelled()]),
        release("cancelled")
    );
}

#[test]
fn a_drone_released_by_a_cancellation_can_take_another_delivery() {
    let drone_history = drone_for(Stage::HeadedToPickup);
    let FollowUp::Append(release) = drone_follows(
        &drone_history,
        &delivery_in(Stage::HeadedToPickup),
        &[cancelled()],
    ) else {
        panic!("the cancellation releases the drone");
    };
    let released = drone(&[drone_history, release].concat());
    assert!(released.is_idle());
    given([delivery_created()])
        .when(|other: &Delivery| {
            released.reserve(DRONE, OTHER_DELIVERY, &other.job()?, OTHER_ATTEMPT)
        })
        .then_accepted();
}

#[test]
fn a_delivery_is_cancelled_only_before_pickup() {
    for stage in stages_except(&[Stage::Created, Stage::Rescheduled, Stage::HeadedToPickup]) {
        given(delivery_in(stage))
            .when(|delivery: &Delivery| delivery.cancel(None))
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
        .when(|delivery: &Delivery| delivery.reschedule(&changes))
        .then_expect(vec![Event::DeliveryRescheduled(DeliveryRescheduled {
            pickup: pickup(),
            dropoff: new_dropoff,
            pickup_time: Some(at(10, 0)),
            deadline: Some(at(14, 0)),
        })]);
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
    let history = delivery_in(Stage::HeadedToPickup);
    given(history.clone())
        .when(|delivery: &Delivery| delivery.reschedule(&later()))
        .then_expect(vec![rescheduled()]);
    assert_eq!(
        drone_follows(
            &drone_for(Stage::HeadedToPickup),
            &history,
            &[rescheduled()]
        ),
        release("rescheduled")
    );
}

#[test]
fn a_rescheduled_delivery_waits_for_a_drone_again_with_a_new_reservation() {
    let mut history = delivery_in(Stage::HeadedToPickup);
    history.push(rescheduled());
    let delivery: Delivery = state(&history);
    assert_eq!(delivery.stage, Some(Stage::Rescheduled));
    assert_eq!((delivery.drone_id, delivery.attempt), (None, None));
    assert_eq!(delivery.assigned_at, None);
    assert_eq!(delivery.released, vec![ATTEMPT.to_owned()]);
    // The reservation it let go of is never taken again; a new one is.
    given(history.clone())
        .when(assign(idle_drone()))
        .then_error(DomainError::ReservationGivenUp {
            drone_id: DRONE.into(),
        });
    given(history)
        .when(assign_with(idle_drone(), OTHER_ATTEMPT))
        .then_accepted();
}

#[test]
fn a_delivery_is_rescheduled_only_before_pickup() {
    for stage in stages_except(&[Stage::Created, Stage::Rescheduled, Stage::HeadedToPickup]) {
        given(delivery_in(stage))
            .when(|delivery: &Delivery| delivery.reschedule(&later()))
            .then_error(stage_forbids("reschedule", stage));
    }
}

#[test]
fn a_deadline_at_or_before_the_pickup_time_is_refused_by_the_rules() {
    let owner = account(&[account_registered()]);
    for deadline in [at(10, 0), at(12, 0)] {
        let plan =
            DeliveryPlan::new(pickup(), dropoff(), Some(at(12, 0)), Some(deadline)).expect("valid");
        given_nothing()
            .when(|delivery: &Delivery| schedule_plan(delivery, &owner, &plan))
            .then_error(DomainError::DeadlineNotAfterPickupTime);
    }
    // Both given in one reschedule: the value is fine, the rule refuses it.
    let both = Reschedule::new(None, None, Some(at(12, 0)), Some(at(11, 0))).expect("valid");
    given([delivery_created()])
        .when(|delivery: &Delivery| delivery.reschedule(&both))
        .then_error(DomainError::DeadlineNotAfterPickupTime);
}

#[test]
fn a_rescheduled_plan_keeps_its_deadline_after_its_pickup_time() {
    // The delivery's deadline is 12:00; moving the pickup to 12:30 alone would void it.
    let too_late = Reschedule::new(None, None, Some(at(12, 30)), None).expect("valid");
    given([delivery_created()])
        .when(|delivery: &Delivery| delivery.reschedule(&too_late))
        .then_error(DomainError::DeadlineNotAfterPickupTime);
    let early_deadline = Reschedule::new(None, None, None, Some(at(9, 0))).expect("valid");
    given([delivery_created()])
        .when(|delivery: &Delivery| delivery.reschedule(&early_deadline))
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
            .when(|delivery: &Delivery| delivery.fail("no drone".into()))
            .then_expect(vec![failed_with("no drone")]);
        assert_eq!(
            drone_follows(
                &drone_for(stage),
                &delivery_in(stage),
                &[failed_with("no drone")]
            ),
            FollowUp::InLine
        );
    }
    for stage in [Stage::HeadedToPickup, Stage::HeadedToDropoff] {
        given(delivery_in(stage))
            .when(|delivery: &Delivery| delivery.fail("drone grounded".into()))
            .then_expect(vec![failed_with("drone grounded")]);
        // The drone's release gives the failure's reason.
        assert_eq!(
            drone_follows(
                &drone_for(stage),
                &delivery_in(stage),
                &[failed_with("drone grounded")]
            ),
            release("drone grounded"),
            "{stage}"
        );
    }
}

#[test]
fn a_finished_delivery_cannot_fail() {
    for stage in [Stage::Completed, Stage::Cancelled, Stage::Failed] {
        given(delivery_in(stage))
            .when(|delivery: &Delivery| delivery.fail("late".into()))
            .then_error(stage_forbids("fail", stage));
    }
}

#[test]
fn a_failed_delivery_is_failed() {
    let delivery: Delivery = state(&delivery_in(Stage::Failed));
    assert_eq!(delivery.stage, Some(Stage::Failed));
}

#[test]
fn a_drone_headed_to_pickup_is_unassigned_and_released_on_its_stream() {
    let history = delivery_in(Stage::HeadedToPickup);
    let unassigned = drone_unassigned(DELIVERY, DRONE, "drone grounded");
    given(history.clone())
        .when(|delivery: &Delivery| delivery.unassign_drone(DELIVERY, "drone grounded"))
        .then_expect(vec![unassigned.clone()]);
    assert_eq!(
        drone_follows(&drone_for(Stage::HeadedToPickup), &history, &[unassigned]),
        release("released by the delivery")
    );
}

#[test]
fn an_unassigned_delivery_waits_for_a_drone_again() {
    let mut history = delivery_in(Stage::HeadedToPickup);
    history.push(drone_unassigned(DELIVERY, DRONE, "drone grounded"));
    let delivery: Delivery = state(&history);
    assert_eq!(delivery.stage, Some(Stage::Created));
    assert_eq!((delivery.drone_id, delivery.attempt), (None, None));
    assert_eq!(delivery.released, vec![ATTEMPT.to_owned()]);
    given(history.clone())
        .when(assign(idle_drone()))
        .then_error(DomainError::ReservationGivenUp {
            drone_id: DRONE.into(),
        });
    given(history)
        .when(assign_with(idle_drone(), OTHER_ATTEMPT))
        .then_accepted();
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
            delivery.request_notifications(Some("me@example.com".into()), None, None)
        })
        .then_expect(vec![Event::NotificationRequested(NotificationRequested {
            email: Some("me@example.com".into()),
            sms: None,
            webhook: None,
        })]);
}

#[test]
fn a_notification_request_needs_an_email_or_an_sms() {
    given([delivery_created()])
        .when(|delivery: &Delivery| delivery.request_notifications(None, None, None))
        .then_error(DomainError::NoNotificationChannel);
    given([delivery_created()])
        .when(|delivery: &Delivery| {
            delivery.request_notifications(Some(" ".into()), Some(String::new()), None)
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
            webhook: None,
        }),
        Event::NotificationRequested(NotificationRequested {
            email: None,
            sms: Some("+15550100".into()),
            webhook: None,
        }),
    ]);
    assert_eq!(delivery.notify_email.as_deref(), Some("me@example.com"));
    assert_eq!(delivery.notify_sms.as_deref(), Some("+15550100"));
}

#[test]
fn a_finished_delivery_takes_no_notification_request() {
    for stage in [Stage::Completed, Stage::Cancelled, Stage::Failed] {
        given(delivery_in(stage))
            .when(|delivery: &Delivery| {
                delivery.request_notifications(None, Some("+1555".into()), None)
            })
            .then_error(stage_forbids("request notifications for", stage));
    }
}

// --- unknown deliveries and the whole journey --------------------------------------

#[test]
fn commands_to_an_unknown_delivery_are_not_found() {
    let not_found = |outcome: Result<Vec<Event>, DomainError>| {
        assert_eq!(outcome, Err(DomainError::DeliveryNotFound));
    };
    let nothing = Delivery::default();
    assert_eq!(nothing.job(), Err(DomainError::DeliveryNotFound));
    not_found(nothing.assign_drone(&reservation(DELIVERY, DRONE, ATTEMPT)));
    not_found(nothing.reschedule(&later()));
    not_found(nothing.unassign_drone(DELIVERY, "x"));
    not_found(nothing.pick_up(DELIVERY, at(9, 0)));
    not_found(nothing.complete(DELIVERY, &confirmation(ConfirmationType::None)));
    not_found(nothing.cancel(None));
    not_found(nothing.fail("x".into()));
    not_found(nothing.request_notifications(Some("me@example.com".into()), None, None));
}

/// Appends `events` to the stream whose state is `state`.
fn record<A: Aggregate>(state: &mut A, events: &[Event]) {
    events.iter().for_each(|event| state.apply(event, at(9, 0)));
}

/// Runs an accepted command on `state` and appends its events; returns them.
#[track_caller]
fn run<A: Aggregate>(
    state: &mut A,
    command: impl FnOnce(&A) -> Result<Vec<Event>, DomainError>,
) -> Vec<Event> {
    let events = command(state).unwrap_or_else(|error| panic!("refused: {error}"));
    record(state, &events);
    events
}

/// What the command side runs after each delivery command: the drone follows.
fn follow(drone: &mut Drone, delivery: &Delivery) {
    match drone.follow(DRONE, DELIVERY, delivery) {
        FollowUp::Append(events) => record(drone, &events),
        FollowUp::InLine => {}
        undecided @ FollowUp::Undecided { .. } => panic!("{undecided:?}"),
    }
}

#[test]
fn a_delivery_goes_from_created_to_completed_and_its_drone_back_to_idle() {
    let owner = account(&[account_registered()]);
    let mut delivery = Delivery::default();
    let mut drone = Drone::default();
    run(&mut drone, |d| {
        d.register(&drone_spec(PAYLOAD_KG, RANGE_KM))
    });
    run(&mut delivery, |d| schedule(d, &owner));

    let job = delivery.job().expect("awaits a drone");
    let reserved = run(&mut drone, |d| d.reserve(DRONE, DELIVERY, &job, ATTEMPT));
    let [Event::DroneAssigned(reservation)] = reserved.as_slice() else {
        panic!("{reserved:?}");
    };
    run(&mut delivery, |d| d.assign_drone(reservation));
    follow(&mut drone, &delivery);
    assert_eq!(delivery.stage, Some(Stage::HeadedToPickup));
    assert_eq!(drone.status, Some(DroneStatus::Assigned));

    run(&mut delivery, |d| d.pick_up(DELIVERY, at(9, 10)));
    follow(&mut drone, &delivery);
    assert_eq!(delivery.stage, Some(Stage::HeadedToDropoff));
    assert_eq!(drone.status, Some(DroneStatus::EnRouteToDropoff));

    let proof = confirmation(ConfirmationType::None);
    run(&mut delivery, |d| d.complete(DELIVERY, &proof));
    follow(&mut drone, &delivery);
    assert_eq!(delivery.stage, Some(Stage::Completed));
    assert_eq!(drone.status, Some(DroneStatus::Returning));
    assert_eq!(drone.delivery_id, None);
    // Following again changes nothing.
    assert_eq!(drone.follow(DRONE, DELIVERY, &delivery), FollowUp::InLine);

    run(&mut drone, Drone::return_to_service);
    assert!(drone.is_idle());
}
