//! Unit tests of the parent module, compiled only under `#[cfg(test)]`.
use super::*;
use crate::tracker::http::{
    announce_url, get_request, parse_announce_response, parse_scrape_response, ReadProgress,
    ResponseReader,
};
use crate::tracker::udp::{AnnouncePacket, Request, Response};
use crate::tracker::{AnnounceRequest, TrackerError};
use std::collections::HashMap as Map;

const SECRET: [u8; 16] = *b"0123456789abcdef";

fn cfg() -> TrackerConfig {
    TrackerConfig::new(SECRET)
}

fn ih(n: u8) -> [u8; 20] {
    [n; 20]
}

fn pid(n: u32) -> [u8; 20] {
    let mut p = *b"-BM0100-000000000000";
    p[8..12].copy_from_slice(&n.to_be_bytes());
    p
}

/// Peer `n`'s IPv4 address (10.x.y.z), as its requests come from (source port 40000).
fn from4(n: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0A00_0000 | n)), 40000)
}

/// Peer `n`'s IPv6 address (2001:db8::n).
fn from6(n: u32) -> SocketAddr {
    let ip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, (n >> 16) as u16, n as u16);
    SocketAddr::new(IpAddr::V6(ip), 40000)
}

/// An announce of peer `n` (address `from4(n)`, port 6881) on torrent `t`.
fn ann(t: u8, n: u32, left: u64, event: Event) -> AnnounceParams {
    AnnounceParams {
        info_hash: ih(t),
        peer_id: pid(n),
        from: from4(n),
        port: 6881,
        left,
        event,
        numwant: None,
        key: Some(n),
        families: PeerFamilies::Both,
    }
}

fn with_from(mut p: AnnounceParams, from: SocketAddr) -> AnnounceParams {
    p.from = from;
    p
}

fn with_numwant(mut p: AnnounceParams, n: Option<u32>) -> AnnounceParams {
    p.numwant = n;
    p
}

/// Where peer `n` is reachable, as handed out (announced port 6881).
fn at(from: SocketAddr) -> SocketAddr {
    SocketAddr::new(from.ip(), 6881)
}

/// Checks every internal invariant of the table.
fn check(t: &Tracker) {
    let mut peers = 0;
    let mut seeds = 0;
    for s in t.torrents.values() {
        assert!(s.len() > 0, "empty torrent kept");
        let listed: usize = s.lists.iter().map(Vec::len).sum();
        assert_eq!(listed, s.by_id.len());
        for (l, list) in s.lists.iter().enumerate() {
            for (i, p) in list.iter().enumerate() {
                let slot = s.by_id[&p.id];
                assert_eq!((usize::from(slot.list), slot.pos as usize), (l, i));
                let mapped = p.ip[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
                assert_eq!(is_v6_list(l), !mapped);
            }
        }
        peers += listed;
        seeds += s.seeders();
    }
    assert_eq!(t.peers, peers);
    assert_eq!(t.seeders, seeds);
    assert_eq!(t.stats().peers, peers);
}

/// A tracker with `n` leechers (peers 1..=n) on torrent 1.
fn swarm(n: u32, now: Instant) -> (Tracker, Rng) {
    let mut t = Tracker::new(cfg(), now);
    let mut rng = Rng::new(42);
    for i in 1..=n {
        t.announce(now, &ann(1, i, 100, Event::Started), &mut rng)
            .unwrap();
    }
    (t, rng)
}

// ---------------------------------------------------------------------------------------------
// Peer selection
// ---------------------------------------------------------------------------------------------

#[test]
fn random_subsets_differ_and_never_include_the_asker() {
    let now = crate::net::clock::now();
    let (mut t, mut rng) = swarm(1000, now);
    let asker = ann(1, 500, 100, Event::None);
    let mut seen = HashSet::new();
    for _ in 0..50 {
        let r = t.announce(now, &asker, &mut rng).unwrap();
        assert_eq!(r.peers.len(), 50);
        assert!(r.peers.iter().all(|p| p.peer_id != pid(500)));
        assert!(r.peers.iter().all(|p| p.addr != at(from4(500))));
        let ids: HashSet<[u8; 20]> = r.peers.iter().map(|p| p.peer_id).collect();
        assert_eq!(ids.len(), 50, "duplicates in a reply");
        let mut sorted: Vec<[u8; 20]> = ids.into_iter().collect();
        sorted.sort();
        seen.insert(sorted);
        // Each entry's address belongs to its peer id.
        for p in &r.peers {
            let n = u32::from_be_bytes(p.peer_id[8..12].try_into().unwrap());
            assert_eq!(p.addr, at(from4(n)));
        }
    }
    assert_eq!(seen.len(), 50, "replies repeat");
    check(&t);
}

#[test]
fn sampling_is_uniform_across_lists_and_skips_the_asker() {
    let now = crate::net::clock::now();
    let mut t = Tracker::new(cfg(), now);
    let mut rng = Rng::new(3);
    // 25 peers in each of the four lists; the asker is a v4 leecher in the middle.
    for n in 0..100u32 {
        let left = if n % 2 == 0 { 0 } else { 100 };
        let from = if n % 4 < 2 { from4(n) } else { from6(n) };
        t.announce(
            now,
            &with_from(ann(1, n, left, Event::None), from),
            &mut rng,
        )
        .unwrap();
    }
    let asker = ann(1, 41, 100, Event::None);
    let rounds = 5000;
    let mut counts: Map<[u8; 20], u32> = Map::new();
    for _ in 0..rounds {
        let r = t
            .announce(now, &with_numwant(asker.clone(), Some(10)), &mut rng)
            .unwrap();
        assert_eq!(r.peers.len(), 10);
        for p in r.peers {
            *counts.entry(p.peer_id).or_default() += 1;
        }
    }
    assert_eq!(counts.get(&pid(41)), None);
    assert_eq!(counts.len(), 99);
    // Expected 5000 * 10 / 99 = 505 each, standard deviation about 21.
    for (id, c) in &counts {
        assert!((380..=630).contains(c), "{id:?} given {c} times");
    }
    check(&t);
}

#[test]
fn small_swarms_get_everyone_but_the_asker() {
    let now = crate::net::clock::now();
    let (mut t, mut rng) = swarm(5, now);
    let r = t
        .announce(now, &ann(1, 3, 100, Event::None), &mut rng)
        .unwrap();
    let mut got: Vec<SocketAddr> = r.peers.iter().map(|p| p.addr).collect();
    got.sort();
    let want: Vec<SocketAddr> = [1, 2, 4, 5].iter().map(|&n| at(from4(n))).collect();
    assert_eq!(got, want);
    // The first peer of a torrent gets nobody.
    let r = t
        .announce(now, &ann(2, 1, 100, Event::Started), &mut rng)
        .unwrap();
    assert!(r.peers.is_empty());
    assert_eq!((r.complete, r.incomplete), (0, 1));
}

#[test]
fn numwant_is_capped() {
    let now = crate::net::clock::now();
    let (mut t, mut rng) = swarm(500, now);
    let asker = ann(1, 1, 100, Event::None);
    let n = |t: &mut Tracker, rng: &mut Rng, w| {
        t.announce(now, &with_numwant(asker.clone(), w), rng)
            .unwrap()
            .peers
            .len()
    };
    assert_eq!(n(&mut t, &mut rng, Some(1000)), 50);
    assert_eq!(n(&mut t, &mut rng, Some(7)), 7);
    assert_eq!(n(&mut t, &mut rng, Some(0)), 0);
    assert_eq!(n(&mut t, &mut rng, None), 50);

    let mut c = cfg();
    c.max_numwant = 10_000;
    c.default_numwant = 30;
    let mut t2 = Tracker::new(c, now);
    for i in 1..=500 {
        t2.announce(now, &ann(1, i, 100, Event::None), &mut rng)
            .unwrap();
    }
    assert_eq!(t2.config().max_numwant, HARD_MAX_NUMWANT);
    assert_eq!(n(&mut t2, &mut rng, Some(1000)), HARD_MAX_NUMWANT as usize);
    assert_eq!(n(&mut t2, &mut rng, None), 30);
}

#[test]
fn seeders_get_only_leechers_and_leechers_get_a_mix() {
    let now = crate::net::clock::now();
    let mut t = Tracker::new(cfg(), now);
    let mut rng = Rng::new(5);
    for n in 0..200 {
        let left = if n < 100 { 0 } else { 100 };
        t.announce(now, &ann(1, n, left, Event::None), &mut rng)
            .unwrap();
    }
    let is_seed = |p: &PeerEntry| u32::from_be_bytes(p.peer_id[8..12].try_into().unwrap()) < 100;
    for _ in 0..20 {
        let r = t
            .announce(now, &ann(1, 7, 0, Event::None), &mut rng)
            .unwrap();
        assert_eq!(r.peers.len(), 50);
        assert!(r.peers.iter().all(|p| !is_seed(p)), "a seed got seeds");
    }
    let mut seeds_given = 0;
    for _ in 0..20 {
        let r = t
            .announce(now, &ann(1, 150, 100, Event::None), &mut rng)
            .unwrap();
        seeds_given += r.peers.iter().filter(|p| is_seed(p)).count();
    }
    // About half of 1000.
    assert!((350..=650).contains(&seeds_given), "{seeds_given}");
    // A seed in a swarm of seeds gets nobody.
    let r = t
        .announce(now, &ann(2, 1, 0, Event::None), &mut rng)
        .unwrap();
    assert!(r.peers.is_empty());
    t.announce(now, &ann(2, 2, 0, Event::None), &mut rng)
        .unwrap();
    let r = t
        .announce(now, &ann(2, 1, 0, Event::None), &mut rng)
        .unwrap();
    assert!(r.peers.is_empty());
    assert_eq!((r.complete, r.incomplete), (2, 0));
}

#[test]
fn families_same_for_udp_both_for_http() {
    let now = crate::net::clock::now();
    let mut t = Tracker::new(cfg(), now);
    let mut rng = Rng::new(6);
    for n in 1..=20 {
        let from = if n <= 10 { from4(n) } else { from6(n) };
        t.announce(now, &with_from(ann(1, n, 100, Event::None), from), &mut rng)
            .unwrap();
    }
    let mut a = ann(1, 1, 100, Event::None);
    a.families = PeerFamilies::Same;
    let r = t.announce(now, &a, &mut rng).unwrap();
    assert_eq!(r.peers.len(), 9);
    assert!(r.peers.iter().all(|p| p.addr.is_ipv4()));
    let mut a6 = with_from(ann(1, 11, 100, Event::None), from6(11));
    a6.families = PeerFamilies::Same;
    let r = t.announce(now, &a6, &mut rng).unwrap();
    assert_eq!(r.peers.len(), 9);
    assert!(r.peers.iter().all(|p| p.addr.is_ipv6()));
    let r = t
        .announce(now, &ann(1, 1, 100, Event::None), &mut rng)
        .unwrap();
    assert_eq!(r.peers.len(), 19);
    // A v4-mapped IPv6 source is an IPv4 peer.
    let mapped = SocketAddr::new(IpAddr::V6(Ipv4Addr::new(10, 9, 9, 9).to_ipv6_mapped()), 1);
    let mut m = with_from(ann(1, 99, 100, Event::None), mapped);
    m.families = PeerFamilies::Same;
    let r = t.announce(now, &m, &mut rng).unwrap();
    assert_eq!(r.peers.len(), 10);
    assert!(r.peers.iter().all(|p| p.addr.is_ipv4()));
    check(&t);
}

// ---------------------------------------------------------------------------------------------
// Counts, events, identity
// ---------------------------------------------------------------------------------------------

#[test]
fn counts_scrape_and_completed_once_per_peer() {
    let now = crate::net::clock::now();
    let (mut t, mut rng) = swarm(3, now);
    t.announce(now, &ann(1, 4, 0, Event::Started), &mut rng)
        .unwrap();
    let r = t
        .announce(now, &ann(1, 2, 0, Event::Completed), &mut rng)
        .unwrap();
    assert_eq!((r.complete, r.incomplete), (2, 2));
    // Repeated `completed` from the same peer counts once.
    t.announce(now, &ann(1, 2, 0, Event::Completed), &mut rng)
        .unwrap();
    // A new peer arriving with `completed` counts.
    t.announce(now, &ann(1, 5, 0, Event::Completed), &mut rng)
        .unwrap();
    let s = t.scrape(&[ih(1), ih(9), ih(1)]);
    let want = ScrapeStats {
        complete: 3,
        downloaded: 2,
        incomplete: 2,
    };
    assert_eq!(s, vec![want, ScrapeStats::default(), want]);
    let st = t.stats();
    assert_eq!(
        (st.peers, st.seeders, st.leechers, st.torrents),
        (5, 3, 2, 1)
    );
    assert_eq!((st.announces, st.scrapes), (7, 1));
    check(&t);
}

#[test]
fn a_leecher_that_finishes_becomes_a_seeder() {
    let now = crate::net::clock::now();
    let (mut t, mut rng) = swarm(10, now);
    for n in 1..=10 {
        let r = t
            .announce(now, &ann(1, n, 0, Event::None), &mut rng)
            .unwrap();
        assert_eq!((r.complete, r.incomplete), (n, 10 - n));
        check(&t);
    }
    // And back (a file deleted and re-downloaded).
    t.announce(now, &ann(1, 4, 5, Event::None), &mut rng)
        .unwrap();
    assert_eq!(t.scrape(&[ih(1)])[0].incomplete, 1);
    check(&t);
}

#[test]
fn stopped_removes_the_peer_and_an_empty_torrent() {
    let now = crate::net::clock::now();
    let (mut t, mut rng) = swarm(3, now);
    t.announce(now, &ann(1, 3, 0, Event::Completed), &mut rng)
        .unwrap();
    let r = t
        .announce(now, &ann(1, 2, 100, Event::Stopped), &mut rng)
        .unwrap();
    assert!(r.peers.is_empty());
    assert_eq!((r.complete, r.incomplete), (1, 1));
    // Nobody is given the stopped peer any more.
    for _ in 0..10 {
        let r = t
            .announce(now, &ann(1, 1, 100, Event::None), &mut rng)
            .unwrap();
        assert_eq!(r.peers.len(), 1);
        assert_eq!(r.peers[0].peer_id, pid(3));
    }
    t.announce(now, &ann(1, 3, 0, Event::Stopped), &mut rng)
        .unwrap();
    t.announce(now, &ann(1, 1, 100, Event::Stopped), &mut rng)
        .unwrap();
    assert_eq!(t.stats().torrents, 0);
    assert_eq!(t.scrape(&[ih(1)])[0], ScrapeStats::default());
    // Stopping on an unknown torrent or as an unknown peer creates nothing.
    t.announce(now, &ann(7, 1, 100, Event::Stopped), &mut rng)
        .unwrap();
    assert_eq!(t.stats().torrents, 0);
    t.announce(now, &ann(8, 1, 100, Event::Started), &mut rng)
        .unwrap();
    t.announce(now, &ann(8, 2, 100, Event::Stopped), &mut rng)
        .unwrap();
    assert_eq!(t.stats().peers, 1);
    check(&t);
}

#[test]
fn address_changes_need_the_key() {
    let now = crate::net::clock::now();
    let (mut t, mut rng) = swarm(2, now);
    let asker = ann(1, 2, 100, Event::None);
    // Same IP, another port: updated.
    let mut p = ann(1, 1, 100, Event::None);
    p.port = 7000;
    t.announce(now, &p, &mut rng).unwrap();
    let r = t.announce(now, &asker, &mut rng).unwrap();
    assert_eq!(r.peers[0].addr, SocketAddr::new(from4(1).ip(), 7000));
    // Another IP with the same key: moved.
    let moved = with_from(ann(1, 1, 100, Event::None), from4(77));
    t.announce(now, &moved, &mut rng).unwrap();
    let r = t.announce(now, &asker, &mut rng).unwrap();
    assert_eq!(r.peers[0].addr, at(from4(77)));
    // Another IP (even another family) with a wrong key or none: refused, even to stop it.
    let mut thief = with_from(ann(1, 1, 100, Event::Stopped), from6(5));
    thief.key = Some(12345);
    assert_eq!(t.announce(now, &thief, &mut rng), Err(Refusal::PeerIdInUse));
    thief.key = None;
    assert_eq!(t.announce(now, &thief, &mut rng), Err(Refusal::PeerIdInUse));
    assert_eq!(t.stats().peers, 2);
    // A peer that never sent a key cannot be moved at all.
    let mut nokey = ann(1, 9, 100, Event::None);
    nokey.key = None;
    t.announce(now, &nokey, &mut rng).unwrap();
    let mut later = with_from(nokey.clone(), from4(99));
    later.key = Some(0);
    assert_eq!(t.announce(now, &later, &mut rng), Err(Refusal::PeerIdInUse));
    assert_eq!(t.stats().refusals, 3);
    check(&t);
}

#[test]
fn the_ip_of_the_request_is_used() {
    let now = crate::net::clock::now();
    let (mut t, mut rng) = swarm(1, now);
    // HTTP `ip=` is not even parsed into the request; the table stores the source address.
    let r = t
        .announce(
            now,
            &with_from(ann(1, 2, 100, Event::None), from6(2)),
            &mut rng,
        )
        .unwrap();
    assert_eq!(r.peers[0].addr, at(from4(1)));
    let r = t
        .announce(now, &ann(1, 1, 100, Event::None), &mut rng)
        .unwrap();
    assert_eq!(r.peers[0].addr, at(from6(2)));
    // Port 0 is refused.
    let mut p = ann(1, 3, 100, Event::None);
    p.port = 0;
    assert_eq!(t.announce(now, &p, &mut rng), Err(Refusal::InvalidPort));
}

// ---------------------------------------------------------------------------------------------
// Expiry
// ---------------------------------------------------------------------------------------------

#[test]
fn peers_expire_after_two_intervals_in_virtual_time() {
    let t0 = crate::net::clock::now();
    let mut c = cfg();
    c.interval = Duration::from_secs(600);
    let timeout = c.peer_timeout();
    assert!(timeout > c.interval * 2 && timeout < c.interval * 3);
    let mut t = Tracker::new(c, t0);
    let mut rng = Rng::new(1);
    assert_eq!(t.next_expiry(), None);
    for n in 1..=10 {
        t.announce(t0, &ann(1, n, 100, Event::None), &mut rng)
            .unwrap();
    }
    t.announce(t0, &ann(2, 1, 100, Event::None), &mut rng)
        .unwrap();
    assert_eq!(t.next_expiry(), Some(t0 + timeout));
    // Peers 1..=5 announce again one interval later; the others do not.
    let t1 = t0 + Duration::from_secs(600);
    for n in 1..=5 {
        t.announce(t1, &ann(1, n, 100, Event::None), &mut rng)
            .unwrap();
    }
    // At two intervals nobody is gone yet.
    assert_eq!(t.expire(t0 + Duration::from_secs(1200)), 0);
    assert_eq!(t.stats().peers, 11);
    // The next sweep is due when the oldest peers time out, not before.
    let due = t.next_expiry().unwrap();
    assert!(due > t0 + timeout && due <= t0 + timeout + Duration::from_secs(1));
    assert_eq!(t.expire(due), 6);
    let st = t.stats();
    assert_eq!((st.peers, st.torrents, st.expired), (5, 1, 6));
    assert_eq!(t.scrape(&[ih(1)])[0].incomplete, 5);
    let r = t
        .announce(due, &ann(1, 1, 100, Event::None), &mut rng)
        .unwrap();
    assert_eq!(r.peers.len(), 4);
    check(&t);
    // A sweep right after is never scheduled sooner than the granularity.
    assert!(t.next_expiry().unwrap() >= due + EXPIRY_GRANULARITY);
    // The rest go a timeout after their last announce.
    assert_eq!(t.expire(t1 + timeout), 0);
    assert_eq!(t.expire(t1 + timeout + Duration::from_secs(1)), 4);
    assert_eq!(t.stats().peers, 1);
    assert_eq!(t.expire(due + timeout + Duration::from_secs(1)), 1);
    assert_eq!(t.stats().torrents, 0);
    assert_eq!(t.next_expiry(), None);
    check(&t);
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

#[test]
fn limits_and_whitelist_are_enforced() {
    let now = crate::net::clock::now();
    let mut rng = Rng::new(8);
    let mut c = cfg();
    c.max_torrents = 2;
    c.max_peers_per_torrent = 3;
    let mut t = Tracker::new(c, now);
    t.announce(now, &ann(1, 1, 1, Event::None), &mut rng)
        .unwrap();
    t.announce(now, &ann(2, 1, 1, Event::None), &mut rng)
        .unwrap();
    let e = t
        .announce(now, &ann(3, 1, 1, Event::None), &mut rng)
        .unwrap_err();
    assert_eq!(e, Refusal::TooManyTorrents);
    assert!(e.to_string().contains("too many torrents"));
    // Known torrents still work; stopping on an unknown one is not refused.
    t.announce(now, &ann(1, 2, 1, Event::None), &mut rng)
        .unwrap();
    t.announce(now, &ann(3, 1, 1, Event::Stopped), &mut rng)
        .unwrap();
    t.announce(now, &ann(1, 3, 1, Event::None), &mut rng)
        .unwrap();
    assert_eq!(
        t.announce(now, &ann(1, 4, 1, Event::None), &mut rng),
        Err(Refusal::SwarmFull)
    );
    // Members of a full swarm still announce; one leaving makes room.
    t.announce(now, &ann(1, 3, 0, Event::None), &mut rng)
        .unwrap();
    t.announce(now, &ann(1, 3, 0, Event::Stopped), &mut rng)
        .unwrap();
    t.announce(now, &ann(1, 4, 1, Event::None), &mut rng)
        .unwrap();
    // A torrent leaving makes room for another.
    t.announce(now, &ann(2, 1, 1, Event::Stopped), &mut rng)
        .unwrap();
    t.announce(now, &ann(3, 1, 1, Event::None), &mut rng)
        .unwrap();
    assert_eq!(t.stats().refusals, 2);
    check(&t);

    let mut c = cfg();
    c.whitelist = Some([ih(1)].into_iter().collect());
    let mut t = Tracker::new(c, now);
    t.announce(now, &ann(1, 1, 1, Event::None), &mut rng)
        .unwrap();
    let e = t
        .announce(now, &ann(2, 1, 1, Event::None), &mut rng)
        .unwrap_err();
    assert_eq!(e, Refusal::NotRegistered);
    assert!(e.message().contains("torrent not registered"));
    assert_eq!(t.stats().torrents, 1);

    let mut c = cfg();
    c.max_peers_per_torrent = 0;
    let mut t = Tracker::new(c, now);
    assert_eq!(
        t.announce(now, &ann(1, 1, 1, Event::None), &mut rng),
        Err(Refusal::SwarmFull)
    );
    assert_eq!(t.stats().torrents, 0);
}

// ---------------------------------------------------------------------------------------------
// Connection ids
// ---------------------------------------------------------------------------------------------

#[test]
fn connection_ids_are_bound_to_address_and_time() {
    let t0 = crate::net::clock::now();
    let t = Tracker::new(cfg(), t0);
    let a = from4(1);
    let w = CONNECTION_ID_WINDOW;
    // Made late in window 3: valid through windows 3 and 4, not 5.
    let made = t0 + w * 3 + Duration::from_secs(119);
    let id = t.connection_id(a, made);
    assert!(t.check_connection_id(a, id, made));
    assert!(t.check_connection_id(a, id, t0 + w * 4));
    assert!(t.check_connection_id(a, id, t0 + w * 5 - Duration::from_millis(1)));
    assert!(!t.check_connection_id(a, id, t0 + w * 5));
    assert!(!t.check_connection_id(a, id, t0 + w * 2));
    // Lives at least one window, at most two.
    let id0 = t.connection_id(a, t0);
    assert!(t.check_connection_id(a, id0, t0 + w + w / 2));
    assert!(!t.check_connection_id(a, id0, t0 + w * 2));
    // Another address (IP or port) does not get in with it.
    for other in [
        from4(2),
        SocketAddr::new(a.ip(), 40001),
        from6(1),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 40000),
    ] {
        assert!(!t.check_connection_id(other, id, made), "{other}");
    }
    // The v4-mapped form of the same address is the same client.
    let mapped = SocketAddr::new(
        IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()),
        40000,
    );
    assert!(t.check_connection_id(mapped, id, made));
    // Another secret makes other ids.
    let mut c = cfg();
    c.secret[0] ^= 1;
    let t2 = Tracker::new(c, t0);
    assert!(!t2.check_connection_id(a, id, made));
    // Forged ids fail.
    let mut rng = Rng::new(99);
    for _ in 0..20_000 {
        assert!(!t.check_connection_id(a, rng.next(), made));
    }
    assert!(!t.check_connection_id(a, 0, made));
    assert!(!t.check_connection_id(a, udp::PROTOCOL_ID, made));
}

// ---------------------------------------------------------------------------------------------
// UDP front end
// ---------------------------------------------------------------------------------------------

fn udp_connect(t: &mut Tracker, now: Instant, from: SocketAddr, rng: &mut Rng) -> u64 {
    let mut out = Vec::new();
    let mut req = Vec::new();
    Request::Connect { transaction_id: 77 }.encode(&mut req);
    assert!(t.handle_udp(now, from, &req, rng, &mut out));
    assert_eq!(
        out.len(),
        req.len(),
        "connect reply bigger than the request"
    );
    match Response::decode(&out, false).unwrap() {
        Response::Connect {
            transaction_id,
            connection_id,
        } => {
            assert_eq!(transaction_id, 77);
            connection_id
        }
        r => panic!("{r:?}"),
    }
}

fn udp_announce(cid: u64, n: u32, info: u8, left: u64, event: Event) -> Vec<u8> {
    let mut v = Vec::new();
    Request::Announce(AnnouncePacket {
        connection_id: cid,
        transaction_id: 1000 + n,
        request: AnnounceRequest {
            info_hash: ih(info),
            peer_id: pid(n),
            port: 6881,
            uploaded: 0,
            downloaded: 0,
            left,
            event,
            numwant: Some(30),
            key: n,
            tracker_id: None,
        },
        ip: 0x0102_0304, // ignored
    })
    .encode(&mut v);
    v
}

#[test]
fn udp_connect_announce_scrape() {
    let now = crate::net::clock::now();
    let mut t = Tracker::new(cfg(), now);
    let mut rng = Rng::new(11);
    let mut out = Vec::new();
    for n in 1..=40 {
        let from = from4(n);
        let cid = udp_connect(&mut t, now, from, &mut rng);
        let left = if n <= 10 { 0 } else { 100 };
        let pkt = udp_announce(cid, n, 1, left, Event::Started);
        assert!(t.handle_udp(now, from, &pkt, &mut rng, &mut out));
        match Response::decode(&out, false).unwrap() {
            Response::Announce(a) => {
                assert_eq!(a.transaction_id, 1000 + n);
                assert_eq!(a.interval, 1800);
                assert_eq!(a.seeders, n.min(10));
                assert_eq!(a.leechers, n.saturating_sub(10));
                assert!(a.peers.len() <= 30);
                assert!(!a.peers.contains(&at(from)));
                assert!(!a.peers.iter().any(|p| p.ip() == Ipv4Addr::new(1, 2, 3, 4)));
            }
            r => panic!("{r:?}"),
        }
    }
    // A scrape, with an id obtained a window earlier.
    let from = from4(1);
    let cid = udp_connect(&mut t, now, from, &mut rng);
    let later = now + CONNECTION_ID_WINDOW + Duration::from_secs(30);
    let mut pkt = Vec::new();
    Request::Scrape {
        connection_id: cid,
        transaction_id: 5,
        info_hashes: vec![ih(1), ih(2)],
    }
    .encode(&mut pkt);
    assert!(t.handle_udp(later, from, &pkt, &mut rng, &mut out));
    assert_eq!(
        Response::decode(&out, false).unwrap(),
        Response::Scrape {
            transaction_id: 5,
            stats: vec![
                ScrapeStats {
                    complete: 10,
                    downloaded: 0,
                    incomplete: 30
                },
                ScrapeStats::default()
            ]
        }
    );
    // Refusals come back as error packets.
    let mut c = cfg();
    c.whitelist = Some(HashSet::new());
    let mut t = Tracker::new(c, now);
    let cid = udp_connect(&mut t, now, from, &mut rng);
    assert!(t.handle_udp(
        now,
        from,
        &udp_announce(cid, 1, 1, 0, Event::None),
        &mut rng,
        &mut out
    ));
    match Response::decode(&out, false).unwrap() {
        Response::Error {
            transaction_id,
            message,
        } => {
            assert_eq!(transaction_id, 1001);
            assert!(message.contains("torrent not registered"));
        }
        r => panic!("{r:?}"),
    }
    // Undecodable packets with a valid id get an error; with a bad id, nothing.
    let mut bad = udp_announce(cid, 1, 1, 0, Event::None);
    bad[80..84].copy_from_slice(&9u32.to_be_bytes());
    assert!(t.handle_udp(now, from, &bad, &mut rng, &mut out));
    assert!(matches!(
        Response::decode(&out, false),
        Ok(Response::Error { message, .. }) if message.contains("event")
    ));
    bad[0] ^= 1;
    assert!(!t.handle_udp(now, from, &bad, &mut rng, &mut out));
    assert!(out.is_empty());
}

#[test]
fn udp_over_ipv6_uses_18_byte_records() {
    let now = crate::net::clock::now();
    let mut t = Tracker::new(cfg(), now);
    let mut rng = Rng::new(12);
    let mut out = Vec::new();
    for n in 1..=6 {
        let from = if n % 2 == 0 { from6(n) } else { from4(n) };
        let cid = udp_connect(&mut t, now, from, &mut rng);
        assert!(t.handle_udp(
            now,
            from,
            &udp_announce(cid, n, 1, 9, Event::None),
            &mut rng,
            &mut out
        ));
    }
    let from = from6(2);
    let cid = udp_connect(&mut t, now, from, &mut rng);
    assert!(t.handle_udp(
        now,
        from,
        &udp_announce(cid, 2, 1, 9, Event::None),
        &mut rng,
        &mut out
    ));
    assert_eq!(out.len(), 20 + 2 * 18);
    match Response::decode(&out, true).unwrap() {
        Response::Announce(a) => {
            let mut got = a.peers.clone();
            got.sort();
            assert_eq!(got, vec![at(from6(4)), at(from6(6))]);
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn udp_without_a_valid_id_is_dropped_and_nothing_is_amplified() {
    let t0 = crate::net::clock::now();
    let mut t = Tracker::new(cfg(), t0);
    let mut rng = Rng::new(13);
    let mut out = Vec::new();
    let (victim, attacker) = (from4(1), from4(2));
    // Fill a torrent so announce replies would be big.
    for n in 10..100 {
        let cid = udp_connect(&mut t, t0, from4(n), &mut rng);
        assert!(t.handle_udp(
            t0,
            from4(n),
            &udp_announce(cid, n, 1, 5, Event::None),
            &mut rng,
            &mut out
        ));
    }
    // The attacker's own id, used with the victim's address: dropped.
    let cid = udp_connect(&mut t, t0, attacker, &mut rng);
    let pkt = udp_announce(cid, 2, 1, 5, Event::None);
    assert!(!t.handle_udp(t0, victim, &pkt, &mut rng, &mut out));
    // An expired id: dropped.
    let late = t0 + CONNECTION_ID_WINDOW * 2;
    assert!(!t.handle_udp(late, attacker, &pkt, &mut rng, &mut out));
    // The valid id now works.
    assert!(t.handle_udp(t0, attacker, &pkt, &mut rng, &mut out));
    assert!(out.len() > pkt.len());
    let before = t.stats();
    // Random packets from an address that never connected: anything answered is no larger
    // than what was sent (only connect replies), and nothing reaches the table.
    for i in 0..20_000 {
        let mut p = vec![0u8; rng.below(130) as usize];
        rng.fill(&mut p);
        if p.len() >= 16 && i % 2 == 0 {
            p[8..12].copy_from_slice(&(rng.below(4) as u32).to_be_bytes());
            if rng.below(4) == 0 {
                p[..8].copy_from_slice(&udp::PROTOCOL_ID.to_be_bytes());
            }
        }
        if t.handle_udp(t0, victim, &p, &mut rng, &mut out) {
            assert!(
                out.len() <= p.len(),
                "{} bytes answered to {}",
                out.len(),
                p.len()
            );
            assert!(matches!(
                Response::decode(&out, false),
                Ok(Response::Connect { .. })
            ));
        } else {
            assert!(out.is_empty());
        }
    }
    let after = t.stats();
    assert_eq!(
        (after.announces, after.scrapes, after.peers),
        (before.announces, before.scrapes, before.peers)
    );
    assert!(after.udp_dropped > before.udp_dropped);
    check(&t);
}

// ---------------------------------------------------------------------------------------------
// HTTP front end
// ---------------------------------------------------------------------------------------------

fn http_req(n: u32, info: u8, left: u64, compact: bool) -> Vec<u8> {
    let req = AnnounceRequest {
        info_hash: ih(info),
        peer_id: pid(n),
        port: 6881,
        uploaded: 0,
        downloaded: 0,
        left,
        event: Event::Started,
        numwant: None,
        key: n,
        tracker_id: None,
    };
    let url = announce_url("http://127.0.0.1:6969/announce", &req).unwrap();
    let url = if compact {
        url
    } else {
        url.replace("&compact=1", "&compact=0")
    };
    get_request(&url).unwrap().1
}

fn body_of(resp: &[u8]) -> (u16, Vec<u8>) {
    let mut r = ResponseReader::new();
    match r.feed(resp).unwrap() {
        ReadProgress::Done(h) => (h.status, h.body),
        ReadProgress::NeedMore => panic!("incomplete response"),
    }
}

#[test]
fn http_announce_scrape_stats_and_errors() {
    let now = crate::net::clock::now();
    let mut t = Tracker::new(cfg(), now);
    let mut rng = Rng::new(14);
    for n in 1..=8 {
        let from = if n <= 4 { from4(n) } else { from6(n) };
        let (status, body) =
            body_of(&t.handle_http(now, from, &http_req(n, 1, n.into(), true), &mut rng));
        assert_eq!(status, 200);
        let r = parse_announce_response(&body).unwrap();
        assert_eq!(r.interval, Duration::from_secs(1800));
        assert_eq!(r.min_interval, Some(Duration::from_secs(300)));
        assert_eq!(r.incomplete, Some(n));
        assert_eq!(r.peers.len() as u32, n - 1);
        assert!(!r.peers.contains(&at(from)));
    }
    // Compact by default: IPv4 in `peers`, IPv6 in `peers6`.
    let resp = t.handle_http(now, from4(1), &http_req(1, 1, 1, true), &mut rng);
    let (_, body) = body_of(&resp);
    assert!(body.windows(10).any(|w| w == b"5:peers18:"));
    assert!(body.windows(11).any(|w| w == b"6:peers672:"));
    // compact=0: dictionaries with peer ids.
    let resp = t.handle_http(now, from4(1), &http_req(1, 1, 1, false), &mut rng);
    let (_, body) = body_of(&resp);
    assert_eq!(parse_announce_response(&body).unwrap().peers.len(), 7);
    assert!(body.windows(7).any(|w| w == b"peer id"));
    // Scrape.
    let q = "/scrape?info_hash=%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01&info_hash=%02%02%02%02%02%02%02%02%02%02%02%02%02%02%02%02%02%02%02%02";
    let req = format!("GET {q} HTTP/1.1\r\nHost: x\r\n\r\n");
    let (status, body) = body_of(&t.handle_http(now, from4(1), req.as_bytes(), &mut rng));
    assert_eq!(status, 200);
    assert_eq!(
        parse_scrape_response(&body, &ih(1)).unwrap(),
        ScrapeStats {
            complete: 0,
            downloaded: 0,
            incomplete: 8
        }
    );
    assert_eq!(
        parse_scrape_response(&body, &ih(2)).unwrap(),
        ScrapeStats::default()
    );
    // Stats.
    let (status, body) =
        body_of(&t.handle_http(now, from4(1), b"GET /stats HTTP/1.1\r\n\r\n", &mut rng));
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("peers 8\n") && text.contains("torrents 1\n"),
        "{text}"
    );
    // Errors: bad parameter (bencoded failure), unknown path, garbage, incomplete.
    let (status, body) = body_of(&t.handle_http(
        now,
        from4(1),
        b"GET /announce?info_hash=abc HTTP/1.1\r\n\r\n",
        &mut rng,
    ));
    assert_eq!(status, 200);
    assert!(
        matches!(parse_announce_response(&body), Err(TrackerError::Failure(m)) if m.contains("20 bytes"))
    );
    assert_eq!(
        body_of(&t.handle_http(now, from4(1), b"GET /x HTTP/1.1\r\n\r\n", &mut rng)).0,
        404
    );
    assert_eq!(
        body_of(&t.handle_http(now, from4(1), b"\x00\x01garbage\r\n\r\n", &mut rng)).0,
        400
    );
    assert_eq!(
        body_of(&t.handle_http(now, from4(1), b"GET /stats HTTP/1.1\r\n", &mut rng)).0,
        400
    );
    assert_eq!(t.stats().bad_requests, 4);
    // A refusal is a bencoded failure too.
    let mut c = cfg();
    c.whitelist = Some(HashSet::new());
    let mut t = Tracker::new(c, now);
    let (status, body) = body_of(&t.handle_http(now, from4(1), &http_req(1, 1, 1, true), &mut rng));
    assert_eq!(status, 200);
    assert!(
        matches!(parse_announce_response(&body), Err(TrackerError::Failure(m)) if m.contains("torrent not registered"))
    );
}

// ---------------------------------------------------------------------------------------------
// Invariants and stats
// ---------------------------------------------------------------------------------------------

#[test]
fn random_operations_keep_the_table_consistent() {
    let t0 = crate::net::clock::now();
    let mut c = cfg();
    c.interval = Duration::from_secs(100);
    c.max_peers_per_torrent = 40;
    c.max_torrents = 4;
    let mut t = Tracker::new(c, t0);
    let mut rng = Rng::new(15);
    let mut now = t0;
    let events = [
        Event::None,
        Event::Started,
        Event::Completed,
        Event::Stopped,
    ];
    for step in 0..20_000 {
        now += Duration::from_millis(rng.below(200));
        let n = rng.below(60) as u32;
        let from = match rng.below(3) {
            0 => from6(n),
            _ => from4(n),
        };
        let mut p = with_from(
            ann(
                rng.below(6) as u8,
                n,
                rng.below(2) * 100,
                events[rng.below(4) as usize],
            ),
            from,
        );
        p.numwant = Some(rng.below(60) as u32);
        p.families = if rng.below(2) == 0 {
            PeerFamilies::Same
        } else {
            PeerFamilies::Both
        };
        if let Ok(r) = t.announce(now, &p, &mut rng) {
            assert!(r.peers.iter().all(|e| e.peer_id != p.peer_id));
            assert!(r.peers.len() <= p.numwant.unwrap_or(0) as usize);
            let ids: HashSet<_> = r.peers.iter().map(|e| e.peer_id).collect();
            assert_eq!(ids.len(), r.peers.len());
            if p.left == 0 {
                assert!(r.peers.iter().all(|e| {
                    let s = &t.torrents[&p.info_hash];
                    let slot = s.by_id[&e.peer_id];
                    !is_seed_list(usize::from(slot.list))
                }));
            }
        }
        if step % 500 == 0 || t.next_expiry().is_some_and(|d| d <= now) {
            t.expire(now);
        }
        if step % 100 == 0 {
            check(&t);
        }
    }
    check(&t);
}

#[test]
fn stats_and_memory_estimate() {
    let now = crate::net::clock::now();
    let t = Tracker::new(cfg(), now);
    let empty = t.stats();
    assert_eq!(size_of::<Peer>(), 48);
    assert!(Tracker::bytes_per_peer() >= size_of::<Peer>() + 28);
    assert!(Tracker::bytes_per_peer() < 128);
    assert_eq!(empty.bytes_per_peer, Tracker::bytes_per_peer());
    let (t, _) = swarm(10_000, now);
    let st = t.stats();
    assert_eq!((st.peers, st.leechers, st.seeders), (10_000, 10_000, 0));
    let per_peer = (st.memory_bytes - empty.memory_bytes) / 10_000;
    assert!(per_peer >= Tracker::bytes_per_peer() / 2, "{per_peer}");
    assert!(per_peer <= Tracker::bytes_per_peer() * 3, "{per_peer}");
    let text = st.to_string();
    for key in [
        "torrents 1\n",
        "peers 10000\n",
        "announces 10000\n",
        "memory_bytes ",
    ] {
        assert!(text.contains(key), "{text}");
    }
}

#[test]
fn pick_set_holds_distinct_values_and_clears_in_o1() {
    let mut s = PickSet::default();
    let mut rng = Rng::new(16);
    for round in 0..300u32 {
        s.clear();
        let mut mirror = HashSet::new();
        for _ in 0..2 * HARD_MAX_NUMWANT {
            // Few distinct values in some rounds (many repeats), huge ones in others.
            let v = if round % 2 == 0 {
                rng.below(300) as usize
            } else {
                rng.next() as usize
            };
            if mirror.len() < HARD_MAX_NUMWANT as usize || mirror.contains(&v) {
                assert_eq!(s.insert(v), mirror.insert(v), "round {round}, value {v}");
            }
        }
    }
    // The generation counter wrapping around empties the table for real: a value stored
    // in generation 1 long ago must not look present in the new generation 1.
    let mut s = PickSet::default();
    s.clear();
    assert_eq!(s.generation, 1);
    assert!(s.insert(7));
    s.generation = u32::MAX;
    s.clear();
    assert_eq!(s.generation, 1);
    assert!(s.insert(7));
    assert!(!s.insert(7));
}
