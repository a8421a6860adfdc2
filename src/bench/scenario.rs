//! Benchmark scenarios: small TOML files in `loadtest/`, parsed strictly so that a typo in a
//! key is an error naming the file and the key rather than a silently different benchmark.
//! The format is documented in `loadtest/README.md`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

/// One benchmark: what load to send, how much, and how many rounds per path.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub connections: usize,
    pub workers: usize,
    pub stop: Stop,
    pub rounds: u32,
    pub timeout: Duration,
    pub load: Load,
}

/// When one round ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Duration(Duration),
    Requests(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    Http(HttpScenario),
    Tcp(TcpScenario),
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpScenario {
    pub method: String,
    pub path: String,
    /// Bytes of request body (0: none).
    pub body_size: u64,
    /// Open loop at this many requests per second; closed loop when `None`.
    pub rate: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpScenario {
    /// Messages of `size` bytes echoed one at a time; latency per round trip.
    RoundTrip {
        size: usize,
    },
    Upload,
    Download,
}

impl Scenario {
    /// Bulk transfers are measured per GiB moved, everything else per request.
    pub fn is_bulk(&self) -> bool {
        matches!(
            self.load,
            Load::Tcp(TcpScenario::Upload) | Load::Tcp(TcpScenario::Download)
        )
    }

    pub fn kind(&self) -> &'static str {
        match self.load {
            Load::Http(_) => "http",
            Load::Tcp(_) => "tcp",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: invalid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: unknown key `{key}`")]
    UnknownKey { path: PathBuf, key: String },
    #[error("{path}: missing key `{key}`")]
    Missing { path: PathBuf, key: &'static str },
    #[error("{path}: `{key}` {reason}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        reason: String,
    },
    #[error("{path}: `{key}` does not apply to {kind} scenarios")]
    NotApplicable {
        path: PathBuf,
        key: &'static str,
        kind: String,
    },
    #[error("no scenario named {name:?} in {dir}")]
    NotFound { name: String, dir: PathBuf },
}

const KEYS: &[&str] = &[
    "name",
    "description",
    "kind",
    "connections",
    "workers",
    "duration",
    "requests",
    "rounds",
    "timeout",
    "method",
    "path",
    "body_size",
    "rate",
    "mode",
    "size",
];
const HTTP_ONLY: &[&str] = &["method", "path", "body_size", "rate"];
const TCP_ONLY: &[&str] = &["mode", "size"];

/// Reads and parses one scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|error| ScenarioError::Read {
        path: path.to_owned(),
        error,
    })?;
    parse(path, &text)
}

/// Resolves command-line scenario arguments: a path (anything with a `/` or ending in
/// `.toml`) or a name in `dir`. No arguments means every `*.toml` in `dir`, by name.
pub fn resolve(dir: &Path, args: &[String]) -> Result<Vec<Scenario>, ScenarioError> {
    if args.is_empty() {
        let entries = std::fs::read_dir(dir).map_err(|error| ScenarioError::Read {
            path: dir.to_owned(),
            error,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        return files.iter().map(|p| load(p)).collect();
    }
    args.iter()
        .map(|arg| {
            if arg.contains('/') || arg.ends_with(".toml") {
                return load(Path::new(arg));
            }
            let path = dir.join(format!("{arg}.toml"));
            if !path.exists() {
                return Err(ScenarioError::NotFound {
                    name: arg.clone(),
                    dir: dir.to_owned(),
                });
            }
            load(&path)
        })
        .collect()
}

/// Parses a scenario's text; `path` names it in errors and gives the default name.
pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    let table: Table = text
        .parse()
        .map_err(|err: toml::de::Error| ScenarioError::Syntax {
            path: path.to_owned(),
            message: err.message().to_owned(),
        })?;
    let fields = Fields {
        path,
        table: &table,
    };
    if let Some(key) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(ScenarioError::UnknownKey {
            path: path.to_owned(),
            key: key.clone(),
        });
    }

    let kind = fields.string("kind")?.ok_or(ScenarioError::Missing {
        path: path.to_owned(),
        key: "kind",
    })?;
    let (load, foreign) = match kind.as_str() {
        "http" => (Load::Http(fields.http()?), TCP_ONLY),
        "tcp" => (Load::Tcp(fields.tcp()?), HTTP_ONLY),
        _ => return Err(fields.invalid("kind", "must be \"http\" or \"tcp\"")),
    };
    if let Some(key) = foreign.iter().find(|k| table.contains_key(**k)) {
        return Err(ScenarioError::NotApplicable {
            path: path.to_owned(),
            key,
            kind,
        });
    }

    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    Ok(Scenario {
        name: fields.string("name")?.or(stem).unwrap_or_default(),
        description: fields.string("description")?.unwrap_or_default(),
        connections: fields.count("connections")?.unwrap_or(8) as usize,
        workers: fields.count("workers")?.unwrap_or(1) as usize,
        stop: fields.stop()?,
        rounds: fields.count("rounds")?.unwrap_or(3).min(u32::MAX as u64) as u32,
        timeout: fields
            .duration("timeout")?
            .unwrap_or(Duration::from_secs(10)),
        load,
    })
}

/// Typed access to the keys of one file, with errors that name the file and key.
struct Fields<'a> {
    path: &'a Path,
    table: &'a Table,
}

impl Fields<'_> {
    fn invalid(&self, key: &'static str, reason: &str) -> ScenarioError {
        ScenarioError::Invalid {
            path: self.path.to_owned(),
            key,
            reason: reason.to_owned(),
        }
    }

    fn string(&self, key: &'static str) -> Result<Option<String>, ScenarioError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.invalid(key, "must be a string")),
        }
    }

    /// A positive integer.
    fn count(&self, key: &'static str) -> Result<Option<u64>, ScenarioError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(Value::Integer(n)) if *n >= 1 => Ok(Some(*n as u64)),
            Some(_) => Err(self.invalid(key, "must be a positive integer")),
        }
    }

    /// A humantime string such as "5s" or "250ms".
    fn duration(&self, key: &'static str) -> Result<Option<Duration>, ScenarioError> {
        let Some(text) = self.string(key)? else {
            return Ok(None);
        };
        match humantime::parse_duration(&text) {
            Ok(d) if !d.is_zero() => Ok(Some(d)),
            _ => Err(self.invalid(key, "must be a duration such as \"5s\" or \"500ms\"")),
        }
    }

    /// A byte count: an integer, or a string with a KiB, MiB or GiB suffix.
    fn size(&self, key: &'static str) -> Result<Option<u64>, ScenarioError> {
        let bad = || self.invalid(key, "must be a byte count such as 1024 or \"10MiB\"");
        match self.table.get(key) {
            None => Ok(None),
            Some(Value::Integer(n)) => u64::try_from(*n).map(Some).map_err(|_| bad()),
            Some(Value::String(s)) => parse_size(s).map(Some).ok_or_else(bad),
            Some(_) => Err(bad()),
        }
    }

    fn stop(&self) -> Result<Stop, ScenarioError> {
        match (self.duration("duration")?, self.count("requests")?) {
            (Some(_), Some(_)) => Err(self.invalid("requests", "cannot be set with `duration`")),
            (_, Some(n)) => Ok(Stop::Requests(n)),
            (Some(d), None) => Ok(Stop::Duration(d)),
            (None, None) => Ok(Stop::Duration(Duration::from_secs(5))),
        }
    }

    fn http(&self) -> Result<HttpScenario, ScenarioError> {
        let method = self.string("method")?.unwrap_or_else(|| "GET".to_owned());
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(self.invalid("method", "must be an uppercase HTTP method"));
        }
        let path = self.string("path")?.unwrap_or_else(|| "/".to_owned());
        if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(self.invalid("path", "must start with / and hold no spaces"));
        }
        let rate = match self.table.get("rate") {
            None => None,
            Some(Value::Float(r)) if *r > 0.0 && r.is_finite() => Some(*r),
            Some(Value::Integer(r)) if *r > 0 => Some(*r as f64),
            Some(_) => return Err(self.invalid("rate", "must be a positive number")),
        };
        Ok(HttpScenario {
            method,
            path,
            body_size: self.size("body_size")?.unwrap_or(0),
            rate,
        })
    }

    fn tcp(&self) -> Result<TcpScenario, ScenarioError> {
        let mode = self.string("mode")?.ok_or(ScenarioError::Missing {
            path: self.path.to_owned(),
            key: "mode",
        })?;
        let size = self.size("size")?;
        match (mode.as_str(), size) {
            ("round-trip", size) => Ok(TcpScenario::RoundTrip {
                size: size.unwrap_or(64).clamp(1, 16 << 20) as usize,
            }),
            ("upload" | "download", Some(_)) => {
                Err(self.invalid("size", "applies only to mode \"round-trip\""))
            }
            ("upload", None) => Ok(TcpScenario::Upload),
            ("download", None) => Ok(TcpScenario::Download),
            _ => Err(self.invalid("mode", "must be \"round-trip\", \"upload\" or \"download\"")),
        }
    }
}

fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Scenario, ScenarioError> {
        parse(Path::new("loadtest/x.toml"), text)
    }

    fn error(text: &str) -> String {
        parse_str(text).unwrap_err().to_string()
    }

    #[test]
    fn full_http_scenario() {
        let text = r#"
            name = "upload"
            description = "ten MiB up"
            kind = "http"
            method = "POST"
            path = "/sha256"
            body_size = "10MiB"
            connections = 4
            workers = 2
            duration = "3s"
            rounds = 2
            timeout = "30s"
            rate = 50
        "#;
        let scenario = parse_str(text).unwrap();
        assert_eq!(
            scenario,
            Scenario {
                name: "upload".into(),
                description: "ten MiB up".into(),
                connections: 4,
                workers: 2,
                stop: Stop::Duration(Duration::from_secs(3)),
                rounds: 2,
                timeout: Duration::from_secs(30),
                load: Load::Http(HttpScenario {
                    method: "POST".into(),
                    path: "/sha256".into(),
                    body_size: 10 << 20,
                    rate: Some(50.0),
                }),
            }
        );
        assert!(!scenario.is_bulk());
    }

    #[test]
    fn defaults_and_name_from_file() {
        let scenario = parse_str("kind = \"tcp\"\nmode = \"round-trip\"\nrequests = 300").unwrap();
        assert_eq!(scenario.name, "x");
        assert_eq!(scenario.connections, 8);
        assert_eq!(scenario.workers, 1);
        assert_eq!(scenario.rounds, 3);
        assert_eq!(scenario.stop, Stop::Requests(300));
        assert_eq!(
            scenario.load,
            Load::Tcp(TcpScenario::RoundTrip { size: 64 })
        );

        let bulk = parse_str("kind = \"tcp\"\nmode = \"upload\"").unwrap();
        assert_eq!(bulk.stop, Stop::Duration(Duration::from_secs(5)));
        assert!(bulk.is_bulk());
    }

    #[test]
    fn errors_name_file_and_key() {
        assert_eq!(
            error("kind = \"http\"\nconection = 3"),
            "loadtest/x.toml: unknown key `conection`"
        );
        assert_eq!(error("rounds = 2"), "loadtest/x.toml: missing key `kind`");
        assert_eq!(
            error("kind = \"udp\""),
            "loadtest/x.toml: `kind` must be \"http\" or \"tcp\""
        );
        assert_eq!(
            error("kind = \"tcp\""),
            "loadtest/x.toml: missing key `mode`"
        );
        assert_eq!(
            error("kind = \"tcp\"\nmode = \"upload\"\nrate = 5"),
            "loadtest/x.toml: `rate` does not apply to tcp scenarios"
        );
        assert_eq!(
            error("kind = \"http\"\nsize = 5"),
            "loadtest/x.toml: `size` does not apply to http scenarios"
        );
        assert_eq!(
            error("kind = \"tcp\"\nmode = \"download\"\nsize = 5"),
            "loadtest/x.toml: `size` applies only to mode \"round-trip\""
        );
        assert_eq!(
            error("kind = \"tcp\"\nmode = \"sideways\""),
            "loadtest/x.toml: `mode` must be \"round-trip\", \"upload\" or \"download\""
        );
    }

    #[test]
    fn value_errors() {
        assert_eq!(
            error("kind = \"http\"\nconnections = 0"),
            "loadtest/x.toml: `connections` must be a positive integer"
        );
        assert_eq!(
            error("kind = \"http\"\nworkers = \"2\""),
            "loadtest/x.toml: `workers` must be a positive integer"
        );
        assert_eq!(
            error("kind = \"http\"\nduration = \"soon\""),
            "loadtest/x.toml: `duration` must be a duration such as \"5s\" or \"500ms\""
        );
        assert_eq!(
            error("kind = \"http\"\nduration = \"1s\"\nrequests = 5"),
            "loadtest/x.toml: `requests` cannot be set with `duration`"
        );
        assert_eq!(
            error("kind = \"http\"\nbody_size = \"10MB\""),
            "loadtest/x.toml: `body_size` must be a byte count such as 1024 or \"10MiB\""
        );
        assert_eq!(
            error("kind = \"http\"\nmethod = \"get\""),
            "loadtest/x.toml: `method` must be an uppercase HTTP method"
        );
        assert_eq!(
            error("kind = \"http\"\npath = \"bytes\""),
            "loadtest/x.toml: `path` must start with / and hold no spaces"
        );
        assert_eq!(
            error("kind = \"http\"\nrate = -1.5"),
            "loadtest/x.toml: `rate` must be a positive number"
        );
        assert_eq!(
            error("kind = \"http\"\nname = 3"),
            "loadtest/x.toml: `name` must be a string"
        );
        assert!(error("kind = ").starts_with("loadtest/x.toml: invalid TOML: "));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("4KiB"), Some(4096));
        assert_eq!(parse_size("1 MiB"), Some(1 << 20));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("1MB"), None);
        assert_eq!(parse_size("MiB"), None);
    }

    #[test]
    fn shipped_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("loadtest");
        let all = resolve(&dir, &[]).unwrap();
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "concurrent-1000",
                "get-1mib",
                "open-loop-10k",
                "open-loop-p99",
                "small-get",
                "tcp-bulk",
                "tcp-echo-rtt",
                "upload-10mib"
            ]
        );
        assert_eq!(all[0].connections, 1000);
        let open = &all[2];
        assert_eq!(open.connections, 100);
        assert_eq!(
            open.load,
            Load::Http(HttpScenario {
                method: "GET".into(),
                path: "/".into(),
                body_size: 0,
                rate: Some(10_000.0),
            })
        );
        let missing = resolve(&dir, &["nope".to_owned()]).unwrap_err().to_string();
        assert_eq!(
            missing,
            format!("no scenario named \"nope\" in {}", dir.display())
        );
    }
}
