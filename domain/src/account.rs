use schemas::events::{AccountReactivated, AccountRegistered, AccountSuspended, Event};
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::error::DomainError;
use crate::values::RegisterAccount;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AccountStatus {
    Active,
    Suspended,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Suspended => "suspended",
        }
    }
}

/// A business that schedules deliveries. `Default` is an account not registered yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Account {
    /// `None` until registered.
    pub status: Option<AccountStatus>,
    pub name: String,
    pub email: String,
}

impl Account {
    pub fn exists(&self) -> bool {
        self.status.is_some()
    }

    /// Only active accounts schedule deliveries.
    pub fn is_active(&self) -> bool {
        self.status == Some(AccountStatus::Active)
    }

    pub fn register(&self, cmd: &RegisterAccount) -> Result<Vec<Event>, DomainError> {
        if self.exists() {
            return Err(DomainError::AccountAlreadyRegistered);
        }
        Ok(vec![Event::AccountRegistered(AccountRegistered {
            name: cmd.name().to_owned(),
            email: cmd.email().to_owned(),
        })])
    }

    pub fn suspend(&self, reason: Option<String>) -> Result<Vec<Event>, DomainError> {
        match self.status {
            None => Err(DomainError::AccountNotFound),
            Some(AccountStatus::Suspended) => Err(DomainError::AccountAlreadySuspended),
            Some(AccountStatus::Active) => {
                Ok(vec![Event::AccountSuspended(AccountSuspended { reason })])
            }
        }
    }

    pub fn reactivate(&self) -> Result<Vec<Event>, DomainError> {
        match self.status {
            None => Err(DomainError::AccountNotFound),
            Some(AccountStatus::Active) => Err(DomainError::AccountAlreadyActive),
            Some(AccountStatus::Suspended) => {
                Ok(vec![Event::AccountReactivated(AccountReactivated {})])
            }
        }
    }

    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::AccountRegistered(e) => {
                self.status = Some(AccountStatus::Active);
                self.name.clone_from(&e.name);
                self.email.clone_from(&e.email);
            }
            Event::AccountSuspended(_) => self.status = Some(AccountStatus::Suspended),
            Event::AccountReactivated(_) => self.status = Some(AccountStatus::Active),
            _ => {}
        }
    }
}

impl Aggregate for Account {
    fn apply(&mut self, event: &Event, _at: chrono::DateTime<chrono::Utc>) {
        Account::apply(self, event);
    }
}
