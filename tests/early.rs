//! Answers that end before their request does, and how the edge closes client connections:
//! the rest of a body dropped to keep the connection, `Connection: close` when the client
//! may never send its body, closes that never reset a connection under its last response,
//! and responses the origin cuts short.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::script::*;

#[test]
fn an_early_final_response_reaches_the_client() {
    let (origin, script) = scripted(|listener| {
        let mut conn = accept(&listener);
        let _ = read_head(&mut conn);
        conn.write_all(
            b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\n\
              Content-Length: 8\r\n\r\ntoo big!",
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
    });
    let s = setup_to("early-413", origin);
    let mut client = client(&s.edge);
    client
        .write_all(b"POST /x HTTP/1.1\r\nHost: web.test\r\nContent-Length: 50000000\r\n\r\n")
        .unwrap();
    // Keep sending; the answer must arrive while the body is still on its way.
    let writer = client.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut writer = writer;
        let block = vec![b'x'; 64 * 1024];
        for _ in 0..50 {
            if writer.write_all(&block).is_err() {
                return;
            }
        }
    });
    let (head, rest) = read_head(&mut client);
    assert_eq!(
        head,
        "HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\n\r\n"
    );
    // More of the body is still to come than the edge drops to keep a connection, so it
    // closes after the response.
    assert_eq!(read_to_close(&mut client, rest), b"too big!");
    let _ = client.shutdown(std::net::Shutdown::Both);
    sender.join().unwrap();
    script.join().unwrap();
}

#[test]
fn after_an_early_response_the_rest_of_the_body_is_dropped_and_the_connection_kept() {
    // The origin answers without reading the body, then serves the client's next request (on
    // a new connection: the first cannot carry another request).
    let (origin, script) = scripted(|listener| {
        let mut first = Vec::new();
        for _ in 0..2 {
            let mut conn = accept(&listener);
            let (head, _) = read_head(&mut conn);
            assert!(head.starts_with("POST /upload HTTP/1.1\r\n"), "{head}");
            conn.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\n\r\nlog in")
                .unwrap();
            let mut next = accept(&listener);
            let (head, _) = read_head(&mut next);
            assert!(head.starts_with("GET /after HTTP/1.1\r\n"), "{head}");
            // Closed after, so that the next round's request comes on a new connection.
            next.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
            first.push((conn, next));
        }
    });
    let s = setup_to("early-401-kept", origin);
    let chunked = "POST /upload HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n";
    let sized = "POST /upload HTTP/1.1\r\nHost: web.test\r\nContent-Length: 300000\r\n\r\n";
    for (head, first, rest) in [
        (sized, vec![b'x'; 1000], vec![b'y'; 299_000]),
        (
            chunked,
            b"3e8\r\n".to_vec(),
            [b"x".repeat(1000), b"\r\n0\r\n\r\n".to_vec()].concat(),
        ),
    ] {
        let mut client = client(&s.edge);
        client.write_all(head.as_bytes()).unwrap();
        client.write_all(&first).unwrap();
        let (head, got) = read_head(&mut client);
        assert_eq!(
            head,
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\n\r\n"
        );
        assert_eq!(read_exact_after(&mut client, got, 6), b"log in");
        // The rest of the body arrives after the answer; then the next request.
        client.write_all(&rest).unwrap();
        client
            .write_all(b"GET /after HTTP/1.1\r\nHost: web.test\r\n\r\n")
            .unwrap();
        let (head, got) = read_head(&mut client);
        assert_eq!(head, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(read_exact_after(&mut client, got, 2), b"ok");
    }
    script.join().unwrap();
}

#[test]
fn a_final_answer_before_100_continue_closes_the_connection() {
    // The client waits for 100 Continue before it sends its body; the origin answers 417
    // without it. What the client sends next may be the body or the request again (as curl
    // repeats it after a 417), so the edge says it closes, and does.
    let (origin, script) = scripted(|listener| {
        let mut conn = accept(&listener);
        let _ = read_head(&mut conn);
        conn.write_all(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 4\r\n\r\nnope")
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
    });
    let s = setup_to("early-417", origin);
    let mut client = client(&s.edge);
    client
        .write_all(
            b"PUT /x HTTP/1.1\r\nHost: web.test\r\nExpect: 100-continue\r\n\
              Content-Length: 5\r\n\r\n",
        )
        .unwrap();
    let (head, rest) = read_head(&mut client);
    assert_eq!(
        head,
        "HTTP/1.1 417 Expectation Failed\r\nContent-Length: 4\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(read_to_close(&mut client, rest), b"nope");
    script.join().unwrap();
}

#[test]
fn a_client_that_reads_its_last_response_slowly_gets_all_of_it() {
    // 4 MiB under `Connection: close` to a client that sent more than the edge reads and
    // takes the response in slowly: the edge goes on reading while the client still takes
    // bytes in, so no reset cuts the response short.
    const SIZE: usize = 4 * 1024 * 1024;
    let (origin, script) = scripted(|listener| {
        let mut conn = accept(&listener);
        let _ = read_head(&mut conn);
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n");
        conn.write_all(head.as_bytes()).unwrap();
        conn.write_all(&vec![b'r'; SIZE]).unwrap();
    });
    let s = setup_to("slow-reader", origin);
    let mut client = client(&s.edge);
    // A small receive buffer, so that most of the response waits in the edge's socket,
    // unacknowledged, while the client reads.
    let size: libc::c_int = 64 * 1024;
    // SAFETY: one int option, by pointer and size, on the live socket.
    let set = unsafe {
        libc::setsockopt(
            client.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            std::ptr::from_ref(&size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0);
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (head, mut got) = read_head(&mut client);
    // Bytes after the request that the edge will never use, sent all along (at most 10 s).
    let mut writer = client.try_clone().unwrap();
    let junk = std::thread::spawn(move || {
        for _ in 0..1000 {
            if writer.write_all(&[b'j'; 4096]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    assert_eq!(
        head,
        format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\nConnection: close\r\n\r\n")
    );
    // About 650 KB/s: over 6 s for the lot.
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match client.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(err) => panic!("after {} of {SIZE} body bytes: {err}", got.len()),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(got.len(), SIZE);
    assert!(got.iter().all(|&b| b == b'r'));
    let _ = client.shutdown(Shutdown::Both);
    junk.join().unwrap();
    script.join().unwrap();
}

#[test]
fn a_response_the_origin_cuts_short_reaches_the_client_to_its_last_byte() {
    // The origin promises 1 MiB, sends 100,000 bytes and closes. Every one of them reaches
    // the client, and then the connection closes, as the body cannot be completed.
    const PROMISED: usize = 1 << 20;
    const SENT: usize = 100_000;
    const ROUNDS: usize = 3;
    let (origin, script) = scripted(|listener| {
        for _ in 0..ROUNDS {
            let mut conn = accept(&listener);
            let _ = read_head(&mut conn);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {PROMISED}\r\n\r\n");
            conn.write_all(head.as_bytes()).unwrap();
            let body: Vec<u8> = (0..SENT).map(|i| (i % 251) as u8).collect();
            conn.write_all(&body).unwrap();
        }
    });
    let s = setup_to("cut-short", origin);
    for _ in 0..ROUNDS {
        let mut client = client(&s.edge);
        client
            .write_all(b"GET /cut HTTP/1.1\r\nHost: web.test\r\n\r\n")
            .unwrap();
        let (head, rest) = read_head(&mut client);
        assert_eq!(
            head,
            format!("HTTP/1.1 200 OK\r\nContent-Length: {PROMISED}\r\n\r\n")
        );
        let body = read_to_close(&mut client, rest);
        assert_eq!(body.len(), SENT);
        assert!(body.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    }
    script.join().unwrap();
}
