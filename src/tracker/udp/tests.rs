//! Unit tests of the parent module, compiled only under `#[cfg(test)]`.
use super::*;
use crate::rng::Rng;

fn announce_packet() -> AnnouncePacket {
    AnnouncePacket {
        connection_id: 0x0102_0304_0506_0708,
        transaction_id: 0xCAFE_BABE,
        request: AnnounceRequest {
            info_hash: [0x11; 20],
            peer_id: *b"-BM0100-123456789012",
            port: 51413,
            uploaded: 1 << 40,
            downloaded: 77,
            left: 0,
            event: Event::Completed,
            numwant: Some(200),
            key: 0xDEAD_BEEF,
            tracker_id: None,
        },
        ip: 0,
    }
}

fn requests() -> Vec<Request> {
    let mut none = announce_packet();
    none.request.event = Event::None;
    none.request.numwant = None;
    let mut stopped = announce_packet();
    stopped.request.event = Event::Stopped;
    stopped.request.numwant = Some(0);
    let mut started = announce_packet();
    started.request.event = Event::Started;
    started.ip = 0x7F00_0001;
    vec![
        Request::Connect {
            transaction_id: 0x1234_5678,
        },
        Request::Announce(announce_packet()),
        Request::Announce(none),
        Request::Announce(stopped),
        Request::Announce(started),
        Request::Scrape {
            connection_id: 9,
            transaction_id: 10,
            info_hashes: vec![[0xAB; 20]],
        },
        Request::Scrape {
            connection_id: u64::MAX,
            transaction_id: 0,
            info_hashes: (0..MAX_SCRAPE_HASHES as u8).map(|i| [i; 20]).collect(),
        },
    ]
}

fn v4(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port)
}

fn v6(s: &str, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(s.parse().unwrap()), port)
}

/// Responses with the flag they travel with.
fn responses() -> Vec<(Response, bool)> {
    let announce = |peers: Vec<SocketAddr>| {
        Response::Announce(AnnounceResponsePacket {
            transaction_id: 5,
            interval: 1800,
            leechers: 12,
            seeders: 3,
            peers,
        })
    };
    vec![
        (
            Response::Connect {
                transaction_id: 1,
                connection_id: 0xFEED_FACE_0000_0001,
            },
            false,
        ),
        (announce(vec![]), false),
        (
            announce(vec![
                v4([10, 0, 0, 1], 6881),
                v4([255, 255, 255, 255], 65535),
            ]),
            false,
        ),
        (
            announce(vec![v6("2001:db8::1", 6881), v6("::ffff:1.2.3.4", 1)]),
            true,
        ),
        (
            Response::Scrape {
                transaction_id: 6,
                stats: vec![
                    ScrapeStats {
                        complete: 1,
                        downloaded: 2,
                        incomplete: 3,
                    },
                    ScrapeStats {
                        complete: u32::MAX,
                        downloaded: 0,
                        incomplete: 7,
                    },
                ],
            },
            false,
        ),
        (
            Response::Error {
                transaction_id: 7,
                message: "torrent not registered".into(),
            },
            false,
        ),
    ]
}

fn enc_req(r: &Request) -> Vec<u8> {
    let mut v = Vec::new();
    r.encode(&mut v);
    v
}

fn enc_resp(r: &Response, ipv6: bool) -> Vec<u8> {
    let mut v = Vec::new();
    r.encode(ipv6, &mut v);
    v
}

#[test]
fn requests_round_trip() {
    for r in requests() {
        let bytes = enc_req(&r);
        assert_eq!(bytes.len(), r.encoded_len());
        assert_eq!(Request::decode(&bytes), Ok(r.clone()));
        // The same bytes through a fixed buffer.
        let mut buf = [0xEEu8; 2000];
        let n = r.write(&mut buf).unwrap();
        assert_eq!(&buf[..n], &bytes[..]);
        assert_eq!(
            r.write(&mut buf[..n - 1]),
            Err(UdpError::BufferTooSmall {
                needed: n,
                got: n - 1
            })
        );
    }
}

#[test]
fn responses_round_trip() {
    for (r, ipv6) in responses() {
        let bytes = enc_resp(&r, ipv6);
        assert_eq!(bytes.len(), r.encoded_len(ipv6));
        assert_eq!(Response::decode(&bytes, ipv6), Ok(r.clone()));
        let mut buf = [0u8; 1000];
        let n = r.write(ipv6, &mut buf).unwrap();
        assert_eq!(&buf[..n], &bytes[..]);
        assert!(r.write(ipv6, &mut buf[..n - 1]).is_err());
    }
}

#[test]
fn wire_layout_matches_bep15() {
    let connect = enc_req(&Request::Connect {
        transaction_id: 0x0A0B_0C0D,
    });
    assert_eq!(
        connect,
        [0, 0, 4, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 0x0A, 0x0B, 0x0C, 0x0D]
    );
    let a = enc_req(&Request::Announce(announce_packet()));
    assert_eq!(a.len(), ANNOUNCE_LEN);
    assert_eq!(&a[0..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&a[8..12], &[0, 0, 0, 1]); // action announce
    assert_eq!(&a[12..16], &[0xCA, 0xFE, 0xBA, 0xBE]);
    assert_eq!(&a[16..36], &[0x11; 20]);
    assert_eq!(&a[36..56], b"-BM0100-123456789012");
    assert_eq!(&a[56..64], &77u64.to_be_bytes()); // downloaded
    assert_eq!(&a[64..72], &0u64.to_be_bytes()); // left
    assert_eq!(&a[72..80], &(1u64 << 40).to_be_bytes()); // uploaded
    assert_eq!(&a[80..84], &[0, 0, 0, 1]); // completed
    assert_eq!(&a[84..88], &[0, 0, 0, 0]); // ip
    assert_eq!(&a[88..92], &[0xDE, 0xAD, 0xBE, 0xEF]); // key
    assert_eq!(&a[92..96], &200u32.to_be_bytes()); // num_want
    assert_eq!(&a[96..98], &51413u16.to_be_bytes());
    // numwant None is -1 on the wire, and any negative reads back as None.
    let mut p = announce_packet();
    p.request.numwant = None;
    let mut a = enc_req(&Request::Announce(p));
    assert_eq!(&a[92..96], &[0xFF; 4]);
    a[92..96].copy_from_slice(&(-7i32).to_be_bytes());
    match Request::decode(&a).unwrap() {
        Request::Announce(p) => assert_eq!(p.request.numwant, None),
        r => panic!("{r:?}"),
    }
    // Events: none 0, completed 1, started 2, stopped 3.
    for (e, code) in [
        (Event::None, 0u8),
        (Event::Completed, 1),
        (Event::Started, 2),
        (Event::Stopped, 3),
    ] {
        let mut p = announce_packet();
        p.request.event = e;
        assert_eq!(enc_req(&Request::Announce(p))[83], code);
    }
    // An IPv6 announce response: 18-byte records.
    let r = Response::Announce(AnnounceResponsePacket {
        transaction_id: 1,
        interval: 2,
        leechers: 3,
        seeders: 4,
        peers: vec![v6("2001:db8::1", 0x1AE1), v4([1, 2, 3, 4], 5)],
    });
    let b6 = enc_resp(&r, true);
    assert_eq!(b6.len(), 20 + 18);
    assert_eq!(&b6[8..20], &[0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4]);
    assert_eq!(&b6[36..38], &[0x1A, 0xE1]);
    // Over IPv4 only the IPv4 peer is written.
    let b4 = enc_resp(&r, false);
    assert_eq!(&b4[20..], &[1, 2, 3, 4, 0, 5]);
}

#[test]
fn numwant_above_i32_max_is_clamped() {
    let mut p = announce_packet();
    p.request.numwant = Some(u32::MAX);
    let a = enc_req(&Request::Announce(p));
    assert_eq!(&a[92..96], &i32::MAX.to_be_bytes());
}

#[test]
fn fixed_size_packets_reject_every_prefix() {
    let fixed_requests = requests()
        .into_iter()
        .filter(|r| !matches!(r, Request::Scrape { .. }));
    for r in fixed_requests {
        let b = enc_req(&r);
        for n in 0..b.len() {
            assert!(
                matches!(Request::decode(&b[..n]), Err(UdpError::TooShort { .. })),
                "{r:?}: prefix of {n} accepted"
            );
        }
    }
    let connect = enc_resp(
        &Response::Connect {
            transaction_id: 1,
            connection_id: 2,
        },
        false,
    );
    for n in 0..connect.len() {
        assert!(Response::decode(&connect[..n], false).is_err(), "{n}");
    }
}

#[test]
fn variable_packets_prefixes_are_rejected_or_differ() {
    // A prefix of a packet with records can be a valid packet with fewer records; it must
    // never decode to the original, and every other prefix must be an error.
    for r in requests() {
        let b = enc_req(&r);
        for n in 0..b.len() {
            match Request::decode(&b[..n]) {
                Err(_) => {}
                Ok(d) => {
                    assert_ne!(d, r);
                    assert!(n >= 36 && (n - 16) % 20 == 0, "{n}: {d:?}");
                }
            }
        }
    }
    for (r, ipv6) in responses() {
        let b = enc_resp(&r, ipv6);
        for n in 0..b.len() {
            match Response::decode(&b[..n], ipv6) {
                Err(_) => {}
                Ok(d) => {
                    assert_ne!(d, r, "prefix of {n}");
                    match d {
                        Response::Announce(_) => {
                            assert_eq!((n - 20) % if ipv6 { 18 } else { 6 }, 0)
                        }
                        Response::Scrape { .. } => assert_eq!((n - 8) % 12, 0),
                        Response::Error { .. } => assert!(n >= 8),
                        Response::Connect { .. } => panic!("short connect accepted"),
                    }
                }
            }
        }
    }
}

#[test]
fn invalid_packets_are_refused() {
    let mut c = enc_req(&Request::Connect { transaction_id: 1 });
    c[7] ^= 1;
    assert_eq!(
        Request::decode(&c),
        Err(UdpError::BadProtocolId(PROTOCOL_ID ^ 1))
    );
    let mut a = enc_req(&Request::Announce(announce_packet()));
    a[80..84].copy_from_slice(&4u32.to_be_bytes());
    assert_eq!(Request::decode(&a), Err(UdpError::UnknownEvent(4)));
    a[8..12].copy_from_slice(&3u32.to_be_bytes());
    assert_eq!(Request::decode(&a), Err(UdpError::UnknownAction(3)));
    // Scrapes: no hash, too many, partial record.
    let mut s = vec![0u8; 16];
    s[11] = 2;
    assert_eq!(Request::decode(&s), Err(UdpError::ScrapeCount(0)));
    s.resize(16 + 20 * (MAX_SCRAPE_HASHES + 1), 0);
    assert_eq!(
        Request::decode(&s),
        Err(UdpError::ScrapeCount(MAX_SCRAPE_HASHES + 1))
    );
    s.truncate(16 + 25);
    assert_eq!(
        Request::decode(&s),
        Err(UdpError::BadLength {
            len: 25,
            record: 20
        })
    );
    // Responses with partial records or unknown actions.
    let mut r = enc_resp(&responses()[2].0, false);
    r.push(0);
    assert_eq!(
        Response::decode(&r, false),
        Err(UdpError::BadLength { len: 13, record: 6 })
    );
    assert!(Response::decode(&r[..r.len() - 1], true).is_err()); // 12 bytes of v4 peers as v6
    let mut r = enc_resp(&responses()[4].0, false);
    r.pop();
    assert!(matches!(
        Response::decode(&r, false),
        Err(UdpError::BadLength { record: 12, .. })
    ));
    assert_eq!(
        Response::decode(&[0, 0, 0, 9, 0, 0, 0, 0], false),
        Err(UdpError::UnknownAction(9))
    );
}

#[test]
fn bep41_options_after_a_request_are_ignored() {
    let mut a = enc_req(&Request::Announce(announce_packet()));
    a.extend_from_slice(&[2, 5, b'/', b'a', b'n', b'n', b'o', 0]);
    assert_eq!(
        Request::decode(&a),
        Ok(Request::Announce(announce_packet()))
    );
    let mut c = enc_req(&Request::Connect { transaction_id: 3 });
    c.push(0);
    assert_eq!(
        Request::decode(&c),
        Ok(Request::Connect { transaction_id: 3 })
    );
}

#[test]
fn error_messages_and_zero_ports() {
    let mut e = vec![0, 0, 0, 3, 0, 0, 0, 9];
    e.extend_from_slice(b"bad \xFF thing\0\0");
    assert_eq!(
        Response::decode(&e, false),
        Ok(Response::Error {
            transaction_id: 9,
            message: "bad \u{FFFD} thing".into()
        })
    );
    let mut a = vec![0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0];
    a.extend_from_slice(&[1, 2, 3, 4, 0, 0, 5, 6, 7, 8, 0, 9]);
    match Response::decode(&a, false).unwrap() {
        Response::Announce(p) => {
            assert_eq!(p.peers, vec![v4([5, 6, 7, 8], 9)]);
            let r = p.to_announce_response();
            assert_eq!(r.interval, clamp_interval(60));
            assert_eq!((r.complete, r.incomplete), (Some(0), Some(0)));
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn accessors() {
    for r in requests() {
        let b = enc_req(&r);
        assert_eq!(r.action(), u32::from_be_bytes(b[8..12].try_into().unwrap()));
        assert_eq!(
            r.transaction_id(),
            u32::from_be_bytes(b[12..16].try_into().unwrap())
        );
        assert_eq!(
            r.connection_id(),
            (r.action() != action::CONNECT).then(|| u64::from_be_bytes(b[..8].try_into().unwrap()))
        );
    }
    for (r, ipv6) in responses() {
        let b = enc_resp(&r, ipv6);
        assert_eq!(r.action(), u32::from_be_bytes(b[0..4].try_into().unwrap()));
        assert_eq!(
            r.transaction_id(),
            u32::from_be_bytes(b[4..8].try_into().unwrap())
        );
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng::new(0x0DD);
    let mut seeds: Vec<Vec<u8>> = requests().iter().map(enc_req).collect();
    seeds.extend(responses().iter().map(|(r, v6)| enc_resp(r, *v6)));
    for i in 0..50_000 {
        let mut b = if i % 2 == 0 {
            let mut b = vec![0u8; rng.below(120) as usize];
            rng.fill(&mut b);
            // Make the action field plausible half the time.
            if b.len() >= 12 && rng.below(2) == 0 {
                b[8..12].copy_from_slice(&(rng.below(4) as u32).to_be_bytes());
                b[3] = rng.below(4) as u8;
                b[0..3].fill(0);
            }
            b
        } else {
            seeds[i % seeds.len()].clone()
        };
        if i % 2 == 1 && !b.is_empty() {
            let at = rng.below(b.len() as u64) as usize;
            b[at] = rng.next() as u8;
            b.truncate(rng.below(b.len() as u64 + 1) as usize);
        }
        // Whatever decodes survives a re-encoding unchanged.
        if let Ok(r) = Request::decode(&b) {
            assert_eq!(Request::decode(&enc_req(&r)), Ok(r));
        }
        for ipv6 in [false, true] {
            if let Ok(r) = Response::decode(&b, ipv6) {
                assert_eq!(Response::decode(&enc_resp(&r, ipv6), ipv6), Ok(r));
            }
        }
    }
}
