//! Unit tests of the parent module, compiled only under `#[cfg(test)]`.
use super::*;
use crate::rng::Rng;
use std::collections::BTreeMap;

fn err(input: &[u8]) -> DecodeError {
    match decode(input) {
        Ok(v) => panic!("{:?} decoded to {v:?}", String::from_utf8_lossy(input)),
        Err(e) => e,
    }
}

fn rejects(input: &str, kind: ErrorKind, offset: usize) {
    assert_eq!(
        err(input.as_bytes()),
        DecodeError { kind, offset },
        "input {input:?}"
    );
}

#[test]
fn decodes_each_type_with_spans() {
    let input = b"d3:agei-42e4:listl1:ai0ee4:name3:bobe";
    let v = decode(input).unwrap();
    assert_eq!(v.span(), 0..input.len());
    assert_eq!(v.get(b"age").unwrap().as_int(), Some(-42));
    assert_eq!(v.get(b"name").unwrap().as_str(), Some("bob"));
    let list = v.get(b"list").unwrap();
    assert_eq!(list.raw, b"l1:ai0ee");
    assert_eq!(&input[list.span()], b"l1:ai0ee");
    let items = list.as_list().unwrap();
    assert_eq!(items[0].as_bytes(), Some(&b"a"[..]));
    assert_eq!(items[1].as_int(), Some(0));
    assert_eq!(items[1].span(), 21..24);
    assert!(v.get(b"missing").is_none());
}

#[test]
fn integer_limits() {
    assert_eq!(
        decode(b"i9223372036854775807e").unwrap().as_int(),
        Some(i64::MAX)
    );
    assert_eq!(
        decode(b"i-9223372036854775808e").unwrap().as_int(),
        Some(i64::MIN)
    );
    rejects("i9223372036854775808e", ErrorKind::IntegerOverflow, 1);
    rejects("i-9223372036854775809e", ErrorKind::IntegerOverflow, 1);
    rejects("i99999999999999999999999e", ErrorKind::IntegerOverflow, 1);
}

#[test]
fn rejects_what_bep3_forbids() {
    rejects("i03e", ErrorKind::LeadingZero, 1);
    rejects("i-03e", ErrorKind::LeadingZero, 2);
    rejects("i-0e", ErrorKind::NegativeZero, 1);
    rejects("ie", ErrorKind::EmptyInteger, 1);
    rejects("i-e", ErrorKind::EmptyInteger, 1);
    rejects("i1x2e", ErrorKind::InvalidDigit(b'x'), 2);
    rejects("i+1e", ErrorKind::InvalidDigit(b'+'), 1);
    rejects("03:abc", ErrorKind::LeadingZero, 0);
    rejects("-3:abc", ErrorKind::NegativeLength, 0);
    rejects("l-3:abce", ErrorKind::NegativeLength, 1);
    rejects("5:abc", ErrorKind::LengthExceedsInput, 0);
    rejects("99999999999999999999999:a", ErrorKind::IntegerOverflow, 0);
    rejects("di1e1:ae", ErrorKind::NonStringKey, 1);
    rejects("dlee1:ae", ErrorKind::NonStringKey, 1);
    rejects("d1:ai1e1:ai2ee", ErrorKind::DuplicateKey, 7);
    rejects("i1ei2e", ErrorKind::TrailingData, 3);
    rejects("4:spamx", ErrorKind::TrailingData, 6);
    rejects("", ErrorKind::UnexpectedEof, 0);
    rejects("l", ErrorKind::UnexpectedEof, 1);
    rejects("d1:a", ErrorKind::UnexpectedEof, 4);
    rejects("i12", ErrorKind::UnexpectedEof, 3);
    rejects("x", ErrorKind::UnexpectedByte(b'x'), 0);
    rejects("e", ErrorKind::UnexpectedByte(b'e'), 0);
}

#[test]
fn duplicate_keys_found_in_unsorted_dicts() {
    // Unsorted but unique: accepted by default.
    assert!(decode(b"d1:bi1e1:ai2ee").is_ok());
    // Unsorted with a duplicate that is not adjacent: refused, at the second occurrence.
    rejects("d1:bi1e1:ai2e1:bi3ee", ErrorKind::DuplicateKey, 13);
}

#[test]
fn strict_key_order_is_optional() {
    let strict = DecodeOptions {
        strict_key_order: true,
        ..Default::default()
    };
    assert_eq!(
        decode_with(b"d1:bi1e1:ai2ee", strict).unwrap_err(),
        DecodeError {
            kind: ErrorKind::UnsortedKeys,
            offset: 7
        }
    );
    assert!(decode_with(b"d1:ai1e1:bi2ee", strict).is_ok());
}

#[test]
fn depth_is_bounded() {
    let deep = |n: usize| {
        let mut s = "l".repeat(n);
        s.push_str(&"e".repeat(n));
        s
    };
    assert!(decode(deep(DEFAULT_MAX_DEPTH).as_bytes()).is_ok());
    assert_eq!(
        err(deep(DEFAULT_MAX_DEPTH + 1).as_bytes()).kind,
        ErrorKind::TooDeep
    );
    // A hostile input a million levels deep fails fast instead of overflowing the stack.
    assert_eq!(err(deep(1_000_000).as_bytes()).kind, ErrorKind::TooDeep);
    let opts = DecodeOptions {
        max_depth: 2,
        ..Default::default()
    };
    assert!(decode_with(b"lleee", opts).is_err());
    assert!(decode_with(b"llee", opts).is_ok());
}

#[test]
fn decode_prefix_leaves_the_rest() {
    let (v, end) = decode_prefix(b"d1:ai1eeREST").unwrap();
    assert_eq!(end, 8);
    assert_eq!(v.get(b"a").unwrap().as_int(), Some(1));
}

#[test]
fn error_messages_say_what_and_where() {
    assert_eq!(
        err(b"i03e").to_string(),
        "bencode: number with a leading zero at byte 1"
    );
    assert_eq!(
        err(b"d1:a\x01").to_string(),
        "bencode: unexpected byte 0x01 at byte 4"
    );
}

#[test]
fn canonical_input_round_trips_byte_for_byte() {
    for input in [
        &b"i0e"[..],
        b"i-1e",
        b"0:",
        b"le",
        b"de",
        b"d1:a0:1:bl0:dee1:cd1:di1eee",
        b"l4:spami42ed3:cow3:mooee",
    ] {
        let v = decode(input).unwrap();
        assert_eq!(encode_value(&v), input);
        assert_eq!(OwnedValue::from_value(&v).encode(), input);
    }
}

#[test]
fn owned_dicts_encode_sorted() {
    let mut d = BTreeMap::new();
    d.insert(b"zeta".to_vec(), OwnedValue::Int(1));
    d.insert(b"alpha".to_vec(), OwnedValue::bytes("x"));
    assert_eq!(OwnedValue::Dict(d).encode(), b"d5:alpha1:x4:zetai1ee");
    // Re-encoding an unsorted dict through OwnedValue sorts it.
    let v = decode(b"d1:bi1e1:ai2ee").unwrap();
    assert_eq!(OwnedValue::from_value(&v).encode(), b"d1:ai2e1:bi1ee");
}

fn random_owned(rng: &mut Rng, depth: u32) -> OwnedValue {
    match rng.below(if depth > 4 { 2 } else { 4 }) {
        0 => OwnedValue::Int(match rng.below(4) {
            0 => 0,
            1 => i64::MIN,
            2 => i64::MAX,
            _ => rng.next() as i64,
        }),
        1 => OwnedValue::Bytes((0..rng.below(20)).map(|_| rng.next() as u8).collect()),
        2 => OwnedValue::List(
            (0..rng.below(5))
                .map(|_| random_owned(rng, depth + 1))
                .collect(),
        ),
        _ => OwnedValue::Dict(
            (0..rng.below(5))
                .map(|_| {
                    let k = (0..rng.below(6)).map(|_| rng.next() as u8).collect();
                    (k, random_owned(rng, depth + 1))
                })
                .collect(),
        ),
    }
}

#[test]
fn random_values_round_trip() {
    let mut rng = Rng::new(0xB17_3111);
    for _ in 0..5_000 {
        let v = random_owned(&mut rng, 0);
        let enc = v.encode();
        let strict = DecodeOptions {
            strict_key_order: true,
            ..Default::default()
        };
        let dec = decode_with(&enc, strict).unwrap();
        assert_eq!(dec.span(), 0..enc.len());
        assert_eq!(OwnedValue::from_value(&dec), v);
        assert_eq!(encode_value(&dec), enc);
    }
}

/// Random bytes, and random mutations of valid encodings, never panic; whatever decodes
/// re-encodes to a value that decodes to the same thing.
#[test]
fn hostile_inputs_never_panic() {
    let mut rng = Rng::new(7);
    let alphabet = b"0123456789ilde:-x";
    for case in 0..20_000 {
        let input: Vec<u8> = if case % 2 == 0 {
            (0..rng.below(64))
                .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                .collect()
        } else {
            let mut enc = random_owned(&mut rng, 0).encode();
            for _ in 0..=rng.below(3) {
                if enc.is_empty() {
                    break;
                }
                let i = rng.below(enc.len() as u64) as usize;
                match rng.below(3) {
                    0 => enc[i] = alphabet[rng.below(alphabet.len() as u64) as usize],
                    1 => {
                        enc.remove(i);
                    }
                    _ => enc.insert(i, rng.next() as u8),
                }
            }
            enc
        };
        if let Ok(v) = decode(&input) {
            assert_eq!(v.span(), 0..input.len());
            let again = OwnedValue::from_value(&v).encode();
            let v2 = decode(&again).unwrap();
            assert_eq!(OwnedValue::from_value(&v2), OwnedValue::from_value(&v));
        }
    }
}

/// Every proper prefix of a valid encoding is "unexpected end of input" (or, for a bare
/// number, a string length that runs past the end), never a panic and never a success.
#[test]
fn truncations_are_errors() {
    let input = b"d4:infod6:lengthi12345e4:name5:hello12:piece lengthi16384eee";
    for cut in 0..input.len() {
        let e = decode(&input[..cut]).unwrap_err();
        assert!(
            matches!(
                e.kind,
                ErrorKind::UnexpectedEof | ErrorKind::LengthExceedsInput
            ),
            "cut {cut}: {e}"
        );
    }
}
