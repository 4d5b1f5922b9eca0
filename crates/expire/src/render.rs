//! The plan and the report as lines for people.

use crate::backups::DropReason;
use crate::execute::ExpireReport;
use crate::gc::Waiting;
use crate::plan::ExpirePlan;

pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

fn time(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn age(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

impl ExpirePlan {
    /// What the run does (`dry_run`: would do), one line per item.
    pub fn lines(&self, dry_run: bool) -> Vec<String> {
        let (go, goes) = if dry_run {
            ("would remove", "would go")
        } else {
            ("removing", "goes")
        };
        let mut out = Vec::new();
        let mode = match (&self.set, dry_run) {
            (Some(set), true) => format!(" (dry run, --set {set}: nothing is changed)"),
            (Some(set), false) => format!(" (--set {set})"),
            (None, true) => " (dry run: nothing is changed)".into(),
            (None, false) => String::new(),
        };
        out.push(format!("expire stanza '{}'{mode}", self.stanza));
        for w in &self.warnings {
            out.push(format!("WARNING: {w}"));
        }
        if self.no_rules && self.set.is_none() {
            out.push(
                "no [retention] rule is set: no backup and no WAL expires (garbage collection still runs)"
                    .into(),
            );
        }
        for l in &self.backups.lines {
            let what = format!(
                "{} backup {}{}{}",
                l.backup_type,
                l.label,
                if l.pinned { " (pinned)" } else { "" },
                if l.damaged { " (damaged)" } else { "" }
            );
            match &l.drop {
                None => out.push(format!("keep {what}: {}", l.reasons.join(", "))),
                Some(DropReason::Retention) => {
                    out.push(format!("{go} {what}: no retention rule keeps it"))
                }
                Some(DropReason::Set) => out.push(format!("{go} {what}: named by --set")),
                Some(DropReason::Leftover) => out.push(format!(
                    "{go} {what}: an earlier expire removed it and was interrupted"
                )),
            }
        }
        if !self.pending.is_empty() {
            out.push(format!(
                "{go} {} objects an interrupted expire had recorded as removed",
                self.pending.len()
            ));
        }
        for tl in &self.wal.timelines {
            let n = tl.count();
            let where_ = format!("WAL of db {} timeline {}", tl.db_id, tl.timeline.0);
            let Some((first, last)) = tl.first_last() else {
                out.push(format!("keep all {} files of {where_}", tl.kept_files));
                continue;
            };
            let bytes = tl.bytes();
            out.push(format!(
                "{go} {n} files of {where_} ({first} .. {last}, {} before compression); {} files stay{}",
                mib(bytes),
                tl.kept_files,
                if tl.expendable_before.0 > 0 && tl.expendable_before.0 < u64::MAX {
                    format!(", from {} on", tl.expendable_before)
                } else {
                    String::new()
                }
            ));
        }
        let gc = &self.gc;
        if let Some(why) = &gc.blocked {
            out.push(format!("garbage collection waits: {why}"));
            return out;
        }
        out.push(format!(
            "packs: {} referenced by the backups that stay ({} of chunks)",
            gc.live_packs,
            mib(gc.live_bytes)
        ));
        if !gc.condemn.is_empty() {
            out.push(format!(
                "condemn {} packs no backup references ({}); an expire at least {} later deletes them",
                gc.condemn.len(),
                mib(gc.condemned_bytes()),
                age(self.gc_grace)
            ));
        }
        if !gc.uncondemn.is_empty() {
            out.push(format!(
                "{} condemned packs are referenced again and stay",
                gc.uncondemn.len()
            ));
        }
        if !gc.delete.is_empty() {
            out.push(format!(
                "{} {} condemned packs ({})",
                if dry_run { "would delete" } else { "deleting" },
                gc.delete.len(),
                mib(gc.deleted_bytes())
            ));
        }
        for (pack, size, why) in &gc.waiting {
            let why = match why {
                Waiting::Grace { until } => format!("its grace runs until {}", time(*until)),
                Waiting::Backup { started } => format!(
                    "backup started at {} by {} may use it",
                    time(*started),
                    self.running_backup
                        .as_ref()
                        .map_or("?", |r| r.holder.as_str())
                ),
            };
            out.push(format!(
                "condemned pack {pack} ({}) stays: {why}",
                mib(*size)
            ));
        }
        for r in &gc.repack {
            out.push(format!(
                "repack pack {} ({}, {} live in {} chunks, used by {} backups): the rest {goes} once it is deleted",
                r.pack,
                mib(r.size),
                mib(r.live_bytes()),
                r.live.len(),
                r.backups.len()
            ));
        }
        let now = self.wal.bytes();
        out.push(format!(
            "frees {} of packs now and {} of packs later, and {} WAL files ({} before compression)",
            mib(gc.deleted_bytes()),
            mib(gc.condemned_bytes() + gc.repack_frees()),
            self.wal.count(),
            mib(now)
        ));
        out
    }
}

impl ExpireReport {
    /// One line saying what the run did.
    pub fn summary(&self) -> String {
        let mut parts = vec![
            format!("{} backups removed", self.backups_removed),
            format!(
                "{} WAL files removed ({} before compression)",
                self.wal_files_removed,
                mib(self.wal_bytes_removed)
            ),
            format!(
                "{} packs deleted ({})",
                self.packs_deleted,
                mib(self.pack_bytes_deleted)
            ),
            format!(
                "{} condemned ({})",
                self.packs_condemned,
                mib(self.pack_bytes_condemned)
            ),
        ];
        if self.packs_repacked > 0 || self.manifests_revised > 0 {
            parts.push(format!(
                "{} packs repacked ({} copied, {} manifests revised)",
                self.packs_repacked,
                mib(self.repack_bytes_copied),
                self.manifests_revised
            ));
        }
        if self.pending_finished > 0 {
            parts.push(format!(
                "{} deletes of an interrupted run finished",
                self.pending_finished
            ));
        }
        format!("expire done: {}", parts.join(", "))
    }
}
