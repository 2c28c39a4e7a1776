//! Netlink attributes (NLAs) at the byte level: a writer that appends them, with nesting, and a
//! checked reader over a buffer of them.
//!
//! Layout (`include/uapi/linux/netlink.h`): a 4-byte header (`u16` length including the header,
//! `u16` type with `NLA_F_NESTED` on nests), the value, zero padding to 4 bytes. Integers are in
//! host byte order, except where the kernel says otherwise (ports inside `sockaddr`).

use netlink_packet_utils::nla::{NLA_F_NESTED, NLA_HEADER_SIZE, NlaBuffer, NlasIterator};

/// Why attributes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NlaError {
    #[error("malformed netlink attributes: {0}")]
    Malformed(String),
    #[error("attribute {kind} has {len} bytes, expected {expected}")]
    Length {
        kind: u16,
        len: usize,
        expected: &'static str,
    },
}

/// Rounds a length up to the attribute alignment.
pub const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// The encoded size of an attribute whose value has `value_len` bytes.
pub const fn attr_size(value_len: usize) -> usize {
    align(NLA_HEADER_SIZE + value_len)
}

/// Appends attributes to a byte buffer.
#[derive(Debug, Default, Clone)]
pub struct NlaWriter {
    buf: Vec<u8>,
}

impl NlaWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn put(&mut self, kind: u16, value: &[u8]) {
        let start = self.open(kind, false);
        self.buf.extend_from_slice(value);
        self.close(start);
    }

    pub fn put_u8(&mut self, kind: u16, value: u8) {
        self.put(kind, &[value]);
    }

    pub fn put_u16(&mut self, kind: u16, value: u16) {
        self.put(kind, &value.to_ne_bytes());
    }

    pub fn put_u32(&mut self, kind: u16, value: u32) {
        self.put(kind, &value.to_ne_bytes());
    }

    pub fn put_u64(&mut self, kind: u16, value: u64) {
        self.put(kind, &value.to_ne_bytes());
    }

    /// A NUL-terminated string (`NLA_NUL_STRING`).
    pub fn put_str(&mut self, kind: u16, value: &str) {
        let start = self.open(kind, false);
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
        self.close(start);
    }

    /// Starts a nested attribute; pass the returned offset to [`NlaWriter::end_nest`].
    pub fn begin_nest(&mut self, kind: u16) -> usize {
        self.open(kind, true)
    }

    pub fn end_nest(&mut self, start: usize) {
        self.close(start);
    }

    /// Appends attributes encoded by another writer (a nest's content built on its own).
    pub fn extend(&mut self, encoded: &[u8]) {
        self.buf.extend_from_slice(encoded);
    }

    /// Drops everything written after `len` bytes (an unfinished nest that did not fit).
    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
    }

    fn open(&mut self, kind: u16, nested: bool) -> usize {
        let start = self.buf.len();
        let kind = if nested { kind | NLA_F_NESTED } else { kind };
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        start
    }

    fn close(&mut self, start: usize) {
        // Attribute lengths are u16 by the format; callers keep messages under a page.
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self.buf.resize(align(self.buf.len()), 0);
    }
}

/// One attribute read from a buffer.
#[derive(Debug, Clone, Copy)]
pub struct Attr<'a> {
    /// The type without the nested and byte-order flags.
    pub kind: u16,
    pub value: &'a [u8],
}

impl<'a> Attr<'a> {
    fn exact<const N: usize>(&self, expected: &'static str) -> Result<[u8; N], NlaError> {
        self.value.try_into().map_err(|_| NlaError::Length {
            kind: self.kind,
            len: self.value.len(),
            expected,
        })
    }

    pub fn u8(&self) -> Result<u8, NlaError> {
        Ok(self.exact::<1>("1")?[0])
    }

    pub fn u16(&self) -> Result<u16, NlaError> {
        Ok(u16::from_ne_bytes(self.exact("2")?))
    }

    pub fn u32(&self) -> Result<u32, NlaError> {
        Ok(u32::from_ne_bytes(self.exact("4")?))
    }

    pub fn u64(&self) -> Result<u64, NlaError> {
        Ok(u64::from_ne_bytes(self.exact("8")?))
    }

    pub fn key(&self) -> Result<[u8; 32], NlaError> {
        self.exact("32")
    }

    /// A string with or without its NUL terminator.
    pub fn string(&self) -> String {
        let bytes = self.value.split(|b| *b == 0).next().unwrap_or_default();
        String::from_utf8_lossy(bytes).into_owned()
    }

    /// The attributes nested inside this one.
    pub fn nested(&self) -> Result<Vec<Attr<'a>>, NlaError> {
        parse(self.value)
    }
}

/// Every attribute of `buf`, checked against the buffer's length.
pub fn parse(buf: &[u8]) -> Result<Vec<Attr<'_>>, NlaError> {
    NlasIterator::new(buf)
        .map(|nla| {
            let nla: NlaBuffer<&[u8]> = nla.map_err(|e| NlaError::Malformed(e.to_string()))?;
            let (kind, len) = (nla.kind(), usize::from(nla.length()));
            // `new_checked` made sure the buffer holds `len` bytes and `len` covers the header.
            let whole: &[u8] = nla.into_inner();
            Ok(Attr {
                kind,
                value: &whole[NLA_HEADER_SIZE..len],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_aligned_attributes_and_nests_that_read_back() {
        let mut w = NlaWriter::new();
        w.put_str(2, "awg0");
        let nest = w.begin_nest(8);
        let inner = w.begin_nest(0);
        w.put_u16(1, 2);
        w.put_u8(3, 32);
        w.end_nest(inner);
        w.end_nest(nest);
        w.put_u64(10, u64::MAX - 1);
        let bytes = w.into_bytes();
        assert_eq!(bytes.len() % 4, 0);
        // "awg0\0" is 5 bytes: header 4 + 5 = 9, padded to 12.
        assert_eq!(&bytes[..4], &[9, 0, 2, 0]);

        let attrs = parse(&bytes).unwrap();
        assert_eq!(attrs.len(), 3);
        assert_eq!((attrs[0].kind, attrs[0].string()), (2, "awg0".to_string()));
        assert_eq!(attrs[1].kind, 8, "the nested flag is not part of the type");
        let peers = attrs[1].nested().unwrap();
        let fields = peers[0].nested().unwrap();
        assert_eq!(fields[0].u16().unwrap(), 2);
        assert_eq!(fields[1].u8().unwrap(), 32);
        assert_eq!(attrs[2].u64().unwrap(), u64::MAX - 1);
    }

    #[test]
    fn wrong_lengths_and_truncated_buffers_are_errors() {
        let mut w = NlaWriter::new();
        w.put_u16(6, 51820);
        let bytes = w.into_bytes();
        let attr = parse(&bytes).unwrap()[0];
        assert!(matches!(attr.u32(), Err(NlaError::Length { kind: 6, .. })));
        assert_eq!(attr.u16().unwrap(), 51820);
        assert!(parse(&bytes[..5]).is_err(), "a cut attribute");
    }
}
