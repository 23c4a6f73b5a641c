//! The query log: a `tracing` layer that writes connection and statement events, and
//! warnings and errors, to files of their own, per shard.
//!
//! Sessions emit `corelay::conn` events (connect, quit) and `corelay::query` events (one
//! per statement slower than `log_query_min_time_us`, with client, user, server, backend
//! thread id, send / wait / response / total microseconds, affected rows, result bytes and
//! the SQL cut to `log_sql_max_chars`). This layer writes them, as text or JSON lines, to
//! `<log_dir>/corelay.<shard>.log`; every WARN and ERROR event goes to
//! `corelay.<shard>.log.wf` (the master's to `corelay.master.log.wf`).
//!
//! Why per shard: each file has one writer (its shard thread or process), so nothing is
//! locked or interleaved and size-based rotation (`log_max_bytes`, keeping
//! `log_keep_files` old files as `.1`, `.2`, ...) needs no coordination — the same
//! shared-nothing rule as the status slots. A shard says which it is with [`set_shard`].

pub mod redact;

use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Target of statement events.
pub const QUERY: &str = "corelay::query";
/// Target of connect and quit events.
pub const CONN: &str = "corelay::conn";

/// Where and how the log is written.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    pub json: bool,
    pub max_bytes: u64,
    pub keep_files: usize,
}

thread_local! {
    static FILES: RefCell<Option<Files>> = const { RefCell::new(None) };
    static SHARD: RefCell<Option<usize>> = const { RefCell::new(None) };
}

/// Marks the calling thread as shard `k`'s (its events go to that shard's files).
pub fn set_shard(k: usize) {
    SHARD.with(|s| *s.borrow_mut() = Some(k));
    // A forked shard inherits the master's open files: start its own.
    FILES.with(|f| *f.borrow_mut() = None);
}

/// Flushes this thread's files (the shards call it once a second and when they stop).
pub fn flush() {
    FILES.with(|f| {
        if let Some(files) = f.borrow_mut().as_mut() {
            files.log.flush();
            files.wf.flush();
        }
    });
}

/// One rotating file.
struct Rotating {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    size: u64,
    max: u64,
    keep: usize,
}

impl Rotating {
    fn new(path: PathBuf, max: u64, keep: usize) -> Rotating {
        Rotating { path, out: None, size: 0, max, keep }
    }

    fn open(&mut self) -> Option<&mut BufWriter<File>> {
        if self.out.is_none() {
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            // Readable by corelay's user alone (statements carry data), and never through a
            // symbolic link someone put in its place.
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&self.path)
                .ok()?;
            let _ = file.set_permissions(std::fs::Permissions::from_mode(0o600));
            self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
            self.out = Some(BufWriter::with_capacity(64 * 1024, file));
        }
        self.out.as_mut()
    }

    fn write_line(&mut self, line: &str) {
        if self.size + line.len() as u64 > self.max && self.size > 0 {
            self.rotate();
        }
        if let Some(out) = self.open() {
            if out.write_all(line.as_bytes()).is_ok() {
                self.size += line.len() as u64;
            }
        }
    }

    /// `name` becomes `name.1`, `name.1` becomes `name.2`, ...; the oldest goes.
    fn rotate(&mut self) {
        if let Some(mut out) = self.out.take() {
            let _ = out.flush();
        }
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            let _ = std::fs::rename(&self.path, numbered(1));
        }
        self.size = 0;
    }

    fn flush(&mut self) {
        if let Some(out) = self.out.as_mut() {
            let _ = out.flush();
        }
    }
}

struct Files {
    log: Rotating,
    wf: Rotating,
}

impl Files {
    fn new(s: &Settings, shard: Option<usize>) -> Files {
        let name = shard.map_or_else(|| "master".to_string(), |k| k.to_string());
        let base = s.dir.join(format!("corelay.{name}.log"));
        let wf = PathBuf::from(format!("{}.wf", base.display()));
        Files { log: Rotating::new(base, s.max_bytes, s.keep_files), wf: Rotating::new(wf, s.max_bytes, s.keep_files) }
    }
}

/// The layer; install it beside the console one when `log_dir` is set.
pub struct QueryLog {
    settings: Settings,
}

impl QueryLog {
    pub fn new(settings: Settings) -> QueryLog {
        QueryLog { settings }
    }

    /// Files are created on first use, in the thread that writes them.
    pub fn dir(&self) -> &Path {
        &self.settings.dir
    }
}

/// Collects an event's fields as text (`key=value`) or JSON members.
struct Fields<'a> {
    out: &'a mut String,
    json: bool,
    first: bool,
}

impl Fields<'_> {
    fn key(&mut self, name: &str) {
        if self.json {
            let _ = write!(self.out, "{}\"{name}\":", if self.first { "" } else { "," });
        } else {
            let _ = write!(self.out, "{}{name}=", if self.first { "" } else { " " });
        }
        self.first = false;
    }

    fn text(&mut self, name: &str, value: &str) {
        self.key(name);
        // Quoted (with control characters escaped) whenever a raw value could end the line
        // or look like another field.
        if self.json || value.is_empty() || value.contains([' ', '"', '=']) || value.chars().any(char::is_control) {
            json_string(self.out, value);
        } else {
            self.out.push_str(value);
        }
    }
}

fn json_string(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Visit for Fields<'_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field.name());
        let _ = write!(self.out, "{value}");
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field.name());
        let _ = write!(self.out, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field.name());
        let _ = write!(self.out, "{value}");
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field.name(), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let v = format!("{value:?}");
        self.text(field.name(), &v);
    }
}

/// An RFC 3339 UTC timestamp with microseconds.
fn timestamp(out: &mut String) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let day = crate::util::time::format_time(now.as_millis() as u64).replace(' ', "T");
    let _ = write!(out, "{day}.{:06}Z", now.subsec_micros());
}

impl<S: Subscriber> Layer<S> for QueryLog {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let target = meta.target();
        let statement = target == QUERY || target == CONN;
        let warning = *meta.level() <= Level::WARN;
        if !statement && !warning {
            return;
        }
        let json = self.settings.json;
        let mut line = String::with_capacity(256);
        if json {
            line.push_str("{\"ts\":");
            let mut ts = String::new();
            timestamp(&mut ts);
            json_string(&mut line, &ts);
            let _ = write!(line, ",\"level\":\"{}\",\"target\":", meta.level());
            json_string(&mut line, target);
            line.push(',');
        } else {
            timestamp(&mut line);
            let _ = write!(line, " {} {target} ", meta.level());
        }
        let shard = SHARD.with(|s| *s.borrow());
        let mut fields = Fields { out: &mut line, json, first: true };
        if let Some(k) = shard {
            fields.key("shard");
            let _ = write!(fields.out, "{k}");
        }
        event.record(&mut fields);
        line.push_str(if json { "}\n" } else { "\n" });
        FILES.with(|f| {
            let mut f = f.borrow_mut();
            let files = f.get_or_insert_with(|| Files::new(&self.settings, shard));
            if statement {
                files.log.write_line(&line);
            }
            if warning {
                files.wf.write_line(&line);
                files.wf.flush();
            }
            if shard.is_none() {
                // The master writes rarely: keep its files current.
                files.log.flush();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_configured_number_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Rotating::new(dir.path().join("x.log"), 100, 2);
        for i in 0..50 {
            r.write_line(&format!("line {i:04} ........\n"));
        }
        r.flush();
        let mut names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["x.log", "x.log.1", "x.log.2"]);
        for n in &names {
            assert!(std::fs::metadata(dir.path().join(n)).unwrap().len() <= 100);
        }
        assert!(std::fs::read_to_string(dir.path().join("x.log")).unwrap().contains("line 0049"));
    }

    #[test]
    fn files_are_private_and_never_written_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Rotating::new(dir.path().join("p.log"), 1 << 20, 1);
        r.write_line("one\n");
        r.flush();
        let mode = std::fs::metadata(dir.path().join("p.log")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("l.log")).unwrap();
        let mut l = Rotating::new(dir.path().join("l.log"), 1 << 20, 1);
        l.write_line("secret\n");
        l.flush();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
    }

    #[test]
    fn a_newline_in_a_text_value_cannot_forge_a_line() {
        let mut out = String::new();
        let mut f = Fields { out: &mut out, json: false, first: true };
        f.text("sql", "SELECT\nts=1");
        assert_eq!(out, r#"sql="SELECT\nts=1""#);
        let mut out = String::new();
        Fields { out: &mut out, json: false, first: true }.text("sql", "a\rb");
        assert_eq!(out, r#"sql="a\rb""#);
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        json_string(&mut s, "a\"b\\c\nd\u{1}");
        assert_eq!(s, r#""a\"b\\c\nd\u0001""#);
    }
}
