//! Accounts: registered once, suspended and reactivated; only active accounts schedule.

use domain::{Account, AccountStatus, DomainError, RegisterAccount};
use schemas::events::{AccountKeyRotated, AccountRegistered, AccountSuspended, Event};

use crate::fixtures::*;
use crate::framework::*;

fn contoso() -> RegisterAccount {
    RegisterAccount::new("Contoso", "ops@contoso.example").expect("valid")
}

#[test]
fn registering_an_account_records_its_name_email_and_key_hash() {
    given_nothing()
        .when(|account: &Account| account.register(&contoso(), "hash-1"))
        .then_expect(vec![Event::AccountRegistered(AccountRegistered {
            name: "Contoso".into(),
            email: "ops@contoso.example".into(),
            api_key_hash: "hash-1".into(),
        })]);
}

#[test]
fn a_rotated_key_replaces_the_one_before() {
    given([account_registered()])
        .when(|account: &Account| account.rotate_key("hash-2"))
        .then_expect(vec![Event::AccountKeyRotated(AccountKeyRotated {
            api_key_hash: "hash-2".into(),
        })]);
    let account: Account = state(&[
        account_registered(),
        Event::AccountKeyRotated(AccountKeyRotated {
            api_key_hash: "hash-2".into(),
        }),
    ]);
    assert_eq!(account.key_hash, "hash-2");
}

#[test]
fn an_unknown_account_has_no_key_to_rotate() {
    given_nothing()
        .when(|account: &Account| account.rotate_key("hash-2"))
        .then_error(DomainError::AccountNotFound);
}

#[test]
fn an_account_is_registered_only_once() {
    given([account_registered()])
        .when(|account: &Account| account.register(&contoso(), "hash-1"))
        .then_error(DomainError::AccountAlreadyRegistered);
}

#[test]
fn a_registered_account_is_active() {
    let account: Account = state(&[account_registered()]);
    assert!(account.exists() && account.is_active());
    assert_eq!(account.name, "Contoso");
    assert_eq!(account.email, "ops@contoso.example");
}

#[test]
fn an_unregistered_account_neither_exists_nor_is_active() {
    let account = Account::default();
    assert!(!account.exists() && !account.is_active());
}

#[test]
fn an_active_account_can_be_suspended() {
    given([account_registered()])
        .when(|account: &Account| account.suspend(Some("unpaid invoice".into())))
        .then_expect(vec![Event::AccountSuspended(AccountSuspended {
            reason: Some("unpaid invoice".into()),
        })]);
}

#[test]
fn a_suspended_account_is_not_active() {
    let account: Account = state(&[account_registered(), account_suspended()]);
    assert_eq!(account.status, Some(AccountStatus::Suspended));
    assert!(!account.is_active());
}

#[test]
fn a_suspended_account_cannot_be_suspended_again() {
    given([account_registered(), account_suspended()])
        .when(|account: &Account| account.suspend(None))
        .then_error(DomainError::AccountAlreadySuspended);
}

#[test]
fn a_suspended_account_can_be_reactivated() {
    given([account_registered(), account_suspended()])
        .when(|account: &Account| account.reactivate())
        .then_expect(vec![account_reactivated()]);
}

#[test]
fn a_reactivated_account_is_active_again() {
    let account: Account = state(&[
        account_registered(),
        account_suspended(),
        account_reactivated(),
    ]);
    assert!(account.is_active());
}

#[test]
fn an_active_account_cannot_be_reactivated() {
    given([account_registered()])
        .when(|account: &Account| account.reactivate())
        .then_error(DomainError::AccountAlreadyActive);
}

#[test]
fn an_unknown_account_cannot_be_suspended_or_reactivated() {
    given_nothing()
        .when(|account: &Account| account.suspend(None))
        .then_error(DomainError::AccountNotFound);
    given_nothing()
        .when(|account: &Account| account.reactivate())
        .then_error(DomainError::AccountNotFound);
}

#[test]
fn an_account_ignores_events_of_other_aggregates() {
    let account: Account = state(&[account_registered(), drone_grounded(), cancelled()]);
    assert!(account.is_active());
}
