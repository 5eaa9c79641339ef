//! The layers of settings through the real binary, with real environment variables
//! (which a test cannot set in its own process): built-in defaults < the config file <
//! the environment < flags, and a bad config file stops the binary with a message that
//! names the key and the file. The rules of each layer are unit-tested in `src/config.rs`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The binary in `dir`, with none of the caller's own settings in its environment.
fn binary(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_drone-delivery"));
    command.current_dir(dir).args(args).env("RUST_LOG", "warn");
    for (name, _) in std::env::vars() {
        if name.starts_with("DRONE_DELIVERY_") || name == "SCHEMA_REGISTRY_URL" {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command
}

/// Starts the binary, waits until it listens, stops it, and returns the directories it
/// made in `dir`.
fn data_dirs_made(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let mut child = binary(dir, args, env)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("drone-delivery listening on ") {
                let _ = tx.send(());
            }
        }
    });
    let listening = rx.recv_timeout(Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    listening.expect("the binary says where it listens");
    let mut made: Vec<String> = std::fs::read_dir(dir)
        .expect("the directory reads")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    made
}

/// Runs the binary to its end (it is expected to refuse to start).
fn refused(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let output = binary(dir, args, env)
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    assert!(!output.status.success(), "it refused to start");
    output
}

const FILE: &str = "data-dir = \"from-file\"\ndispatch = \"manual\"\n";

#[test]
fn each_layer_overrides_the_one_below_for_every_role() {
    let listen = ["--listen", "127.0.0.1:0"];
    let case = |args: &[&str], env: &[(&str, &str)]| {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("drones.toml"), FILE).expect("config file written");
        let mut all = args.to_vec();
        all.extend(listen);
        let mut made = data_dirs_made(dir.path(), &all, env);
        made.retain(|d| d != "drones.toml");
        made
    };
    // Built-in default: ./data.
    assert_eq!(case(&["serve"], &[]), ["data"]);
    assert_eq!(case(&[], &[]), ["data"], "no role named: serve");
    // The file, named by the flag or by the environment.
    assert_eq!(
        case(&["serve", "--config", "drones.toml"], &[]),
        ["from-file"]
    );
    assert_eq!(
        case(&["serve"], &[("DRONE_DELIVERY_CONFIG", "drones.toml")]),
        ["from-file"]
    );
    assert_eq!(
        case(&["command-api", "--config", "drones.toml"], &[]),
        ["from-file"],
        "a role of its own reads the file too"
    );
    // The environment over the file.
    let env = [
        ("DRONE_DELIVERY_CONFIG", "drones.toml"),
        ("DRONE_DELIVERY_DATA_DIR", "from-env"),
    ];
    assert_eq!(case(&["serve"], &env), ["from-env"]);
    assert_eq!(case(&["command-api"], &env), ["from-env"]);
    // A flag over the environment.
    assert_eq!(
        case(&["serve", "--data-dir", "from-flag"], &env),
        ["from-flag"]
    );
    assert_eq!(
        case(&["command-api", "--data-dir", "from-flag"], &env),
        ["from-flag"]
    );
}

#[test]
fn an_unknown_key_or_a_bad_value_in_the_file_stops_the_binary_naming_both() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("drones.toml");
    let shown = path.display().to_string();
    for (text, key, detail) in [
        ("partitons = 3", "`partitons`", "did you mean `partitions`"),
        (
            "[kafka]\nsasl-usrname = \"x\"",
            "`kafka.sasl-usrname`",
            "unknown key",
        ),
        ("partitions = 0", "`partitions`", "0 is not in 1.."),
        (
            "listen = \"everywhere\"",
            "`listen`",
            "invalid value 'everywhere'",
        ),
        ("partitions = ", "", "not valid TOML"),
    ] {
        std::fs::write(&path, text).expect("config file written");
        for args in [
            &["serve", "--config", shown.as_str()][..],
            &["projector", "--config", shown.as_str()],
            &["workflow", "--config", shown.as_str()],
        ] {
            let output = refused(dir.path(), args, &[]);
            assert_eq!(output.status.code(), Some(2), "{text}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains(&shown), "{text}: {stderr}");
            assert!(stderr.contains(key), "{text}: {stderr}");
            assert!(stderr.contains(detail), "{text}: {stderr}");
        }
    }
    let output = refused(dir.path(), &["--config", "missing.toml"], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read the config file missing.toml"),
        "{stderr}"
    );
}

/// No registry server runs here, so this checks only the way out when one cannot be
/// reached (the registry itself: `schemas/tests/registry.rs`, with SCHEMA_REGISTRY_URL).
#[test]
fn a_schema_registry_that_cannot_be_reached_stops_start_up_without_showing_the_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("drones.toml"),
        "schema-registry-username = \"ci\"\nschema-registry-password = \"from-the-file\"\n",
    )
    .expect("config file written");
    let output = refused(
        dir.path(),
        &["serve", "--listen", "127.0.0.1:0"],
        &[
            ("DRONE_DELIVERY_CONFIG", "drones.toml"),
            ("SCHEMA_REGISTRY_URL", "http://127.0.0.1:1"),
            ("DRONE_DELIVERY_SCHEMA_REGISTRY_PASSWORD", "from-the-env"),
            ("RUST_LOG", "debug"),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot register the schemas with the schema registry"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cannot reach the schema registry at http://127.0.0.1:1"),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "the cause: {stderr}");
    assert!(!stderr.contains("from-the-"), "{stderr}");
}

#[test]
fn migrate_has_nothing_to_do_on_the_embedded_store_and_stops_on_an_unreachable_scylla() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = binary(dir.path(), &["migrate"], &[])
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("nothing to migrate"), "{stdout}");

    let output = refused(
        dir.path(),
        &["migrate", "--store", "scylla://127.0.0.1:1/drones"],
        &[
            ("DRONE_DELIVERY_SCYLLA_PASSWORD", "never-shown"),
            ("DRONE_DELIVERY_SCYLLA_USERNAME", "ops"),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot open the read store at scylla://127.0.0.1:1/drones"),
        "{stderr}"
    );
    assert!(!stderr.contains("never-shown"), "{stderr}");
}
