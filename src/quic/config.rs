//! QUIC and TLS settings for the tunnel's connections.

use std::sync::Arc;

/// Transport settings shared by edge and connector: flow-control windows sized for WAN
/// round trips, keep-alives, idle timeout, stream limits.
pub fn transport_config() -> Arc<quinn_proto::TransportConfig> {
    todo!()
}

/// Server config for the edge from its certificate chain and key (DER), with the tunnel ALPN.
pub fn server_config(
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
) -> Result<Arc<quinn_proto::ServerConfig>, rustls::Error> {
    let _ = (chain, key);
    todo!()
}

/// Client config for a connector that trusts only the CA in `ca_pem`, with the tunnel ALPN.
pub fn client_config(ca_pem: &str) -> Result<quinn_proto::ClientConfig, rustls::Error> {
    let _ = ca_pem;
    todo!()
}
