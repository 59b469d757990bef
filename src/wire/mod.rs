//! The peer wire protocol codec (BEP 3), with the message ids real clients send: the fast
//! extension (BEP 6), the DHT `port` message (BEP 5) and the extension protocol (BEP 10).
//!
//! This module owns the bytes of a peer connection and nothing else:
//!
//! - [`Handshake`]: the 68-byte opening of every connection, its incremental decoder and the
//!   capability bits of its reserved bytes ([`ReservedBit`]);
//! - [`Message`]: one variant per message; [`Decoder`] turns a connection's receive buffer
//!   into messages, [`encode`] turns messages into bytes, and [`piece_header`] gives the
//!   13-byte header of a `piece` message for the zero-copy upload path (header and block are
//!   written with `writev`, the block never copied);
//! - [`extension_handshake`]: the payload of our BEP 10 extension handshake, which offers no
//!   extension and tells the peer how many requests it may queue with us (`reqq`).
//!
//! The decoder treats every peer as hostile. It reads the 4-byte length prefix first and
//! checks it against the largest legal message before it waits for, or reserves room for, a
//! single byte of body; the id byte then narrows the bound to that message's own size. No peer
//! can make a connection buffer more than the largest legal message for its torrent. "Need
//! more bytes" is `Ok(None)`, never an error; an error means the peer broke the protocol and
//! the connection must be closed.
//!
//! Payloads that can be large (`piece` blocks, `bitfield`s, `extended` payloads) are
//! [`bytes::Bytes`] split off the receive buffer, never copied.
//!
//! What this module must never do: touch a socket, read the clock, allocate in proportion to
//! a length a peer claims before that length passed its cap, or panic on any input. What it
//! leaves to the engine: whether a message is allowed now (fast-extension messages when BEP 6
//! was not negotiated, a `request` for a piece we do not have, a block longer than we serve),
//! which needs state this codec does not have.

mod decoder;
mod handshake;

pub use decoder::Decoder;
pub use handshake::{Handshake, ReservedBit, HANDSHAKE_LEN, PROTOCOL};

use std::fmt;

use bytes::{Bytes, BytesMut};

/// Largest payload of an `extended` message (BEP 10), not counting the id bytes.
///
/// BEP 10 handshakes are a few hundred bytes and `ut_metadata` pieces 16 KiB plus a small
/// dictionary; 1 MiB leaves room for anything a real client sends.
pub const MAX_EXTENDED_PAYLOAD: u32 = 1 << 20;

/// Length of the header of a `piece` message: length prefix, id, index and begin.
pub const PIECE_HEADER_LEN: usize = 13;

/// The message ids, as they appear on the wire after the length prefix.
pub mod id {
    /// `choke` (BEP 3).
    pub const CHOKE: u8 = 0;
    /// `unchoke` (BEP 3).
    pub const UNCHOKE: u8 = 1;
    /// `interested` (BEP 3).
    pub const INTERESTED: u8 = 2;
    /// `not interested` (BEP 3).
    pub const NOT_INTERESTED: u8 = 3;
    /// `have` (BEP 3).
    pub const HAVE: u8 = 4;
    /// `bitfield` (BEP 3).
    pub const BITFIELD: u8 = 5;
    /// `request` (BEP 3).
    pub const REQUEST: u8 = 6;
    /// `piece` (BEP 3).
    pub const PIECE: u8 = 7;
    /// `cancel` (BEP 3).
    pub const CANCEL: u8 = 8;
    /// `port` (BEP 5, DHT).
    pub const PORT: u8 = 9;
    /// `suggest piece` (BEP 6).
    pub const SUGGEST: u8 = 0x0D;
    /// `have all` (BEP 6).
    pub const HAVE_ALL: u8 = 0x0E;
    /// `have none` (BEP 6).
    pub const HAVE_NONE: u8 = 0x0F;
    /// `reject request` (BEP 6).
    pub const REJECT_REQUEST: u8 = 0x10;
    /// `allowed fast` (BEP 6).
    pub const ALLOWED_FAST: u8 = 0x11;
    /// `extended` (BEP 10).
    pub const EXTENDED: u8 = 20;
}

/// One peer wire message.
///
/// Indices, offsets and lengths are raw numbers as the peer sent them; the engine checks them
/// against its torrent's layout (`Layout::block_checked`). A `Bitfield` has already been
/// checked by the [`Decoder`] to be exactly the torrent's size with no spare bit set.
#[derive(Clone, PartialEq, Eq)]
pub enum Message {
    /// A length prefix of zero: no id, no payload.
    KeepAlive,
    /// The sender will not serve our requests.
    Choke,
    /// The sender will serve our requests.
    Unchoke,
    /// The sender wants pieces we have.
    Interested,
    /// The sender wants nothing we have.
    NotInterested,
    /// The sender has verified this piece.
    Have(u32),
    /// The pieces the sender has, one bit per piece, high bit of byte 0 first.
    Bitfield(Bytes),
    /// Asks for `length` bytes at offset `begin` of piece `index`.
    Request {
        /// Piece index.
        index: u32,
        /// Offset inside the piece.
        begin: u32,
        /// Number of bytes asked for.
        length: u32,
    },
    /// A block of data: the bytes at offset `begin` of piece `index`.
    Piece {
        /// Piece index.
        index: u32,
        /// Offset inside the piece.
        begin: u32,
        /// The data, split off the receive buffer without a copy.
        block: Bytes,
    },
    /// Withdraws an earlier `Request` with the same fields.
    Cancel {
        /// Piece index.
        index: u32,
        /// Offset inside the piece.
        begin: u32,
        /// Number of bytes that were asked for.
        length: u32,
    },
    /// The sender's DHT port (BEP 5).
    Port(u16),
    /// The sender suggests we download this piece (BEP 6).
    Suggest(u32),
    /// The sender has every piece (BEP 6).
    HaveAll,
    /// The sender has no piece (BEP 6).
    HaveNone,
    /// The sender will not serve this request (BEP 6).
    RejectRequest {
        /// Piece index.
        index: u32,
        /// Offset inside the piece.
        begin: u32,
        /// Number of bytes that were asked for.
        length: u32,
    },
    /// We may request this piece even while choked (BEP 6).
    AllowedFast(u32),
    /// An extension protocol message (BEP 10): `id` 0 is the extension handshake, other ids
    /// are the ones the receiver assigned in its handshake.
    Extended {
        /// The extended message id.
        id: u8,
        /// Everything after the extended id (usually bencode, sometimes followed by data).
        payload: Bytes,
    },
}

impl Message {
    /// The message id, or `None` for a keep-alive.
    pub fn id(&self) -> Option<u8> {
        Some(match self {
            Message::KeepAlive => return None,
            Message::Choke => id::CHOKE,
            Message::Unchoke => id::UNCHOKE,
            Message::Interested => id::INTERESTED,
            Message::NotInterested => id::NOT_INTERESTED,
            Message::Have(_) => id::HAVE,
            Message::Bitfield(_) => id::BITFIELD,
            Message::Request { .. } => id::REQUEST,
            Message::Piece { .. } => id::PIECE,
            Message::Cancel { .. } => id::CANCEL,
            Message::Port(_) => id::PORT,
            Message::Suggest(_) => id::SUGGEST,
            Message::HaveAll => id::HAVE_ALL,
            Message::HaveNone => id::HAVE_NONE,
            Message::RejectRequest { .. } => id::REJECT_REQUEST,
            Message::AllowedFast(_) => id::ALLOWED_FAST,
            Message::Extended { .. } => id::EXTENDED,
        })
    }

    /// Bytes this message takes on the wire, the 4-byte length prefix included.
    pub fn encoded_len(&self) -> usize {
        4 + match self {
            Message::KeepAlive => 0,
            Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => 1,
            Message::Port(_) => 3,
            Message::Have(_) | Message::Suggest(_) | Message::AllowedFast(_) => 5,
            Message::Request { .. } | Message::Cancel { .. } | Message::RejectRequest { .. } => 13,
            Message::Bitfield(bits) => 1 + bits.len(),
            Message::Piece { block, .. } => 9 + block.len(),
            Message::Extended { payload, .. } => 2 + payload.len(),
        }
    }

    /// A short name for logs and errors, as BEP 3 spells it.
    pub fn name(&self) -> &'static str {
        match self.id() {
            None => "keep-alive",
            Some(id) => id_name(id),
        }
    }
}

/// Payloads are shown by length only: a `Debug` of a `piece` must not print 16 KiB.
impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::KeepAlive => write!(f, "KeepAlive"),
            Message::Choke => write!(f, "Choke"),
            Message::Unchoke => write!(f, "Unchoke"),
            Message::Interested => write!(f, "Interested"),
            Message::NotInterested => write!(f, "NotInterested"),
            Message::Have(i) => write!(f, "Have({i})"),
            Message::Bitfield(b) => write!(f, "Bitfield(<{} bytes>)", b.len()),
            Message::Request {
                index,
                begin,
                length,
            } => {
                write!(
                    f,
                    "Request {{ index: {index}, begin: {begin}, length: {length} }}"
                )
            }
            Message::Piece {
                index,
                begin,
                block,
            } => write!(
                f,
                "Piece {{ index: {index}, begin: {begin}, block: <{} bytes> }}",
                block.len()
            ),
            Message::Cancel {
                index,
                begin,
                length,
            } => {
                write!(
                    f,
                    "Cancel {{ index: {index}, begin: {begin}, length: {length} }}"
                )
            }
            Message::Port(p) => write!(f, "Port({p})"),
            Message::Suggest(i) => write!(f, "Suggest({i})"),
            Message::HaveAll => write!(f, "HaveAll"),
            Message::HaveNone => write!(f, "HaveNone"),
            Message::RejectRequest {
                index,
                begin,
                length,
            } => write!(
                f,
                "RejectRequest {{ index: {index}, begin: {begin}, length: {length} }}"
            ),
            Message::AllowedFast(i) => write!(f, "AllowedFast({i})"),
            Message::Extended { id, payload } => {
                write!(
                    f,
                    "Extended {{ id: {id}, payload: <{} bytes> }}",
                    payload.len()
                )
            }
        }
    }
}

/// The name of a message id, or `"unknown"`.
fn id_name(id: u8) -> &'static str {
    match id {
        id::CHOKE => "choke",
        id::UNCHOKE => "unchoke",
        id::INTERESTED => "interested",
        id::NOT_INTERESTED => "not interested",
        id::HAVE => "have",
        id::BITFIELD => "bitfield",
        id::REQUEST => "request",
        id::PIECE => "piece",
        id::CANCEL => "cancel",
        id::PORT => "port",
        id::SUGGEST => "suggest piece",
        id::HAVE_ALL => "have all",
        id::HAVE_NONE => "have none",
        id::REJECT_REQUEST => "reject request",
        id::ALLOWED_FAST => "allowed fast",
        id::EXTENDED => "extended",
        _ => "unknown",
    }
}

/// Why a peer's bytes are not a valid handshake or message. Every one of these closes the
/// connection: the stream cannot be resynchronised after a framing error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The handshake's first byte (the protocol name length) is not 19.
    BadProtocolLength(u8),
    /// The handshake's protocol name is not "BitTorrent protocol".
    BadProtocolName,
    /// A length prefix larger than the largest legal message for this torrent.
    TooLong {
        /// The length the peer announced.
        len: u32,
        /// The largest length any message may have.
        max: u32,
    },
    /// A message id this client does not know.
    UnknownId(u8),
    /// A length that message `id` cannot have: a fixed-size message of another size, a
    /// bitfield not exactly one bit per piece, a piece without a block or with a block over
    /// the maximum, an extended message without its id or over [`MAX_EXTENDED_PAYLOAD`].
    BadLength {
        /// The message id.
        id: u8,
        /// The length the peer announced (id byte included).
        len: u32,
    },
    /// A bitfield with a bit set past the last piece (BEP 3: spare bits must be zero).
    BitfieldSpareBits,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::BadProtocolLength(n) => {
                write!(f, "handshake: protocol name length {n}, expected 19")
            }
            WireError::BadProtocolName => {
                write!(f, "handshake: protocol name is not \"BitTorrent protocol\"")
            }
            WireError::TooLong { len, max } => {
                write!(f, "message length {len} exceeds the maximum of {max}")
            }
            WireError::UnknownId(id) => write!(f, "unknown message id {id}"),
            WireError::BadLength { id, len } => {
                write!(
                    f,
                    "{} message (id {id}) with invalid length {len}",
                    id_name(*id)
                )
            }
            WireError::BitfieldSpareBits => write!(f, "bitfield has a spare bit set"),
        }
    }
}

impl std::error::Error for WireError {}

/// `n` as a length prefix.
///
/// # Panics
///
/// If `n` does not fit in 32 bits: no message we decode or build is that large.
fn len_u32(n: usize) -> u32 {
    u32::try_from(n).expect("message longer than 4 GiB") // NOTE(unwrap): payloads we hold are far below 4 GiB (decoded ones are capped; ours are blocks, bitfields, small dicts)
}

/// Appends the wire form of `msg` to `out`.
///
/// A `Piece` is copied into `out`: this is for tests and small messages. The upload path sends
/// [`piece_header`] followed by the block's own `Bytes` (`writev`), never copying the block.
///
/// # Panics
///
/// If a payload is longer than 4 GiB minus the header, which no legal message is.
pub fn encode(msg: &Message, out: &mut BytesMut) {
    // Everything but the variable payload is built on the stack and appended at once: one
    // capacity check instead of one per field.
    let mut head = [0u8; 17];
    let total = msg.encoded_len();
    head[0..4].copy_from_slice(&len_u32(total - 4).to_be_bytes());
    let mut n = 4;
    let mut put = |bytes: &[u8]| {
        head[n..n + bytes.len()].copy_from_slice(bytes);
        n += bytes.len();
    };
    if let Some(id) = msg.id() {
        put(&[id]);
    }
    let payload: &[u8] = match msg {
        Message::KeepAlive
        | Message::Choke
        | Message::Unchoke
        | Message::Interested
        | Message::NotInterested
        | Message::HaveAll
        | Message::HaveNone => &[],
        Message::Have(index) | Message::Suggest(index) | Message::AllowedFast(index) => {
            put(&index.to_be_bytes());
            &[]
        }
        Message::Request {
            index,
            begin,
            length,
        }
        | Message::Cancel {
            index,
            begin,
            length,
        }
        | Message::RejectRequest {
            index,
            begin,
            length,
        } => {
            put(&index.to_be_bytes());
            put(&begin.to_be_bytes());
            put(&length.to_be_bytes());
            &[]
        }
        Message::Port(port) => {
            put(&port.to_be_bytes());
            &[]
        }
        Message::Piece {
            index,
            begin,
            block,
        } => {
            put(&index.to_be_bytes());
            put(&begin.to_be_bytes());
            block
        }
        Message::Bitfield(bits) => bits,
        Message::Extended { id, payload } => {
            put(&[*id]);
            payload
        }
    };
    out.reserve(total);
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(payload);
}

/// The payload of our extension handshake (BEP 10: an `extended` message with id 0), sent to
/// peers whose handshake sets [`ReservedBit::EXTENSION_PROTOCOL`].
///
/// We offer no extension (`m` is empty), so a peer never sends us an extended message other
/// than its own handshake; the dictionary is there for `reqq`, the number of `request`s the
/// peer may have outstanding with us. Without it some clients pipeline without bound:
/// Transmission 3.00 keeps ten seconds' worth of its download rate in flight (thousands of
/// requests on a fast link), and requests past our queue's limit would be dropped unanswered
/// (BEP 3 gives a peer without the fast extension no way to reject one), stalling its
/// download. `v` names the client, as BEP 10 suggests.
pub fn extension_handshake(reqq: u32, version: &str) -> Bytes {
    let mut out = Vec::with_capacity(32 + version.len());
    // Keys in sorted order, as bencode requires.
    crate::bencode::Encoder::new(&mut out)
        .dict()
        .bytes(b"m")
        .dict()
        .end()
        .bytes(b"reqq")
        .int(i64::from(reqq))
        .bytes(b"v")
        .bytes(version.as_bytes())
        .end();
    Bytes::from(out)
}

/// The 13-byte header of a `piece` message carrying a block of `len` bytes at offset `begin`
/// of piece `index`. Write it, then the block's `Bytes`, with one `writev`: the block is never
/// copied.
///
/// # Panics
///
/// If `len` is over `u32::MAX - 9`; blocks are at most `MAX_BLOCK_LEN` (128 KiB).
pub fn piece_header(index: u32, begin: u32, len: u32) -> [u8; PIECE_HEADER_LEN] {
    let msg_len = len.checked_add(9).expect("block longer than 4 GiB"); // NOTE(unwrap): blocks come from a Layout and are at most MAX_BLOCK_LEN
    let mut h = [0u8; PIECE_HEADER_LEN];
    h[0..4].copy_from_slice(&msg_len.to_be_bytes());
    h[4] = id::PIECE;
    h[5..9].copy_from_slice(&index.to_be_bytes());
    h[9..13].copy_from_slice(&begin.to_be_bytes());
    h
}

#[cfg(test)]
pub(crate) mod captured;
#[cfg(test)]
mod tests;
