use cairn_exit::{Classify, ErrorKind};

/// A recovery target, action or timeline the operator wrote that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the time '{given}' has no UTC offset, so it is ambiguous")]
    TimeWithoutOffset { given: String },
    #[error("invalid {what} '{given}': {why}")]
    Invalid {
        what: &'static str,
        given: String,
        why: String,
    },
}

impl Classify for TargetError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Usage
    }

    fn hint(&self) -> Option<String> {
        match self {
            TargetError::TimeWithoutOffset { given } => Some(format!(
                "write the offset explicitly, e.g. '{given}+00' for UTC"
            )),
            TargetError::Invalid { .. } => None,
        }
    }
}
