//! Which records of the log count: "the latest marker wins".
//!
//! Kafka has no conditional append, so a writer whose append failed or timed out cannot
//! know whether its record will land, or when. Instead of preventing such a record, the
//! log makes it harmless: the writer appends a *marker* (header `marker`, header `writer`
//! = a fresh writer id) and every record carries the id of the writer that sent it
//! (header `writer`). A record counts if and only if its writer is the writer of the
//! latest marker before it in its partition. A record that lands after a newer marker —
//! a late retry, a paused process that woke up — is skipped by every reader alike.
//!
//! Every reader (command side, projectors, workflow, tools) folds records through one
//! [`Validity`]; a reader that resumes mid-log restores the writer its checkpoint kept
//! ([`Validity::resume`]). Records before any marker of their partition count, so a log
//! written without markers (telemetry, an older build) reads as it always did.

use crate::Record;
use std::collections::HashMap;

/// Header naming the writer of a record (and of a marker).
pub const WRITER_HEADER: &str = "writer";
/// Header set on a marker.
pub const MARKER_HEADER: &str = "marker";

/// What a record is to a reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admitted {
    /// It counts: fold it.
    Valid,
    /// A marker: from here on only `writer`'s records count.
    Marker { writer: String },
    /// Written by a writer a later marker replaced: skip it.
    Skipped,
}

/// The writer of the latest marker of each partition read so far.
#[derive(Clone, Debug, Default)]
pub struct Validity {
    writers: HashMap<(String, u32), String>,
}

impl Validity {
    /// Classifies the next record of its partition (records of one partition must come
    /// in offset order) and moves on past it.
    pub fn admit(&mut self, record: &Record) -> Admitted {
        let writer = record
            .header(WRITER_HEADER)
            .map(|w| String::from_utf8_lossy(w).into_owned());
        if record.header(MARKER_HEADER).is_some() {
            let writer = writer.unwrap_or_default();
            self.writers
                .insert((record.topic.clone(), record.partition), writer.clone());
            return Admitted::Marker { writer };
        }
        match self.writers.get(&(record.topic.clone(), record.partition)) {
            None => Admitted::Valid,
            Some(current) if writer.as_deref() == Some(current.as_str()) => Admitted::Valid,
            Some(_) => Admitted::Skipped,
        }
    }

    /// The writer whose records count in a partition now (`None` before any marker):
    /// what a checkpoint stores beside its offset.
    pub fn writer(&self, topic: &str, partition: u32) -> Option<&str> {
        self.writers
            .get(&(topic.to_owned(), partition))
            .map(String::as_str)
    }

    /// Restores what a checkpoint kept, for a reader that resumes mid-log.
    pub fn resume(&mut self, topic: &str, partition: u32, writer: Option<String>) {
        match writer {
            Some(writer) => {
                self.writers.insert((topic.to_owned(), partition), writer);
            }
            None => {
                self.writers.remove(&(topic.to_owned(), partition));
            }
        }
    }
}

/// The headers of a record written by `writer`.
pub fn written_by(writer: &str) -> crate::Headers {
    vec![(
        WRITER_HEADER.to_owned(),
        bytes::Bytes::from(writer.to_owned()),
    )]
}

/// The headers of a marker of `writer`.
pub fn marker_of(writer: &str) -> crate::Headers {
    vec![
        (
            WRITER_HEADER.to_owned(),
            bytes::Bytes::from(writer.to_owned()),
        ),
        (MARKER_HEADER.to_owned(), bytes::Bytes::from_static(b"1")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(partition: u32, offset: u64, headers: crate::Headers) -> Record {
        Record {
            topic: "deliveries".into(),
            partition,
            offset,
            key: "k".into(),
            value: Bytes::new(),
            headers,
            timestamp_ms: 0,
        }
    }

    #[test]
    fn records_before_any_marker_count() {
        let mut validity = Validity::default();
        assert_eq!(validity.admit(&record(0, 0, Vec::new())), Admitted::Valid);
        assert_eq!(
            validity.admit(&record(0, 1, written_by("a"))),
            Admitted::Valid
        );
    }

    #[test]
    fn after_a_marker_only_its_writers_records_count_per_partition() {
        let mut validity = Validity::default();
        assert_eq!(
            validity.admit(&record(0, 0, marker_of("a"))),
            Admitted::Marker { writer: "a".into() }
        );
        assert_eq!(
            validity.admit(&record(0, 1, written_by("a"))),
            Admitted::Valid
        );
        assert_eq!(
            validity.admit(&record(0, 2, written_by("b"))),
            Admitted::Skipped
        );
        assert_eq!(validity.admit(&record(0, 3, Vec::new())), Admitted::Skipped);
        // Another partition has no marker yet.
        assert_eq!(
            validity.admit(&record(1, 0, written_by("b"))),
            Admitted::Valid
        );
        // The latest marker wins: a's late record is skipped once b marked.
        validity.admit(&record(0, 4, marker_of("b")));
        assert_eq!(
            validity.admit(&record(0, 5, written_by("a"))),
            Admitted::Skipped
        );
        assert_eq!(
            validity.admit(&record(0, 6, written_by("b"))),
            Admitted::Valid
        );
        assert_eq!(validity.writer("deliveries", 0), Some("b"));
    }

    #[test]
    fn a_resumed_reader_classifies_as_one_that_read_from_the_start() {
        let mut from_start = Validity::default();
        from_start.admit(&record(0, 0, marker_of("a")));
        let mut resumed = Validity::default();
        resumed.resume(
            "deliveries",
            0,
            from_start.writer("deliveries", 0).map(str::to_owned),
        );
        for r in [record(0, 1, written_by("a")), record(0, 2, written_by("z"))] {
            assert_eq!(resumed.admit(&r), from_start.admit(&r));
        }
    }
}
