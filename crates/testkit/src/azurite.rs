//! A real Azure Blob Storage emulator on 127.0.0.1 (`azurite-blob` from npm `azurite`).

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::emulator::{Emulator, find_tool, percent_encode};
use crate::error::{Error, Result, tail};
use crate::http::{HttpResponse, request};
use crate::s3::xml_values;

/// Azurite's documented development account and key (public values, not secrets).
const ACCOUNT: &str = "devstoreaccount1";
const ACCESS_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const API_VERSION: &str = "2021-08-06";

/// An `azurite-blob` process on a free port of 127.0.0.1 with one container created,
/// killed when dropped. Its state lives in memory only, and telemetry is off.
///
/// Azurite checks Shared Key signatures, so the object helpers ([`put_object`](Self::put_object),
/// [`get_object`](Self::get_object), ...) sign each request with the development account's
/// key; they let a test look at or damage what cairn stored. Azurite honours
/// `If-None-Match: *` on a blob upload (it answers 409 when the blob exists).
#[derive(Debug)]
pub struct AzuriteServer {
    emulator: Emulator,
    container: String,
}

impl AzuriteServer {
    /// Starts a server with the container `cairn-test`.
    pub fn start() -> Result<AzuriteServer> {
        AzuriteServer::start_with_container("cairn-test")
    }

    /// Starts a server and creates `container` (3-63 lowercase letters, digits and dashes).
    pub fn start_with_container(container: &str) -> Result<AzuriteServer> {
        let program = find_tool("azurite-blob", "CAIRN_AZURITE_BLOB")?;
        let emulator = Emulator::start(
            "azurite",
            &program,
            |port, _work| {
                [
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    &port.to_string(),
                    "--inMemoryPersistence",
                    "--disableTelemetry",
                    "--skipApiVersionCheck",
                    "--loose",
                ]
                .map(String::from)
                .to_vec()
            },
            "/",
        )?;
        let server = AzuriteServer {
            emulator,
            container: container.to_string(),
        };
        server.create_container(container)?;
        Ok(server)
    }

    /// The blob endpoint of the development account, `http://127.0.0.1:PORT/devstoreaccount1`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.emulator.port)
    }
    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.emulator.port
    }
    /// The container created at start.
    pub fn container(&self) -> &str {
        &self.container
    }
    /// `az://<container>/<prefix>` (for cairn's `repo.url`).
    pub fn url(&self, prefix: &str) -> String {
        format!("az://{}/{}", self.container, prefix.trim_start_matches('/'))
    }
    /// `devstoreaccount1`.
    pub fn account(&self) -> &'static str {
        ACCOUNT
    }
    /// The development account's key.
    pub fn access_key(&self) -> &'static str {
        ACCESS_KEY
    }

    /// The last `lines` lines of Azurite's log (one line per request).
    pub fn log_tail(&self, lines: usize) -> String {
        self.emulator.log_tail(lines)
    }

    /// Kills the server now (e.g. to test what cairn does when the store is unreachable).
    pub fn kill(&mut self) {
        self.emulator.kill();
    }

    /// Sends one Shared Key signed request. `path` is below the account (`/container/blob`),
    /// `query` its already-encoded `(name, value)` pairs.
    pub fn raw_request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse> {
        let date = http_date(SystemTime::now());
        let content_type = "application/octet-stream";
        let mut ms: Vec<(String, String)> = vec![
            ("x-ms-date".into(), date),
            ("x-ms-version".into(), API_VERSION.into()),
        ];
        let mut plain: Vec<(&str, &str)> = Vec::new();
        for (k, v) in headers {
            if k.to_ascii_lowercase().starts_with("x-ms-") {
                ms.push((k.to_ascii_lowercase(), v.to_string()));
            } else {
                plain.push((k, v));
            }
        }
        ms.sort();
        let header = |name: &str| {
            plain
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map_or("", |(_, v)| *v)
        };
        let length = if body.is_empty() {
            String::new()
        } else {
            body.len().to_string()
        };
        let url_path = format!("/{ACCOUNT}{path}");
        let mut resource = format!("/{ACCOUNT}{url_path}");
        let mut sorted_query = query.to_vec();
        sorted_query.sort();
        for (k, v) in &sorted_query {
            resource.push_str(&format!(
                "\n{}:{}",
                k.to_ascii_lowercase(),
                percent_decode(v)
            ));
        }
        let canonical_headers: String = ms.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let to_sign = format!(
            "{method}\n\n\n{length}\n\n{content_type}\n\n\n{}\n{}\n\n{}\n{canonical_headers}{resource}",
            header("If-Match"),
            header("If-None-Match"),
            header("Range"),
        );
        let key = BASE64
            .decode(ACCESS_KEY)
            .map_err(|e| Error::Invalid(format!("the Azurite key does not decode: {e}")))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&key)
            .map_err(|e| Error::Invalid(format!("HMAC key: {e}")))?;
        mac.update(to_sign.as_bytes());
        let auth = format!(
            "SharedKey {ACCOUNT}:{}",
            BASE64.encode(mac.finalize().into_bytes())
        );
        let mut target = url_path;
        if !query.is_empty() {
            let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            target = format!("{target}?{}", q.join("&"));
        }
        let mut all: Vec<(&str, &str)> = vec![
            ("Authorization", auth.as_str()),
            ("Content-Type", content_type),
        ];
        all.extend(ms.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        all.extend(plain);
        request(self.emulator.port, method, &target, &all, body)
    }

    fn expect(
        &self,
        method: &str,
        path: &str,
        r: HttpResponse,
        ok: &[u16],
    ) -> Result<HttpResponse> {
        if ok.contains(&r.status) {
            Ok(r)
        } else {
            Err(Error::Http {
                method: method.into(),
                target: path.into(),
                reason: format!("HTTP {}: {}", r.status, tail(&r.text(), 5)),
            })
        }
    }

    /// Creates another container.
    pub fn create_container(&self, container: &str) -> Result<()> {
        let path = format!("/{container}");
        let r = self.raw_request("PUT", &path, &[("restype", "container")], &[], b"")?;
        self.expect("PUT", &path, r, &[201]).map(|_| ())
    }

    fn blob_path(&self, key: &str) -> String {
        format!("/{}/{}", self.container, percent_encode(key, true))
    }

    /// Writes (or overwrites) blob `key` in the container.
    pub fn put_object(&self, key: &str, body: &[u8]) -> Result<()> {
        let path = self.blob_path(key);
        let r = self.raw_request("PUT", &path, &[], &[("x-ms-blob-type", "BlockBlob")], body)?;
        self.expect("PUT", &path, r, &[201]).map(|_| ())
    }

    /// Writes blob `key` only if absent (`If-None-Match: *`); false when it existed.
    pub fn put_object_if_absent(&self, key: &str, body: &[u8]) -> Result<bool> {
        let path = self.blob_path(key);
        let headers = [("x-ms-blob-type", "BlockBlob"), ("If-None-Match", "*")];
        let r = self.raw_request("PUT", &path, &[], &headers, body)?;
        Ok(self.expect("PUT", &path, r, &[201, 409, 412])?.status == 201)
    }

    /// Reads blob `key`; `None` when it does not exist.
    pub fn get_object(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.blob_path(key);
        let r = self.raw_request("GET", &path, &[], &[], b"")?;
        let r = self.expect("GET", &path, r, &[200, 404])?;
        Ok((r.status == 200).then_some(r.body))
    }

    /// Deletes blob `key` (no error when it does not exist).
    pub fn delete_object(&self, key: &str) -> Result<()> {
        let path = self.blob_path(key);
        let r = self.raw_request("DELETE", &path, &[], &[], b"")?;
        self.expect("DELETE", &path, r, &[202, 404]).map(|_| ())
    }

    /// Every blob name in the container that starts with `prefix`, in listing order.
    pub fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let path = format!("/{}", self.container);
        let prefix = percent_encode(prefix, false);
        let mut keys = Vec::new();
        let mut marker = String::new();
        loop {
            let mut query = vec![
                ("restype", "container"),
                ("comp", "list"),
                ("prefix", prefix.as_str()),
            ];
            if !marker.is_empty() {
                query.push(("marker", marker.as_str()));
            }
            let r = self.raw_request("GET", &path, &query, &[], b"")?;
            let body = self.expect("GET", &path, r, &[200])?.text();
            keys.extend(xml_values(&body, "Name"));
            let next = xml_values(&body, "NextMarker").into_iter().next();
            match next.filter(|m| !m.is_empty()) {
                Some(m) => marker = percent_encode(&m, false),
                None => return Ok(keys),
            }
        }
    }
}

/// RFC 1123 date in GMT (`Sun, 06 Nov 1994 08:49:37 GMT`), as the `x-ms-date` header wants.
fn http_date(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {h:02}:{m:02}:{s:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_rfc1123() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            http_date(SystemTime::UNIX_EPOCH),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }

    #[test]
    fn query_values_are_decoded_for_signing() {
        assert_eq!(percent_decode("a%2Fb%20c"), "a/b c");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
