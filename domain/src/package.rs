use schemas::events::{Event, PackageRegistered, PackageSize};

use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::values::PackageInfo;

/// A parcel to carry. `Default` is a package not registered yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Package {
    /// `None` until registered.
    pub size: Option<PackageSize>,
    pub weight_kg: f64,
    pub tag: Option<String>,
}

impl Package {
    pub fn exists(&self) -> bool {
        self.size.is_some()
    }

    pub fn register(&self, info: &PackageInfo) -> Result<Vec<Event>, DomainError> {
        if self.exists() {
            return Err(DomainError::PackageAlreadyRegistered);
        }
        Ok(vec![Event::PackageRegistered(PackageRegistered {
            size: info.size(),
            weight_kg: info.weight_kg(),
            tag: info.tag().map(str::to_owned),
        })])
    }

    pub fn apply(&mut self, event: &Event) {
        if let Event::PackageRegistered(e) = event {
            self.size = Some(e.size);
            self.weight_kg = e.weight_kg;
            self.tag.clone_from(&e.tag);
        }
    }
}

impl Aggregate for Package {
    fn apply(&mut self, event: &Event, _at: chrono::DateTime<chrono::Utc>) {
        Package::apply(self, event);
    }
}
