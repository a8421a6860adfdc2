//! A per-worker driver for a `quinn-proto` endpoint on monoio.
//!
//! quinn's own runtime wants `Send + Sync` types and monoio's are not, so each worker owns a
//! sans-IO [`quinn_proto::Endpoint`] and drives it from one task: read datagram batches with
//! `quinn-udp` (GRO) when the socket is readable, feed the endpoint and its connections, poll
//! transmits into GSO trains, arm one timer at the earliest deadline. Connections and
//! streams are `!Send` handles into that shared state; their futures register wakers that the
//! driver fires when quinn-proto reports progress.

mod config;
mod conn;
mod driver;
mod run;
mod stream;
#[cfg(test)]
mod tests;
mod udp;

pub use config::{client_config, server_config, transport_config};
pub use conn::{Connection, ConnectionStats};
pub use driver::{Endpoint, QuicError, StreamError};
pub use stream::{RecvStream, SendStream};
