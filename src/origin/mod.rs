//! The built-in origin: a small thread-per-core HTTP/1.1 server with keep-alive, used by
//! the tests, the benchmarks and as a target users can try the tunnel against. Every route
//! answers `HEAD` with its head alone.
//!
//! Routes:
//!
//! - `/`: a short hello (`text/plain`).
//! - `/bytes/N`: N bytes of `abc…z` repeated (byte `i` is `b'a' + (i % 65536) % 26`), with
//!   `Content-Length`, written from one block in static memory whatever N is.
//! - `/echo`: the request body back as it streams in, with the request's `Content-Length`,
//!   or chunked when the request was.
//! - `/sha256`: the hex SHA-256 of the request body.
//! - `/stream?chunks=N&interval_ms=M`: N chunks `chunk i\n` (default 10), one every M ms
//!   (default 0), each written as it is made.
//! - `/sse?events=N&interval_ms=M`: the same as `text/event-stream`, events `data: event
//!   i\n\n`.
//! - `/delay/MS`: `done\n` after MS milliseconds (at most 10 minutes).
//! - `/status/CODE`: that status (200 to 599) with `CODE reason\n` as the body.
//! - `/headers`: the request's fields as a JSON object, names lowercased in the order they
//!   first came, each mapping to its value, or to the array of its values when it came more
//!   than once: `{"host":"a.test","x-tag":["one","two"]}`.
//! - `/ws`: a WebSocket echo (data frames back with their opcode, ping answered with pong,
//!   close with close). A `/ws` request that is not a WebSocket upgrade gets 400.
//!
//! Streamed bodies go chunked to HTTP/1.1 clients and, to HTTP/1.0 ones, until the
//! connection closes. Requests with `Expect: 100-continue` get `100 Continue` on the routes
//! that read the body.
//!
//! Besides HTTP, [`spawn_tcp_echo`] runs a raw TCP echo server for the tunnel's `tcp://`
//! services.

mod echo;
mod routes;
mod serve;
mod websocket;

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
    let threads =
        runtime::spawn_workers("origin", listeners, false, |index, listener| async move {
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
    let threads = runtime::spawn_workers(
        "origin-echo",
        listeners,
        false,
        |index, listener| async move {
            if let Err(err) = echo_loop(listener).await {
                tracing::error!("echo origin worker {index} stopped: {err}");
            }
        },
    )?;
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
