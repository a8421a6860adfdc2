//! Sans-IO HTTP/1.1 shared by every leg (client → edge, connector → origin, the built-in
//! origin, the admin API): head parsing with explicit limits, body framing, hop-by-hop
//! headers, and the error pages users see. Nothing here touches a socket or a clock.
//!
//! Limits: a request or response head may be at most [`MAX_HEAD_LEN`] bytes with at most
//! [`MAX_HEADERS`] fields; past either the edge answers 431.

pub mod body;
pub mod head;
pub mod pages;

pub use body::{BodyDecoder, BodyError, Decoded};
pub use head::{
    parse_request, parse_response, request_framing, response_framing, BodyFraming, HeadError,
    RequestHead, ResponseHead, Version, MAX_HEADERS, MAX_HEAD_LEN,
};
