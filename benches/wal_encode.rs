//! Inner loops of `archive-push` on a real 16 MiB WAL segment: summarizing its records and
//! encoding it (zstd level 3 + AES-256-GCM frames + keyed BLAKE3 content id), and decoding
//! it again as `archive-get` does.
//!
//! The segment comes from `CAIRN_BENCH_SEGMENT` if set, else from a PostgreSQL 15 cluster
//! this benchmark starts (needs `scripts/install-test-deps.sh`).

use std::time::Duration;

use cairn_repo::ObjectKind;
use cairn_repo::keys::{KdfParams, KeyStorage};
use cairn_repo::test_util::{decode, encode};
use cairn_testkit::{ClusterOptions, PgCluster, PgInstall, TestDir};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn real_segment() -> Vec<u8> {
    if let Ok(p) = std::env::var("CAIRN_BENCH_SEGMENT") {
        return std::fs::read(p).expect("read CAIRN_BENCH_SEGMENT");
    }
    let install = PgInstall::find(15).expect("PostgreSQL 15");
    let dir = TestDir::new().unwrap();
    let mut pg = PgCluster::init(&install, &dir, ClusterOptions::default()).unwrap();
    pg.set_conf("wal_keep_size", "'1GB'").unwrap();
    pg.start().unwrap();
    pg.psql("CREATE TABLE w (id bigserial primary key, a int, b text)")
        .unwrap();
    let first = pg
        .psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
        .unwrap();
    loop {
        pg.psql("INSERT INTO w (a, b) SELECT g, md5(random()::text) || repeat('x', (random()*200)::int) FROM generate_series(1, 50000) g; UPDATE w SET a = a + 1 WHERE id % 7 = 0").unwrap();
        let now = pg
            .psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
            .unwrap();
        if now > first {
            break;
        }
    }
    std::fs::read(pg.data_dir().join("pg_wal").join(first)).unwrap()
}

fn bench(c: &mut Criterion) {
    let seg = real_segment();
    let keys = KeyStorage::create(
        Some("bench"),
        KdfParams {
            m_kib: 64,
            t: 1,
            p: 1,
        },
    )
    .unwrap()
    .1;
    let id = cairn_repo::Identity::of(
        &cairn_repo::ObjectKey::new("stanza/main/wal/1/00000001/000000010000000000000001").unwrap(),
    );
    let mut g = c.benchmark_group("wal-segment-16MiB");
    g.throughput(Throughput::Bytes(seg.len() as u64));
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.bench_function("summarize", |b| {
        b.iter(|| cairn_pgformat::summary::summarize_segment(&seg).unwrap())
    });
    g.bench_function("encode-zstd3-aes256gcm", |b| {
        b.iter(|| encode(&keys, ObjectKind::WalFile, &id, &seg, 3).unwrap())
    });
    let (enc, _) = encode(&keys, ObjectKind::WalFile, &id, &seg, 3).unwrap();
    g.bench_function("decode", |b| {
        b.iter(|| decode(&keys, ObjectKind::WalFile, &id, &enc).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
