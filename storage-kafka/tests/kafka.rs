//! The event log conformance suite against a real Kafka-protocol broker at
//! `KAFKA_BROKERS` (`.ci/run` starts one). Without it the test says it was skipped.
//!
//! The settings are the test broker's (tansu 0.6, memory storage): it loses the rest of a
//! record batch when a fetch starts inside one, so the producer sends one record per
//! batch; the product itself keeps librdkafka's batching.

use storage::conformance;
use storage_kafka::{KafkaLog, KafkaSettings};

fn broker() -> Option<KafkaLog> {
    let Ok(brokers) = std::env::var("KAFKA_BROKERS") else {
        eprintln!("skipped: KAFKA_BROKERS is not set, so the Kafka adapter was not tested");
        return None;
    };
    let mut settings = KafkaSettings::new(&brokers);
    // Names on the cluster carry the prefix; the port never sees it.
    settings.topic_prefix = "conformance.".into();
    settings
        .client
        .push(("batch.num.messages".into(), "1".into()));
    Some(KafkaLog::connect(settings).expect("a Kafka client"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_log_passes_the_event_log_suite() {
    let Some(log) = broker() else { return };
    conformance::event_log_suite(&log).await;
}
