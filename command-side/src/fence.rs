//! This process's place as the writer of each partition of the command topics, by log
//! order alone ("the latest marker wins", `storage::validity`).
//!
//! At start-up the command side appends a marker to every partition of every command
//! topic and folds each partition up to its own marker: what lands after it from anyone
//! else (a paused predecessor, a late retry) counts for no reader. Every record it writes
//! carries the marker's writer id. When an append fails or times out, its record may
//! still land later, so the partition is *in doubt*: before the next decision on it the
//! command side appends a new marker (a fresh writer id) and folds up to it; the record
//! in doubt then either landed before that marker (and is folded, with its idempotency
//! key) or counts for nobody. The offset an append returns tells whether anyone wrote in
//! between; only then is the gap read, to find a marker of another writer.

use chrono::Utc;
use schemas::events::Topic;
use schemas::{Codec, WRITERMARKER_SCHEMA_ID, WriterMarker};
use storage::{NewRecord, marker_of};
use uuid::Uuid;

/// The writer's place in one partition; kept with the partition's shard, under its lock.
#[derive(Clone, Debug)]
pub struct Fence {
    /// The writer id this process's records carry (the latest marker's).
    pub writer: String,
    /// Where the next record lands if nobody else writes in between.
    pub next: u64,
    /// An append's outcome is unknown: mark again and fold before the next decision.
    pub in_doubt: bool,
}

impl Default for Fence {
    /// Not marked yet: no decision until the partition is marked and folded.
    fn default() -> Fence {
        Fence {
            writer: String::new(),
            next: 0,
            in_doubt: true,
        }
    }
}

/// A writer id for one marker: the process and a fresh incarnation, so that records a
/// failed append leaves behind never match a later marker of the same process.
pub fn fresh_writer(instance: &str) -> String {
    format!("{instance}/{}", Uuid::new_v4().simple())
}

/// The marker record of `writer` for `partition` of `topic` (of `partitions`).
pub fn marker(
    codec: &Codec,
    topic: Topic,
    partition: u32,
    partitions: u32,
    writer: &str,
    instance: &str,
) -> Result<NewRecord, schemas::CodecError> {
    let frame = WriterMarker {
        writer: writer.to_owned(),
        instance: instance.to_owned(),
        at: Utc::now(),
    };
    Ok(NewRecord {
        topic: topic.name().to_owned(),
        key: key_in(partition, partitions),
        value: codec.encode_frame(WRITERMARKER_SCHEMA_ID, &frame)?.into(),
        headers: marker_of(writer),
    })
}

/// A key the partitioner sends to `partition` (records are routed by key alone).
fn key_in(partition: u32, partitions: u32) -> String {
    (0u64..)
        .map(|n| format!("marker/{n}"))
        .find(|key| storage::partition_for(key, partitions) == partition)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_lands_in_its_partition() {
        let codec = Codec::new().expect("codec");
        for partitions in [1, 3, 8, 12] {
            for partition in 0..partitions {
                let record = marker(&codec, Topic::Deliveries, partition, partitions, "w", "i")
                    .expect("encodes");
                assert_eq!(storage::partition_for(&record.key, partitions), partition);
            }
        }
    }
}
