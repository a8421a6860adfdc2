//! Loopback tests of the bridge: a server-role bridge between two monoio sockets, with a
//! blocking WebSocket client on one side and a blocking "origin" on the other.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use monoio::io::Splitable;

use super::*;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client socket, an origin socket, and the bridge between them running on its own
/// thread; the receiver yields the bridge's outcome.
fn bridged() -> (TcpStream, TcpStream, crossbeam_channel::Receiver<Outcome>) {
    let ws_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let raw_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(ws_listener.local_addr().unwrap()).unwrap();
    let origin = TcpStream::connect(raw_listener.local_addr().unwrap()).unwrap();
    let (ws, _) = ws_listener.accept().unwrap();
    let (raw, _) = raw_listener.accept().unwrap();
    for socket in [&client, &origin] {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
    }

    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let outcome = crate::runtime::block_on(async move {
            let ws = monoio::net::TcpStream::from_std(ws).unwrap();
            let raw = monoio::net::TcpStream::from_std(raw).unwrap();
            let (ws_in, ws_out) = ws.into_split();
            let (raw_in, mut raw_out) = raw.into_split();
            let (mut ws_in, mut ws_out) = (Socket(ws_in), Socket(ws_out));
            run(
                Role::Server,
                Bytes::new(),
                &mut ws_in,
                &mut ws_out,
                raw_in,
                &mut raw_out,
            )
            .await
        })
        .unwrap();
        let _ = tx.send(outcome);
    });
    (client, origin, rx)
}

fn masked(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.resize(HEADER_ROOM, 0);
    buf.extend_from_slice(payload);
    frame::frame_in_place(&mut buf, opcode, Some(KEY)).to_vec()
}

fn read_exact(socket: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    socket.read_exact(&mut buf).unwrap();
    buf
}

fn read_to_end(socket: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    socket.read_to_end(&mut buf).unwrap();
    buf
}

#[test]
fn bytes_pings_and_half_closes_cross_the_bridge() {
    let (mut client, mut origin, outcome) = bridged();

    // A message in two fragments with a ping between them.
    let mut first = masked(Opcode::Binary, b"hel");
    first[0] &= 0x7F;
    client.write_all(&first).unwrap();
    client.write_all(&masked(Opcode::Ping, b"Hello")).unwrap();
    let mut second = masked(Opcode::Continuation, b"lo");
    second[0] |= 0x80;
    client.write_all(&second).unwrap();
    assert_eq!(read_exact(&mut origin, 5), b"hello");
    assert_eq!(read_exact(&mut client, 7), b"\x8a\x05Hello");

    origin.write_all(b"world").unwrap();
    assert_eq!(read_exact(&mut client, 7), b"\x82\x05world");

    // The client half-closes: the origin sees the end and can still answer.
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut origin), b"");
    origin.write_all(b"bye").unwrap();
    origin.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), b"\x82\x03bye");
    assert_eq!(
        outcome.recv_timeout(Duration::from_secs(10)),
        Ok(Outcome::Ended)
    );
}

#[test]
fn a_close_frame_is_echoed_and_ends_both_sides() {
    let (mut client, mut origin, outcome) = bridged();
    client.write_all(&masked(Opcode::Binary, b"x")).unwrap();
    assert_eq!(read_exact(&mut origin, 1), b"x");
    client
        .write_all(&masked(Opcode::Close, &[0x03, 0xE9]))
        .unwrap();
    assert_eq!(read_to_end(&mut client), b"\x88\x02\x03\xE9");
    assert_eq!(read_to_end(&mut origin), b"");
    assert_eq!(
        outcome.recv_timeout(Duration::from_secs(10)),
        Ok(Outcome::Closed(Some(1001)))
    );
}

#[test]
fn a_protocol_error_is_answered_with_close_1002() {
    let (mut client, mut origin, outcome) = bridged();
    client.write_all(b"\x82\x05hello").unwrap();
    assert_eq!(read_to_end(&mut client), b"\x88\x02\x03\xEA");
    assert_eq!(read_to_end(&mut origin), b"");
    assert_eq!(
        outcome.recv_timeout(Duration::from_secs(10)),
        Ok(Outcome::Failed(
            "WebSocket protocol error: unmasked frame from a client".to_owned()
        ))
    );
}

#[test]
fn a_large_transfer_arrives_whole_in_both_directions() {
    let (mut client, mut origin, outcome) = bridged();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();

    let upload = data.clone();
    let writer = std::thread::spawn(move || {
        let mut client_writer = client.try_clone().unwrap();
        for chunk in upload.chunks(100_000) {
            client_writer
                .write_all(&masked(Opcode::Binary, chunk))
                .unwrap();
        }
        client_writer.shutdown(Shutdown::Write).unwrap();
        // The origin's answer, as frames of at most 64 KiB.
        let mut received = Vec::new();
        let mut decoder = Decoder::new(Role::Client);
        let mut buf = BytesMut::new();
        let mut chunk = [0u8; 65536];
        loop {
            let n = client.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some(message) = decoder.decode(&mut buf).unwrap() {
                match message {
                    Message::Data(run) => received.extend_from_slice(&run),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        received
    });

    let echoed = read_to_end(&mut origin);
    assert!(echoed == data, "the origin got other bytes");
    origin.write_all(&echoed).unwrap();
    origin.shutdown(Shutdown::Write).unwrap();
    let received = writer.join().unwrap();
    assert!(received == data, "the client got other bytes");
    assert_eq!(
        outcome.recv_timeout(Duration::from_secs(10)),
        Ok(Outcome::Ended)
    );
}
