//! UDP trackers (BEP 15), both directions: the packets of connect, announce, scrape and
//! error, as [`Request`] (client to tracker) and [`Response`] (tracker to client).
//!
//! Every packet is checked for length before any field is read, so no input can make a
//! decoder read out of bounds or panic; the fixed part of each packet must be there
//! ([`UdpError::TooShort`]) and variable parts must be whole records
//! ([`UdpError::BadLength`]). As BEP 15 asks, bytes after the fixed part of a connect or an
//! announce request are ignored (BEP 41 puts options there). The connect request's magic
//! [`PROTOCOL_ID`] is checked; the transaction id and, for responses, whether the action is
//! the one the client expects are left to the caller, who has the state to check them
//! ([`Request::transaction_id`], [`Response::transaction_id`], [`Response::action`]).
//!
//! IPv4 and IPv6 announce responses have the same layout except for the stride of a peer
//! record (6 or 18 bytes); which one is used depends on the address family the packet
//! travels over, so [`Response::decode`] and the announce encoders take an `ipv6` flag.
//!
//! Encoders append to a `Vec<u8>` ([`Request::encode`], [`Response::encode`]) or write into a
//! fixed buffer ([`Request::write`], [`Response::write`]).
//!
//! What this module must never do: touch a socket, read the clock, decide whether a
//! connection id is valid (the tracker table does that), or panic on any input.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::fmt;

use super::http::clamp_interval;
use super::{AnnounceRequest, AnnounceResponse, Event, ScrapeStats};

/// The magic number that opens a connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;

/// Length of a connect request, and of a connect response.
pub const CONNECT_LEN: usize = 16;

/// Length of an announce request (IPv4 form, used over IPv6 too).
pub const ANNOUNCE_LEN: usize = 98;

/// Length of the fixed part of an announce response, before the peer records.
pub const ANNOUNCE_RESPONSE_HEADER_LEN: usize = 20;

/// Most info hashes in one scrape request ("up to about 74", BEP 15).
pub const MAX_SCRAPE_HASHES: usize = 74;

/// The `action` field values.
pub mod action {
    /// Connect.
    pub const CONNECT: u32 = 0;
    /// Announce.
    pub const ANNOUNCE: u32 = 1;
    /// Scrape.
    pub const SCRAPE: u32 = 2;
    /// Error (responses only).
    pub const ERROR: u32 = 3;
}

/// Why a packet could not be decoded or encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UdpError {
    /// The packet is shorter than the fixed part of its kind.
    TooShort {
        /// Bytes the fixed part needs.
        needed: usize,
        /// Bytes the packet has.
        got: usize,
    },
    /// The variable part is not a whole number of records.
    BadLength {
        /// Bytes in the variable part.
        len: usize,
        /// Size of one record.
        record: usize,
    },
    /// A connect request without the magic protocol id.
    BadProtocolId(u64),
    /// An action this protocol does not have (or an error action in a request).
    UnknownAction(u32),
    /// An announce event other than 0 to 3.
    UnknownEvent(u32),
    /// A scrape request with no info hash, or more than [`MAX_SCRAPE_HASHES`].
    ScrapeCount(usize),
    /// The buffer given to an encoder is too small.
    BufferTooSmall {
        /// Bytes the packet needs.
        needed: usize,
        /// Bytes the buffer has.
        got: usize,
    },
}

impl fmt::Display for UdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UdpError::TooShort { needed, got } => {
                write!(f, "packet of {got} bytes, at least {needed} needed")
            }
            UdpError::BadLength { len, record } => {
                write!(f, "{len} bytes of records, not a multiple of {record}")
            }
            UdpError::BadProtocolId(p) => write!(f, "bad protocol id {p:#x}"),
            UdpError::UnknownAction(a) => write!(f, "unknown action {a}"),
            UdpError::UnknownEvent(e) => write!(f, "unknown event {e}"),
            UdpError::ScrapeCount(n) => write!(
                f,
                "scrape of {n} info hashes (1 to {MAX_SCRAPE_HASHES} allowed)"
            ),
            UdpError::BufferTooSmall { needed, got } => {
                write!(f, "buffer of {got} bytes, {needed} needed")
            }
        }
    }
}

impl std::error::Error for UdpError {}

// ---------------------------------------------------------------------------------------------
// Reading and writing fields
// ---------------------------------------------------------------------------------------------

/// Big-endian `N`-byte field at `at`; zeros if out of range (callers check lengths first, so
/// that never happens, but a mistake cannot become a panic).
fn field<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(s) = b.get(at..at + N) {
        a.copy_from_slice(s);
    }
    a
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(field(b, at))
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(field(b, at))
}

fn too_short(needed: usize, got: usize) -> Result<(), UdpError> {
    if got < needed {
        Err(UdpError::TooShort { needed, got })
    } else {
        Ok(())
    }
}

/// Where an encoder writes.
trait Sink {
    fn put(&mut self, b: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
}

/// A fixed buffer; the caller checks the length first, and writes past the end are dropped
/// (never a panic).
struct SliceSink<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Sink for SliceSink<'_> {
    fn put(&mut self, b: &[u8]) {
        if let Some(dst) = self.buf.get_mut(self.pos..self.pos + b.len()) {
            dst.copy_from_slice(b);
        }
        self.pos += b.len();
    }
}

/// Writes a packet of `len` bytes into `buf` with `enc`; returns `len`.
fn write_fixed(
    buf: &mut [u8],
    len: usize,
    enc: impl FnOnce(&mut SliceSink<'_>),
) -> Result<usize, UdpError> {
    if buf.len() < len {
        return Err(UdpError::BufferTooSmall {
            needed: len,
            got: buf.len(),
        });
    }
    let mut s = SliceSink { buf, pos: 0 };
    enc(&mut s);
    Ok(s.pos)
}

fn event_code(e: Event) -> u32 {
    match e {
        Event::None => 0,
        Event::Completed => 1,
        Event::Started => 2,
        Event::Stopped => 3,
    }
}

fn event_from(code: u32) -> Result<Event, UdpError> {
    Ok(match code {
        0 => Event::None,
        1 => Event::Completed,
        2 => Event::Started,
        3 => Event::Stopped,
        other => return Err(UdpError::UnknownEvent(other)),
    })
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// An announce request packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnouncePacket {
    /// The connection id from a connect response.
    pub connection_id: u64,
    /// Chosen by the client, echoed by the tracker.
    pub transaction_id: u32,
    /// The announce. `tracker_id` is always `None` (HTTP only); `numwant` `None` is sent as
    /// -1 and any negative value reads as `None`; a `numwant` above `i32::MAX` is sent as
    /// `i32::MAX`.
    pub request: AnnounceRequest,
    /// The `IP address` field: 0 means "the sender's address" (trackers ignore other values).
    pub ip: u32,
}

/// A packet from a client to a tracker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Asks for a connection id.
    Connect {
        /// Chosen by the client, echoed by the tracker.
        transaction_id: u32,
    },
    /// An announce.
    Announce(AnnouncePacket),
    /// A scrape of 1 to [`MAX_SCRAPE_HASHES`] torrents.
    Scrape {
        /// The connection id from a connect response.
        connection_id: u64,
        /// Chosen by the client, echoed by the tracker.
        transaction_id: u32,
        /// The torrents.
        info_hashes: Vec<[u8; 20]>,
    },
}

impl Request {
    /// The transaction id.
    pub fn transaction_id(&self) -> u32 {
        match self {
            Request::Connect { transaction_id }
            | Request::Scrape { transaction_id, .. }
            | Request::Announce(AnnouncePacket { transaction_id, .. }) => *transaction_id,
        }
    }

    /// The action ([`action::CONNECT`], [`action::ANNOUNCE`] or [`action::SCRAPE`]).
    pub fn action(&self) -> u32 {
        match self {
            Request::Connect { .. } => action::CONNECT,
            Request::Announce(_) => action::ANNOUNCE,
            Request::Scrape { .. } => action::SCRAPE,
        }
    }

    /// The connection id (`None` for a connect, which carries the protocol id instead).
    pub fn connection_id(&self) -> Option<u64> {
        match self {
            Request::Connect { .. } => None,
            Request::Announce(a) => Some(a.connection_id),
            Request::Scrape { connection_id, .. } => Some(*connection_id),
        }
    }

    /// Decodes a request. Lengths are checked first; a connect must carry [`PROTOCOL_ID`].
    pub fn decode(p: &[u8]) -> Result<Request, UdpError> {
        too_short(16, p.len())?;
        let first = be64(p, 0);
        let transaction_id = be32(p, 12);
        match be32(p, 8) {
            action::CONNECT => {
                if first != PROTOCOL_ID {
                    return Err(UdpError::BadProtocolId(first));
                }
                Ok(Request::Connect { transaction_id })
            }
            action::ANNOUNCE => {
                too_short(ANNOUNCE_LEN, p.len())?;
                let num_want = be32(p, 92) as i32;
                Ok(Request::Announce(AnnouncePacket {
                    connection_id: first,
                    transaction_id,
                    request: AnnounceRequest {
                        info_hash: field(p, 16),
                        peer_id: field(p, 36),
                        downloaded: be64(p, 56),
                        left: be64(p, 64),
                        uploaded: be64(p, 72),
                        event: event_from(be32(p, 80))?,
                        key: be32(p, 88),
                        numwant: u32::try_from(num_want).ok(),
                        port: u16::from_be_bytes(field(p, 96)),
                        tracker_id: None,
                    },
                    ip: be32(p, 84),
                }))
            }
            action::SCRAPE => {
                let rest = p.len() - 16;
                if rest % 20 != 0 {
                    return Err(UdpError::BadLength {
                        len: rest,
                        record: 20,
                    });
                }
                let n = rest / 20;
                if n == 0 || n > MAX_SCRAPE_HASHES {
                    return Err(UdpError::ScrapeCount(n));
                }
                Ok(Request::Scrape {
                    connection_id: first,
                    transaction_id,
                    info_hashes: (0..n).map(|i| field(p, 16 + 20 * i)).collect(),
                })
            }
            other => Err(UdpError::UnknownAction(other)),
        }
    }

    /// Bytes this request takes on the wire.
    pub fn encoded_len(&self) -> usize {
        match self {
            Request::Connect { .. } => CONNECT_LEN,
            Request::Announce(_) => ANNOUNCE_LEN,
            Request::Scrape { info_hashes, .. } => 16 + 20 * info_hashes.len(),
        }
    }

    /// Appends the request to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        self.encode_to(out);
    }

    /// Writes the request at the start of `buf`; returns its length.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, UdpError> {
        write_fixed(buf, self.encoded_len(), |s| self.encode_to(s))
    }

    fn encode_to(&self, s: &mut impl Sink) {
        match self {
            Request::Connect { transaction_id } => {
                s.put(&PROTOCOL_ID.to_be_bytes());
                s.put(&action::CONNECT.to_be_bytes());
                s.put(&transaction_id.to_be_bytes());
            }
            Request::Announce(a) => {
                let r = &a.request;
                s.put(&a.connection_id.to_be_bytes());
                s.put(&action::ANNOUNCE.to_be_bytes());
                s.put(&a.transaction_id.to_be_bytes());
                s.put(&r.info_hash);
                s.put(&r.peer_id);
                s.put(&r.downloaded.to_be_bytes());
                s.put(&r.left.to_be_bytes());
                s.put(&r.uploaded.to_be_bytes());
                s.put(&event_code(r.event).to_be_bytes());
                s.put(&a.ip.to_be_bytes());
                s.put(&r.key.to_be_bytes());
                let num_want = r
                    .numwant
                    .map_or(-1, |n| i32::try_from(n).unwrap_or(i32::MAX));
                s.put(&num_want.to_be_bytes());
                s.put(&r.port.to_be_bytes());
            }
            Request::Scrape {
                connection_id,
                transaction_id,
                info_hashes,
            } => {
                s.put(&connection_id.to_be_bytes());
                s.put(&action::SCRAPE.to_be_bytes());
                s.put(&transaction_id.to_be_bytes());
                for h in info_hashes {
                    s.put(h);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// An announce response packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceResponsePacket {
    /// Echo of the request's transaction id.
    pub transaction_id: u32,
    /// Seconds until the next regular announce.
    pub interval: u32,
    /// Leechers in the swarm.
    pub leechers: u32,
    /// Seeders in the swarm.
    pub seeders: u32,
    /// Peers. The encoders write only those of the packet's address family (IPv4 records in
    /// an IPv4 response, IPv6 in an IPv6 one); the decoder skips records with port 0.
    pub peers: Vec<SocketAddr>,
}

impl AnnounceResponsePacket {
    /// The announce response the client side works with; the interval is clamped like an
    /// HTTP one ([`clamp_interval`]).
    pub fn to_announce_response(&self) -> AnnounceResponse {
        AnnounceResponse {
            interval: clamp_interval(i64::from(self.interval)),
            min_interval: None,
            complete: Some(self.seeders),
            incomplete: Some(self.leechers),
            peers: self.peers.clone(),
            tracker_id: None,
            warning: None,
        }
    }
}

/// A packet from a tracker to a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// The answer to a connect.
    Connect {
        /// Echo of the request's transaction id.
        transaction_id: u32,
        /// The connection id to use in announces and scrapes.
        connection_id: u64,
    },
    /// The answer to an announce.
    Announce(AnnounceResponsePacket),
    /// The answer to a scrape: one entry per info hash, in request order.
    Scrape {
        /// Echo of the request's transaction id.
        transaction_id: u32,
        /// The counts.
        stats: Vec<ScrapeStats>,
    },
    /// The tracker refused or failed.
    Error {
        /// Echo of the request's transaction id.
        transaction_id: u32,
        /// Why (lossy UTF-8; trailing NUL bytes removed).
        message: String,
    },
}

impl Response {
    /// The transaction id.
    pub fn transaction_id(&self) -> u32 {
        match self {
            Response::Connect { transaction_id, .. }
            | Response::Scrape { transaction_id, .. }
            | Response::Error { transaction_id, .. }
            | Response::Announce(AnnounceResponsePacket { transaction_id, .. }) => *transaction_id,
        }
    }

    /// The action ([`action::CONNECT`] ... [`action::ERROR`]).
    pub fn action(&self) -> u32 {
        match self {
            Response::Connect { .. } => action::CONNECT,
            Response::Announce(_) => action::ANNOUNCE,
            Response::Scrape { .. } => action::SCRAPE,
            Response::Error { .. } => action::ERROR,
        }
    }

    /// Decodes a response that arrived over IPv6 (`ipv6`: 18-byte peer records) or IPv4
    /// (6-byte records). Lengths are checked first.
    pub fn decode(p: &[u8], ipv6: bool) -> Result<Response, UdpError> {
        too_short(8, p.len())?;
        let transaction_id = be32(p, 4);
        match be32(p, 0) {
            action::CONNECT => {
                too_short(CONNECT_LEN, p.len())?;
                Ok(Response::Connect {
                    transaction_id,
                    connection_id: be64(p, 8),
                })
            }
            action::ANNOUNCE => {
                too_short(ANNOUNCE_RESPONSE_HEADER_LEN, p.len())?;
                let stride = if ipv6 { 18 } else { 6 };
                let rest = &p[ANNOUNCE_RESPONSE_HEADER_LEN..];
                if rest.len() % stride != 0 {
                    return Err(UdpError::BadLength {
                        len: rest.len(),
                        record: stride,
                    });
                }
                let peers = rest
                    .chunks_exact(stride)
                    .filter_map(|rec| {
                        let port = u16::from_be_bytes(field(rec, stride - 2));
                        let ip = if ipv6 {
                            IpAddr::V6(Ipv6Addr::from(field::<16>(rec, 0)))
                        } else {
                            IpAddr::V4(Ipv4Addr::from(field::<4>(rec, 0)))
                        };
                        (port != 0).then_some(SocketAddr::new(ip, port))
                    })
                    .collect();
                Ok(Response::Announce(AnnounceResponsePacket {
                    transaction_id,
                    interval: be32(p, 8),
                    leechers: be32(p, 12),
                    seeders: be32(p, 16),
                    peers,
                }))
            }
            action::SCRAPE => {
                let rest = &p[8..];
                if rest.len() % 12 != 0 {
                    return Err(UdpError::BadLength {
                        len: rest.len(),
                        record: 12,
                    });
                }
                let stats = rest
                    .chunks_exact(12)
                    .map(|r| ScrapeStats {
                        complete: be32(r, 0),
                        downloaded: be32(r, 4),
                        incomplete: be32(r, 8),
                    })
                    .collect();
                Ok(Response::Scrape {
                    transaction_id,
                    stats,
                })
            }
            action::ERROR => {
                let msg = &p[8..];
                let end = msg.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                Ok(Response::Error {
                    transaction_id,
                    message: String::from_utf8_lossy(&msg[..end]).into_owned(),
                })
            }
            other => Err(UdpError::UnknownAction(other)),
        }
    }

    /// Bytes this response takes on the wire over IPv6 (`ipv6`) or IPv4.
    pub fn encoded_len(&self, ipv6: bool) -> usize {
        match self {
            Response::Connect { .. } => CONNECT_LEN,
            Response::Announce(a) => announce_response_len(&a.peers, ipv6),
            Response::Scrape { stats, .. } => 8 + 12 * stats.len(),
            Response::Error { message, .. } => 8 + message.len(),
        }
    }

    /// Appends the response to `out`, in the IPv6 (`ipv6`) or IPv4 form.
    pub fn encode(&self, ipv6: bool, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len(ipv6));
        self.encode_to(ipv6, out);
    }

    /// Writes the response at the start of `buf`; returns its length.
    pub fn write(&self, ipv6: bool, buf: &mut [u8]) -> Result<usize, UdpError> {
        write_fixed(buf, self.encoded_len(ipv6), |s| self.encode_to(ipv6, s))
    }

    fn encode_to(&self, ipv6: bool, s: &mut impl Sink) {
        match self {
            Response::Connect {
                transaction_id,
                connection_id,
            } => connect_response_to(*transaction_id, *connection_id, s),
            Response::Announce(a) => announce_response_to(
                AnnounceHeader {
                    transaction_id: a.transaction_id,
                    interval: a.interval,
                    leechers: a.leechers,
                    seeders: a.seeders,
                },
                a.peers.iter().copied(),
                ipv6,
                s,
            ),
            Response::Scrape {
                transaction_id,
                stats,
            } => scrape_response_to(*transaction_id, stats, s),
            Response::Error {
                transaction_id,
                message,
            } => error_to(*transaction_id, message, s),
        }
    }
}

fn announce_response_len(peers: &[SocketAddr], ipv6: bool) -> usize {
    let n = peers.iter().filter(|p| p.is_ipv6() == ipv6).count();
    ANNOUNCE_RESPONSE_HEADER_LEN + n * if ipv6 { 18 } else { 6 }
}

/// The fixed fields of an announce response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnnounceHeader {
    /// Echo of the request's transaction id.
    pub transaction_id: u32,
    /// Seconds until the next regular announce.
    pub interval: u32,
    /// Leechers in the swarm.
    pub leechers: u32,
    /// Seeders in the swarm.
    pub seeders: u32,
}

fn connect_response_to(transaction_id: u32, connection_id: u64, s: &mut impl Sink) {
    s.put(&action::CONNECT.to_be_bytes());
    s.put(&transaction_id.to_be_bytes());
    s.put(&connection_id.to_be_bytes());
}

fn announce_response_to(
    h: AnnounceHeader,
    peers: impl IntoIterator<Item = SocketAddr>,
    ipv6: bool,
    s: &mut impl Sink,
) {
    s.put(&action::ANNOUNCE.to_be_bytes());
    s.put(&h.transaction_id.to_be_bytes());
    s.put(&h.interval.to_be_bytes());
    s.put(&h.leechers.to_be_bytes());
    s.put(&h.seeders.to_be_bytes());
    for p in peers {
        match (p, ipv6) {
            (SocketAddr::V4(a), false) => s.put(&a.ip().octets()),
            (SocketAddr::V6(a), true) => s.put(&a.ip().octets()),
            _ => continue,
        }
        s.put(&p.port().to_be_bytes());
    }
}

fn scrape_response_to(transaction_id: u32, stats: &[ScrapeStats], s: &mut impl Sink) {
    s.put(&action::SCRAPE.to_be_bytes());
    s.put(&transaction_id.to_be_bytes());
    for st in stats {
        s.put(&st.complete.to_be_bytes());
        s.put(&st.downloaded.to_be_bytes());
        s.put(&st.incomplete.to_be_bytes());
    }
}

fn error_to(transaction_id: u32, message: &str, s: &mut impl Sink) {
    s.put(&action::ERROR.to_be_bytes());
    s.put(&transaction_id.to_be_bytes());
    s.put(message.as_bytes());
}

/// Appends a connect response (what the tracker table sends without building a
/// [`Response`]).
pub fn encode_connect_response(transaction_id: u32, connection_id: u64, out: &mut Vec<u8>) {
    connect_response_to(transaction_id, connection_id, out);
}

/// Appends an announce response with the peers of one address family: IPv6 records when
/// `ipv6`, else IPv4 records; peers of the other family are left out.
pub fn encode_announce_response(
    header: AnnounceHeader,
    peers: impl IntoIterator<Item = SocketAddr>,
    ipv6: bool,
    out: &mut Vec<u8>,
) {
    announce_response_to(header, peers, ipv6, out);
}

/// Appends a scrape response.
pub fn encode_scrape_response(transaction_id: u32, stats: &[ScrapeStats], out: &mut Vec<u8>) {
    scrape_response_to(transaction_id, stats, out);
}

/// Appends an error response.
pub fn encode_error(transaction_id: u32, message: &str, out: &mut Vec<u8>) {
    error_to(transaction_id, message, out);
}

#[cfg(test)]
mod tests;
