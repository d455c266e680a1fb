//! Logging setup: `tracing` to stderr (commands) or to a size-rotated file
//! (the daemon) — text or JSON, level from `--log-level`, else `RUST_LOG`,
//! else a per-use default.
//!
//! Secrets never reach a log: spec credentials are [`crate::spec::Secret`]s
//! whose `Debug`/`Display` print `***`, and nothing here formats raw env.
//!
//! Hostile names never forge a log line: text output goes through
//! [`crate::escape::LineSafe`] (one event, one line). The log file is
//! opened without following a symlink and must be a regular file, so a
//! committed `logs/coltecd.log -> victim` cannot make the daemon append to
//! `victim` ([`open_log_file`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::escape::LineSafe;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How to log: what `--log-level`/`--log-format` ask for (the command
/// line converts into this; logging knows nothing of it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// A level or filter (`info`, `coltecd=debug`); `None`: `RUST_LOG`, else
    /// the caller's default.
    pub level: Option<String>,
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Name of the daemon's log file inside the log dir.
pub const DAEMON_LOG_FILE: &str = "coltecd.log";
/// Rotate the daemon log when it would grow past this size ...
pub const DEFAULT_MAX_BYTES: u64 = 10 << 20;
/// ... keeping this many old files (`coltecd.log.1` is the newest).
pub const DEFAULT_KEEP: usize = 3;
/// Overrides [`DEFAULT_MAX_BYTES`] (tuning, and tests that check rotation).
pub const MAX_BYTES_ENV: &str = "COLTEC_LOG_MAX_BYTES";

/// The filter from `--log-level` / `RUST_LOG`, defaulting to `default`.
pub fn filter(opts: &LogOptions, default: &str) -> EnvFilter {
    match &opts.level {
        Some(level) => EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new(default)),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
    }
}

/// Log to stderr, for interactive commands. Safe to call more than once.
pub fn init_stderr(opts: impl Into<LogOptions>) {
    let opts = opts.into();
    let builder = tracing_subscriber::fmt().with_env_filter(filter(&opts, "warn"));
    let _ = match opts.format {
        LogFormat::Json => builder.with_writer(io::stderr).json().try_init(),
        LogFormat::Text => builder
            .with_writer(SafeLines(io::stderr, true))
            .with_target(false)
            .try_init(),
    };
}

/// Log for the daemon: to `<log_dir>/coltecd.log` (rotated by size), and
/// also to stderr when `also_stderr` (foreground `run`). Default level `info`.
/// Returns the log file path.
pub fn init_daemon(
    opts: impl Into<LogOptions>,
    log_dir: &Path,
    also_stderr: bool,
) -> io::Result<PathBuf> {
    let opts = opts.into();
    let max_bytes = std::env::var(MAX_BYTES_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|v| *v > 0)
        .unwrap_or(DEFAULT_MAX_BYTES);
    let file = RotatingFile::open(log_dir, DAEMON_LOG_FILE, max_bytes, DEFAULT_KEEP)?;
    if !also_stderr {
        // Daemonized by `start`: stderr is this log; keep it so.
        file.follow_with_stderr();
    }
    let path = file.path();
    let mut layers = vec![fmt_layer(opts.format, file, false)];
    if also_stderr {
        layers.push(fmt_layer(opts.format, io::stderr, true));
    }
    let _ = tracing_subscriber::registry()
        .with(layers)
        .with(filter(&opts, "info"))
        .try_init();
    Ok(path)
}

type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

fn fmt_layer<W>(format: LogFormat, writer: W, ansi: bool) -> BoxedLayer
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer();
    match format {
        LogFormat::Json => layer.with_writer(writer).json().with_ansi(false).boxed(),
        LogFormat::Text => layer
            .with_writer(SafeLines(writer, ansi))
            .with_ansi(ansi)
            .boxed(),
    }
}

/// Makes [`LineSafe`] writers over `M`'s (keeping ESC when `.1`: the
/// formatter's own colours on a terminal).
struct SafeLines<M>(M, bool);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for SafeLines<M> {
    type Writer = LineSafe<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        LineSafe::new(self.0.make_writer(), self.1)
    }
}

/// A log file that rotates itself by size: when a write would take it past
/// `max_bytes`, `name` becomes `name.1`, `name.1` becomes `name.2`, … and
/// the oldest beyond `keep` is dropped. Each tracing event is one `write`
/// call, so a line is never split across files.
#[derive(Clone)]
pub struct RotatingFile {
    inner: Arc<Mutex<Rotating>>,
}

struct Rotating {
    dir: PathBuf,
    name: String,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: usize,
    /// Point fds 1 and 2 at the new file after rotating (a daemon whose stderr is
    /// its log, so a panic message lands in the current file).
    follow_stderr: bool,
}

impl RotatingFile {
    pub fn open(dir: &Path, name: &str, max_bytes: u64, keep: usize) -> io::Result<RotatingFile> {
        std::fs::create_dir_all(dir)?;
        let file = open_append(&dir.join(name))?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            inner: Arc::new(Mutex::new(Rotating {
                dir: dir.to_path_buf(),
                name: name.to_string(),
                file,
                size,
                max_bytes,
                keep,
                follow_stderr: false,
            })),
        })
    }

    /// After each rotation, make stderr the new file too.
    pub fn follow_with_stderr(&self) {
        match self.inner.lock() {
            Ok(mut r) => r.follow_stderr = true,
            Err(p) => p.into_inner().follow_stderr = true,
        }
    }

    pub fn path(&self) -> PathBuf {
        match self.inner.lock() {
            Ok(r) => r.dir.join(&r.name),
            Err(p) => {
                let r = p.into_inner();
                r.dir.join(&r.name)
            }
        }
    }
}

/// Open (or create, owner-only) the log file at `path` for appending,
/// without following a symlink and only if it is a regular file (a FIFO
/// would block, a device would receive the log). The error names the path
/// and what to do.
pub fn open_log_file(path: &Path) -> io::Result<File> {
    let refuse = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "refusing to log to {}: it is {what}; remove it (coltecd creates the log file itself)",
                path.display()
            ),
        )
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => refuse("a symbolic link"),
            Some(nix::libc::ENXIO) => refuse("a FIFO or socket"),
            _ => io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())),
        })?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(refuse("not a regular file"));
    }
    Ok(file)
}

fn open_append(path: &Path) -> io::Result<File> {
    open_log_file(path)
}

impl Rotating {
    fn rotate(&mut self) -> io::Result<()> {
        let base = self.dir.join(&self.name);
        let numbered = |i: usize| self.dir.join(format!("{}.{i}", self.name));
        if self.keep == 0 {
            let _ = std::fs::remove_file(&base);
        } else {
            let _ = std::fs::remove_file(numbered(self.keep));
            for i in (1..self.keep).rev() {
                let _ = std::fs::rename(numbered(i), numbered(i + 1));
            }
            std::fs::rename(&base, numbered(1))?;
        }
        self.file = open_append(&base)?;
        self.size = 0;
        if self.follow_stderr {
            nix::unistd::dup2_stderr(&self.file).map_err(io::Error::from)?;
            nix::unistd::dup2_stdout(&self.file).map_err(io::Error::from)?;
        }
        Ok(())
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            // If rotation fails (disk full, dir gone) keep logging into the
            // current file rather than losing the line.
            let _ = self.rotate();
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(buf.len())
    }
}

/// The writer handed to tracing for one event.
pub struct RotatingWriter {
    inner: Arc<Mutex<Rotating>>,
}

impl Write for RotatingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.inner.lock() {
            Ok(mut r) => r.write(buf),
            Err(p) => p.into_inner().write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for RotatingFile {
    type Writer = RotatingWriter;
    fn make_writer(&'a self) -> Self::Writer {
        RotatingWriter {
            inner: self.inner.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_a_few() {
        let tmp = tempfile::tempdir().unwrap();
        let f = RotatingFile::open(tmp.path(), "x.log", 100, 2).unwrap();
        for i in 0..20 {
            let mut w = f.make_writer();
            w.write_all(format!("line {i:03} padding padding padding\n").as_bytes())
                .unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["x.log", "x.log.1", "x.log.2"]);
        for n in &names {
            let len = std::fs::metadata(tmp.path().join(n)).unwrap().len();
            assert!(len <= 100, "{n} is {len} bytes");
        }
        let newest = std::fs::read_to_string(tmp.path().join("x.log")).unwrap();
        assert!(newest.contains("line 019"), "{newest}");
    }
}
