//! Read-only tokens for what a browser watches without an API key (an `EventSource`
//! cannot send `Authorization`): a customer's one delivery, or the fleet for an
//! operator's page. A token is `<expiry>.<signature>.<scope>`: the scope and its expiry
//! (Unix seconds), signed with HMAC-SHA256 under a key derived from the operator key, so
//! every process that knows the operator key checks them and none are stored.

use crate::webhook::{Signer, signer};
use chrono::{DateTime, Utc};
use hmac::Mac;
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// How long a customer's tracking link works: past any delivery's deadline.
pub const TRACKING_TTL: chrono::TimeDelta = chrono::TimeDelta::days(14);
/// How long a fleet stream token minted for a page works (the page mints the next).
pub const STREAM_TOKEN_TTL: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// What a token lets its bearer watch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Watch {
    /// One delivery's status and stream (a customer's tracking link).
    Delivery(String),
    /// The fleet stream (minted for an operator's or analyst's page).
    Fleet,
}

impl fmt::Display for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Watch::Delivery(id) => write!(f, "delivery:{id}"),
            Watch::Fleet => f.write_str("fleet"),
        }
    }
}

impl FromStr for Watch {
    type Err = ();

    fn from_str(s: &str) -> Result<Watch, ()> {
        match s.split_once(':') {
            Some(("delivery", id)) if !id.is_empty() => Ok(Watch::Delivery(id.to_owned())),
            None if s == "fleet" => Ok(Watch::Fleet),
            _ => Err(()),
        }
    }
}

/// Mints and checks tracking tokens.
#[derive(Clone)]
pub struct TrackingTokens {
    key: [u8; 32],
}

impl fmt::Debug for TrackingTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TrackingTokens")
    }
}

impl TrackingTokens {
    pub fn new(operator_key: &str) -> TrackingTokens {
        TrackingTokens {
            key: Sha256::digest(format!("tracking\0{operator_key}").as_bytes()).into(),
        }
    }

    fn signature(&self, expiry: i64, scope: &str) -> Signer {
        let mut mac = signer(&self.key);
        mac.update(format!("{expiry}\0{scope}").as_bytes());
        mac
    }

    /// A token for `watch` that expires at `expires`.
    pub fn mint(&self, watch: &Watch, expires: DateTime<Utc>) -> String {
        let expiry = expires.timestamp();
        let scope = watch.to_string();
        let signature = crate::hex(&self.signature(expiry, &scope).finalize().into_bytes());
        format!("{expiry}.{signature}.{scope}")
    }

    /// The customer's tracking page for delivery `id`, opened with `token`.
    pub fn page(id: &str, token: &str) -> String {
        format!("/track/{id}?t={token}")
    }

    /// What a token lets its bearer watch, if it is genuine and not expired at `now`.
    pub fn check(&self, token: &str, now: DateTime<Utc>) -> Option<Watch> {
        let mut parts = token.splitn(3, '.');
        let expiry: i64 = parts.next()?.parse().ok()?;
        let signature = decode_hex(parts.next()?)?;
        let scope = parts.next()?;
        if expiry < now.timestamp() {
            return None;
        }
        // `verify_slice` compares in constant time.
        self.signature(expiry, scope)
            .verify_slice(&signature)
            .ok()?;
        scope.parse().ok()
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn a_token_lets_its_bearer_watch_its_scope_until_it_expires() {
        let tokens = TrackingTokens::new("op");
        let now = Utc::now();
        let watch = Watch::Delivery("d-1.x".into());
        let token = tokens.mint(&watch, now + Duration::hours(1));
        assert_eq!(tokens.check(&token, now), Some(watch.clone()));
        assert_eq!(
            tokens.check(&token, now + Duration::hours(2)),
            None,
            "expired"
        );
        let fleet = tokens.mint(&Watch::Fleet, now + Duration::minutes(5));
        assert_eq!(tokens.check(&fleet, now), Some(Watch::Fleet));
    }

    #[test]
    fn a_changed_scope_expiry_or_key_is_refused() {
        let tokens = TrackingTokens::new("op");
        let now = Utc::now();
        let token = tokens.mint(&Watch::Delivery("d1".into()), now + Duration::hours(1));
        let (head, _) = token.rsplit_once('.').expect("three parts");
        assert_eq!(tokens.check(&format!("{head}.delivery:d2"), now), None);
        let (expiry, rest) = token.split_once('.').expect("three parts");
        let later: i64 = expiry.parse::<i64>().expect("a number") + 1;
        assert_eq!(tokens.check(&format!("{later}.{rest}"), now), None);
        assert_eq!(TrackingTokens::new("other").check(&token, now), None);
        for junk in ["", "1.2.3", "x.y.fleet", "99999999999.zz.fleet"] {
            assert_eq!(tokens.check(junk, now), None, "{junk:?}");
        }
    }
}
