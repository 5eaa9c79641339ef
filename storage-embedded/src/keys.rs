//! Byte encodings of the keys and values the embedded adapters store in fjall.
//!
//! Strings inside keys are length-prefixed (u16, big-endian), so a key decodes one way
//! only and two different (topic, partition) or (table, partition) pairs can never
//! produce keys that are prefixes of each other. Integers are big-endian so fjall's
//! byte order is their numeric order.

use crate::{Offset, StorageError};
use bytes::Bytes;

/// fjall's journal stores a key's length as a u16.
pub(crate) const MAX_KEY_LEN: usize = u16::MAX as usize;

/// Appends `s` with its u16 length in front; `Invalid` if it is too long for a key.
pub(crate) fn push_str(buf: &mut Vec<u8>, s: &str) -> Result<(), StorageError> {
    let len = u16::try_from(s.len()).map_err(|_| {
        StorageError::Invalid(format!("a key part of {} bytes is too long", s.len()))
    })?;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Fails with `Invalid` when a key is too long for fjall.
pub(crate) fn check_key_len(key: &[u8]) -> Result<(), StorageError> {
    if key.len() > MAX_KEY_LEN {
        return Err(StorageError::Invalid(format!(
            "a key of {} bytes is longer than the {MAX_KEY_LEN} bytes the engine stores",
            key.len()
        )));
    }
    Ok(())
}

// ---- event log ------------------------------------------------------------------------

/// A record's key in its partition's keyspace: the offset, big-endian, so keys sort by
/// offset and every append lands after all existing keys.
pub(crate) fn offset_key(offset: Offset) -> [u8; 8] {
    offset.to_be_bytes()
}

/// The offset a record key holds.
pub(crate) fn record_offset(key: &[u8]) -> Result<Offset, StorageError> {
    decode_u64(key, "record key")
}

/// Record value: `timestamp_ms (i64 BE) | key length (u32 BE) | key | value`.
pub(crate) fn encode_record_value(
    timestamp_ms: i64,
    key: &str,
    value: &[u8],
    headers: &[(String, Bytes)],
) -> Result<Vec<u8>, StorageError> {
    let too_long = |what: &str, len: usize| StorageError::Invalid(format!("{what} of {len} bytes"));
    if key.len() > MAX_KEY_LEN {
        return Err(too_long("a record key", key.len()));
    }
    // Keys are at most 64 KiB, so the length's top bit is free: it says headers follow.
    let mut key_len = key.len() as u32;
    if !headers.is_empty() {
        key_len |= HAS_HEADERS;
    }
    let mut out = Vec::with_capacity(14 + key.len() + value.len());
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(&key_len.to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    if !headers.is_empty() {
        let count = u16::try_from(headers.len()).map_err(|_| too_long("headers", headers.len()))?;
        out.extend_from_slice(&count.to_be_bytes());
        for (name, header) in headers {
            let name_len =
                u16::try_from(name.len()).map_err(|_| too_long("a header name", name.len()))?;
            let header_len = u32::try_from(header.len())
                .map_err(|_| too_long("a header value", header.len()))?;
            out.extend_from_slice(&name_len.to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&header_len.to_be_bytes());
            out.extend_from_slice(header);
        }
    }
    out.extend_from_slice(value);
    Ok(out)
}

/// The top bit of a stored key length: the record has headers (records written before
/// headers existed have it clear).
const HAS_HEADERS: u32 = 1 << 31;

/// A stored record: its timestamp, key, headers and value.
pub(crate) type StoredRecord<'a> = (i64, &'a str, Vec<(String, Bytes)>, &'a [u8]);

/// The parts of a stored record value.
pub(crate) fn decode_record_value(raw: &[u8]) -> Result<StoredRecord<'_>, StorageError> {
    let corrupt = || StorageError::Corrupt(format!("record value of {} bytes", raw.len()));
    let (timestamp, rest) = raw.split_first_chunk::<8>().ok_or_else(corrupt)?;
    let (key_len, rest) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let key_len = u32::from_be_bytes(*key_len);
    let has_headers = key_len & HAS_HEADERS != 0;
    let key_len = usize::try_from(key_len & !HAS_HEADERS).map_err(|_| corrupt())?;
    if rest.len() < key_len {
        return Err(corrupt());
    }
    let (key, mut rest) = rest.split_at(key_len);
    let key = std::str::from_utf8(key).map_err(|_| corrupt())?;
    let mut headers = Vec::new();
    if has_headers {
        let (count, after) = rest.split_first_chunk::<2>().ok_or_else(corrupt)?;
        rest = after;
        for _ in 0..u16::from_be_bytes(*count) {
            let (name_len, after) = rest.split_first_chunk::<2>().ok_or_else(corrupt)?;
            let name_len = usize::from(u16::from_be_bytes(*name_len));
            if after.len() < name_len {
                return Err(corrupt());
            }
            let (name, after) = after.split_at(name_len);
            let (value_len, after) = after.split_first_chunk::<4>().ok_or_else(corrupt)?;
            let value_len =
                usize::try_from(u32::from_be_bytes(*value_len)).map_err(|_| corrupt())?;
            if after.len() < value_len {
                return Err(corrupt());
            }
            let (value, after) = after.split_at(value_len);
            let name = std::str::from_utf8(name).map_err(|_| corrupt())?;
            headers.push((name.to_owned(), Bytes::copy_from_slice(value)));
            rest = after;
        }
    }
    Ok((i64::from_be_bytes(*timestamp), key, headers, rest))
}

/// `len group | len topic | partition (u32 BE)`.
pub(crate) fn group_key(group: &str, topic: &str, partition: u32) -> Result<Vec<u8>, StorageError> {
    let mut key = Vec::with_capacity(4 + group.len() + topic.len() + 4);
    push_str(&mut key, group)?;
    push_str(&mut key, topic)?;
    key.extend_from_slice(&partition.to_be_bytes());
    check_key_len(&key)?;
    Ok(key)
}

pub(crate) fn decode_u64(raw: &[u8], what: &str) -> Result<u64, StorageError> {
    <[u8; 8]>::try_from(raw)
        .map(u64::from_be_bytes)
        .map_err(|_| StorageError::Corrupt(format!("{what} of {} bytes", raw.len())))
}

pub(crate) fn decode_u32(raw: &[u8], what: &str) -> Result<u32, StorageError> {
    <[u8; 4]>::try_from(raw)
        .map(u32::from_be_bytes)
        .map_err(|_| StorageError::Corrupt(format!("{what} of {} bytes", raw.len())))
}

// ---- read store -----------------------------------------------------------------------

/// `len name`: the prefix of every row of one table, or of every checkpoint of one
/// projection.
pub(crate) fn name_prefix(name: &str) -> Result<Vec<u8>, StorageError> {
    let mut key = Vec::with_capacity(2 + name.len());
    push_str(&mut key, name)?;
    Ok(key)
}

/// `len table | len partition`: the prefix of every row of one partition; the row key
/// is this prefix followed by the clustering key's raw bytes, so rows of a partition
/// sort by clustering key exactly as Rust's `String` order (UTF-8 byte order).
pub(crate) fn row_prefix(table: &str, partition: &str) -> Result<Vec<u8>, StorageError> {
    let mut key = Vec::with_capacity(4 + table.len() + partition.len() + 16);
    push_str(&mut key, table)?;
    push_str(&mut key, partition)?;
    Ok(key)
}

/// A row's key: its partition's [`row_prefix`], then the clustering key's bytes.
pub(crate) fn row_key(
    table: &str,
    partition: &str,
    clustering: &str,
) -> Result<Vec<u8>, StorageError> {
    let mut key = Vec::with_capacity(4 + table.len() + partition.len() + clustering.len());
    push_str(&mut key, table)?;
    push_str(&mut key, partition)?;
    key.extend_from_slice(clustering.as_bytes());
    check_key_len(&key)?;
    Ok(key)
}

/// The smallest key greater than every key starting with `prefix`, if there is one.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A row's stored state: its version and whether it is a tombstone.
pub(crate) type RowMeta = storage::Stamp;

const LIVE: u8 = 0;
const TOMBSTONE: u8 = 1;

/// Row value: `version (u64 BE) | flag (0 live, 1 tombstone) | value bytes`.
pub(crate) fn encode_row_value(meta: RowMeta, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + value.len());
    out.extend_from_slice(&meta.version.to_be_bytes());
    out.push(if meta.deleted { TOMBSTONE } else { LIVE });
    out.extend_from_slice(value);
    out
}

pub(crate) fn decode_row_value(raw: &[u8]) -> Result<(RowMeta, &[u8]), StorageError> {
    let corrupt = || StorageError::Corrupt(format!("row value of {} bytes", raw.len()));
    let (version, rest) = raw.split_first_chunk::<8>().ok_or_else(corrupt)?;
    let (flag, value) = rest.split_first().ok_or_else(corrupt)?;
    let deleted = match *flag {
        LIVE => false,
        TOMBSTONE => true,
        _ => return Err(corrupt()),
    };
    let meta = RowMeta {
        version: u64::from_be_bytes(*version),
        deleted,
    };
    Ok((meta, value))
}

/// `len projection | len topic | partition (u32 BE)`.
pub(crate) fn checkpoint_key(
    projection: &str,
    topic: &str,
    partition: u32,
) -> Result<Vec<u8>, StorageError> {
    // Same shape as a consumer group's key; kept apart for readability.
    group_key(projection, topic, partition)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_values_round_trip() -> Result<(), StorageError> {
        let raw = encode_record_value(-5, "drone-1", b"payload", &[])?;
        assert_eq!(
            decode_record_value(&raw)?,
            (-5, "drone-1", vec![], &b"payload"[..])
        );
        assert!(decode_record_value(&raw[..10]).is_err());
        let headers = vec![
            ("writer".to_owned(), Bytes::from_static(b"w-1")),
            ("marker".to_owned(), Bytes::from_static(b"1")),
        ];
        let raw = encode_record_value(7, "k", b"v", &headers)?;
        assert_eq!(decode_record_value(&raw)?, (7, "k", headers, &b"v"[..]));
        for cut in 12..raw.len() - 1 {
            assert!(
                decode_record_value(&raw[..cut]).is_err() || cut >= raw.len() - 1,
                "{cut}"
            );
        }
        Ok(())
    }

    #[test]
    fn record_keys_sort_by_offset() -> Result<(), StorageError> {
        assert!(offset_key(255) < offset_key(256));
        assert!(offset_key(u64::from(u32::MAX)) < offset_key(u64::from(u32::MAX) + 1));
        assert_eq!(record_offset(&offset_key(42))?, 42);
        assert!(record_offset(b"short").is_err());
        Ok(())
    }

    #[test]
    fn row_keys_cannot_collide_across_tables_and_partitions() -> Result<(), StorageError> {
        let a = row_key("ab", "c", "d")?;
        let b = row_key("a", "bc", "d")?;
        assert_ne!(a, b);
        assert!(!row_key("t", "p2", "")?.starts_with(&row_prefix("t", "p")?));
        Ok(())
    }

    #[test]
    fn row_values_round_trip() -> Result<(), StorageError> {
        let meta = RowMeta {
            version: 7,
            deleted: true,
        };
        let raw = encode_row_value(meta, b"x");
        assert_eq!(decode_row_value(&raw)?, (meta, &b"x"[..]));
        Ok(())
    }

    #[test]
    fn prefix_end_skips_trailing_ff() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
    }
}
