//! A per-worker driver for a `quinn-proto` endpoint on monoio.
//!
//! quinn's own runtime wants `Send + Sync` types and monoio's are not, so each worker owns a
//! sans-IO [`quinn_proto::Endpoint`] and drives it from one task: read datagram batches with
//! `quinn-udp` (GRO) when the socket is readable, feed the endpoint and its connections, poll
//! transmits into GSO trains, arm one timer at the earliest deadline. Connections and
//! streams are `!Send` handles into that shared state; their futures register wakers that the
//! driver fires when quinn-proto reports progress.
//!
//! What callers can rely on:
//!
//! - [`SendStream::write`] returns once quinn-proto has taken the whole buffer (it waits
//!   while the 32 MiB connection send window or the peer's flow control is full); that is
//!   queued, not delivered. [`SendStream::finish`] returns at once; [`SendStream::stopped`]
//!   fails with [`StreamError::ClosedStream`] once every byte was acknowledged, which is how
//!   to wait for delivery.
//! - When a connection ends (peer close, idle timeout, local close, endpoint shutdown) every
//!   waiter on it wakes: stream calls fail with [`StreamError::ConnectionLost`], connection
//!   calls with [`QuicError::Connection`]. Data already received may still be read first.
//! - The last handle of a connection (its `Connection` clones and its streams) closes it
//!   with code 0; a `SendStream` dropped unfinished resets with code 0, a `RecvStream`
//!   dropped before its end stops with code 0.
//! - A peer's new stream reaches [`Connection::accept_bi`] once its first bytes (or its
//!   finish) arrive: opening a stream sends nothing by itself.
//!
//! # Layout
//!
//! - `config`: transport, TLS server and client settings.
//! - `driver`: the [`Endpoint`] handle, the errors, and the state shared with the driver.
//! - `run`: the driver task's loop.
//! - `udp`: quinn-udp IO, socket buffers, GSO/GRO detection.
//! - `conn`: per-connection state and wakers, the [`Connection`] handle.
//! - `stream`: [`SendStream`] and [`RecvStream`].

mod config;
mod conn;
mod driver;
mod run;
mod stream;
#[cfg(test)]
mod tests;
mod udp;

pub use config::{client_config, loopback_transport_config, server_config, transport_config};
pub use conn::{Connection, ConnectionStats};
pub use driver::{Endpoint, QuicError, StreamError};
pub use stream::{RecvStream, SendStream};
