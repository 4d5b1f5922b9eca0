//! Glue between `cairn-status` (the one model of a stanza's state, shared with
//! `cairn metrics` and `cairn check`) and serve's read-only views: `/healthz` and
//! `/metrics` come from it alone; the status page adds the info document for its
//! backups table and the windows drawn on its time axis.

use cairn_info::StanzaDoc;
use cairn_repo::{Repository, StanzaName};
use cairn_status::{Health, StanzaStatus, StatusError, Thresholds, UtcTime};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One stanza's status and its health against `[health]`, at one moment.
#[derive(Debug)]
pub struct Checked {
    pub status: StanzaStatus,
    pub health: Health,
}

impl Checked {
    pub async fn gather(
        repo: &Repository,
        stanza: &StanzaName,
        thresholds: &Thresholds,
        now: UtcTime,
    ) -> Result<Checked, StatusError> {
        let status = cairn_status::stanza_status(repo, stanza).await?;
        let health = status.health(thresholds, now);
        Ok(Checked { status, health })
    }

    /// The stanza as `/healthz` lists it: name, verdict, one line per reason, and the
    /// problems in full.
    pub fn healthz_entry(&self) -> Value {
        json!({
            "stanza": self.status.stanza.to_string(),
            "healthy": self.health.healthy,
            "reasons": self.health.reasons().collect::<Vec<_>>(),
            "problems": self.health.problems,
        })
    }
}

/// The `/metrics` body: exactly what `cairn metrics` prints for these stanzas.
pub fn metrics_text(all: &[Checked]) -> String {
    let pairs: Vec<(&StanzaStatus, &Health)> = all.iter().map(|c| (&c.status, &c.health)).collect();
    cairn_status::metrics::render(&pairs)
}

/// One stanza on the status page: the shared status, plus the info document (backups
/// table, drawn windows, warnings).
#[derive(Debug)]
pub struct PageStanza {
    pub checked: Checked,
    pub doc: StanzaDoc,
}

/// An RFC 3339 time, as the info document and lock heartbeats write them.
pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}
