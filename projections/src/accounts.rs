use crate::error::ProjectionError;
use crate::projection::{Projection, Source, Staged};
use async_trait::async_trait;
use read_model::tables::{ACCOUNT_KEYS, ACCOUNTS, SINGLE_ROW};
use read_model::views::{AccountKey, AccountView};
use read_model::{Model, models};
use schemas::events::{Envelope, Event};

/// Accounts and their status (the query side uses it to tell unknown accounts), and
/// the hash of each account's current API key.
pub struct AccountsProjection;

#[async_trait]
impl Projection for AccountsProjection {
    fn model(&self) -> Model {
        models::ACCOUNTS
    }

    async fn project(
        &self,
        envelope: &Envelope,
        _source: Source,
        staged: &mut Staged<'_>,
    ) -> Result<(), ProjectionError> {
        let meta = &envelope.metadata;
        let current: Option<(AccountView, u64)> = staged
            .view(ACCOUNTS, &meta.aggregate_id, SINGLE_ROW)
            .await?;
        if current
            .as_ref()
            .is_some_and(|(_, v)| *v >= meta.aggregate_version)
        {
            return Ok(()); // applied already
        }
        let mut view = match (&envelope.event, current) {
            (Event::AccountRegistered(e), _) => AccountView {
                account_id: meta.aggregate_id.clone(),
                name: e.name.clone(),
                email: e.email.clone(),
                status: "active".into(),
                api_key_hash: e.api_key_hash.clone(),
                version: 0,
                updated_at: meta.occurred_at,
            },
            (Event::AccountSuspended(_), Some((view, _))) => AccountView {
                status: "suspended".into(),
                ..view
            },
            (Event::AccountReactivated(_), Some((view, _))) => AccountView {
                status: "active".into(),
                ..view
            },
            (Event::AccountKeyRotated(e), Some((view, _))) => {
                if !view.api_key_hash.is_empty() {
                    staged.delete(
                        ACCOUNT_KEYS,
                        &view.api_key_hash,
                        SINGLE_ROW,
                        meta.aggregate_version,
                    );
                }
                AccountView {
                    api_key_hash: e.api_key_hash.clone(),
                    ..view
                }
            }
            _ => return Ok(()),
        };
        if matches!(
            envelope.event,
            Event::AccountRegistered(_) | Event::AccountKeyRotated(_)
        ) && !view.api_key_hash.is_empty()
        {
            let key = AccountKey {
                account_id: meta.aggregate_id.clone(),
            };
            staged.put(
                ACCOUNT_KEYS,
                &view.api_key_hash,
                SINGLE_ROW,
                key,
                meta.aggregate_version,
            );
        }
        view.version = meta.aggregate_version;
        view.updated_at = meta.occurred_at;
        let version = view.version;
        staged.guard(ACCOUNTS, &meta.aggregate_id, SINGLE_ROW, view, version);
        Ok(())
    }
}
