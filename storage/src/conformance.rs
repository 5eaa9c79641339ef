//! The contract of the storage ports as one test suite that every adapter runs.
//!
//! Each check is a public async fn that panics on failure; [`event_log_suite`] and
//! [`read_store_suite`] run them all. Every check creates its own topics and tables with
//! names unique to the run, so the suites can run in parallel and against a shared
//! external Kafka or ScyllaDB. Offsets are asserted relative to a fresh topic, which
//! starts at 0 on every adapter (Kafka included, without transactions).

use crate::{
    Checkpoint, EventLog, GroupConsumer, NewRecord, Offset, Order, ReadStore, Record, Scan,
    StartAt, StorageError, TopicSpec, Write, partition_for,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A name no other run or check uses, short enough for a ScyllaDB table name (48
/// characters with a prefix of up to 20) and valid as a Kafka topic name.
pub fn unique_name(prefix: &str) -> String {
    static RUN: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let run = RUN.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        base36(nanos ^ (u128::from(std::process::id()) << 64))
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{run}_{n}")
}

fn base36(mut n: u128) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

fn record(topic: &str, key: &str, value: &str) -> NewRecord {
    NewRecord {
        topic: topic.to_owned(),
        key: key.to_owned(),
        value: Bytes::from(value.to_owned()),
        headers: Vec::new(),
    }
}

async fn new_topic<L: EventLog>(log: &L, prefix: &str, partitions: u32) -> String {
    let name = unique_name(prefix);
    log.create_topics(&[TopicSpec {
        name: name.clone(),
        partitions,
    }])
    .await
    .expect("create topic");
    name
}

/// Keys that all land on `partition` of a topic with `partitions` partitions.
fn keys_on(partition: u32, partitions: u32, count: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("key-{i}"))
        .filter(|key| partition_for(key, partitions) == partition)
        .take(count)
        .collect()
}

fn values(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect()
}

// ---- event log ------------------------------------------------------------------------

/// Runs every event log check.
pub async fn event_log_suite<L: EventLog>(log: &L) {
    topics_are_created_once(log).await;
    unknown_topics_and_partitions_are_errors(log).await;
    keyed_appends_land_on_their_partition_in_order(log).await;
    one_key_keeps_its_order(log).await;
    one_append_may_span_topics(log).await;
    reads_start_at_any_offset(log).await;
    wait_for_wakes_on_append_and_times_out_otherwise(log).await;
    wait_for_any_wakes_on_an_append_to_any_partition(log).await;
    committed_offsets_are_kept_per_group(log).await;
    a_consumer_reads_its_partitions_from_their_offsets_and_waits_for_more(log).await;
    headers_travel_with_their_record(log).await;
    a_group_shares_its_partitions_and_hands_them_over(log).await;
}

pub async fn headers_travel_with_their_record<L: EventLog>(log: &L) {
    let topic = new_topic(log, "cf_headers", 1).await;
    let headers = vec![
        ("writer".to_owned(), Bytes::from_static(b"instance-1")),
        ("marker".to_owned(), Bytes::from_static(b"1")),
        ("writer".to_owned(), Bytes::from_static(b"again")),
    ];
    let mut with = record(&topic, "k", "with");
    with.headers = headers.clone();
    log.append(vec![with, record(&topic, "k", "without")])
        .await
        .expect("append");
    let read = log.read(&topic, 0, 0, 10).await.expect("read");
    assert_eq!(read.len(), 2);
    assert_eq!(read[0].headers, headers, "in order, a name may repeat");
    assert_eq!(read[0].header("writer"), Some(&b"instance-1"[..]));
    assert!(read[1].headers.is_empty());
    let mut consumer = log.consume(&topic, &[(0, 0)]).await.expect("consumer");
    let mut consumed = Vec::new();
    let started = Instant::now();
    while consumed.len() < 2 && started.elapsed() < Duration::from_secs(30) {
        consumed.extend(
            consumer
                .poll(10, Duration::from_secs(5))
                .await
                .expect("poll"),
        );
    }
    assert_eq!(consumed[0].headers, headers);
}

pub async fn topics_are_created_once<L: EventLog>(log: &L) {
    let a = unique_name("cf_create_a");
    let b = unique_name("cf_create_b");
    let specs = [
        TopicSpec {
            name: a.clone(),
            partitions: 3,
        },
        TopicSpec {
            name: b.clone(),
            partitions: 1,
        },
    ];
    log.create_topics(&specs).await.expect("create topics");
    log.create_topics(&specs)
        .await
        .expect("creating again is fine");
    // An existing topic keeps its partition count.
    log.create_topics(&[TopicSpec {
        name: a.clone(),
        partitions: 5,
    }])
    .await
    .expect("creating an existing topic is fine");
    assert_eq!(log.partitions(&a).await.expect("partitions"), 3);
    assert_eq!(log.partitions(&b).await.expect("partitions"), 1);
    log.create_topics(&[]).await.expect("nothing to create");
}

pub async fn unknown_topics_and_partitions_are_errors<L: EventLog>(log: &L) {
    let missing = unique_name("cf_missing");
    assert!(matches!(
        log.partitions(&missing).await,
        Err(StorageError::UnknownTopic(t)) if t == missing
    ));
    assert!(matches!(
        log.append(vec![record(&missing, "k", "v")]).await,
        Err(StorageError::UnknownTopic(_))
    ));
    assert!(matches!(
        log.read(&missing, 0, 0, 10).await,
        Err(StorageError::UnknownTopic(_))
    ));
    assert!(matches!(
        log.end_offset(&missing, 0).await,
        Err(StorageError::UnknownTopic(_))
    ));

    let topic = new_topic(log, "cf_partitions", 2).await;
    assert!(matches!(
        log.read(&topic, 2, 0, 10).await,
        Err(StorageError::InvalidPartition { partition: 2, .. })
    ));
    assert!(matches!(
        log.end_offset(&topic, 7).await,
        Err(StorageError::InvalidPartition { partition: 7, .. })
    ));

    // An append naming an unknown topic writes nothing, not even its valid records.
    let result = log
        .append(vec![record(&topic, "k", "v"), record(&missing, "k", "v")])
        .await;
    assert!(matches!(result, Err(StorageError::UnknownTopic(_))));
    let written = log.end_offset(&topic, 0).await.expect("end")
        + log.end_offset(&topic, 1).await.expect("end");
    assert_eq!(written, 0, "a refused append wrote records");

    assert!(
        log.append(Vec::new())
            .await
            .expect("empty append")
            .is_empty()
    );
}

pub async fn keyed_appends_land_on_their_partition_in_order<L: EventLog>(log: &L) {
    let partitions = 4;
    let topic = new_topic(log, "cf_keyed", partitions).await;
    let records: Vec<_> = (0..40)
        .map(|i| record(&topic, &format!("drone-{i}"), &format!("v{i}")))
        .collect();
    let appended = log.append(records.clone()).await.expect("append");
    assert_eq!(appended.len(), records.len());

    // Within a partition, offsets are consecutive from 0 in the order given.
    let mut expected_next = BTreeMap::new();
    for (record, at) in records.iter().zip(&appended) {
        assert_eq!(at.partition, partition_for(&record.key, partitions));
        let next = expected_next.entry(at.partition).or_insert(0);
        assert_eq!(at.offset, *next, "offsets of partition {}", at.partition);
        *next += 1;
    }
    for partition in 0..partitions {
        let count = expected_next.get(&partition).copied().unwrap_or(0);
        assert_eq!(log.end_offset(&topic, partition).await.expect("end"), count);
        let read = log.read(&topic, partition, 0, 100).await.expect("read");
        assert_eq!(read.len() as u64, count);
        for r in &read {
            let i = records
                .iter()
                .zip(&appended)
                .position(|(_, at)| at.partition == partition && at.offset == r.offset)
                .expect("every record read was appended");
            assert_eq!(r.key, records[i].key);
            assert_eq!(r.value, records[i].value);
            assert_eq!(r.topic, topic);
            assert_eq!(r.partition, partition);
        }
    }
}

pub async fn one_key_keeps_its_order<L: EventLog>(log: &L) {
    let partitions = 3;
    let topic = new_topic(log, "cf_order", partitions).await;
    let key = "delivery-42";
    let mut expected = Vec::new();
    for i in 0..10 {
        log.append(vec![record(&topic, key, &format!("single-{i}"))])
            .await
            .expect("append");
        expected.push(format!("single-{i}"));
    }
    let batch: Vec<_> = (0..10)
        .map(|i| record(&topic, key, &format!("batch-{i}")))
        .collect();
    log.append(batch).await.expect("append");
    expected.extend((0..10).map(|i| format!("batch-{i}")));

    let partition = partition_for(key, partitions);
    let read = log.read(&topic, partition, 0, 100).await.expect("read");
    assert_eq!(values(&read), expected);
    let offsets: Vec<_> = read.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..20).collect::<Vec<_>>());
}

pub async fn one_append_may_span_topics<L: EventLog>(log: &L) {
    let a = new_topic(log, "cf_span_a", 2).await;
    let b = new_topic(log, "cf_span_b", 1).await;
    let appended = log
        .append(vec![
            record(&a, "x", "1"),
            record(&b, "y", "2"),
            record(&a, "x", "3"),
            record(&b, "z", "4"),
        ])
        .await
        .expect("append");
    let px = partition_for("x", 2);
    let offsets: Vec<_> = appended
        .iter()
        .map(|at| (at.partition, at.offset))
        .collect();
    assert_eq!(offsets, vec![(px, 0), (0, 0), (px, 1), (0, 1)]);
    assert_eq!(
        values(&log.read(&a, px, 0, 10).await.expect("read")),
        ["1", "3"]
    );
    assert_eq!(
        values(&log.read(&b, 0, 0, 10).await.expect("read")),
        ["2", "4"]
    );
}

pub async fn reads_start_at_any_offset<L: EventLog>(log: &L) {
    let topic = new_topic(log, "cf_read", 2).await;
    let keys = keys_on(1, 2, 10);
    let before = now_ms();
    let records: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| record(&topic, key, &format!("v{i}")))
        .collect();
    log.append(records).await.expect("append");
    let after = now_ms();

    let all = log.read(&topic, 1, 0, 100).await.expect("read");
    assert_eq!(all.len(), 10);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        assert_eq!(r.key, keys[i]);
        // Allow for clock skew between this host and a broker.
        assert!(
            r.timestamp_ms >= before - 60_000 && r.timestamp_ms <= after + 60_000,
            "timestamp {} outside [{before}, {after}]",
            r.timestamp_ms
        );
    }

    let middle = log.read(&topic, 1, 3, 4).await.expect("read");
    assert_eq!(
        middle.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [3, 4, 5, 6]
    );
    assert_eq!(values(&middle), ["v3", "v4", "v5", "v6"]);
    let tail = log.read(&topic, 1, 8, 100).await.expect("read");
    assert_eq!(values(&tail), ["v8", "v9"]);
    assert!(log.read(&topic, 1, 10, 100).await.expect("read").is_empty());
    assert!(
        log.read(&topic, 1, 1_000, 100)
            .await
            .expect("read")
            .is_empty()
    );
    assert!(log.read(&topic, 1, 0, 0).await.expect("read").is_empty());
    assert!(log.read(&topic, 0, 0, 100).await.expect("read").is_empty());
    assert_eq!(log.end_offset(&topic, 1).await.expect("end"), 10);
    assert_eq!(log.end_offset(&topic, 0).await.expect("end"), 0);
}

pub async fn wait_for_wakes_on_append_and_times_out_otherwise<L: EventLog>(log: &L) {
    let topic = new_topic(log, "cf_wait", 1).await;

    // Nothing arrives: it waits out the timeout and reports the end as it is.
    let started = Instant::now();
    let end = log
        .wait_for(&topic, 0, 0, Duration::from_millis(200))
        .await
        .expect("wait");
    assert_eq!(end, 0);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "returned before the timeout"
    );

    // An append wakes the waiter long before its timeout.
    let long = Duration::from_secs(30);
    let started = Instant::now();
    let (woken, appended) = tokio::join!(log.wait_for(&topic, 0, 0, long), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        log.append(vec![record(&topic, "k", "v")]).await
    });
    appended.expect("append");
    assert!(woken.expect("wait") >= 1);
    assert!(
        started.elapsed() < long / 2,
        "the waiter slept through the append"
    );

    // Already beyond the offset: returns at once.
    let started = Instant::now();
    let end = log.wait_for(&topic, 0, 0, long).await.expect("wait");
    assert_eq!(end, 1);
    assert!(started.elapsed() < long / 2);
}

pub async fn wait_for_any_wakes_on_an_append_to_any_partition<L: EventLog>(log: &L) {
    let topic = new_topic(log, "cf_wait_any", 4).await;
    let at_start: Vec<(u32, Offset)> = (0..4).map(|p| (p, 0)).collect();

    // Nothing arrives: it waits out the timeout.
    let started = Instant::now();
    let woken = log
        .wait_for_any(&topic, &at_start, Duration::from_millis(200))
        .await
        .expect("wait");
    assert!(!woken);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "returned before the timeout"
    );

    // An append to whichever partition its key lands on wakes the waiter.
    let long = Duration::from_secs(30);
    let started = Instant::now();
    let (woken, appended) = tokio::join!(log.wait_for_any(&topic, &at_start, long), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        log.append(vec![record(&topic, "any-key", "v")]).await
    });
    let appended = appended.expect("append");
    assert!(woken.expect("wait"));
    assert!(
        started.elapsed() < long / 2,
        "the waiter slept through the append"
    );

    // A partition already beyond its offset answers at once; the others do not count.
    let landed = appended[0].partition;
    let started = Instant::now();
    assert!(
        log.wait_for_any(&topic, &at_start, long)
            .await
            .expect("wait")
    );
    assert!(started.elapsed() < long / 2);
    let caught_up: Vec<(u32, Offset)> = (0..4)
        .map(|p| (p, if p == landed { 1 } else { 0 }))
        .collect();
    let short = Duration::from_millis(100);
    assert!(
        !log.wait_for_any(&topic, &caught_up, short)
            .await
            .expect("wait")
    );

    // Unknown partitions are errors, as everywhere else.
    assert!(log.wait_for_any(&topic, &[(9, 0)], short).await.is_err());
}

pub async fn a_consumer_reads_its_partitions_from_their_offsets_and_waits_for_more<L: EventLog>(
    log: &L,
) {
    let topic = new_topic(log, "cf_consume", 3).await;
    // Three records on each of partitions 0 and 1.
    let mut appended = Vec::new();
    for partition in 0..2 {
        for (i, key) in keys_on(partition, 3, 3).into_iter().enumerate() {
            appended.push(record(&topic, &key, &format!("p{partition}-{i}")));
        }
    }
    log.append(appended).await.expect("append");

    // Partition 0 from offset 1, partition 1 from 0; partition 2 is not assigned.
    let mut consumer = log
        .consume(&topic, &[(0, 1), (1, 0)])
        .await
        .expect("consumer");
    let mut seen = Vec::new();
    let started = Instant::now();
    while seen.len() < 5 {
        assert!(started.elapsed() < Duration::from_secs(30), "{seen:?}");
        let records = consumer
            .poll(2, Duration::from_secs(5))
            .await
            .expect("poll");
        assert!(records.len() <= 2, "at most max records a poll");
        seen.extend(records);
    }
    let mut by_partition: BTreeMap<u32, Vec<(Offset, String)>> = BTreeMap::new();
    for r in &seen {
        by_partition
            .entry(r.partition)
            .or_default()
            .push((r.offset, String::from_utf8_lossy(&r.value).into_owned()));
    }
    assert_eq!(
        by_partition,
        BTreeMap::from([
            (0, vec![(1, "p0-1".into()), (2, "p0-2".into())]),
            (
                1,
                vec![(0, "p1-0".into()), (1, "p1-1".into()), (2, "p1-2".into())]
            ),
        ])
    );

    // Caught up: a poll waits out its timeout, then takes what is appended after.
    let started = Instant::now();
    let none = consumer
        .poll(10, Duration::from_millis(200))
        .await
        .expect("poll");
    assert!(none.is_empty(), "{none:?}");
    assert!(started.elapsed() >= Duration::from_millis(150));
    let key = keys_on(1, 3, 1).remove(0);
    let (polled, _) = tokio::join!(consumer.poll(10, Duration::from_secs(30)), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        log.append(vec![record(&topic, &key, "late")])
            .await
            .expect("append")
    });
    let polled = polled.expect("poll");
    assert_eq!(values(&polled), ["late"]);
    assert_eq!((polled[0].partition, polled[0].offset), (1, 3));
    assert!(log.consume(&topic, &[(9, 0)]).await.is_err());
}

pub async fn committed_offsets_are_kept_per_group<L: EventLog>(log: &L) {
    let topic = new_topic(log, "cf_groups", 2).await;
    let g1 = unique_name("cf_group_a");
    let g2 = unique_name("cf_group_b");
    assert_eq!(
        log.committed_offset(&g1, &topic, 0).await.expect("read"),
        None
    );

    log.commit_offset(&g1, &topic, 0, 5).await.expect("commit");
    log.commit_offset(&g2, &topic, 0, 7).await.expect("commit");
    log.commit_offset(&g1, &topic, 1, 2).await.expect("commit");
    assert_eq!(
        log.committed_offset(&g1, &topic, 0).await.expect("read"),
        Some(5)
    );
    assert_eq!(
        log.committed_offset(&g2, &topic, 0).await.expect("read"),
        Some(7)
    );
    assert_eq!(
        log.committed_offset(&g1, &topic, 1).await.expect("read"),
        Some(2)
    );
    assert_eq!(
        log.committed_offset(&g2, &topic, 1).await.expect("read"),
        None
    );

    log.commit_offset(&g1, &topic, 0, 9).await.expect("commit");
    assert_eq!(
        log.committed_offset(&g1, &topic, 0).await.expect("read"),
        Some(9)
    );
}

/// Starts every partition handed over at one offset.
struct StartEverywhereAt(Offset);

#[async_trait]
impl StartAt for StartEverywhereAt {
    async fn positions(&self, _: &str, partitions: &[u32]) -> Result<Vec<Offset>, StorageError> {
        Ok(vec![self.0; partitions.len()])
    }
}

/// Polls the members in turn until `done` holds of what they have read, for up to a
/// minute (a Kafka rebalance takes a few round trips of the group protocol).
async fn poll_members_until(
    members: &mut [&mut Box<dyn GroupConsumer>],
    seen: &mut [Vec<(u32, Offset)>],
    what: &str,
    done: impl Fn(&[&mut Box<dyn GroupConsumer>], &[Vec<(u32, Offset)>]) -> bool,
) {
    let started = Instant::now();
    while !done(members, seen) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: assignments {:?}, read {seen:?}",
            members.iter().map(|m| m.assignment()).collect::<Vec<_>>()
        );
        for (member, seen) in members.iter_mut().zip(seen.iter_mut()) {
            let records = member
                .poll(100, Duration::from_millis(100))
                .await
                .expect("poll");
            seen.extend(records.iter().map(|r| (r.partition, r.offset)));
        }
    }
}

pub async fn a_group_shares_its_partitions_and_hands_them_over<L: EventLog>(log: &L) {
    let topic = new_topic(log, "cf_group_share", 4).await;
    let mut appended = Vec::new();
    for partition in 0..4 {
        for (i, key) in keys_on(partition, 4, 2).into_iter().enumerate() {
            appended.push(record(&topic, &key, &format!("p{partition}-{i}")));
        }
    }
    log.append(appended).await.expect("append");
    let group = unique_name("cf_share");
    let all: BTreeSet<u32> = (0..4).collect();
    let held = |m: &dyn GroupConsumer| m.assignment().into_iter().collect::<BTreeSet<_>>();

    // Alone, a member holds every partition and reads them from where its `StartAt`
    // says (offset 1), not from the start.
    let mut a = log
        .subscribe(&group, &topic, Arc::new(StartEverywhereAt(1)))
        .await
        .expect("subscribe");
    let mut seen = vec![Vec::new()];
    poll_members_until(&mut [&mut a], &mut seen, "a alone", |_, seen| {
        seen[0].len() >= 4
    })
    .await;
    assert!(a.assigned());
    assert_eq!(held(a.as_ref()), all);
    let mut first: Vec<_> = seen[0].clone();
    first.sort_unstable();
    assert_eq!(first, [(0, 1), (1, 1), (2, 1), (3, 1)]);
    // Committed offsets are kept for tooling (the commit is asynchronous) and do not
    // decide where a member starts.
    a.commit(&[(0, 2), (1, 2), (2, 2), (3, 2)]);

    // A second member joins: the partitions are shared, each held by one member, and
    // the ones handed to it start where its own `StartAt` says (offset 0).
    let mut b = log
        .subscribe(&group, &topic, Arc::new(StartEverywhereAt(0)))
        .await
        .expect("subscribe");
    let mut seen = vec![Vec::new(), Vec::new()];
    poll_members_until(
        &mut [&mut a, &mut b],
        &mut seen,
        "a and b",
        |members, seen| {
            let (a, b) = (held(members[0].as_ref()), held(members[1].as_ref()));
            !a.is_empty()
                && !b.is_empty()
                && a.is_disjoint(&b)
                && a.union(&b).copied().collect::<BTreeSet<_>>() == all
                && b.iter()
                    .all(|&p| seen[1].contains(&(p, 0)) && seen[1].contains(&(p, 1)))
        },
    )
    .await;
    let handed_to_b = held(b.as_ref());

    // When it leaves, the other member takes its partitions on, from its own start.
    drop(b);
    let mut seen = vec![Vec::new()];
    poll_members_until(&mut [&mut a], &mut seen, "b left", |members, seen| {
        held(members[0].as_ref()) == all && handed_to_b.iter().all(|&p| seen[0].contains(&(p, 1)))
    })
    .await;
    assert!(
        seen[0].iter().all(|&(_, offset)| offset >= 1),
        "a started before its StartAt: {seen:?}"
    );

    let started = Instant::now();
    while log
        .committed_offset(&group, &topic, 0)
        .await
        .expect("committed")
        != Some(2)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "commit not kept"
        );
        a.poll(10, Duration::from_millis(100)).await.expect("poll");
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

// ---- read store -----------------------------------------------------------------------

/// Runs every read store check.
pub async fn read_store_suite<S: ReadStore>(store: &S) {
    a_checkpoint_keeps_the_writer_whose_records_count(store).await;
    rows_are_put_and_read_back(store).await;
    the_higher_version_wins(store).await;
    deletes_win_ties_and_newer_puts_resurrect(store).await;
    changes_to_one_row_in_one_apply_merge_by_version(store).await;
    scans_honour_bounds_order_limit_and_tombstones(store).await;
    checkpoints_are_stored_with_apply(store).await;
    replaying_an_apply_is_harmless(store).await;
    dropped_tables_and_checkpoints_are_gone_and_the_rest_stays(store).await;
}

fn put(table: &str, partition: &str, clustering: &str, value: &str, version: u64) -> Write {
    Write::Put {
        table: table.to_owned(),
        partition: partition.to_owned(),
        clustering: clustering.to_owned(),
        value: Bytes::from(value.to_owned()),
        version,
    }
}

fn delete(table: &str, partition: &str, clustering: &str, version: u64) -> Write {
    Write::Delete {
        table: table.to_owned(),
        partition: partition.to_owned(),
        clustering: clustering.to_owned(),
        version,
    }
}

async fn apply<S: ReadStore>(store: &S, writes: Vec<Write>) {
    store.apply(writes, Vec::new()).await.expect("apply");
}

/// The row's (value, version), if live.
async fn cell<S: ReadStore>(
    store: &S,
    table: &str,
    partition: &str,
    clustering: &str,
) -> Option<(String, u64)> {
    store
        .get(table, partition, clustering)
        .await
        .expect("get")
        .map(|row| {
            assert_eq!(row.clustering, clustering);
            (
                String::from_utf8_lossy(&row.value).into_owned(),
                row.version,
            )
        })
}

fn some(value: &str, version: u64) -> Option<(String, u64)> {
    Some((value.to_owned(), version))
}

pub async fn rows_are_put_and_read_back<S: ReadStore>(store: &S) {
    let table = unique_name("cf_rows");
    assert_eq!(cell(store, &table, "p", "c").await, None);
    apply(store, vec![put(&table, "p", "c", "hello", 1)]).await;
    assert_eq!(cell(store, &table, "p", "c").await, some("hello", 1));
    // Same names in another partition or clustering key are other rows.
    assert_eq!(cell(store, &table, "p", "c2").await, None);
    assert_eq!(cell(store, &table, "p2", "c").await, None);
    // Empty keys and values are ordinary.
    apply(store, vec![put(&table, "", "", "", 1)]).await;
    assert_eq!(cell(store, &table, "", "").await, some("", 1));
}

pub async fn the_higher_version_wins<S: ReadStore>(store: &S) {
    let table = unique_name("cf_versions");
    apply(store, vec![put(&table, "p", "c", "five", 5)]).await;
    apply(store, vec![put(&table, "p", "c", "three", 3)]).await;
    assert_eq!(
        cell(store, &table, "p", "c").await,
        some("five", 5),
        "a lower version replaced a higher one"
    );
    apply(store, vec![put(&table, "p", "c", "six", 6)]).await;
    assert_eq!(cell(store, &table, "p", "c").await, some("six", 6));
    // A put of the same version over a put replaces it.
    apply(store, vec![put(&table, "p", "c", "six-again", 6)]).await;
    assert_eq!(cell(store, &table, "p", "c").await, some("six-again", 6));
    // A lower-version delete is ignored.
    apply(store, vec![delete(&table, "p", "c", 4)]).await;
    assert_eq!(cell(store, &table, "p", "c").await, some("six-again", 6));
}

pub async fn deletes_win_ties_and_newer_puts_resurrect<S: ReadStore>(store: &S) {
    let table = unique_name("cf_deletes");
    apply(store, vec![put(&table, "p", "c", "v", 6)]).await;
    apply(store, vec![delete(&table, "p", "c", 6)]).await;
    assert_eq!(
        cell(store, &table, "p", "c").await,
        None,
        "a delete lost a tie with a put"
    );
    apply(store, vec![put(&table, "p", "c", "same", 6)]).await;
    assert_eq!(
        cell(store, &table, "p", "c").await,
        None,
        "a put won a tie with a delete"
    );
    apply(store, vec![put(&table, "p", "c", "back", 7)]).await;
    assert_eq!(cell(store, &table, "p", "c").await, some("back", 7));

    // A delete of a row never written still shadows older puts.
    apply(store, vec![delete(&table, "p", "ghost", 10)]).await;
    apply(store, vec![put(&table, "p", "ghost", "late", 9)]).await;
    assert_eq!(cell(store, &table, "p", "ghost").await, None);
    apply(store, vec![put(&table, "p", "ghost", "newer", 11)]).await;
    assert_eq!(cell(store, &table, "p", "ghost").await, some("newer", 11));
}

pub async fn changes_to_one_row_in_one_apply_merge_by_version<S: ReadStore>(store: &S) {
    let table = unique_name("cf_merge");
    apply(
        store,
        vec![
            put(&table, "p", "a", "one", 1),
            put(&table, "p", "a", "three", 3),
            put(&table, "p", "a", "two", 2),
            put(&table, "p", "b", "b", 1),
            delete(&table, "p", "b", 1),
            put(&table, "p", "b", "b-again", 1),
        ],
    )
    .await;
    assert_eq!(cell(store, &table, "p", "a").await, some("three", 3));
    assert_eq!(cell(store, &table, "p", "b").await, None);
}

pub async fn scans_honour_bounds_order_limit_and_tombstones<S: ReadStore>(store: &S) {
    use Bound::{Excluded, Included, Unbounded};
    use Order::{Ascending, Descending};

    let table = unique_name("cf_scan");
    let other_table = unique_name("cf_scan_other");
    let mut writes: Vec<_> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|c| put(&table, "p", c, &format!("{c}-value"), 1))
        .collect();
    // Neighbours that must not leak into the scan of (table, "p").
    writes.push(put(&table, "p2", "a", "other partition", 1));
    writes.push(put(&table, "", "pa", "shorter partition", 1));
    writes.push(put(&other_table, "p", "a", "other table", 1));
    apply(store, writes).await;
    apply(store, vec![delete(&table, "p", "c", 2)]).await;

    let scan = |from: Bound<&str>, to: Bound<&str>, order, limit| Scan {
        from: from.map(str::to_owned),
        to: to.map(str::to_owned),
        order,
        limit,
    };
    let clusterings =
        |rows: Vec<crate::Row>| rows.into_iter().map(|r| r.clustering).collect::<Vec<_>>();
    let run = |s: Scan| async { clusterings(store.scan(&table, "p", s).await.expect("scan")) };

    assert_eq!(
        run(scan(Unbounded, Unbounded, Ascending, 100)).await,
        ["a", "b", "d", "e"]
    );
    assert_eq!(
        run(scan(Unbounded, Unbounded, Descending, 100)).await,
        ["e", "d", "b", "a"]
    );
    assert_eq!(
        run(scan(Unbounded, Unbounded, Ascending, 2)).await,
        ["a", "b"]
    );
    assert_eq!(
        run(scan(Unbounded, Unbounded, Descending, 2)).await,
        ["e", "d"]
    );
    assert_eq!(
        run(scan(Included("b"), Excluded("e"), Ascending, 100)).await,
        ["b", "d"]
    );
    assert_eq!(
        run(scan(Excluded("b"), Included("e"), Ascending, 100)).await,
        ["d", "e"]
    );
    assert_eq!(
        run(scan(Included("b"), Included("d"), Descending, 100)).await,
        ["d", "b"]
    );
    // The tombstone does not count towards the limit.
    assert_eq!(
        run(scan(Included("b"), Unbounded, Ascending, 2)).await,
        ["b", "d"]
    );
    assert_eq!(
        run(scan(Unbounded, Excluded("c"), Descending, 1)).await,
        ["b"]
    );
    // Bounds between and beyond the keys.
    assert_eq!(
        run(scan(Included("bb"), Included("dd"), Ascending, 100)).await,
        ["d"]
    );
    assert!(
        run(scan(Included("x"), Unbounded, Ascending, 100))
            .await
            .is_empty()
    );
    assert!(
        run(scan(Included("d"), Included("b"), Ascending, 100))
            .await
            .is_empty()
    );
    assert!(
        run(scan(Included("b"), Excluded("b"), Ascending, 100))
            .await
            .is_empty()
    );
    assert!(
        run(scan(Unbounded, Unbounded, Ascending, 0))
            .await
            .is_empty()
    );

    let rows = store
        .scan(
            &table,
            "p",
            scan(Included("a"), Included("a"), Ascending, 10),
        )
        .await
        .expect("scan");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].value, Bytes::from_static(b"a-value"));
    assert_eq!(rows[0].version, 1);
    assert!(
        store
            .scan(&table, "missing", scan(Unbounded, Unbounded, Ascending, 10))
            .await
            .expect("scan")
            .is_empty()
    );
}

pub async fn a_checkpoint_keeps_the_writer_whose_records_count<S: ReadStore>(store: &S) {
    let projection = unique_name("cf_writer");
    let topic = unique_name("cf_topic");
    let at = |next, writer: Option<&str>| Checkpoint {
        projection: projection.clone(),
        topic: topic.clone(),
        partition: 2,
        next,
        writer: writer.map(str::to_owned),
    };
    async fn kept<S: ReadStore>(
        store: &S,
        projection: &str,
        topic: &str,
    ) -> (Option<u64>, Option<String>) {
        let next = store
            .checkpoint(projection, topic, 2)
            .await
            .expect("checkpoint");
        let writer = store
            .checkpoint_writer(projection, topic, 2)
            .await
            .expect("writer");
        (next, writer)
    }
    assert_eq!(kept(store, &projection, &topic).await, (None, None));
    store
        .apply(Vec::new(), vec![at(7, None)])
        .await
        .expect("apply");
    assert_eq!(kept(store, &projection, &topic).await, (Some(7), None));
    store
        .apply(Vec::new(), vec![at(9, Some("writer-b"))])
        .await
        .expect("apply");
    assert_eq!(
        kept(store, &projection, &topic).await,
        (Some(9), Some("writer-b".to_owned()))
    );
}

pub async fn checkpoints_are_stored_with_apply<S: ReadStore>(store: &S) {
    let projection = unique_name("cf_projection");
    let topic = unique_name("cf_topic");
    let table = unique_name("cf_checkpointed");
    let checkpoint = |partition, next| Checkpoint {
        projection: projection.clone(),
        topic: topic.clone(),
        partition,
        next,
        writer: None,
    };
    assert_eq!(
        store
            .checkpoint(&projection, &topic, 0)
            .await
            .expect("checkpoint"),
        None
    );

    store
        .apply(vec![put(&table, "p", "c", "v", 1)], vec![checkpoint(0, 10)])
        .await
        .expect("apply");
    assert_eq!(
        store
            .checkpoint(&projection, &topic, 0)
            .await
            .expect("checkpoint"),
        Some(10)
    );
    assert_eq!(cell(store, &table, "p", "c").await, some("v", 1));

    // Checkpoints alone, several partitions at once.
    store
        .apply(Vec::new(), vec![checkpoint(0, 20), checkpoint(1, 3)])
        .await
        .expect("apply");
    assert_eq!(
        store
            .checkpoint(&projection, &topic, 0)
            .await
            .expect("checkpoint"),
        Some(20)
    );
    assert_eq!(
        store
            .checkpoint(&projection, &topic, 1)
            .await
            .expect("checkpoint"),
        Some(3)
    );
    assert_eq!(
        store
            .checkpoint(&projection, &topic, 2)
            .await
            .expect("checkpoint"),
        None
    );
    let other = unique_name("cf_other_projection");
    assert_eq!(
        store
            .checkpoint(&other, &topic, 0)
            .await
            .expect("checkpoint"),
        None
    );
    store
        .apply(Vec::new(), Vec::new())
        .await
        .expect("empty apply");
}

pub async fn replaying_an_apply_is_harmless<S: ReadStore>(store: &S) {
    let projection = unique_name("cf_replay");
    let topic = unique_name("cf_replay_topic");
    let table = unique_name("cf_replay_rows");
    let writes = vec![
        put(&table, "p", "x", "x1", 1),
        put(&table, "p", "y", "y2", 2),
        delete(&table, "p", "x", 3),
        put(&table, "p", "z", "z4", 4),
    ];
    let checkpoints = vec![Checkpoint {
        projection: projection.clone(),
        topic: topic.clone(),
        partition: 0,
        next: 4,
        writer: None,
    }];
    store
        .apply(writes.clone(), checkpoints.clone())
        .await
        .expect("apply");
    // A later change to z, then a replay of the first batch (a crash before the
    // checkpoint moved on): the newer z must survive.
    apply(store, vec![put(&table, "p", "z", "z5", 5)]).await;
    store.apply(writes, checkpoints).await.expect("replay");

    assert_eq!(cell(store, &table, "p", "x").await, None);
    assert_eq!(cell(store, &table, "p", "y").await, some("y2", 2));
    assert_eq!(cell(store, &table, "p", "z").await, some("z5", 5));
    assert_eq!(
        store
            .checkpoint(&projection, &topic, 0)
            .await
            .expect("checkpoint"),
        Some(4)
    );
}

pub async fn dropped_tables_and_checkpoints_are_gone_and_the_rest_stays<S: ReadStore>(store: &S) {
    let dropped = unique_name("cf_drop");
    let kept = unique_name("cf_keep");
    let projection = unique_name("cf_drop_projection");
    let topic = unique_name("cf_drop_topic");
    store
        .create_tables(&[dropped.clone(), kept.clone()])
        .await
        .expect("create");
    let checkpoint = |partition| Checkpoint {
        projection: projection.clone(),
        topic: topic.clone(),
        partition,
        next: 7,
        writer: Some("w".into()),
    };
    store
        .apply(
            vec![
                put(&dropped, "p", "a", "a", 1),
                put(&dropped, "q", "b", "b", 1),
                delete(&dropped, "p", "gone", 9),
                put(&kept, "p", "a", "kept", 1),
            ],
            vec![checkpoint(0), checkpoint(1)],
        )
        .await
        .expect("apply");
    let checkpoints = [(projection.clone(), topic.clone(), 0)];
    store
        .drop_tables(std::slice::from_ref(&dropped), &checkpoints)
        .await
        .expect("drop");
    assert_eq!(cell(store, &dropped, "p", "a").await, None);
    assert_eq!(cell(store, &dropped, "q", "b").await, None);
    assert_eq!(cell(store, &kept, "p", "a").await, some("kept", 1));
    let next = |partition| store.checkpoint(&projection, &topic, partition);
    assert_eq!(next(0).await.expect("checkpoint"), None, "dropped");
    assert_eq!(next(1).await.expect("checkpoint"), Some(7), "not named");
    // Dropped means never written: a low version writes again (no tombstone is left),
    // and dropping again is harmless.
    store
        .create_tables(std::slice::from_ref(&dropped))
        .await
        .expect("create");
    apply(store, vec![put(&dropped, "p", "gone", "back", 1)]).await;
    assert_eq!(cell(store, &dropped, "p", "gone").await, some("back", 1));
    store
        .drop_tables(std::slice::from_ref(&dropped), &checkpoints)
        .await
        .expect("drop twice");
}
