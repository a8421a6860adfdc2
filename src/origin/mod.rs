//! The built-in origin: a small thread-per-core HTTP/1.1 server with keep-alive, used by
//! the tests, the benchmarks and as a target users can try the tunnel against.
//!
//! Routes: `/` (short hello), `/bytes/N` (N bytes, streamed), `/echo` (the request body back,
//! streamed), `/sha256` (hex SHA-256 of the body), `/stream?chunks=N&interval_ms=M` (chunked,
//! one flushed chunk every M ms), `/delay/MS`, `/status/CODE`, `/headers` (the request
//! headers as JSON).
//!
//! Besides HTTP, [`spawn_tcp_echo`] runs a raw TCP echo server for the tunnel's `tcp://`
//! services.

mod echo;
mod serve;

use std::net::SocketAddr;
use std::thread::JoinHandle;

use crate::runtime;

pub use echo::echo_connection;
pub use serve::serve_connection;

/// A running origin: where it listens and its worker threads.
pub struct Origin {
    pub addr: SocketAddr,
    pub threads: Vec<JoinHandle<()>>,
}

/// Binds `listen` once per worker and serves on each.
pub fn spawn(listen: SocketAddr, workers: usize) -> std::io::Result<Origin> {
    let listeners = runtime::bind_tcp_group(listen, workers)?;
    let addr = listeners[0].local_addr()?;
    let threads = runtime::spawn_workers("origin", listeners, |index, listener| async move {
        if let Err(err) = accept_loop(listener).await {
            tracing::error!("origin worker {index} stopped: {err}");
        }
    })?;
    tracing::info!(%addr, "origin listening");
    Ok(Origin { addr, threads })
}

/// Binds `listen` once per worker and runs the TCP echo server on each.
pub fn spawn_tcp_echo(listen: SocketAddr, workers: usize) -> std::io::Result<Origin> {
    let listeners = runtime::bind_tcp_group(listen, workers)?;
    let addr = listeners[0].local_addr()?;
    let threads = runtime::spawn_workers("origin-echo", listeners, |index, listener| async move {
        if let Err(err) = echo_loop(listener).await {
            tracing::error!("echo origin worker {index} stopped: {err}");
        }
    })?;
    tracing::info!(%addr, "TCP echo origin listening");
    Ok(Origin { addr, threads })
}

async fn echo_loop(listener: std::net::TcpListener) -> std::io::Result<()> {
    let listener = monoio::net::TcpListener::from_std(listener)?;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::debug!("echo origin accept: {err}");
                monoio::time::sleep(std::time::Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        monoio::spawn(async move {
            if let Err(err) = echo_connection(stream).await {
                tracing::debug!("echo origin connection: {err}");
            }
        });
    }
}

async fn accept_loop(listener: std::net::TcpListener) -> std::io::Result<()> {
    let listener = monoio::net::TcpListener::from_std(listener)?;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::debug!("origin accept: {err}");
                monoio::time::sleep(std::time::Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        monoio::spawn(async move {
            if let Err(err) = serve_connection(stream).await {
                tracing::debug!("origin connection: {err}");
            }
        });
    }
}
