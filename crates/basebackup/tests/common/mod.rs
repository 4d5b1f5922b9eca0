//! What the real-server tests share: connection parameters for a test cluster and a
//! runtime to drive the async client from plain tests (so that `wait_until` can poll it).

#![allow(dead_code)]

use std::future::Future;
use std::sync::LazyLock;

use cairn_basebackup::ConnParams;
use cairn_testkit::PgCluster;

/// Over the cluster's Unix socket, or TCP on 127.0.0.1.
pub fn params(pg: &PgCluster, user: &str, password: Option<&str>, tcp: bool) -> ConnParams {
    ConnParams {
        host: if tcp {
            "127.0.0.1".into()
        } else {
            pg.socket_dir().display().to_string()
        },
        port: pg.port(),
        user: user.into(),
        password: password.map(str::to_string),
        sslmode: None,
        application_name: "cairn-test".into(),
    }
}

/// One runtime for the whole test binary: a connection's socket belongs to the runtime
/// that opened it.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
});

pub fn block_on<F: Future>(f: F) -> F::Output {
    RUNTIME.block_on(f)
}
