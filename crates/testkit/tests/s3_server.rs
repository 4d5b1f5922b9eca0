//! The kit's S3 server, driven with raw HTTP.

use cairn_testkit::{Error, S3Server};

#[test]
fn put_get_list_delete_and_conditional_put() -> Result<(), Error> {
    let s3 = S3Server::start()?;
    assert!(s3.endpoint().starts_with("http://127.0.0.1:"));
    assert_eq!(s3.bucket(), "cairn-test");
    assert_eq!(s3.url("main"), "s3://cairn-test/main");

    let body: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    s3.put_object("main/wal/a b+c", &body)?;
    assert_eq!(s3.get_object("main/wal/a b+c")?, Some(body));
    assert_eq!(s3.get_object("main/missing")?, None);

    // If-None-Match: * must never overwrite.
    assert!(s3.put_object_if_absent("main/once", b"first")?);
    assert!(!s3.put_object_if_absent("main/once", b"second")?);
    assert_eq!(s3.get_object("main/once")?.as_deref(), Some(&b"first"[..]));

    s3.put_object("other/x", b"")?;
    assert_eq!(s3.list_keys("main/")?, vec!["main/once", "main/wal/a b+c"]);
    s3.delete_object("main/once")?;
    assert_eq!(s3.list_keys("main/")?, vec!["main/wal/a b+c"]);
    assert_eq!(s3.list_keys("")?.len(), 2);

    let env = s3.aws_env();
    assert!(env.contains(&("AWS_ENDPOINT", s3.endpoint())));
    Ok(())
}

#[test]
fn killed_server_is_unreachable() -> Result<(), Error> {
    let mut s3 = S3Server::start_with_bucket("another")?;
    s3.put_object("k", b"v")?;
    s3.kill();
    let err = s3.get_object("k").unwrap_err();
    assert!(err.is_retryable(), "{err}");
    Ok(())
}
