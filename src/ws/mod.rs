//! WebSocket (RFC 6455), as far as carrying raw TCP needs it.
//!
//! `adit access tcp` and the connector speak WebSocket end to end through the edge, which
//! only sees an upgraded HTTP stream. [`frame`] (the frame codec and a streaming decoder) and
//! [`handshake`] (the accept key and the request checks) are sans-IO; [`bridge`] is the IO
//! layer that relays between a WebSocket carrier and a raw byte stream in both directions.
//!
//! What is left out on purpose: extensions (no `permessage-deflate` is ever negotiated),
//! subprotocols, and text messages, which a TCP carrier has no use for (a text frame closes
//! the WebSocket with status 1003).

pub mod bridge;
pub mod frame;
pub mod handshake;

pub use frame::{Decoder, FrameHeader, Message, Opcode, Role, WsError};
pub use handshake::{accept_key, is_valid_key};
