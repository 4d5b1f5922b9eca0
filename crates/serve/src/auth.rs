//! The API's bearer token: read once from `[serve] token-file`, compared in constant time
//! (both sides hashed, then the hashes compared with BLAKE3's constant-time equality, so
//! neither content nor length leaks through timing), never logged or shown.

use std::fmt;
use std::path::Path;

/// The token `/api/*` requires. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct Token(blake3::Hash);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

/// Why the token file cannot be used. Never holds the file's content.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read [serve] token-file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("[serve] token-file {path} is empty")]
    Empty { path: String },
    #[error("[serve] token-file {path} holds more than one line")]
    Lines { path: String },
}

impl Token {
    /// The token is the file's one line, without surrounding white space.
    pub fn from_file(path: &Path) -> Result<Token, TokenError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: shown.clone(),
            source,
        })?;
        Token::from_text(&text).map_err(|e| match e {
            TokenError::Empty { .. } => TokenError::Empty { path: shown },
            TokenError::Lines { .. } => TokenError::Lines { path: shown },
            other => other,
        })
    }

    fn from_text(text: &str) -> Result<Token, TokenError> {
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Empty {
                path: String::new(),
            });
        }
        if token.lines().count() > 1 {
            return Err(TokenError::Lines {
                path: String::new(),
            });
        }
        Ok(Token(blake3::hash(token.as_bytes())))
    }

    /// Whether an `Authorization` header value is `Bearer <this token>`.
    pub fn admits(&self, header: Option<&[u8]>) -> bool {
        let Some(given) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        // blake3::Hash's == is constant-time.
        blake3::hash(given.trim_ascii()) == self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let t = Token::from_text("s3cret-token\n").unwrap();
        assert!(t.admits(Some(b"Bearer s3cret-token")));
        assert!(!t.admits(None));
        assert!(!t.admits(Some(b"Bearer s3cret-toke")));
        assert!(!t.admits(Some(b"Bearer s3cret-token-and-more")));
        assert!(!t.admits(Some(b"Basic s3cret-token")));
        assert!(!t.admits(Some(b"s3cret-token")));
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn an_empty_or_unreadable_file_is_refused_without_its_content() {
        let dir = std::env::temp_dir().join(format!("cairn-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, " \n").unwrap();
        let e = Token::from_file(&empty).unwrap_err().to_string();
        assert!(e.contains("is empty") && e.contains("empty"), "{e}");
        let two = dir.join("two");
        std::fs::write(&two, "line-one\nline-two\n").unwrap();
        let e = Token::from_file(&two).unwrap_err().to_string();
        assert!(!e.contains("line-one"), "{e}");
        assert!(Token::from_file(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
