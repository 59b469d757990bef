//! Any input: parsing a .torrent never panics, and every accepted path is safe.
#![no_main]
use bitmill::metainfo::Metainfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Metainfo::from_bytes(data) {
        for f in &m.info.files {
            for c in &f.path {
                assert!(!c.is_empty() && c != "." && c != ".." && !c.contains(['/', '\\', '\0']));
            }
        }
        assert_eq!(m.info.pieces.len() as u32, m.info.layout().num_pieces());
    }
});
