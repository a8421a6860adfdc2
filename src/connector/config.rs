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

use std::path::{Path, PathBuf};

use super::ingress::Ingress;

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
    #[error("{0}")]
    Ingress(#[from] super::ingress::IngressError),
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let _ = path;
        todo!()
    }

    /// Parses and validates config text (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let _ = (text, path);
        todo!()
    }
}
