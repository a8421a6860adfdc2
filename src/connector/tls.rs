//! TLS to origins (`https://` and `unix+tls:` services): the client configuration of each
//! ingress rule, built once when the connector starts, and the handshake that opens a
//! [`TlsStream`] to an origin. The stream itself, shared with the edge's HTTPS listener, is
//! [`crate::runtime::tls::TlsStream`]: it splits into halves that [`super::origin`] runs at
//! the same time (the response is read while the request body is still being written), and
//! reunites so the connection can be pooled.

use std::io;
use std::path::Path;
use std::sync::Arc;

use monoio::io::{AsyncReadRent, AsyncWriteRent};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};
use rustls::{Error as TlsError, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::ingress::{Ingress, IngressError, OriginSettings, Service};

/// The name a `unix+tls:` origin is sent as SNI and verified as when its rule sets no
/// `originServerName`: a socket path names no host, and local services are commonly
/// certified for `localhost`.
pub const UNIX_SERVER_NAME: &str = "localhost";

/// The only application protocol offered: the connector speaks HTTP/1.1 to origins.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// TLS sessions kept for resumption, per rule and worker.
const SESSION_CACHE: usize = 64;

/// How one rule's origin is reached over TLS.
#[derive(Clone)]
pub struct OriginTls {
    pub config: Arc<ClientConfig>,
    /// Sent as SNI (unless it is an IP address) and verified against the certificate.
    pub server_name: ServerName<'static>,
}

impl OriginTls {
    /// The same settings with a session cache of its own, for one worker: resuming a
    /// session then never takes a lock another worker holds.
    pub fn for_worker(&self) -> OriginTls {
        let mut config = ClientConfig::clone(&self.config);
        config.resumption = Resumption::in_memory_sessions(SESSION_CACHE);
        OriginTls {
            config: Arc::new(config),
            server_name: self.server_name.clone(),
        }
    }
}

/// The TLS settings of every rule of `ingress`, by rule index; `None` for rules whose
/// service does not use TLS. Fails on the first rule whose settings are not usable (an
/// unreadable or empty `caPool`, say).
pub fn origin_configs(ingress: &Ingress) -> Result<Vec<Option<OriginTls>>, IngressError> {
    ingress
        .rules
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            let tls = matches!(
                rule.service,
                Service::Http { tls: true, .. } | Service::Unix { tls: true, .. }
            );
            if !tls {
                return Ok(None);
            }
            origin_tls(&rule.service, &rule.origin)
                .map(Some)
                .map_err(|message| IngressError {
                    rule: index + 1,
                    message,
                })
        })
        .collect()
}

/// Builds the TLS settings for one service; the error is a sentence naming the setting.
pub fn origin_tls(service: &Service, settings: &OriginSettings) -> Result<OriginTls, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("cannot build the TLS configuration: {err}"))?;
    let mut config = if settings.no_tls_verify {
        let verifier = AnyCertificate {
            algorithms: provider.signature_verification_algorithms,
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth()
    } else {
        let mut roots: RootCertStore = webpki_roots::TLS_SERVER_ROOTS.iter().cloned().collect();
        if let Some(path) = &settings.ca_pool {
            add_ca_pool(&mut roots, path)?;
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|err| format!("cannot build the TLS certificate verifier: {err}"))?;
        builder.with_webpki_verifier(verifier).with_no_client_auth()
    };
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];

    let (name, setting) = match (&settings.origin_server_name, service) {
        (Some(name), _) => (name.as_str(), "originServerName"),
        (None, Service::Http { host, .. }) => (host.as_str(), "the service host"),
        (None, _) => (UNIX_SERVER_NAME, "the default server name"),
    };
    let server_name = ServerName::try_from(name.to_owned())
        .map_err(|_| format!("{setting} {name:?} is not a valid TLS server name"))?;
    Ok(OriginTls {
        config: Arc::new(config),
        server_name,
    })
}

/// Adds every certificate of the PEM file at `path` to `roots`.
fn add_ca_pool(roots: &mut RootCertStore, path: &Path) -> Result<(), String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|err| format!("caPool {shown} cannot be read: {err}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("caPool {shown} is not valid PEM: {err}"))?;
    if certs.is_empty() {
        return Err(format!("caPool {shown} holds no PEM certificates"));
    }
    for (index, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|err| {
            let number = index + 1;
            format!("caPool {shown}: certificate {number} is not a usable CA: {err}")
        })?;
    }
    Ok(())
}

/// `noTLSVerify`: any certificate is accepted, for any name, but the handshake signatures
/// are still checked, so the peer must hold the key of the certificate it presents.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A TLS client session to an origin over the monoio stream `S`; see [`crate::runtime::tls`]
/// for how its split halves share it.
pub type TlsStream<S> = crate::runtime::tls::TlsStream<S, ClientConnection>;

impl<S: AsyncReadRent + AsyncWriteRent> TlsStream<S> {
    /// Runs the whole handshake with the origin on `io`. The error says why it failed, in
    /// rustls' words for TLS failures ("invalid peer certificate: UnknownIssuer", say).
    pub async fn connect(io: S, tls: &OriginTls) -> io::Result<TlsStream<S>> {
        let session = ClientConnection::new(tls.config.clone(), tls.server_name.clone())
            .map_err(io::Error::other)?;
        crate::runtime::tls::TlsStream::handshake(io, session).await
    }
}

#[cfg(test)]
mod tests;
