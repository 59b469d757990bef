//! Byte sequences captured from real clients, for the tests pinned to them (the
//! `// Pinned from real clients` sections of `wire/tests.rs` and `engine/tests.rs`).
//! Compiled only under `#[cfg(test)]`.
//!
//! How they were captured: a throwaway Python script dialed the client on 127.0.0.1, sent
//! a handshake and recorded every byte the client sent back, for a 31-piece torrent (32 KiB
//! pieces, 1,003,463 bytes: the last piece is 20,423 bytes, so its last block is 4,039 bytes,
//! and a bitfield has one spare bit). Clients: libtorrent-rasterbar 2.0.8.0 (Debian's
//! python3-libtorrent, default settings apart from DHT, LSD, UPnP, NAT-PMP and uTP off) and
//! Transmission 3.00 (Debian's transmission-daemon, DHT, LPD, PEX, uTP and port forwarding
//! off), both on loopback. The capture torrent's info hash is [`CAPTURE_INFO_HASH`]; tests on
//! another torrent splice theirs into the handshakes.
//!
//! What was NOT seen, with DHT off in both: a `port` message (BEP 5, id 9), a `suggest piece`
//! (BEP 6; libtorrent sends one only with its `suggest_mode` set), a bitfield with a spare bit
//! set, an unknown message id. The tests for those build the bytes from the BEPs and say so.

/// The capture torrent's info hash (bytes 28..48 of every handshake below).
pub(crate) const CAPTURE_INFO_HASH: [u8; 20] = [
    0xc0, 0x54, 0xb1, 0x0f, 0xdb, 0xe6, 0x75, 0xa3, 0xd1, 0xcf, 0x04, 0x95, 0xb1, 0x7a, 0xe5, 0x19,
    0x2b, 0xda, 0x67, 0xb1,
];

/// Pieces of the capture torrent.
pub(crate) const CAPTURE_PIECES: u32 = 31;

/// libtorrent 2.0.8.0's handshake (answering ours). Reserved bytes `00 00 00 00 00 10 00 05`:
/// extension protocol (BEP 10), fast extension (BEP 6) and the DHT bit (BEP 5), the DHT bit
/// set although its DHT was off. Peer id `-LT2080-` and 12 random characters.
pub(crate) const LT_HANDSHAKE: &[u8; 68] = b"\x13BitTorrent protocol\
    \x00\x00\x00\x00\x00\x10\x00\x05\
    \xc0\x54\xb1\x0f\xdb\xe6\x75\xa3\xd1\xcf\x04\x95\xb1\x7a\xe5\x19\x2b\xda\x67\xb1\
    -LT2080-~U~MZ(vD3QW4";

/// Transmission 3.00's handshake. Reserved bytes `00 00 00 00 00 10 00 04`: extension
/// protocol and fast extension; no DHT bit (its DHT was off). Peer id `-TR3000-` and 12
/// random lower-case alphanumerics.
pub(crate) const TR_HANDSHAKE: &[u8; 68] = b"\x13BitTorrent protocol\
    \x00\x00\x00\x00\x00\x10\x00\x04\
    \xc0\x54\xb1\x0f\xdb\xe6\x75\xa3\xd1\xcf\x04\x95\xb1\x7a\xe5\x19\x2b\xda\x67\xb1\
    -TR3000-1f2yif7fm195";

/// libtorrent 2.0.8.0, seeding, to a peer that set the BEP 10 and BEP 6 bits: its extension
/// handshake, `have all` and an `unchoke`, in one segment right after its handshake (the
/// unchoke comes before we said we were interested). Note `upload_only` twice: as an
/// extension name inside `m` (id 3) and as a top-level flag (1: it is a seed); `yourip` is
/// our address as 4 raw bytes; `complete_ago` -1 (it did not download the torrent itself).
pub(crate) const LT_SEED_OPENING: &[u8] = b"\x00\x00\x00\xd4\x14\x00\
    d12:complete_agoi-1e\
    1:md11:lt_donthavei7e10:share_modei8e11:upload_onlyi3e12:ut_holepunchi4e\
    11:ut_metadatai2e6:ut_pexi1ee\
    13:metadata_sizei688e4:reqqi2000e11:upload_onlyi1e1:v18:libtorrent/2.0.8.0\
    6:yourip4:\x7f\x00\x00\x01e\
    \x00\x00\x00\x01\x0e\
    \x00\x00\x00\x01\x01";

/// libtorrent 2.0.8.0, downloading (it has nothing), to a peer that set the BEP 10 and BEP 6
/// bits and sent `have all`: its extension handshake (no `upload_only` flag), `have none` and
/// `interested`, in one segment.
pub(crate) const LT_LEECH_OPENING: &[u8] = b"\x00\x00\x00\xc3\x14\x00\
    d12:complete_agoi-1e\
    1:md11:lt_donthavei7e10:share_modei8e11:upload_onlyi3e12:ut_holepunchi4e\
    11:ut_metadatai2e6:ut_pexi1ee\
    13:metadata_sizei688e4:reqqi2000e1:v18:libtorrent/2.0.8.0\
    6:yourip4:\x7f\x00\x00\x01e\
    \x00\x00\x00\x01\x0f\
    \x00\x00\x00\x01\x02";

/// libtorrent 2.0.8.0, seeding, to a peer whose handshake has no capability bits (as
/// bitmill's had before it set the BEP 10 bit): a 31-piece `bitfield`, spare bit clear, and
/// an `unchoke`.
pub(crate) const LT_SEED_OPENING_PLAIN: &[u8] =
    b"\x00\x00\x00\x05\x05\xff\xff\xff\xfe\x00\x00\x00\x01\x01";

/// libtorrent 2.0.8.0, seeding, to a handshake with only the BEP 10 bit set, followed by
/// our extension handshake (what bitmill sends since it advertises `reqq`): its extension
/// handshake (as in [`LT_SEED_OPENING`]), a 31-piece `bitfield` and an `unchoke`, read
/// together right after its handshake.
pub(crate) const LT_SEED_TO_BITMILL: &[u8] = b"\x00\x00\x00\xd4\x14\x00\
    d12:complete_agoi-1e\
    1:md11:lt_donthavei7e10:share_modei8e11:upload_onlyi3e12:ut_holepunchi4e\
    11:ut_metadatai2e6:ut_pexi1ee\
    13:metadata_sizei688e4:reqqi2000e11:upload_onlyi1e1:v18:libtorrent/2.0.8.0\
    6:yourip4:\x7f\x00\x00\x01e\
    \x00\x00\x00\x05\x05\xff\xff\xff\xfe\
    \x00\x00\x00\x01\x01";

/// Transmission 3.00, seeding, to the same (bitmill's handshake and extension handshake):
/// its extension handshake and a 31-piece `bitfield`, half a second after its handshake.
pub(crate) const TR_SEED_TO_BITMILL: &[u8] = b"\x00\x00\x00\x72\x14\x00\
    d1:ei0e1:md11:ut_metadatai3ee13:metadata_sizei688e1:pi34261e\
    4:reqqi512e11:upload_onlyi1e1:v17:Transmission 3.00e\
    \x00\x00\x00\x05\x05\xff\xff\xff\xfe";

/// libtorrent 2.0.8.0, seeding, when a fast-extension peer with `have none` became
/// interested: `unchoke`, five `allowed fast` (pieces 2, 16, 22, 30, 20: BEP 6's set for
/// 127.0.0.1 and the capture torrent) and another `unchoke`, in one segment.
pub(crate) const LT_ALLOWED_FAST: &[u8] = b"\x00\x00\x00\x01\x01\
    \x00\x00\x00\x05\x11\x00\x00\x00\x02\
    \x00\x00\x00\x05\x11\x00\x00\x00\x10\
    \x00\x00\x00\x05\x11\x00\x00\x00\x16\
    \x00\x00\x00\x05\x11\x00\x00\x00\x1e\
    \x00\x00\x00\x05\x11\x00\x00\x00\x14\
    \x00\x00\x00\x01\x01";

/// Transmission 3.00, seeding, to a peer that set the BEP 10 and BEP 6 bits: its extension
/// handshake (half a second after its handshake) and `have all`, read together. `e` 0: encryption not
/// required; `p` its listening port; `reqq` 512. No `unchoke`: Transmission unchokes on its
/// 10-second rechoke tick.
pub(crate) const TR_SEED_OPENING: &[u8] = b"\x00\x00\x00\x72\x14\x00\
    d1:ei0e1:md11:ut_metadatai3ee13:metadata_sizei688e1:pi37709e\
    4:reqqi512e11:upload_onlyi1e1:v17:Transmission 3.00e\
    \x00\x00\x00\x01\x0e";

/// Transmission 3.00, downloading (it has nothing), to a peer that set the BEP 10 and BEP 6
/// bits: its extension handshake (`upload_only` 0) and `have none`.
pub(crate) const TR_LEECH_OPENING: &[u8] = b"\x00\x00\x00\x72\x14\x00\
    d1:ei0e1:md11:ut_metadatai3ee13:metadata_sizei688e1:pi56201e\
    4:reqqi512e11:upload_onlyi0e1:v17:Transmission 3.00e\
    \x00\x00\x00\x01\x0f";

/// Transmission 3.00, seeding, to a peer without capability bits: a 31-piece `bitfield`,
/// spare bit clear (half a second after its handshake).
pub(crate) const TR_BITFIELD: &[u8] = b"\x00\x00\x00\x05\x05\xff\xff\xff\xfe";

/// Transmission 3.00, downloading, 12 s after the connection (it sends nothing before, not
/// even a bitfield, to a peer without the fast extension): `interested`; then, a second
/// after our unchoke, its first requests: the two blocks of the last piece (16 KiB and the
/// 4,039-byte tail) and the two of piece 0.
pub(crate) const TR_LEECH_REQUESTS: &[u8] = b"\x00\x00\x00\x01\x02\
    \x00\x00\x00\x0d\x06\x00\x00\x00\x1e\x00\x00\x00\x00\x00\x00\x40\x00\
    \x00\x00\x00\x0d\x06\x00\x00\x00\x1e\x00\x00\x40\x00\x00\x00\x0f\xc7\
    \x00\x00\x00\x0d\x06\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x40\x00\
    \x00\x00\x00\x0d\x06\x00\x00\x00\x00\x00\x00\x40\x00\x00\x00\x40\x00";

/// Transmission 3.00, seeding, with the fast extension: a `reject request` for the block
/// 0:0+16384 we had asked for while choked, sent on its rechoke tick just before its
/// `unchoke`.
pub(crate) const TR_REJECT_THEN_UNCHOKE: &[u8] = b"\
    \x00\x00\x00\x0d\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x40\x00\
    \x00\x00\x00\x01\x01";

/// Transmission 3.00's keep-alive after about 100 s without sending anything: two of them,
/// back to back, read together.
pub(crate) const TR_KEEPALIVES: &[u8] = b"\x00\x00\x00\x00\x00\x00\x00\x00";
