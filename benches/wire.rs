//! Peer wire codec benchmarks: decoding a stream of 16 KiB `piece` messages (bytes per
//! second), decoding a stream of small control messages and encoding `request`s (messages
//! per second).
//!
//! The piece stream is measured twice: decode alone (the buffer is filled outside the timed
//! part; blocks are split off without a copy, so this is the codec's own cost), and with the
//! bytes copied into the receive buffer in 64 KiB reads first, as a socket read would.

use std::hint::black_box;

use bitmill::wire::{encode, piece_header, Decoder, Message};
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const BLOCK: usize = 16 * 1024;
const PIECES_IN_STREAM: u32 = 64;
const CONTROL_MSGS: u32 = 1000;
const NUM_PIECES: u32 = 4096;

fn stream(msgs: impl IntoIterator<Item = Message>) -> BytesMut {
    let mut out = BytesMut::new();
    for m in msgs {
        encode(&m, &mut out);
    }
    out
}

/// Decodes every whole message in `buf`; returns how many. Each message is handed to
/// `black_box` and dropped, as the engine would consume it.
fn decode_all(dec: &mut Decoder, buf: &mut BytesMut) -> usize {
    let mut n = 0;
    while let Ok(Some(m)) = dec.decode(buf) {
        black_box(&m);
        n += 1;
    }
    n
}

fn piece_stream(c: &mut Criterion) {
    let block = Bytes::from(vec![0x5A; BLOCK]);
    let wire = stream((0..PIECES_IN_STREAM).map(|i| Message::Piece {
        index: i / 16,
        begin: (i % 16) * BLOCK as u32,
        block: block.clone(),
    }));
    let mut g = c.benchmark_group("wire/piece_stream_16k");
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("decode", |b| {
        b.iter_batched_ref(
            || wire.clone(),
            |buf| {
                assert_eq!(
                    decode_all(&mut Decoder::new(NUM_PIECES), buf),
                    PIECES_IN_STREAM as usize
                )
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("read_64k_and_decode", |b| {
        b.iter(|| {
            let mut dec = Decoder::new(NUM_PIECES);
            let mut buf = BytesMut::with_capacity(64 * 1024);
            let mut n = 0;
            for chunk in wire.chunks(64 * 1024) {
                buf.extend_from_slice(chunk);
                n += decode_all(&mut dec, &mut buf);
            }
            assert_eq!(n, PIECES_IN_STREAM as usize);
        })
    });
    g.finish();
}

fn control_stream(c: &mut Criterion) {
    let wire = stream((0..CONTROL_MSGS).map(|i| {
        if i % 2 == 0 {
            Message::Have(i % NUM_PIECES)
        } else {
            Message::Request {
                index: i % NUM_PIECES,
                begin: 0,
                length: BLOCK as u32,
            }
        }
    }));
    let mut g = c.benchmark_group("wire/control_stream");
    g.throughput(Throughput::Elements(u64::from(CONTROL_MSGS)));
    g.bench_function("decode_have_request", |b| {
        b.iter_batched_ref(
            || wire.clone(),
            |buf| {
                assert_eq!(
                    decode_all(&mut Decoder::new(NUM_PIECES), buf),
                    CONTROL_MSGS as usize
                )
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn encode_requests(c: &mut Criterion) {
    let reqs: Vec<Message> = (0..CONTROL_MSGS)
        .map(|i| Message::Request {
            index: i / 4,
            begin: (i % 4) * BLOCK as u32,
            length: 16384,
        })
        .collect();
    let mut g = c.benchmark_group("wire/encode");
    g.throughput(Throughput::Elements(u64::from(CONTROL_MSGS)));
    let mut out = BytesMut::with_capacity(17 * CONTROL_MSGS as usize);
    g.bench_function("request", |b| {
        b.iter(|| {
            out.clear();
            for r in &reqs {
                encode(black_box(r), &mut out);
            }
            black_box(out.len())
        })
    });
    g.bench_function("piece_header", |b| {
        b.iter(|| {
            let mut x = 0u8;
            for i in 0..CONTROL_MSGS {
                x ^= piece_header(black_box(i), 0, BLOCK as u32)[12];
            }
            black_box(x)
        })
    });
    g.finish();
}

criterion_group!(benches, piece_stream, control_stream, encode_requests);
criterion_main!(benches);
