//! Trackers end to end over loopback: `bitmill tracker`, opentracker, and broken trackers.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

fn create(src: &Path, out: &Path, tracker: &str) -> String {
    let o = run_expect(
        bitmill()
            .args(["create", "-q", "-l", "64K", "-t", tracker, "-o"])
            .arg(out)
            .arg(src),
        0,
    );
    stdout(&o).trim().to_string()
}

fn download(torrent: &Path, out: &Path, resume: &Path) -> Proc {
    Proc::spawn(
        bitmill()
            .arg("download")
            .arg(torrent)
            .arg("-o")
            .arg(out)
            .args(["--listen", "127.0.0.1:0", "--resume-dir"])
            .arg(resume),
    )
}

/// One `bitmill tracker`, one seed and five downloads that learn of each other only through
/// the tracker: all finish with the right data, and the leechers trade among themselves.
#[test]
fn five_downloads_find_each_other_through_bitmill_tracker() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let src = tmp.path().join("f.bin");
    std::fs::write(&src, data(16 << 20, 11)).unwrap();
    let torrent = tmp.path().join("t.torrent");
    create(&src, &torrent, &format!("http://127.0.0.1:{port}/announce"));
    let mut tr = Proc::spawn(
        bitmill()
            .args(["tracker", "--stats-every", "1", "--listen"])
            .arg(format!("127.0.0.1:{port}")),
    );
    tr.wait_for("tracker listening on", Duration::from_secs(20));
    // The seed is slow, so the leechers must share to finish in time.
    let mut s = seed_proc(
        &torrent,
        &src,
        &tmp.path().join("rs"),
        &["-q", "--max-upload-rate", "4M"],
    );
    s.wait_for("listening on", Duration::from_secs(20));
    let dls: Vec<_> = (0..5)
        .map(|i| {
            download(
                &torrent,
                &tmp.path().join(format!("d{i}")),
                &tmp.path().join(format!("r{i}")),
            )
        })
        .collect();
    let mut sent_by_leechers = 0.0;
    for d in dls {
        let (code, log) = d.finish(Duration::from_secs(90));
        assert_eq!(code, Some(0), "{log}");
        assert!(
            log.contains("(started):"),
            "announced to the tracker:\n{log}"
        );
        let sent = log
            .lines()
            .find_map(|l| l.split(", sent ").nth(1))
            .unwrap_or("0 B");
        if let Some(mib) = sent.strip_suffix(" MiB") {
            sent_by_leechers += mib.parse::<f64>().unwrap_or(0.0);
        }
    }
    for i in 0..5 {
        assert_eq!(
            std::fs::read(tmp.path().join(format!("d{i}/f.bin"))).unwrap(),
            std::fs::read(&src).unwrap()
        );
    }
    assert!(
        sent_by_leechers > 8.0,
        "leechers uploaded only {sent_by_leechers} MiB to each other"
    );
    // Leechers sent `completed` and `stopped`: the tracker is left with the seed.
    tr.wait_for("1 peers (1 seeders, 0 leechers)", Duration::from_secs(10));
    s.interrupt();
    tr.interrupt();
}

/// bitmill announces to opentracker over HTTP and UDP and gets its peers from it.
#[test]
fn bitmill_announces_to_opentracker_over_http_and_udp() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let src = tmp.path().join("f.bin");
    std::fs::write(&src, data(4 << 20, 12)).unwrap();
    let th = tmp.path().join("h.torrent");
    let tu = tmp.path().join("u.torrent");
    let hh = create(&src, &th, &format!("http://127.0.0.1:{port}/announce"));
    // A different source gives a different info hash for the UDP run.
    let hu = {
        let o = run_expect(
            bitmill()
                .args(["create", "-q", "-l", "64K", "-s", "udp", "-t"])
                .arg(format!("udp://127.0.0.1:{port}"))
                .arg("-o")
                .arg(&tu)
                .arg(&src),
            0,
        );
        stdout(&o).trim().to_string()
    };
    // Debian's opentracker only tracks whitelisted torrents.
    let wl = tmp.path().join("whitelist");
    std::fs::write(&wl, format!("{hh}\n{hu}\n")).unwrap();
    let mut ot = tool("opentracker");
    ot.args(["-i", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .arg("-P")
        .arg(port.to_string())
        .arg("-w")
        .arg(&wl);
    let ot = Proc::spawn(&mut ot);
    std::thread::sleep(Duration::from_millis(500));
    for (t, name) in [(&th, "http"), (&tu, "udp")] {
        let mut s = seed_proc(t, &src, &tmp.path().join(format!("rs{name}")), &[]);
        s.wait_for("(started)", Duration::from_secs(20));
        let d = download(
            t,
            &tmp.path().join(format!("d{name}")),
            &tmp.path().join(format!("r{name}")),
        );
        let (code, log) = d.finish(Duration::from_secs(60));
        assert_eq!(code, Some(0), "{name}: {log}");
        assert!(
            log.contains(&format!("tracker {name}://")) && log.contains("(started):"),
            "{name}: {log}"
        );
        assert_eq!(
            std::fs::read(tmp.path().join(format!("d{name}/f.bin"))).unwrap(),
            std::fs::read(&src).unwrap()
        );
        s.interrupt();
        let (_, slog) = s.finish(Duration::from_secs(20));
        assert!(slog.contains("(started)"), "{slog}");
    }
    drop(ot);
}

/// A fake HTTP tracker that answers each connection with `reply` (None: accept and say
/// nothing), for `n` connections.
fn fake_tracker(reply: Option<Vec<u8>>, n: usize) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for _ in 0..n {
            let Ok((mut c, _)) = l.accept() else { return };
            let mut buf = [0u8; 4096];
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let n = c.read(&mut buf).unwrap_or(0);
            // `{target}` in the reply becomes the request's path and query (for redirects).
            let target = String::from_utf8_lossy(&buf[..n])
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .to_string();
            match &reply {
                Some(r) => {
                    let r = String::from_utf8_lossy(r).replace("{target}", &target);
                    let _ = c.write_all(r.as_bytes());
                }
                None => std::thread::sleep(Duration::from_secs(40)),
            }
        }
    });
    port
}

/// Broken trackers are reported and survived: garbage, a failure reason, a redirect to
/// another (working) tracker, a body too large, and silence.
#[test]
fn broken_trackers_are_reported_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("f.bin");
    std::fs::write(&src, data(1 << 20, 13)).unwrap();
    let good_port = free_port();
    let mut tr = Proc::spawn(
        bitmill()
            .args(["tracker", "--listen"])
            .arg(format!("127.0.0.1:{good_port}")),
    );
    tr.wait_for("tracker listening on", Duration::from_secs(20));
    let ok = |body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let cases: Vec<(Option<Vec<u8>>, &str)> = vec![
        (Some(ok("this is not bencode")), "bad tracker response"),
        (Some(ok("d14:failure reason11:go away nowe")), "tracker refused: go away now"),
        (
            Some(format!("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{good_port}{{target}}\r\nContent-Length: 0\r\n\r\n").into_bytes()),
            "(started): ",
        ),
        (Some(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n".to_vec()), "too large"),
        (Some(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n".to_vec()), "HTTP 500"),
    ];
    for (i, (reply, want)) in cases.into_iter().enumerate() {
        let port = fake_tracker(reply, 20);
        let t = tmp.path().join(format!("{i}.torrent"));
        run_expect(
            bitmill()
                .args(["create", "-q", "-s"])
                .arg(format!("case{i}"))
                .args(["-t"])
                .arg(format!("http://127.0.0.1:{port}/announce"))
                .arg("-o")
                .arg(&t)
                .arg(&src),
            0,
        );
        let mut s = seed_proc(&t, &src, &tmp.path().join(format!("r{i}")), &[]);
        let line = s.wait_for(want, Duration::from_secs(20));
        assert!(line.contains("tracker"), "case {i}: {line}");
        s.interrupt();
        let (code, log) = s.finish(Duration::from_secs(20));
        assert_eq!(
            code,
            Some(0),
            "case {i}: the seed keeps running and stops cleanly:\n{log}"
        );
    }
    // Silence: the announce times out (30 s) and the client backs off; the seed still runs
    // and stops promptly.
    let port = fake_tracker(None, 3);
    let t = tmp.path().join("silent.torrent");
    run_expect(
        bitmill()
            .args(["create", "-q", "-s", "silent", "-t"])
            .arg(format!("http://127.0.0.1:{port}/announce"))
            .arg("-o")
            .arg(&t)
            .arg(&src),
        0,
    );
    let mut s = seed_proc(&t, &src, &tmp.path().join("rsilent"), &[]);
    s.wait_for("listening on", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    s.interrupt();
    let (code, log) = s.finish(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "stop waits at most the stop deadline"
    );
    tr.interrupt();
}
