//! The incremental message decoder: a connection's receive buffer in, whole messages out.
//! Length first, then id, then body; every bound is checked before the body is waited for.

use bytes::{Buf, BytesMut};

use super::{id, Message, WireError, MAX_EXTENDED_PAYLOAD};
use crate::metainfo::MAX_BLOCK_LEN;

/// Decodes peer wire messages (everything after the handshake) for one connection.
///
/// Call [`Decoder::decode`] after every read, in a loop, until it returns `Ok(None)`:
///
/// ```
/// use bitmill::wire::{Decoder, Message};
/// use bytes::BytesMut;
///
/// let mut dec = Decoder::new(10);
/// let mut buf = BytesMut::from(&[0u8, 0, 0, 5, 4, 0, 0, 0, 7, 0, 0][..]);
/// assert_eq!(dec.decode(&mut buf), Ok(Some(Message::Have(7))));
/// assert_eq!(dec.decode(&mut buf), Ok(None)); // two bytes of the next prefix
/// assert_eq!(buf.len(), 2);
/// ```
///
/// The bounds it enforces, all before the body of a message is buffered:
/// - the length prefix is at most the largest legal message ([`Decoder::max_message_len`]);
/// - fixed-size messages have exactly their size;
/// - a `piece` carries 1..=`max_block_len` bytes (default `MAX_BLOCK_LEN`, 128 KiB);
/// - a `bitfield` is exactly `ceil(num_pieces / 8)` bytes (and, once it is all there, has no
///   spare bit set);
/// - an `extended` message has its extended id and at most [`MAX_EXTENDED_PAYLOAD`] bytes.
///
/// The decoder is stateless between calls apart from its configuration: an incomplete message
/// stays in the buffer, and its header is re-read (5 bytes) on the next call.
#[derive(Clone, Debug)]
pub struct Decoder {
    num_pieces: u32,
    max_block_len: u32,
    /// The largest legal length prefix, derived from the two fields above.
    max_len: u32,
}

impl Decoder {
    /// A decoder for a torrent of `num_pieces` pieces, accepting blocks up to `MAX_BLOCK_LEN`.
    pub fn new(num_pieces: u32) -> Self {
        Decoder::with_max_block_len(num_pieces, MAX_BLOCK_LEN)
    }

    /// A decoder accepting `piece` blocks of at most `max_block_len` bytes (a client that
    /// only ever requests 16 KiB blocks can refuse anything larger).
    pub fn with_max_block_len(num_pieces: u32, max_block_len: u32) -> Self {
        let mut d = Decoder {
            num_pieces,
            max_block_len,
            max_len: 0,
        };
        d.max_len = [
            13,
            piece_max(max_block_len),
            bitfield_len(num_pieces),
            extended_max(),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        d
    }

    /// The torrent's piece count this decoder checks bitfields against.
    pub fn num_pieces(&self) -> u32 {
        self.num_pieces
    }

    /// The largest block a `piece` message may carry.
    pub fn max_block_len(&self) -> u32 {
        self.max_block_len
    }

    /// The largest length prefix any message may announce (the id byte included, the 4 prefix
    /// bytes not): the most a peer can make this connection buffer, beyond one read.
    pub fn max_message_len(&self) -> u32 {
        self.max_len
    }

    /// The allowed range of the length prefix for message `id`, or `None` for an unknown id.
    fn bounds(&self, id: u8) -> Option<(u32, u32)> {
        let fixed = |n| Some((n, n));
        match id {
            id::CHOKE | id::UNCHOKE | id::INTERESTED | id::NOT_INTERESTED => fixed(1),
            id::HAVE_ALL | id::HAVE_NONE => fixed(1),
            id::HAVE | id::SUGGEST | id::ALLOWED_FAST => fixed(5),
            id::REQUEST | id::CANCEL | id::REJECT_REQUEST => fixed(13),
            id::PORT => fixed(3),
            id::BITFIELD => fixed(bitfield_len(self.num_pieces)),
            id::PIECE => Some((10, piece_max(self.max_block_len))),
            id::EXTENDED => Some((2, extended_max())),
            _ => None,
        }
    }

    /// Takes one message off the front of `buf`.
    ///
    /// `Ok(None)` means more bytes are needed; `buf` is then untouched, except that once a
    /// message's header has passed its checks, room for the whole message is reserved so a
    /// large `piece` arrives without repeated reallocation. An error leaves `buf` untouched
    /// (and repeats on the next call): close the connection.
    ///
    /// Large payloads are split off `buf` with `split_to(..).freeze()`, so they share its
    /// allocation and are never copied.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, WireError> {
        let Some(&[a, b, c, d]) = buf.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([a, b, c, d]);
        if len == 0 {
            buf.advance(4);
            return Ok(Some(Message::KeepAlive));
        }
        if len > self.max_len {
            return Err(WireError::TooLong {
                len,
                max: self.max_len,
            });
        }
        let Some(&msg_id) = buf.get(4) else {
            return Ok(None);
        };
        let (min, max) = self.bounds(msg_id).ok_or(WireError::UnknownId(msg_id))?;
        if len < min || len > max {
            return Err(WireError::BadLength { id: msg_id, len });
        }
        let total = 4 + len as usize;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        if msg_id == id::BITFIELD && !spare_bits_clear(&buf[5..total], self.num_pieces) {
            return Err(WireError::BitfieldSpareBits);
        }
        Ok(Some(parse(msg_id, len, buf)))
    }
}

/// Builds the message whose header (`len`, `msg_id`) was checked and whose `4 + len` bytes are
/// all at the front of `buf`, and takes them off. Cannot fail: every length was checked.
///
/// Fixed fields are read from the slice and the buffer advanced once (each `Buf::get_*` on a
/// `BytesMut` would advance it separately, which costs more than the read).
#[inline]
fn parse(msg_id: u8, len: u32, buf: &mut BytesMut) -> Message {
    // NOTE: `buf` holds at least `4 + len` bytes and `len` is exactly (for the three variable
    // messages, at least) what the id needs, so no index or split below can go out of range.
    let total = 4 + len as usize;
    let body = &buf[5..total];
    let fixed = match msg_id {
        id::CHOKE => Message::Choke,
        id::UNCHOKE => Message::Unchoke,
        id::INTERESTED => Message::Interested,
        id::NOT_INTERESTED => Message::NotInterested,
        id::HAVE_ALL => Message::HaveAll,
        id::HAVE_NONE => Message::HaveNone,
        id::HAVE => Message::Have(be32(body, 0)),
        id::SUGGEST => Message::Suggest(be32(body, 0)),
        id::ALLOWED_FAST => Message::AllowedFast(be32(body, 0)),
        id::PORT => Message::Port(u16::from_be_bytes([body[0], body[1]])),
        id::REQUEST => Message::Request {
            index: be32(body, 0),
            begin: be32(body, 4),
            length: be32(body, 8),
        },
        id::CANCEL => Message::Cancel {
            index: be32(body, 0),
            begin: be32(body, 4),
            length: be32(body, 8),
        },
        id::REJECT_REQUEST => Message::RejectRequest {
            index: be32(body, 0),
            begin: be32(body, 4),
            length: be32(body, 8),
        },
        id::BITFIELD => {
            buf.advance(5);
            return Message::Bitfield(buf.split_to(total - 5).freeze());
        }
        id::PIECE => {
            let (index, begin) = (be32(body, 0), be32(body, 4));
            buf.advance(13);
            return Message::Piece {
                index,
                begin,
                block: buf.split_to(total - 13).freeze(),
            };
        }
        // Only EXTENDED is left: `bounds` refused every other id.
        _ => {
            let ext = body[0];
            buf.advance(6);
            return Message::Extended {
                id: ext,
                payload: buf.split_to(total - 6).freeze(),
            };
        }
    };
    buf.advance(total);
    fixed
}

/// The big-endian `u32` at `at` in `b` (which the caller checked is long enough).
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Length prefix of a `piece` with the largest allowed block.
fn piece_max(max_block_len: u32) -> u32 {
    max_block_len.saturating_add(9)
}

/// Length prefix of the one legal `bitfield` for `num_pieces` pieces.
fn bitfield_len(num_pieces: u32) -> u32 {
    // ceil(u32::MAX / 8) + 1 fits in u32.
    num_pieces.div_ceil(8) + 1
}

/// Length prefix of the largest `extended` message.
fn extended_max() -> u32 {
    MAX_EXTENDED_PAYLOAD + 2
}

/// No bit past `num_pieces` is set in `bits` (which is `ceil(num_pieces / 8)` bytes long).
fn spare_bits_clear(bits: &[u8], num_pieces: u32) -> bool {
    let spare = (8 - num_pieces % 8) % 8;
    match bits.last() {
        Some(&last) if spare > 0 => last & ((1u8 << spare) - 1) == 0,
        _ => true,
    }
}
