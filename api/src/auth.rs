//! Who is calling (SPEC §5): every request but the probes carries
//! `Authorization: Bearer KEY`. Keys are random and opaque; only their SHA-256 is kept:
//! the operator's and the analyst's in the settings, each account's in its events on the
//! accounts topic (so every process that folds or projects them knows it).

use crate::tracking::{TrackingTokens, Watch};
use async_trait::async_trait;
use chrono::Utc;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;

/// The caller a request (and every event it causes) is attributed to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Principal {
    /// Runs the fleet and sees every tenant.
    Operator,
    /// The dispatching workflow: an operator that is a process, named apart in events.
    Workflow,
    /// Reads every tenant, changes nothing.
    Analyst,
    /// A business: its own account and deliveries only.
    Account(String),
    /// A browser with a tracking token: watches one thing, reads nothing else.
    Viewer(Watch),
    /// The command side's own follow-ups and compensations.
    #[default]
    System,
}

impl Principal {
    /// Runs fleet and account commands.
    pub fn is_operator(&self) -> bool {
        matches!(
            self,
            Principal::Operator | Principal::Workflow | Principal::System
        )
    }

    /// Reads every tenant's data.
    pub fn reads_all(&self) -> bool {
        self.is_operator() || *self == Principal::Analyst
    }

    /// The account an account key speaks for.
    pub fn account(&self) -> Option<&str> {
        match self {
            Principal::Account(id) => Some(id),
            _ => None,
        }
    }

    /// Whether this caller may watch delivery `id`'s status (an account: only if it
    /// owns it, which the caller checks with [`Principal::sees`]).
    pub fn watches(&self, watch: &Watch) -> bool {
        matches!(self, Principal::Viewer(w) if w == watch)
    }

    /// Whether this caller may see or act on what `owner_id` owns.
    pub fn sees(&self, owner_id: &str) -> bool {
        match self {
            Principal::Account(id) => id == owner_id,
            _ => self.reads_all(),
        }
    }
}

/// The text form events record: `operator`, `workflow`, `analyst`, `account:<id>`, `system`.
impl Principal {
    /// The principal a name of [`fmt::Display`] stands for, as a peer `command-api`
    /// passes it on with a step it asks for (a viewer sends no commands: `System`).
    pub fn named(name: &str) -> Principal {
        match name {
            "operator" => Principal::Operator,
            "workflow" => Principal::Workflow,
            "analyst" => Principal::Analyst,
            _ => match name.strip_prefix("account:") {
                Some(id) => Principal::Account(id.to_owned()),
                None => Principal::System,
            },
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Operator => f.write_str("operator"),
            Principal::Workflow => f.write_str("workflow"),
            Principal::Analyst => f.write_str("analyst"),
            Principal::Account(id) => write!(f, "account:{id}"),
            Principal::Viewer(watch) => write!(f, "viewer:{watch}"),
            Principal::System => f.write_str("system"),
        }
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// What is kept of a key: its SHA-256, in hex. Keys carry 244 random bits, so a
/// fast hash is enough (no dictionary to guess from).
pub fn key_hash(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// A fresh key: `dd_<kind>_` and 244 random bits (two v4 UUIDs) in hex.
pub fn new_key(kind: &str) -> String {
    format!(
        "dd_{kind}_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The workflow's key, derived from the operator's so that every process that knows
/// the one knows the other and events tell the workflow's commands apart.
pub fn workflow_key(operator_key: &str) -> String {
    format!(
        "dd_workflow_{}",
        hex(&Sha256::digest(
            format!("workflow\0{operator_key}").as_bytes()
        ))
    )
}

/// Where the hashes of account keys are looked up.
#[async_trait]
pub trait AccountKeys: Send + Sync {
    /// The account whose current key has this hash.
    async fn account_of(&self, key_hash: &str) -> Option<String>;
}

/// For a process with neither command side nor query side: no account keys.
pub struct NoAccounts;

#[async_trait]
impl AccountKeys for NoAccounts {
    async fn account_of(&self, _key_hash: &str) -> Option<String> {
        None
    }
}

/// Why a request was not authenticated (401).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unauthenticated {
    Missing,
    Malformed,
    Unknown,
    /// A tracking token that is forged, expired or for another route.
    BadToken,
}

impl fmt::Display for Unauthenticated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unauthenticated::Missing => "this request needs an API key: Authorization: Bearer KEY",
            Unauthenticated::Malformed => "the Authorization header must be \"Bearer KEY\"",
            Unauthenticated::Unknown => "the API key is not valid",
            Unauthenticated::BadToken => {
                "the tracking token is not valid here or has expired; ask for a new one"
            }
        })
    }
}

/// Tells principals from keys.
pub struct Authenticator {
    operator: String,
    workflow: String,
    analyst: Option<String>,
    accounts: Arc<dyn AccountKeys>,
    tracking: TrackingTokens,
}

impl Authenticator {
    pub fn new(
        operator_key: &str,
        analyst_key: Option<&str>,
        accounts: Arc<dyn AccountKeys>,
    ) -> Authenticator {
        Authenticator {
            operator: key_hash(operator_key),
            workflow: key_hash(&workflow_key(operator_key)),
            analyst: analyst_key.map(key_hash),
            accounts,
            tracking: TrackingTokens::new(operator_key),
        }
    }

    /// The principal of a tracking token (`?t=`), for the routes that take one.
    pub fn viewer(&self, token: &str) -> Result<Principal, Unauthenticated> {
        self.tracking
            .check(token, Utc::now())
            .map(Principal::Viewer)
            .ok_or(Unauthenticated::BadToken)
    }

    /// The principal of an `Authorization` header's value.
    pub async fn principal(
        &self,
        authorization: Option<&[u8]>,
    ) -> Result<Principal, Unauthenticated> {
        let value = authorization.ok_or(Unauthenticated::Missing)?;
        let value = std::str::from_utf8(value).map_err(|_| Unauthenticated::Malformed)?;
        let (scheme, key) = value
            .trim()
            .split_once(' ')
            .ok_or(Unauthenticated::Malformed)?;
        let key = key.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || key.is_empty() || key.len() > 256 {
            return Err(Unauthenticated::Malformed);
        }
        let hash = key_hash(key);
        if equal(&hash, &self.operator) {
            Ok(Principal::Operator)
        } else if equal(&hash, &self.workflow) {
            Ok(Principal::Workflow)
        } else if self.analyst.as_deref().is_some_and(|a| equal(&hash, a)) {
            Ok(Principal::Analyst)
        } else if let Some(account) = self.accounts.account_of(&hash).await {
            Ok(Principal::Account(account))
        } else {
            Err(Unauthenticated::Unknown)
        }
    }
}

/// Compares two hashes in time independent of where they differ.
fn equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    struct OneAccount(String);

    #[async_trait]
    impl AccountKeys for OneAccount {
        async fn account_of(&self, key_hash: &str) -> Option<String> {
            (key_hash == self.0).then(|| "acme".to_string())
        }
    }

    #[tokio::test]
    async fn tells_every_principal_by_its_key() {
        let account_key = new_key("acct");
        let auth = Authenticator::new(
            "op-secret",
            Some("an-secret"),
            Arc::new(OneAccount(key_hash(&account_key))),
        );
        let who = |v: String| {
            let auth = &auth;
            async move { auth.principal(Some(v.as_bytes())).await }
        };
        assert_eq!(
            who("Bearer op-secret".into()).await,
            Ok(Principal::Operator)
        );
        assert_eq!(
            who("bearer  an-secret ".into()).await,
            Ok(Principal::Analyst)
        );
        assert_eq!(
            who(format!("Bearer {}", workflow_key("op-secret"))).await,
            Ok(Principal::Workflow)
        );
        assert_eq!(
            who(format!("Bearer {account_key}")).await,
            Ok(Principal::Account("acme".into()))
        );
        assert_eq!(
            who("Bearer nope".into()).await,
            Err(Unauthenticated::Unknown)
        );
        assert_eq!(
            who("Basic b3A=".into()).await,
            Err(Unauthenticated::Malformed)
        );
        assert_eq!(
            who("op-secret".into()).await,
            Err(Unauthenticated::Malformed)
        );
        assert_eq!(auth.principal(None).await, Err(Unauthenticated::Missing));
    }

    #[test]
    fn keys_are_fresh_and_principals_print_as_events_record_them() {
        assert_ne!(new_key("acct"), new_key("acct"));
        assert!(new_key("acct").starts_with("dd_acct_"));
        assert_eq!(Principal::Account("a1".into()).to_string(), "account:a1");
        assert!(Principal::Analyst.reads_all() && !Principal::Analyst.is_operator());
        assert!(Principal::Account("a1".into()).sees("a1"));
        assert!(!Principal::Account("a1".into()).sees("a2"));
    }
}
