//! Logging: one `tracing` subscriber per process, set up by [`crate::run`] before the
//! binary's body runs, and completed by [`crate::load_config`] once `[log]` is known.
//!
//! - Level: `--log-level`, else `-q` (warn) / `-v` (debug) / `-vv` (trace), else `[log]
//!   level`, else info. Other crates' events (storage clients, HTTP) show from warn up only:
//!   their debug output may carry request details cairn does not control.
//! - Destination: `[log] file`, else standard error; the detached async workers, whose
//!   standard error goes nowhere, default to `<spool>/log/cairn.log` instead
//!   ([`worker_log_path`]). Files are created private (0600, in a 0700 directory) and
//!   appended to.
//! - Format: `text` or `json` (`[log] format`). On standard error, text is what an
//!   operator reads in PostgreSQL's log: `cairn-archive-push: pushed ...`,
//!   `cairn: WARNING: ...`, a `hint` field on its own `HINT:` line. In a file each event is
//!   one line with time, level, program and process id; JSON is one object per line.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::Duration;

use cairn_config::{Config, LogFormat, LogLevel};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// What the command line says about logging.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogArgs {
    /// `--log-level`: wins over everything else.
    pub level: Option<LogLevel>,
    /// `-v` given this many times: debug, then trace.
    pub verbose: u8,
    /// `-q`: warnings and errors only.
    pub quiet: bool,
}

impl LogArgs {
    /// The level the command line asks for, if it asks.
    pub fn level(&self) -> Option<LogLevel> {
        if self.level.is_some() {
            return self.level;
        }
        match (self.quiet, self.verbose) {
            (true, _) => Some(LogLevel::Warn),
            (false, 0) => None,
            (false, 1) => Some(LogLevel::Debug),
            (false, _) => Some(LogLevel::Trace),
        }
    }
}

/// `--log-level`, `-v`, `-q`, as every binary takes them (`#[command(flatten)]`).
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct LogFlags {
    /// Log level: error, warn, info, debug or trace (default: [log] level, else info).
    #[arg(long, global = true, value_name = "LEVEL", value_enum)]
    pub log_level: Option<LevelArg>,
    /// More log output: -v debug, -vv trace.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Log warnings and errors only.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// A log level on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LevelArg {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogFlags {
    pub fn args(&self) -> LogArgs {
        LogArgs {
            level: self.log_level.map(|l| match l {
                LevelArg::Error => LogLevel::Error,
                LevelArg::Warn => LogLevel::Warn,
                LevelArg::Info => LogLevel::Info,
                LevelArg::Debug => LogLevel::Debug,
                LevelArg::Trace => LogLevel::Trace,
            }),
            verbose: self.verbose,
            quiet: self.quiet,
        }
    }
}

/// Where a process logs unless `[log] file` says otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogRole {
    /// A command or a call PostgreSQL makes: standard error.
    #[default]
    Command,
    /// A detached worker with no standard error: the spool's log file.
    Worker,
}

/// The log file of the async workers: `[log] file`, else `<spool>/log/cairn.log`.
pub fn worker_log_path(cfg: &Config) -> PathBuf {
    cfg.log
        .file
        .clone()
        .unwrap_or_else(|| cfg.archive.spool_path.join("log").join("cairn.log"))
}

/// A default log under the spool is started afresh (the old one kept as `.1`) past this.
const ROTATE_AT: u64 = 32 << 20;

enum Dest {
    Stderr,
    File(File),
}

struct Sink {
    program: String,
    format: LogFormat,
    dest: Dest,
    path: Option<PathBuf>,
}

struct State {
    sink: Mutex<Sink>,
    /// The level for cairn's own events, as `LogLevel as u8`.
    level: AtomicU8,
    args: LogArgs,
    role: LogRole,
}

static STATE: OnceLock<State> = OnceLock::new();
static WARNINGS: Once = Once::new();

fn level_u8(l: LogLevel) -> u8 {
    l as u8
}

fn event_level(l: &Level) -> LogLevel {
    match *l {
        Level::ERROR => LogLevel::Error,
        Level::WARN => LogLevel::Warn,
        Level::INFO => LogLevel::Info,
        Level::DEBUG => LogLevel::Debug,
        Level::TRACE => LogLevel::Trace,
    }
}

/// Set up logging to standard error at the command line's level (info by default).
/// Called once per process, by [`crate::run`]; later calls change nothing.
pub(crate) fn init(program: &str, args: LogArgs, role: LogRole) {
    let mut fresh = false;
    let state = STATE.get_or_init(|| {
        fresh = true;
        State {
            sink: Mutex::new(Sink {
                program: program.to_string(),
                format: LogFormat::Text,
                dest: Dest::Stderr,
                path: None,
            }),
            level: AtomicU8::new(level_u8(args.level().unwrap_or(LogLevel::Info))),
            args,
            role,
        }
    });
    if fresh {
        // Another subscriber already set (a test harness): leave it.
        let _ = tracing_subscriber::registry().with(CairnLayer).try_init();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            tracing::error!("panic: {info}");
            previous(info);
        }));
    }
    let _ = state;
}

/// Apply `[log]`: level (unless the command line set one), format, and the file (a
/// worker's default one under the spool). Then print the configuration's warnings, once
/// per process. A log file that cannot be opened is said on standard error, and logging
/// stays there.
pub(crate) fn configure(cfg: &Config) {
    let Some(state) = STATE.get() else {
        return;
    };
    let level = state.args.level().unwrap_or(cfg.log.level);
    state.level.store(level_u8(level), Ordering::Relaxed);
    let path = match (&cfg.log.file, state.role) {
        (Some(p), _) => Some((p.clone(), false)),
        (None, LogRole::Worker) => Some((worker_log_path(cfg), true)),
        (None, LogRole::Command) => None,
    };
    let opened = path.map(|(p, ours)| (open_log(&p, ours).map(|f| (f, p.clone())), p));
    {
        let mut sink = state.sink.lock().unwrap_or_else(|e| e.into_inner());
        sink.format = cfg.log.format;
        match opened {
            Some((Ok((file, p)), _)) => {
                sink.dest = Dest::File(file);
                sink.path = Some(p);
            }
            Some((Err(e), p)) => {
                sink.dest = Dest::Stderr;
                sink.path = None;
                drop(sink);
                tracing::warn!(
                    hint = "check [log] file and that cairn may write there",
                    "cannot open the log file {}: {e}; logging to standard error",
                    p.display()
                );
            }
            None => {
                sink.dest = Dest::Stderr;
                sink.path = None;
            }
        }
    }
    WARNINGS.call_once(|| {
        for w in &cfg.warnings {
            tracing::warn!(hint = %w.hint(), "{w}");
        }
    });
}

/// Whether events go to a file (so a failure must be logged as well as printed).
pub(crate) fn logs_to_file() -> bool {
    STATE.get().is_some_and(|s| {
        matches!(
            s.sink.lock().unwrap_or_else(|e| e.into_inner()).dest,
            Dest::File(_)
        )
    })
}

/// Open a log file for appending, private; `ours` (the default under the spool): create
/// its directory privately and start afresh past [`ROTATE_AT`].
fn open_log(path: &Path, ours: bool) -> io::Result<File> {
    if ours {
        if let Some(dir) = path.parent() {
            cairn_spool::create_private_dir(dir)?;
        }
        if std::fs::metadata(path).is_ok_and(|m| m.len() > ROTATE_AT) {
            let mut old = path.as_os_str().to_owned();
            old.push(".1");
            let _ = std::fs::rename(path, PathBuf::from(old));
        }
    }
    File::options()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// The one layer: filters by level and writes each event whole.
struct CairnLayer;

fn is_ours(target: &str) -> bool {
    target.starts_with("cairn")
}

fn allowed(meta: &Metadata<'_>) -> bool {
    let Some(state) = STATE.get() else {
        return false;
    };
    let max = if is_ours(meta.target()) {
        state.level.load(Ordering::Relaxed)
    } else {
        level_u8(LogLevel::Warn).min(state.level.load(Ordering::Relaxed))
    };
    level_u8(event_level(meta.level())) <= max
}

#[derive(Default)]
struct Fields {
    message: String,
    hint: Option<String>,
    rest: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "hint" => self.hint = (!value.is_empty()).then(|| value.to_string()),
            name => self.rest.push((name, value.to_string())),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "hint" => self.hint = Some(format!("{value:?}")),
            name => self.rest.push((name, format!("{value:?}"))),
        }
    }
}

fn now_text() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

fn level_word(l: LogLevel) -> &'static str {
    match l {
        LogLevel::Error => "ERROR",
        LogLevel::Warn => "WARNING",
        LogLevel::Info => "INFO",
        LogLevel::Debug => "DEBUG",
        LogLevel::Trace => "TRACE",
    }
}

fn quote(v: &str) -> String {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
        v.to_string()
    } else {
        format!("{v:?}")
    }
}

/// One event as it is written (with its final newline).
fn render(sink: &Sink, level: LogLevel, target: &str, f: &Fields, to_file: bool) -> String {
    let message = f.message.replace('\n', " ");
    match sink.format {
        LogFormat::Json => {
            let mut obj = serde_json::Map::new();
            obj.insert("time".into(), now_text().into());
            obj.insert("level".into(), level.as_str().into());
            obj.insert("program".into(), sink.program.clone().into());
            obj.insert("pid".into(), std::process::id().into());
            obj.insert("target".into(), target.into());
            obj.insert("message".into(), message.into());
            if let Some(h) = &f.hint {
                obj.insert("hint".into(), h.clone().into());
            }
            for (k, v) in &f.rest {
                obj.insert((*k).into(), v.clone().into());
            }
            let mut line = serde_json::Value::Object(obj).to_string();
            line.push('\n');
            line
        }
        LogFormat::Text => {
            let mut line = if to_file {
                format!(
                    "{} {:<7} {}[{}]: {message}",
                    now_text(),
                    level_word(level),
                    sink.program,
                    std::process::id()
                )
            } else {
                let word = match level {
                    LogLevel::Info => String::new(),
                    l => format!("{}: ", level_word(l)),
                };
                format!("{}: {word}{message}", sink.program)
            };
            for (k, v) in &f.rest {
                let _ = write!(line, " {k}={}", quote(v));
            }
            match (&f.hint, to_file) {
                (Some(h), true) => {
                    let _ = write!(line, " (HINT: {h})");
                }
                (Some(h), false) => {
                    let _ = write!(line, "\nHINT: {h}");
                }
                (None, _) => {}
            }
            line.push('\n');
            line
        }
    }
}

impl<S: Subscriber> Layer<S> for CairnLayer {
    fn register_callsite(
        &self,
        _meta: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        // The level changes once the configuration is read: ask every time.
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, meta: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        allowed(meta)
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if !allowed(meta) {
            return;
        }
        let Some(state) = STATE.get() else {
            return;
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut sink = state.sink.lock().unwrap_or_else(|e| e.into_inner());
        let to_file = matches!(sink.dest, Dest::File(_));
        let line = render(
            &sink,
            event_level(meta.level()),
            meta.target(),
            &fields,
            to_file,
        );
        let written = match &mut sink.dest {
            Dest::File(f) => f.write_all(line.as_bytes()),
            Dest::Stderr => io::stderr().lock().write_all(line.as_bytes()),
        };
        // A full disk must not take the command down; say it where someone may see it.
        if let Err(e) = written
            && let Some(p) = &sink.path
        {
            let _ = writeln!(io::stderr(), "cairn: cannot write {}: {e}", p.display());
        }
    }
}

/// Errors found in a log file's recent lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentErrors {
    pub path: PathBuf,
    pub count: usize,
    /// The newest error line, as written.
    pub last: String,
}

/// How far back into a log file [`recent_errors`] reads.
const TAIL: u64 = 256 << 10;

/// Errors logged at `path` (text or JSON lines cairn wrote) within `window` before now;
/// `None` when there are none or the file does not exist.
pub fn recent_errors(path: &Path, window: Duration) -> io::Result<Option<RecentErrors>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let since = time::OffsetDateTime::now_utc() - window;
    let mut found: Option<RecentErrors> = None;
    for line in text.lines() {
        let Some((at, is_error)) = parse_line(line) else {
            continue;
        };
        if is_error && at >= since {
            let f = found.get_or_insert(RecentErrors {
                path: path.to_path_buf(),
                count: 0,
                last: String::new(),
            });
            f.count += 1;
            f.last = line.to_string();
        }
    }
    Ok(found)
}

/// The time and whether it is an error, of one line cairn wrote to a file.
fn parse_line(line: &str) -> Option<(time::OffsetDateTime, bool)> {
    use time::format_description::well_known::Rfc3339;
    if line.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let at = time::OffsetDateTime::parse(v.get("time")?.as_str()?, &Rfc3339).ok()?;
        return Some((at, v.get("level")?.as_str()? == "error"));
    }
    let mut words = line.split_whitespace();
    let at = time::OffsetDateTime::parse(words.next()?, &Rfc3339).ok()?;
    Some((at, words.next()? == "ERROR"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(format: LogFormat) -> Sink {
        Sink {
            program: "cairn-archive-push".into(),
            format,
            dest: Dest::Stderr,
            path: None,
        }
    }

    fn fields(message: &str, hint: Option<&str>) -> Fields {
        Fields {
            message: message.into(),
            hint: hint.map(str::to_string),
            rest: vec![("segment", "000000010000000000000003".into())],
        }
    }

    #[test]
    fn stderr_text_reads_like_the_commands_own_lines() {
        let s = sink(LogFormat::Text);
        let f = fields("pushed it", None);
        assert_eq!(
            render(&s, LogLevel::Info, "cairn", &f, false),
            "cairn-archive-push: pushed it segment=000000010000000000000003\n"
        );
        let f = fields("slow", Some("look at the store"));
        assert_eq!(
            render(&s, LogLevel::Warn, "cairn", &f, false),
            "cairn-archive-push: WARNING: slow segment=000000010000000000000003\nHINT: look at the store\n"
        );
    }

    #[test]
    fn file_lines_are_dated_one_per_event_and_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log/cairn.log");
        let mut file = open_log(&path, true).unwrap();
        let s = sink(LogFormat::Text);
        let err = render(
            &s,
            LogLevel::Error,
            "cairn",
            &fields("broke\nbadly", Some("fix")),
            true,
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(" ERROR   cairn-archive-push["), "{err}");
        file.write_all(err.as_bytes()).unwrap();
        file.write_all(render(&s, LogLevel::Info, "cairn", &fields("fine", None), true).as_bytes())
            .unwrap();
        let js = sink(LogFormat::Json);
        let line = render(
            &js,
            LogLevel::Error,
            "cairn",
            &fields("json broke", None),
            true,
        );
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["message"], "json broke");
        assert_eq!(v["segment"], "000000010000000000000003");
        file.write_all(line.as_bytes()).unwrap();
        let found = recent_errors(&path, Duration::from_secs(60))
            .unwrap()
            .unwrap();
        assert_eq!(found.count, 2);
        assert!(found.last.contains("json broke"));
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert!(
            recent_errors(&dir.path().join("none"), Duration::from_secs(60))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn command_line_levels() {
        let a = |level, verbose, quiet| LogArgs {
            level,
            verbose,
            quiet,
        };
        assert_eq!(a(None, 0, false).level(), None);
        assert_eq!(a(None, 0, true).level(), Some(LogLevel::Warn));
        assert_eq!(a(None, 1, false).level(), Some(LogLevel::Debug));
        assert_eq!(a(None, 3, false).level(), Some(LogLevel::Trace));
        assert_eq!(
            a(Some(LogLevel::Error), 2, false).level(),
            Some(LogLevel::Error)
        );
    }
}
