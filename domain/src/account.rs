use schemas::events::{
    AccountKeyRotated, AccountReactivated, AccountRegistered, AccountSuspended, Event,
};
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// `None` until registered.
    pub status: Option<AccountStatus>,
    pub name: String,
    pub email: String,
    /// SHA-256 (hex) of the account's current API key; empty for accounts registered
    /// before keys existed.
    pub key_hash: String,
}

impl Account {
    pub fn exists(&self) -> bool {
        self.status.is_some()
    }

    /// Only active accounts schedule deliveries.
    pub fn is_active(&self) -> bool {
        self.status == Some(AccountStatus::Active)
    }

    /// Registers the account with the hash of its first API key.
    pub fn register(
        &self,
        cmd: &RegisterAccount,
        key_hash: &str,
    ) -> Result<Vec<Event>, DomainError> {
        if self.exists() {
            return Err(DomainError::AccountAlreadyRegistered);
        }
        Ok(vec![Event::AccountRegistered(AccountRegistered {
            name: cmd.name().to_owned(),
            email: cmd.email().to_owned(),
            api_key_hash: key_hash.to_owned(),
        })])
    }

    /// Replaces the account's API key (suspended accounts too: a leaked key is revoked
    /// whatever the account's standing).
    pub fn rotate_key(&self, key_hash: &str) -> Result<Vec<Event>, DomainError> {
        if !self.exists() {
            return Err(DomainError::AccountNotFound);
        }
        Ok(vec![Event::AccountKeyRotated(AccountKeyRotated {
            api_key_hash: key_hash.to_owned(),
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
                self.key_hash.clone_from(&e.api_key_hash);
            }
            Event::AccountKeyRotated(e) => self.key_hash.clone_from(&e.api_key_hash),
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
