//! The connector's YAML config, in the shape cloudflared users know.
//!
//! ```yaml
//! tunnel: my-tunnel
//! credentials-file: /path/to/creds.json
//! originRequest:
//!   connectTimeout: 10s
//! ingress:
//!   - hostname: app.example.com
//!     path: ^/api/
//!     service: http://127.0.0.1:8000
//!     originRequest:
//!       httpHostHeader: internal.example
//!   - service: http_status:404
//! ```
//!
//! Unlike cloudflared, an unknown key is an error: a misspelt setting that is silently
//! ignored costs more than a refusal. Keys that cloudflared knows and adit does not
//! implement yet are accepted with a warning, so an existing config still loads.
//!
//! The text is read into a YAML value tree and walked by hand rather than through serde
//! derives, so that every error can say which rule and which key is at fault.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml_ng::{Mapping, Value};

use super::ingress::{self, Ingress, IngressError, OriginSettings, Rule};

/// A loaded and validated config.
#[derive(Debug)]
pub struct Config {
    pub tunnel: Option<String>,
    pub credentials_file: Option<PathBuf>,
    pub ingress: Ingress,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid YAML for adit: {message}")]
    Parse { path: PathBuf, message: String },
    /// Valid YAML, but a top-level key or value adit refuses.
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    // Transparent, so that a report of the error chain does not print the message twice.
    #[error(transparent)]
    Ingress(#[from] super::ingress::IngressError),
}

/// Top-level keys of cloudflared's config that adit accepts and ignores.
const IGNORED_KEYS: &[&str] = &[
    "warp-routing",
    "protocol",
    "loglevel",
    "transport-loglevel",
    "logfile",
    "log-directory",
    "metrics",
    "no-autoupdate",
    "autoupdate-freq",
    "grace-period",
    "edge-ip-version",
    "edge-bind-address",
    "region",
    "retries",
    "pidfile",
    "tag",
    "origincert",
    "post-quantum",
];

/// `originRequest` keys of cloudflared that adit accepts and ignores.
const IGNORED_ORIGIN_KEYS: &[&str] = &[
    "tcpKeepAlive",
    "noHappyEyeballs",
    "proxyType",
    "disableChunkedEncoding",
    "http2Origin",
    "access",
    "bastionMode",
    "proxyAddress",
    "proxyPort",
    "tlsTimeout",
    "matchSNItoHost",
    "ipRules",
];

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text (`path` only names it in errors).
    ///
    /// Relative paths in the config (`credentials-file`, `caPool`) are resolved against the
    /// directory of `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let parse_error = |err: serde_yaml_ng::Error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: err.to_string(),
        };
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let base = path.parent().unwrap_or(Path::new(""));

        let mut value: Value = serde_yaml_ng::from_str(text).map_err(parse_error)?;
        value.apply_merge().map_err(parse_error)?;
        let top = match value {
            Value::Null => Mapping::new(),
            Value::Mapping(map) => map,
            other => {
                return Err(invalid(format!(
                    "the config must be a mapping of keys to values, found {}",
                    kind(&other)
                )))
            }
        };

        let mut tunnel = None;
        let mut credentials_file = None;
        let mut defaults = OriginOverrides::default();
        let mut rules = Vec::new();
        for (key, value) in top {
            match key_str(&key).map_err(invalid)? {
                "tunnel" => tunnel = optional_string(value, "tunnel").map_err(invalid)?,
                "credentials-file" => {
                    credentials_file = optional_string(value, "credentials-file")
                        .map_err(invalid)?
                        .map(|file| base.join(file));
                }
                "originRequest" => {
                    defaults = OriginOverrides::parse(value, base, None).map_err(invalid)?;
                }
                "ingress" => {
                    rules = match value {
                        Value::Null => Vec::new(),
                        Value::Sequence(rules) => rules,
                        other => {
                            let found = kind(&other);
                            return Err(invalid(format!(
                                "ingress: expected a list, found {found}"
                            )));
                        }
                    };
                }
                key if IGNORED_KEYS.contains(&key) => {
                    tracing::warn!(key, "config key is not supported by adit and is ignored");
                }
                key => return Err(invalid(format!("unknown key {key:?}"))),
            }
        }

        if tunnel.as_deref() == Some("") {
            return Err(invalid("tunnel may not be empty".to_owned()));
        }
        if rules.is_empty() {
            return Err(invalid("config has no ingress rules".to_owned()));
        }

        let defaults = defaults.apply(&OriginSettings::default());
        let rules = rules
            .into_iter()
            .enumerate()
            .map(|(index, rule)| parse_rule(rule, index + 1, &defaults, base))
            .collect::<Result<Vec<Rule>, IngressError>>()?;
        ingress::check_rule_order(&rules)?;

        Ok(Config {
            tunnel,
            credentials_file,
            ingress: Ingress { rules },
        })
    }
}

/// One entry of `ingress`; `number` is 1-based.
fn parse_rule(
    value: Value,
    number: usize,
    defaults: &OriginSettings,
    base: &Path,
) -> Result<Rule, IngressError> {
    let error = |message: String| IngressError {
        rule: number,
        message,
    };
    let map = match value {
        Value::Mapping(map) => map,
        other => {
            let found = kind(&other);
            return Err(error(format!(
                "expected a mapping with a service, found {found}"
            )));
        }
    };

    let mut hostname = None;
    let mut path = None;
    let mut service = None;
    let mut origin = defaults.clone();
    for (key, value) in map {
        match key_str(&key).map_err(error)? {
            "hostname" => {
                if let Some(text) = optional_string(value, "hostname").map_err(error)? {
                    hostname = ingress::parse_hostname(&text).map_err(error)?;
                }
            }
            "path" => {
                if let Some(text) = optional_string(value, "path").map_err(error)? {
                    path = Some(ingress::parse_path(&text).map_err(error)?);
                }
            }
            "service" => service = optional_string(value, "service").map_err(error)?,
            "originRequest" => {
                let overrides = OriginOverrides::parse(value, base, Some(number)).map_err(error)?;
                origin = overrides.apply(defaults);
            }
            key => {
                return Err(error(format!(
                    "unknown key {key:?} (a rule has hostname, path, service and originRequest)"
                )))
            }
        }
    }

    let service = service.ok_or_else(|| error("the rule has no service".to_owned()))?;
    let service = ingress::parse_service(&service).map_err(error)?;
    Ok(Rule {
        hostname,
        path,
        service,
        origin,
    })
}

/// The `originRequest` keys one mapping sets; the rest come from the level above.
#[derive(Debug, Default)]
struct OriginOverrides {
    connect_timeout: Option<Duration>,
    keep_alive_connections: Option<usize>,
    keep_alive_timeout: Option<Duration>,
    http_host_header: Option<String>,
    no_tls_verify: Option<bool>,
    origin_server_name: Option<String>,
    response_timeout: Option<Duration>,
    ca_pool: Option<PathBuf>,
}

impl OriginOverrides {
    /// `rule` is the 1-based rule number, or `None` for the top-level defaults.
    fn parse(value: Value, base: &Path, rule: Option<usize>) -> Result<Self, String> {
        let map = match value {
            Value::Null => return Ok(OriginOverrides::default()),
            Value::Mapping(map) => map,
            other => {
                return Err(format!(
                    "originRequest: expected a mapping, found {}",
                    kind(&other)
                ))
            }
        };

        let mut overrides = OriginOverrides::default();
        for (key, value) in map {
            let key = key_str(&key)?;
            // A key left empty (`connectTimeout:`) keeps the value from the level above.
            if value == Value::Null {
                continue;
            }
            match key {
                "connectTimeout" => {
                    overrides.connect_timeout = Some(nonzero_duration(&value, key)?);
                }
                "keepAliveConnections" => {
                    overrides.keep_alive_connections = Some(count(&value, key)?);
                }
                "keepAliveTimeout" => overrides.keep_alive_timeout = Some(duration(&value, key)?),
                "httpHostHeader" => {
                    let header = string(value, key)?;
                    ingress::check_host_header(&header)
                        .map_err(|reason| format!("originRequest.{key}: {reason}"))?;
                    overrides.http_host_header = Some(header);
                }
                "noTLSVerify" => overrides.no_tls_verify = Some(boolean(&value, key)?),
                "originServerName" => {
                    overrides.origin_server_name = Some(non_empty_string(value, key)?);
                }
                "responseTimeout" => {
                    overrides.response_timeout = Some(nonzero_duration(&value, key)?);
                }
                "caPool" => overrides.ca_pool = Some(base.join(non_empty_string(value, key)?)),
                key if IGNORED_ORIGIN_KEYS.contains(&key) => {
                    tracing::warn!(
                        key,
                        rule,
                        "originRequest key is not supported by adit and is ignored"
                    );
                }
                key => return Err(format!("unknown originRequest key {key:?}")),
            }
        }
        Ok(overrides)
    }

    /// `base` with the keys set here replaced.
    fn apply(&self, base: &OriginSettings) -> OriginSettings {
        OriginSettings {
            connect_timeout: self.connect_timeout.unwrap_or(base.connect_timeout),
            keep_alive_connections: self
                .keep_alive_connections
                .unwrap_or(base.keep_alive_connections),
            keep_alive_timeout: self.keep_alive_timeout.unwrap_or(base.keep_alive_timeout),
            http_host_header: self
                .http_host_header
                .clone()
                .or(base.http_host_header.clone()),
            no_tls_verify: self.no_tls_verify.unwrap_or(base.no_tls_verify),
            origin_server_name: self
                .origin_server_name
                .clone()
                .or(base.origin_server_name.clone()),
            response_timeout: self.response_timeout.unwrap_or(base.response_timeout),
            ca_pool: self.ca_pool.clone().or(base.ca_pool.clone()),
        }
    }
}

/// What a YAML value is, for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn key_str(key: &Value) -> Result<&str, String> {
    match key {
        Value::String(key) => Ok(key),
        other => Err(format!("keys must be strings, found {}", kind(other))),
    }
}

/// A string value; a number is taken as written, since `tunnel: 2024` is a name too.
fn optional_string(value: Value, key: &str) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text)),
        Value::Number(number) => Ok(Some(number.to_string())),
        other => Err(format!("{key}: expected a string, found {}", kind(&other))),
    }
}

/// A required `originRequest` string.
fn string(value: Value, key: &str) -> Result<String, String> {
    optional_string(value, key)
        .map_err(|err| format!("originRequest.{err}"))?
        .ok_or_else(|| format!("originRequest.{key}: expected a string, found nothing"))
}

fn non_empty_string(value: Value, key: &str) -> Result<String, String> {
    let text = string(value, key)?;
    if text.is_empty() {
        return Err(format!("originRequest.{key} may not be empty"));
    }
    Ok(text)
}

fn boolean(value: &Value, key: &str) -> Result<bool, String> {
    match value {
        Value::Bool(flag) => Ok(*flag),
        other => Err(format!(
            "originRequest.{key}: expected true or false, found {}",
            kind(other)
        )),
    }
}

fn count(value: &Value, key: &str) -> Result<usize, String> {
    let number = match value {
        Value::Number(number) => number.as_u64().and_then(|n| usize::try_from(n).ok()),
        _ => None,
    };
    number.ok_or_else(|| format!("originRequest.{key}: expected a whole number of 0 or more"))
}

/// A humantime string ("30s", "1m30s", "500ms") or whole seconds.
fn duration(value: &Value, key: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "originRequest.{key}: expected a duration such as \"30s\", \"1m30s\" or \"500ms\", \
             or a whole number of seconds"
        )
    };
    match value {
        Value::Number(number) => number.as_u64().map(Duration::from_secs).ok_or_else(invalid),
        Value::String(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse().map(Duration::from_secs).map_err(|_| invalid())
        }
        Value::String(text) => humantime::parse_duration(text).map_err(|err| {
            format!("originRequest.{key}: {text:?} is not a duration ({err}); write e.g. 30s")
        }),
        _ => Err(invalid()),
    }
}

/// A duration where zero would make every request fail at once.
fn nonzero_duration(value: &Value, key: &str) -> Result<Duration, String> {
    let duration = duration(value, key)?;
    if duration.is_zero() {
        return Err(format!("originRequest.{key} must be more than zero"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests;
