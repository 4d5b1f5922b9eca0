//! The last run and the last successful run of a recorded job (`verify`, `drill`), read
//! from the stanza's records (`cairn_repo::record`). One listing, then the newest records
//! until a successful one is found: at most `RECORDS_KEPT` small reads.
//!
//! The fields read are the ones every run record shares: `started`, `finished` (RFC 3339),
//! `duration_seconds`, and the outcome as `status` (`ok`, `succeeded` or `success` mean
//! success; anything else, e.g. `damaged` or `failed`, does not) or as a boolean `success`.
//! A record without `finished` is dated by its key.

use cairn_repo::{ObjectKind, RecordKind, RepoError, Repository, StanzaName};
use serde::{Deserialize, Serialize};

use crate::time::UtcTime;

/// One recorded run, as status shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunOutcome {
    pub started: Option<UtcTime>,
    pub finished: UtcTime,
    pub duration_seconds: Option<f64>,
    pub success: bool,
    /// The record's `status` word (`ok`, `damaged`, `failed`), when it has one.
    pub status: Option<String>,
    /// A whole-stanza run, not one limited to a backup (`verify --set`).
    pub whole_stanza: bool,
    /// Why it failed, when the record says (`error`).
    pub error: Option<String>,
}

/// The newest run of a kind, and the newest successful one.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunHistory {
    pub last: Option<RunOutcome>,
    pub last_success: Option<RunOutcome>,
}

#[derive(Debug, Deserialize)]
struct RunFields {
    #[serde(default, alias = "started_at")]
    started: Option<String>,
    #[serde(default, alias = "finished_at")]
    finished: Option<String>,
    #[serde(default)]
    duration_seconds: Option<f64>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    success: Option<bool>,
    /// `verify --set LABEL`: only one backup was checked.
    #[serde(default)]
    set: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<String>,
}

impl RunFields {
    fn outcome(self, key_name: &str) -> Option<RunOutcome> {
        let finished = self
            .finished
            .as_deref()
            .and_then(UtcTime::parse_rfc3339)
            .or_else(|| UtcTime::parse_stamp(key_name))?;
        let success = match (&self.status, self.success) {
            (_, Some(b)) => b,
            (Some(s), None) => matches!(s.as_str(), "ok" | "succeeded" | "success"),
            (None, None) => false,
        };
        Some(RunOutcome {
            started: self.started.as_deref().and_then(UtcTime::parse_rfc3339),
            finished,
            duration_seconds: self.duration_seconds.filter(|d| d.is_finite() && *d >= 0.0),
            success,
            status: self.status,
            whole_stanza: self.set.is_none_or(|v| v.is_null()),
            error: self.error,
        })
    }
}

/// The newest run of `kind` and the newest successful whole-stanza run. Damaged records
/// are passed over, as `Repository::latest_record` does.
pub async fn run_history(
    repo: &Repository,
    stanza: &StanzaName,
    kind: &str,
) -> Result<RunHistory, RepoError> {
    let kind = RecordKind::new(kind).map_err(|message| RepoError::Encode { message })?;
    let mut out = RunHistory::default();
    for key in repo.record_keys(stanza, &kind).await?.into_iter().rev() {
        let got = repo
            .get_json::<RunFields>(&key, ObjectKind::Record, "record")
            .await;
        let fields = match got {
            Ok(Some(f)) => f,
            Ok(None) | Err(RepoError::Object { .. } | RepoError::Malformed { .. }) => continue,
            Err(e) => return Err(e),
        };
        let Some(run) = fields.outcome(key.file_name()) else {
            continue;
        };
        if out.last.is_none() {
            out.last = Some(run.clone());
        }
        if run.success && run.whole_stanza {
            out.last_success = Some(run);
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Verify<'a> {
        started: &'a str,
        finished: &'a str,
        duration_seconds: f64,
        status: &'a str,
        set: Option<&'a str>,
    }

    #[tokio::test]
    async fn the_last_run_and_the_last_whole_successful_run() {
        let repo = Repository::in_memory().await;
        let s = StanzaName::new("main").unwrap();
        let kind = RecordKind::new("verify").unwrap();
        assert_eq!(
            run_history(&repo, &s, "verify").await.unwrap(),
            RunHistory::default()
        );
        let rec = |finished, status, set| Verify {
            started: "2026-12-01T10:00:00Z",
            finished,
            duration_seconds: 2.5,
            status,
            set,
        };
        repo.put_record(&s, &kind, &rec("2026-12-01T10:00:02.5Z", "ok", None))
            .await
            .unwrap();
        repo.put_record(
            &s,
            &kind,
            &rec("2026-12-02T10:00:00Z", "ok", Some("20261201-100000F")),
        )
        .await
        .unwrap();
        repo.put_record(&s, &kind, &rec("2026-12-03T10:00:00Z", "damaged", None))
            .await
            .unwrap();
        let h = run_history(&repo, &s, "verify").await.unwrap();
        let last = h.last.unwrap();
        assert!(!last.success);
        assert_eq!(last.finished.to_string(), "2026-12-03T10:00:00Z");
        let ok = h.last_success.unwrap();
        assert!(ok.success && ok.whole_stanza);
        assert_eq!(ok.finished.to_string(), "2026-12-01T10:00:02.5Z");
        assert_eq!(ok.duration_seconds, Some(2.5));
    }

    #[test]
    fn outcome_words_and_booleans() {
        let f = |json: &str| {
            serde_json::from_str::<RunFields>(json)
                .unwrap()
                .outcome("20261201T101500.000000Z-00000000")
        };
        assert!(f(r#"{"status":"succeeded"}"#).unwrap().success);
        assert!(
            !f(r#"{"status":"failed","error":"no row"}"#)
                .unwrap()
                .success
        );
        assert!(
            f(r#"{"success":true,"finished_at":"2026-12-01T10:00:00Z"}"#)
                .unwrap()
                .success
        );
        // No finish time: the key's stamp dates it.
        assert_eq!(
            f(r#"{"status":"ok"}"#).unwrap().finished.to_string(),
            "2026-12-01T10:15:00Z"
        );
    }
}
