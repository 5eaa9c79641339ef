//! Kafka's default partitioner, so the embedded log and a Kafka producer put a key on
//! the same partition. librdkafka's default is CRC32-based, not this: an rdkafka producer
//! must set `partitioner=murmur2_random` or name the partition from `partition_for`.

/// The partition of `key` in a topic of `partitions` partitions: Kafka's
/// `Utils.toPositive(Utils.murmur2(key)) % partitions`. Returns 0 when `partitions` is 0
/// (no such topic can exist; this only avoids a division by zero).
pub fn partition_for(key: &str, partitions: u32) -> u32 {
    if partitions == 0 {
        return 0;
    }
    (murmur2(key.as_bytes()) & 0x7fff_ffff) % partitions
}

/// MurmurHash2 exactly as `org.apache.kafka.common.utils.Utils.murmur2` computes it
/// (seed 0x9747b28c, little-endian 4-byte blocks), as an unsigned 32-bit value.
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java uses the `int` length; keys longer than 2^31 bytes do not reach here.
    let mut h = SEED ^ (data.len() as u32);
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_own_test_vectors() {
        // From Apache Kafka's UtilsTest.testMurmur2 (signed Java ints).
        let cases: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key.as_bytes()) as i32, expected, "murmur2({key:?})");
        }
    }

    #[test]
    fn partition_is_the_positive_hash_modulo_the_partition_count() {
        // murmur2("21") is negative: the sign bit is masked, not negated (toPositive).
        let positive = (-973_932_308_i32 as u32) & 0x7fff_ffff;
        for partitions in 1..=12 {
            assert_eq!(partition_for("21", partitions), positive % partitions);
        }
        assert_eq!(partition_for("abc", 7), 479_470_107 % 7);
    }

    #[test]
    fn zero_partitions_does_not_panic() {
        assert_eq!(partition_for("anything", 0), 0);
    }
}
