//! A scripted origin for the end-to-end tests: a plain `std::net` listener in a thread of
//! the test, and blocking reads of heads and bodies on either side.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{origin_rule, setup_with, Edge, Setup};

pub fn setup_to(name: &str, origin: SocketAddr) -> Setup {
    setup_with(name, &origin_rule(origin), &[])
}

/// Runs `script` on a listener of its own; the returned handle re-raises its panics.
pub fn scripted(script: impl FnOnce(TcpListener) + Send + 'static) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, std::thread::spawn(move || script(listener)))
}

pub fn accept(listener: &TcpListener) -> TcpStream {
    let (stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Reads up to and including the blank line that ends a head; returns the head and any
/// bytes read past it.
pub fn read_head(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return (String::from_utf8(buf).unwrap(), rest);
        }
        let n = stream.read(&mut chunk).unwrap();
        assert!(
            n > 0,
            "closed before the end of a head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads exactly `n` bytes, starting with `have`.
pub fn read_exact_after(stream: &mut TcpStream, mut have: Vec<u8>, n: usize) -> Vec<u8> {
    let mut chunk = vec![0u8; 64 * 1024];
    while have.len() < n {
        let got = stream.read(&mut chunk).unwrap();
        assert!(got > 0, "closed after {} of {n} bytes", have.len());
        have.extend_from_slice(&chunk[..got]);
    }
    have
}

/// Reads until the peer closes.
pub fn read_to_close(stream: &mut TcpStream, mut have: Vec<u8>) -> Vec<u8> {
    stream.read_to_end(&mut have).unwrap();
    have
}

pub fn client(edge: &Edge) -> TcpStream {
    let stream = TcpStream::connect(edge.http).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}
