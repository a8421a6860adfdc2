//! The edge's secrets on disk: its certificate authority, the edge certificate connectors
//! verify, and the admin API's bearer token.
//!
//! On first start the edge generates a self-signed ECDSA P-256 CA and a leaf certificate
//! for [`EDGE_SERVER_NAME`], `localhost` and 127.0.0.1 signed by it, and writes `ca.pem`,
//! `ca.key`, `edge.pem` (leaf then CA) and `edge.key`; later starts load them. The CA key is
//! kept so that a new edge certificate can be issued without invalidating every credentials
//! file, though nothing issues one yet. An operator may replace `edge.pem` and `edge.key`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::ControlError;
use crate::tunnel::EDGE_SERVER_NAME;

const TOKEN_LEN: usize = 32;

/// The edge certificate chain and key, checked to match.
pub struct EdgeIdentity {
    pub ca_pem: String,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub ca_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// Creates the data directory with mode 0700 when missing; an existing one is left as is.
pub fn data_dir(path: &Path) -> Result<(), ControlError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| ControlError::DataDir {
            path: path.to_owned(),
            source,
        })
}

/// Loads the CA and edge certificate from `dir`, generating them on first start.
pub fn edge_identity(dir: &Path) -> Result<EdgeIdentity, ControlError> {
    let ca_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca.key");
    let cert_path = dir.join("edge.pem");
    let key_path = dir.join("edge.key");

    let present = [&ca_path, &cert_path, &key_path].map(|p| p.exists());
    if present == [false; 3] {
        generate(&ca_path, &ca_key_path, &cert_path, &key_path)?;
    } else if present != [true; 3] {
        return Err(ControlError::Pki(format!(
            "{}, {} and {} must all exist or all be missing (then they are generated); \
             restore the missing ones or remove the others",
            ca_path.display(),
            cert_path.display(),
            key_path.display()
        )));
    }

    let ca_pem = read(&ca_path)?;
    let chain = CertificateDer::pem_slice_iter(read(&cert_path)?.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ControlError::Pki(format!("{}: {e}", cert_path.display())))?;
    if chain.is_empty() {
        return Err(ControlError::Pki(format!(
            "{} holds no certificate",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(read(&key_path)?.as_bytes())
        .map_err(|e| ControlError::Pki(format!("{}: {e}", key_path.display())))?;

    // Catch a mismatched or unusable pair now rather than when the tunnel listener starts.
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider).map_err(
        |e| {
            ControlError::Pki(format!(
                "{} and {} do not form a usable pair: {e}",
                cert_path.display(),
                key_path.display()
            ))
        },
    )?;

    Ok(EdgeIdentity {
        ca_pem,
        chain,
        key,
        ca_path,
        cert_path,
        key_path,
    })
}

fn generate(
    ca_path: &Path,
    ca_key_path: &Path,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), ControlError> {
    let pki = |e: rcgen::Error| ControlError::Pki(format!("generating certificates: {e}"));

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(pki)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "adit edge CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(pki)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(pki)?;
    let ca_pem = ca_cert.pem();
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let names = vec![
        EDGE_SERVER_NAME.to_owned(),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
    ];
    let mut leaf_params = CertificateParams::new(names).map_err(pki)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, EDGE_SERVER_NAME);
    leaf_params.use_authority_key_identifier_extension = true;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(pki)?;
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).map_err(pki)?;

    // Keys first: a crash in between leaves the certificates missing, which the next start
    // reports instead of silently serving a chain without its key.
    write_new(ca_key_path, &ca_key_pem, 0o600)?;
    write_new(key_path, &leaf_key.serialize_pem(), 0o600)?;
    write_new(cert_path, &format!("{}{}", leaf.pem(), ca_pem), 0o644)?;
    write_new(ca_path, &ca_pem, 0o644)
}

/// The admin bearer token from `path`, created (32 random bytes, hex) on first start.
/// Reads a hex secret of 32 random bytes from `path`, creating it (0600) first if missing:
/// the admin token, the QUIC stateless-reset key.
pub fn admin_token(path: &Path) -> Result<String, ControlError> {
    if !path.exists() {
        let mut bytes = [0u8; TOKEN_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        write_new(path, &format!("{}\n", hex::encode(bytes)), 0o600)?;
    }
    let token = read(path)?.trim().to_owned();
    if token.is_empty() {
        return Err(ControlError::Pki(format!(
            "admin token file {} is empty",
            path.display()
        )));
    }
    Ok(token)
}

/// Compares without an early exit, so timing does not reveal how much of a guess matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// SHA-256 of a tunnel secret, the only form the store keeps.
pub fn secret_hash(secret: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, secret)
        .as_ref()
        .to_vec()
}

fn read(path: &Path) -> Result<String, ControlError> {
    fs::read_to_string(path).map_err(|source| ControlError::DataDir {
        path: path.to_owned(),
        source,
    })
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), ControlError> {
    let io_err = |source| ControlError::DataDir {
        path: path.to_owned(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_err)?;
    file.write_all(text.as_bytes()).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    /// A rustls server config proves the identity is usable.
    fn rustls_server_config(identity: &EdgeIdentity) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(identity.chain.clone(), identity.key.clone_key())
            .unwrap();
        Arc::new(config)
    }

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("adit-pki-{}", uuid::Uuid::new_v4()))
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn identity_is_generated_once_then_loaded() {
        let dir = temp_dir();
        data_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);

        let first = edge_identity(&dir).unwrap();
        assert_eq!(first.chain.len(), 2);
        assert!(first.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(mode(&dir.join("edge.key")), 0o600);
        assert_eq!(mode(&dir.join("ca.key")), 0o600);
        let _ = rustls_server_config(&first);

        let second = edge_identity(&dir).unwrap();
        assert_eq!(second.ca_pem, first.ca_pem);
        assert_eq!(second.chain, first.chain);

        // The leaf verifies against the CA for the names connectors use.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(first.chain[1].clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        for name in [EDGE_SERVER_NAME, "localhost", "127.0.0.1"] {
            let name = rustls_pki_types::ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(
                    &first.chain[0],
                    &[],
                    &name,
                    &[],
                    rustls_pki_types::UnixTime::now(),
                )
                .unwrap();
        }

        fs::remove_file(dir.join("edge.pem")).unwrap();
        let err = edge_identity(&dir).err().unwrap();
        assert!(err.to_string().contains("must all exist or all be missing"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn token_is_created_once() {
        let dir = temp_dir();
        data_dir(&dir).unwrap();
        let path = dir.join("admin.token");
        let token = admin_token(&path).unwrap();
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(mode(&path), 0o600);
        assert_eq!(admin_token(&path).unwrap(), token);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert_eq!(
            hex::encode(secret_hash(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
