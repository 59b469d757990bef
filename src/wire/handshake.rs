//! The 68-byte handshake that opens every peer connection (BEP 3), and the capability bits of
//! its reserved bytes. Pure byte work: no I/O, no allocation beyond the caller's buffer.

use bytes::{Buf, BytesMut};

use super::WireError;

/// The protocol name every BitTorrent handshake starts with (after its length byte, 19).
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";

/// Length of a handshake: 1 + 19 + 8 reserved + 20 info hash + 20 peer id.
pub const HANDSHAKE_LEN: usize = 68;

/// One capability bit in the handshake's 8 reserved bytes. Only the constants below exist,
/// so a `ReservedBit` always names a byte inside the 8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReservedBit {
    byte: usize,
    mask: u8,
}

impl ReservedBit {
    /// The extension protocol, BEP 10: `reserved[5] & 0x10`.
    pub const EXTENSION_PROTOCOL: ReservedBit = ReservedBit {
        byte: 5,
        mask: 0x10,
    };
    /// The fast extension, BEP 6: `reserved[7] & 0x04`.
    pub const FAST: ReservedBit = ReservedBit {
        byte: 7,
        mask: 0x04,
    };
    /// DHT, BEP 5 (the peer may send `port`): `reserved[7] & 0x01`.
    pub const DHT: ReservedBit = ReservedBit {
        byte: 7,
        mask: 0x01,
    };

    /// Index of the reserved byte holding this bit (0..8).
    pub fn byte(self) -> usize {
        self.byte
    }

    /// The bit's mask inside that byte.
    pub fn mask(self) -> u8 {
        self.mask
    }
}

/// A decoded or to-be-sent handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Handshake {
    /// Capability bits; see [`ReservedBit`]. Unknown bits are kept as received.
    pub reserved: [u8; 8],
    /// SHA-1 of the torrent's info dictionary.
    pub info_hash: [u8; 20],
    /// The sender's peer id.
    pub peer_id: [u8; 20],
}

impl Handshake {
    /// A handshake with no capability bits set.
    pub fn new(info_hash: [u8; 20], peer_id: [u8; 20]) -> Self {
        Handshake {
            reserved: [0; 8],
            info_hash,
            peer_id,
        }
    }

    /// Whether capability `bit` is set.
    pub fn has(&self, bit: ReservedBit) -> bool {
        self.reserved[bit.byte] & bit.mask != 0
    }

    /// Sets capability `bit`.
    pub fn set(&mut self, bit: ReservedBit) {
        self.reserved[bit.byte] |= bit.mask;
    }

    /// This handshake with capability `bit` set (for building one in an expression).
    pub fn with(mut self, bit: ReservedBit) -> Self {
        self.set(bit);
        self
    }

    /// The sender speaks the extension protocol (BEP 10).
    pub fn supports_extension_protocol(&self) -> bool {
        self.has(ReservedBit::EXTENSION_PROTOCOL)
    }

    /// The sender speaks the fast extension (BEP 6).
    pub fn supports_fast(&self) -> bool {
        self.has(ReservedBit::FAST)
    }

    /// The sender runs a DHT node (BEP 5).
    pub fn supports_dht(&self) -> bool {
        self.has(ReservedBit::DHT)
    }

    /// The 68 bytes on the wire.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = 19;
        out[1..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(&self.info_hash);
        out[48..68].copy_from_slice(&self.peer_id);
        out
    }

    /// Takes a handshake off the front of `buf`.
    ///
    /// `Ok(None)` until all 68 bytes are there; bytes after them (peers often send their
    /// `bitfield` in the same segment) stay in `buf`. A wrong protocol length or name is
    /// rejected as soon as the first wrong byte arrives. On `Ok(None)` and on an error `buf`
    /// is left untouched.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Handshake>, WireError> {
        if let Some(&n) = buf.first() {
            if n != 19 {
                return Err(WireError::BadProtocolLength(n));
            }
        }
        let seen = buf.len().min(20);
        if seen > 1 && buf[1..seen] != PROTOCOL[..seen - 1] {
            return Err(WireError::BadProtocolName);
        }
        if buf.len() < HANDSHAKE_LEN {
            return Ok(None);
        }
        let mut hs = Handshake::new([0; 20], [0; 20]);
        hs.reserved.copy_from_slice(&buf[20..28]);
        hs.info_hash.copy_from_slice(&buf[28..48]);
        hs.peer_id.copy_from_slice(&buf[48..68]);
        buf.advance(HANDSHAKE_LEN);
        Ok(Some(hs))
    }
}
