//! TestDir, wait_until and the workspace binaries.

use std::time::{Duration, Instant};

use cairn_testkit::{Error, TestDir, cairn_bin, require_cairn_bin, wait_until};

#[test]
fn test_dir_is_removed_on_drop_and_subdirs_nest() -> Result<(), Error> {
    let dir = TestDir::new()?;
    let path = dir.path().to_path_buf();
    let sub = dir.subdir("a/b")?;
    assert!(sub.is_dir());
    assert!(dir.subdir("../escape").is_err());
    let conf = dir.write_file("etc/cairn.toml", "x = 1\n")?;
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "x = 1\n");
    assert!(dir.write_file("/etc/nope", "").is_err());
    drop(dir);
    assert!(!path.exists());
    Ok(())
}

#[test]
fn wait_until_names_what_and_the_last_error() {
    let start = Instant::now();
    let err = wait_until("the moon", Duration::from_millis(100), || {
        Err::<Option<()>, _>("still dark")
    })
    .unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(100));
    let text = err.to_string();
    assert!(
        text.contains("the moon") && text.contains("still dark"),
        "{text}"
    );
}

#[test]
fn missing_binary_has_a_hint() {
    let err = require_cairn_bin("no-such-cairn-binary").unwrap_err();
    assert!(
        err.to_string().contains("cargo build --workspace --bins"),
        "{err}"
    );
    assert!(cairn_bin("cairn").ends_with("cairn"));
}
