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
    #[error("cannot open log file {}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
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
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| LogError::File {
                path: path.to_owned(),
                source,
            })?;
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
    fn a_bad_level_is_refused() {
        let err = init_logging("info,=[", None, LogFormat::Text).unwrap_err();
        assert!(matches!(err, LogError::Level { .. }), "{err}");
    }
}
