//! HTTP trackers, both directions: BEP 3 announce, BEP 23 compact peers, BEP 7 IPv6 peers
//! (`peers6`) and BEP 48 scrape.
//!
//! What this module owns:
//!
//! - **client requests**: [`announce_url`] (binary-safe percent-encoding of `info_hash` and
//!   `peer_id`), [`scrape_url`], [`get_request`] (the bytes of an HTTP/1.1 `GET`) and
//!   [`redirect_url`] (where a 3xx points);
//! - **client responses**: [`ResponseReader`], a bounded incremental HTTP/1.x response reader
//!   (`Content-Length`, `chunked`, or body-until-EOF), and the bencoded bodies
//!   ([`parse_announce_response`], [`parse_scrape_response`]);
//! - **server requests**: [`parse_request`] turns the bytes of an incoming `GET /announce`,
//!   `GET /scrape` or `GET /stats` into an [`HttpRequest`], checking every parameter;
//! - **server responses**: [`encode_announce_reply`], [`encode_scrape_reply`],
//!   [`encode_failure`] (bencoded bodies) and [`http_response`] (status line, headers, body).
//!
//! Every length a peer or a tracker controls is capped before it is buffered: response heads
//! at [`MAX_RESPONSE_HEAD`], bodies at [`MAX_RESPONSE_BODY`], incoming requests at
//! [`MAX_REQUEST_LEN`]. Parsers return errors for bad input and never panic.
//!
//! What this module must never do: open a connection, resolve a name, read the clock, or
//! follow a redirect by itself (the caller decides, with [`redirect_url`]). There is no TLS in
//! this client, so `https://` URLs are refused with [`TrackerError::BadUrl`].

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::fmt::Write as _;
use std::time::Duration;

use super::server::AnnounceReply;
use super::{AnnounceRequest, AnnounceResponse, Event, ScrapeStats, TrackerError};
use crate::bencode::{self, Encoder, Value};

/// Shortest `interval` we accept from a tracker; smaller values are raised to this (a tracker
/// asking for an announce every second is broken or hostile, and we would hammer it).
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);

/// Longest `interval` we accept from a tracker; larger values are lowered to this (one day),
/// so an absurd value cannot make us forget the tracker.
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);

/// Largest HTTP response head (status line and headers) we read from a tracker.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Largest HTTP response body we read from a tracker: 2 MiB holds about 350,000 compact peers.
pub const MAX_RESPONSE_BODY: usize = 2 * 1024 * 1024;

/// Largest incoming request (request line and headers) the tracker server reads.
pub const MAX_REQUEST_LEN: usize = 8 * 1024;

/// The `User-Agent` this client sends.
pub const USER_AGENT: &str = concat!("bitmill/", env!("CARGO_PKG_VERSION"));

/// Longest chunk-size line (size and extensions) we accept in a chunked body.
const MAX_CHUNK_LINE: usize = 1024;

/// Headers we look at in one HTTP message; more is an error.
const MAX_HEADERS: usize = 64;

/// An announce `interval` (seconds, as a tracker sent it) brought into
/// [`MIN_INTERVAL`]`..=`[`MAX_INTERVAL`].
pub fn clamp_interval(secs: i64) -> Duration {
    let lo = MIN_INTERVAL.as_secs() as i64;
    let hi = MAX_INTERVAL.as_secs() as i64;
    Duration::from_secs(secs.clamp(lo, hi) as u64)
}

// ---------------------------------------------------------------------------------------------
// URLs
// ---------------------------------------------------------------------------------------------

/// The parts of an `http://` URL that a request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl<'a> {
    /// `host` or `host:port` exactly as written (IPv6 literals keep their brackets): the value
    /// of the `Host` header.
    pub authority: &'a str,
    /// The host name or address (an IPv6 literal without its brackets).
    pub host: &'a str,
    /// The port (80 when the URL has none).
    pub port: u16,
    /// The path, possibly empty (which means `/`).
    pub path: &'a str,
    /// The query after `?`, if there is a `?`.
    pub query: Option<&'a str>,
}

impl HttpUrl<'_> {
    /// `host:port` to connect to (`[v6]:port` for an IPv6 literal).
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The request target of a `GET`: the path (at least `/`) and the query.
    pub fn request_target(&self) -> String {
        let path = if self.path.is_empty() { "/" } else { self.path };
        match self.query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        }
    }
}

/// Splits an `http://` URL into its parts; a fragment (`#...`) is dropped.
///
/// Refused with [`TrackerError::BadUrl`]: other schemes (`https://` with a message saying this
/// client has no TLS), a missing host, a bad port, user names or passwords, and any space,
/// control or non-ASCII character (which could otherwise smuggle headers into the request).
pub fn parse_http_url(url: &str) -> Result<HttpUrl<'_>, TrackerError> {
    let bad = |m: &str| Err(TrackerError::BadUrl(format!("{m}: {url:?}")));
    if url.bytes().any(|b| b <= b' ' || b >= 0x7f) {
        return bad("the URL contains a space, a control or a non-ASCII character");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return bad("not an http:// URL");
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(TrackerError::BadUrl(format!(
            "https:// trackers are not supported (bitmill has no TLS); \
             use the tracker's http:// or udp:// URL instead: {url:?}"
        )));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return bad(&format!("unsupported scheme {scheme:?} (only http:// is)"));
    }
    let rest = rest.split('#').next().unwrap_or("");
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    if authority.is_empty() {
        return bad("no host");
    }
    if authority.contains('@') {
        return bad("user names and passwords in tracker URLs are not supported");
    }
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let Some((h, after)) = inner.split_once(']') else {
            return bad("unclosed '[' in the host");
        };
        if h.parse::<Ipv6Addr>().is_err() {
            return bad("bad IPv6 address in the host");
        }
        match after {
            "" => (h, None),
            p => match p.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return bad("junk after the IPv6 address"),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return bad("no host");
    }
    let port = match port {
        None | Some("") => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return bad("bad port"),
        },
    };
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    Ok(HttpUrl {
        authority,
        host,
        port,
        path,
        query,
    })
}

/// Appends `bytes` to `out`, percent-encoding everything but the RFC 3986 unreserved
/// characters (`A-Z a-z 0-9 - . _ ~`), byte by byte, with upper-case hex digits.
pub fn percent_encode(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

/// Decodes `%XX` escapes; every other byte stands for itself.
///
/// `+` is *not* turned into a space: tracker parameters are binary, every client escapes a
/// space as `%20`, and a literal `+` in an `info_hash` is the byte 0x2B. `None` for a `%` not
/// followed by two hex digits.
pub fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hi = hex(*s.get(i + 1)?)?;
            let lo = hex(*s.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The `event` parameter value of an announce, `None` for a regular announce.
fn event_name(e: Event) -> Option<&'static str> {
    match e {
        Event::None => None,
        Event::Started => Some("started"),
        Event::Completed => Some("completed"),
        Event::Stopped => Some("stopped"),
    }
}

/// The full announce URL for `req` on the tracker at `base`.
///
/// `base` may already have a query (private trackers put a passkey there): the parameters are
/// appended with `&`. Parameters, in order: `info_hash`, `peer_id` (both percent-encoded byte
/// by byte), `port`, `uploaded`, `downloaded`, `left`, `compact=1`, `numwant` (when given),
/// `key` (8 hex digits), `event` (unless a regular announce), `trackerid` (when given).
///
/// Only `http://` URLs are accepted; see [`parse_http_url`] for what is refused.
pub fn announce_url(base: &str, req: &AnnounceRequest) -> Result<String, TrackerError> {
    let url = parse_http_url(base)?;
    let base = base.split('#').next().unwrap_or(base);
    let mut s = String::with_capacity(base.len() + 256);
    s.push_str(base);
    match url.query {
        None => s.push('?'),
        Some(q) if q.is_empty() || q.ends_with('&') => {}
        Some(_) => s.push('&'),
    }
    s.push_str("info_hash=");
    percent_encode(&req.info_hash, &mut s);
    s.push_str("&peer_id=");
    percent_encode(&req.peer_id, &mut s);
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "&port={}&uploaded={}&downloaded={}&left={}&compact=1",
        req.port, req.uploaded, req.downloaded, req.left
    );
    if let Some(n) = req.numwant {
        let _ = write!(s, "&numwant={n}");
    }
    let _ = write!(s, "&key={:08x}", req.key);
    if let Some(e) = event_name(req.event) {
        s.push_str("&event=");
        s.push_str(e);
    }
    if let Some(id) = &req.tracker_id {
        s.push_str("&trackerid=");
        percent_encode(id, &mut s);
    }
    Ok(s)
}

/// The scrape URL of an announce URL, per BEP 48 and the convention every tracker follows:
/// the last path segment must start with `announce`, which becomes `scrape`
/// (`/announce` → `/scrape`, `/x/announce.php?k=1` → `/x/scrape.php?k=1`). `None` when the
/// tracker has no scrape URL by that rule.
pub fn scrape_url(announce: &str) -> Option<String> {
    let start = announce.find("://")? + 3;
    let end = announce[start..]
        .find(['?', '#'])
        .map_or(announce.len(), |i| i + start);
    let slash = announce[start..end].rfind('/')? + start;
    let segment = &announce[slash + 1..end];
    if !segment.starts_with("announce") {
        return None;
    }
    let after = slash + 1 + "announce".len();
    Some(format!(
        "{}scrape{}",
        &announce[..slash + 1],
        &announce[after..]
    ))
}

/// Where a redirect from `current` to `location` (a `Location` header) leads.
///
/// Absolute `http://` locations, scheme-relative (`//host/path`), absolute-path (`/path`) and
/// relative (`path`) references are resolved; a redirect to `https://` or any other scheme is
/// [`TrackerError::Redirect`] (this client has no TLS).
pub fn redirect_url(current: &str, location: &str) -> Result<String, TrackerError> {
    let location = location.trim();
    let target = if let Some((scheme, _)) = location
        .split_once("://")
        .filter(|(s, _)| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(TrackerError::Redirect(format!(
                "redirect to {location:?}: only http:// is supported (bitmill has no TLS)"
            )));
        }
        location.to_string()
    } else if location.starts_with("//") {
        format!("http:{location}")
    } else {
        let cur = parse_http_url(current)?;
        if location.starts_with('/') {
            format!("http://{}{location}", cur.authority)
        } else {
            let dir = match cur.path.rfind('/') {
                Some(i) => &cur.path[..=i],
                None => "/",
            };
            format!("http://{}{dir}{location}", cur.authority)
        }
    };
    parse_http_url(&target)
        .map_err(|e| TrackerError::Redirect(format!("bad redirect target: {e}")))?;
    Ok(target)
}

/// The bytes of a `GET` for `url` and the `host:port` to send them to.
///
/// HTTP/1.1 with `Host`, `User-Agent: bitmill/VERSION`, `Accept: */*` and
/// `Connection: close`, so the body ends at the latest when the tracker closes.
pub fn get_request(url: &str) -> Result<(String, Vec<u8>), TrackerError> {
    let u = parse_http_url(url)?;
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n",
        u.request_target(),
        u.authority
    );
    Ok((u.host_port(), req.into_bytes()))
}

// ---------------------------------------------------------------------------------------------
// Response bodies (client side)
// ---------------------------------------------------------------------------------------------

fn malformed(m: impl Into<String>) -> TrackerError {
    TrackerError::Malformed(m.into())
}

/// Decodes a tracker's bencoded body: one dictionary, optionally followed by ASCII
/// whitespace (some trackers end their body with a newline).
fn decode_dict(body: &[u8]) -> Result<Value<'_>, TrackerError> {
    let (v, end) = bencode::decode_prefix(body).map_err(|e| malformed(e.to_string()))?;
    if !body[end..].iter().all(u8::is_ascii_whitespace) {
        return Err(malformed(format!(
            "{} bytes of trailing data after the dictionary",
            body.len() - end
        )));
    }
    if v.as_dict().is_none() {
        return Err(malformed(format!(
            "expected a dictionary, got a {}",
            v.type_name()
        )));
    }
    Ok(v)
}

/// The text of a string value (lossy UTF-8), or of an integer.
fn text(v: &Value<'_>) -> Option<String> {
    match (v.as_bytes(), v.as_int()) {
        (Some(b), _) => Some(String::from_utf8_lossy(b).into_owned()),
        (_, Some(i)) => Some(i.to_string()),
        _ => None,
    }
}

/// `Err(Failure)` if the dictionary carries a `failure reason` (or BEP 48's `failure_reason`).
fn check_failure(v: &Value<'_>) -> Result<(), TrackerError> {
    if let Some(f) = v
        .get(b"failure reason")
        .or_else(|| v.get(b"failure_reason"))
    {
        let msg = text(f).unwrap_or_else(|| "(no reason given)".to_string());
        return Err(TrackerError::Failure(msg));
    }
    Ok(())
}

/// A count: a non-negative integer that fits 32 bits. Anything else is dropped, not fatal.
fn count(v: Option<&Value<'_>>) -> Option<u32> {
    v.and_then(Value::as_int)
        .and_then(|i| u32::try_from(i).ok())
}

/// Appends the peers of a compact string with `stride`-byte records (6: IPv4, 18: IPv6).
/// Records with port 0 cannot be dialled and are skipped.
fn compact_peers(
    b: &[u8],
    stride: usize,
    key: &str,
    out: &mut Vec<SocketAddr>,
) -> Result<(), TrackerError> {
    if b.len() % stride != 0 {
        return Err(malformed(format!(
            "`{key}` is {} bytes, not a multiple of {stride}",
            b.len()
        )));
    }
    out.reserve(b.len() / stride);
    for rec in b.chunks_exact(stride) {
        let (ip, port) = rec.split_at(stride - 2);
        let port = u16::from_be_bytes([port[0], port[1]]);
        if port == 0 {
            continue;
        }
        let ip = match <[u8; 4]>::try_from(ip) {
            Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
            Err(_) => match <[u8; 16]>::try_from(ip) {
                Ok(v6) => IpAddr::V6(Ipv6Addr::from(v6)),
                Err(_) => return Err(malformed("bad compact peer stride")),
            },
        };
        out.push(SocketAddr::new(ip, port));
    }
    Ok(())
}

/// Appends the peers of a BEP 3 list of dictionaries (`ip`, `port`, optional `peer id`).
/// An `ip` that is a host name rather than an address is skipped (resolving it is not the
/// business of a parser), as is port 0.
fn dict_peers(list: &[Value<'_>], out: &mut Vec<SocketAddr>) -> Result<(), TrackerError> {
    for p in list {
        if p.as_dict().is_none() {
            return Err(malformed(format!(
                "a peer entry is a {}, not a dictionary",
                p.type_name()
            )));
        }
        let ip = p
            .get(b"ip")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("a peer entry has no text `ip`"))?;
        let port = p
            .get(b"port")
            .and_then(Value::as_int)
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| malformed("a peer entry has no valid `port`"))?;
        let ip = ip.trim();
        let ip = ip
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(ip);
        if let (Ok(ip), true) = (ip.parse::<IpAddr>(), port != 0) {
            out.push(SocketAddr::new(ip, port));
        }
    }
    Ok(())
}

/// Parses the bencoded body of an announce response.
///
/// - `failure reason` → [`TrackerError::Failure`];
/// - `interval` is required and clamped with [`clamp_interval`]; `min interval` is optional
///   and clamped to at most [`MAX_INTERVAL`];
/// - `complete`, `incomplete` (counts that are not 32-bit non-negative integers are dropped),
///   `tracker id`, `warning message`;
/// - `peers`: a compact string (BEP 23, 6 bytes per peer; any other length is
///   [`TrackerError::Malformed`]) or a list of dictionaries with `ip` (IPv4 or IPv6 text) and
///   `port`; absent means none;
/// - `peers6`: a compact string, 18 bytes per peer (BEP 7);
/// - unknown keys are ignored; trailing whitespace after the dictionary is tolerated.
pub fn parse_announce_response(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    let v = decode_dict(body)?;
    check_failure(&v)?;
    let interval = v
        .get(b"interval")
        .and_then(Value::as_int)
        .map(clamp_interval)
        .ok_or_else(|| malformed("no integer `interval`"))?;
    let min_interval = v
        .get(b"min interval")
        .and_then(Value::as_int)
        .map(|s| Duration::from_secs(s.clamp(0, MAX_INTERVAL.as_secs() as i64) as u64));
    let mut peers = Vec::new();
    match v.get(b"peers") {
        None => {}
        Some(p) => match (p.as_bytes(), p.as_list()) {
            (Some(b), _) => compact_peers(b, 6, "peers", &mut peers)?,
            (_, Some(l)) => dict_peers(l, &mut peers)?,
            _ => {
                return Err(malformed(format!(
                    "`peers` is a {}, not a string or a list",
                    p.type_name()
                )))
            }
        },
    }
    if let Some(p6) = v.get(b"peers6") {
        let b = p6
            .as_bytes()
            .ok_or_else(|| malformed(format!("`peers6` is a {}, not a string", p6.type_name())))?;
        compact_peers(b, 18, "peers6", &mut peers)?;
    }
    Ok(AnnounceResponse {
        interval,
        min_interval,
        complete: count(v.get(b"complete")),
        incomplete: count(v.get(b"incomplete")),
        peers,
        tracker_id: v
            .get(b"tracker id")
            .and_then(Value::as_bytes)
            .map(<[u8]>::to_vec),
        warning: v.get(b"warning message").and_then(text),
    })
}

/// Parses the bencoded body of a scrape response (BEP 48) and returns the counts of
/// `info_hash`. A `failure reason` is [`TrackerError::Failure`]; a response without that
/// torrent in `files` is [`TrackerError::Malformed`]. Missing or invalid counts read as 0.
pub fn parse_scrape_response(
    body: &[u8],
    info_hash: &[u8; 20],
) -> Result<ScrapeStats, TrackerError> {
    let v = decode_dict(body)?;
    check_failure(&v)?;
    let files = v
        .get(b"files")
        .filter(|f| f.as_dict().is_some())
        .ok_or_else(|| malformed("no `files` dictionary"))?;
    let t = files
        .get(info_hash)
        .ok_or_else(|| malformed("the scrape response does not list this torrent"))?;
    if t.as_dict().is_none() {
        return Err(malformed(format!(
            "the torrent's entry is a {}, not a dictionary",
            t.type_name()
        )));
    }
    Ok(ScrapeStats {
        complete: count(t.get(b"complete")).unwrap_or(0),
        downloaded: count(t.get(b"downloaded")).unwrap_or(0),
        incomplete: count(t.get(b"incomplete")).unwrap_or(0),
    })
}

// ---------------------------------------------------------------------------------------------
// Incremental response reader (client side)
// ---------------------------------------------------------------------------------------------

/// A complete HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code. A 3xx is returned as is, with its `location`, for the caller to
    /// follow (see [`redirect_url`]).
    pub status: u16,
    /// The `Location` header, if any.
    pub location: Option<String>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// What [`ResponseReader::feed`] made of the bytes so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadProgress {
    /// The response is not complete: feed more bytes, or call [`ResponseReader::eof`] when
    /// the connection closes.
    NeedMore,
    /// The response is complete; bytes after it are ignored.
    Done(HttpResponse),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadState {
    /// Waiting for the whole status line and headers.
    Head,
    /// `Content-Length`: this many body bytes still to come.
    Length(usize),
    /// No length and not chunked: the body runs until the connection closes.
    UntilEof,
    /// Chunked: waiting for a chunk-size line.
    ChunkSize,
    /// Chunked: this many bytes of chunk data still to come.
    ChunkData(usize),
    /// Chunked: waiting for the CRLF after a chunk's data.
    ChunkEnd,
    /// Chunked: after the last chunk, reading trailer lines until an empty one.
    Trailers,
    /// The response was returned.
    Done,
    /// An error was returned; the reader is unusable.
    Failed,
}

/// A bounded, incremental HTTP/1.x response reader.
///
/// Feed it the bytes of a connection as they arrive with [`feed`](Self::feed); when the
/// connection closes call [`eof`](Self::eof). It handles `Content-Length`,
/// `Transfer-Encoding: chunked` and bodies that end when the connection does, skips `1xx`
/// interim responses, and refuses heads over its head limit (or with more than 64 headers)
/// and bodies over its body limit with [`TrackerError::TooLarge`] before buffering them. Content codings (gzip) are not
/// supported (the request does not offer them).
#[derive(Clone, Debug)]
pub struct ResponseReader {
    /// Received bytes not yet consumed (the head, or chunk framing).
    buf: Vec<u8>,
    state: ReadState,
    status: u16,
    location: Option<String>,
    body: Vec<u8>,
    /// Trailer bytes seen so far (bounded by `max_head`).
    trailer_len: usize,
    max_head: usize,
    max_body: usize,
}

impl Default for ResponseReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseReader {
    /// A reader with the default limits ([`MAX_RESPONSE_HEAD`], [`MAX_RESPONSE_BODY`]).
    pub fn new() -> Self {
        Self::with_limits(MAX_RESPONSE_HEAD, MAX_RESPONSE_BODY)
    }

    /// A reader refusing heads longer than `max_head` and bodies longer than `max_body`.
    pub fn with_limits(max_head: usize, max_body: usize) -> Self {
        ResponseReader {
            buf: Vec::new(),
            state: ReadState::Head,
            status: 0,
            location: None,
            body: Vec::new(),
            trailer_len: 0,
            max_head,
            max_body,
        }
    }

    /// Takes the next bytes received on the connection.
    ///
    /// After `Done` or an error the reader is finished: further calls are errors.
    pub fn feed(&mut self, data: &[u8]) -> Result<ReadProgress, TrackerError> {
        match self.state {
            ReadState::Done => return Err(malformed("the response is already complete")),
            ReadState::Failed => return Err(malformed("the response reader failed earlier")),
            _ => {}
        }
        self.buf.extend_from_slice(data);
        let mut pos = 0;
        let r = self.advance(&mut pos);
        if r.is_err() {
            self.state = ReadState::Failed;
        }
        if matches!(self.state, ReadState::Done | ReadState::Failed) {
            self.buf = Vec::new();
        } else {
            self.buf.drain(..pos);
        }
        r
    }

    /// The connection closed: the response ends here.
    ///
    /// Completes a body without length or chunking; anything else still incomplete is
    /// [`TrackerError::Malformed`] (a truncated response).
    pub fn eof(&mut self) -> Result<HttpResponse, TrackerError> {
        let r = match self.state {
            ReadState::UntilEof => return Ok(self.finish()),
            ReadState::Done => malformed("the response is already complete"),
            ReadState::Failed => malformed("the response reader failed earlier"),
            ReadState::Head if self.buf.is_empty() => {
                malformed("the tracker closed the connection without answering")
            }
            ReadState::Head => malformed("the connection closed inside the response head"),
            ReadState::Length(left) => malformed(format!(
                "the connection closed with {left} body bytes still missing"
            )),
            ReadState::ChunkSize
            | ReadState::ChunkData(_)
            | ReadState::ChunkEnd
            | ReadState::Trailers => malformed("the connection closed inside a chunked body"),
        };
        self.state = ReadState::Failed;
        Err(r)
    }

    fn finish(&mut self) -> HttpResponse {
        self.state = ReadState::Done;
        HttpResponse {
            status: self.status,
            location: self.location.take(),
            body: std::mem::take(&mut self.body),
        }
    }

    /// Moves up to `want` buffered bytes from `pos` into the body; returns how many.
    fn take_body(&mut self, pos: &mut usize, want: usize) -> usize {
        let n = want.min(self.buf.len() - *pos);
        self.body.extend_from_slice(&self.buf[*pos..*pos + n]);
        *pos += n;
        n
    }

    fn advance(&mut self, pos: &mut usize) -> Result<ReadProgress, TrackerError> {
        loop {
            let avail = self.buf.len() - *pos;
            match self.state {
                ReadState::Head => {
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let mut resp = httparse::Response::new(&mut headers);
                    let n = match resp.parse(&self.buf[*pos..]) {
                        Ok(httparse::Status::Partial) => {
                            if avail > self.max_head {
                                return Err(TrackerError::TooLarge);
                            }
                            return Ok(ReadProgress::NeedMore);
                        }
                        Ok(httparse::Status::Complete(n)) => n,
                        Err(httparse::Error::TooManyHeaders) => return Err(TrackerError::TooLarge),
                        Err(e) => return Err(malformed(format!("bad HTTP response head: {e}"))),
                    };
                    if n > self.max_head {
                        return Err(TrackerError::TooLarge);
                    }
                    let status = resp.code.unwrap_or(0); // a complete parse always has a code
                    *pos += n;
                    if (100..200).contains(&status) {
                        continue; // an interim response: the real one follows
                    }
                    self.status = status;
                    let mut length: Option<usize> = None;
                    let mut chunked = false;
                    for h in resp.headers.iter() {
                        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let n: usize = value
                                .parse()
                                .map_err(|_| malformed(format!("bad Content-Length {value:?}")))?;
                            if length.is_some_and(|l| l != n) {
                                return Err(malformed("conflicting Content-Length headers"));
                            }
                            length = Some(n);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            let last = value.rsplit(',').next().unwrap_or("").trim();
                            if last.eq_ignore_ascii_case("chunked") {
                                chunked = true;
                            } else if !last.eq_ignore_ascii_case("identity") {
                                return Err(malformed(format!(
                                    "unsupported Transfer-Encoding {value:?}"
                                )));
                            }
                        } else if h.name.eq_ignore_ascii_case("location") {
                            self.location = Some(value.to_string());
                        }
                    }
                    self.state = if status == 204 || status == 304 {
                        return Ok(ReadProgress::Done(self.finish()));
                    } else if chunked {
                        // Chunked wins over Content-Length (RFC 9112 §6.3).
                        ReadState::ChunkSize
                    } else if let Some(len) = length {
                        if len > self.max_body {
                            return Err(TrackerError::TooLarge);
                        }
                        if len == 0 {
                            return Ok(ReadProgress::Done(self.finish()));
                        }
                        self.body.reserve_exact(len);
                        ReadState::Length(len)
                    } else {
                        ReadState::UntilEof
                    };
                }
                ReadState::Length(left) => {
                    let n = self.take_body(pos, left);
                    if n == left {
                        return Ok(ReadProgress::Done(self.finish()));
                    }
                    self.state = ReadState::Length(left - n);
                    return Ok(ReadProgress::NeedMore);
                }
                ReadState::UntilEof => {
                    if self.body.len() + avail > self.max_body {
                        return Err(TrackerError::TooLarge);
                    }
                    self.take_body(pos, avail);
                    return Ok(ReadProgress::NeedMore);
                }
                ReadState::ChunkSize => {
                    let rest = &self.buf[*pos..];
                    if rest.first().is_some_and(|b| !b.is_ascii_hexdigit()) {
                        return Err(malformed("bad chunk size"));
                    }
                    match httparse::parse_chunk_size(rest) {
                        Ok(httparse::Status::Complete((n, size))) => {
                            *pos += n;
                            if size == 0 {
                                self.state = ReadState::Trailers;
                            } else {
                                let total = u64::try_from(self.body.len())
                                    .unwrap_or(u64::MAX)
                                    .saturating_add(size);
                                if total > self.max_body as u64 {
                                    return Err(TrackerError::TooLarge);
                                }
                                // Fits: it is at most max_body.
                                self.state = ReadState::ChunkData(size as usize);
                            }
                        }
                        Ok(httparse::Status::Partial) => {
                            if avail > MAX_CHUNK_LINE {
                                return Err(malformed("chunk-size line too long"));
                            }
                            return Ok(ReadProgress::NeedMore);
                        }
                        Err(_) => return Err(malformed("bad chunk size")),
                    }
                }
                ReadState::ChunkData(left) => {
                    let n = self.take_body(pos, left);
                    if n < left {
                        self.state = ReadState::ChunkData(left - n);
                        return Ok(ReadProgress::NeedMore);
                    }
                    self.state = ReadState::ChunkEnd;
                }
                ReadState::ChunkEnd => {
                    if avail < 2 {
                        if avail == 1 && self.buf[*pos] != b'\r' {
                            return Err(malformed("chunk data not followed by CRLF"));
                        }
                        return Ok(ReadProgress::NeedMore);
                    }
                    if &self.buf[*pos..*pos + 2] != b"\r\n" {
                        return Err(malformed("chunk data not followed by CRLF"));
                    }
                    *pos += 2;
                    self.state = ReadState::ChunkSize;
                }
                ReadState::Trailers => {
                    let rest = &self.buf[*pos..];
                    let Some(i) = rest.windows(2).position(|w| w == b"\r\n") else {
                        if self.trailer_len + avail > self.max_head {
                            return Err(TrackerError::TooLarge);
                        }
                        return Ok(ReadProgress::NeedMore);
                    };
                    *pos += i + 2;
                    self.trailer_len += i + 2;
                    if self.trailer_len > self.max_head {
                        return Err(TrackerError::TooLarge);
                    }
                    if i == 0 {
                        return Ok(ReadProgress::Done(self.finish()));
                    }
                }
                ReadState::Done | ReadState::Failed => {
                    return Err(malformed("the response reader is finished"))
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server side: requests
// ---------------------------------------------------------------------------------------------

/// An announce received over HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpAnnounce {
    /// The announce itself. `key` is 0 when the client sent none or one that is not hex;
    /// `numwant` is `None` when absent or not a non-negative number.
    pub request: AnnounceRequest,
    /// Whether the client sent `key` (the table only trusts a key it was given).
    pub has_key: bool,
    /// Compact peer lists (the default; `compact=0` asks for a list of dictionaries).
    pub compact: bool,
    /// `no_peer_id=1`: leave `peer id` out of dictionary peer lists.
    pub no_peer_id: bool,
}

/// A request to the tracker server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpRequest {
    /// `GET /announce?...`.
    Announce(HttpAnnounce),
    /// `GET /scrape?info_hash=...` (one or more).
    Scrape(Vec<[u8; 20]>),
    /// `GET /stats`.
    Stats,
}

/// Why an incoming request could not be served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The bytes are not an HTTP/1.x request (answered 400).
    BadHttp(String),
    /// The request is longer than [`MAX_REQUEST_LEN`] or has more than 64 headers
    /// (answered 431).
    TooLarge,
    /// A method other than `GET` (answered 405).
    MethodNotAllowed,
    /// A path this tracker does not serve (answered 404).
    NotFound,
    /// An announce or scrape with a missing or invalid parameter: answered, as trackers do,
    /// with HTTP 200 and a bencoded `failure reason` that the client shows its user.
    BadParam(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::BadHttp(m) => write!(f, "bad HTTP request: {m}"),
            RequestError::TooLarge => write!(f, "request longer than {MAX_REQUEST_LEN} bytes"),
            RequestError::MethodNotAllowed => write!(f, "only GET is served"),
            RequestError::NotFound => write!(f, "not found (try /announce, /scrape, /stats)"),
            RequestError::BadParam(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for RequestError {}

impl RequestError {
    /// The full HTTP response that answers this error.
    pub fn response(&self) -> Vec<u8> {
        let msg = self.to_string();
        match self {
            RequestError::BadParam(_) => {
                let mut body = Vec::new();
                encode_failure(&msg, &mut body);
                http_response(200, "text/plain", &body)
            }
            RequestError::BadHttp(_) => http_response(400, "text/plain", msg.as_bytes()),
            RequestError::TooLarge => http_response(431, "text/plain", msg.as_bytes()),
            RequestError::MethodNotAllowed => http_response(405, "text/plain", msg.as_bytes()),
            RequestError::NotFound => http_response(404, "text/plain", msg.as_bytes()),
        }
    }
}

/// The length of the request head at the start of `buf` once it is complete (`Ok(None)`:
/// not yet). The network front end reads until this is `Some`, then calls the server.
pub fn request_head_len(buf: &[u8]) -> Result<Option<usize>, RequestError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > MAX_REQUEST_LEN => Err(RequestError::TooLarge),
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if buf.len() > MAX_REQUEST_LEN => Err(RequestError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(RequestError::TooLarge),
        Err(e) => Err(RequestError::BadHttp(e.to_string())),
    }
}

/// Parses an incoming request: `Ok(None)` while the head is incomplete, else the request
/// and the length of its head (bytes after it, a body a `GET` should not have, are ignored).
pub fn parse_request(buf: &[u8]) -> Result<Option<(HttpRequest, usize)>, RequestError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_REQUEST_LEN => {
            return Err(RequestError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooLarge),
        Err(e) => return Err(RequestError::BadHttp(e.to_string())),
    };
    if n > MAX_REQUEST_LEN {
        return Err(RequestError::TooLarge);
    }
    // A complete parse has a method and a path.
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(RequestError::BadHttp("no request line".into()));
    };
    if method != "GET" {
        return Err(RequestError::MethodNotAllowed);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let r = match path {
        "/announce" => HttpRequest::Announce(parse_announce_query(query)?),
        "/scrape" => HttpRequest::Scrape(parse_scrape_query(query)?),
        "/stats" => HttpRequest::Stats,
        _ => return Err(RequestError::NotFound),
    };
    Ok(Some((r, n)))
}

/// The `key=value` pairs of a query; a pair without `=` has an empty value. Keys are
/// compared as sent (clients do not escape parameter names).
fn query_pairs(q: &str) -> impl Iterator<Item = (&str, &str)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
}

fn bad_param(m: impl Into<String>) -> RequestError {
    RequestError::BadParam(m.into())
}

fn decode_param(name: &str, value: &str) -> Result<Vec<u8>, RequestError> {
    percent_decode(value.as_bytes())
        .ok_or_else(|| bad_param(format!("`{name}` has an invalid percent-encoding")))
}

fn hash20(name: &str, value: &str) -> Result<[u8; 20], RequestError> {
    let v = decode_param(name, value)?;
    <[u8; 20]>::try_from(v.as_slice()).map_err(|_| {
        bad_param(format!(
            "`{name}` must be 20 bytes once percent-decoded, got {}",
            v.len()
        ))
    })
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, RequestError> {
    let v = decode_param(name, value)?;
    std::str::from_utf8(&v)
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad_param(format!("`{name}` is not a valid number: {value:?}")))
}

/// Parses the query of `GET /announce`.
///
/// Required: `info_hash`, `peer_id` (20 bytes each once decoded, given once), `port`,
/// `left`. Optional: `uploaded`, `downloaded` (default 0), `event` (`started`, `completed`,
/// `stopped`; anything else, `paused` included, is a regular announce), `numwant`, `key`
/// (hex), `trackerid`, `compact`, `no_peer_id`. `ip` is ignored: the table uses the address
/// the request came from. Unknown parameters are ignored.
pub fn parse_announce_query(q: &str) -> Result<HttpAnnounce, RequestError> {
    let mut info_hash = None;
    let mut peer_id = None;
    let mut port = None;
    let mut left = None;
    let mut uploaded = 0u64;
    let mut downloaded = 0u64;
    let mut event = Event::None;
    let mut numwant = None;
    let mut key = None;
    let mut tracker_id = None;
    let mut compact = true;
    let mut no_peer_id = false;
    for (k, v) in query_pairs(q) {
        match k {
            "info_hash" => {
                let twice = info_hash.replace(hash20(k, v)?).is_some();
                if twice {
                    return Err(bad_param("`info_hash` given twice in an announce"));
                }
            }
            "peer_id" => {
                let twice = peer_id.replace(hash20(k, v)?).is_some();
                if twice {
                    return Err(bad_param("`peer_id` given twice"));
                }
            }
            "port" => port = Some(number::<u16>(k, v)?),
            "left" => left = Some(number::<u64>(k, v)?),
            "uploaded" => uploaded = number(k, v)?,
            "downloaded" => downloaded = number(k, v)?,
            "event" => {
                event = match v {
                    "started" => Event::Started,
                    "completed" => Event::Completed,
                    "stopped" => Event::Stopped,
                    _ => Event::None,
                }
            }
            "numwant" => numwant = number::<u32>(k, v).ok(),
            "key" => {
                key = Some(
                    decode_param(k, v)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .filter(|s| !s.is_empty() && s.len() <= 8)
                        .and_then(|s| u32::from_str_radix(&s, 16).ok())
                        .unwrap_or(0),
                )
            }
            "trackerid" => tracker_id = Some(decode_param(k, v)?),
            "compact" => compact = v != "0",
            "no_peer_id" => no_peer_id = v == "1",
            _ => {}
        }
    }
    let info_hash = info_hash.ok_or_else(|| bad_param("missing `info_hash`"))?;
    let peer_id = peer_id.ok_or_else(|| bad_param("missing `peer_id`"))?;
    let port = port.ok_or_else(|| bad_param("missing `port`"))?;
    let left = left.ok_or_else(|| bad_param("missing `left`"))?;
    Ok(HttpAnnounce {
        request: AnnounceRequest {
            info_hash,
            peer_id,
            port,
            uploaded,
            downloaded,
            left,
            event,
            numwant,
            key: key.unwrap_or(0),
            tracker_id,
        },
        has_key: key.is_some(),
        compact,
        no_peer_id,
    })
}

/// Parses the query of `GET /scrape`: one or more `info_hash`. A scrape without any (a
/// "full scrape" of every torrent) is refused: it is expensive and leaks the torrent list.
pub fn parse_scrape_query(q: &str) -> Result<Vec<[u8; 20]>, RequestError> {
    let mut hashes = Vec::new();
    for (k, v) in query_pairs(q) {
        if k == "info_hash" {
            hashes.push(hash20(k, v)?);
        }
    }
    if hashes.is_empty() {
        return Err(bad_param(
            "a scrape needs at least one `info_hash` (full scrapes are not served)",
        ));
    }
    Ok(hashes)
}

// ---------------------------------------------------------------------------------------------
// Server side: responses
// ---------------------------------------------------------------------------------------------

fn secs_i64(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Appends the bencoded body answering an announce.
///
/// Keys, sorted: `complete`, `incomplete`, `interval`, `min interval`, `peers`, and
/// `peers6` when there are IPv6 peers. Compact (the default): `peers` is a string of 6-byte
/// IPv4 records (BEP 23) and `peers6` a string of 18-byte IPv6 records (BEP 7).
/// `compact == false`: `peers` is a list of dictionaries `ip`, `peer id` (unless
/// `no_peer_id`), `port` holding both families.
pub fn encode_announce_reply(
    reply: &AnnounceReply,
    compact: bool,
    no_peer_id: bool,
    out: &mut Vec<u8>,
) {
    let mut e = Encoder::new(out);
    e.dict();
    e.bytes(b"complete").int(i64::from(reply.complete));
    e.bytes(b"incomplete").int(i64::from(reply.incomplete));
    e.bytes(b"interval").int(secs_i64(reply.interval));
    e.bytes(b"min interval").int(secs_i64(reply.min_interval));
    e.bytes(b"peers");
    if compact {
        let mut v4 = Vec::with_capacity(reply.peers.len() * 6);
        let mut v6 = Vec::new();
        for p in &reply.peers {
            match p.addr {
                SocketAddr::V4(a) => {
                    v4.extend_from_slice(&a.ip().octets());
                    v4.extend_from_slice(&a.port().to_be_bytes());
                }
                SocketAddr::V6(a) => {
                    v6.extend_from_slice(&a.ip().octets());
                    v6.extend_from_slice(&a.port().to_be_bytes());
                }
            }
        }
        e.bytes(&v4);
        if !v6.is_empty() {
            e.bytes(b"peers6").bytes(&v6);
        }
    } else {
        e.list();
        for p in &reply.peers {
            e.dict();
            e.bytes(b"ip").bytes(p.addr.ip().to_string().as_bytes());
            if !no_peer_id {
                e.bytes(b"peer id").bytes(&p.peer_id);
            }
            e.bytes(b"port").int(i64::from(p.addr.port()));
            e.end();
        }
        e.end();
    }
    e.end();
}

/// Appends the bencoded body answering a scrape: `files`, one entry per torrent with
/// `complete`, `downloaded`, `incomplete`. Entries are sorted by info hash as bencode
/// requires; a hash asked for twice appears once.
pub fn encode_scrape_reply(files: &[([u8; 20], ScrapeStats)], out: &mut Vec<u8>) {
    let mut sorted: Vec<&([u8; 20], ScrapeStats)> = files.iter().collect();
    sorted.sort_by_key(|a| a.0);
    sorted.dedup_by(|a, b| a.0 == b.0);
    let mut e = Encoder::new(out);
    e.dict().bytes(b"files").dict();
    for (h, s) in sorted {
        e.bytes(h).dict();
        e.bytes(b"complete").int(i64::from(s.complete));
        e.bytes(b"downloaded").int(i64::from(s.downloaded));
        e.bytes(b"incomplete").int(i64::from(s.incomplete));
        e.end();
    }
    e.end().end();
}

/// Appends a bencoded `failure reason` body.
pub fn encode_failure(reason: &str, out: &mut Vec<u8>) {
    Encoder::new(out)
        .dict()
        .bytes(b"failure reason")
        .bytes(reason.as_bytes())
        .end();
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A complete HTTP/1.1 response: status line, `Content-Type`, `Content-Length`,
/// `Connection: close`, then `body`.
pub fn http_response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            reason_phrase(status),
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests;
