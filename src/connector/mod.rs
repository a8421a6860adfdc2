//! The connector: outbound QUIC connections to the edge, ingress rules, origin proxy.

pub mod config;
pub mod ingress;
