//! The encoder: an owned value tree whose dictionaries are always sorted, and a small
//! streaming [`Encoder`] for writers that know their keys are already in order.

use std::collections::BTreeMap;

use super::{Kind, Value};

/// An owned bencode value. Dictionary keys live in a `BTreeMap`, so encoding always emits
/// them in the sorted order BEP 3 requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedValue {
    /// An integer.
    Int(i64),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<OwnedValue>),
    /// A dictionary.
    Dict(BTreeMap<Vec<u8>, OwnedValue>),
}

impl OwnedValue {
    /// A byte string from anything byte-like.
    pub fn bytes(b: impl AsRef<[u8]>) -> Self {
        OwnedValue::Bytes(b.as_ref().to_vec())
    }

    /// The canonical bencoding of this value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the canonical bencoding of this value to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut e = Encoder::new(out);
        e.owned(self);
    }

    /// Copies a decoded value into an owned one.
    pub fn from_value(v: &Value<'_>) -> Self {
        match &v.kind {
            Kind::Int(i) => OwnedValue::Int(*i),
            Kind::Bytes(b) => OwnedValue::Bytes(b.to_vec()),
            Kind::List(l) => OwnedValue::List(l.iter().map(OwnedValue::from_value).collect()),
            Kind::Dict(d) => OwnedValue::Dict(
                d.iter()
                    .map(|(k, v)| (k.to_vec(), OwnedValue::from_value(v)))
                    .collect(),
            ),
        }
    }
}

/// Writes bencode tokens into a byte vector.
///
/// The caller is responsible for emitting dictionary keys in sorted order; [`OwnedValue`]
/// does that for you.
#[derive(Debug)]
pub struct Encoder<'o> {
    out: &'o mut Vec<u8>,
}

impl<'o> Encoder<'o> {
    /// An encoder appending to `out`.
    pub fn new(out: &'o mut Vec<u8>) -> Self {
        Encoder { out }
    }

    /// `i<n>e`.
    pub fn int(&mut self, n: i64) -> &mut Self {
        self.out.push(b'i');
        self.out.extend_from_slice(n.to_string().as_bytes());
        self.out.push(b'e');
        self
    }

    /// `<len>:<bytes>`.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.out.extend_from_slice(b.len().to_string().as_bytes());
        self.out.push(b':');
        self.out.extend_from_slice(b);
        self
    }

    /// Starts a list; close it with [`Encoder::end`].
    pub fn list(&mut self) -> &mut Self {
        self.out.push(b'l');
        self
    }

    /// Starts a dictionary; close it with [`Encoder::end`].
    pub fn dict(&mut self) -> &mut Self {
        self.out.push(b'd');
        self
    }

    /// Ends the innermost list or dictionary.
    pub fn end(&mut self) -> &mut Self {
        self.out.push(b'e');
        self
    }

    /// Copies already-encoded bytes (for example a value's `raw` span) verbatim.
    pub fn raw(&mut self, encoded: &[u8]) -> &mut Self {
        self.out.extend_from_slice(encoded);
        self
    }

    /// Encodes an owned value.
    pub fn owned(&mut self, v: &OwnedValue) -> &mut Self {
        match v {
            OwnedValue::Int(i) => self.int(*i),
            OwnedValue::Bytes(b) => self.bytes(b),
            OwnedValue::List(l) => {
                self.list();
                for item in l {
                    self.owned(item);
                }
                self.end()
            }
            OwnedValue::Dict(d) => {
                self.dict();
                for (k, v) in d {
                    self.bytes(k);
                    self.owned(v);
                }
                self.end()
            }
        }
    }
}

/// Encodes a decoded value, keeping its dictionary entries in the order they were decoded.
/// For canonical input this reproduces the input exactly.
pub fn encode_value(v: &Value<'_>) -> Vec<u8> {
    fn go(e: &mut Encoder<'_>, v: &Value<'_>) {
        match &v.kind {
            Kind::Int(i) => {
                e.int(*i);
            }
            Kind::Bytes(b) => {
                e.bytes(b);
            }
            Kind::List(l) => {
                e.list();
                for item in l {
                    go(e, item);
                }
                e.end();
            }
            Kind::Dict(d) => {
                e.dict();
                for (k, v) in d {
                    e.bytes(k);
                    go(e, v);
                }
                e.end();
            }
        }
    }
    let mut out = Vec::with_capacity(v.raw.len());
    go(&mut Encoder::new(&mut out), v);
    out
}
