//! Webhook secrets and signatures. A subscription's secret is derived from the operator
//! key and the notification request it came with (the delivery and the version of its
//! `NotificationRequested` event), so the command side answers it to the subscriber and
//! the notifier signs with it, and it is never written to the log.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub(crate) type Signer = Hmac<Sha256>;

/// The name of the header that carries a webhook message's signature.
pub const SIGNATURE_HEADER: &str = "X-Signature";

/// The secret of the webhook subscribed by version `version` of delivery `delivery_id`.
pub fn webhook_secret(operator_key: &str, delivery_id: &str, version: u64) -> String {
    let key = Sha256::digest(format!("webhook\0{operator_key}").as_bytes());
    let mut mac = signer(&key);
    mac.update(format!("{delivery_id}\0{version}").as_bytes());
    format!("whsec_{}", crate::hex(&mac.finalize().into_bytes()))
}

/// `sha256=<hex HMAC-SHA256 of body under secret>`: the value of [`SIGNATURE_HEADER`].
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = signer(secret.as_bytes());
    mac.update(body);
    format!("sha256={}", crate::hex(&mac.finalize().into_bytes()))
}

/// HMAC-SHA256 under `key` (webhook secrets and signatures, tracking tokens).
pub(crate) fn signer(key: &[u8]) -> Signer {
    // A key of any length is valid for HMAC.
    Signer::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_differ_by_request_and_operator() {
        let a = webhook_secret("operator-key-0123456789", "dlv-1", 3);
        assert_eq!(a, webhook_secret("operator-key-0123456789", "dlv-1", 3));
        assert_ne!(a, webhook_secret("operator-key-0123456789", "dlv-1", 4));
        assert_ne!(a, webhook_secret("operator-key-0123456789", "dlv-2", 3));
        assert_ne!(a, webhook_secret("another-operator-key-000", "dlv-1", 3));
        assert!(a.starts_with("whsec_") && a.len() == 6 + 64);
    }

    #[test]
    fn the_signature_is_the_hmac_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            webhook_signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
