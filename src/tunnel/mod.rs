//! What travels between connector and edge: the stream header frames and the credentials
//! a connector proves its tunnel with.

pub mod buffers;
pub mod credentials;
pub mod frame;
pub mod io;
pub mod splice;

/// ALPN protocol id of the tunnel's QUIC connections.
pub const ALPN: &[u8] = b"adit/1";

/// The TLS server name connectors expect in the edge certificate.
pub const EDGE_SERVER_NAME: &str = "adit-edge";
