//! Status reads catalog objects only, in a bounded number of requests, and computes the
//! right values from them. The store underneath counts and records every request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cairn_pgformat::builder::WalBuilder;
use cairn_pgformat::{
    Lsn, PgTimestamp, SegmentName, TimelineId, WalFileName, WalSegmentSize, XLogSegNo,
    summarize_segment,
};
use cairn_repo::manifest::MANIFEST_FORMAT;
use cairn_repo::{
    Backend, BackupLabel, BackupManifest, BackupType, DbId, IncrementalMode, OpenOptions,
    RecordKind, Repository, StanzaName, StoreBackend, WalDetail,
};
use cairn_status::{Problem, Thresholds, UtcTime, metrics, stanza_status};
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// Every request, as `OP path`.
#[derive(Debug, Default)]
struct Counting {
    inner: object_store::memory::InMemory,
    log: Mutex<Vec<String>>,
}

impl Counting {
    fn note(&self, op: &str, p: &Path) {
        self.log.lock().unwrap().push(format!("{op} {p}"));
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl std::fmt::Display for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counting")
    }
}

#[async_trait]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.note("PUT", location);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.note("PUT", location);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.note("GET", location);
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.note("DELETE", &Path::from("(stream)"));
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.note("LIST", prefix.unwrap_or(&Path::from("")));
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.note("LIST", prefix.unwrap_or(&Path::from("")));
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.note("LIST", prefix.unwrap_or(&Path::from("")));
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.note("COPY", to);
        self.inner.copy_opts(from, to, options).await
    }
}

const SEG: u32 = 1 << 20;
const SYSID: u64 = cairn_pgformat::builder::DEFAULT_SYSTEM_IDENTIFIER;

fn pg_time(rfc3339: &str) -> PgTimestamp {
    rfc3339.parse().unwrap()
}

fn manifest(
    label: &str,
    t: BackupType,
    parent: Option<&str>,
    seg: u64,
    at: &str,
) -> BackupManifest {
    let start = Lsn(seg * u64::from(SEG) + 0x28);
    BackupManifest {
        format: MANIFEST_FORMAT,
        label: BackupLabel::new(label).unwrap(),
        backup_type: t,
        parent: parent.map(|p| BackupLabel::new(p).unwrap()),
        db_id: DbId(1),
        system_id: SYSID,
        pg_major: 15,
        timeline: TimelineId(1),
        start_lsn: start,
        stop_lsn: Lsn(start.0 + 0x100),
        start_time: cairn_repo::BackupTime::parse(&format!("{at}:00Z")).unwrap(),
        stop_time: cairn_repo::BackupTime::parse(&format!("{at}:42Z")).unwrap(),
        incremental_mode: IncrementalMode::Full,
        packs: vec![],
        files: vec![],
        tablespaces: vec![],
        backup_label: String::new(),
        tablespace_map: None,
        pg_manifest: None,
        db_size: 1000,
        bytes_received: 1000,
        repo_added: if t == BackupType::Full { 5000 } else { 300 },
        annotations: Default::default(),
    }
}

struct Fixture {
    store: Arc<Counting>,
    repo: Repository,
    stanza: StanzaName,
}

/// Segments 1..=6 of timeline 1 (1 MiB each), commits in 2, 4 and 6; a full in 2 and an
/// incr in 4; a verify and a drill record.
async fn fixture() -> Fixture {
    let store = Arc::new(Counting::default());
    let backend = Backend::Store(Arc::new(StoreBackend::new(store.clone(), "", "memory://")));
    let (repo, _) = Repository::open_or_create(backend, None, &OpenOptions::default())
        .await
        .unwrap();
    let stanza = StanzaName::new("main").unwrap();
    repo.create_stanza(&stanza, SYSID, 15).await.unwrap();
    let seg_size = WalSegmentSize::new(SEG).unwrap();
    let mut wal = WalBuilder::new(XLogSegNo(1)).segment_size(seg_size);
    let commits = [
        (2, "2026-12-01T10:00:30Z"),
        (4, "2026-12-01T11:00:30Z"),
        (6, "2026-12-01T12:30:00Z"),
    ];
    for n in 1..=6u64 {
        if let Some((_, at)) = commits.iter().find(|(s, _)| *s == n) {
            wal.append_commit(700 + n as u32, pg_time(at));
        } else {
            wal.append_noop(64);
        }
        wal.append_switch();
    }
    for i in 0..6 {
        let bytes = wal.segment(i);
        let summary = summarize_segment(&bytes).unwrap();
        let name = WalFileName::Segment(SegmentName::from_segno(
            TimelineId(1),
            XLogSegNo(1 + i as u64),
            seg_size,
        ));
        let enc = repo
            .encode_wal(&stanza, DbId(1), &name, Bytes::from(bytes))
            .await
            .unwrap();
        repo.push_wal(
            &stanza,
            DbId(1),
            &name,
            &enc,
            WalDetail::Segment {
                summary: Box::new(summary),
            },
        )
        .await
        .unwrap();
    }
    repo.put_manifest(
        &stanza,
        &manifest(
            "20261201-100000F",
            BackupType::Full,
            None,
            2,
            "2026-12-01T10:00",
        ),
    )
    .await
    .unwrap();
    repo.put_manifest(
        &stanza,
        &manifest(
            "20261201-100000F_20261201-110000I",
            BackupType::Incr,
            Some("20261201-100000F"),
            4,
            "2026-12-01T11:00",
        ),
    )
    .await
    .unwrap();
    let verify = RecordKind::new("verify").unwrap();
    repo.put_record(
        &stanza,
        &verify,
        &serde_json::json!({"started":"2026-12-01T11:30:00Z","finished":"2026-12-01T11:30:07Z",
            "duration_seconds":7.0,"status":"ok","set":null}),
    )
    .await
    .unwrap();
    let drill = RecordKind::new("drill").unwrap();
    repo.put_record(
        &stanza,
        &drill,
        &serde_json::json!({"started":"2026-12-01T12:00:00Z","finished":"2026-12-01T12:01:30Z",
            "duration_seconds":90.0,"status":"succeeded"}),
    )
    .await
    .unwrap();
    repo.put_record(
        &stanza,
        &drill,
        &serde_json::json!({"started":"2026-12-01T13:00:00Z","finished":"2026-12-01T13:00:10Z",
            "duration_seconds":10.0,"status":"failed","error":"the query returned no row"}),
    )
    .await
    .unwrap();
    store.take();
    Fixture {
        store,
        repo,
        stanza,
    }
}

#[tokio::test]
async fn status_reads_only_catalog_objects_in_a_bounded_number_of_requests() {
    let f = fixture().await;
    // A long archive: 200 more files in the catalog (of another generation, so the
    // values the other test checks stay as they are).
    let template = f
        .repo
        .wal_catalog(&f.stanza)
        .await
        .unwrap()
        .entries()
        .last()
        .unwrap()
        .clone();
    for n in 0..200u64 {
        let mut e = template.clone();
        e.db_id = DbId(7);
        e.name = format!("00000001{:016X}", 0x100 + n);
        f.repo
            .record_wal_event(&f.stanza, &cairn_repo::WalEvent::Archived { entry: e })
            .await
            .unwrap();
    }
    f.store.take();
    // The first read compacts the journals into snapshots; from then on, every minute's
    // read costs the same few requests whatever the archive's length.
    let mut steady = Vec::new();
    for round in 0..3 {
        let s = stanza_status(&f.repo, &f.stanza).await.unwrap();
        assert_eq!(s.backups.count, 2);
        assert_eq!(s.archive.segments, 206);
        let requests = f.store.take();
        for r in &requests {
            let path = r.split_once(' ').unwrap().1;
            assert!(
                !path.starts_with("stanza/main/wal/")
                    && !path.starts_with("stanza/main/pack")
                    && !path.ends_with("/manifest"),
                "round {round}: status read {r}"
            );
        }
        println!("round {round}: {} requests", requests.len());
        if round > 0 {
            steady.push(requests);
        }
    }
    for requests in steady {
        assert!(
            requests
                .iter()
                .all(|r| !r.starts_with("PUT") && !r.starts_with("DELETE")),
            "the steady state writes nothing: {requests:#?}"
        );
        assert!(
            requests.len() <= 16,
            "{} requests: {requests:#?}",
            requests.len()
        );
    }
}

#[tokio::test]
async fn status_values_health_and_metrics_from_the_catalogs() {
    let f = fixture().await;
    let s = stanza_status(&f.repo, &f.stanza).await.unwrap();
    assert!(s.exists);
    let full = s.backups.of_type(BackupType::Full).unwrap();
    let incr = s.backups.of_type(BackupType::Incr).unwrap();
    assert_eq!((full.count, incr.count), (1, 1));
    assert_eq!(s.backups.of_type(BackupType::Diff).unwrap().count, 0);
    let last_full = full.last.as_ref().unwrap();
    assert_eq!(last_full.label.as_str(), "20261201-100000F");
    assert_eq!(last_full.duration_seconds, 42.0);
    assert_eq!(last_full.added_bytes, 5000);
    let newest = s.backups.newest.as_ref().unwrap();
    assert_eq!(newest.label.as_str(), "20261201-100000F_20261201-110000I");
    assert_eq!(newest.finished.to_string(), "2026-12-01T11:00:42Z");

    assert_eq!(s.archive.segments, 6);
    assert_eq!(s.archive.bytes, 6 * u64::from(SEG));
    assert_eq!(s.archive.gaps, 0);
    assert_eq!(
        s.archive.last_commit.unwrap().to_string(),
        "2026-12-01T12:30:00Z"
    );
    let last = s.archive.last_segment.as_ref().unwrap();
    assert!(last.archived_at.age_at(UtcTime::now()) < Duration::from_secs(600));
    assert_eq!(s.repo_size_bytes, 5300 + 6 * u64::from(SEG));

    let w = s.recovery_window.unwrap();
    assert_eq!(
        w.start.to_string(),
        "2026-12-01T10:00:42Z",
        "the full's end"
    );
    assert_eq!(w.end.to_string(), "2026-12-01T12:30:00Z", "the last commit");

    assert!(s.verify.last.as_ref().unwrap().success);
    assert_eq!(
        s.verify.last_success.as_ref().unwrap().finished.to_string(),
        "2026-12-01T11:30:07Z"
    );
    let drill_last = s.drill.last.as_ref().unwrap();
    assert!(!drill_last.success);
    assert_eq!(
        drill_last.error.as_deref(),
        Some("the query returned no row")
    );
    let drill_ok = s.drill.last_success.as_ref().unwrap();
    assert_eq!(drill_ok.duration_seconds, Some(90.0));

    // Health: a day after the incr finished, with a 26h threshold it is fine, with 12h it
    // is not, and the reason names the newest backup.
    let now = UtcTime::parse_rfc3339("2026-12-02T11:00:42Z").unwrap();
    let lenient = Thresholds {
        max_backup_age: Some(Duration::from_secs(26 * 3600)),
        max_archive_lag: None,
    };
    assert!(s.health(&lenient, now).healthy);
    let strict = Thresholds {
        max_backup_age: Some(Duration::from_secs(12 * 3600)),
        max_archive_lag: Some(Duration::from_secs(3600)),
    };
    let h = s.health(&strict, last.archived_at.minus(Duration::from_secs(0)));
    assert!(!h.healthy);
    assert_eq!(h.problems.len(), 1, "{h:?}");
    match &h.problems[0].problem {
        Problem::BackupTooOld { label, .. } => {
            assert_eq!(label, "20261201-100000F_20261201-110000I")
        }
        p => panic!("{p:?}"),
    }
    assert!(
        h.problems[0]
            .message
            .contains("20261201-100000F_20261201-110000I"),
        "{}",
        h.problems[0].message
    );
    let later = UtcTime::parse_rfc3339("2100-01-01T00:00:00Z").unwrap();
    let h = s.health(&strict, later);
    assert!(h.problems.iter().any(|p| matches!(
        &p.problem,
        Problem::ArchiveLag { segment, .. } if segment == "000000010000000000000006"
    )));

    let text = metrics::render(&[(&s, &s.health(&lenient, now))]);
    let full_ts = last_full.finished.unix_seconds();
    for line in [
        format!(
            "cairn_backup_last_success_timestamp_seconds{{stanza=\"main\",type=\"full\"}} {full_ts}"
        ),
        "cairn_backup_last_duration_seconds{stanza=\"main\",type=\"full\"} 42".into(),
        "cairn_backup_last_added_bytes{stanza=\"main\",type=\"incr\"} 300".into(),
        "cairn_backups{stanza=\"main\",type=\"diff\"} 0".into(),
        "cairn_archive_segments{stanza=\"main\"} 6".into(),
        "cairn_drill_last_duration_seconds{stanza=\"main\"} 90".into(),
        "cairn_drill_last_ok{stanza=\"main\"} 0".into(),
        "cairn_verify_last_ok{stanza=\"main\"} 1".into(),
        "cairn_recovery_windows{stanza=\"main\"} 1".into(),
        "cairn_stanza_healthy{stanza=\"main\"} 1".into(),
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
}
