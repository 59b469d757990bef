//! Unit tests of the parent module, compiled only under `#[cfg(test)]`.
use super::*;
use crate::rng::Rng;
use crate::tracker::server::PeerEntry;

fn sample_request() -> AnnounceRequest {
    let mut info_hash = [0u8; 20];
    let mut peer_id = [0u8; 20];
    for i in 0..20 {
        info_hash[i] = (i as u8).wrapping_mul(37).wrapping_add(0xF0);
        peer_id[i] = b"-BM0100- %&+=?#/\x00\xff\x7f~"[i];
    }
    AnnounceRequest {
        info_hash,
        peer_id,
        port: 6881,
        uploaded: 12345,
        downloaded: 678,
        left: 9_000_000_000,
        event: Event::Started,
        numwant: Some(80),
        key: 0xDEAD_BEEF,
        tracker_id: Some(b"tr id&=".to_vec()),
    }
}

fn random_request(rng: &mut Rng) -> AnnounceRequest {
    let mut info_hash = [0u8; 20];
    let mut peer_id = [0u8; 20];
    rng.fill(&mut info_hash);
    rng.fill(&mut peer_id);
    let events = [
        Event::None,
        Event::Started,
        Event::Completed,
        Event::Stopped,
    ];
    AnnounceRequest {
        info_hash,
        peer_id,
        port: rng.below(65536) as u16,
        uploaded: rng.next() >> rng.below(64),
        downloaded: rng.next() >> rng.below(64),
        left: rng.next() >> rng.below(64),
        event: events[rng.below(4) as usize],
        numwant: (rng.below(2) == 0).then(|| rng.below(1000) as u32),
        key: rng.next() as u32,
        tracker_id: (rng.below(2) == 0).then(|| {
            let mut t = vec![0u8; rng.below(12) as usize];
            rng.fill(&mut t);
            t
        }),
    }
}

/// What the server makes of the request a client builds for `base` and `req`.
fn server_view(base: &str, req: &AnnounceRequest) -> HttpAnnounce {
    let url = announce_url(base, req).unwrap();
    let (_, bytes) = get_request(&url).unwrap();
    match parse_request(&bytes).unwrap() {
        Some((HttpRequest::Announce(a), n)) => {
            assert_eq!(n, bytes.len());
            a
        }
        other => panic!("expected an announce, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// URLs
// ---------------------------------------------------------------------------------------------

#[test]
fn announce_url_round_trips_through_the_server_parser() {
    let req = sample_request();
    let a = server_view("http://tracker.example:6969/announce", &req);
    assert_eq!(a.request, req);
    assert!(a.has_key);
    assert!(a.compact);
    let mut rng = Rng::new(7);
    for _ in 0..2000 {
        let req = random_request(&mut rng);
        let a = server_view("http://127.0.0.1/announce", &req);
        // `trackerid=` with an empty value reads back as an empty id: same thing.
        assert_eq!(a.request, req);
    }
}

#[test]
fn announce_url_encodes_binary_bytewise() {
    let mut req = sample_request();
    req.info_hash = [0; 20];
    req.info_hash[..4].copy_from_slice(b"a-~ ");
    req.info_hash[19] = 0xFF;
    req.event = Event::None;
    req.numwant = None;
    req.tracker_id = None;
    let url = announce_url("http://t.example/announce", &req).unwrap();
    assert!(url.starts_with(
        "http://t.example/announce?info_hash=a-~%20%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%FF&peer_id="
    ));
    assert!(url.contains(
        "&port=6881&uploaded=12345&downloaded=678&left=9000000000&compact=1&key=deadbeef"
    ));
    assert!(!url.contains("numwant"));
    assert!(!url.contains("event"));
    assert!(!url.contains("trackerid"));
    assert!(!url.contains('+') && !url.contains(' '));
}

#[test]
fn announce_url_appends_to_an_existing_query() {
    let req = sample_request();
    let url = announce_url("http://t.example/announce?passkey=abc", &req).unwrap();
    assert!(url.starts_with("http://t.example/announce?passkey=abc&info_hash="));
    let url = announce_url("http://t.example/announce?passkey=abc&", &req).unwrap();
    assert!(url.starts_with("http://t.example/announce?passkey=abc&info_hash="));
    let url = announce_url("http://t.example/announce?", &req).unwrap();
    assert!(url.starts_with("http://t.example/announce?info_hash="));
    // A fragment is not part of what is sent.
    let url = announce_url("http://t.example/announce#frag", &req).unwrap();
    assert!(url.starts_with("http://t.example/announce?info_hash="));
    assert!(!url.contains("frag"));
    // The server ignores the passkey and still reads the same announce.
    assert_eq!(
        server_view("http://t.example/announce?passkey=abc", &req).request,
        req
    );
}

#[test]
fn https_and_other_schemes_are_refused() {
    let req = sample_request();
    match announce_url("https://t.example/announce", &req) {
        Err(TrackerError::BadUrl(m)) => assert!(m.contains("TLS"), "{m}"),
        other => panic!("{other:?}"),
    }
    match get_request("HTTPS://t.example/announce") {
        Err(TrackerError::BadUrl(m)) => assert!(m.contains("https://"), "{m}"),
        other => panic!("{other:?}"),
    }
    for url in [
        "udp://t.example:80",
        "ftp://x/announce",
        "t.example/announce",
    ] {
        assert!(
            matches!(announce_url(url, &req), Err(TrackerError::BadUrl(_))),
            "{url}"
        );
    }
}

#[test]
fn bad_urls_are_refused() {
    for url in [
        "http://",
        "http:///announce",
        "http://t.example:0/announce",
        "http://t.example:99999/announce",
        "http://t.example:+80/announce",
        "http://user:pw@t.example/announce",
        "http://t.example/ann ounce",
        "http://t.example/announce\r\nX-Evil: 1",
        "http://t.example/annonce\u{e9}",
        "http://[::1/announce",
        "http://[nothex]/announce",
        "http://[::1]x/announce",
        "http://:80/announce",
    ] {
        assert!(
            matches!(parse_http_url(url), Err(TrackerError::BadUrl(_))),
            "{url:?} accepted"
        );
    }
}

#[test]
fn url_parts_and_get_request() {
    let u = parse_http_url("http://[::1]:6969/announce?x=1").unwrap();
    assert_eq!(u.host, "::1");
    assert_eq!(u.port, 6969);
    assert_eq!(u.authority, "[::1]:6969");
    assert_eq!(u.host_port(), "[::1]:6969");
    assert_eq!(u.request_target(), "/announce?x=1");
    let u = parse_http_url("HTTP://T.example").unwrap();
    assert_eq!(
        (u.host, u.port, u.path, u.query),
        ("T.example", 80, "", None)
    );
    assert_eq!(u.request_target(), "/");
    let u = parse_http_url("http://t.example?a=b").unwrap();
    assert_eq!(u.request_target(), "/?a=b");

    let (hp, bytes) = get_request("http://t.example:8080/a/announce?k=v").unwrap();
    assert_eq!(hp, "t.example:8080");
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        text.starts_with("GET /a/announce?k=v HTTP/1.1\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nHost: t.example:8080\r\n"));
    assert!(text.contains(&format!(
        "\r\nUser-Agent: bitmill/{}\r\n",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(text.contains("\r\nConnection: close\r\n"));
    assert!(text.ends_with("\r\n\r\n"));
}

#[test]
fn percent_encoding_round_trips_every_byte() {
    let all: Vec<u8> = (0..=255).collect();
    let mut s = String::new();
    percent_encode(&all, &mut s);
    assert!(s.bytes().all(|b| b.is_ascii_graphic()));
    assert_eq!(percent_decode(s.as_bytes()).unwrap(), all);
    let mut s = String::new();
    percent_encode(b"Az09-._~ +/", &mut s);
    assert_eq!(s, "Az09-._~%20%2B%2F");
    // `+` is the byte 0x2B, not a space; lower-case hex is fine; bad escapes are refused.
    assert_eq!(percent_decode(b"a+b%2b%2B").unwrap(), b"a+b++");
    for bad in [&b"%"[..], b"%2", b"%zz", b"ab%g0"] {
        assert_eq!(percent_decode(bad), None, "{bad:?}");
    }
}

#[test]
fn scrape_url_follows_bep48() {
    let cases = [
        ("http://t.example/announce", Some("http://t.example/scrape")),
        (
            "http://t.example/x/announce",
            Some("http://t.example/x/scrape"),
        ),
        (
            "http://t.example/x/announce.php",
            Some("http://t.example/x/scrape.php"),
        ),
        (
            "http://t.example/announce?passkey=1",
            Some("http://t.example/scrape?passkey=1"),
        ),
        (
            "http://t.example:81/announce#f",
            Some("http://t.example:81/scrape#f"),
        ),
        ("http://t.example/x%064announce", None),
        ("http://t.example/a", None),
        ("http://t.example/announce/x", None),
        ("http://t.example/announce/", None),
        ("http://t.example?x=/announce", None),
        ("http://t.example", None),
        ("announce", None),
    ];
    for (a, want) in cases {
        assert_eq!(scrape_url(a).as_deref(), want, "{a}");
    }
}

#[test]
fn redirects_resolve_and_https_is_refused() {
    let cur = "http://t.example:81/dir/announce?x=1";
    let cases = [
        ("http://other/announce", "http://other/announce"),
        ("//other:82/a", "http://other:82/a"),
        ("/new?y=2", "http://t.example:81/new?y=2"),
        ("announce2?z", "http://t.example:81/dir/announce2?z"),
    ];
    for (loc, want) in cases {
        assert_eq!(redirect_url(cur, loc).unwrap(), want, "{loc}");
    }
    for loc in ["https://t.example/announce", "ftp://x/y"] {
        match redirect_url(cur, loc) {
            Err(TrackerError::Redirect(m)) => assert!(m.contains("http://"), "{m}"),
            other => panic!("{loc}: {other:?}"),
        }
    }
    assert!(matches!(
        redirect_url(cur, "http://bad host/"),
        Err(TrackerError::Redirect(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Announce and scrape bodies
// ---------------------------------------------------------------------------------------------

fn v4(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port)
}

fn v6(s: &str, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(s.parse().unwrap()), port)
}

fn ok(body: &[u8]) -> AnnounceResponse {
    parse_announce_response(body)
        .unwrap_or_else(|e| panic!("{e}: {:?}", body.escape_ascii().to_string()))
}

/// A body with compact peers, peers6, and every optional key.
fn full_body() -> Vec<u8> {
    let mut b =
        b"d8:completei5e10:incompletei7e8:intervali1800e12:min intervali900e5:peers12:".to_vec();
    b.extend_from_slice(&[10, 0, 0, 1, 0x1A, 0xE1, 192, 168, 1, 2, 0, 80]);
    b.extend_from_slice(b"6:peers618:");
    b.extend_from_slice(&[
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x1A, 0xE2,
    ]);
    b.extend_from_slice(b"10:tracker id3:abc15:warning message4:caree");
    b
}

#[test]
fn compact_peers_and_peers6() {
    let r = ok(&full_body());
    assert_eq!(r.interval, Duration::from_secs(1800));
    assert_eq!(r.min_interval, Some(Duration::from_secs(900)));
    assert_eq!(r.complete, Some(5));
    assert_eq!(r.incomplete, Some(7));
    assert_eq!(
        r.peers,
        vec![
            v4([10, 0, 0, 1], 6881),
            v4([192, 168, 1, 2], 80),
            v6("2001:db8::1", 6882)
        ]
    );
    assert_eq!(r.tracker_id.as_deref(), Some(&b"abc"[..]));
    assert_eq!(r.warning.as_deref(), Some("care"));
}

#[test]
fn dict_peers_v4_v6_and_names() {
    let body = b"d8:intervali60e5:peersld2:ip8:10.0.0.17:peer id20:AAAAAAAAAAAAAAAAAAAA4:porti6881eed2:ip11:2001:db8::24:porti1eed2:ip13:[2001:db8::3]4:porti2eed2:ip16:tracker.example.4:porti3eed2:ip7:1.2.3.44:porti0eeee";
    let r = ok(body);
    assert_eq!(
        r.peers,
        vec![
            v4([10, 0, 0, 1], 6881),
            v6("2001:db8::2", 1),
            v6("2001:db8::3", 2)
        ]
    );
    assert_eq!(r.complete, None);
    assert_eq!(r.min_interval, None);
    // No peers at all is fine.
    assert!(ok(b"d8:intervali60ee").peers.is_empty());
    assert!(ok(b"d8:intervali60e5:peers0:e").peers.is_empty());
    assert!(ok(b"d8:intervali60e5:peerslee").peers.is_empty());
}

#[test]
fn failure_reason_and_warning() {
    assert_eq!(
        parse_announce_response(b"d14:failure reason17:torrent not founde"),
        Err(TrackerError::Failure("torrent not found".into()))
    );
    // A failure wins even if the rest looks like a success.
    assert_eq!(
        parse_announce_response(b"d14:failure reason1:x8:intervali60ee"),
        Err(TrackerError::Failure("x".into()))
    );
    assert_eq!(
        parse_announce_response(b"d14:failure reasoni3ee"),
        Err(TrackerError::Failure("3".into()))
    );
    let r = ok(b"d8:intervali60e15:warning message5:hello5:peers0:e");
    assert_eq!(r.warning.as_deref(), Some("hello"));
}

#[test]
fn intervals_are_clamped_and_required() {
    assert_eq!(ok(b"d8:intervali1ee").interval, MIN_INTERVAL);
    assert_eq!(ok(b"d8:intervali-5ee").interval, MIN_INTERVAL);
    assert_eq!(ok(b"d8:intervali99999999999ee").interval, MAX_INTERVAL);
    assert_eq!(
        ok(b"d8:intervali3600ee").interval,
        Duration::from_secs(3600)
    );
    assert_eq!(
        ok(b"d8:intervali60e12:min intervali-1ee").min_interval,
        Some(Duration::ZERO)
    );
    assert_eq!(
        ok(b"d8:intervali60e12:min intervali999999999ee").min_interval,
        Some(MAX_INTERVAL)
    );
    for bad in [&b"de"[..], b"d8:interval2:60e", b"d5:peers0:e"] {
        assert!(
            matches!(
                parse_announce_response(bad),
                Err(TrackerError::Malformed(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn bad_counts_are_dropped_not_fatal() {
    let r = ok(b"d8:completei-1e10:incomplete1:x8:intervali60ee");
    assert_eq!((r.complete, r.incomplete), (None, None));
    let r = ok(b"d8:completei4294967296e8:intervali60ee");
    assert_eq!(r.complete, None);
}

#[test]
fn malformed_peers_are_errors() {
    for bad in [
        &b"d8:intervali60e5:peers5:abcdee"[..],
        b"d8:intervali60e5:peers7:abcdefge",
        b"d8:intervali60e5:peersi3ee",
        b"d8:intervali60e5:peersli1eee",
        b"d8:intervali60e5:peersld4:porti1eeee",
        b"d8:intervali60e5:peersld2:ip7:1.2.3.4eee",
        b"d8:intervali60e5:peersld2:ip7:1.2.3.44:porti70000eeee",
        b"d8:intervali60e6:peers66:abcdefe",
        b"d8:intervali60e6:peers6lee",
    ] {
        match parse_announce_response(bad) {
            Err(TrackerError::Malformed(_)) => {}
            other => panic!("{:?}: {other:?}", bad.escape_ascii().to_string()),
        }
    }
}

#[test]
fn unknown_keys_ignored_trailing_whitespace_tolerated_garbage_not() {
    let r = ok(b"d8:intervali60e3:zzzld1:ai1eee5:peers0:e\r\n");
    assert_eq!(r.interval, Duration::from_secs(60));
    for bad in [
        &b""[..],
        b"<html>502 Bad Gateway</html>",
        b"d8:intervali60eeX",
        b"d8:intervali60eed8:intervali60ee",
        b"le",
        b"i3e",
        b"d8:intervali60e8:intervali60ee",
    ] {
        assert!(
            matches!(
                parse_announce_response(bad),
                Err(TrackerError::Malformed(_))
            ),
            "{:?}",
            bad.escape_ascii().to_string()
        );
    }
}

fn scrape_body() -> Vec<u8> {
    let mut b = b"d5:filesd20:".to_vec();
    b.extend_from_slice(&[7u8; 20]);
    b.extend_from_slice(b"d8:completei11e10:downloadedi13772e10:incompletei19ee20:");
    b.extend_from_slice(&[8u8; 20]);
    b.extend_from_slice(b"d8:completei1eeee");
    b
}

#[test]
fn scrape_responses() {
    let b = scrape_body();
    assert_eq!(
        parse_scrape_response(&b, &[7; 20]),
        Ok(ScrapeStats {
            complete: 11,
            downloaded: 13772,
            incomplete: 19
        })
    );
    assert_eq!(
        parse_scrape_response(&b, &[8; 20]),
        Ok(ScrapeStats {
            complete: 1,
            downloaded: 0,
            incomplete: 0
        })
    );
    assert!(matches!(
        parse_scrape_response(&b, &[9; 20]),
        Err(TrackerError::Malformed(_))
    ));
    assert_eq!(
        parse_scrape_response(b"d14:failure reason2:noe", &[7; 20]),
        Err(TrackerError::Failure("no".into()))
    );
    assert_eq!(
        parse_scrape_response(b"d14:failure_reason3:bepe", &[7; 20]),
        Err(TrackerError::Failure("bep".into()))
    );
    for bad in [&b"de"[..], b"d5:filesi1ee", b"d5:filesle"] {
        assert!(parse_scrape_response(bad, &[7; 20]).is_err());
    }
}

#[test]
fn every_prefix_of_a_valid_body_errors() {
    let dict = b"d8:intervali60e5:peersld2:ip8:10.0.0.14:porti6881eeee".to_vec();
    for body in [full_body(), dict] {
        assert!(parse_announce_response(&body).is_ok());
        for n in 0..body.len() {
            assert!(
                parse_announce_response(&body[..n]).is_err(),
                "prefix of {n} bytes accepted"
            );
        }
    }
    let body = scrape_body();
    for n in 0..body.len() {
        assert!(parse_scrape_response(&body[..n], &[7; 20]).is_err());
    }
}

#[test]
fn random_and_mutated_bodies_never_panic() {
    let mut rng = Rng::new(0xB0D1);
    let seeds = [full_body(), scrape_body()];
    for i in 0..20_000 {
        let body: Vec<u8> = if i % 2 == 0 {
            let mut b = vec![0u8; rng.below(64) as usize];
            rng.fill(&mut b);
            b
        } else {
            let mut b = seeds[i % 4 / 2].clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(b.len() as u64) as usize;
                match rng.below(3) {
                    0 => b[at] = rng.next() as u8,
                    1 => {
                        b.remove(at);
                    }
                    _ => b.insert(at, b"0123456789:eild"[rng.below(15) as usize]),
                }
            }
            b
        };
        let _ = parse_announce_response(&body);
        let _ = parse_scrape_response(&body, &[7; 20]);
    }
}

// ---------------------------------------------------------------------------------------------
// Response reader
// ---------------------------------------------------------------------------------------------

/// Feeds `input` in two parts split at `at`; then `eof` if still not done.
fn read_split(input: &[u8], at: usize) -> Result<HttpResponse, TrackerError> {
    let mut r = ResponseReader::new();
    for part in [&input[..at], &input[at..]] {
        if let ReadProgress::Done(resp) = r.feed(part)? {
            return Ok(resp);
        }
    }
    r.eof()
}

/// Feeds `input` one byte at a time; checks it is `Done` exactly at the last byte (if
/// `framed`) and returns the response.
fn read_bytewise(input: &[u8], framed: bool) -> HttpResponse {
    let mut r = ResponseReader::new();
    for (i, b) in input.iter().enumerate() {
        match r.feed(std::slice::from_ref(b)).unwrap() {
            ReadProgress::Done(resp) => {
                assert!(framed && i == input.len() - 1, "done early at byte {i}");
                return resp;
            }
            ReadProgress::NeedMore => {}
        }
    }
    assert!(!framed, "never done");
    r.eof().unwrap()
}

const BODY: &[u8] = b"d8:intervali1800e5:peers6:\x0a\x00\x00\x01\x1a\xe1e";

fn length_response() -> Vec<u8> {
    let mut v = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        BODY.len()
    )
    .into_bytes();
    v.extend_from_slice(BODY);
    v
}

fn chunked_response() -> Vec<u8> {
    let mut v =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n".to_vec();
    let (a, b) = BODY.split_at(10);
    v.extend_from_slice(format!("{:x};ext=1\r\n", a.len()).as_bytes());
    v.extend_from_slice(a);
    v.extend_from_slice(format!("\r\n{:X}\r\n", b.len()).as_bytes());
    v.extend_from_slice(b);
    v.extend_from_slice(b"\r\n0\r\nX-Trailer: yes\r\n\r\n");
    v
}

fn eof_response() -> Vec<u8> {
    let mut v = b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\n".to_vec();
    v.extend_from_slice(BODY);
    v
}

#[test]
fn content_length_chunked_and_eof_bodies_split_at_every_byte() {
    for (input, framed) in [
        (length_response(), true),
        (chunked_response(), true),
        (eof_response(), false),
    ] {
        for at in 0..=input.len() {
            let resp = read_split(&input, at).unwrap();
            assert_eq!(resp.status, 200);
            assert_eq!(resp.body, BODY, "split at {at}");
            assert_eq!(resp.location, None);
        }
        let resp = read_bytewise(&input, framed);
        assert_eq!(resp.body, BODY);
        assert!(parse_announce_response(&resp.body).is_ok());
    }
}

#[test]
fn bytes_after_a_framed_response_are_ignored_and_the_reader_finishes() {
    let mut input = length_response();
    input.extend_from_slice(b"junk after the body");
    let mut r = ResponseReader::new();
    match r.feed(&input).unwrap() {
        ReadProgress::Done(resp) => assert_eq!(resp.body, BODY),
        ReadProgress::NeedMore => panic!("not done"),
    }
    assert!(r.feed(b"x").is_err());
    assert!(r.eof().is_err());
}

#[test]
fn redirect_is_reported() {
    let input = b"HTTP/1.1 302 Found\r\nLocation:  http://other.example/announce?x=1 \r\nContent-Length: 0\r\n\r\n";
    for at in 0..=input.len() {
        let resp = read_split(input, at).unwrap();
        assert_eq!(resp.status, 302);
        assert_eq!(
            resp.location.as_deref(),
            Some("http://other.example/announce?x=1")
        );
        assert!(resp.body.is_empty());
    }
    // A 204 has no body even without a length.
    let resp = read_split(b"HTTP/1.1 204 No Content\r\n\r\n", 5).unwrap();
    assert_eq!((resp.status, resp.body.len()), (204, 0));
}

#[test]
fn interim_responses_are_skipped() {
    let mut input = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
    input.extend_from_slice(&length_response());
    for at in 0..=input.len() {
        let resp = read_split(&input, at).unwrap();
        assert_eq!((resp.status, &resp.body[..]), (200, BODY));
    }
}

#[test]
fn oversize_heads_and_bodies_are_too_large() {
    // A head that never ends.
    let mut r = ResponseReader::new();
    let mut res = Ok(ReadProgress::NeedMore);
    let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    r.feed(b"HTTP/1.1 200 OK\r\n").unwrap();
    for _ in 0..1000 {
        res = r.feed(line);
        if res.is_err() {
            break;
        }
    }
    assert_eq!(res, Err(TrackerError::TooLarge));
    // A complete head that is too large.
    let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
    while big.len() <= MAX_RESPONSE_HEAD {
        big.extend_from_slice(line);
    }
    big.extend_from_slice(b"\r\n");
    assert_eq!(
        ResponseReader::new().feed(&big),
        Err(TrackerError::TooLarge)
    );
    // A declared length over the limit is refused before any body byte arrives.
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
        MAX_RESPONSE_BODY + 1
    );
    assert_eq!(
        ResponseReader::new().feed(head.as_bytes()),
        Err(TrackerError::TooLarge)
    );
    // Chunks adding up to more than the limit.
    let mut r = ResponseReader::with_limits(1024, 100);
    r.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    assert_eq!(r.feed(b"32\r\n"), Ok(ReadProgress::NeedMore));
    r.feed(&[b'a'; 50]).unwrap();
    assert_eq!(r.feed(b"\r\n33\r\n"), Err(TrackerError::TooLarge));
    // A body until EOF over the limit.
    let mut r = ResponseReader::with_limits(1024, 100);
    r.feed(b"HTTP/1.0 200 OK\r\n\r\n").unwrap();
    r.feed(&[b'a'; 100]).unwrap();
    assert_eq!(r.feed(b"a"), Err(TrackerError::TooLarge));
    // After an error the reader stays failed.
    assert!(r.feed(b"").is_err());
}

#[test]
fn truncated_responses_error_at_eof() {
    for input in [length_response(), chunked_response()] {
        for n in 0..input.len() {
            let mut r = ResponseReader::new();
            if let Ok(ReadProgress::Done(_)) = r.feed(&input[..n]) {
                panic!("done after {n} of {} bytes", input.len());
            }
            assert!(
                matches!(r.eof(), Err(TrackerError::Malformed(_))),
                "eof after {n} bytes accepted"
            );
        }
    }
}

#[test]
fn bad_framing_is_malformed() {
    for input in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX",
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
    ] {
        let mut r = ResponseReader::new();
        assert!(
            matches!(r.feed(input), Err(TrackerError::Malformed(_))),
            "{:?}",
            input.escape_ascii().to_string()
        );
    }
    // A chunk-size line that never ends.
    let mut r = ResponseReader::new();
    r.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;")
        .unwrap();
    assert!(r.feed(&[b'x'; 2000]).is_err());
}

#[test]
fn reader_fuzz_never_panics_and_split_points_do_not_matter() {
    let mut rng = Rng::new(0x5EED);
    let seeds = [length_response(), chunked_response(), eof_response()];
    for i in 0..5000 {
        let mut input = seeds[i % 3].clone();
        if i % 2 == 1 {
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(input.len() as u64) as usize;
                input[at] = rng.next() as u8;
            }
        }
        // Whole, and in random pieces: the same outcome.
        let whole = {
            let mut r = ResponseReader::new();
            match r.feed(&input) {
                Ok(ReadProgress::Done(resp)) => Ok(resp),
                Ok(ReadProgress::NeedMore) => r.eof(),
                Err(e) => Err(e),
            }
        };
        let mut r = ResponseReader::new();
        let mut pieces = Err(TrackerError::Timeout);
        let mut at = 0;
        while at < input.len() {
            let n = 1 + rng.below(16) as usize;
            let end = (at + n).min(input.len());
            match r.feed(&input[at..end]) {
                Ok(ReadProgress::NeedMore) => {}
                Ok(ReadProgress::Done(resp)) => {
                    pieces = Ok(resp);
                    break;
                }
                Err(e) => {
                    pieces = Err(e);
                    break;
                }
            }
            at = end;
        }
        if pieces == Err(TrackerError::Timeout) {
            pieces = r.eof();
        }
        assert_eq!(
            whole.is_ok(),
            pieces.is_ok(),
            "{:?}",
            input.escape_ascii().to_string()
        );
        if let (Ok(a), Ok(b)) = (&whole, &pieces) {
            assert_eq!(a, b);
        }
        // Pure noise.
        let mut noise = vec![0u8; rng.below(200) as usize];
        rng.fill(&mut noise);
        let mut r = ResponseReader::new();
        let _ = r.feed(&noise);
        let _ = r.eof();
    }
}

// ---------------------------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------------------------

fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

fn parse_err(target: &str) -> RequestError {
    match parse_request(&get(target)) {
        Err(e) => e,
        Ok(r) => panic!("{target}: accepted as {r:?}"),
    }
}

const IH: &str = "%01%02%03%04%05%06%07%08%09%0A%0B%0C%0D%0E%0F%10%11%12%13%14";
const PID: &str = "-BM0100-abcdefghijkl";

#[test]
fn scrape_with_repeated_info_hash_and_stats() {
    let t = format!("/scrape?info_hash={IH}&info_hash=AAAAAAAAAAAAAAAAAAAA&x=1");
    match parse_request(&get(&t)).unwrap() {
        Some((HttpRequest::Scrape(h), _)) => {
            let first: Vec<u8> = (1..=20).collect();
            assert_eq!(
                h,
                vec![<[u8; 20]>::try_from(&first[..]).unwrap(), [b'A'; 20]]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        parse_request(&get("/stats")).unwrap().map(|r| r.0),
        Some(HttpRequest::Stats)
    );
    assert!(matches!(parse_err("/scrape"), RequestError::BadParam(m) if m.contains("full scrape")));
}

#[test]
fn announce_parameters_are_checked() {
    let base = format!("info_hash={IH}&peer_id={PID}&port=6881&left=0");
    let a = match parse_request(&get(&format!(
        "/announce?{base}&compact=0&no_peer_id=1&ip=1.2.3.4&event=paused&numwant=-1&key=zz"
    )))
    .unwrap()
    {
        Some((HttpRequest::Announce(a), _)) => a,
        other => panic!("{other:?}"),
    };
    assert!(!a.compact && a.no_peer_id);
    assert_eq!(a.request.event, Event::None);
    assert_eq!(a.request.numwant, None);
    assert_eq!((a.request.key, a.has_key), (0, true));
    assert_eq!((a.request.uploaded, a.request.downloaded), (0, 0));
    assert_eq!(&a.request.peer_id, PID.as_bytes());

    let short = "%01%02%03%04%05%06%07%08%09%0A%0B%0C%0D%0E%0F%10%11%12%13";
    let cases = [
        (
            format!("info_hash={short}&peer_id={PID}&port=1&left=0"),
            "20 bytes",
        ),
        (
            format!("info_hash={IH}%15&peer_id={PID}&port=1&left=0"),
            "20 bytes",
        ),
        (
            format!("info_hash={IH}&peer_id={PID}x&port=1&left=0"),
            "20 bytes",
        ),
        (
            format!("info_hash=%zz{IH}&peer_id={PID}&port=1&left=0"),
            "percent",
        ),
        (
            format!("peer_id={PID}&port=1&left=0"),
            "missing `info_hash`",
        ),
        (format!("info_hash={IH}&port=1&left=0"), "missing `peer_id`"),
        (
            format!("info_hash={IH}&peer_id={PID}&left=0"),
            "missing `port`",
        ),
        (
            format!("info_hash={IH}&peer_id={PID}&port=1"),
            "missing `left`",
        ),
        (format!("{base}&info_hash={IH}"), "twice"),
        (
            format!("info_hash={IH}&peer_id={PID}&port=70000&left=0"),
            "port",
        ),
        (
            format!("info_hash={IH}&peer_id={PID}&port=1&left=-1"),
            "left",
        ),
        (format!("{base}&uploaded=1e3"), "uploaded"),
    ];
    for (q, want) in cases {
        match parse_err(&format!("/announce?{q}")) {
            RequestError::BadParam(m) => assert!(m.contains(want), "{q}: {m}"),
            e => panic!("{q}: {e:?}"),
        }
    }
}

#[test]
fn request_errors_and_size_cap() {
    assert_eq!(parse_err("/nothing"), RequestError::NotFound);
    assert_eq!(parse_err("/announce/x"), RequestError::NotFound);
    assert_eq!(
        parse_request(b"POST /announce HTTP/1.1\r\n\r\n"),
        Err(RequestError::MethodNotAllowed)
    );
    assert!(matches!(
        parse_request(b"\x16\x03\x01\x02\x00"),
        Err(RequestError::BadHttp(_))
    ));
    // Incomplete heads wait, up to the cap.
    let req = get(&format!("/announce?info_hash={IH}"));
    for n in 0..req.len() {
        assert_eq!(parse_request(&req[..n]), Ok(None), "{n}");
        assert_eq!(request_head_len(&req[..n]), Ok(None));
    }
    assert_eq!(request_head_len(&req), Ok(Some(req.len())));
    let mut long = b"GET /announce?".to_vec();
    long.resize(MAX_REQUEST_LEN + 1, b'a');
    assert_eq!(parse_request(&long), Err(RequestError::TooLarge));
    assert_eq!(request_head_len(&long), Err(RequestError::TooLarge));
    let mut long = b"GET /stats HTTP/1.1\r\nX: ".to_vec();
    long.resize(MAX_REQUEST_LEN, b'a');
    long.extend_from_slice(b"\r\n\r\n");
    assert_eq!(parse_request(&long), Err(RequestError::TooLarge));
}

/// Reads a full server response back with the client's reader.
fn read_response(bytes: &[u8]) -> HttpResponse {
    let mut r = ResponseReader::new();
    match r.feed(bytes).unwrap() {
        ReadProgress::Done(resp) => resp,
        ReadProgress::NeedMore => panic!("server response not complete"),
    }
}

#[test]
fn error_responses_have_the_right_status() {
    for (e, status) in [
        (RequestError::BadHttp("x".into()), 400),
        (RequestError::TooLarge, 431),
        (RequestError::MethodNotAllowed, 405),
        (RequestError::NotFound, 404),
    ] {
        let resp = read_response(&e.response());
        assert_eq!(resp.status, status);
        assert!(!resp.body.is_empty());
    }
    let resp = read_response(&RequestError::BadParam("missing `port`".into()).response());
    assert_eq!(resp.status, 200);
    assert_eq!(
        parse_announce_response(&resp.body),
        Err(TrackerError::Failure("missing `port`".into()))
    );
}

fn reply() -> AnnounceReply {
    AnnounceReply {
        interval: Duration::from_secs(1800),
        min_interval: Duration::from_secs(300),
        complete: 3,
        incomplete: 9,
        peers: vec![
            PeerEntry {
                addr: v4([10, 1, 2, 3], 6881),
                peer_id: [b'a'; 20],
            },
            PeerEntry {
                addr: v6("2001:db8::7", 51413),
                peer_id: [b'b'; 20],
            },
            PeerEntry {
                addr: v4([192, 0, 2, 9], 1),
                peer_id: [b'c'; 20],
            },
        ],
    }
}

#[test]
fn announce_replies_compact_and_dict_round_trip() {
    let reply = reply();
    let want = vec![
        v4([10, 1, 2, 3], 6881),
        v4([192, 0, 2, 9], 1),
        v6("2001:db8::7", 51413),
    ];
    let mut body = Vec::new();
    encode_announce_reply(&reply, true, false, &mut body);
    assert!(crate::bencode::decode_with(
        &body,
        crate::bencode::DecodeOptions {
            strict_key_order: true,
            ..Default::default()
        }
    )
    .is_ok());
    let r = ok(&body);
    assert_eq!(r.peers, want);
    assert_eq!((r.complete, r.incomplete), (Some(3), Some(9)));
    assert_eq!(r.interval, Duration::from_secs(1800));
    assert_eq!(r.min_interval, Some(Duration::from_secs(300)));
    let text = body.escape_ascii().to_string();
    assert!(
        text.contains("5:peers12:") && text.contains("6:peers618:"),
        "{text}"
    );

    let mut body = Vec::new();
    encode_announce_reply(&reply, false, false, &mut body);
    let r = ok(&body);
    assert_eq!(r.peers, vec![want[0], want[2], want[1]]);
    assert!(body
        .windows(27)
        .any(|w| w == b"7:peer id20:aaaaaaaaaaaaaaa"));
    let mut body = Vec::new();
    encode_announce_reply(&reply, false, true, &mut body);
    assert_eq!(ok(&body).peers.len(), 3);
    assert!(!body.windows(7).any(|w| w == b"peer id"));

    // No IPv6 peers: no `peers6` key.
    let mut only4 = reply.clone();
    only4.peers.remove(1);
    let mut body = Vec::new();
    encode_announce_reply(&only4, true, false, &mut body);
    assert!(!body.windows(6).any(|w| w == b"peers6"));
}

#[test]
fn scrape_and_failure_bodies_round_trip() {
    let s1 = ScrapeStats {
        complete: 1,
        downloaded: 2,
        incomplete: 3,
    };
    let s2 = ScrapeStats {
        complete: 4,
        downloaded: 5,
        incomplete: 6,
    };
    let mut body = Vec::new();
    encode_scrape_reply(&[([9; 20], s1), ([1; 20], s2), ([9; 20], s1)], &mut body);
    assert_eq!(parse_scrape_response(&body, &[9; 20]), Ok(s1));
    assert_eq!(parse_scrape_response(&body, &[1; 20]), Ok(s2));
    let mut body = Vec::new();
    encode_failure("torrent not registered", &mut body);
    assert_eq!(body, b"d14:failure reason22:torrent not registerede");
}

#[test]
fn http_response_framing() {
    let r = http_response(200, "text/plain", b"hello");
    let text = String::from_utf8(r.clone()).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(text.contains("\r\nContent-Length: 5\r\n"));
    assert!(text.contains("\r\nConnection: close\r\n"));
    let resp = read_response(&r);
    assert_eq!((resp.status, &resp.body[..]), (200, &b"hello"[..]));
}

#[test]
fn request_parser_fuzz_never_panics() {
    let mut rng = Rng::new(0xF022);
    let valid = get(&format!(
        "/announce?info_hash={IH}&peer_id={PID}&port=6881&left=5&event=started&numwant=3"
    ));
    assert!(matches!(parse_request(&valid), Ok(Some(_))));
    for i in 0..20_000 {
        let input = if i % 2 == 0 {
            let mut b = vec![0u8; rng.below(300) as usize];
            rng.fill(&mut b);
            if i % 4 == 0 {
                let mut g = b"GET /announce?".to_vec();
                g.extend(b.iter().map(|x| b"%&=0aF_"[usize::from(*x) % 7]));
                g.extend_from_slice(b" HTTP/1.1\r\n\r\n");
                g
            } else {
                b
            }
        } else {
            let mut b = valid.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(b.len() as u64) as usize;
                b[at] = rng.next() as u8;
            }
            b
        };
        let _ = parse_request(&input);
        let _ = request_head_len(&input);
    }
}
