//! Unit tests of the parent module, compiled only under `#[cfg(test)]`.
use super::resume::{self, FileStamp, ResumeRecord};
use super::verify::{check_piece, Verdict};
use super::*;
use crate::bitfield::Bitfield;
use crate::metainfo::{InfoHash, Layout, TorrentBuilder, MAX_BLOCK_LEN};
use crate::rng::Rng;
use sha1::{Digest, Sha1};
use std::fs;
use std::os::unix::fs::MetadataExt;

const PL: u32 = 32 * 1024;

/// Odd file sizes: empty, one byte, ones that blocks and pieces cross.
const SIZES: [u64; 6] = [0, 1, 40_000, 16_383, 0, 70_001];

fn specs(dir: &Path) -> Vec<FileSpec> {
    (0..SIZES.len())
        .map(|i| FileSpec {
            path: dir.join(format!("sub/f{i}")),
            pad: false,
        })
        .collect()
}

fn layout() -> Layout {
    Layout::new(PL, &SIZES).unwrap()
}

fn random_data(len: u64, seed: u64) -> Vec<u8> {
    let mut v = vec![0; len as usize];
    Rng::new(seed).fill(&mut v);
    v
}

/// Writes `data` (the torrent's byte stream) as the files under `dir`.
fn write_files(dir: &Path, data: &[u8]) {
    let mut off = 0usize;
    for (i, s) in specs(dir).iter().enumerate() {
        fs::create_dir_all(s.path.parent().unwrap()).unwrap();
        let n = SIZES[i] as usize;
        fs::write(&s.path, &data[off..off + n]).unwrap();
        off += n;
    }
}

/// An `Info` matching `layout()` whose hashes are those of `data`.
fn info_for(data: &[u8]) -> crate::metainfo::Info {
    let mut pieces = Vec::new();
    for c in data.chunks(PL as usize) {
        pieces.extend_from_slice(&Sha1::digest(c));
    }
    let b = TorrentBuilder {
        name: "t".into(),
        files: (0..SIZES.len())
            .map(|i| (vec!["sub".into(), format!("f{i}")], SIZES[i]))
            .collect(),
        piece_length: PL,
        pieces,
        ..Default::default()
    };
    crate::metainfo::Metainfo::from_bytes(&b.encode())
        .unwrap()
        .info
}

fn open(dir: &Path, mode: OpenMode) -> MmapStorage {
    MmapStorage::open(layout(), specs(dir), mode, MmapOptions::default()).unwrap()
}

#[test]
fn read_write_round_trip_across_file_boundaries() {
    let tmp = tempfile::tempdir().unwrap();
    let l = layout();
    let data = random_data(l.total_length(), 1);
    let mut s = open(tmp.path(), OpenMode::ReadWrite);
    for p in l.pieces() {
        for b in l.blocks(p) {
            let r = l.block_range(b);
            s.write_block(b, &data[r.start as usize..r.end as usize])
                .unwrap();
        }
    }
    s.flush().unwrap();
    // Every file now holds exactly its slice of the stream.
    let mut off = 0usize;
    for (i, spec) in specs(tmp.path()).iter().enumerate() {
        let n = SIZES[i] as usize;
        assert_eq!(
            fs::read(&spec.path).unwrap(),
            &data[off..off + n],
            "file {i}"
        );
        off += n;
    }
    // Reads give back the same bytes, including blocks that cross files.
    for p in l.pieces() {
        for b in l.blocks(p) {
            let r = l.block_range(b);
            assert_eq!(
                &s.read_block(b).unwrap()[..],
                &data[r.start as usize..r.end as usize]
            );
        }
        let r = l.piece_range(p);
        assert_eq!(
            s.hash_piece(p).unwrap(),
            <[u8; 20]>::from(Sha1::digest(&data[r.start as usize..r.end as usize]))
        );
    }
    assert!(matches!(
        s.write_block(l.blocks(l.piece(0).unwrap()).next().unwrap(), &[1, 2, 3]),
        Err(StorageError::WrongLength { .. })
    ));
}

#[test]
fn blocks_inside_one_file_are_zero_copy_views_of_the_map() {
    let tmp = tempfile::tempdir().unwrap();
    let l = layout();
    write_files(tmp.path(), &random_data(l.total_length(), 2));
    let mut s = open(tmp.path(), OpenMode::ReadOnly);
    // Piece 2 starts at 65536: inside file 5 (which starts at 56385).
    let b = l.blocks(l.piece(2).unwrap()).next().unwrap();
    let x = s.read_block(b).unwrap();
    let y = s.read_block(b).unwrap();
    assert_eq!(
        x.as_ptr(),
        y.as_ptr(),
        "both reads point at the same mapped bytes"
    );
    assert!(s.mapped_bytes() > 0);
}

#[test]
fn files_are_created_sparse_at_full_length() {
    let tmp = tempfile::tempdir().unwrap();
    let big = 64 << 20;
    let l = Layout::new(1 << 20, &[big, 0]).unwrap();
    let specs = vec![
        FileSpec {
            path: tmp.path().join("a/big"),
            pad: false,
        },
        FileSpec {
            path: tmp.path().join("a/empty"),
            pad: false,
        },
    ];
    let _s = MmapStorage::open(l, specs, OpenMode::ReadWrite, MmapOptions::default()).unwrap();
    let m = fs::metadata(tmp.path().join("a/big")).unwrap();
    assert_eq!(m.len(), big);
    assert!(
        m.blocks() * 512 < 1 << 20,
        "allocated {} bytes: not sparse",
        m.blocks() * 512
    );
    assert_eq!(fs::metadata(tmp.path().join("a/empty")).unwrap().len(), 0);
}

#[test]
fn full_allocation_reserves_space_without_writing_zeros() {
    let tmp = tempfile::tempdir().unwrap();
    let len = 8 << 20;
    let l = Layout::new(1 << 20, &[len, 5]).unwrap();
    let specs = vec![
        FileSpec {
            path: tmp.path().join("big"),
            pad: false,
        },
        FileSpec {
            path: tmp.path().join("small"),
            pad: false,
        },
    ];
    let opts = MmapOptions {
        allocation: Allocation::Full,
        ..Default::default()
    };
    let mut s = MmapStorage::open(l.clone(), specs, OpenMode::ReadWrite, opts).unwrap();
    let m = fs::metadata(tmp.path().join("big")).unwrap();
    assert_eq!(m.len(), len);
    assert!(
        m.blocks() * 512 >= len,
        "space reserved: {} blocks",
        m.blocks()
    );
    // Reads of never-written space are zeros (unwritten extents), writes land.
    let b = l.blocks(l.piece(3).unwrap()).next().unwrap();
    assert!(s.read_block(b).unwrap().iter().all(|&x| x == 0));
    s.write_block(b, &[9; 16384]).unwrap();
    assert_eq!(&s.read_block(b).unwrap()[..], &[9; 16384][..]);
}

#[test]
fn missing_and_short_files_are_unavailable_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let l = layout();
    let data = random_data(l.total_length(), 3);
    write_files(tmp.path(), &data);
    let sp = specs(tmp.path());
    fs::remove_file(&sp[2].path).unwrap();
    fs::write(&sp[5].path, &data[..100]).unwrap();
    let info = info_for(&data);
    let mut s = open(tmp.path(), OpenMode::ReadOnly);
    let p0 = l.piece(0).unwrap();
    match s.hash_piece(p0) {
        Err(StorageError::Unavailable {
            have: None,
            need: 40_000,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let last = l.piece(l.num_pieces() - 1).unwrap();
    match s.read_block(l.blocks(last).next().unwrap()) {
        Err(
            e @ StorageError::Unavailable {
                have: Some(100), ..
            },
        ) => {
            assert!(
                e.to_string().contains("100 bytes, shorter than the 70001"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(check_piece(&mut s, &info, p0).unwrap(), Verdict::Missing);
    assert!(matches!(
        s.write_block(l.blocks(p0).next().unwrap(), &[0; 16384]),
        Err(StorageError::ReadOnly)
    ));
}

#[test]
fn verify_finds_a_flipped_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let l = layout();
    let mut data = random_data(l.total_length(), 4);
    let info = info_for(&data);
    data[70_000] ^= 1; // piece 2
    write_files(tmp.path(), &data);
    let mut s = open(tmp.path(), OpenMode::ReadOnly);
    let verdicts: Vec<_> = l
        .pieces()
        .map(|p| check_piece(&mut s, &info, p).unwrap())
        .collect();
    assert!(matches!(verdicts[0], Verdict::Good(v) if v.piece().get() == 0));
    assert!(matches!(verdicts[1], Verdict::Good(_)));
    assert_eq!(verdicts[2], Verdict::Bad);
    assert!(matches!(verdicts[3], Verdict::Good(_)));
}

#[test]
fn truncation_under_a_live_mapping_is_an_error_not_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f");
    let len = 4 << 20;
    fs::write(&path, random_data(len, 5)).unwrap();
    let l = Layout::new(1 << 20, &[len]).unwrap();
    let mut s = MmapStorage::open(
        l.clone(),
        vec![FileSpec {
            path: path.clone(),
            pad: false,
        }],
        OpenMode::ReadOnly,
        MmapOptions::default(),
    )
    .unwrap();
    // Map the window, then cut the file under it.
    s.hash_piece(l.piece(0).unwrap()).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    match s.hash_piece(l.piece(3).unwrap()) {
        Err(StorageError::Truncated { path: p }) => assert_eq!(p, path),
        other => panic!("expected Truncated, got {other:?}"),
    }
    // The file stays failed; nothing else breaks.
    assert!(matches!(
        s.hash_piece(l.piece(0).unwrap()),
        Err(StorageError::Truncated { .. })
    ));
    // recheck_files also notices on a fresh storage opened before truncating further.
    let mut s2 = MmapStorage::open(
        l.clone(),
        vec![FileSpec {
            path: path.clone(),
            pad: false,
        }],
        OpenMode::ReadOnly,
        MmapOptions::default(),
    )
    .unwrap();
    s2.recheck_files().unwrap();
    fs::remove_file(&path).unwrap();
    assert!(matches!(
        s2.recheck_files(),
        Err(StorageError::Truncated { .. })
    ));
}

#[test]
fn mapped_address_space_is_bounded_and_blocks_outlive_eviction() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f");
    let len: u64 = 8 << 20;
    let data = random_data(len, 6);
    fs::write(&path, &data).unwrap();
    let l = Layout::new(1 << 20, &[len]).unwrap();
    let opts = MmapOptions {
        window: 1 << 20,
        max_mapped: 2 << 20,
        ..Default::default()
    };
    let mut s = MmapStorage::open(
        l.clone(),
        vec![FileSpec { path, pad: false }],
        OpenMode::ReadOnly,
        opts,
    )
    .unwrap();
    let first = s
        .read_block(l.blocks(l.piece(0).unwrap()).next().unwrap())
        .unwrap();
    for p in l.pieces() {
        s.hash_piece(p).unwrap();
        // Cache (at most max_mapped + one window's overlap) plus the window `first` holds.
        assert!(
            s.mapped_bytes() <= (2 << 20) + 2 * ((1 << 20) + 128 * 1024),
            "{}",
            s.mapped_bytes()
        );
    }
    // The block read before its window was evicted is still valid.
    assert_eq!(&first[..], &data[..16384]);
    drop(first);
    assert!(s.mapped_bytes() <= (2 << 20) + (128 << 10) * 2);
}

#[test]
fn padding_files_read_as_zeros_and_are_never_created() {
    let tmp = tempfile::tempdir().unwrap();
    let l = Layout::new(PL, &[100, PL as u64 - 100, 5000]).unwrap();
    let specs = vec![
        FileSpec {
            path: tmp.path().join("a"),
            pad: false,
        },
        FileSpec {
            path: tmp.path().join(".pad/x"),
            pad: true,
        },
        FileSpec {
            path: tmp.path().join("b"),
            pad: false,
        },
    ];
    let mut s = MmapStorage::open(
        l.clone(),
        specs,
        OpenMode::ReadWrite,
        MmapOptions::default(),
    )
    .unwrap();
    assert!(!tmp.path().join(".pad").exists());
    let b0 = l.blocks(l.piece(0).unwrap()).next().unwrap();
    s.write_block(b0, &[7u8; 16384]).unwrap();
    let got = s.read_block(b0).unwrap();
    assert_eq!(&got[..100], &[7u8; 100][..]);
    assert!(
        got[100..].iter().all(|&x| x == 0),
        "padding reads as zeros, whatever was written"
    );
    let b1 = l.blocks(l.piece(0).unwrap()).nth(1).unwrap();
    assert!(s.read_block(b1).unwrap().iter().all(|&x| x == 0));
    let mut expect = vec![7u8; 100];
    expect.resize(PL as usize, 0);
    assert_eq!(
        s.hash_piece(l.piece(0).unwrap()).unwrap(),
        <[u8; 20]>::from(Sha1::digest(&expect))
    );
}

/// MmapStorage and MemStorage agree under random writes and reads of random blocks.
#[test]
fn mmap_matches_memory_model_under_random_operations() {
    let tmp = tempfile::tempdir().unwrap();
    let l = layout();
    let opts = MmapOptions {
        window: 64 << 10,
        max_mapped: 256 << 10,
        allocation: Allocation::Full,
    };
    let mut mm =
        MmapStorage::open(l.clone(), specs(tmp.path()), OpenMode::ReadWrite, opts).unwrap();
    let mut mem = MemStorage::new(l.clone());
    let mut rng = Rng::new(8);
    for _ in 0..2_000 {
        let p = l
            .piece(rng.below(u64::from(l.num_pieces())) as u32)
            .unwrap();
        let plen = l.piece_len(p);
        let off = rng.below(u64::from(plen)) as u32;
        let len = 1 + rng.below(u64::from((plen - off).min(MAX_BLOCK_LEN))) as u32;
        let b = l.block(p, off, len).unwrap();
        if rng.below(2) == 0 {
            let mut d = vec![0; len as usize];
            rng.fill(&mut d);
            mm.write_block(b, &d).unwrap();
            mem.write_block(b, &d).unwrap();
        } else {
            assert_eq!(mm.read_block(b).unwrap(), mem.read_block(b).unwrap());
        }
    }
    for p in l.pieces() {
        assert_eq!(mm.hash_piece(p).unwrap(), mem.hash_piece(p).unwrap());
    }
}

#[test]
fn resume_record_round_trips_and_rejects_garbage() {
    let mut have = Bitfield::new(10);
    have.set(3);
    let st = FileStamp {
        length: 5,
        mtime_s: 1_700_000_000,
        mtime_ns: 123,
    };
    let r = ResumeRecord::new(
        InfoHash([1; 20]),
        Path::new("/x/y"),
        have,
        vec![Some(st), None],
    );
    let enc = r.encode();
    assert_eq!(ResumeRecord::decode(&enc, 10, 2).unwrap(), r);
    assert!(
        ResumeRecord::decode(&enc, 17, 2).is_err(),
        "wrong piece count"
    );
    assert!(
        ResumeRecord::decode(&enc, 10, 3).is_err(),
        "wrong file count"
    );
    assert!(ResumeRecord::decode(b"garbage", 10, 2).is_err());
    assert!(ResumeRecord::decode(b"d14:bitmill resumei2ee", 10, 2).is_err());
    let mut rng = Rng::new(9);
    for _ in 0..5_000 {
        let mut m = enc.clone();
        let i = rng.below(m.len() as u64) as usize;
        m[i] = rng.next() as u8;
        let _ = ResumeRecord::decode(&m, 10, 2);
    }
}

#[test]
fn resume_skips_unchanged_files_and_rehashes_changed_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let l = layout();
    let data = random_data(l.total_length(), 10);
    write_files(tmp.path(), &data);
    let sp = specs(tmp.path());
    let ih = InfoHash([2; 20]);
    let before = resume::stamps(&sp);
    let rec = ResumeRecord::new(
        ih,
        tmp.path(),
        Bitfield::full(l.num_pieces()),
        before.clone(),
    );
    let path = tmp.path().join("state/x.resume");
    resume::write_atomic(&path, &rec.encode()).unwrap();
    let loaded = resume::load(&path, l.num_pieces(), sp.len())
        .unwrap()
        .unwrap();
    assert_eq!(loaded, rec);
    assert_eq!(resume::load(&tmp.path().join("nope"), 1, 1).unwrap(), None);

    // Nothing changed: nothing to hash, everything trusted.
    let plan = resume::plan(Some(&loaded), ih, tmp.path(), &l, &resume::stamps(&sp));
    assert!(plan.to_check.is_empty());
    assert!(plan.trusted.is_full());

    // Another torrent, another folder, or no record: hash everything.
    for (r, h, c) in [
        (Some(&loaded), InfoHash([3; 20]), tmp.path()),
        (Some(&loaded), ih, Path::new("/elsewhere")),
        (None, ih, tmp.path()),
    ] {
        let plan = resume::plan(r, h, c, &l, &resume::stamps(&sp));
        assert_eq!(plan.to_check.len() as u32, l.num_pieces());
        assert_eq!(plan.trusted.count(), 0);
    }

    // File 3 (16383 bytes at offset 40001, inside piece 1) is rewritten with the same size:
    // its mtime changes, so exactly the pieces touching it are rehashed.
    fs::write(&sp[3].path, vec![0u8; 16_383]).unwrap();
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    fs::File::options()
        .write(true)
        .open(&sp[3].path)
        .unwrap()
        .set_modified(t)
        .unwrap();
    let plan = resume::plan(Some(&loaded), ih, tmp.path(), &l, &resume::stamps(&sp));
    let want: Vec<u32> = l.file_pieces(3).collect();
    assert_eq!(
        plan.to_check.iter().map(|p| p.get()).collect::<Vec<_>>(),
        want
    );
    assert_eq!(plan.trusted.count(), l.num_pieces() - want.len() as u32);

    // File 5 changes size: its pieces are rehashed too.
    fs::write(&sp[5].path, vec![0u8; 10]).unwrap();
    let plan = resume::plan(Some(&loaded), ih, tmp.path(), &l, &resume::stamps(&sp));
    assert!(plan
        .to_check
        .iter()
        .any(|p| l.file_pieces(5).contains(&p.get())));
}
