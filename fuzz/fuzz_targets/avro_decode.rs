//! The Avro decoder on arbitrary bytes, as a record's value read from the log: one event
//! or a commit of several, Confluent-framed. Decoding must answer, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use schemas::Codec;
use std::sync::LazyLock;

static CODEC: LazyLock<Codec> = LazyLock::new(|| Codec::new().expect("the checked-in schemas load"));

fuzz_target!(|data: &[u8]| {
    let _ = CODEC.decode(data);
    let _ = CODEC.decode_all(data);
});
