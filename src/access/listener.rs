//! Listener mode: each accepted local connection is carried over a WebSocket of its own.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use monoio::io::Splitable;
use monoio::net::{TcpListener, TcpStream};

use super::upgrade::{self, Answer, Step};
use super::{AccessError, Target};
use crate::runtime::io::{read_more, write_all};
use crate::ws::bridge::{self, Socket};
use crate::ws::{handshake, Role};

/// How long connecting to the edge and its answer to the upgrade may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts connections on `listener` and carries each to `target`, until the runtime stops.
/// A connection whose upgrade the edge refuses is closed, with a warning saying why.
pub async fn serve(listener: std::net::TcpListener, target: Target) -> std::io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let target = Rc::new(target);
    loop {
        let (local, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::debug!("access accept: {err}");
                monoio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = local.set_nodelay(true);
        let target = target.clone();
        monoio::spawn(async move {
            tracing::debug!(%peer, "carrying a connection");
            let edge = match monoio::time::timeout(HANDSHAKE_TIMEOUT, open(&target)).await {
                Ok(Ok(edge)) => edge,
                Ok(Err(err)) => {
                    tracing::warn!(%peer, "closing the connection: {err}");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%peer, "closing the connection: the edge did not answer");
                    return;
                }
            };
            carry(local, edge).await;
        });
    }
}

/// Connects to the edge and completes the WebSocket handshake; returns the socket and the
/// WebSocket bytes that came with the answer.
async fn open(target: &Target) -> Result<(TcpStream, Bytes), AccessError> {
    let mut edge =
        TcpStream::connect(target.edge)
            .await
            .map_err(|reason| AccessError::Connect {
                addr: target.edge.to_string(),
                reason,
            })?;
    let _ = edge.set_nodelay(true);
    let key = handshake::new_key();
    write_all(&mut edge, upgrade::request(&target.hostname, &key)).await?;

    let mut answer = Answer::new(&key);
    let mut eof = false;
    loop {
        match answer.step(eof) {
            Step::More => {}
            Step::Switched(rest) => return Ok((edge, rest)),
            Step::Failed(err) => return Err(err),
        }
        let buf = std::mem::take(answer.buffer());
        let (result, filled) = read_more(&mut edge, buf).await;
        *answer.buffer() = filled;
        eof = result? == 0;
    }
}

async fn carry(local: TcpStream, (edge, initial): (TcpStream, Bytes)) {
    let (edge_in, edge_out) = edge.into_split();
    let (local_in, mut local_out) = local.into_split();
    let outcome = bridge::run(
        Role::Client,
        initial,
        &mut Socket(edge_in),
        &mut Socket(edge_out),
        local_in,
        &mut local_out,
    )
    .await;
    tracing::debug!(?outcome, "carried connection ended");
}
