//! The credentials file: what a connector needs to run a tunnel.
//!
//! Written by `adit tunnel create` with mode 0600 and never overwritten; read by
//! `adit tunnel run`. It holds the tunnel secret in the clear, like a private key.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Length of a tunnel secret in bytes.
pub const SECRET_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Credentials {
    pub tunnel_id: Uuid,
    pub tunnel_name: String,
    /// The 32-byte tunnel secret, hex-encoded.
    pub tunnel_secret: String,
    /// UDP address of the edge's tunnel listener.
    pub edge_addr: SocketAddr,
    /// PEM of the CA that signed the edge certificate.
    pub edge_ca: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read credentials file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("credentials file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("credentials file {path}: the tunnel secret must be {SECRET_LEN} hex-encoded bytes")]
    Secret { path: PathBuf },
    #[error("credentials file {path} already exists; remove it or pass another --cred-file")]
    Exists { path: PathBuf },
    #[error("cannot write credentials file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Credentials {
    /// The decoded secret, checked for length.
    pub fn secret(&self) -> Option<[u8; SECRET_LEN]> {
        let bytes = hex::decode(&self.tunnel_secret).ok()?;
        bytes.try_into().ok()
    }

    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let text = fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: path.to_owned(),
            source,
        })?;
        let creds: Credentials =
            serde_json::from_str(&text).map_err(|source| CredentialsError::Parse {
                path: path.to_owned(),
                source,
            })?;
        if creds.secret().is_none() {
            return Err(CredentialsError::Secret {
                path: path.to_owned(),
            });
        }
        Ok(creds)
    }

    /// Writes the file with mode 0600, refusing to replace an existing one.
    pub fn write_new(&self, path: &Path) -> Result<(), CredentialsError> {
        let write_err = |source| CredentialsError::Write {
            path: path.to_owned(),
            source,
        };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::AlreadyExists => CredentialsError::Exists {
                    path: path.to_owned(),
                },
                _ => write_err(source),
            })?;
        let mut text = serde_json::to_string_pretty(self).expect("credentials serialize");
        text.push('\n');
        file.write_all(text.as_bytes()).map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn write_new_is_0600_and_never_overwrites() {
        let dir = std::env::temp_dir().join(format!("adit-cred-{}", Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.json");
        let creds = Credentials {
            tunnel_id: Uuid::new_v4(),
            tunnel_name: "t".into(),
            tunnel_secret: hex::encode([7u8; SECRET_LEN]),
            edge_addr: "127.0.0.1:7844".parse().unwrap(),
            edge_ca: "PEM".into(),
        };
        creds.write_new(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            creds.write_new(&path),
            Err(CredentialsError::Exists { .. })
        ));
        assert_eq!(Credentials::load(&path).unwrap(), creds);
        assert_eq!(creds.secret(), Some([7u8; SECRET_LEN]));
        fs::remove_dir_all(&dir).unwrap();
    }
}
