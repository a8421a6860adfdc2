//! QUIC and TLS settings for the tunnel's connections.
//!
//! Edge and connector share one [`transport_config`]. Its flow-control windows are the main
//! trade-off:
//!
//! - A single stream carries at most one stream window per round trip, so the stream window
//!   must cover the bandwidth-delay product of the WAN path: 4 MiB is about 670 Mbit/s at
//!   50 ms.
//! - The connection window bounds what a connection may pin in memory (received but not yet
//!   read: 128 MiB; queued for sending: 64 MiB). It also decides how many stalled streams
//!   a connection survives: a public client that stops reading leaves up to one stream
//!   window unread, and once unread data fills the connection window every stream of that
//!   connection waits. 128 MiB / 4 MiB lets 32 stalled clients sit on one connection before
//!   that happens; the edge drops a client that accepts nothing for its idle timeout, which
//!   bounds how long they can sit.
//!
//! Datagram size is the third. On a real network a datagram must fit the path's MTU, so
//! connections start at 1,200 bytes and discovery climbs to at most 1,452 (Ethernet's 1,500
//! less IP and UDP headers). Between an edge and a connector on the same host (loopback,
//! where the MTU is 64 KiB) that limit only multiplies per-packet work: packet protection,
//! frame encoding and acknowledgement tracking run once per datagram. Connections to a
//! loopback peer therefore let discovery climb to [`LOOPBACK_MTU`]; the receiving side
//! accepts that much only when its socket coalesces with GRO (see `udp.rs`), otherwise it
//! advertises 1,472 and the sender stays below.
//!
//! Congestion control is the fourth: Cubic (RFC 9438) with RFC 9002's initial window of
//! 14,720 bytes, on every path. On a WAN path a loss-based controller with the standard
//! window shares a bottleneck fairly with TCP and does not flood a shallow buffer at start;
//! quinn-proto's BBR, which would hold a fuller pipe on a lossy long path, is marked
//! experimental. The price is the ramp: a connection that has only carried small requests
//! is application-limited, its window does not grow, and its first large response starts
//! from the initial window and needs several round trips (about seven at 14,720 bytes for
//! 1 MiB) to open up; the window then stays open. On loopback the controller never binds:
//! nothing is lost and flow control or the CPU limits first. Measured side by side
//! (`adit bench` rounds alternating, one binary switching the loopback controller): Cubic,
//! NewReno, BBR and Cubic with a ten-datagram (160 KiB) initial window gave the same 1 MiB
//! GET, bulk TCP and small-GET throughput within the rounds' spread (1 MiB GET 826-940
//! MiB/s for all four). So loopback keeps the same controller as the WAN.
//!
//! The other trade-off is the idle timeout. A peer that crashed without closing (a connector
//! killed with `kill -9`, a machine that lost power) is only noticed when nothing arrived
//! from it for that long, and the requests the edge already sent on its connections wait
//! for exactly that long before they are sent again elsewhere or fail. So it is short: 5 s.
//! The price is that a live peer silent for 5 s also counts as gone and its connection is
//! replaced. Keep-alives every second make that rare even on a lossy WAN path: five of them in
//! a row, and every acknowledgement of them, would have to be lost.

use std::sync::Arc;
use std::time::Duration;

use quinn_proto::congestion::CubicConfig;
use quinn_proto::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn_proto::{IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Bytes the peer may send on one stream ahead of what we have read.
const STREAM_RECEIVE_WINDOW: u32 = 4 << 20;

/// Bytes the peer may send on all streams of a connection ahead of what we have read.
const CONNECTION_RECEIVE_WINDOW: u32 = 128 << 20;

/// Bytes we queue for sending on one connection before writes wait.
const SEND_WINDOW: u64 = 64 << 20;

/// Bidirectional streams the peer may have open at once: one per in-flight request.
const MAX_CONCURRENT_BIDI_STREAMS: u32 = 4096;

/// Keep-alives keep NAT bindings on the connector's side open and let a silent but live
/// peer be told from a dead one: several fit in one idle timeout.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(1);

/// A connection with no traffic (keep-alives included) for this long is dead. This bounds
/// how long requests on a vanished peer's connections wait.
const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The smallest MTU every IPv6 path carries; discovery climbs from there.
const INITIAL_MTU: u16 = 1200;

/// The largest datagram discovery may reach on a loopback path: large enough that a packet's
/// fixed costs stop mattering, small enough that three still fill one GSO send.
pub const LOOPBACK_MTU: u16 = 16 * 1024;

/// Transport settings shared by edge and connector: flow-control windows sized for WAN
/// round trips, keep-alives, idle timeout, stream limits.
pub fn transport_config() -> Arc<quinn_proto::TransportConfig> {
    Arc::new(base_transport())
}

/// [`transport_config`] for a peer on the same host: datagrams may grow to [`LOOPBACK_MTU`].
pub fn loopback_transport_config() -> Arc<quinn_proto::TransportConfig> {
    let mut transport = base_transport();
    let mut mtu = MtuDiscoveryConfig::default();
    mtu.upper_bound(LOOPBACK_MTU);
    transport.mtu_discovery_config(Some(mtu));
    Arc::new(transport)
}

/// `config` with the loopback transport, for a connection to or from a loopback address.
pub(super) fn loopback_server(
    config: &quinn_proto::ServerConfig,
) -> Arc<quinn_proto::ServerConfig> {
    let mut config = config.clone();
    config.transport_config(loopback_transport_config());
    Arc::new(config)
}

fn base_transport() -> TransportConfig {
    let mut transport = TransportConfig::default();
    transport
        .stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW))
        .send_window(SEND_WINDOW)
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_CONCURRENT_BIDI_STREAMS))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
        .max_idle_timeout(Some(idle_timeout(MAX_IDLE_TIMEOUT)))
        .initial_mtu(INITIAL_MTU)
        .mtu_discovery_config(Some(MtuDiscoveryConfig::default()))
        .congestion_controller_factory(Arc::new(CubicConfig::default()));
    transport
}

/// Server config for the edge from its certificate chain and key (DER), with the tunnel ALPN.
pub fn server_config(
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
) -> Result<Arc<quinn_proto::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![crate::tunnel::ALPN.to_vec()];

    let crypto = QuicServerConfig::try_from(tls).map_err(general)?;
    let mut server = quinn_proto::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(transport_config());
    Ok(Arc::new(server))
}

/// Client config for a connector that trusts only the CA in `ca_pem`, with the tunnel ALPN.
pub fn client_config(ca_pem: &str) -> Result<quinn_proto::ClientConfig, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| rustls::Error::General(format!("bad CA PEM: {e}")))?;
        roots.add(cert)?;
    }
    if roots.is_empty() {
        return Err(rustls::Error::General("no certificate in CA PEM".into()));
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![crate::tunnel::ALPN.to_vec()];

    let crypto = QuicClientConfig::try_from(tls).map_err(general)?;
    let mut client = quinn_proto::ClientConfig::new(Arc::new(crypto));
    client.transport_config(transport_config());
    Ok(client)
}

/// An idle timeout from a duration; the constants used here are far below the varint bound.
pub(super) fn idle_timeout(duration: Duration) -> IdleTimeout {
    IdleTimeout::try_from(duration).unwrap_or(IdleTimeout::from(VarInt::from_u32(5_000)))
}

fn general(error: impl std::fmt::Display) -> rustls::Error {
    rustls::Error::General(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_config_rejects_pem_without_certificate() {
        let err = client_config("not a pem").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("unexpected error: no certificate in CA PEM")
        );
    }

    #[test]
    fn client_config_rejects_broken_certificate() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(client_config(pem).is_err());
    }

    #[test]
    fn idle_timeout_of_five_seconds_with_keep_alives_every_second() {
        assert_eq!(
            idle_timeout(MAX_IDLE_TIMEOUT),
            IdleTimeout::from(VarInt::from_u32(5_000))
        );
        assert_eq!(KEEP_ALIVE_INTERVAL, Duration::from_secs(1));
    }
}
