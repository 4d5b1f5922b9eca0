//! A real S3-compatible server on 127.0.0.1 (`moto_server` from PyPI `moto[server]`).

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::error::{Error, Result, tail};
use crate::http::{HttpResponse, request};
use crate::install::test_cache_dir;
use crate::port::free_port;
use crate::test_dir::test_tmp_root;
use crate::wait::wait_until;

const ACCESS_KEY_ID: &str = "cairn-test";
const SECRET_ACCESS_KEY: &str = "cairn-test-secret";
const REGION: &str = "us-east-1";

/// A `moto_server` process on a free port of 127.0.0.1 with one bucket created, killed when
/// dropped. Its state lives in memory only.
///
/// moto honours conditional writes (`If-None-Match: *` answers 412 when the key exists) and
/// does not check signatures: any credentials work, the kit's fixed ones are
/// [`access_key_id`](Self::access_key_id) / [`secret_access_key`](Self::secret_access_key).
/// The object helpers ([`put_object`](Self::put_object), [`get_object`](Self::get_object), ...)
/// let a test look at or damage what cairn stored; they send an unsigned request with an
/// `Authorization` header naming the kit's access key, which moto takes as the bucket owner.
#[derive(Debug)]
pub struct S3Server {
    child: Option<Child>,
    port: u16,
    bucket: String,
    log: tempfile::NamedTempFile,
}

enum Startup {
    Up,
    Exited(ExitStatus),
}

impl S3Server {
    /// Starts a server with the bucket `cairn-test`.
    pub fn start() -> Result<S3Server> {
        S3Server::start_with_bucket("cairn-test")
    }

    /// Starts a server and creates `bucket` in it.
    pub fn start_with_bucket(bucket: &str) -> Result<S3Server> {
        let program = find_moto_server()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let log = tempfile::Builder::new()
                .prefix("cairn-moto-")
                .suffix(".log")
                .tempfile_in(test_tmp_root())
                .map_err(|e| Error::io("create a log file in", test_tmp_root(), e))?;
            let out = log.reopen().map_err(|e| Error::io("open", log.path(), e))?;
            let err = log.reopen().map_err(|e| Error::io("open", log.path(), e))?;
            let mut child = Command::new(&program)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("PYTHONUNBUFFERED", "1")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .current_dir("/")
                .spawn()
                .map_err(|source| Error::Spawn {
                    program: program.display().to_string(),
                    source,
                })?;
            let startup = wait_until(
                "moto_server to answer HTTP",
                Duration::from_secs(60),
                || {
                    if let Some(status) = child
                        .try_wait()
                        .map_err(|e| Error::io("wait for", &program, e))?
                    {
                        return Ok(Some(Startup::Exited(status)));
                    }
                    request(port, "GET", "/", &[], b"").map(|_| Some(Startup::Up))
                },
            );
            let mut server = S3Server {
                child: Some(child),
                port,
                bucket: bucket.to_string(),
                log,
            };
            let reason = match startup {
                Ok(Startup::Up) => {
                    server.create_bucket(bucket)?;
                    return Ok(server);
                }
                Ok(Startup::Exited(status)) => format!("exited with {status}"),
                Err(e) => e.to_string(),
            };
            let log_tail = server.log_tail(30);
            server.kill();
            if attempt < 3 && log_tail.contains("Address already in use") {
                continue;
            }
            return Err(Error::ServerFailed {
                server: format!("{} on 127.0.0.1:{port}", program.display()),
                reason,
                log_tail,
            });
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The bucket created at start.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }
    /// `s3://<bucket>/<prefix>` (for cairn's `repo.url`).
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{}", self.bucket, prefix.trim_start_matches('/'))
    }
    /// The test access key id.
    pub fn access_key_id(&self) -> &'static str {
        ACCESS_KEY_ID
    }
    /// The test secret access key.
    pub fn secret_access_key(&self) -> &'static str {
        SECRET_ACCESS_KEY
    }
    /// `us-east-1`.
    pub fn region(&self) -> &'static str {
        REGION
    }

    /// The `AWS_*` environment an S3 client (object_store, the AWS SDKs) needs to reach this
    /// server: credentials, region, endpoint, and permission to use plain HTTP.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_string()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_DEFAULT_REGION", REGION.to_string()),
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
    }

    /// The last `lines` lines of moto's log (one line per request).
    pub fn log_tail(&self, lines: usize) -> String {
        tail(
            &std::fs::read_to_string(self.log.path()).unwrap_or_default(),
            lines,
        )
    }

    /// Kills the server now (e.g. to test what cairn does when S3 is unreachable).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with SIGSTOP, as a hung store: the kernel still accepts connections,
    /// but no request is answered until [`resume`](Self::resume).
    pub fn pause(&self) -> Result<()> {
        self.signal("-STOP")
    }

    /// Continues a [`pause`](Self::pause)d server (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, sig: &str) -> Result<()> {
        let Some(child) = &self.child else {
            return Err(Error::Invalid("the S3 server was killed".into()));
        };
        let mut cmd = Command::new("kill");
        cmd.arg(sig).arg(child.id().to_string());
        crate::command::run(&mut cmd, None).map(|_| ())
    }

    /// Sends one request (`target` is the path and query, e.g. `/bucket/key?x=y`) with the
    /// kit's `Authorization` header.
    pub fn raw_request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse> {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/20260101/{REGION}/s3/aws4_request, SignedHeaders=host, Signature=0"
        );
        let mut all = vec![
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/octet-stream"),
        ];
        all.extend_from_slice(headers);
        request(self.port, method, target, &all, body)
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
        let target = format!("/{}", encode_key(bucket));
        let r = self.raw_request("PUT", &target, &[], b"")?;
        self.expect("PUT", &target, r, &[200]).map(|_| ())
    }

    fn object_target(&self, key: &str) -> String {
        format!("/{}/{}", self.bucket, encode_key(key))
    }

    /// Writes (or overwrites) object `key` in the bucket.
    pub fn put_object(&self, key: &str, body: &[u8]) -> Result<()> {
        let target = self.object_target(key);
        let r = self.raw_request("PUT", &target, &[], body)?;
        self.expect("PUT", &target, r, &[200]).map(|_| ())
    }

    /// Writes object `key` only if absent (`If-None-Match: *`); false when it existed.
    pub fn put_object_if_absent(&self, key: &str, body: &[u8]) -> Result<bool> {
        let target = self.object_target(key);
        let r = self.raw_request("PUT", &target, &[("If-None-Match", "*")], body)?;
        Ok(self.expect("PUT", &target, r, &[200, 412])?.status == 200)
    }

    /// Reads object `key`; `None` when it does not exist.
    pub fn get_object(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let target = self.object_target(key);
        let r = self.raw_request("GET", &target, &[], b"")?;
        let r = self.expect("GET", &target, r, &[200, 404])?;
        Ok((r.status == 200).then_some(r.body))
    }

    /// Deletes object `key` (no error when it does not exist).
    pub fn delete_object(&self, key: &str) -> Result<()> {
        let target = self.object_target(key);
        let r = self.raw_request("DELETE", &target, &[], b"")?;
        self.expect("DELETE", &target, r, &[200, 204]).map(|_| ())
    }

    /// Every key in the bucket that starts with `prefix`, in S3's (lexicographic) order.
    pub fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self
            .list_objects(prefix)?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// Every object in the bucket under `prefix` with its size, in S3's order.
    pub fn list_objects(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut target = format!(
                "/{}?list-type=2&prefix={}",
                self.bucket,
                encode_key(prefix).replace('/', "%2F")
            );
            if let Some(t) = &token {
                target.push_str(&format!(
                    "&continuation-token={}",
                    encode_key(t).replace('/', "%2F")
                ));
            }
            let r = self.raw_request("GET", &target, &[], b"")?;
            let body = self.expect("GET", &target, r, &[200])?.text();
            // Each <Contents> holds one <Key> and one <Size>.
            for item in xml_values(&body, "Contents") {
                let key = xml_values(&item, "Key")
                    .into_iter()
                    .next()
                    .unwrap_or_default();
                let size = xml_values(&item, "Size")
                    .first()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                keys.push((key, size));
            }
            token = xml_values(&body, "NextContinuationToken")
                .into_iter()
                .next();
            let truncated = xml_values(&body, "IsTruncated")
                .first()
                .is_some_and(|v| v == "true");
            if !truncated || token.is_none() {
                return Ok(keys);
            }
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `$CAIRN_MOTO_SERVER`, the install script's `$CAIRN_TEST_CACHE/bin/moto_server`, `PATH`,
/// then pip's user scheme (`~/.local/bin`).
pub fn find_moto_server() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CAIRN_MOTO_SERVER").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let cached = test_cache_dir().join("bin").join("moto_server");
    let mut candidates = vec![cached.clone()];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("moto_server")));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".local/bin/moto_server"));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or(Error::ToolNotInstalled {
            tool: "moto_server".into(),
            missing: cached,
        })
}

/// Percent-encodes an object key for a URL path (keeps `/` and RFC 3986 unreserved bytes).
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text of every `<tag>...</tag>` in `xml`, entities decoded.
pub(crate) fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        rest = &rest[start + open.len()..];
        let Some(end) = rest.find(&close) else { break };
        out.push(
            rest[..end]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &rest[end + close.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded() {
        assert_eq!(encode_key("a/b c+d"), "a/b%20c%2Bd");
    }

    #[test]
    fn xml_values_decode_entities() {
        let xml = "<R><Key>a&amp;b</Key><Key>c</Key><IsTruncated>false</IsTruncated></R>";
        assert_eq!(xml_values(xml, "Key"), vec!["a&b", "c"]);
    }
}
