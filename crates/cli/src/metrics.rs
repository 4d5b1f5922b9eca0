//! `cairn metrics [--push URL]`: every stanza's status (cairn-status, catalog objects
//! only) in the Prometheus text format, on stdout or PUT to a Pushgateway, one group per
//! stanza: `URL/metrics/job/cairn/stanza/NAME`.

use std::process::ExitCode;
use std::time::Duration;

use cairn_config::{Config, Secret};
use cairn_exit::{ErrorKind, Failure};
use cairn_repo::{Repository, StanzaName};
use cairn_status::{Health, StanzaStatus, Thresholds, UtcTime, metrics};

/// The stanzas to report: the one asked for, else every configured one.
pub fn stanzas(cfg: &Config, stanza: Option<&str>) -> Result<Vec<StanzaName>, Failure> {
    let names: Vec<String> = match stanza {
        Some(s) => vec![cfg.stanza(Some(s))?.0.to_string()],
        None => cfg.stanzas.keys().cloned().collect(),
    };
    names
        .iter()
        .map(|n| StanzaName::new(n).map_err(|m| Failure::new(ErrorKind::Config, m)))
        .collect()
}

/// Status and health of each stanza, now.
pub async fn statuses(
    repo: &Repository,
    names: &[StanzaName],
    thresholds: &Thresholds,
) -> Result<Vec<(StanzaStatus, Health)>, Failure> {
    let now = UtcTime::now();
    let mut out = Vec::new();
    for n in names {
        let s = cairn_status::stanza_status(repo, n).await?;
        let h = s.health(thresholds, now);
        out.push((s, h));
    }
    Ok(out)
}

pub async fn run(
    cfg: &Config,
    stanza: Option<&str>,
    push: Option<&str>,
) -> Result<ExitCode, Failure> {
    let names = stanzas(cfg, stanza)?;
    let target = push.map(PushTarget::parse).transpose()?;
    let repo = cairn_startup::open_repo(cfg).await?;
    let all = statuses(&repo, &names, &Thresholds::from_config(&cfg.health)).await?;
    for (s, _) in &all {
        for w in &s.warnings {
            tracing::warn!("stanza {}: {w}", s.stanza);
        }
    }
    let Some(target) = target else {
        let pairs: Vec<(&StanzaStatus, &Health)> = all.iter().map(|(s, h)| (s, h)).collect();
        print!("{}", metrics::render(&pairs));
        return Ok(ExitCode::SUCCESS);
    };
    for (s, h) in &all {
        target.put(&s.stanza, metrics::render(&[(s, h)])).await?;
        tracing::info!(
            "pushed the metrics of stanza {} to {}",
            s.stanza,
            target.shown
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A Pushgateway: its address without credentials (for messages), and the credentials.
#[derive(Debug)]
pub struct PushTarget {
    /// The address as messages show it: no user or password.
    pub shown: String,
    user: Option<(String, Option<Secret>)>,
}

impl PushTarget {
    pub fn parse(url: &str) -> Result<PushTarget, Failure> {
        let bad = |why: &str| {
            Failure::new(ErrorKind::Usage, format!("--push: {why}"))
                .with_hint("give the Pushgateway's address, e.g. --push http://127.0.0.1:9091")
        };
        let mut base = reqwest::Url::parse(url).map_err(|_| bad("not a URL"))?;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(bad("the URL must be http:// or https:// with a host"));
        }
        let user = (!base.username().is_empty()).then(|| {
            (
                base.username().to_string(),
                base.password().map(Secret::new),
            )
        });
        let _ = base.set_username("");
        let _ = base.set_password(None);
        base.set_query(None);
        base.set_fragment(None);
        let shown = base.as_str().trim_end_matches('/').to_string();
        Ok(PushTarget { shown, user })
    }

    /// Where one stanza's group goes.
    pub fn group_url(&self, stanza: &StanzaName) -> String {
        format!("{}/metrics/job/cairn/stanza/{}", self.shown, stanza)
    }

    /// PUT the stanza's metrics, replacing its group.
    async fn put(&self, stanza: &StanzaName, body: String) -> Result<(), Failure> {
        let url = self.group_url(stanza);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Failure::new(ErrorKind::Internal, format!("HTTP client: {e}")))?;
        let mut req = client
            .put(&url)
            .header(reqwest::header::CONTENT_TYPE, metrics::CONTENT_TYPE)
            .body(body);
        if let Some((u, p)) = &self.user {
            req = req.basic_auth(u, p.as_ref().map(Secret::expose));
        }
        let hint = "check that the Pushgateway runs and --push names it";
        let resp = req.send().await.map_err(|e| {
            // reqwest's message names the URL; this one has no credentials in it.
            let why = if e.is_timeout() {
                "timed out".to_string()
            } else if e.is_connect() {
                "cannot connect".to_string()
            } else {
                "the request failed".to_string()
            };
            Failure::new(
                ErrorKind::PushFailed,
                format!("cannot push the metrics of stanza {stanza} to {url}: {why}"),
            )
            .with_hint(hint)
        })?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            return Err(Failure::new(
                ErrorKind::PushFailed,
                format!(
                    "the Pushgateway at {} refused the metrics of stanza {stanza}: {status} {}",
                    self.shown,
                    text.chars().take(200).collect::<String>()
                ),
            )
            .with_hint(hint));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_urls_lose_their_credentials_in_messages() {
        let t = PushTarget::parse("http://ops:s3cret@gw.example:9091/?x=1").unwrap();
        assert_eq!(t.shown, "http://gw.example:9091");
        let s = StanzaName::new("main").unwrap();
        assert_eq!(
            t.group_url(&s),
            "http://gw.example:9091/metrics/job/cairn/stanza/main"
        );
        assert!(!format!("{t:?}").contains("s3cret"));
        assert_eq!(
            t.user.as_ref().unwrap().1.as_ref().unwrap().expose(),
            "s3cret"
        );
        let t = PushTarget::parse("https://gw.example/prefix/").unwrap();
        assert_eq!(
            t.group_url(&s),
            "https://gw.example/prefix/metrics/job/cairn/stanza/main"
        );
        for bad in ["gw:9091", "ftp://gw/", "not a url"] {
            let f = PushTarget::parse(bad).unwrap_err();
            assert_eq!(f.kind, ErrorKind::Usage, "{bad}");
            assert!(f.hint.is_some());
        }
    }
}
