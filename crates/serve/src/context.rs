//! What every part of `cairn serve` shares: the configuration, the open repository, the
//! jobs, the API token and the shutdown signals.

use std::sync::Arc;

use cairn_config::{Config, StanzaConfig};
use cairn_exit::{ErrorKind, Failure};
use cairn_repo::{Repository, StanzaName};
use tokio::sync::watch;

use crate::auth::Token;
use crate::queue::Jobs;

#[derive(Debug)]
pub struct Context {
    pub cfg: Config,
    pub repo: Repository,
    pub jobs: Arc<Jobs>,
    /// The configured stanzas, in name order.
    pub stanzas: Vec<StanzaName>,
    /// `None`: no `[serve] token-file`, every `/api/*` request is refused.
    pub token: Option<Token>,
    /// Turns `true` when running jobs must be abandoned (the shutdown grace ran out).
    pub abandon: watch::Receiver<bool>,
}

impl Context {
    pub fn stanza_config(&self, stanza: &StanzaName) -> Result<&StanzaConfig, Failure> {
        self.cfg.stanzas.get(stanza.as_str()).ok_or_else(|| {
            Failure::new(
                ErrorKind::Stanza,
                format!("stanza '{stanza}' is not configured"),
            )
        })
    }

    /// A configured stanza by the name a request gives.
    pub fn stanza(&self, name: &str) -> Option<&StanzaName> {
        self.stanzas.iter().find(|s| s.as_str() == name)
    }
}
