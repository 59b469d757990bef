//! The `create`, `info` and `verify` commands, as a user runs them.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

fn create(src: &Path, out: &Path, extra: &[&str]) -> String {
    let o = run_expect(
        bitmill()
            .arg("create")
            .arg("-q")
            .arg("-o")
            .arg(out)
            .args(extra)
            .arg(src),
        0,
    );
    stdout(&o).trim().to_string()
}

fn verify_json(torrent: &Path, path: &Path, extra: &[&str], code: i32) -> Value {
    let o = run_expect(
        bitmill()
            .args(["verify", "--json"])
            .args(extra)
            .arg(torrent)
            .arg(path),
        code,
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// An odd multi-file tree, its torrent (32 KiB pieces) and a private resume folder.
fn fixture() -> (tempfile::TempDir, PathBuf, PathBuf, String) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("dl").join("stuff");
    make_tree(&root, ODD_TREE);
    let torrent = tmp.path().join("stuff.torrent");
    let resume = tmp.path().join("resume");
    let _ = create(
        &root,
        &torrent,
        &["-l", "32K", "-t", "http://127.0.0.1:6969/announce"],
    );
    (tmp, torrent, resume, "dl".into())
}

#[test]
fn create_then_info_shows_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("stuff");
    make_tree(&root, ODD_TREE);
    let out = tmp.path().join("s.torrent");
    let hash = create(
        &root,
        &out,
        &[
            "-t",
            "http://127.0.0.1:1/a",
            "-t",
            "udp://127.0.0.1:2",
            "-c",
            "hi",
            "--private",
            "-s",
            "lab",
        ],
    );
    assert_eq!(hash.len(), 40);
    let text = stdout(&run_expect(bitmill().arg("info").arg(&out), 0));
    for want in [
        &format!("info hash:     {hash}")[..],
        "name:          stuff",
        "private:       yes",
        "tier 2: udp://127.0.0.1:2",
        "comment:       hi",
        "source:        lab",
        "a/b",
        "Ω unicode name",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let j: Value =
        serde_json::from_slice(&run_expect(bitmill().args(["info", "--json"]).arg(&out), 0).stdout)
            .unwrap();
    assert_eq!(j["info_hash"], hash);
    assert_eq!(j["files"].as_array().unwrap().len(), ODD_TREE.len());
    let total: u64 = ODD_TREE.iter().map(|f| f.1 as u64).sum();
    assert_eq!(j["total_length"], total);
    // Sorted byte-wise by path, like mktorrent.
    let paths: Vec<&str> = j["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    assert!(paths.iter().position(|p| *p == "a.txt") < paths.iter().position(|p| *p == "a/b"));
}

#[test]
fn create_refuses_to_clobber_or_share_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("f");
    fs::write(&f, b"hello").unwrap();
    let out = tmp.path().join("f.torrent");
    create(&f, &out, &[]);
    let o = run_expect(bitmill().arg("create").arg("-o").arg(&out).arg(&f), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("exists"));
    create(&f, &out, &["--force"]);
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    fs::write(empty.join("zero"), b"").unwrap();
    let o = run_expect(
        bitmill()
            .arg("create")
            .arg("-o")
            .arg(tmp.path().join("e.torrent"))
            .arg(&empty),
        2,
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to share"));
    run_expect(bitmill().args(["create", "-l", "100000"]).arg(&f), 2);
    run_expect(bitmill().arg("create").arg(tmp.path().join("nope")), 2);
}

#[test]
fn single_file_verify_accepts_the_file_or_its_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("data.bin");
    fs::write(&f, data(300_000, 3)).unwrap();
    let t = tmp.path().join("d.torrent");
    create(&f, &t, &[]);
    for p in [f.clone(), tmp.path().to_path_buf()] {
        let v = verify_json(&t, &p, &["--no-resume"], 0);
        assert_eq!(v["complete"], true, "{p:?}");
    }
    // Renamed file, pointed at directly.
    let g = tmp.path().join("renamed");
    fs::rename(&f, &g).unwrap();
    assert_eq!(verify_json(&t, &g, &["--no-resume"], 0)["complete"], true);
}

#[test]
fn verify_finds_a_flipped_byte_a_missing_file_and_a_short_file() {
    let (tmp, torrent, resume, dl) = fixture();
    let dl = tmp.path().join(dl);
    let r = ["--resume-dir", resume.to_str().unwrap()];
    let v = verify_json(&torrent, &dl, &r, 0);
    let n = v["pieces"].as_u64().unwrap();
    assert_eq!(v["good"], n);

    // Flip one byte in the middle of a/b (offset 12345 of that file).
    let ab = dl.join("stuff/a/b");
    let mut bytes = fs::read(&ab).unwrap();
    bytes[12_345] ^= 0x40;
    fs::write(&ab, &bytes).unwrap();
    let v = verify_json(&torrent, &dl, &r, 1);
    assert_eq!(v["bad"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["missing"].as_array().unwrap().len(), 0);
    bytes[12_345] ^= 0x40;
    fs::write(&ab, &bytes).unwrap();

    // A missing file: its pieces are missing, the rest are good.
    fs::rename(dl.join("stuff/z"), tmp.path().join("z.saved")).unwrap();
    let v = verify_json(&torrent, &dl, &r, 1);
    assert!(!v["missing"].as_array().unwrap().is_empty());
    assert_eq!(v["bad"].as_array().unwrap().len(), 0);
    assert_eq!(
        v["good"].as_u64().unwrap() + v["missing"].as_array().unwrap().len() as u64,
        n
    );
    fs::rename(tmp.path().join("z.saved"), dl.join("stuff/z")).unwrap();

    // A short file.
    let big = dl.join("stuff/B/deep/er/file.bin");
    let full = fs::read(&big).unwrap();
    fs::write(&big, &full[..100_000]).unwrap();
    let v = verify_json(&torrent, &dl, &r, 1);
    assert!(!v["missing"].as_array().unwrap().is_empty());
    let text = stdout(&run_expect(
        bitmill()
            .args(["verify", "-q", "--no-resume"])
            .arg(&torrent)
            .arg(&dl),
        1,
    ));
    assert!(text.contains("missing pieces:"), "{text}");
    fs::write(&big, &full).unwrap();
    assert_eq!(verify_json(&torrent, &dl, &r, 0)["complete"], true);
}

#[test]
fn quick_verify_trusts_the_resume_record_only_for_unchanged_files() {
    let (tmp, torrent, resume, dl) = fixture();
    let dl = tmp.path().join(dl);
    let r = ["--resume-dir", resume.to_str().unwrap()];
    let quick = ["--quick", "--resume-dir", resume.to_str().unwrap()];
    let n = verify_json(&torrent, &dl, &r, 0)["pieces"]
        .as_u64()
        .unwrap();
    // Nothing changed: nothing is hashed, all good.
    let v = verify_json(&torrent, &dl, &quick, 0);
    assert_eq!(v["hashed_pieces"], 0);
    assert_eq!(v["good"], n);

    // Rewrite z (64 KiB) with other bytes: mtime changes, so its pieces are rehashed and bad.
    let z = dl.join("stuff/z");
    let orig = fs::read(&z).unwrap();
    fs::write(&z, data(orig.len(), 999)).unwrap();
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_234_567_890);
    fs::File::options()
        .write(true)
        .open(&z)
        .unwrap()
        .set_modified(t)
        .unwrap();
    let v = verify_json(&torrent, &dl, &quick, 1);
    let hashed = v["hashed_pieces"].as_u64().unwrap();
    assert!(
        hashed > 0 && hashed < n,
        "only z's pieces are rehashed: {v}"
    );
    assert!(!v["bad"].as_array().unwrap().is_empty());

    // The record now says those pieces are bad; a quick verify without changes keeps
    // reporting them missing, without hashing.
    let v = verify_json(&torrent, &dl, &quick, 1);
    assert_eq!(v["hashed_pieces"], 0);
    assert!(!v["missing"].as_array().unwrap().is_empty());

    // Restore the data: mtime changes again, the pieces are rehashed and good.
    fs::write(&z, &orig).unwrap();
    let v = verify_json(&torrent, &dl, &quick, 0);
    assert_eq!(v["good"], n);
    assert_eq!(v["hashed_pieces"].as_u64().unwrap(), hashed);

    // A record for another location is not trusted.
    let moved = tmp.path().join("moved");
    fs::rename(&dl, &moved).unwrap();
    let v = verify_json(&torrent, &moved, &quick, 0);
    assert_eq!(v["hashed_pieces"], n);

    // A corrupt record is ignored with a warning, and everything is rehashed.
    for e in fs::read_dir(&resume).unwrap() {
        fs::write(e.unwrap().path(), b"d5:junk").unwrap();
    }
    let o = run_expect(
        bitmill()
            .args(["verify", "--json"])
            .args(quick)
            .arg(&torrent)
            .arg(&moved),
        0,
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("resume record"));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["hashed_pieces"], n);
}

/// Hand-made hostile torrents: refused with a clear error, exit code 2, nothing written.
#[test]
fn hostile_torrents_are_refused_with_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let pieces = format!("20:{}", "x".repeat(20));
    let cases: Vec<(String, &str)> = vec![
        (format!("d4:infod5:filesld6:lengthi5e4:pathl2:..6:passwdeee4:name1:x12:piece lengthi16384e6:pieces{pieces}ee"), "unsafe path"),
        (format!("d4:infod5:filesld6:lengthi5e4:pathl0:3:etc6:passwdeee4:name1:x12:piece lengthi16384e6:pieces{pieces}ee"), "unsafe path"),
        (format!("d4:infod5:filesld6:lengthi5e4:pathl7:a\\..\\..eee4:name1:x12:piece lengthi16384e6:pieces{pieces}ee"), "unsafe path"),
        (format!("d4:infod6:lengthi5e4:name2:..12:piece lengthi16384e6:pieces{pieces}ee"), "unsafe path"),
        (format!("d4:infod6:lengthi5e4:name4:/etc12:piece lengthi16384e6:pieces{pieces}ee"), "unsafe path"),
        (format!("d4:infod6:lengthi5e4:name1:x12:piece lengthi1000e6:pieces{pieces}ee"), "piece length"),
        ("d4:infod6:lengthi5e4:name1:x12:piece lengthi16384e6:pieces3:abcee".to_string(), "multiple of 20"),
        (format!("d4:infod6:lengthi05e4:name1:x12:piece lengthi16384e6:pieces{pieces}ee"), "leading zero at byte"),
        ("garbage".to_string(), "not a valid torrent"),
    ];
    for (i, (content, want)) in cases.iter().enumerate() {
        let t = tmp.path().join(format!("{i}.torrent"));
        fs::write(&t, content).unwrap();
        for sub in ["info", "verify"] {
            let mut cmd = bitmill();
            cmd.arg(sub).arg(&t);
            if sub == "verify" {
                cmd.arg(tmp.path()).args(["--no-resume"]);
            }
            let o = run_expect(&mut cmd, 2);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains(want),
                "case {i} ({sub}): wanted {want:?} in {err:?}"
            );
        }
    }
    // Nothing outside the temp folder was created by any of this.
    assert!(!Path::new("/etc/passwd.x").exists());
}
