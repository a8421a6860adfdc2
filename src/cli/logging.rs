//! Logging setup: `tracing` to standard error or to a file (`--logfile`), as text or JSON
//! lines (`--log-format`), filtered by `--loglevel`.

use std::fs::{File, OpenOptions};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

use super::LogFormat;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid --loglevel {level:?}: {message}")]
    Level { level: String, message: String },
    // The cause is part of the message and deliberately not a `source`, so that a report
    // that prints the chain (`{:#}`) does not repeat it.
    #[error("cannot open log file {}: {err}", path.display())]
    File { path: PathBuf, err: std::io::Error },
    #[error("cannot use {} as a log file: it is a directory", path.display())]
    NotAFile { path: PathBuf },
}

/// The bare words `--loglevel` takes; anything else must look like a tracing directive.
const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// Refuses a bare word that is not a level: `EnvFilter` would read `verbose` as a target
/// name and silently filter out every other line.
fn check_level(level: &str) -> Result<(), LogError> {
    let directive = level.contains('=') || level.contains("::") || level.contains(',');
    let known = LEVELS
        .iter()
        .any(|known| known.eq_ignore_ascii_case(level.trim()));
    if directive || known {
        return Ok(());
    }
    Err(LogError::Level {
        level: level.to_owned(),
        message: "expected error, warn, info, debug, trace, off or a tracing directive like \
                  info,adit::connector=debug"
            .to_owned(),
    })
}

/// Where log lines go.
#[derive(Debug)]
enum Target {
    Stderr,
    /// Opened for appending, so several runs (or a rotated file's successor) keep every line.
    File(File),
}

impl Target {
    fn open(logfile: Option<&Path>) -> Result<Target, LogError> {
        let Some(path) = logfile else {
            return Ok(Target::Stderr);
        };
        let failed = |err| LogError::File {
            path: path.to_owned(),
            err,
        };
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.is_dir() {
                return Err(LogError::NotAFile {
                    path: path.to_owned(),
                });
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(failed)?;
        // An empty write fails where every later one would (a read-only /proc file opened
        // by root, say), so the mistake shows at start-up rather than at each log line.
        std::io::Write::write(&mut file, &[]).map_err(failed)?;
        Ok(Target::File(file))
    }

    /// Colour codes only for a terminal: a file or a pipe gets plain text.
    fn ansi(&self) -> bool {
        match self {
            Target::Stderr => std::io::stderr().is_terminal(),
            Target::File(_) => false,
        }
    }

    fn into_writer(self) -> BoxMakeWriter {
        match self {
            Target::Stderr => BoxMakeWriter::new(std::io::stderr),
            // Each event is formatted whole and written with one call on an O_APPEND file,
            // so lines from different threads do not interleave.
            Target::File(file) => BoxMakeWriter::new(Arc::new(file)),
        }
    }
}

/// Installs the global subscriber; a second call (as in tests) is a no-op.
pub fn init_logging(
    level: &str,
    logfile: Option<&Path>,
    format: LogFormat,
) -> Result<(), LogError> {
    check_level(level)?;
    let filter = EnvFilter::try_new(level).map_err(|err| LogError::Level {
        level: level.to_owned(),
        message: err.to_string(),
    })?;
    let target = Target::open(logfile)?;
    let ansi = target.ansi();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(target.into_writer())
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("adit-log-{name}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn no_logfile_means_stderr() {
        let target = Target::open(None).unwrap();
        assert!(matches!(target, Target::Stderr));
        assert_eq!(target.ansi(), std::io::stderr().is_terminal());
    }

    #[test]
    fn a_logfile_is_created_then_appended_to_without_colours() {
        let dir = scratch("append");
        let path = dir.join("adit.log");
        let target = Target::open(Some(&path)).unwrap();
        assert!(!target.ansi());
        let Target::File(mut file) = target else {
            panic!("expected a file target");
        };
        std::io::Write::write_all(&mut file, b"one\n").unwrap();

        let Target::File(mut file) = Target::open(Some(&path)).unwrap() else {
            panic!("expected a file target");
        };
        std::io::Write::write_all(&mut file, b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unopenable_logfile_is_a_clear_error() {
        let dir = scratch("bad");
        let path = dir.join("missing-dir").join("adit.log");
        let err = Target::open(Some(&path)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot open log file {}: No such file or directory (os error 2)",
                path.display()
            )
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_special_file_is_refused() {
        let err = Target::open(Some(Path::new("/proc/version"))).unwrap_err();
        // Root may open it for writing, and then the first write fails instead.
        let message = err.to_string();
        assert!(
            message == "cannot open log file /proc/version: Input/output error (os error 5)"
                || message == "cannot open log file /proc/version: Permission denied (os error 13)",
            "{message}"
        );
        let err = Target::open(Some(Path::new("/proc"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot use /proc as a log file: it is a directory"
        );
        let dir = scratch("dir");
        let err = Target::open(Some(&dir)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot use {} as a log file: it is a directory",
                dir.display()
            )
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_cause_is_printed_once() {
        let path = Path::new("/nonexistent-adit-dir/adit.log");
        let err = anyhow::Error::from(Target::open(Some(path)).unwrap_err());
        assert_eq!(
            format!("{err:#}"),
            "cannot open log file /nonexistent-adit-dir/adit.log: No such file or directory \
             (os error 2)"
        );
    }

    #[test]
    fn levels_and_directives_are_accepted_and_other_bare_words_refused() {
        for good in [
            "info",
            "WARN",
            "Debug",
            "off",
            "trace",
            "error",
            "adit=debug",
        ] {
            assert!(check_level(good).is_ok(), "{good}");
        }
        for good in ["info,adit::connector=debug", "adit::connector", "warn,foo"] {
            assert!(check_level(good).is_ok(), "{good}");
        }
        for bad in ["verbose", "", "informational"] {
            let err = check_level(bad).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "invalid --loglevel {bad:?}: expected error, warn, info, debug, trace, off \
                     or a tracing directive like info,adit::connector=debug"
                )
            );
        }
    }

    #[test]
    fn a_bad_level_is_refused() {
        let err = init_logging("info,=[", None, LogFormat::Text).unwrap_err();
        assert!(matches!(err, LogError::Level { .. }), "{err}");
    }
}
