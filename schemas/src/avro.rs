//! The Avro binary encoding (specification, "Binary Encoding") of the types the schemas
//! use, for the code `build.rs` generates: zig-zag varints, little-endian floats,
//! length-prefixed strings, union and enum indexes, blocked arrays.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A value that does not fit its schema (e.g. a `u64` beyond Avro's `long`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EncodeError(pub String);

/// A datum that is not a valid encoding of its schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

impl DecodeError {
    fn truncated() -> DecodeError {
        DecodeError("truncated: the datum ends early".into())
    }

    pub(crate) fn union_index(path: &str, index: i64) -> DecodeError {
        DecodeError(format!("{path}: union branch {index} does not exist"))
    }

    pub(crate) fn enum_index(name: &str, index: i64) -> DecodeError {
        DecodeError(format!("{name}: enum symbol {index} does not exist"))
    }
}

/// A type with a generated Avro record encoding.
pub trait AvroRecord: Sized {
    fn write_avro(&self, w: &mut Writer) -> Result<(), EncodeError>;
    fn read_avro(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

/// Appends an encoding to a buffer.
#[derive(Debug, Default)]
pub struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub fn with_capacity(capacity: usize) -> Writer {
        Writer {
            buf: Vec::with_capacity(capacity),
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn long(&mut self, v: i64) {
        let mut n = ((v << 1) ^ (v >> 63)) as u64;
        while n >= 0x80 {
            self.buf.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.buf.push(n as u8);
    }

    pub fn int(&mut self, v: i32) {
        self.long(i64::from(v));
    }

    pub fn unsigned_long(&mut self, v: u64, path: &str) -> Result<(), EncodeError> {
        let v = i64::try_from(v)
            .map_err(|_| EncodeError(format!("{path} {v} does not fit an Avro long")))?;
        self.long(v);
        Ok(())
    }

    pub fn boolean(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    pub fn float(&mut self, v: f32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn double(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn bytes(&mut self, v: &[u8]) {
        // A slice's length always fits i64.
        self.long(v.len() as i64);
        self.buf.extend_from_slice(v);
    }

    pub fn string(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    /// The `uuid` logical type: the hyphenated lowercase text.
    pub fn uuid(&mut self, v: &Uuid) {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        self.string(v.hyphenated().encode_lower(&mut text));
    }

    /// `timestamp-micros`: microseconds since the epoch (sub-microseconds are dropped).
    pub fn timestamp_micros(&mut self, v: &DateTime<Utc>) {
        self.long(v.timestamp_micros());
    }

    pub fn union_index(&mut self, index: i64) {
        self.long(index);
    }

    pub fn enum_index(&mut self, index: i64) {
        self.long(index);
    }

    /// Starts an array of `len` items: one block (none when empty).
    pub fn array_len(&mut self, len: usize) {
        if len > 0 {
            self.long(len as i64);
        }
    }

    /// Ends an array: the empty block.
    pub fn array_end(&mut self) {
        self.long(0);
    }
}

/// Reads an encoding from the front of a slice.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    /// What has not been read.
    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::truncated());
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    pub fn long(&mut self) -> Result<i64, DecodeError> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let [byte] = self.take(1)? else {
                return Err(DecodeError::truncated());
            };
            let byte = *byte;
            // The tenth byte may only hold the top bit.
            if shift == 63 && byte > 1 {
                return Err(DecodeError("varint overflows a long".into()));
            }
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(((n >> 1) as i64) ^ -((n & 1) as i64));
            }
        }
        Err(DecodeError("varint overflows a long".into()))
    }

    pub fn int(&mut self) -> Result<i32, DecodeError> {
        let v = self.long()?;
        i32::try_from(v).map_err(|_| DecodeError(format!("{v} does not fit an Avro int")))
    }

    pub fn unsigned_long(&mut self, path: &str) -> Result<u64, DecodeError> {
        let v = self.long()?;
        u64::try_from(v).map_err(|_| DecodeError(format!("{path} is negative ({v})")))
    }

    pub fn boolean(&mut self) -> Result<bool, DecodeError> {
        match self.take(1)? {
            [0] => Ok(false),
            [1] => Ok(true),
            other => Err(DecodeError(format!("{other:?} is not a boolean byte"))),
        }
    }

    pub fn float(&mut self) -> Result<f32, DecodeError> {
        let mut raw = [0u8; 4];
        raw.copy_from_slice(self.take(4)?);
        Ok(f32::from_le_bytes(raw))
    }

    pub fn double(&mut self) -> Result<f64, DecodeError> {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(f64::from_le_bytes(raw))
    }

    fn length(&mut self) -> Result<usize, DecodeError> {
        let len = self.long()?;
        usize::try_from(len).map_err(|_| DecodeError(format!("negative length {len}")))
    }

    pub fn byte_slice(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.length()?;
        self.take(len)
    }

    pub fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        Ok(self.byte_slice()?.to_vec())
    }

    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.byte_slice()?)
            .map_err(|e| DecodeError(format!("string is not UTF-8: {e}")))
    }

    pub fn string(&mut self) -> Result<String, DecodeError> {
        self.str().map(str::to_owned)
    }

    pub fn uuid(&mut self) -> Result<Uuid, DecodeError> {
        let text = self.str()?;
        Uuid::try_parse(text).map_err(|e| DecodeError(format!("bad uuid {text:?}: {e}")))
    }

    pub fn timestamp_micros(&mut self) -> Result<DateTime<Utc>, DecodeError> {
        let us = self.long()?;
        DateTime::from_timestamp_micros(us)
            .ok_or_else(|| DecodeError(format!("timestamp {us} µs is out of range")))
    }

    pub fn union_index(&mut self) -> Result<i64, DecodeError> {
        self.long()
    }

    pub fn enum_index(&mut self) -> Result<i64, DecodeError> {
        self.long()
    }

    /// The item count of the next block of an array, `None` at its end. A negative count
    /// is followed by the block's size in bytes (which this reader does not need).
    pub fn array_block(&mut self) -> Result<Option<usize>, DecodeError> {
        let count = self.long()?;
        if count == 0 {
            return Ok(None);
        }
        if count < 0 {
            self.length()?;
        }
        let count = usize::try_from(count.unsigned_abs())
            .map_err(|_| DecodeError(format!("array block of {count} items")))?;
        // Every item takes at least one byte except null: refuse counts the rest cannot hold,
        // so a corrupt count cannot make the reader reserve gigabytes.
        if count > self.bytes.len().max(1) * 8 {
            return Err(DecodeError(format!(
                "array block of {count} items in {} bytes",
                self.bytes.len()
            )));
        }
        Ok(Some(count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip_long(v: i64) -> i64 {
        let mut w = Writer::default();
        w.long(v);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        let back = r.long().expect("decodes");
        assert!(r.rest().is_empty());
        back
    }

    #[test]
    fn longs_round_trip_at_the_edges() {
        for v in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            i64::from(i32::MAX),
            i64::MAX,
            i64::MIN,
        ] {
            assert_eq!(round_trip_long(v), v);
        }
    }

    #[test]
    fn zig_zag_matches_the_specification() {
        // Examples from the Avro specification.
        for (v, bytes) in [
            (0i64, vec![0x00u8]),
            (-1, vec![0x01]),
            (1, vec![0x02]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 0x01]),
        ] {
            let mut w = Writer::default();
            w.long(v);
            assert_eq!(w.into_bytes(), bytes, "{v}");
        }
    }

    #[test]
    fn an_overlong_varint_is_an_error() {
        let bytes = [0xffu8; 11];
        assert!(Reader::new(&bytes).long().is_err());
    }

    #[test]
    fn a_huge_array_count_is_refused() {
        let mut w = Writer::default();
        w.long(1 << 40);
        let bytes = w.into_bytes();
        assert!(Reader::new(&bytes).array_block().is_err());
    }
}
