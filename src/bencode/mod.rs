//! Bencode (BEP 3): a zero-copy decoder and an encoder.
//!
//! The decoder never copies a string: every [`Value`] borrows the input and knows the exact
//! byte span it was decoded from, so a caller can hash the raw bytes of a sub-value (the
//! info hash is the SHA-1 of the `info` dictionary's span, never of a re-encoding).
//!
//! Input is hostile until checked. The decoder:
//! - rejects what BEP 3 forbids: leading zeros (`i03e`, `03:abc`), negative zero (`i-0e`),
//!   negative or absurd string lengths, non-string dictionary keys, trailing data, and
//!   duplicate dictionary keys (which would let two readers see two different values);
//! - bounds recursion by [`DecodeOptions::max_depth`] and checks every claimed length against
//!   the bytes actually left, so no input can make it recurse or allocate without limit:
//!   every element of a list or dictionary consumes at least two input bytes, so the vectors
//!   it builds are bounded by the input length;
//! - reports every error with what went wrong and the byte offset where it did.
//!
//! Unsorted dictionary keys are accepted by default (real .torrent files have them, and
//! libtorrent and Transmission accept them); [`DecodeOptions::strict_key_order`] refuses them.
//!
//! This module does no I/O.

mod encode;

pub use encode::{encode_value, Encoder, OwnedValue};

use std::fmt;
use std::ops::Range;

/// Nesting depth allowed by [`decode`] (libtorrent's default limit is 100).
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// A decoded value: what it is, and where in the input it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value<'a> {
    /// The bytes this value was decoded from, exactly as they appeared in the input.
    pub raw: &'a [u8],
    /// Offset of `raw` within the whole input.
    pub start: usize,
    /// The value itself.
    pub kind: Kind<'a>,
}

/// The four bencode types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// `i<n>e`, a signed 64-bit integer.
    Int(i64),
    /// `<len>:<bytes>`, a byte string (not necessarily UTF-8).
    Bytes(&'a [u8]),
    /// `l...e`.
    List(Vec<Value<'a>>),
    /// `d...e`, entries in input order; keys are unique.
    Dict(Vec<(&'a [u8], Value<'a>)>),
}

impl<'a> Value<'a> {
    /// The byte range of this value in the input it was decoded from.
    pub fn span(&self) -> Range<usize> {
        self.start..self.start + self.raw.len()
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self.kind {
            Kind::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.kind {
            Kind::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The byte string as UTF-8, if this is a byte string holding valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The list elements, if this is a list.
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match &self.kind {
            Kind::List(l) => Some(l),
            _ => None,
        }
    }

    /// The dictionary entries, if this is a dictionary.
    pub fn as_dict(&self) -> Option<&[(&'a [u8], Value<'a>)]> {
        match &self.kind {
            Kind::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Looks up `key` if this is a dictionary.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        self.as_dict()?
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// A short name of this value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Int(_) => "integer",
            Kind::Bytes(_) => "string",
            Kind::List(_) => "list",
            Kind::Dict(_) => "dictionary",
        }
    }
}

/// What was wrong with the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input ended inside a value.
    UnexpectedEof,
    /// A byte that cannot start a value (not `i`, `l`, `d` or a digit).
    UnexpectedByte(u8),
    /// An integer with no digits (`ie`, `i-e`).
    EmptyInteger,
    /// An integer or length with a leading zero (`i03e`, `03:abc`).
    LeadingZero,
    /// `i-0e`.
    NegativeZero,
    /// A string length with a minus sign.
    NegativeLength,
    /// A non-digit inside an integer or a string length.
    InvalidDigit(u8),
    /// An integer that does not fit in 64 bits.
    IntegerOverflow,
    /// A string length larger than the rest of the input.
    LengthExceedsInput,
    /// A dictionary key that is not a byte string.
    NonStringKey,
    /// The same key twice in one dictionary.
    DuplicateKey,
    /// Keys not in sorted order (only with [`DecodeOptions::strict_key_order`]).
    UnsortedKeys,
    /// Nesting deeper than [`DecodeOptions::max_depth`].
    TooDeep,
    /// Bytes left after the top-level value.
    TrailingData,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::UnexpectedEof => write!(f, "unexpected end of input"),
            ErrorKind::UnexpectedByte(b) => write!(f, "unexpected byte {}", show_byte(*b)),
            ErrorKind::EmptyInteger => write!(f, "integer without digits"),
            ErrorKind::LeadingZero => write!(f, "number with a leading zero"),
            ErrorKind::NegativeZero => write!(f, "negative zero"),
            ErrorKind::NegativeLength => write!(f, "negative string length"),
            ErrorKind::InvalidDigit(b) => write!(f, "invalid digit {}", show_byte(*b)),
            ErrorKind::IntegerOverflow => write!(f, "integer does not fit in 64 bits"),
            ErrorKind::LengthExceedsInput => write!(f, "string length exceeds the input"),
            ErrorKind::NonStringKey => write!(f, "dictionary key is not a string"),
            ErrorKind::DuplicateKey => write!(f, "duplicate dictionary key"),
            ErrorKind::UnsortedKeys => write!(f, "dictionary keys are not sorted"),
            ErrorKind::TooDeep => write!(f, "nesting too deep"),
            ErrorKind::TrailingData => write!(f, "trailing data after the value"),
        }
    }
}

fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        format!("0x{b:02x}")
    }
}

/// A decoding error: what, and at which byte offset of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// What was wrong.
    pub kind: ErrorKind,
    /// Byte offset in the input where the problem was found.
    pub offset: usize,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bencode: {} at byte {}", self.kind, self.offset)
    }
}

impl std::error::Error for DecodeError {}

/// Decoder settings.
#[derive(Clone, Copy, Debug)]
pub struct DecodeOptions {
    /// Deepest nesting of lists and dictionaries allowed (the top level is depth 1).
    pub max_depth: usize,
    /// Refuse dictionaries whose keys are not in strictly increasing byte order.
    pub strict_key_order: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_depth: DEFAULT_MAX_DEPTH,
            strict_key_order: false,
        }
    }
}

/// Decodes exactly one value that spans the whole input.
pub fn decode(input: &[u8]) -> Result<Value<'_>, DecodeError> {
    decode_with(input, DecodeOptions::default())
}

/// Decodes exactly one value that spans the whole input, with explicit options.
pub fn decode_with(input: &[u8], opts: DecodeOptions) -> Result<Value<'_>, DecodeError> {
    let (value, end) = decode_prefix_with(input, opts)?;
    if end != input.len() {
        return Err(DecodeError {
            kind: ErrorKind::TrailingData,
            offset: end,
        });
    }
    Ok(value)
}

/// Decodes one value from the start of `input`; returns it and the offset just past it.
/// Bytes after the value are left alone (BEP 10 and BEP 9 messages carry data after a dict).
pub fn decode_prefix(input: &[u8]) -> Result<(Value<'_>, usize), DecodeError> {
    decode_prefix_with(input, DecodeOptions::default())
}

/// [`decode_prefix`] with explicit options.
pub fn decode_prefix_with(
    input: &[u8],
    opts: DecodeOptions,
) -> Result<(Value<'_>, usize), DecodeError> {
    let mut d = Decoder {
        input,
        pos: 0,
        opts,
    };
    let v = d.value(1)?;
    Ok((v, d.pos))
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    opts: DecodeOptions,
}

impl<'a> Decoder<'a> {
    fn err<T>(&self, kind: ErrorKind, offset: usize) -> Result<T, DecodeError> {
        Err(DecodeError { kind, offset })
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        match self.input.get(self.pos) {
            Some(&b) => Ok(b),
            None => self.err(ErrorKind::UnexpectedEof, self.pos),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, DecodeError> {
        let start = self.pos;
        let kind = match self.peek()? {
            b'i' => {
                self.pos += 1;
                Kind::Int(self.integer(b'e')?)
            }
            b'0'..=b'9' => Kind::Bytes(self.string()?),
            b'-' => return self.err(ErrorKind::NegativeLength, start),
            b'l' => {
                if depth > self.opts.max_depth {
                    return self.err(ErrorKind::TooDeep, start);
                }
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Kind::List(items)
            }
            b'd' => {
                if depth > self.opts.max_depth {
                    return self.err(ErrorKind::TooDeep, start);
                }
                self.pos += 1;
                self.dict(depth)?
            }
            other => return self.err(ErrorKind::UnexpectedByte(other), start),
        };
        Ok(Value {
            raw: &self.input[start..self.pos],
            start,
            kind,
        })
    }

    fn dict(&mut self, depth: usize) -> Result<Kind<'a>, DecodeError> {
        let mut entries: Vec<(&'a [u8], Value<'a>)> = Vec::new();
        let mut sorted = true;
        // Offsets of keys, for reporting a duplicate where it appears.
        let mut key_offsets: Vec<usize> = Vec::new();
        while self.peek()? != b'e' {
            let key_at = self.pos;
            if !self.peek()?.is_ascii_digit() {
                return self.err(ErrorKind::NonStringKey, key_at);
            }
            let key = self.string()?;
            if let Some((prev, _)) = entries.last() {
                if key <= *prev {
                    if key == *prev {
                        return self.err(ErrorKind::DuplicateKey, key_at);
                    }
                    if self.opts.strict_key_order {
                        return self.err(ErrorKind::UnsortedKeys, key_at);
                    }
                    sorted = false;
                }
            }
            let value = self.value(depth + 1)?;
            entries.push((key, value));
            key_offsets.push(key_at);
        }
        self.pos += 1;
        if !sorted {
            // Unsorted input: find duplicates by sorting indices (O(n log n), bounded by input).
            let mut idx: Vec<usize> = (0..entries.len()).collect();
            idx.sort_by(|&a, &b| entries[a].0.cmp(entries[b].0).then(a.cmp(&b)));
            for w in idx.windows(2) {
                if entries[w[0]].0 == entries[w[1]].0 {
                    return self.err(ErrorKind::DuplicateKey, key_offsets[w[1]]);
                }
            }
        }
        Ok(Kind::Dict(entries))
    }

    /// Parses digits up to `end` (the `i` already consumed for integers).
    fn integer(&mut self, end: u8) -> Result<i64, DecodeError> {
        let start = self.pos;
        let negative = self.peek()? == b'-';
        if negative {
            self.pos += 1;
        }
        let digits_at = self.pos;
        let mut magnitude: u64 = 0;
        loop {
            let b = self.peek()?;
            if b == end {
                break;
            }
            if !b.is_ascii_digit() {
                return self.err(ErrorKind::InvalidDigit(b), self.pos);
            }
            magnitude = match magnitude
                .checked_mul(10)
                .and_then(|m| m.checked_add(u64::from(b - b'0')))
            {
                Some(m) => m,
                None => return self.err(ErrorKind::IntegerOverflow, start),
            };
            self.pos += 1;
        }
        let ndigits = self.pos - digits_at;
        if ndigits == 0 {
            return self.err(ErrorKind::EmptyInteger, start);
        }
        if self.input[digits_at] == b'0' && ndigits > 1 {
            return self.err(ErrorKind::LeadingZero, digits_at);
        }
        if negative && magnitude == 0 {
            return self.err(ErrorKind::NegativeZero, start);
        }
        self.pos += 1; // the terminator
        if negative {
            if magnitude > i64::MAX as u64 + 1 {
                return self.err(ErrorKind::IntegerOverflow, start);
            }
            Ok((magnitude as i64).wrapping_neg())
        } else {
            i64::try_from(magnitude).or_else(|_| self.err(ErrorKind::IntegerOverflow, start))
        }
    }

    fn string(&mut self) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        let len = self.integer(b':')?;
        let len = match usize::try_from(len) {
            Ok(l) => l,
            Err(_) => return self.err(ErrorKind::NegativeLength, start),
        };
        if len > self.input.len() - self.pos {
            return self.err(ErrorKind::LengthExceedsInput, start);
        }
        let s = &self.input[self.pos..self.pos + len];
        self.pos += len;
        Ok(s)
    }
}

#[cfg(test)]
mod tests;
