//! Registering the checked-in schemas with a Confluent-compatible schema registry, so the
//! records carry the registry's ids and any Kafka tool with a registry deserializer reads
//! them (ADR 7).
//!
//! Every schema of `avro/manifest.json` is registered, oldest versions first, under its
//! subject by `RecordNameStrategy` (the record's full name,
//! `drone_delivery.events.DeliveryCreated`), with `POST /subjects/{subject}/versions`.
//! Registering a schema the subject already has returns its id, so every process of a
//! deployment learns the same ids by registering at start-up. The ids it returns become
//! the frame ids of a [`Codec`] ([`Codec::with_registry_ids`]).
//!
//! The request bodies, the URLs and the reading of answers are plain functions, tested
//! without a registry; [`register`] sends them (behind the `registry` feature).

use std::fmt;

use crate::codec::{Codec, CodecError};
use crate::events::{SCHEMA_FILES, SchemaFile};

/// The media type of the registry's REST API, for requests and answers.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// What a client of the registry accepts (Confluent's own clients send the same).
pub const ACCEPT: &str = "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json; q=0.9, application/json; q=0.5";

/// Namespace of every record the manifest lists.
const NAMESPACE: &str = "drone_delivery.events";

/// Where the registry is and how to log in to it (HTTP basic authentication).
#[derive(Clone)]
pub struct RegistryConfig {
    /// `http://HOST:PORT` or `https://HOST:PORT`, possibly with a path.
    pub url: String,
    /// User name and password.
    pub basic_auth: Option<(String, String)>,
}

impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &self.url)
            .field(
                "basic_auth",
                &self.basic_auth.as_ref().map(|(user, _)| (user, "***")),
            )
            .finish()
    }
}

/// Why the schemas could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry URL {url:?}: {detail}")]
    Url { url: String, detail: String },
    #[error("cannot reach the schema registry at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error(
        "the schema registry at {url} refused the credentials (HTTP {status}): {message}; set --schema-registry-username and --schema-registry-password"
    )]
    Unauthorized {
        url: String,
        status: u16,
        message: String,
    },
    /// 409: the subject's compatibility level refuses the schema.
    #[error(
        "the schema registry refuses {file} under subject {subject}: it is incompatible with the versions registered there ({message}); the registry's compatibility level for the subject decides"
    )]
    Incompatible {
        subject: String,
        file: &'static str,
        message: String,
    },
    /// 422: the registry does not take the schema (or the request) as valid.
    #[error("the schema registry finds {file} (subject {subject}) invalid: {message}")]
    Invalid {
        subject: String,
        file: &'static str,
        message: String,
    },
    #[error("the schema registry answered HTTP {status} to {file} (subject {subject}){code}: {message}", code = error_code(.code))]
    Refused {
        subject: String,
        file: &'static str,
        status: u16,
        code: Option<i64>,
        message: String,
    },
    #[error("the schema registry's answer to {file} (subject {subject}) is not an id: {detail}")]
    BadAnswer {
        subject: String,
        file: &'static str,
        detail: String,
    },
    /// The ids it gave do not make a codec (e.g. one id for two schemas).
    #[error("the schema registry's ids: {0}")]
    Ids(#[source] CodecError),
}

fn error_code(code: &Option<i64>) -> String {
    code.map(|c| format!(", error code {c}"))
        .unwrap_or_default()
}

/// One schema to register.
#[derive(Clone, Copy, Debug)]
pub struct Registration {
    pub file: &'static SchemaFile,
}

impl Registration {
    /// The subject by `RecordNameStrategy`: the record's full name.
    pub fn subject(&self) -> String {
        format!("{NAMESPACE}.{}", self.file.subject)
    }

    /// The request body: the schema as a string; `schemaType` is left out, so it is Avro
    /// (the registry's default, and all that registries older than 5.5 understand).
    pub fn body(&self) -> String {
        serde_json::json!({ "schema": self.file.text }).to_string()
    }

    /// `{base}/subjects/{subject}/versions`, the subject escaped as a path segment.
    pub fn url(&self, base: &str) -> Result<String, RegistryError> {
        let subject: String = self
            .subject()
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect();
        Ok(format!("{}/subjects/{subject}/versions", base_url(base)?))
    }

    /// Reads the registry's answer (`status`, `body`): the schema's id, or why not.
    pub fn read_answer(&self, url: &str, status: u16, body: &str) -> Result<u32, RegistryError> {
        let subject = self.subject();
        let file = self.file.file;
        let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
        if (200..300).contains(&status) {
            let bad = |detail: String| RegistryError::BadAnswer {
                subject: subject.clone(),
                file,
                detail,
            };
            let json = json.ok_or_else(|| bad(format!("not JSON: {}", excerpt(body))))?;
            let id = json
                .get("id")
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| bad(format!("no \"id\" in {}", excerpt(body))))?;
            return u32::try_from(id)
                .ok()
                .filter(|id| i32::try_from(*id).is_ok())
                .ok_or_else(|| bad(format!("id {id} does not fit an Avro int")));
        }
        // Confluent's errors: {"error_code": 40901, "message": "…"}.
        let code = json
            .as_ref()
            .and_then(|j| j.get("error_code"))
            .and_then(serde_json::Value::as_i64);
        let message = json
            .as_ref()
            .and_then(|j| j.get("message"))
            .and_then(serde_json::Value::as_str)
            .map_or_else(|| excerpt(body), str::to_owned);
        Err(match status {
            401 | 403 => RegistryError::Unauthorized {
                url: url.to_owned(),
                status,
                message,
            },
            409 => RegistryError::Incompatible {
                subject,
                file,
                message,
            },
            422 => RegistryError::Invalid {
                subject,
                file,
                message,
            },
            _ => RegistryError::Refused {
                subject,
                file,
                status,
                code,
                message,
            },
        })
    }
}

/// The registry's URL as requests start with it: `http(s)://HOST[:PORT][/PATH]` without
/// a trailing slash. Credentials in it are refused (they go in [`RegistryConfig`], and a
/// URL is shown in messages).
pub fn base_url(url: &str) -> Result<String, RegistryError> {
    let bad = |detail: &str| RegistryError::Url {
        url: shown_url(url),
        detail: detail.to_owned(),
    };
    let (scheme, rest) = url
        .split_once("://")
        .filter(|(scheme, _)| matches!(*scheme, "http" | "https"))
        .ok_or_else(|| bad("give it as http://HOST:PORT or https://HOST:PORT"))?;
    let rest = rest.trim_end_matches('/');
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(bad("it names no host"));
    }
    if host.contains('@') {
        return Err(bad(
            "credentials do not go in the URL: use --schema-registry-username and --schema-registry-password",
        ));
    }
    Ok(format!("{scheme}://{rest}"))
}

/// `url` as messages show it: without a password someone put in it.
fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{}", &rest[host_end..]),
        None => url.to_owned(),
    }
}

/// At most 200 characters of an answer, for a message.
fn excerpt(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return "an empty body".to_owned();
    }
    let mut shown: String = body.chars().take(200).collect();
    if shown.len() < body.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

/// Every schema of the manifest in the order to register them: all first versions, then
/// all second ones, …, so each subject's versions arrive oldest first and the registry's
/// compatibility check compares each with the one before.
pub fn registrations() -> Vec<Registration> {
    let mut files: Vec<&'static SchemaFile> = SCHEMA_FILES.iter().collect();
    files.sort_by_key(|f| f.version);
    files
        .into_iter()
        .map(|file| Registration { file })
        .collect()
}

/// The codec for the ids the registry gave: `(manifest id, registry id)` per schema.
pub fn codec_for(ids: impl IntoIterator<Item = (u32, u32)>) -> Result<Codec, RegistryError> {
    Codec::with_registry_ids(ids).map_err(RegistryError::Ids)
}

/// Registers every schema of the manifest with the registry and returns the codec that
/// frames records with the ids it gave.
#[cfg(feature = "registry")]
pub async fn register(config: &RegistryConfig) -> Result<Codec, RegistryError> {
    codec_for(register_all(config).await?)
}

/// Registers every schema of the manifest: `(manifest id, registry id)` of each.
#[cfg(feature = "registry")]
pub async fn register_all(config: &RegistryConfig) -> Result<Vec<(u32, u32)>, RegistryError> {
    // Every URL first: a bad one is refused before anything is sent.
    let requests = registrations()
        .into_iter()
        .map(|r| Ok((r, r.url(&config.url)?)))
        .collect::<Result<Vec<_>, RegistryError>>()?;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| RegistryError::Unreachable {
            url: config.url.clone(),
            detail: format!("cannot build the HTTP client: {e}"),
        })?;
    let mut ids = Vec::new();
    for (registration, url) in requests {
        let mut request = client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .header(reqwest::header::ACCEPT, ACCEPT)
            .body(registration.body());
        if let Some((user, password)) = &config.basic_auth {
            request = request.basic_auth(user, Some(password));
        }
        let unreachable = |e: reqwest::Error| RegistryError::Unreachable {
            url: config.url.clone(),
            detail: with_causes(&e.without_url()),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(unreachable)?;
        let id = registration.read_answer(&config.url, status, &body)?;
        ids.push((registration.file.id, id));
    }
    Ok(ids)
}

/// An error and what caused it, `a: b: c` ("error sending request: … Connection refused").
#[cfg(feature = "registry")]
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(subject: &str, version: u32) -> Registration {
        let file = SCHEMA_FILES
            .iter()
            .find(|f| f.subject == subject && f.version == version)
            .expect("in the manifest");
        Registration { file }
    }

    const URL: &str = "http://registry:8081";

    #[test]
    fn subjects_follow_the_record_name_strategy() {
        assert_eq!(
            of("DeliveryCreated", 2).subject(),
            "drone_delivery.events.DeliveryCreated"
        );
        assert_eq!(of("Commit", 1).subject(), "drone_delivery.events.Commit");
        for registration in registrations() {
            let schema: serde_json::Value =
                serde_json::from_str(registration.file.text).expect("a schema is JSON");
            let full = format!(
                "{}.{}",
                schema["namespace"].as_str().expect("a namespace"),
                schema["name"].as_str().expect("a name")
            );
            assert_eq!(registration.subject(), full, "{}", registration.file.file);
        }
    }

    #[test]
    fn the_body_carries_the_schema_file_as_a_string() {
        let registration = of("DroneAssigned", 3);
        let body: serde_json::Value =
            serde_json::from_str(&registration.body()).expect("the body is JSON");
        let object = body.as_object().expect("an object");
        assert_eq!(
            object.len(),
            1,
            "only \"schema\" (Avro is the default type)"
        );
        assert_eq!(body["schema"].as_str(), Some(registration.file.text));
    }

    #[test]
    fn every_schema_is_registered_once_each_subject_oldest_first() {
        let all = registrations();
        assert_eq!(all.len(), SCHEMA_FILES.len());
        let mut ids: Vec<u32> = all.iter().map(|r| r.file.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), SCHEMA_FILES.len());
        for (i, r) in all.iter().enumerate() {
            for later in &all[i + 1..] {
                if later.file.subject == r.file.subject {
                    assert!(later.file.version > r.file.version, "{}", later.file.file);
                }
            }
        }
    }

    #[test]
    fn the_url_is_the_subjects_versions_under_the_base() {
        let r = of("DroneAssigned", 1);
        let expected = "http://registry:8081/subjects/drone_delivery.events.DroneAssigned/versions";
        assert_eq!(r.url("http://registry:8081").expect("url"), expected);
        assert_eq!(r.url("http://registry:8081/").expect("url"), expected);
        assert_eq!(
            r.url("https://eu.example/registry/").expect("url"),
            "https://eu.example/registry/subjects/drone_delivery.events.DroneAssigned/versions"
        );
        for bad in ["registry:8081", "ftp://x", "http://"] {
            let message = r.url(bad).expect_err(bad).to_string();
            assert!(message.contains(&format!("{bad:?}")), "{message}");
        }
        let message = r
            .url("http://user:pw@registry:8081/x")
            .expect_err("credentials")
            .to_string();
        assert!(
            message.contains("\"http://***@registry:8081/x\""),
            "{message}"
        );
        assert!(message.contains("do not go in the URL"), "{message}");
        assert!(!message.contains("pw"), "{message}");
    }

    #[test]
    fn an_answer_with_an_id_is_the_id() {
        let r = of("DroneAssigned", 1);
        assert_eq!(r.read_answer(URL, 200, r#"{"id": 42}"#).expect("id"), 42);
        assert_eq!(
            r.read_answer(URL, 200, r#"{"id":7,"version":3,"schema":"…"}"#)
                .expect("id"),
            7,
            "newer registries say more"
        );
    }

    #[test]
    fn an_answer_without_a_usable_id_says_what_came() {
        let r = of("DroneAssigned", 1);
        for (body, expected) in [
            ("<html>proxy</html>", "not JSON: \"<html>proxy</html>\""),
            ("", "not JSON: an empty body"),
            (r#"{"ids": 1}"#, "no \"id\""),
            (r#"{"id": -1}"#, "no \"id\""),
            (r#"{"id": 3000000000}"#, "does not fit an Avro int"),
        ] {
            let error = r.read_answer(URL, 200, body).expect_err(body);
            assert!(
                matches!(error, RegistryError::BadAnswer { .. }),
                "{error:?}"
            );
            let message = error.to_string();
            assert!(message.contains(expected), "{message}");
            assert!(message.contains("DroneAssigned.v1.avsc"), "{message}");
        }
    }

    #[test]
    fn errors_map_to_messages_that_say_what_to_do() {
        let r = of("DeliveryCreated", 2);
        let incompatible = r#"{"error_code":409,"message":"Schema being registered is incompatible with an earlier schema for subject"}"#;
        let message = r
            .read_answer(URL, 409, incompatible)
            .expect_err("409")
            .to_string();
        assert!(message.contains("DeliveryCreated.v2.avsc"), "{message}");
        assert!(
            message.contains("drone_delivery.events.DeliveryCreated"),
            "{message}"
        );
        assert!(
            message.contains("incompatible with an earlier schema"),
            "{message}"
        );
        assert!(message.contains("compatibility level"), "{message}");

        let message = r
            .read_answer(URL, 401, r#"{"error_code":401,"message":"Unauthorized"}"#)
            .expect_err("401")
            .to_string();
        assert!(
            message.contains("refused the credentials (HTTP 401)"),
            "{message}"
        );
        assert!(message.contains(URL), "{message}");
        assert!(message.contains("--schema-registry-username"), "{message}");
        let forbidden = r.read_answer(URL, 403, "").expect_err("403");
        assert!(matches!(
            forbidden,
            RegistryError::Unauthorized { status: 403, .. }
        ));

        let message = r
            .read_answer(
                URL,
                422,
                r#"{"error_code":42201,"message":"Invalid schema"}"#,
            )
            .expect_err("422")
            .to_string();
        assert!(
            message.contains("finds DeliveryCreated.v2.avsc"),
            "{message}"
        );
        assert!(message.contains("Invalid schema"), "{message}");

        let message = r
            .read_answer(
                URL,
                500,
                r#"{"error_code":50001,"message":"Error in the backend data store"}"#,
            )
            .expect_err("500")
            .to_string();
        assert!(message.contains("HTTP 500"), "{message}");
        assert!(message.contains("error code 50001"), "{message}");
        assert!(message.contains("backend data store"), "{message}");

        let message = r
            .read_answer(URL, 502, "Bad Gateway")
            .expect_err("502")
            .to_string();
        assert!(message.contains("HTTP 502"), "{message}");
        assert!(message.contains("\"Bad Gateway\""), "{message}");
        assert!(!message.contains("error code"), "{message}");
    }

    #[test]
    fn the_ids_the_registry_gave_frame_the_records() {
        // What a registry might answer: its own numbering, unrelated to the manifest's.
        let ids: Vec<(u32, u32)> = registrations()
            .iter()
            .enumerate()
            .map(|(i, r)| (r.file.id, 100 + i as u32 * 3))
            .collect();
        let codec = codec_for(ids.clone()).expect("codec");
        for (manifest, registry) in &ids {
            assert_eq!(codec.wire_id(*manifest), Some(*registry));
        }
        let mut doubled = ids.clone();
        doubled[1].1 = doubled[0].1;
        let message = codec_for(doubled).expect_err("one id for two").to_string();
        assert!(
            message.starts_with("the schema registry's ids:"),
            "{message}"
        );
        assert!(message.contains("is given to manifest ids"), "{message}");
        let message = codec_for(ids[1..].to_vec())
            .expect_err("one missing")
            .to_string();
        assert!(message.contains("no id for"), "{message}");
    }

    #[test]
    fn the_password_stays_out_of_debug_output() {
        let config = RegistryConfig {
            url: URL.into(),
            basic_auth: Some(("ci".into(), "hunter2".into())),
        };
        let shown = format!("{config:?}");
        assert!(shown.contains("ci"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
