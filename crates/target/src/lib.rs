//! `cairn-target`: where PostgreSQL's recovery should stop, what it does there, and which
//! timeline it follows, as typed values. The restore planner (`cairn-planner`) decides
//! whether a [`RecoveryTarget`] can be reached; the restore executor (`cairn-restore`)
//! writes it into `postgresql.auto.conf`. Both take these types, so no target crosses a
//! crate boundary as text.
//!
//! Parsing follows the operator's command line: a time must carry an explicit offset (a
//! bare time would silently mean the server's time zone), a restore point name must fit
//! PostgreSQL's limit.
//!
//! ```
//! use cairn_target::{RecoveryTarget, RestorePointName, TargetAction, TargetTime, TimelineTarget};
//! let t: TargetTime = "2026-11-22 14:05:00+01".parse().unwrap();
//! assert_eq!(t.at.unix_timestamp(), 1_795_352_700);
//! assert!("2026-11-22 14:05:00".parse::<TargetTime>().is_err()); // no offset: refused
//! let target = RecoveryTarget::Time(t);
//! assert_eq!(target.to_string(), "time 2026-11-22T13:05:00Z (2026-11-22T14:05:00+01:00)");
//! assert_eq!("promote".parse::<TargetAction>().unwrap(), TargetAction::Promote);
//! assert_eq!("latest".parse::<TimelineTarget>().unwrap(), TimelineTarget::Latest);
//! assert!(RestorePointName::new(&"x".repeat(64)).is_err()); // PostgreSQL allows 63 bytes
//! ```

mod error;
mod target;
mod target_time;

pub use error::TargetError;
pub use target::{RecoveryTarget, RestorePointName, TargetAction, TimelineTarget};
pub use target_time::TargetTime;
