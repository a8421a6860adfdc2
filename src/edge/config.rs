//! The edge's YAML config file (`adit edge --config FILE`):
//!
//! ```yaml
//! listen-http: 0.0.0.0:80
//! listen-https: 0.0.0.0:443
//! listen-tunnel: 0.0.0.0:7844
//! listen-admin: 127.0.0.1:7070
//! data-dir: /var/lib/adit
//! workers: 4
//! pin-cpus: true                  # worker i on CPU i (default false)
//! grace-period: 30s               # how long a stop waits for requests in flight
//! tls:
//!   - cert: example.com.pem       # certificate chain, leaf first
//!     key: example.com.key
//!   - cert: wildcard.example.net.pem
//!     key: wildcard.example.net.key
//! ```
//!
//! Every key is optional; command-line flags override the file, and `--tls-cert`/`--tls-key`
//! given on the command line replace the file's `tls` list. An unknown key is refused with
//! its name: a misspelt setting silently ignored costs more than a refusal. Relative paths
//! are resolved against the directory of the config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::tls::CertFiles;

/// The settings a config file gave; `None` for those it left out.
#[derive(Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EdgeFile {
    pub listen_http: Option<SocketAddr>,
    pub listen_https: Option<SocketAddr>,
    pub listen_tunnel: Option<SocketAddr>,
    pub listen_admin: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub workers: Option<usize>,
    pub pin_cpus: Option<bool>,
    #[serde(default, deserialize_with = "grace_period")]
    pub grace_period: Option<std::time::Duration>,
    #[serde(default)]
    pub tls: Vec<CertFiles>,
}

/// The grace period, written the way the flag takes it (`30s`, `1m 30s`). Serde puts no
/// location on an error made here, so the message names the key.
fn grace_period<'de, D>(de: D) -> Result<Option<std::time::Duration>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    let text = String::deserialize(de)?;
    humantime::parse_duration(&text).map(Some).map_err(|err| {
        serde::de::Error::custom(format!("grace-period: invalid duration {text:?}: {err}"))
    })
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EdgeFileError {
    #[error("cannot read edge config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("edge config file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
}

impl EdgeFile {
    /// Reads and parses the config file at `path`.
    pub fn load(path: &Path) -> Result<EdgeFile, EdgeFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| EdgeFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        EdgeFile::parse(&text, path)
    }

    /// Parses config text; `path` names it in errors, and its directory is where relative
    /// paths are resolved.
    pub fn parse(text: &str, path: &Path) -> Result<EdgeFile, EdgeFileError> {
        let parse_error = |err: serde_yaml_ng::Error| EdgeFileError::Parse {
            path: path.to_owned(),
            message: err.to_string(),
        };
        // An empty file (or one of comments only) is an empty config, not an error. The text
        // is parsed straight into the settings otherwise, so errors keep their location.
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(parse_error)?;
        let mut file = match value {
            serde_yaml_ng::Value::Null => EdgeFile::default(),
            _ => serde_yaml_ng::from_str(text).map_err(parse_error)?,
        };

        let base = path.parent().unwrap_or(Path::new(""));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(dir) = &mut file.data_dir {
            resolve(dir);
        }
        for pair in &mut file.tls {
            resolve(&mut pair.cert);
            resolve(&mut pair.key);
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses_and_paths_resolve_against_the_file() {
        let text = "listen-http: 127.0.0.1:80\nlisten-https: 127.0.0.1:443\n\
                    listen-tunnel: 127.0.0.1:7844\nlisten-admin: 127.0.0.1:7070\n\
                    data-dir: state\nworkers: 3\npin-cpus: true\ngrace-period: 1m 30s\n\
                    tls:\n  - cert: a.pem\n    key: /keys/a.key\n";
        let file = EdgeFile::parse(text, Path::new("/etc/adit/edge.yml")).unwrap();
        assert_eq!(
            file,
            EdgeFile {
                listen_http: Some("127.0.0.1:80".parse().unwrap()),
                listen_https: Some("127.0.0.1:443".parse().unwrap()),
                listen_tunnel: Some("127.0.0.1:7844".parse().unwrap()),
                listen_admin: Some("127.0.0.1:7070".parse().unwrap()),
                data_dir: Some(PathBuf::from("/etc/adit/state")),
                workers: Some(3),
                pin_cpus: Some(true),
                grace_period: Some(std::time::Duration::from_secs(90)),
                tls: vec![CertFiles {
                    cert: PathBuf::from("/etc/adit/a.pem"),
                    key: PathBuf::from("/keys/a.key"),
                }],
            }
        );
    }

    #[test]
    fn a_bad_grace_period_is_refused_with_its_text() {
        let err = EdgeFile::parse("grace-period: soon\n", Path::new("edge.yml"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "edge config file edge.yml: grace-period: invalid duration \"soon\": expected number \
             at 0"
        );
    }

    #[test]
    fn an_empty_file_is_an_empty_config() {
        let file = EdgeFile::parse("# nothing yet\n", Path::new("edge.yml")).unwrap();
        assert_eq!(file, EdgeFile::default());
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = EdgeFile::parse("listen-htp: 127.0.0.1:80\n", Path::new("edge.yml"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "edge config file edge.yml: unknown field `listen-htp`, expected one of \
             `listen-http`, `listen-https`, `listen-tunnel`, `listen-admin`, `data-dir`, \
             `workers`, `pin-cpus`, `grace-period`, `tls`"
        );

        let text = "tls:\n  - cert: a.pem\n    key: a.key\n    chain: b.pem\n";
        let err = EdgeFile::parse(text, Path::new("edge.yml"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "edge config file edge.yml: tls[0]: unknown field `chain`, expected `cert` or `key` \
             at line 4 column 5"
        );
    }
}
