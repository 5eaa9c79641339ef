//! Packages: registered once with their size, weight and tag.

use domain::{DomainError, Package, PackageInfo};
use schemas::events::{Event, PackageRegistered, PackageSize};

use crate::framework::*;

fn parcel() -> PackageInfo {
    PackageInfo::new(PackageSize::Medium, 2.5, Some("fragile".into())).expect("valid")
}

fn parcel_registered() -> Event {
    Event::PackageRegistered(PackageRegistered {
        size: PackageSize::Medium,
        weight_kg: 2.5,
        tag: Some("fragile".into()),
    })
}

#[test]
fn registering_a_package_records_its_size_weight_and_tag() {
    given_nothing()
        .when(|package: &Package| package.register(&parcel()))
        .then_expect(vec![parcel_registered()]);
}

#[test]
fn a_package_is_registered_only_once() {
    given([parcel_registered()])
        .when(|package: &Package| package.register(&parcel()))
        .then_error(DomainError::PackageAlreadyRegistered);
}

#[test]
fn a_registered_package_keeps_its_details() {
    let package: Package = state(&[parcel_registered()]);
    assert!(package.exists());
    assert_eq!(package.size, Some(PackageSize::Medium));
    assert_eq!(package.weight_kg, 2.5);
    assert_eq!(package.tag.as_deref(), Some("fragile"));
    assert!(!Package::default().exists());
}
