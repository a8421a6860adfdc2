//! The built-in TCP echo origin (`adit origin --tcp-echo`): every byte a client sends comes
//! back, and when the client shuts down its writing the server shuts down its own, so a
//! half-close carried through the tunnel can be seen at both ends.

use std::io;

use bytes::BytesMut;
use monoio::io::AsyncWriteRent;
use monoio::net::TcpStream;

use crate::runtime::io::{read_more, write_all, READ_CHUNK};

/// Echoes on one connection until the client half-closes, then half-closes too.
pub async fn echo_connection(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let (result, filled) = read_more(&mut stream, buf).await;
        buf = filled;
        if result? == 0 {
            return stream.shutdown().await;
        }
        // The echoed bytes leave as one frozen buffer; `read_more` reclaims the allocation
        // once the write has let go of it.
        write_all(&mut stream, buf.split().freeze()).await?;
    }
}
