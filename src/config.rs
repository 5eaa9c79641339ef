//! The optional config file (`--config FILE`, env `DRONE_DELIVERY_CONFIG`).
//!
//! TOML whose keys are the long names of the flags, values as on the command line:
//!
//! ```toml
//! log = "kafka://kafka-1:9092,kafka-2:9092"
//! partitions = 12
//! kafka-option = ["linger.ms=5"]
//!
//! [kafka]                      # a table joins its name to its keys with `-`:
//! security-protocol = "SASL_SSL"   # --kafka-security-protocol
//! sasl-mechanism = "SCRAM-SHA-512"
//! sasl-username = "drones"
//! sasl-password = "…"
//! ```
//!
//! The file's values become the flags' defaults before the command line is parsed, so the
//! precedence is: built-in defaults < file < environment variables < flags. A list (for a
//! flag that repeats) from a higher layer replaces the file's whole list. An unknown key
//! and a value its flag refuses are errors that name the key and the file.

use clap::{Arg, Command};
use std::fmt;
use std::path::{Path, PathBuf};

/// What is wrong with a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {}: not valid TOML: {detail}", path.display())]
    Syntax { path: PathBuf, detail: String },
    #[error("config file {}: unknown key `{key}`{hint}", path.display())]
    UnknownKey {
        path: PathBuf,
        key: String,
        hint: String,
    },
    #[error("config file {}: `{key}`: {detail}", path.display())]
    BadValue {
        path: PathBuf,
        key: String,
        detail: String,
    },
}

/// A parsed config file: each value with the flag it sets. `Debug` shows the keys, not
/// the values (some are secrets).
pub struct ConfigFile {
    path: PathBuf,
    entries: Vec<Entry>,
}

impl fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.entries.iter().map(|e| e.key.as_str()).collect();
        f.debug_struct("ConfigFile")
            .field("path", &self.path)
            .field("keys", &keys)
            .finish()
    }
}

struct Entry {
    /// The key as written (`kafka.sasl-username`), for messages.
    key: String,
    /// The long flag it sets (`kafka-sasl-username`).
    flag: String,
    value: toml::Value,
}

/// Flags no file may set.
const NOT_IN_FILE: &[&str] = &["help", "version", "config"];

/// Subcommands that read no config file (`simulate` is a client, not a role): their
/// flags are unknown keys in one.
const WITHOUT_FILE: &[&str] = &["simulate"];

/// The subcommands whose flags a file sets.
fn file_subcommands(command: &Command) -> impl Iterator<Item = &Command> {
    command
        .get_subcommands()
        .filter(|sub| !WITHOUT_FILE.contains(&sub.get_name()))
}

impl ConfigFile {
    pub fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        ConfigFile::parse(path, &text)
    }

    /// Parses `text`, the content of the file at `path` (named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.to_owned(),
                    detail: e.message().to_owned(),
                })?;
        let mut entries = Vec::new();
        flatten(&table, "", "", &mut entries);
        let mut file = ConfigFile {
            path: path.to_owned(),
            entries: Vec::new(),
        };
        for entry in entries {
            if let Some(first) = file.entries.iter().find(|e| e.flag == entry.flag) {
                return Err(file.bad(
                    &entry.key,
                    format!(
                        "sets --{} again (already set by `{}`)",
                        entry.flag, first.key
                    ),
                ));
            }
            file.entries.push(entry);
        }
        Ok(file)
    }

    fn bad(&self, key: &str, detail: String) -> ConfigError {
        ConfigError::BadValue {
            path: self.path.clone(),
            key: key.to_owned(),
            detail,
        }
    }

    /// Sets the file's values as the defaults of `command`'s flags, and of its
    /// subcommands' flags of the same name.
    pub fn apply(&self, mut command: Command) -> Result<Command, ConfigError> {
        for entry in &self.entries {
            let arg = find_arg(&command, &entry.flag).ok_or_else(|| ConfigError::UnknownKey {
                path: self.path.clone(),
                key: entry.key.clone(),
                hint: hint(&command, &entry.flag),
            })?;
            let values = self.values(entry, arg)?;
            check(arg, &values).map_err(|detail| self.bad(&entry.key, detail))?;
            let set = |arg: Arg| {
                // A secret stays out of `--help` ("[default: …]") too.
                let hide = arg.is_hide_env_values_set();
                arg.default_values(values.clone()).hide_default_value(hide)
            };
            let owners: Vec<String> = file_subcommands(&command)
                .filter(|sub| own_arg(sub, &entry.flag).is_some())
                .map(|sub| sub.get_name().to_owned())
                .collect();
            for name in owners {
                command = command.mut_subcommand(name, |sub| match own_id(&sub, &entry.flag) {
                    Some(id) => sub.mut_arg(id, set),
                    None => sub,
                });
            }
            if let Some(id) = own_id(&command, &entry.flag) {
                command = command.mut_arg(id, set);
            }
        }
        Ok(command)
    }

    /// The file's value as the flag's values (one, or several for a repeatable flag).
    fn values(&self, entry: &Entry, arg: &Arg) -> Result<Vec<String>, ConfigError> {
        let repeats = matches!(arg.get_action(), clap::ArgAction::Append);
        let takes_values = arg.get_action().takes_values();
        match &entry.value {
            toml::Value::Array(items) if repeats => items
                .iter()
                .map(|item| {
                    scalar(item).ok_or_else(|| {
                        self.bad(
                            &entry.key,
                            format!("{} is not a value of --{}", kind(item), entry.flag),
                        )
                    })
                })
                .collect(),
            toml::Value::Array(_) => Err(self.bad(
                &entry.key,
                format!("--{} takes one value, not a list", entry.flag),
            )),
            value if takes_values => scalar(value).map(|v| vec![v]).ok_or_else(|| {
                self.bad(
                    &entry.key,
                    format!(
                        "--{} takes a string or a number, not {}",
                        entry.flag,
                        kind(value)
                    ),
                )
            }),
            toml::Value::Boolean(on) => Ok(vec![on.to_string()]),
            other => Err(self.bad(
                &entry.key,
                format!(
                    "--{} is a switch: give true or false, not {}",
                    entry.flag,
                    kind(other)
                ),
            )),
        }
    }
}

/// Every key of `table` with the flag it names: a table's name and its keys join with
/// `-` (`[kafka] sasl-username` is `kafka-sasl-username`).
fn flatten(table: &toml::Table, key_prefix: &str, flag_prefix: &str, out: &mut Vec<Entry>) {
    for (name, value) in table {
        let key = format!("{key_prefix}{name}");
        let flag = format!("{flag_prefix}{name}");
        match value {
            toml::Value::Table(inner) => {
                flatten(inner, &format!("{key}."), &format!("{flag}-"), out);
            }
            value => out.push(Entry {
                key,
                flag,
                value: value.clone(),
            }),
        }
    }
}

/// What a value is, for messages (never the value itself: it may be a secret).
fn kind(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a table",
    }
}

fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn settable(arg: &Arg, flag: &str) -> bool {
    arg.get_long() == Some(flag) && !NOT_IN_FILE.contains(&flag)
}

/// The flag `--flag` of `command` itself.
fn own_arg<'a>(command: &'a Command, flag: &str) -> Option<&'a Arg> {
    command.get_arguments().find(|a| settable(a, flag))
}

fn own_id(command: &Command, flag: &str) -> Option<clap::Id> {
    own_arg(command, flag).map(|a| a.get_id().clone())
}

/// The flag `--flag` of `command` or, failing that, of one of its subcommands.
fn find_arg<'a>(command: &'a Command, flag: &str) -> Option<&'a Arg> {
    own_arg(command, flag).or_else(|| file_subcommands(command).find_map(|sub| own_arg(sub, flag)))
}

/// Does the flag take these values? Parsed alone, as clap would parse them on the
/// command line, so the message is the flag's own.
fn check(arg: &Arg, values: &[String]) -> Result<(), String> {
    let Some(long) = arg.get_long() else {
        return Ok(());
    };
    let alone = arg
        .clone()
        .env(None)
        .default_values(Vec::<String>::new())
        .required(false);
    let probe = Command::new("config")
        .no_binary_name(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(alone);
    let args: Vec<String> = if arg.get_action().takes_values() {
        values.iter().map(|v| format!("--{long}={v}")).collect()
    } else {
        Vec::new()
    };
    probe.try_get_matches_from(args).map(drop).map_err(|e| {
        let rendered = e.to_string();
        let first = rendered.lines().next().unwrap_or_default();
        first.strip_prefix("error: ").unwrap_or(first).to_owned()
    })
}

/// " (did you mean `x`?)" when a flag is close to `flag`.
fn hint(command: &Command, flag: &str) -> String {
    let normalized = flag.replace('_', "-").to_ascii_lowercase();
    let mut longs: Vec<&str> = command
        .get_arguments()
        .chain(file_subcommands(command).flat_map(Command::get_arguments))
        .filter_map(Arg::get_long)
        .filter(|l| !NOT_IN_FILE.contains(l))
        .collect();
    longs.sort_unstable();
    longs.dedup();
    let best = longs
        .into_iter()
        .map(|l| (edit_distance(&normalized, l), l))
        .min()
        .filter(|(d, l)| *d <= 2.max(l.len() / 4));
    match best {
        Some((_, l)) => format!(" (did you mean `{l}`?)"),
        None => " (the keys are the long flag names: see --help)".to_owned(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Settings;
    use crate::cli::{Cli, CliError};
    use crate::settings::{LogLocation, Role};
    use clap::{CommandFactory, FromArgMatches};

    const FILE: &str = "/etc/drone-delivery/test.toml";

    fn file(text: &str) -> ConfigFile {
        ConfigFile::parse(Path::new(FILE), text).expect("the file parses")
    }

    /// The settings of `drone-delivery ARGS…` over the file `text`.
    fn settings(text: &str, args: &[&str]) -> Result<Settings, String> {
        let args = std::iter::once("drone-delivery").chain(args.iter().copied());
        let cli = Cli::parse_with(&file(text), args).map_err(|e| e.to_string())?;
        let (serve, role) = cli.into_role();
        serve.settings(role)
    }

    fn error(text: &str, args: &[&str]) -> String {
        match ConfigFile::parse(Path::new(FILE), text) {
            Err(e) => e.to_string(),
            Ok(_) => settings(text, args).expect_err("an error"),
        }
    }

    #[test]
    fn a_value_in_the_file_is_used_when_no_flag_or_variable_sets_it() {
        let text = r#"
            log = "kafka://k1:9092,k2:9092"
            partitions = 12
            battery-reserve-pct = 25.5
            kafka-option = ["linger.ms=5", "ssl.cipher.suites=A,B"]
            roles = ["command-api", "projector"]

            [kafka]
            topic-prefix = "staging."
            sasl-mechanism = "SCRAM-SHA-512"
            sasl-username = "drones"
            sasl-password = "s3cret"
            security-protocol = "sasl_ssl"

            [scylla]
            username = "reader"
            password = "also-secret"
        "#;
        for args in [
            &["serve"][..],
            &["command-api"],
            &["projector"],
            &["query-api"],
            &["workflow"],
            &[],
        ] {
            let s = settings(text, args).expect("settings");
            assert_eq!(
                s.log,
                Some(LogLocation::Kafka {
                    brokers: "k1:9092,k2:9092".into()
                })
            );
            assert_eq!(s.partitions, 12);
            assert_eq!(s.telemetry_partitions, 16, "the built-in default");
            assert_eq!(s.flight.reserve_pct, 25.5);
            assert_eq!(s.kafka.topic_prefix, "staging.");
            let client: Vec<(&str, &str)> = s
                .kafka
                .client
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(
                client,
                [
                    ("linger.ms", "5"),
                    ("ssl.cipher.suites", "A,B"),
                    ("security.protocol", "SASL_SSL"),
                    ("sasl.mechanism", "SCRAM-SHA-512"),
                    ("sasl.username", "drones"),
                    ("sasl.password", "s3cret"),
                ],
                "a list item is one option, commas and all"
            );
            assert_eq!(s.scylla.username.as_deref(), Some("reader"));
            assert_eq!(
                s.scylla.password.as_ref().map(|p| p.expose()),
                Some("also-secret")
            );
        }
        let serve = settings(text, &["serve"]).expect("settings");
        assert_eq!(serve.roles, [Role::CommandApi, Role::Projector]);
    }

    /// The sample in the README's "Configuration" section is a file this build takes.
    #[test]
    fn the_readme_sample_is_a_valid_config_file() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("## Configuration")
            .nth(1)
            .expect("a Configuration section");
        let sample = section
            .split("```toml")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a TOML sample");
        let s = settings(sample, &["command-api", "--kafka-sasl-password", "x"])
            .expect("the sample's settings");
        assert_eq!(s.partitions, 12);
        assert_eq!(s.kafka.replication_factor, 3);
        assert!(
            s.kafka
                .client
                .contains(&("debug".into(), "broker,protocol".into()))
        );
        assert!(
            s.kafka
                .client
                .contains(&("sasl.mechanism".into(), "SCRAM-SHA-512".into()))
        );
        assert_eq!(s.scylla.username.as_deref(), Some("drones"));
        assert!(s.schema_registry.is_some());
    }

    #[test]
    fn a_flag_beats_the_file() {
        let text = "partitions = 12\nkafka-option = [\"linger.ms=5\"]\ndispatch = \"manual\"";
        let s = settings(
            text,
            &["serve", "--partitions", "3", "--kafka-option", "acks=all"],
        )
        .expect("settings");
        assert_eq!(s.partitions, 3);
        assert_eq!(
            s.kafka.client,
            [("acks".to_owned(), "all".to_owned())],
            "a list from the command line replaces the file's"
        );
        assert!(
            !s.dispatch_policy().auto_assign,
            "the file's dispatch stays"
        );
    }

    /// Clap's environment layer is above the defaults the file sets. The real variables
    /// (`DRONE_DELIVERY_…`) are set on a child process in `tests/api/config.rs`; this
    /// process cannot set its own environment safely, so the flag is bound to `PATH`,
    /// which every process has.
    #[test]
    fn the_environment_beats_the_file() {
        let path = std::env::var("PATH").expect("PATH is set");
        let command = file("data-dir = \"/from/the/file\"")
            .apply(Cli::command())
            .expect("applied")
            .mut_subcommand("serve", |serve| {
                serve.mut_arg("data_dir", |arg| arg.env("PATH"))
            });
        let matches = command
            .try_get_matches_from(["drone-delivery", "serve"])
            .expect("parsed");
        let (serve, _) = Cli::from_arg_matches(&matches).expect("cli").into_role();
        assert_eq!(serve.storage.data_dir, PathBuf::from(path));
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_the_key_and_the_file() {
        let message = error("partitons = 3", &["serve"]);
        assert!(message.contains(FILE), "{message}");
        assert!(message.contains("`partitons`"), "{message}");
        assert!(message.contains("did you mean `partitions`"), "{message}");

        let message = error("[kafka]\nsasl-usrname = \"x\"", &[]);
        assert!(message.contains("`kafka.sasl-usrname`"), "{message}");
        assert!(message.contains("kafka-sasl-username"), "{message}");

        let message = error("config = \"other.toml\"", &[]);
        assert!(message.contains("unknown key `config`"), "{message}");

        // `simulate`'s flags are no role's settings.
        let message = error("speedup = 5", &["serve"]);
        assert!(message.contains("unknown key `speedup`"), "{message}");
    }

    #[test]
    fn a_bad_value_is_an_error_naming_the_key_and_the_file() {
        for (text, key, expected) in [
            (
                "partitions = \"many\"",
                "partitions",
                "invalid value 'many' for '--partitions",
            ),
            ("partitions = -1", "partitions", "invalid value '-1'"),
            ("partitions = 0", "partitions", "0 is not in 1.."),
            (
                "kafka-replication = 0",
                "kafka-replication",
                "0 is not in 1..",
            ),
            (
                "listen = 8080",
                "listen",
                "invalid value '8080' for '--listen",
            ),
            (
                "listen = 1979-05-27",
                "listen",
                "takes a string or a number, not a date-time",
            ),
            (
                "dispatch = \"sometimes\"",
                "dispatch",
                "invalid value 'sometimes'",
            ),
            ("log = \"postgres://x\"", "log", "is not a log location"),
            (
                "store = \"scylla://host\"",
                "store",
                "use scylla://HOST:PORT",
            ),
            (
                "battery-reserve-pct = 150",
                "battery-reserve-pct",
                "give a percentage between 0 and 100",
            ),
            (
                "[flight]\narrival-radius-m = -5",
                "flight.arrival-radius-m",
                "unknown key",
            ),
            (
                "arrival-radius-m = -5",
                "arrival-radius-m",
                "give a number > 0",
            ),
            (
                "[kafka]\nsecurity-protocol = \"TLS\"",
                "kafka.security-protocol",
                "invalid value 'TLS'",
            ),
            (
                "partitions = [1, 2]",
                "partitions",
                "takes one value, not a list",
            ),
            (
                "kafka-option = [[\"a=b\"]]",
                "kafka-option",
                "a list is not a value of --kafka-option",
            ),
            (
                "kafka-option = [\"linger.ms\"]",
                "kafka-option",
                "give librdkafka settings as KEY=VALUE",
            ),
            ("roles = [\"kitchen\"]", "roles", "invalid value 'kitchen'"),
            (
                "only = [\"kitchen\"]",
                "only",
                "the read models are accounts, deliveries",
            ),
            (
                "telemetry-partitions = 1\n[telemetry]\npartitions = 2",
                "telemetry-partitions",
                "again",
            ),
        ] {
            let message = error(text, &["serve"]);
            assert!(message.contains(FILE), "{text}: {message}");
            assert!(message.contains(&format!("`{key}`")), "{text}: {message}");
            assert!(message.contains(expected), "{text}: {message}");
        }
        let message = error("partitions = 1\n[partitions]\nx = 1", &["serve"]);
        assert!(message.contains(FILE), "{message}");
        assert!(message.contains("not valid TOML"), "{message}");
    }

    #[test]
    fn a_value_the_flags_override_is_still_checked() {
        let message = error("partitions = 0", &["serve", "--partitions", "4"]);
        assert!(message.contains("`partitions`"), "{message}");
    }

    #[test]
    fn values_the_settings_refuse_name_their_flag() {
        let message = error("[kafka]\nsecurity-protocol = \"SASL_SSL\"", &[]);
        assert!(message.contains("--kafka-sasl-mechanism"), "{message}");
        let message = error(
            "kafka-option = [\"sasl.username=a\"]\nkafka-sasl-username = \"b\"",
            &[],
        );
        assert!(message.contains("both set sasl.username"), "{message}");
    }

    #[test]
    fn secrets_from_the_file_stay_out_of_debug_output_and_help() {
        let text = r#"
            kafka-option = ["sasl.jaas.config=secret-1", "ssl.key.password=secret-2"]
            schema-registry-url = "http://registry:8081"
            schema-registry-username = "ci"
            schema-registry-password = "secret-3"
            [kafka]
            security-protocol = "SASL_PLAINTEXT"
            sasl-mechanism = "PLAIN"
            sasl-username = "drones"
            sasl-password = "secret-4"
            [scylla]
            username = "reader"
            password = "secret-5"
        "#;
        let s = settings(text, &["serve"]).expect("settings");
        assert!(
            s.kafka
                .client
                .contains(&("security.protocol".into(), "SASL_PLAINTEXT".into()))
        );
        let shown = format!("{s:?}");
        assert!(shown.contains("drones"), "{shown}");
        assert!(!shown.contains("secret-"), "{shown}");

        let mut command = file(text).apply(Cli::command()).expect("applied");
        let help = command
            .find_subcommand_mut("serve")
            .expect("serve")
            .render_long_help()
            .to_string();
        assert!(help.contains("drones"), "non-secret defaults are shown");
        assert!(!help.contains("secret-"), "{help}");
        let error =
            Cli::parse_with(&file(text), ["drone-delivery", "--bogus"]).expect_err("bad flag");
        assert!(matches!(error, CliError::Clap(_)));
    }
}
