//! The swarm lab (`bitmill swarm`) end to end: a tracker, a seed and a few leechers as real
//! processes on loopback, in both modes, small enough to take seconds. Asserts what the lab
//! claims: every leecher ends with the seed's exact bytes, client-server time matches N·F/u_s,
//! and P2P beats client-server for the same N while staying within 1.15x of its bound.

mod common;

use common::*;
use std::path::Path;

fn results(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("results.json")).expect("results.json written");
    serde_json::from_str(&text).expect("results.json parses")
}

fn run_of<'a>(v: &'a serde_json::Value, mode: &str, n: u64) -> &'a serde_json::Value {
    v["results"]
        .as_array()
        .expect("results array")
        .iter()
        .find(|r| r["mode"] == mode && r["n"] == n)
        .unwrap_or_else(|| panic!("no {mode} run with N={n} in {v}"))
}

#[test]
fn a_small_lab_run_meets_the_bounds_and_delivers_every_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    // F = 6 MiB, u_s = 6 MiB/s, u = 1.5 MiB/s, d = 6 MiB/s, N = 4:
    //   client-server bound 4·6/6 = 4 s; P2P bound max(1, 1, 24/(6+6)) = 2 s.
    let o = bitmill()
        .args(["swarm", "-q", "-n", "4", "-F", "6M", "--seed-up", "6M"])
        .args(["--up", "1536K", "--down", "6M", "--keep", "--out"])
        .arg(&out)
        .arg("--work-dir")
        .arg(&work)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "swarm failed: {stderr}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("client-server") && stdout.contains("p2p"),
        "{stdout}"
    );
    for f in ["results.csv", "results.json", "plot.svg"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert_eq!(
        std::fs::read_to_string(out.join("results.csv"))
            .unwrap()
            .lines()
            .count(),
        3,
        "a header and one row per run"
    );

    let v = results(&out);
    let cs = run_of(&v, "client-server", 4);
    let p2p = run_of(&v, "p2p", 4);
    let d = |r: &serde_json::Value| r["distribution_time"].as_f64().unwrap();
    let bound = |r: &serde_json::Value| r["bound"].as_f64().unwrap();
    assert!((bound(cs) - 4.0).abs() < 1e-9 && (bound(p2p) - 2.0).abs() < 1e-9);
    let cs_ratio = d(cs) / bound(cs);
    assert!(
        (0.95..=1.05).contains(&cs_ratio),
        "client-server D {:.3} s vs bound {:.3} s",
        d(cs),
        bound(cs)
    );
    assert!(
        d(p2p) < d(cs),
        "P2P {:.2} s not below client-server {:.2} s",
        d(p2p),
        d(cs)
    );
    let p2p_ratio = d(p2p) / bound(p2p);
    assert!(
        p2p_ratio <= 1.15,
        "P2P D {:.3} s is {p2p_ratio:.3}x its bound {:.3} s",
        d(p2p),
        bound(p2p)
    );
    // Every leecher finished; in client-server mode none of them uploaded a byte.
    for r in [cs, p2p] {
        let peers = r["peers"].as_array().unwrap();
        assert_eq!(peers.len(), 4);
        for p in peers {
            assert!(p["completed"].as_f64().is_some_and(|t| t > 0.0), "{p}");
        }
    }
    assert!(cs["peers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["uploaded"] == 0));
    assert!(p2p["peers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["uploaded"].as_u64().unwrap() > 0));

    // The data: every leecher's file is byte for byte the seed's.
    let root = std::fs::read_dir(&work)
        .unwrap()
        .next()
        .expect("the lab's kept folder")
        .unwrap()
        .path();
    for mode in ["client-server", "p2p"] {
        let run = root.join(format!("{mode}-4"));
        let want = sha256_file(&run.join("seed").join("lab.bin"));
        for i in 0..4 {
            let got = sha256_file(&run.join(format!("peer-{i}")).join("lab.bin"));
            assert_eq!(got, want, "{mode} peer {i}");
        }
    }
}

#[test]
fn the_plot_and_table_can_be_redrawn_from_saved_results() {
    let tmp = tempfile::tempdir().unwrap();
    let saved = tmp.path().join("saved.json");
    // A hand-written result file in the lab's JSON format.
    std::fs::write(
        &saved,
        r#"{"format":"bitmill-lab","version":1,
            "rates":{"file_size":1048576,"seed_up":1048576,"peer_up":262144,"peer_down":1048576},
            "piece_length":16384,
            "results":[{"mode":"client-server","n":2,"distribution_time":2.1,"bound":2.0,
                        "seed_uploaded":2097152,
                        "peers":[{"index":0,"completed":2.0,"downloaded":1048576,"uploaded":0},
                                 {"index":1,"completed":2.1,"downloaded":1048576,"uploaded":0}]}]}"#,
    )
    .unwrap();
    let out = tmp.path().join("out");
    let o = bitmill()
        .args(["swarm", "--replot"])
        .arg(&saved)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("2.10") && table.contains("1.05"), "{table}");
    let svg = std::fs::read_to_string(out.join("plot.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);

    // Bad input: a clear error, exit code 2, nothing written.
    std::fs::write(&saved, "{\"format\":\"something else\"}").unwrap();
    let out2 = tmp.path().join("out2");
    let o = bitmill()
        .args(["swarm", "--replot"])
        .arg(&saved)
        .arg("--out")
        .arg(&out2)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(!out2.join("plot.svg").exists());
}

#[test]
fn bad_lab_arguments_are_refused_before_anything_starts() {
    for args in [
        &["swarm", "-n", "0"][..],
        &["swarm", "-n", "1..=3"],
        &["swarm", "--mode", "mesh"],
        &["swarm", "-F", "0"],
        &["swarm", "--piece-length", "1000"],
    ] {
        let o = bitmill().args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(!o.stderr.is_empty(), "{args:?}: no error message");
    }
}
