//! The channels: email through an SMTP relay, SMS through an HTTP gateway, webhooks by
//! HTTP POST signed with the subscription's secret; each message tried again with
//! exponential backoff, up to a bounded number of attempts.

use crate::plan::{Channel, Kind, Message};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// How long one HTTP or SMTP attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Where and how messages are sent.
#[derive(Clone, Debug)]
pub struct Channels {
    /// `host:port` of the SMTP relay (no email is sent without it).
    pub smtp_relay: Option<String>,
    /// The sender of the emails.
    pub email_from: String,
    /// The URL SMS messages are POSTed to (no SMS is sent without it).
    pub sms_gateway: Option<String>,
    /// Webhooks may target private, loopback and link-local addresses.
    pub allow_private: bool,
    /// Attempts per message, the first included.
    pub attempts: u32,
    /// The pause after the first failed attempt; it doubles after each.
    pub backoff: Duration,
}

impl Default for Channels {
    /// Nothing to send email or SMS through; five attempts a second apart at first.
    fn default() -> Channels {
        Channels {
            smtp_relay: None,
            email_from: "Drone Delivery <notifications@drone-delivery.invalid>".into(),
            sms_gateway: None,
            allow_private: false,
            attempts: 5,
            backoff: Duration::from_secs(1),
        }
    }
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth another attempt (a timeout, a refused connection, a 5xx, a 4xx SMTP reply).
    #[error("{0}")]
    Transient(String),
    /// Another attempt would fail alike (no relay, a refused target, a bad address, a 4xx).
    #[error("{0}")]
    Permanent(String),
}

/// How a message ended.
#[derive(Debug)]
pub enum Sent {
    Delivered { attempts: u32 },
    GaveUp { attempts: u32, error: String },
}

/// Sends messages; cheap to clone.
#[derive(Clone)]
pub struct Sender {
    channels: Channels,
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    http: reqwest::Client,
    operator_key: String,
}

impl Sender {
    pub fn new(channels: Channels, operator_key: &str) -> Result<Sender, String> {
        let smtp = match &channels.smtp_relay {
            Some(relay) => {
                let (host, port) = relay
                    .rsplit_once(':')
                    .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
                    .ok_or_else(|| format!("--smtp-relay {relay}: give host:port"))?;
                // A relay on the operator's network, without TLS (SPEC: a configured relay).
                Some(
                    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                        .port(port)
                        .timeout(Some(ATTEMPT_TIMEOUT))
                        .build(),
                )
            }
            None => None,
        };
        let from = channels
            .email_from
            .parse::<Mailbox>()
            .map_err(|e| format!("--notify-email-from {}: {e}", channels.email_from))?;
        let http = http_client(None)?;
        Ok(Sender {
            channels,
            smtp,
            from,
            http,
            operator_key: operator_key.to_owned(),
        })
    }

    /// Sends `message`, trying again after transient failures with exponential backoff.
    pub async fn send(&self, message: &Message, on_retry: impl Fn()) -> Sent {
        let mut pause = self.channels.backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match self.attempt(message).await {
                Ok(()) => return Sent::Delivered { attempts },
                Err(SendError::Permanent(error)) => return Sent::GaveUp { attempts, error },
                Err(SendError::Transient(error)) => error,
            };
            if attempts >= self.channels.attempts.max(1) {
                return Sent::GaveUp { attempts, error };
            }
            tracing::info!(id = %message.id(), channel = message.channel.name(), attempts, %error, "notification not sent; trying again");
            on_retry();
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_BACKOFF);
        }
    }

    async fn attempt(&self, message: &Message) -> Result<(), SendError> {
        match &message.channel {
            Channel::Email(to) => self.email(message, to).await,
            Channel::Sms(to) => {
                let Some(gateway) = &self.channels.sms_gateway else {
                    return Err(SendError::Permanent(
                        "no --sms-gateway is configured".into(),
                    ));
                };
                let body = json!({
                    "to": to,
                    "text": text(message),
                    "notificationId": message.id(),
                    "eventId": message.notice.event_id,
                });
                post(&self.http, gateway, body.to_string(), None).await
            }
            Channel::Webhook { url, version } => {
                let client = self.webhook_client(url).await?;
                let body = payload(message).to_string();
                let secret =
                    api::webhook_secret(&self.operator_key, &message.notice.delivery_id, *version);
                let signature = api::webhook_signature(&secret, body.as_bytes());
                post(&client, url, body, Some(signature)).await
            }
        }
    }

    async fn email(&self, message: &Message, to: &str) -> Result<(), SendError> {
        let Some(smtp) = &self.smtp else {
            return Err(SendError::Permanent("no --smtp-relay is configured".into()));
        };
        let to: Mailbox = to
            .parse()
            .map_err(|e| SendError::Permanent(format!("not an email address: {e}")))?;
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject(message))
            .message_id(Some(format!("<{}@drone-delivery>", message.id())))
            .body(format!(
                "{}\n\nDelivery: {}\nNotification: {}\n",
                text(message),
                message.notice.delivery_id,
                message.id()
            ))
            .map_err(|e| SendError::Permanent(format!("cannot build the email: {e}")))?;
        match smtp.send(email).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(format!("SMTP: {e}"))),
            Err(e) => Err(SendError::Transient(format!("SMTP: {e}"))),
        }
    }

    /// A client that reaches the webhook's host at an address checked now (so a name
    /// cannot resolve to a private address between the check and the request), or the
    /// refusal.
    async fn webhook_client(&self, url: &str) -> Result<reqwest::Client, SendError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| SendError::Permanent(format!("not a URL: {e}")))?;
        let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
            return Err(SendError::Permanent("the URL has no host".into()));
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| SendError::Transient(format!("cannot resolve {host}: {e}")))?
            .collect();
        let allowed = addrs
            .iter()
            .copied()
            .find(|a| self.channels.allow_private || is_public(a.ip()));
        match allowed {
            Some(addr) => http_client(Some((host, addr))).map_err(SendError::Permanent),
            None if addrs.is_empty() => Err(SendError::Transient(format!(
                "{host} resolves to no address"
            ))),
            None => Err(SendError::Permanent(format!(
                "refused: {host} resolves to a private, loopback or link-local address (--notify-allow-private allows it)"
            ))),
        }
    }
}

fn http_client(pinned: Option<(&str, SocketAddr)>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        // A redirect could lead anywhere, past the address check.
        .redirect(reqwest::redirect::Policy::none())
        // The retries are ours (counted, with backoff).
        .retry(reqwest::retry::never());
    if let Some((host, addr)) = pinned {
        builder = builder.resolve(host, addr);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    body: String,
    signature: Option<String>,
) -> Result<(), SendError> {
    let mut request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(signature) = signature {
        request = request.header(api::SIGNATURE_HEADER, signature);
    }
    match request.send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => {
            let status = response.status();
            let error = format!("{url} answered {status}");
            if status.is_server_error()
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status == reqwest::StatusCode::REQUEST_TIMEOUT
            {
                Err(SendError::Transient(error))
            } else {
                Err(SendError::Permanent(error))
            }
        }
        Err(e) => Err(SendError::Transient(format!("{url}: {e}"))),
    }
}

/// Reachable from the internet: not private, loopback, link-local, unspecified,
/// broadcast, multicast, shared (CGNAT) or unique-local.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80)
}

/// The JSON a webhook receives.
pub fn payload(message: &Message) -> serde_json::Value {
    let n = &message.notice;
    json!({
        "notificationId": message.id(),
        "eventId": n.event_id,
        "deliveryId": n.delivery_id,
        "kind": n.kind.as_str(),
        "stage": n.stage,
        "droneId": n.drone_id,
        "pickupEta": n.pickup_eta,
        "deliveryEta": n.delivery_eta,
        "at": n.at,
    })
}

fn subject(message: &Message) -> String {
    let what = match message.notice.kind {
        Kind::DroneAssigned => "a drone is on its way",
        Kind::EtaChanged => "new arrival time",
        Kind::PickedUp => "picked up",
        Kind::Completed => "delivered",
        Kind::Failed => "delivery failed",
    };
    format!("Your delivery: {what}")
}

/// The one-line text of an email or SMS.
fn text(message: &Message) -> String {
    let n = &message.notice;
    let eta = n
        .delivery_eta
        .map(|at| format!(" Estimated delivery: {}.", at.format("%Y-%m-%d %H:%M UTC")))
        .unwrap_or_default();
    match n.kind {
        Kind::DroneAssigned => format!(
            "Drone {} is assigned to your delivery.{eta}",
            n.drone_id.as_deref().unwrap_or("?")
        ),
        Kind::EtaChanged => format!("Your delivery's arrival time changed.{eta}"),
        Kind::PickedUp => format!("Your package has been picked up.{eta}"),
        Kind::Completed => "Your package has been delivered.".to_owned(),
        Kind::Failed => "Your delivery could not be completed.".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::is_public;

    #[test]
    fn private_loopback_and_link_local_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().expect("an address")), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(ip.parse().expect("an address")), "{ip}");
        }
    }
}
