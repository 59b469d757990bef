//! Any input: decoding never panics; what decodes re-encodes to a value that decodes the same.
#![no_main]
use bitmill::bencode::{decode, OwnedValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = decode(data) {
        assert_eq!(v.span(), 0..data.len());
        let owned = OwnedValue::from_value(&v);
        let again = owned.encode();
        let v2 = decode(&again).expect("re-encoding decodes");
        assert_eq!(OwnedValue::from_value(&v2), owned);
    }
});
