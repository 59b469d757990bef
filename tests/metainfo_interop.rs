//! Info hashes and file lists agree with third parties: `mktorrent` for creation and
//! libtorrent (through `python3-libtorrent`) for parsing, both ways. CI installs both; a
//! missing tool fails these tests.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

fn bitmill_info(torrent: &Path) -> Value {
    let out = run_expect(bitmill().arg("info").arg("--json").arg(torrent), 0);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn lt(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<u8> {
    let mut cmd = tool("/usr/bin/python3");
    cmd.arg(tests_file("lt_torrent.py"));
    for a in args {
        cmd.arg(a);
    }
    run_expect(&mut cmd, 0).stdout
}

fn lt_info(torrent: &Path) -> Value {
    serde_json::from_slice(&lt(&[&"info", &torrent])).unwrap()
}

struct Case {
    what: &'static str,
    files: &'static [(&'static str, usize)],
    single: bool,
    log2_piece: u32,
    private: bool,
    trackers: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        what: "single odd-sized file",
        files: &[("movie.mkv", 1_000_003)],
        single: true,
        log2_piece: 15,
        private: false,
        trackers: &["http://127.0.0.1:6969/announce"],
    },
    Case {
        what: "single file, 256 KiB pieces, private",
        files: &[("x.iso", 3 << 20)],
        single: true,
        log2_piece: 18,
        private: true,
        trackers: &["udp://127.0.0.1:6969"],
    },
    Case {
        what: "odd multi-file tree",
        files: ODD_TREE,
        single: false,
        log2_piece: 15,
        private: false,
        trackers: &["http://127.0.0.1:1/a", "http://127.0.0.1:2/b"],
    },
    Case {
        what: "odd multi-file tree, 1 MiB pieces, private",
        files: ODD_TREE,
        single: false,
        log2_piece: 20,
        private: true,
        trackers: &["http://127.0.0.1:1/a"],
    },
];

/// Makes the case's data; returns the path to share.
fn setup(case: &Case, dir: &Path) -> std::path::PathBuf {
    if case.single {
        make_tree(dir, case.files);
        dir.join(case.files[0].0)
    } else {
        let root = dir.join("shared folder");
        make_tree(&root, case.files);
        root
    }
}

#[test]
fn bitmill_create_gives_the_same_info_hash_as_mktorrent() {
    for case in CASES {
        let tmp = tempfile::tempdir().unwrap();
        let src = setup(case, tmp.path());
        let mk_out = tmp.path().join("mk.torrent");
        let mut mk = tool("mktorrent");
        mk.arg("-l")
            .arg(case.log2_piece.to_string())
            .arg("-o")
            .arg(&mk_out);
        for t in case.trackers {
            mk.arg("-a").arg(t);
        }
        if case.private {
            mk.arg("-p");
        }
        run_expect(mk.arg(&src), 0);

        let bm_out = tmp.path().join("bm.torrent");
        let mut bm = bitmill();
        bm.args(["create", "-q", "--no-date", "-l"])
            .arg(case.log2_piece.to_string())
            .arg("-o")
            .arg(&bm_out);
        for t in case.trackers {
            bm.arg("-t").arg(t);
        }
        if case.private {
            bm.arg("--private");
        }
        run_expect(bm.arg(&src), 0);

        let mk_info = bitmill_info(&mk_out);
        let bm_info = bitmill_info(&bm_out);
        assert_eq!(mk_info["info_hash"], bm_info["info_hash"], "{}", case.what);
        assert_eq!(mk_info["files"], bm_info["files"], "{}", case.what);
        assert_eq!(bm_info["private"], case.private, "{}", case.what);
        // And libtorrent computes that same hash from mktorrent's file.
        assert_eq!(
            lt_info(&mk_out)["info_hash"],
            mk_info["info_hash"],
            "{}",
            case.what
        );
    }
}

#[test]
fn libtorrent_parses_bitmill_torrents_the_same_way() {
    for case in CASES {
        let tmp = tempfile::tempdir().unwrap();
        let src = setup(case, tmp.path());
        let out = tmp.path().join("bm.torrent");
        let mut bm = bitmill();
        bm.args(["create", "-q", "-l"])
            .arg(case.log2_piece.to_string())
            .arg("-o")
            .arg(&out)
            .arg(&src);
        for t in case.trackers {
            bm.arg("-t").arg(t);
        }
        if case.private {
            bm.arg("--private");
        }
        run_expect(&mut bm, 0);
        let ours = bitmill_info(&out);
        let theirs = lt_info(&out);
        assert_eq!(ours["info_hash"], theirs["info_hash"], "{}", case.what);
        assert_eq!(ours["name"], theirs["name"], "{}", case.what);
        assert_eq!(ours["total_length"], theirs["total_size"], "{}", case.what);
        assert_eq!(
            ours["piece_length"], theirs["piece_length"],
            "{}",
            case.what
        );
        assert_eq!(ours["pieces"], theirs["num_pieces"], "{}", case.what);
        assert_eq!(ours["private"], theirs["private"], "{}", case.what);
        let trackers: Vec<&str> = theirs["trackers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(trackers, case.trackers, "{}", case.what);
        let prefix = if case.single {
            String::new()
        } else {
            format!("{}/", ours["name"].as_str().unwrap())
        };
        let lt_files: Vec<(String, u64, u64)> = theirs["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["path"].as_str().unwrap().to_string(),
                    f["size"].as_u64().unwrap(),
                    f["offset"].as_u64().unwrap(),
                )
            })
            .collect();
        let our_files: Vec<(String, u64, u64)> = ours["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let p = f["path"].as_str().unwrap();
                (
                    if case.single {
                        p.to_string()
                    } else {
                        format!("{prefix}{p}")
                    },
                    f["length"].as_u64().unwrap(),
                    f["offset"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(our_files, lt_files, "{}", case.what);
    }
}

/// libtorrent 2 makes hybrid v1+v2 torrents with BEP 47 padding files by default: bitmill
/// must compute the same v1 info hash and verify the data (padding never exists on disk).
#[test]
fn bitmill_reads_and_verifies_libtorrent_torrents_with_padding_files() {
    for v1_only in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("tree");
        make_tree(&root, ODD_TREE);
        let out = tmp.path().join("lt.torrent");
        if v1_only {
            lt(&[&"create", &root, &out, &"v1"]);
        } else {
            lt(&[&"create", &root, &out]);
        }
        let theirs = lt_info(&out);
        let ours = bitmill_info(&out);
        assert_eq!(ours["info_hash"], theirs["info_hash"], "v1_only={v1_only}");
        let pads = ours["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["padding"] == true)
            .count();
        let lt_pads = theirs["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["pad"] == true)
            .count();
        assert_eq!(pads, lt_pads);
        if !v1_only {
            assert!(
                pads > 0,
                "libtorrent's hybrid torrents pad files to piece boundaries"
            );
        }
        let v = run_expect(
            bitmill()
                .args(["verify", "-q", "--no-resume", "--json"])
                .arg(&out)
                .arg(tmp.path()),
            0,
        );
        let v: Value = serde_json::from_slice(&v.stdout).unwrap();
        assert_eq!(v["complete"], true);
        assert_eq!(v["good"], theirs["num_pieces"]);
    }
}
