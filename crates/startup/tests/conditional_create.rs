//! Create-if-absent on every object store cairn builds from a configuration, against real
//! servers on 127.0.0.1: a second create of a key reports `Exists` and leaves the first
//! object's bytes in place. S3 (moto) and Azure (Azurite) honour it; the GCS emulator
//! (fake-gcs-server) refuses object_store's uploads outright, and cairn reports that as an
//! error rather than as a stored object.

use bytes::Bytes;
use cairn_config::{Config, Env};
use cairn_repo::test_util::RawBackend;
use cairn_repo::{Backend, ObjectKey, PutOutcome};
use cairn_testkit::{AzuriteServer, GcsServer, S3Server};

fn backend(toml: &str) -> Backend {
    let cfg = Config::from_toml_str(toml, "test.toml".as_ref(), &Env::empty()).unwrap();
    cairn_startup::backend_for(&cfg.repo).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).unwrap()
}

/// Create, create again with other bytes, read back; list finds the key once.
fn second_create_reports_exists(b: &Backend) {
    let b = RawBackend::from_backend(b);
    let rt = runtime();
    let k = key("probe/create-once");
    let first = rt
        .block_on(b.put_if_absent(&k, Bytes::from_static(b"first")))
        .unwrap();
    assert_eq!(first, PutOutcome::Created);
    let second = rt
        .block_on(b.put_if_absent(&k, Bytes::from_static(b"second")))
        .unwrap();
    assert_eq!(second, PutOutcome::Exists);
    let stored = rt.block_on(b.get(&k)).unwrap().unwrap();
    assert_eq!(
        &stored[..],
        b"first",
        "the second create overwrote the object"
    );
    let listed = rt.block_on(b.list("probe/", None)).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].key, "probe/create-once");
    rt.block_on(b.delete(&k)).unwrap();
    assert!(rt.block_on(b.get(&k)).unwrap().is_none());
}

#[test]
fn s3_create_if_absent_is_honoured() {
    let s3 = S3Server::start().unwrap();
    let b = backend(&format!(
        "[repo]\nurl = \"{}\"\n[repo.s3]\nendpoint = \"{}\"\nregion = \"{}\"\n\
         access-key-id = \"{}\"\nsecret-access-key = \"{}\"\nallow-http = true\n",
        s3.url("cc"),
        s3.endpoint(),
        s3.region(),
        s3.access_key_id(),
        s3.secret_access_key()
    ));
    second_create_reports_exists(&b);
}

#[test]
fn azure_create_if_absent_is_honoured_by_azurite() {
    let az = AzuriteServer::start().unwrap();
    let b = backend(&format!(
        "[repo]\nurl = \"{}\"\nretry-max = 1\n[repo.azure]\nuse-emulator = true\nendpoint = \"{}\"\n",
        az.url("cc"),
        az.endpoint()
    ));
    second_create_reports_exists(&b);
    let b = RawBackend::from_backend(&b);
    // What cairn wrote is where the emulator's own API finds it (the damage tests rely on it).
    let rt = runtime();
    let k = key("probe/raw");
    rt.block_on(b.put_if_absent(&k, Bytes::from_static(b"cairn")))
        .unwrap();
    assert_eq!(
        az.get_object("cc/probe/raw").unwrap().as_deref(),
        Some(&b"cairn"[..])
    );
    assert_eq!(az.list_keys("cc/probe/").unwrap(), vec!["cc/probe/raw"]);
    az.put_object("cc/probe/raw", b"damaged").unwrap();
    assert_eq!(&rt.block_on(b.get(&k)).unwrap().unwrap()[..], b"damaged");
    assert!(!az.put_object_if_absent("cc/probe/raw", b"again").unwrap());
    az.delete_object("cc/probe/raw").unwrap();
    assert!(rt.block_on(b.get(&k)).unwrap().is_none());
}

#[test]
fn gcs_emulator_refuses_cairns_writes_and_cairn_reports_it() {
    let gcs = GcsServer::start().unwrap();
    let b = backend(&format!(
        "[repo]\nurl = \"{}\"\nretry-max = 0\n[repo.gcs]\nendpoint = \"{}\"\nanonymous = true\n\
         allow-http = true\n",
        gcs.url("cc"),
        gcs.endpoint()
    ));
    let b = RawBackend::from_backend(&b);
    let rt = runtime();
    let k = key("probe/create-once");
    // object_store uploads through GCS's XML API; fake-gcs-server answers 400. cairn must
    // report an error, never `Created`, and nothing may land.
    let err = rt
        .block_on(b.put_if_absent(&k, Bytes::from_static(b"first")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("400"), "{err}");
    assert_eq!(gcs.get_object("cc/probe/create-once").unwrap(), None);

    // Reading and listing do work against it.
    gcs.put_object("cc/probe/raw", b"from the JSON API")
        .unwrap();
    assert_eq!(
        &rt.block_on(b.get(&key("probe/raw"))).unwrap().unwrap()[..],
        b"from the JSON API"
    );
    let listed = rt.block_on(b.list("probe/", None)).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");

    // And its own JSON upload does not honour `ifGenerationMatch=0`: a second create
    // replaces the first. This is why cairn is not claimed to be tested on it.
    let target = format!(
        "/upload/storage/v1/b/{}/o?uploadType=media&name=cc%2Fprobe%2Fraw&ifGenerationMatch=0",
        gcs.bucket()
    );
    let r = gcs.raw_request("POST", &target, &[], b"replaced").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        gcs.get_object("cc/probe/raw").unwrap().as_deref(),
        Some(&b"replaced"[..])
    );
}
