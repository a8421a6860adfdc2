//! The edge's public HTTPS listener: the operator's certificates, chosen per connection by
//! SNI, and the TLS connections served by the same proxy as plain HTTP.
//!
//! Every certificate is loaded and checked when the edge starts (a file that cannot be read
//! or parsed, or a key that is not the certificate's, stops the start with an error naming
//! the file). A certificate serves the DNS names in its subjectAltName: exact names, and
//! `*.` wildcards that stand for exactly one label. Names match case-insensitively. A client
//! that sends no SNI, or a name no certificate serves, gets the first certificate
//! configured; when two certificates serve one name, the one configured first wins. Only
//! HTTP/1.1 is offered over ALPN.
//!
//! All workers share one rustls configuration, so its session cache (for resumption) is
//! shared too and takes a lock once per handshake; a resumed session then works whichever
//! worker the kernel gives the new connection to.
//!
//! A TLS connection can move to another worker like a plain one
//! ([`super::proxy::HandoffStream::Tls`]): the socket, the rustls session (with any
//! plaintext received and records not yet sent) and the ciphertext not yet processed all
//! move, so nothing of the connection stays behind.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use monoio::net::TcpStream;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::proxy::{serve_client, ClientStream, HandoffStream};
use super::worker::Worker;
use crate::runtime::tls::TlsStream;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The only application protocol offered: the edge speaks HTTP/1.1 to clients.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// A public client connection over TLS.
pub type ClientTlsStream = TlsStream<TcpStream, ServerConnection>;

/// One certificate chain (PEM) and its private key (PEM), as files.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no PEM private key", path.display())]
    NoKey { path: PathBuf },
    #[error("{} is not valid PEM: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Unusable { path: PathBuf, message: String },
    #[error(
        "the private key in {} does not match the certificate in {}",
        key.display(),
        cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
}

/// Picks a certificate for each handshake by the SNI the client sent.
#[derive(Debug)]
pub struct CertResolver {
    keys: Vec<Arc<CertifiedKey>>,
    /// Lowercase exact names, to the index of the certificate serving them.
    exact: HashMap<String, usize>,
    /// For each `*.parent` name: lowercase `parent`, to the certificate's index.
    wildcard: HashMap<String, usize>,
}

impl CertResolver {
    /// Loads and checks every certificate and key, in order. `None` when `files` is empty.
    pub fn load(files: &[CertFiles]) -> Result<Option<CertResolver>, CertError> {
        if files.is_empty() {
            return Ok(None);
        }
        let provider = rustls::crypto::ring::default_provider();
        let mut resolver = CertResolver {
            keys: Vec::with_capacity(files.len()),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        };
        for (index, files) in files.iter().enumerate() {
            let (key, names) = load_pair(files, &provider)?;
            tracing::info!(
                cert = %files.cert.display(),
                names = %names.join(","),
                "loaded TLS certificate"
            );
            for name in names {
                match name.strip_prefix("*.") {
                    Some(parent) => resolver.wildcard.entry(parent.to_owned()),
                    None => resolver.exact.entry(name),
                }
                .or_insert(index);
            }
            resolver.keys.push(Arc::new(key));
        }
        Ok(Some(resolver))
    }

    /// The index of the certificate that serves `server_name`; the first one when none
    /// does or no name was sent.
    pub fn pick(&self, server_name: Option<&str>) -> usize {
        let Some(name) = server_name else {
            return 0;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(&index) = self.exact.get(&name) {
            return index;
        }
        match name.split_once('.') {
            Some((label, parent)) if !label.is_empty() => {
                self.wildcard.get(parent).copied().unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// The certificate chain at `index`, leaf first.
    pub fn chain(&self, index: usize) -> Option<&[CertificateDer<'static>]> {
        self.keys.get(index).map(|key| key.cert.as_slice())
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let index = self.pick(client_hello.server_name());
        self.keys.get(index).cloned()
    }
}

/// The rustls configuration of the HTTPS listener, shared by every worker.
pub fn server_config(resolver: CertResolver) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// Reads one certificate chain and its key, checks that they belong together, and returns
/// them with the DNS names the certificate serves (lowercase).
fn load_pair(
    files: &CertFiles,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<(CertifiedKey, Vec<String>), CertError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| CertError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let pem_error = |path: &Path, err: rustls_pki_types::pem::Error| CertError::Pem {
        path: path.to_owned(),
        message: err.to_string(),
    };

    let pem = read(&files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| pem_error(&files.cert, err))?;
    let Some(leaf) = chain.first() else {
        return Err(CertError::NoCertificate {
            path: files.cert.clone(),
        });
    };
    let names = dns_names(leaf).ok_or_else(|| CertError::Unusable {
        path: files.cert.clone(),
        message: "the certificate is not valid DER".to_owned(),
    })?;

    let pem = read(&files.key)?;
    let key = match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => key,
        Err(rustls_pki_types::pem::Error::NoItemsFound) => {
            return Err(CertError::NoKey {
                path: files.key.clone(),
            })
        }
        Err(err) => return Err(pem_error(&files.key, err)),
    };
    let key = match CertifiedKey::from_der(chain, key, provider) {
        Ok(key) => key,
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(CertError::KeyMismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
            })
        }
        Err(err) => {
            return Err(CertError::Unusable {
                path: files.key.clone(),
                message: err.to_string(),
            })
        }
    };
    Ok((key, names))
}

/// The dNSName entries of a certificate's subjectAltName, lowercase; those that are not
/// plain DNS names or `*.` wildcards are left out. `None` when the DER does not parse.
fn dns_names(cert: &[u8]) -> Option<Vec<String>> {
    const SEQUENCE: u8 = 0x30;
    // tbsCertificate's `[3] EXPLICIT Extensions`.
    const EXTENSIONS: u8 = 0xa3;
    const OID: u8 = 0x06;
    const BOOLEAN: u8 = 0x01;
    const OCTET_STRING: u8 = 0x04;
    // GeneralName's `[2] IMPLICIT IA5String`.
    const DNS_NAME: u8 = 0x82;
    // 2.5.29.17, id-ce-subjectAltName.
    const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

    let certificate = der::expect(cert, SEQUENCE)?.0;
    let mut tbs = der::expect(certificate, SEQUENCE)?.0;
    let mut extensions = None;
    while !tbs.is_empty() {
        let (tag, contents, rest) = der::element(tbs)?;
        if tag == EXTENSIONS {
            extensions = Some(der::expect(contents, SEQUENCE)?.0);
        }
        tbs = rest;
    }

    let mut list = extensions.unwrap_or_default();
    while !list.is_empty() {
        let (extension, rest) = der::expect(list, SEQUENCE)?;
        list = rest;
        let (oid, extension) = der::expect(extension, OID)?;
        if oid != SUBJECT_ALT_NAME {
            continue;
        }
        let (mut tag, mut value, after) = der::element(extension)?;
        if tag == BOOLEAN {
            (tag, value, _) = der::element(after)?;
        }
        if tag != OCTET_STRING {
            return None;
        }
        let mut general_names = der::expect(value, SEQUENCE)?.0;
        let mut names = Vec::new();
        while !general_names.is_empty() {
            let (tag, name, rest) = der::element(general_names)?;
            general_names = rest;
            if tag != DNS_NAME {
                continue;
            }
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            let plain = name.strip_prefix("*.").unwrap_or(name);
            if !plain.is_empty() && !plain.contains('*') {
                names.push(name.to_ascii_lowercase());
            }
        }
        return Some(names);
    }
    Some(Vec::new())
}

/// Just enough DER to walk a certificate: single-byte tags, definite lengths.
mod der {
    /// The first element of `input`: its tag, its contents and what follows it.
    pub fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return None;
            }
            let (bytes, after) = rest.split_at_checked(count)?;
            rest = after;
            bytes
                .iter()
                .fold(0usize, |len, &byte| len << 8 | usize::from(byte))
        };
        let (contents, rest) = rest.split_at_checked(len)?;
        Some((tag, contents, rest))
    }

    /// The contents of the first element of `input` and what follows it, if its tag is
    /// `tag`.
    pub fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        match element(input)? {
            (found, contents, rest) if found == tag => Some((contents, rest)),
            _ => None,
        }
    }
}

impl ClientStream for ClientTlsStream {
    const SCHEME: &'static str = "https";

    /// Always moves: see the module documentation.
    fn into_handoff(self) -> Result<HandoffStream, Self> {
        let (io, session, incoming) = self.into_parts();
        let fd = io.into_raw_fd();
        // SAFETY: `into_raw_fd` released the descriptor from the monoio stream, so this is its
        // only owner.
        let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
        Ok(HandoffStream::Tls(Box::new(TlsHandoff {
            stream,
            session,
            incoming,
        })))
    }

    fn socket(&self) -> &TcpStream {
        self.io()
    }

    fn drained(&self) -> bool {
        self.is_drained()
    }
}

/// A TLS client connection on its way to another worker: everything of it, taken apart.
pub struct TlsHandoff {
    stream: std::net::TcpStream,
    session: ServerConnection,
    /// Ciphertext read from the socket that rustls has not processed yet.
    incoming: BytesMut,
}

impl TlsHandoff {
    /// Rebuilds the connection on this worker and serves it; `buffered` is the plaintext
    /// the proxy had read but not used.
    pub fn adopt(self, worker: &Rc<Worker>, peer: SocketAddr, buffered: BytesMut) {
        match TcpStream::from_std(self.stream) {
            Ok(io) => {
                let stream = TlsStream::from_parts(io, self.session, self.incoming);
                monoio::spawn(serve_client(worker.clone(), stream, peer, buffered));
            }
            Err(err) => tracing::debug!(%peer, "cannot adopt handed-off TLS connection: {err}"),
        }
    }
}

/// Runs the TLS handshake on a freshly accepted connection, then serves it.
pub async fn serve_tls_client(
    worker: Rc<Worker>,
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<ServerConfig>,
) {
    let session = match ServerConnection::new(config) {
        Ok(session) => session,
        Err(err) => {
            tracing::debug!(%peer, "cannot start a TLS session: {err}");
            return;
        }
    };
    let handshake = TlsStream::handshake(stream, session);
    match monoio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => serve_client(worker, stream, peer, BytesMut::new()).await,
        Ok(Err(err)) => tracing::debug!(%peer, "TLS handshake failed: {err}"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

#[cfg(test)]
mod tests;
