//! Unit tests of the parent module, compiled only under `#[cfg(test)]`.
//! Announce-scheduler traces in virtual time: one base instant from the clock, then
//! Durations. Trackers are simulated by the test; there are no sockets.

use super::*;

use crate::net::clock;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

// ------------------------------------------------------------------------------- helpers

fn params() -> AnnounceParams {
    AnnounceParams {
        info_hash: [0xAB; 20],
        peer_id: *b"-BM0100-testtesttest",
        port: 6881,
    }
}

fn client(tiers: &[&[&str]], seed: u64) -> TrackerClient {
    let tiers = tiers
        .iter()
        .map(|t| t.iter().map(|u| u.to_string()).collect())
        .collect();
    TrackerClient::new(tiers, params(), Rng::new(seed))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const MS: Duration = Duration::from_millis(1);

/// A plain successful answer.
fn ok(interval: u64) -> AnnounceResponse {
    AnnounceResponse {
        interval: secs(interval),
        ..Default::default()
    }
}

fn http(c: &mut TrackerClient) -> (ReqId, String, AnnounceRequest) {
    match c.poll_request() {
        Some(TrackerRequest::HttpAnnounce {
            req_id,
            url,
            announce,
        }) => (req_id, url, announce),
        other => panic!("expected an HTTP announce, got {other:?}"),
    }
}

fn connect(c: &mut TrackerClient) -> (ReqId, String, u32) {
    match c.poll_request() {
        Some(TrackerRequest::UdpConnect { req_id, url, n }) => (req_id, url, n),
        other => panic!("expected a UDP connect, got {other:?}"),
    }
}

fn udp_announce(c: &mut TrackerClient) -> (ReqId, u64, AnnounceRequest, u32) {
    match c.poll_request() {
        Some(TrackerRequest::UdpAnnounce {
            req_id,
            connection_id,
            announce,
            n,
            ..
        }) => (req_id, connection_id, announce, n),
        other => panic!("expected a UDP announce, got {other:?}"),
    }
}

fn events(c: &mut TrackerClient) -> Vec<ClientEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

#[track_caller]
fn nothing_to_send(c: &mut TrackerClient) {
    assert_eq!(c.poll_request(), None);
}

fn failed(url: &str, error: TrackerError) -> ClientEvent {
    ClientEvent::Failed {
        url: url.into(),
        error,
    }
}

/// Drains events and returns the one `GaveUp` pause among them.
#[track_caller]
fn gave_up(c: &mut TrackerClient, failures_expected: u32) -> Duration {
    let ev = events(c);
    let pauses: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            ClientEvent::GaveUp { failures, retry_in } => {
                assert_eq!(*failures, failures_expected, "{ev:?}");
                Some(*retry_in)
            }
            _ => None,
        })
        .collect();
    assert_eq!(pauses.len(), 1, "{ev:?}");
    pauses[0]
}

// ------------------------------------------------------------------------------- UDP

#[test]
fn udp_retransmission_schedule_is_15_times_2_pow_n_then_gives_up() {
    let mut c = client(
        &[&["udp://a.example:6969"], &["http://b.example/announce"]],
        1,
    );
    let t0 = clock::now();
    c.start(t0);
    let (id, url, n) = connect(&mut c);
    assert_eq!((url.as_str(), n), ("udp://a.example:6969", 0));

    let mut t = t0;
    for n in 0..=8u32 {
        let wait = secs(15 << n);
        assert_eq!(c.poll_timeout(), Some(t + wait), "n = {n}");
        // Early: nothing.
        c.handle_timeout(t + wait - MS);
        nothing_to_send(&mut c);
        t += wait;
        c.handle_timeout(t);
        if n < 8 {
            // Retransmitted with the same request id and the next n.
            assert_eq!(connect(&mut c), (id, url.clone(), n + 1));
            assert!(events(&mut c).is_empty());
        }
    }
    // 15 · (2⁹ − 1) s after the first transmission, the tracker has failed...
    assert_eq!(t - t0, secs(7665));
    assert_eq!(
        events(&mut c),
        vec![failed("udp://a.example:6969", TrackerError::Timeout)]
    );
    // ... and the next tier is asked at once.
    let (_, url, a) = http(&mut c);
    assert_eq!(url, "http://b.example/announce");
    assert_eq!(a.event, Event::Started);
    assert_eq!(c.poll_timeout(), Some(t + secs(30)));
}

#[test]
fn udp_announce_retransmits_then_reconnects_when_the_connection_id_expires() {
    // BEP 15's "announce times out" example.
    let mut c = client(&[&["udp://a:1"]], 1);
    let t0 = clock::now();
    let at = |s: u64| t0 + secs(s);
    c.set_stats(0, 0, 4096);
    c.start(t0);
    let (cid_req, _, _) = connect(&mut c);
    c.handle_udp_connected(at(1), cid_req, 0xC0FFEE);
    let (aid, cid, a, n) = udp_announce(&mut c);
    assert_ne!(aid, cid_req);
    assert_eq!((cid, n), (0xC0FFEE, 0));
    assert_eq!(a.event, Event::Started);
    assert_eq!(a.tracker_id, None);
    assert_eq!(a.left, 4096);

    assert_eq!(c.poll_timeout(), Some(at(16)));
    c.handle_timeout(at(16));
    assert_eq!(udp_announce(&mut c), (aid, 0xC0FFEE, a.clone(), 1));
    assert_eq!(c.poll_timeout(), Some(at(46)));
    c.handle_timeout(at(46));
    // Obtained at 1 s, so still valid at 46 s.
    assert_eq!(udp_announce(&mut c), (aid, 0xC0FFEE, a.clone(), 2));
    assert_eq!(c.poll_timeout(), Some(at(106)));
    c.handle_timeout(at(106));
    // Expired at 61 s: connect again, as a new request, keeping n.
    let (cid_req2, _, n) = connect(&mut c);
    assert_eq!(n, 3);
    assert!(cid_req2 != aid && cid_req2 != cid_req);
    assert_eq!(c.poll_timeout(), Some(at(226)));

    // A late answer to the earlier announce is still news.
    c.handle_response(at(110), aid, Ok(ok(1800)));
    assert!(matches!(
        events(&mut c)[..],
        [ClientEvent::Announced {
            event: Event::Started,
            ..
        }]
    ));
    assert_eq!(c.poll_timeout(), Some(at(1910)));
    // The connect answer that comes after is stale.
    c.handle_udp_connected(at(111), cid_req2, 5);
    nothing_to_send(&mut c);
    assert_eq!(c.poll_timeout(), Some(at(1910)));
}

#[test]
fn udp_connection_id_is_reused_within_60s_and_refreshed_after() {
    let t0 = clock::now();
    let at = |s: u64| t0 + secs(s);
    let mut c = client(&[&["udp://a:1"]], 2);
    c.start(t0);
    let (r, _, _) = connect(&mut c);
    c.handle_udp_connected(t0, r, 7);
    let (r, _, _, _) = udp_announce(&mut c);
    c.handle_response(t0, r, Ok(ok(1800)));

    // 10 s later: `completed` goes straight out on the same connection id.
    c.set_stats(0, 4096, 0);
    c.completed(at(10));
    let (r, cid, a, n) = udp_announce(&mut c);
    assert_eq!((cid, n, a.event, a.left), (7, 0, Event::Completed, 0));
    c.handle_response(at(10), r, Ok(ok(1800)));

    // The periodic announce 30 min later needs a new connection id.
    assert_eq!(c.poll_timeout(), Some(at(1810)));
    c.handle_timeout(at(1810));
    let (r, _, n) = connect(&mut c);
    assert_eq!(n, 0);
    c.handle_udp_connected(at(1811), r, 8);
    let (r, cid, a, _) = udp_announce(&mut c);
    assert_eq!((cid, a.event), (8, Event::None));
    c.handle_response(at(1811), r, Ok(ok(1800)));

    // `stopped` 59 s after the id was obtained reuses it.
    c.stop(at(1870));
    let (r, cid, a, _) = udp_announce(&mut c);
    assert_eq!((cid, a.event, a.numwant), (8, Event::Stopped, Some(0)));
    c.handle_response(at(1870), r, Ok(ok(1800)));
    assert!(events(&mut c).contains(&ClientEvent::Stopped { acknowledged: true }));
    assert!(c.is_idle());

    // Exactly 60 s after: expired.
    let mut c = client(&[&["udp://a:1"]], 2);
    c.start(t0);
    let (r, _, _) = connect(&mut c);
    c.handle_udp_connected(t0, r, 7);
    let (r, _, _, _) = udp_announce(&mut c);
    c.handle_response(t0, r, Ok(ok(1800)));
    c.completed(at(60));
    let (_, _, n) = connect(&mut c);
    assert_eq!(n, 0);
}

#[test]
fn stop_over_udp_connects_first_within_the_stop_deadline() {
    let t0 = clock::now();
    let at = |s: u64| t0 + secs(s);
    let mut c = client(&[&["udp://a:1"]], 2);
    c.start(t0);
    let (r, _, _) = connect(&mut c);
    c.handle_udp_connected(t0, r, 7);
    let (r, _, _, _) = udp_announce(&mut c);
    c.handle_response(t0, r, Ok(ok(1800)));
    events(&mut c);

    c.stop(at(100));
    let (r, _, _) = connect(&mut c);
    // The connect would wait 15 s; the stop deadline is sooner.
    assert_eq!(c.poll_timeout(), Some(at(105)));
    c.handle_udp_connected(at(101), r, 9);
    let (_, cid, a, _) = udp_announce(&mut c);
    assert_eq!((cid, a.event), (9, Event::Stopped));
    assert_eq!(c.poll_timeout(), Some(at(105)));
    c.handle_timeout(at(105) - MS);
    assert!(events(&mut c).is_empty());
    c.handle_timeout(at(105));
    assert_eq!(
        events(&mut c),
        vec![
            failed("udp://a:1", TrackerError::Timeout),
            ClientEvent::Stopped {
                acknowledged: false
            }
        ]
    );
    nothing_to_send(&mut c);
    assert_eq!(c.poll_timeout(), None);
}

// ------------------------------------------------------------------------- lifecycle

#[test]
fn lifecycle_started_periodic_completed_stopped() {
    let t0 = clock::now();
    let at = |s: u64| t0 + secs(s);
    let url = "http://t.example/announce";
    let mut c = client(&[&[url]], 7);
    let key = c.key();
    assert_eq!(c.poll_timeout(), None);
    assert!(c.is_idle());

    c.set_stats(0, 0, 1000);
    c.start(t0);
    let (r, u, a) = http(&mut c);
    assert_eq!(u, url);
    assert_eq!(
        a,
        AnnounceRequest {
            info_hash: params().info_hash,
            peer_id: params().peer_id,
            port: 6881,
            uploaded: 0,
            downloaded: 0,
            left: 1000,
            event: Event::Started,
            numwant: Some(50),
            key,
            tracker_id: None,
        }
    );
    assert_eq!(c.poll_timeout(), Some(at(30)));
    let resp = AnnounceResponse {
        tracker_id: Some(b"xyz".to_vec()),
        complete: Some(3),
        incomplete: Some(4),
        ..ok(1800)
    };
    c.handle_response(t0, r, Ok(resp));
    assert_eq!(
        events(&mut c),
        vec![ClientEvent::Announced {
            url: url.into(),
            event: Event::Started,
            peers: 0,
            complete: Some(3),
            incomplete: Some(4),
            next_in: secs(1800),
        }]
    );

    // Periodic, at the interval, with fresh stats, the same key, the tracker id echoed.
    assert_eq!(c.poll_timeout(), Some(at(1800)));
    c.handle_timeout(at(1800) - MS);
    nothing_to_send(&mut c);
    c.set_stats(100, 500, 500);
    c.handle_timeout(at(1800));
    let (r, _, a) = http(&mut c);
    assert_eq!(a.event, Event::None);
    assert_eq!((a.uploaded, a.downloaded, a.left), (100, 500, 500));
    assert_eq!((a.key, a.numwant), (key, Some(50)));
    assert_eq!(a.tracker_id.as_deref(), Some(&b"xyz"[..]));
    c.handle_response(at(1800), r, Ok(ok(1800)));
    assert_eq!(c.poll_timeout(), Some(at(3600)));

    // Completed: at once, not at the interval.
    c.set_stats(100, 1000, 0);
    c.completed(at(2000));
    let (r, _, a) = http(&mut c);
    assert_eq!((a.event, a.left, a.key), (Event::Completed, 0, key));
    c.handle_response(at(2000), r, Ok(ok(1800)));
    assert_eq!(c.poll_timeout(), Some(at(3800)));
    // Once only.
    c.completed(at(2001));
    nothing_to_send(&mut c);
    c.handle_timeout(at(3800));
    let (r, _, a) = http(&mut c);
    assert_eq!(a.event, Event::None);
    c.handle_response(at(3800), r, Ok(ok(1800)));
    events(&mut c);

    // Stopped: numwant 0, a short deadline, then finished.
    c.stop(at(4000));
    let (r, _, a) = http(&mut c);
    assert_eq!((a.event, a.numwant, a.key), (Event::Stopped, Some(0), key));
    assert_eq!(c.poll_timeout(), Some(at(4005)));
    c.handle_response(at(4001), r, Ok(ok(1800)));
    assert_eq!(
        events(&mut c),
        vec![ClientEvent::Stopped { acknowledged: true }]
    );
    assert!(c.is_idle());
    assert_eq!(c.poll_timeout(), None);
    c.handle_timeout(at(10_000));
    nothing_to_send(&mut c);

    // A new session starts with `started` again, same key.
    c.start(at(20_000));
    let (_, _, a) = http(&mut c);
    assert_eq!((a.event, a.key), (Event::Started, key));
}

#[test]
fn completed_during_an_announce_in_flight_follows_it_at_once() {
    let t0 = clock::now();
    let mut c = client(&[&["http://a/"]], 1);
    c.start(t0);
    let (r, _, a) = http(&mut c);
    assert_eq!(a.event, Event::Started);
    c.completed(t0 + secs(1));
    nothing_to_send(&mut c);
    c.handle_response(t0 + secs(2), r, Ok(ok(1800)));
    let (_, _, a) = http(&mut c);
    assert_eq!(a.event, Event::Completed);
}

#[test]
fn a_failed_completed_is_retried_with_the_next_announce() {
    let t0 = clock::now();
    let mut c = client(&[&["http://a/"]], 1);
    c.start(t0);
    let (r, _, _) = http(&mut c);
    c.handle_response(t0, r, Ok(ok(1800)));
    c.completed(t0 + secs(10));
    let (r, _, a) = http(&mut c);
    assert_eq!(a.event, Event::Completed);
    c.handle_response(t0 + secs(10), r, Err(TrackerError::Network("reset".into())));
    let pause = gave_up(&mut c, 1);
    let t = t0 + secs(10) + pause;
    c.handle_timeout(t);
    let (r, _, a) = http(&mut c);
    assert_eq!(a.event, Event::Completed);
    c.handle_response(t, r, Ok(ok(1800)));
    c.handle_timeout(t + secs(1800));
    let (_, _, a) = http(&mut c);
    assert_eq!(a.event, Event::None);
}

#[test]
fn min_interval_is_honoured() {
    let t0 = clock::now();
    let at = |s: u64| t0 + secs(s);
    let mut c = client(&[&["http://a/"]], 1);
    c.start(t0);
    let (r, _, _) = http(&mut c);
    // interval below min interval: the min interval wins.
    let resp = AnnounceResponse {
        min_interval: Some(secs(600)),
        ..ok(120)
    };
    c.handle_response(t0, r, Ok(resp));
    assert_eq!(c.poll_timeout(), Some(at(600)));
    c.handle_timeout(at(120));
    nothing_to_send(&mut c);
    c.handle_timeout(at(600));
    let (r, _, _) = http(&mut c);
    let resp = AnnounceResponse {
        min_interval: Some(secs(300)),
        ..ok(1800)
    };
    c.handle_response(at(600), r, Ok(resp.clone()));

    // An early re-announce waits for the min interval...
    c.reannounce(at(700));
    nothing_to_send(&mut c);
    assert_eq!(c.poll_timeout(), Some(at(900)));
    c.handle_timeout(at(900));
    let (r, _, a) = http(&mut c);
    assert_eq!(a.event, Event::None);
    c.handle_response(at(900), r, Ok(resp));
    // ... and goes at once when it has passed.
    c.reannounce(at(1300));
    let (r, _, _) = http(&mut c);

    // A tracker asking for 5 s gets the 60 s floor.
    c.handle_response(at(1300), r, Ok(ok(5)));
    assert_eq!(c.poll_timeout(), Some(at(1360)));
    c.reannounce(at(1301));
    nothing_to_send(&mut c);
    assert_eq!(c.poll_timeout(), Some(at(1360)));
}

// ----------------------------------------------------------------------------- tiers

#[test]
fn tiers_keep_their_order_and_shuffle_within_a_tier_is_deterministic_per_seed() {
    let tier0 = [
        "http://a/",
        "http://b/",
        "http://c/",
        "http://d/",
        "http://e/",
    ];
    let tier1 = ["udp://x:1", "udp://y:1"];
    let mut orders = std::collections::HashSet::new();
    for seed in 0..20 {
        let c1 = client(&[&tier0, &tier1], seed);
        let c2 = client(&[&tier0, &tier1], seed);
        assert_eq!(c1.tiers(), c2.tiers());
        assert_eq!(c1.key(), c2.key());
        let tiers = c1.tiers();
        assert_eq!(tiers.len(), 2);
        let mut t0 = tiers[0].clone();
        t0.sort();
        assert_eq!(t0, tier0);
        let mut t1 = tiers[1].clone();
        t1.sort();
        assert_eq!(t1, tier1);
        orders.insert(tiers[0].join(" "));
    }
    assert!(orders.len() > 5, "the shuffle hardly shuffles: {orders:?}");
    assert_ne!(client(&[&tier0], 1).key(), client(&[&tier0], 2).key());

    // The first announce goes to the first URL of the first tier.
    let mut c = client(&[&tier0, &tier1], 3);
    let first = c.tiers()[0][0].to_string();
    c.start(clock::now());
    assert_eq!(http(&mut c).1, first);
}

#[test]
fn failover_to_the_next_url_then_the_next_tier_and_the_answering_tracker_moves_to_front() {
    let t0 = clock::now();
    let at = |s: u64| t0 + secs(s);
    let mut c = client(
        &[&["http://a/", "http://b/", "http://c/"], &["http://d/"]],
        3,
    );
    let order: Vec<String> = c.tiers()[0].iter().map(|s| s.to_string()).collect();
    c.start(t0);
    let (r, u, _) = http(&mut c);
    assert_eq!(u, order[0]);
    c.handle_response(t0, r, Err(TrackerError::Network("refused".into())));
    let (r, u, a) = http(&mut c);
    assert_eq!((u.as_str(), a.event), (order[1].as_str(), Event::Started));
    c.handle_response(at(1), r, Err(TrackerError::Failure("go away".into())));
    let (_, u, _) = http(&mut c);
    assert_eq!(u, order[2]);
    // HTTP timeout enforced by the scheduler: 30 s.
    assert_eq!(c.poll_timeout(), Some(at(31)));
    c.handle_timeout(at(31));
    let (r, u, a) = http(&mut c);
    assert_eq!((u.as_str(), a.event), ("http://d/", Event::Started));
    c.handle_response(at(32), r, Ok(ok(1800)));
    let ev = events(&mut c);
    assert_eq!(
        ev[..3],
        [
            failed(&order[0], TrackerError::Network("refused".into())),
            failed(&order[1], TrackerError::Failure("go away".into())),
            failed(&order[2], TrackerError::Timeout),
        ]
    );
    assert!(matches!(&ev[3], ClientEvent::Announced { url, .. } if url == "http://d/"));
    assert_eq!(ev.len(), 4);

    // The next announce starts over at the first tier; the first URL still fails, the
    // second answers (it never heard `started`, so it hears it now) and moves to the front.
    c.handle_timeout(at(1832));
    let (r, u, _) = http(&mut c);
    assert_eq!(u, order[0]);
    c.handle_response(at(1832), r, Err(TrackerError::Status(503)));
    let (r, u, a) = http(&mut c);
    assert_eq!((u.as_str(), a.event), (order[1].as_str(), Event::Started));
    c.handle_response(at(1833), r, Ok(ok(1800)));
    assert_eq!(
        c.tiers(),
        vec![vec![&*order[1], &*order[0], &*order[2]], vec!["http://d/"]]
    );
    let ev = events(&mut c);
    assert!(ev.contains(&ClientEvent::Switched {
        from: "http://d/".into(),
        to: order[1].clone(),
    }));

    // And is asked first from now on, with no event.
    c.handle_timeout(at(1833 + 1800));
    let (_, u, a) = http(&mut c);
    assert_eq!((u.as_str(), a.event), (order[1].as_str(), Event::None));
}

#[test]
fn unsupported_schemes_are_skipped_and_reported() {
    let mut c = client(
        &[
            &["https://s/announce", "wss://w/", "http://ok/announce"],
            &["dht://x", "  "],
            &[
                "udp://u:1",
                "udp://",
                "HTTP://ok/announce",
                "http://ok/announce",
            ],
        ],
        1,
    );
    let unsupported: Vec<_> = events(&mut c)
        .into_iter()
        .map(|e| match e {
            ClientEvent::UnsupportedUrl { url } => url,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        unsupported,
        ["https://s/announce", "wss://w/", "dht://x", "", "udp://"]
    );
    let mut tiers = c.tiers();
    tiers[1].sort();
    assert_eq!(
        tiers,
        vec![
            vec!["http://ok/announce"],
            vec!["HTTP://ok/announce", "udp://u:1"]
        ]
    );

    // Nothing usable at all: nothing is ever sent, and stop finishes at once.
    let t0 = clock::now();
    let mut c = client(&[&["https://s/"]], 1);
    events(&mut c);
    c.start(t0);
    nothing_to_send(&mut c);
    assert_eq!(c.poll_timeout(), None);
    c.stop(t0);
    assert_eq!(
        events(&mut c),
        vec![ClientEvent::Stopped {
            acknowledged: false
        }]
    );
    assert!(c.is_idle());
}

// --------------------------------------------------------------------------- backoff

#[test]
fn backoff_is_exponential_capped_and_reset_by_success() {
    let t0 = clock::now();
    let mut c = client(&[&["http://a/"], &["udp://b:1"]], 5);
    c.start(t0);
    let mut now = t0;
    let mut capped = Vec::new();
    for k in 1..=10u32 {
        let (r, _, _) = http(&mut c);
        c.handle_response(now, r, Err(TrackerError::Network("refused".into())));
        let (r, _, _) = connect(&mut c);
        c.handle_response(now, r, Err(TrackerError::Network("unreachable".into())));
        let pause = gave_up(&mut c, k);
        let nominal = secs(15 << (k - 1)).min(secs(1800));
        assert!(
            pause <= nominal && pause >= nominal - nominal / 8,
            "round {k}: {pause:?} vs {nominal:?}"
        );
        if nominal == secs(1800) {
            capped.push(pause);
        }
        assert_eq!(c.poll_timeout(), Some(now + pause));
        c.handle_timeout(now + pause - MS);
        nothing_to_send(&mut c);
        now += pause;
        c.handle_timeout(now);
    }
    assert_eq!(capped.len(), 3);
    assert!(
        capped.iter().any(|&p| p != capped[0]),
        "no jitter: {capped:?}"
    );

    // Success resets the backoff.
    let (r, _, _) = http(&mut c);
    c.handle_response(now, r, Ok(ok(1800)));
    now += secs(1800);
    c.handle_timeout(now);
    let (r, _, _) = http(&mut c);
    c.handle_response(now, r, Err(TrackerError::Timeout));
    let (r, _, _) = connect(&mut c);
    c.handle_response(now, r, Err(TrackerError::Failure("no".into())));
    let pause = gave_up(&mut c, 1);
    assert!(pause <= secs(15) && pause >= secs(15) - secs(15) / 8);
}

// --------------------------------------------------------------- what the user sees

#[test]
fn failure_reason_and_warning_are_surfaced_as_events() {
    let t0 = clock::now();
    let mut c = client(&[&["http://a/"]], 1);
    c.start(t0);
    let (r, _, _) = http(&mut c);
    c.handle_response(
        t0,
        r,
        Err(TrackerError::Failure("unregistered torrent".into())),
    );
    let ev = events(&mut c);
    assert_eq!(
        ev[0],
        failed(
            "http://a/",
            TrackerError::Failure("unregistered torrent".into())
        )
    );
    assert!(matches!(ev[1], ClientEvent::GaveUp { failures: 1, .. }));

    let ClientEvent::GaveUp { retry_in, .. } = ev[1] else {
        unreachable!()
    };
    c.handle_timeout(t0 + retry_in);
    let (r, _, _) = http(&mut c);
    let resp = AnnounceResponse {
        warning: Some("please upgrade".into()),
        ..ok(1800)
    };
    c.handle_response(t0 + retry_in, r, Ok(resp));
    let ev = events(&mut c);
    assert_eq!(
        ev[0],
        ClientEvent::Warning {
            url: "http://a/".into(),
            message: "please upgrade".into()
        }
    );
    assert!(matches!(ev[1], ClientEvent::Announced { .. }));
}

#[test]
fn peers_are_surfaced() {
    let t0 = clock::now();
    let mut c = client(&[&["http://a/"]], 1);
    c.start(t0);
    let (r, _, _) = http(&mut c);
    let p1 = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 6881);
    let p2 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 51413);
    let p0 = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 0);
    let resp = AnnounceResponse {
        peers: vec![p1, p0, p2],
        ..ok(1800)
    };
    c.handle_response(t0, r, Ok(resp));
    assert_eq!(c.poll_peers(), vec![p1, p2]);
    assert!(c.poll_peers().is_empty());
    assert!(matches!(
        events(&mut c)[..],
        [ClientEvent::Announced { peers: 2, .. }]
    ));
}

// ------------------------------------------------------------------ robustness

#[test]
fn unknown_and_stale_req_ids_are_ignored() {
    let t0 = clock::now();
    let at = |s: u64| t0 + secs(s);
    let mut c = client(&[&["http://a/"], &["http://b/"]], 1);
    c.start(t0);
    let (ra, _, _) = http(&mut c);
    c.handle_response(t0, ReqId(999), Ok(ok(1800)));
    c.handle_response(t0, ReqId(999), Err(TrackerError::Timeout));
    c.handle_udp_connected(t0, ReqId(999), 1);
    nothing_to_send(&mut c);
    assert!(events(&mut c).is_empty());
    assert_eq!(c.poll_timeout(), Some(at(30)));

    // a times out; a's late answer and late error are stale.
    c.handle_timeout(at(30));
    let (rb, u, _) = http(&mut c);
    assert_eq!(u, "http://b/");
    assert_eq!(
        events(&mut c),
        vec![failed("http://a/", TrackerError::Timeout)]
    );
    c.handle_response(at(31), ra, Ok(ok(1800)));
    c.handle_response(at(31), ra, Err(TrackerError::Network("late".into())));
    // An HTTP request id is no UDP connect.
    c.handle_udp_connected(at(31), rb, 5);
    nothing_to_send(&mut c);
    assert!(events(&mut c).is_empty());
    assert_eq!(c.poll_timeout(), Some(at(60)));

    c.handle_response(at(32), rb, Ok(ok(1800)));
    assert_eq!(events(&mut c).len(), 1);
    // A duplicate answer is stale too.
    c.handle_response(at(33), rb, Ok(ok(60)));
    assert!(events(&mut c).is_empty());
    assert_eq!(c.poll_timeout(), Some(at(1832)));

    // UDP: a connect answer must quote the connect in flight in this attempt.
    let mut c = client(&[&["udp://a:1"], &["udp://b:1"]], 1);
    c.start(t0);
    let (ca, _, _) = connect(&mut c);
    c.handle_udp_connected(t0, ReqId(999), 1);
    c.handle_response(t0, ReqId(999), Ok(ok(1800)));
    // A connect id is no announce: an announce answer quoting it is ignored.
    c.handle_response(t0, ca, Ok(ok(1800)));
    nothing_to_send(&mut c);
    assert!(events(&mut c).is_empty());
    c.handle_response(t0, ca, Err(TrackerError::Failure("bad".into())));
    let (cb, url, _) = connect(&mut c);
    assert_eq!(url, "udp://b:1");
    // a's connect is stale now.
    c.handle_udp_connected(at(1), ca, 1);
    nothing_to_send(&mut c);
    c.handle_udp_connected(at(1), cb, 2);
    assert_eq!(udp_announce(&mut c).1, 2);

    // Answers while idle are ignored.
    let mut idle = client(&[&["http://a/"]], 1);
    idle.handle_response(t0, ReqId(1), Ok(ok(1800)));
    idle.handle_udp_connected(t0, ReqId(1), 1);
    assert!(idle.poll_request().is_none() && idle.poll_timeout().is_none());
}

#[test]
fn spurious_and_early_timeouts_change_nothing() {
    let t0 = clock::now();
    let at = |s: u64| t0 + secs(s);
    let mut c = client(&[&["http://a/"]], 1);
    c.handle_timeout(t0);
    nothing_to_send(&mut c);
    assert_eq!(c.poll_timeout(), None);

    c.start(t0);
    let (r, _, _) = http(&mut c);
    for t in [t0, at(1), at(30) - MS] {
        c.handle_timeout(t);
        nothing_to_send(&mut c);
        assert!(events(&mut c).is_empty());
        assert_eq!(c.poll_timeout(), Some(at(30)));
    }
    c.handle_response(at(1), r, Ok(ok(1800)));
    events(&mut c);
    for t in [at(2), at(1000), at(1801) - MS] {
        c.handle_timeout(t);
        nothing_to_send(&mut c);
        assert!(events(&mut c).is_empty());
        assert_eq!(c.poll_timeout(), Some(at(1801)));
    }
    c.handle_timeout(at(1801));
    let (_, _, a) = http(&mut c);
    assert_eq!(a.event, Event::None);
}

#[test]
fn stop_is_one_best_effort_announce_with_a_short_deadline() {
    let t0 = clock::now();
    let at = |s: u64| t0 + secs(s);
    let mut c = client(&[&["http://a/"], &["http://b/"]], 1);
    c.start(t0);
    let (r, _, _) = http(&mut c);
    c.handle_response(t0, r, Ok(ok(1800)));
    c.handle_timeout(at(1800));
    let (_, u, _) = http(&mut c);
    assert_eq!(u, "http://a/");
    events(&mut c);

    // The periodic announce in flight is abandoned; `stopped` goes to the tracker that
    // answered last, once.
    c.stop(at(1810));
    let (r, u, a) = http(&mut c);
    assert_eq!(
        (u.as_str(), a.event, a.numwant),
        ("http://a/", Event::Stopped, Some(0))
    );
    assert_eq!(c.poll_timeout(), Some(at(1815)));
    c.stop(at(1811));
    nothing_to_send(&mut c);
    c.completed(at(1811));
    c.reannounce(at(1811));
    nothing_to_send(&mut c);
    c.handle_timeout(at(1815));
    assert_eq!(
        events(&mut c),
        vec![
            failed("http://a/", TrackerError::Timeout),
            ClientEvent::Stopped {
                acknowledged: false
            }
        ]
    );
    // No failover to b, nothing more.
    nothing_to_send(&mut c);
    assert_eq!(c.poll_timeout(), None);
    assert!(c.is_idle());
    c.handle_response(at(1816), r, Ok(ok(1800)));
    assert!(events(&mut c).is_empty());

    // A refusal of `stopped` finishes too.
    let mut c = client(&[&["http://a/"], &["http://b/"]], 1);
    c.start(t0);
    let (r, _, _) = http(&mut c);
    c.handle_response(t0, r, Ok(ok(1800)));
    c.stop(at(10));
    let (r, _, _) = http(&mut c);
    c.handle_response(at(10), r, Err(TrackerError::Status(500)));
    assert!(c.is_idle());
    nothing_to_send(&mut c);
}
