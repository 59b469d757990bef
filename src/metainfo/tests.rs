//! Unit tests of the parent module, compiled only under `#[cfg(test)]`.
use super::*;
use crate::bencode::OwnedValue;
use std::collections::BTreeMap;

fn s(x: &str) -> OwnedValue {
    OwnedValue::bytes(x)
}

fn dict(entries: Vec<(&str, OwnedValue)>) -> OwnedValue {
    OwnedValue::Dict(
        entries
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

fn file(path: &[&[u8]], len: i64) -> OwnedValue {
    dict(vec![
        ("length", OwnedValue::Int(len)),
        (
            "path",
            OwnedValue::List(path.iter().map(|c| OwnedValue::bytes(c)).collect()),
        ),
    ])
}

/// A multi-file info dict with correct piece count for the given lengths.
fn multi(name: &[u8], files: Vec<OwnedValue>, total: u64) -> OwnedValue {
    let n = total.div_ceil(16384) as usize;
    dict(vec![
        ("files", OwnedValue::List(files)),
        ("name", OwnedValue::bytes(name)),
        ("piece length", OwnedValue::Int(16384)),
        ("pieces", OwnedValue::Bytes(vec![7; 20 * n])),
    ])
}

fn torrent(info: OwnedValue) -> Vec<u8> {
    dict(vec![
        ("announce", s("http://127.0.0.1:6969/announce")),
        ("info", info),
    ])
    .encode()
}

fn parse(info: OwnedValue) -> Result<Metainfo, MetainfoError> {
    Metainfo::from_bytes(&torrent(info))
}

#[test]
fn parses_a_multi_file_torrent_with_offsets() {
    let info = multi(
        b"album",
        vec![
            file(&[b"cd1", b"a.flac"], 20000),
            file(&[b"b.txt"], 0),
            file(&[b"c"], 1),
        ],
        20001,
    );
    let m = parse(info).unwrap();
    assert!(!m.info.single_file);
    assert_eq!(m.info.name, "album");
    assert_eq!(m.info.files.len(), 3);
    assert_eq!(m.info.files[0].path, vec!["cd1", "a.flac"]);
    assert_eq!(m.info.files[2].offset, 20000);
    assert_eq!(m.info.total_length(), 20001);
    assert_eq!(m.info.layout().num_pieces(), 2);
    assert_eq!(
        m.announce.as_deref(),
        Some("http://127.0.0.1:6969/announce")
    );
    assert_eq!(
        m.tracker_tiers(),
        vec![vec!["http://127.0.0.1:6969/announce".to_string()]]
    );
}

#[test]
fn info_hash_is_sha1_of_the_raw_span_not_a_reencoding() {
    // Unsorted keys inside info and an unknown key: a re-encode would sort them and change
    // the hash; the raw span must be hashed as it is.
    let pieces = [9u8; 20];
    let mut info = b"d4:name1:x12:piece lengthi16384e6:lengthi5e6:pieces20:".to_vec();
    info.extend_from_slice(&pieces);
    info.extend_from_slice(b"5:zzzzz3:abce");
    let mut t = b"d4:info".to_vec();
    t.extend_from_slice(&info);
    t.push(b'e');
    let m = Metainfo::from_bytes(&t).unwrap();
    let want: [u8; 20] = sha1::Sha1::digest(&info).into();
    assert_eq!(m.info_hash.0, want);
    assert_eq!(m.info.total_length(), 5);
    assert!(m.info.single_file);
}

#[test]
fn announce_list_url_list_and_optional_fields() {
    let info = multi(b"x", vec![file(&[b"f"], 10)], 10);
    let mut root = BTreeMap::new();
    root.insert(b"info".to_vec(), info);
    root.insert(
        b"announce-list".to_vec(),
        OwnedValue::List(vec![
            OwnedValue::List(vec![s("udp://127.0.0.1:1"), s("http://127.0.0.1:2")]),
            OwnedValue::List(vec![]),
            OwnedValue::List(vec![s("http://127.0.0.1:3")]),
        ]),
    );
    root.insert(b"url-list".to_vec(), s("http://127.0.0.1/seed"));
    root.insert(b"comment".to_vec(), s("hello"));
    root.insert(b"created by".to_vec(), s("test"));
    root.insert(b"creation date".to_vec(), OwnedValue::Int(1_700_000_000));
    let m = Metainfo::from_bytes(&OwnedValue::Dict(root).encode()).unwrap();
    assert_eq!(m.announce_list.len(), 2, "empty tiers are dropped");
    assert_eq!(
        m.tracker_tiers()[0],
        vec!["udp://127.0.0.1:1", "http://127.0.0.1:2"]
    );
    assert_eq!(m.url_list, vec!["http://127.0.0.1/seed"]);
    assert_eq!(m.comment.as_deref(), Some("hello"));
    assert_eq!(m.created_by.as_deref(), Some("test"));
    assert_eq!(m.creation_date, Some(1_700_000_000));
    assert!(!m.info.private);
}

#[test]
fn private_flag() {
    let OwnedValue::Dict(mut info) = multi(b"x", vec![file(&[b"f"], 10)], 10) else {
        unreachable!()
    };
    info.insert(b"private".to_vec(), OwnedValue::Int(1));
    assert!(parse(OwnedValue::Dict(info)).unwrap().info.private);
}

#[test]
fn path_traversal_is_refused() {
    let cases: Vec<(Vec<&[u8]>, &str)> = vec![
        (vec![b".."], "'.' or '..'"),
        (vec![b"a", b"..", b"b"], "'.' or '..'"),
        (vec![b"."], "'.' or '..'"),
        (vec![b"", b"etc", b"passwd"], "empty"),
        (vec![b"/etc/passwd"], "'/'"),
        (vec![b"a/../../b"], "'/'"),
        (vec![b"..\\..\\windows"], "'\\'"),
        (vec![b"a\0b"], "NUL"),
        (vec![b""], "empty"),
        (vec![], "empty path"),
        (vec![&[b'x'; 256]], "255"),
    ];
    for (path, why) in cases {
        let err = parse(multi(b"ok", vec![file(&path, 10)], 10)).unwrap_err();
        match &err {
            MetainfoError::UnsafePath { reason, .. } => {
                assert!(reason.contains(why), "{path:?}: {err} (wanted {why})")
            }
            other => panic!("{path:?}: unexpected {other}"),
        }
    }
    for name in [&b".."[..], b".", b"", b"/abs", b"a/b", b"a\\b", b"a\0"] {
        let err = parse(multi(name, vec![file(&[b"f"], 10)], 10)).unwrap_err();
        assert!(
            matches!(err, MetainfoError::UnsafePath { .. }),
            "name {name:?}: {err}"
        );
    }
    // path.utf-8 is preferred, and checked too.
    let OwnedValue::Dict(mut f) = file(&[b"fine"], 10) else {
        unreachable!()
    };
    f.insert(
        b"path.utf-8".to_vec(),
        OwnedValue::List(vec![s(".."), s("x")]),
    );
    let err = parse(multi(b"ok", vec![OwnedValue::Dict(f)], 10)).unwrap_err();
    assert!(matches!(err, MetainfoError::UnsafePath { .. }));
}

#[test]
fn non_utf8_names_are_replaced_and_reported() {
    let m = parse(multi(b"ok", vec![file(&[b"caf\xe9.txt"], 10)], 10)).unwrap();
    assert_eq!(m.info.files[0].path, vec!["caf\u{fffd}.txt"]);
    assert_eq!(m.warnings.len(), 1);
}

#[test]
fn duplicate_paths_and_file_folder_clashes_are_refused() {
    let dup = multi(
        b"x",
        vec![file(&[b"a", b"b"], 5), file(&[b"a", b"b"], 5)],
        10,
    );
    assert_eq!(
        parse(dup).unwrap_err(),
        MetainfoError::DuplicatePath("a/b".into())
    );
    let clash = multi(
        b"x",
        vec![file(&[b"a"], 5), file(&[b"a-c"], 1), file(&[b"a", b"b"], 5)],
        11,
    );
    assert_eq!(
        parse(clash).unwrap_err(),
        MetainfoError::DuplicatePath("a".into())
    );
    // Padding files (BEP 47) may repeat their conventional names.
    let pad = |len| {
        let OwnedValue::Dict(mut f) = file(&[b".pad", b"100"], len) else {
            unreachable!()
        };
        f.insert(b"attr".to_vec(), s("p"));
        OwnedValue::Dict(f)
    };
    let m = parse(multi(
        b"x",
        vec![file(&[b"a"], 5), pad(100), file(&[b"b"], 5), pad(100)],
        210,
    ))
    .unwrap();
    assert!(m.info.files[1].pad && m.info.files[3].pad && !m.info.files[0].pad);
}

#[test]
fn refuses_bad_geometry() {
    let with = |pl: i64, pieces: usize, files: Vec<OwnedValue>| {
        parse(dict(vec![
            ("files", OwnedValue::List(files)),
            ("name", s("x")),
            ("piece length", OwnedValue::Int(pl)),
            ("pieces", OwnedValue::Bytes(vec![0; pieces])),
        ]))
    };
    for pl in [0, -16384, 16385, 8192, 3 << 14, 1 << 29, i64::MAX] {
        assert_eq!(
            with(pl, 20, vec![file(&[b"f"], 10)]).unwrap_err(),
            MetainfoError::BadPieceLength(pl)
        );
    }
    assert_eq!(
        with(16384, 21, vec![file(&[b"f"], 10)]).unwrap_err(),
        MetainfoError::PiecesNotMultipleOf20(21)
    );
    assert_eq!(
        with(16384, 40, vec![file(&[b"f"], 10)]).unwrap_err(),
        MetainfoError::PieceCountMismatch {
            expected: 1,
            got: 2
        }
    );
    assert_eq!(
        with(16384, 20, vec![file(&[b"f"], 16385)]).unwrap_err(),
        MetainfoError::PieceCountMismatch {
            expected: 2,
            got: 1
        }
    );
    assert_eq!(with(16384, 0, vec![]).unwrap_err(), MetainfoError::NoFiles);
    assert_eq!(
        with(16384, 0, vec![file(&[b"f"], 0)]).unwrap_err(),
        MetainfoError::Layout(LayoutError::Empty)
    );
    assert_eq!(
        with(16384, 20, vec![file(&[b"f"], -1)]).unwrap_err(),
        MetainfoError::NegativeLength("f".into())
    );
    assert_eq!(
        with(
            16384,
            20,
            vec![
                file(&[b"f"], i64::MAX),
                file(&[b"g"], i64::MAX),
                file(&[b"h"], 2)
            ]
        )
        .unwrap_err(),
        MetainfoError::Layout(LayoutError::TooLarge)
    );
}

#[test]
fn refuses_malformed_structure() {
    assert!(matches!(
        Metainfo::from_bytes(b"i1e"),
        Err(MetainfoError::WrongType { .. })
    ));
    assert!(matches!(
        Metainfo::from_bytes(b"d4:infoi1ee"),
        Err(MetainfoError::WrongType { key: "info", .. })
    ));
    assert_eq!(
        Metainfo::from_bytes(b"de").unwrap_err(),
        MetainfoError::Missing("info")
    );
    assert!(matches!(
        Metainfo::from_bytes(b"d4:info"),
        Err(MetainfoError::Bencode(_))
    ));
    let both = dict(vec![
        ("files", OwnedValue::List(vec![file(&[b"f"], 1)])),
        ("length", OwnedValue::Int(1)),
        ("name", s("x")),
        ("piece length", OwnedValue::Int(16384)),
        ("pieces", OwnedValue::Bytes(vec![0; 20])),
    ]);
    assert_eq!(parse(both).unwrap_err(), MetainfoError::LengthAndFiles);
    let v2 = dict(vec![
        ("file tree", dict(vec![])),
        ("name", s("x")),
        ("piece length", OwnedValue::Int(16384)),
    ]);
    assert_eq!(parse(v2).unwrap_err(), MetainfoError::V2Only);
    let bad_files = dict(vec![
        ("files", OwnedValue::List(vec![OwnedValue::Int(3)])),
        ("name", s("x")),
        ("piece length", OwnedValue::Int(16384)),
        ("pieces", OwnedValue::Bytes(vec![0; 20])),
    ]);
    assert!(matches!(
        parse(bad_files).unwrap_err(),
        MetainfoError::WrongType { key: "files", .. }
    ));
}

#[test]
fn builder_output_parses_back() {
    let b = TorrentBuilder {
        name: "dir".into(),
        files: vec![
            (vec!["a".into()], 3),
            (vec!["sub".into(), "b".into()], 40000),
        ],
        single_file: false,
        piece_length: 32768,
        pieces: vec![1; 40],
        trackers: vec!["http://127.0.0.1:1/a".into(), "udp://127.0.0.1:2".into()],
        web_seeds: vec![],
        private: true,
        source: Some("lab".into()),
        comment: Some("c".into()),
        created_by: Some("bitmill".into()),
        creation_date: Some(5),
    };
    let bytes = b.encode();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(
        m.info_hash.0,
        <[u8; 20]>::from(sha1::Sha1::digest(b.info_bytes()))
    );
    assert!(m.info.private);
    assert_eq!(m.info.source.as_deref(), Some("lab"));
    assert_eq!(
        m.announce_list,
        vec![
            vec!["http://127.0.0.1:1/a".to_string()],
            vec!["udp://127.0.0.1:2".to_string()]
        ]
    );
    assert_eq!(m.info.files[1].path, vec!["sub", "b"]);
    // Canonical: decoding and re-encoding gives the same bytes.
    let strict = crate::bencode::DecodeOptions {
        strict_key_order: true,
        ..Default::default()
    };
    assert!(crate::bencode::decode_with(&bytes, strict).is_ok());
}

#[test]
fn auto_piece_length_is_sensible() {
    assert_eq!(auto_piece_length(1), 32 * 1024);
    assert_eq!(auto_piece_length(100 << 20), 128 * 1024);
    assert_eq!(auto_piece_length(1 << 30), 1 << 20);
    assert_eq!(auto_piece_length(1 << 50), 16 << 20);
    for total in [1u64 << 20, 700 << 20, 4 << 30, 50 << 30] {
        let pieces = total.div_ceil(u64::from(auto_piece_length(total)));
        assert!(
            (700..=3300).contains(&pieces) || total < 64 << 20,
            "{total}: {pieces} pieces"
        );
    }
}

#[test]
fn hex_round_trip() {
    let h = InfoHash([0xab; 20]);
    assert_eq!(h.to_hex(), "ab".repeat(20));
    assert_eq!(InfoHash::from_hex(&h.to_hex()), Some(h));
    assert_eq!(InfoHash::from_hex("zz"), None);
    assert_eq!(InfoHash::from_hex(&"g".repeat(40)), None);
}

/// Random mutations of a valid torrent never panic the parser.
#[test]
fn mutated_torrents_never_panic() {
    let good = torrent(multi(
        b"x",
        vec![file(&[b"a"], 20000), file(&[b"b", b"c"], 1)],
        20001,
    ));
    let mut rng = crate::rng::Rng::new(99);
    for _ in 0..20_000 {
        let mut t = good.clone();
        for _ in 0..=rng.below(4) {
            let i = rng.below(t.len() as u64) as usize;
            t[i] = b"0123456789ilde:-./\\\0"[rng.below(20) as usize];
        }
        let _ = Metainfo::from_bytes(&t);
    }
}
