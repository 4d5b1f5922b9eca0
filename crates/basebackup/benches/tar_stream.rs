//! The client-side cost of a base backup's archive stream: the tar parser over an archive
//! of 1 MiB files fed in the 32 KiB pieces the server's CopyData messages carry, data
//! handed on as slices of each piece (as `BaseBackupStream` does).

use bytes::Bytes;
use cairn_pgformat::tar::{TarEntry, TarEvent, TarKind, TarParser, data_padding, encode_header};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// 64 files of 1 MiB and the end-of-archive marker, cut into 32 KiB messages.
fn archive() -> Vec<Bytes> {
    let mut a = Vec::new();
    for i in 0..64 {
        let size = 1 << 20;
        let e = TarEntry {
            path: format!("base/5/{}", 16384 + i),
            kind: TarKind::File,
            mode: 0o600,
            size,
            mtime: 1_700_000_000,
        };
        a.extend_from_slice(&encode_header(&e).unwrap());
        a.extend((0..size).map(|b| (b % 251) as u8));
        a.resize(a.len() + data_padding(size), 0);
    }
    a.extend_from_slice(&[0; 1024]);
    a.chunks(32 * 1024).map(Bytes::copy_from_slice).collect()
}

fn bench(c: &mut Criterion) {
    let pieces = archive();
    let total: usize = pieces.iter().map(Bytes::len).sum();
    let mut g = c.benchmark_group("tar_stream");
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("parse_32k_pieces", |b| {
        b.iter(|| {
            let mut parser = TarParser::new();
            let mut data = 0usize;
            for piece in &pieces {
                for ev in parser.push(piece).unwrap() {
                    if let TarEvent::Data(d) = ev {
                        data += piece.slice_ref(d).len();
                    }
                }
            }
            parser.finish().unwrap();
            data
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
