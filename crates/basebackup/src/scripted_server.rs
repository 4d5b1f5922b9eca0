//! `BASE_BACKUP` against a scripted server: the protocol cases a real server rarely
//! produces (an archive cut short, an error or a hang-up mid-stream, malformed messages).
//! The script is written as the server would write it; the client is the real one.

use bytes::Bytes;
use cairn_pgformat::tar::{TarEntry, TarKind, encode_header};
use cairn_pgformat::{Lsn, TimelineId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{BackupEvent, BaseBackupOptions, ReplicationConnection, ReplicationError};

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn row(cols: &[Option<&str>]) -> Vec<u8> {
    let mut b = (cols.len() as u16).to_be_bytes().to_vec();
    for c in cols {
        match c {
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v.as_bytes());
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    msg(b'D', &b)
}

fn copy(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![kind];
    b.extend_from_slice(payload);
    msg(b'd', &b)
}

fn complete() -> Vec<u8> {
    msg(b'C', b"SELECT\0")
}

fn error(code: &str) -> Vec<u8> {
    msg(b'E', format!("SERROR\0C{code}\0Mit broke\0\0").as_bytes())
}

fn notice(text: &str) -> Vec<u8> {
    msg(b'N', format!("SWARNING\0C01000\0M{text}\0\0").as_bytes())
}

/// `PG_VERSION` holding "17\n", and the end of the archive.
fn archive(with_end: bool) -> Vec<u8> {
    let e = TarEntry {
        path: "PG_VERSION".into(),
        kind: TarKind::File,
        mode: 0o600,
        size: 3,
        mtime: 1,
    };
    let mut a = encode_header(&e).unwrap().to_vec();
    a.extend_from_slice(b"17\n");
    a.resize(1024, 0);
    if with_end {
        a.resize(2048, 0);
    }
    a
}

/// The start of every BASE_BACKUP answer: positions, tablespaces, COPY.
fn start() -> Vec<u8> {
    let mut s = Vec::new();
    s.extend(row(&[Some("0/2000028"), Some("1")]));
    s.extend(complete());
    s.extend(row(&[None, None, Some("40")]));
    s.extend(complete());
    s.extend(msg(b'H', &[0, 0, 0]));
    s.extend(copy(b'n', b"base.tar\0\0"));
    s
}

fn end() -> Vec<u8> {
    let mut s = msg(b'c', b"");
    s.extend(row(&[Some("0/2000100"), Some("1")]));
    s.extend(complete());
    s.extend(msg(b'C', b"BASE_BACKUP\0"));
    s.extend(msg(b'Z', b"I"));
    s
}

async fn run(script: Vec<u8>) -> (Vec<BackupEvent>, Option<ReplicationError>, Vec<String>) {
    let (client, mut server) = tokio::io::duplex(1 << 20);
    let mut conn = ReplicationConnection::over(Box::new(client), false);
    let writer = tokio::spawn(async move {
        // Read the query (tag, length, text), answer, hang up.
        let mut head = [0u8; 5];
        server.read_exact(&mut head).await.unwrap();
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut query = vec![0u8; len - 4];
        server.read_exact(&mut query).await.unwrap();
        assert!(query.starts_with(b"BASE_BACKUP ("));
        server.write_all(&script).await.unwrap();
    });
    let opts = BaseBackupOptions {
        label: "t".into(),
        fast_checkpoint: true,
        incremental: false,
    };
    let mut stream = conn.base_backup(&opts).await.unwrap();
    let mut events = Vec::new();
    let error = loop {
        match stream.next_event().await {
            Ok(Some(e)) => events.push(e),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    if error.is_some() {
        // A failed stream stays failed.
        assert!(stream.next_event().await.is_err());
    }
    let notices = stream.take_notices();
    drop(conn);
    writer.await.unwrap();
    (events, error, notices)
}

#[tokio::test]
async fn a_backup_in_pieces_becomes_file_events() {
    let a = archive(true);
    let mut script = start();
    for piece in a.chunks(300) {
        script.extend(copy(b'd', piece));
    }
    script.extend(copy(b'p', &2048u64.to_be_bytes()));
    script.extend(notice("still here"));
    script.extend(copy(b'm', b""));
    script.extend(copy(b'd', b"{ \"manifest\""));
    script.extend(end());
    let (events, error, notices) = run(script).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(notices, ["WARNING: still here"]);
    let data: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            BackupEvent::Data(d) => Some(d.to_vec()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(data, b"17\n");
    assert_eq!(
        events.first(),
        Some(&BackupEvent::Started {
            start_lsn: Lsn(0x200_0028),
            timeline: TimelineId(1)
        })
    );
    assert_eq!(events[1], BackupEvent::Tablespaces(vec![]));
    assert!(
        matches!(&events[2], BackupEvent::ArchiveStart { name, tablespace: None } if name == "base.tar")
    );
    assert!(matches!(&events[3], BackupEvent::Entry(e) if e.path == "PG_VERSION"));
    assert!(events.contains(&BackupEvent::EntryEnd));
    assert!(events.contains(&BackupEvent::Progress(2048)));
    assert!(
        events.contains(&BackupEvent::ManifestData(Bytes::from_static(
            b"{ \"manifest\""
        )))
    );
    assert_eq!(
        events.last(),
        Some(&BackupEvent::Finished {
            end_lsn: Lsn(0x200_0100),
            timeline: TimelineId(1)
        })
    );
}

#[tokio::test]
async fn an_archive_without_its_end_marker_is_an_error() {
    let mut script = start();
    script.extend(copy(b'd', &archive(false)));
    script.extend(copy(b'm', b""));
    script.extend(end());
    let (_, error, _) = run(script).await;
    assert!(
        matches!(&error, Some(ReplicationError::Tar { archive, .. }) if archive == "base.tar"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_server_error_mid_stream_ends_it_after_the_events_before() {
    let mut script = start();
    script.extend(copy(b'd', &archive(false)[..700]));
    script.extend(error("XX001"));
    script.extend(msg(b'Z', b"I"));
    let (events, error, _) = run(script).await;
    assert!(events.iter().any(|e| matches!(e, BackupEvent::Entry(_))));
    assert_eq!(error.unwrap().sqlstate(), Some("XX001"));
}

#[tokio::test]
async fn protocol_violations_are_errors() {
    for bad in [copy(b'x', b""), copy(b'p', b"\0\0")] {
        let mut script = start();
        script.extend(bad);
        let (_, error, _) = run(script).await;
        assert!(
            matches!(error, Some(ReplicationError::Protocol(_))),
            "{error:?}"
        );
    }
    // Archive data before any archive.
    let mut script = start();
    let n = copy(b'n', b"base.tar\0\0");
    script.truncate(script.len() - n.len());
    script.extend(copy(b'd', &archive(true)));
    let (_, error, _) = run(script).await;
    assert!(
        matches!(error, Some(ReplicationError::Protocol(_))),
        "{error:?}"
    );
    // The server hangs up.
    let (_, error, _) = run(start()).await;
    assert!(matches!(error, Some(ReplicationError::Io(_))), "{error:?}");
    // The server reports why it hangs up (FATAL, no ReadyForQuery).
    let mut script = start();
    script.extend(self::error("57P01"));
    let (_, fatal, _) = run(script).await;
    assert_eq!(fatal.unwrap().sqlstate(), Some("57P01"));
}
