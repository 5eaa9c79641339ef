//! The conformance suites against the embedded adapters, plus what only the embedded
//! log promises: durability across reopen, group commit, the data directory lock.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use storage::conformance::{self, unique_name};
use storage::{
    Checkpoint, EventLog, NewRecord, ReadStore, StorageError, TopicSpec, Write, partition_for,
};
use storage_embedded::{DataDirLock, EmbeddedLog, EmbeddedReadStore};
use tempfile::TempDir;

fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn record(topic: &str, key: &str, value: &str) -> NewRecord {
    NewRecord {
        topic: topic.to_owned(),
        key: key.to_owned(),
        value: Bytes::from(value.to_owned()),
        headers: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_log_passes_the_event_log_suite() {
    let dir = temp_dir();
    let log = EmbeddedLog::open(dir.path()).expect("open");
    assert!(log.atomic_batches());
    conformance::event_log_suite(&log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_read_store_passes_the_read_store_suite() {
    let dir = temp_dir();
    let store = EmbeddedReadStore::open(dir.path()).expect("open");
    conformance::read_store_suite(&store).await;
}

#[tokio::test]
async fn the_log_survives_a_reopen_and_continues_its_offsets() {
    let dir = temp_dir();
    let topic = unique_name("reopen");
    {
        let log = EmbeddedLog::open(dir.path()).expect("open");
        log.create_topics(&[TopicSpec {
            name: topic.clone(),
            partitions: 3,
        }])
        .await
        .expect("create");
        for i in 0..5 {
            log.append(vec![record(&topic, "drone-1", &format!("v{i}"))])
                .await
                .expect("append");
        }
        // Alone, every append is its own durable write.
        assert_eq!(log.fsyncs(), 5);
        log.commit_offset("group", &topic, 1, 4)
            .await
            .expect("commit");
    }

    let log = EmbeddedLog::open(dir.path()).expect("reopen");
    let partition = partition_for("drone-1", 3);
    assert_eq!(log.partitions(&topic).await.expect("partitions"), 3);
    assert_eq!(log.end_offset(&topic, partition).await.expect("end"), 5);
    let appended = log
        .append(vec![record(&topic, "drone-1", "v5")])
        .await
        .expect("append");
    assert_eq!(appended[0].offset, 5);
    let read = log.read(&topic, partition, 0, 100).await.expect("read");
    let values: Vec<_> = read.iter().map(|r| r.value.clone()).collect();
    let expected: Vec<_> = (0..6).map(|i| Bytes::from(format!("v{i}"))).collect();
    assert_eq!(values, expected);
    assert_eq!(
        log.committed_offset("group", &topic, 1)
            .await
            .expect("committed"),
        Some(4)
    );

    // A topic created after the reopen does not share the old topic's records.
    let newer = unique_name("after_reopen");
    log.create_topics(&[TopicSpec {
        name: newer.clone(),
        partitions: 3,
    }])
    .await
    .expect("create");
    for p in 0..3 {
        assert_eq!(log.end_offset(&newer, p).await.expect("end"), 0);
        assert!(log.read(&newer, p, 0, 10).await.expect("read").is_empty());
    }
    log.append(vec![record(&newer, "drone-1", "other")])
        .await
        .expect("append");
    let read = log.read(&topic, partition, 0, 100).await.expect("read");
    let values: Vec<_> = read.iter().map(|r| r.value.clone()).collect();
    assert_eq!(
        values, expected,
        "the new topic's append overwrote the old topic"
    );
}

#[tokio::test]
async fn the_read_store_survives_a_reopen() {
    let dir = temp_dir();
    {
        let store = EmbeddedReadStore::open(dir.path()).expect("open");
        store
            .apply(
                vec![Write::Put {
                    table: "t".to_owned(),
                    partition: "p".to_owned(),
                    clustering: "c".to_owned(),
                    value: Bytes::from_static(b"v"),
                    version: 3,
                }],
                vec![Checkpoint {
                    projection: "proj".to_owned(),
                    topic: "topic".to_owned(),
                    partition: 0,
                    next: 8,
                    writer: None,
                }],
            )
            .await
            .expect("apply");
    }
    let store = EmbeddedReadStore::open(dir.path()).expect("reopen");
    let row = store.get("t", "p", "c").await.expect("get").expect("row");
    assert_eq!((row.value, row.version), (Bytes::from_static(b"v"), 3));
    assert_eq!(
        store
            .checkpoint("proj", "topic", 0)
            .await
            .expect("checkpoint"),
        Some(8)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_fsyncs_and_are_all_durable() {
    const TASKS: usize = 50;
    const PER_TASK: usize = 200;
    let dir = temp_dir();
    let topic = unique_name("concurrent");
    let partitions = 4;
    let log = Arc::new(EmbeddedLog::open(dir.path()).expect("open"));
    log.create_topics(&[TopicSpec {
        name: topic.clone(),
        partitions,
    }])
    .await
    .expect("create");
    let fsyncs_before = log.fsyncs();

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let log = Arc::clone(&log);
        let topic = topic.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("aggregate-{task}");
            let mut landed = Vec::new();
            for i in 0..PER_TASK {
                let at = log
                    .append(vec![record(&topic, &key, &format!("{task}:{i}"))])
                    .await
                    .expect("append");
                landed.push(at[0]);
            }
            landed
        }));
    }
    let mut by_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for task in tasks {
        for at in task.await.expect("task") {
            by_partition
                .entry(at.partition)
                .or_default()
                .push(at.offset);
        }
    }

    let appends = (TASKS * PER_TASK) as u64;
    let fsyncs = log.fsyncs() - fsyncs_before;
    assert!(
        fsyncs * 4 <= appends,
        "{fsyncs} fsyncs for {appends} concurrent appends: the writer does not batch"
    );
    for (partition, offsets) in &mut by_partition {
        offsets.sort_unstable();
        let expected: Vec<u64> = (0..offsets.len() as u64).collect();
        assert_eq!(*offsets, expected, "offsets of partition {partition}");
    }

    // Everything acknowledged is there after a reopen, each key in its order.
    drop(log);
    let log = EmbeddedLog::open(dir.path()).expect("reopen");
    let mut total = 0;
    for partition in 0..partitions {
        let records = log
            .read(&topic, partition, 0, usize::MAX)
            .await
            .expect("read");
        let mut next_per_key: BTreeMap<String, usize> = BTreeMap::new();
        for r in &records {
            let value = String::from_utf8_lossy(&r.value).into_owned();
            let (task, i) = value.split_once(':').expect("task:i");
            assert_eq!(r.key, format!("aggregate-{task}"));
            let next = next_per_key.entry(r.key.clone()).or_default();
            assert_eq!(i.parse::<usize>().expect("i"), *next, "order of {}", r.key);
            *next += 1;
        }
        total += records.len();
    }
    assert_eq!(total, TASKS * PER_TASK);
}

#[tokio::test]
async fn invalid_topics_are_refused() {
    let dir = temp_dir();
    let log = EmbeddedLog::open(dir.path()).expect("open");
    for (name, partitions) in [("", 1), ("has space", 1), ("..", 1), ("ok", 0)] {
        let result = log
            .create_topics(&[TopicSpec {
                name: name.to_owned(),
                partitions,
            }])
            .await;
        assert!(
            matches!(result, Err(StorageError::Invalid(_))),
            "{name:?} with {partitions} partitions: {result:?}"
        );
    }
    let long = "x".repeat(250);
    assert!(
        log.create_topics(&[TopicSpec {
            name: long,
            partitions: 1
        }])
        .await
        .is_err()
    );
}

#[tokio::test]
async fn oversized_read_store_keys_are_refused_without_effect() {
    let dir = temp_dir();
    let store = EmbeddedReadStore::open(dir.path()).expect("open");
    let huge = "c".repeat(70_000);
    let result = store
        .apply(
            vec![
                Write::Put {
                    table: "t".to_owned(),
                    partition: "p".to_owned(),
                    clustering: "fine".to_owned(),
                    value: Bytes::new(),
                    version: 1,
                },
                Write::Put {
                    table: "t".to_owned(),
                    partition: "p".to_owned(),
                    clustering: huge.clone(),
                    value: Bytes::new(),
                    version: 1,
                },
            ],
            Vec::new(),
        )
        .await;
    assert!(
        matches!(result, Err(StorageError::Invalid(_))),
        "{result:?}"
    );
    assert_eq!(store.get("t", "p", "fine").await.expect("get"), None);
    assert_eq!(store.get("t", "p", &huge).await.expect("get"), None);
}

#[test]
fn a_data_directory_has_one_holder_at_a_time() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let first = DataDirLock::acquire(&data).expect("first lock");
    match DataDirLock::acquire(&data) {
        Err(StorageError::Locked(path)) => {
            assert_eq!(path, data);
            let message = StorageError::Locked(path).to_string();
            assert!(message.contains("in use by another process"), "{message}");
        }
        other => panic!("second lock: {other:?}"),
    }
    drop(first);
    DataDirLock::acquire(&data).expect("lock again once released");
}

#[test]
fn a_store_directory_cannot_be_opened_twice() {
    let dir = temp_dir();
    let _log = EmbeddedLog::open(dir.path()).expect("open");
    assert!(matches!(
        EmbeddedLog::open(dir.path()),
        Err(StorageError::Locked(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_larger_than_its_memtables_reads_back_after_a_reopen() {
    // ~12 MiB in one partition: more than a partition's memtable, so part of it is read
    // from flushed table files.
    const BATCHES: usize = 60;
    const PER_BATCH: usize = 1_000;
    let dir = temp_dir();
    let topic = unique_name("large");
    let value = "v".repeat(200);
    {
        let log = EmbeddedLog::open(dir.path()).expect("open");
        log.create_topics(&[TopicSpec {
            name: topic.clone(),
            partitions: 1,
        }])
        .await
        .expect("create");
        for batch in 0..BATCHES {
            let records = (0..PER_BATCH)
                .map(|i| record(&topic, &format!("k{}", batch * PER_BATCH + i), &value))
                .collect();
            log.append(records).await.expect("append");
        }
    }
    let log = EmbeddedLog::open(dir.path()).expect("reopen");
    let total = (BATCHES * PER_BATCH) as u64;
    assert_eq!(log.end_offset(&topic, 0).await.expect("end"), total);
    for from in [0, 12_345, total - 3] {
        let read = log.read(&topic, 0, from, 5).await.expect("read");
        let offsets: Vec<u64> = read.iter().map(|r| r.offset).collect();
        let expected: Vec<u64> = (from..total.min(from + 5)).collect();
        assert_eq!(offsets, expected);
        for r in &read {
            assert_eq!(r.key, format!("k{}", r.offset));
        }
    }
    let appended = log
        .append(vec![record(&topic, "next", "v")])
        .await
        .expect("append");
    assert_eq!(appended[0].offset, total);
}

#[tokio::test]
async fn the_read_store_refuses_applies_while_its_disk_is_low_and_takes_them_when_space_returns() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let dir = temp_dir();
    let free = Arc::new(AtomicU64::new(u64::MAX));
    let reported = free.clone();
    let store = EmbeddedReadStore::open_with_reserve(
        dir.path(),
        1_000_000,
        Some(Box::new(move || Ok(reported.load(Ordering::Acquire)))),
    )
    .expect("open");
    let put = |value: &str, version| Write::Put {
        table: "t".into(),
        partition: "p".into(),
        clustering: "c".into(),
        value: Bytes::from(value.to_owned()),
        version,
    };
    let checkpoint = |next| Checkpoint {
        projection: "proj".into(),
        topic: "topic".into(),
        partition: 0,
        next,
        writer: None,
    };
    store
        .apply(vec![put("one", 1)], vec![checkpoint(1)])
        .await
        .expect("apply");

    free.store(10, Ordering::Release);
    let refused = store.apply(vec![put("two", 2)], vec![checkpoint(2)]).await;
    assert!(
        matches!(&refused, Err(StorageError::Unavailable(why)) if why.contains("read store")),
        "{refused:?}"
    );
    let row = store.get("t", "p", "c").await.expect("get").expect("row");
    assert_eq!((row.value, row.version), (Bytes::from_static(b"one"), 1));
    assert_eq!(
        store.checkpoint("proj", "topic", 0).await.expect("cp"),
        Some(1)
    );

    free.store(u64::MAX, Ordering::Release);
    store
        .apply(vec![put("two", 2)], vec![checkpoint(2)])
        .await
        .expect("space returned");
    let row = store.get("t", "p", "c").await.expect("get").expect("row");
    assert_eq!(row.version, 2);
    assert_eq!(
        store.checkpoint("proj", "topic", 0).await.expect("cp"),
        Some(2)
    );
}

fn put(table: &str, clustering: &str, value: &'static str, version: u64) -> Write {
    Write::Put {
        table: table.to_owned(),
        partition: "p".to_owned(),
        clustering: clustering.to_owned(),
        value: Bytes::from_static(value.as_bytes()),
        version,
    }
}

async fn apply(store: &EmbeddedReadStore, writes: Vec<Write>) {
    store.apply(writes, Vec::new()).await.expect("apply");
}

/// The value and version of row `clustering` of partition `p` in `table`.
async fn stored(store: &EmbeddedReadStore, table: &str, clustering: &str) -> (Bytes, u64) {
    let row = store
        .get(table, "p", clustering)
        .await
        .expect("get")
        .expect("row");
    (row.value, row.version)
}

/// A table created empty skips the version read of rows it never had; one created
/// with rows in it (after a reopen: nothing cached) still compares with what it holds.
#[tokio::test]
async fn tables_created_empty_still_keep_the_higher_version_and_ones_with_rows_are_not_fresh() {
    let dir = temp_dir();
    {
        let store = EmbeddedReadStore::open(dir.path()).expect("open");
        apply(&store, vec![put("old", "a", "v5", 5)]).await;
    }
    let store = EmbeddedReadStore::open(dir.path()).expect("reopen");
    store
        .create_tables(&["old".to_owned(), "new".to_owned()])
        .await
        .expect("create");
    // Not fresh: the stored row wins over an older write.
    apply(&store, vec![put("old", "a", "v3", 3)]).await;
    assert_eq!(
        stored(&store, "old", "a").await,
        (Bytes::from_static(b"v5"), 5)
    );

    // Fresh: new rows land; later writes to them compare as ever, in a batch and across.
    apply(
        &store,
        vec![put("new", "a", "v2", 2), put("new", "a", "v1", 1)],
    )
    .await;
    apply(
        &store,
        vec![put("new", "a", "v0", 0), put("new", "b", "b7", 7)],
    )
    .await;
    assert_eq!(
        stored(&store, "new", "a").await,
        (Bytes::from_static(b"v2"), 2)
    );
    assert_eq!(
        stored(&store, "new", "b").await,
        (Bytes::from_static(b"b7"), 7)
    );
    // Created again (a rebuild's "idempotent" call) once it has rows: stays as it was.
    store
        .create_tables(&["new".to_owned()])
        .await
        .expect("create");
    apply(&store, vec![put("new", "b", "b6", 6)]).await;
    assert_eq!(stored(&store, "new", "b").await.1, 7);
}
