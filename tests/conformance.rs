//! HTTP/1.1 conformance through the tunnel: exact bytes written to the edge, exact bytes
//! checked at a scripted origin, and back. Each test scripts its origin on a plain
//! `std::net` listener in a thread of the test.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use common::script::*;
use common::*;

#[test]
fn request_and_response_fields_are_forwarded_exactly() {
    let (origin, script) = scripted(|listener| {
        let mut conn = accept(&listener);
        let (head, _) = read_head(&mut conn);
        assert_eq!(
            head,
            "GET /path?q=1 HTTP/1.1\r\nHost: web.test\r\nX-Rep: a\r\nX-Rep: b\r\n\
             X-Forwarded-For: 203.0.113.9, 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\
             Adit-Connecting-IP: 127.0.0.1\r\n\r\n"
        );
        conn.write_all(
            b"HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: s\r\nKeep-Alive: t=1\r\n\
              Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok",
        )
        .unwrap();
    });
    let s = setup_to("fields", origin);
    let mut client = client(&s.edge);
    client
        .write_all(
            b"GET /path?q=1 HTTP/1.1\r\nHost: web.test\r\nConnection: keep-alive, X-Secret\r\n\
              X-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: x\r\n\
              X-Rep: a\r\nX-Rep: b\r\nX-Forwarded-For: 203.0.113.9\r\n\
              X-Forwarded-Proto: ftp\r\nAdit-Connecting-IP: 10.9.9.9\r\n\r\n",
        )
        .unwrap();
    let (head, rest) = read_head(&mut client);
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\n"
    );
    assert_eq!(read_exact_after(&mut client, rest, 2), b"ok");
    script.join().unwrap();
}

#[test]
fn http_host_header_overrides_host_and_keeps_the_original() {
    let (origin, script) = scripted(|listener| {
        let mut conn = accept(&listener);
        let (head, _) = read_head(&mut conn);
        assert!(
            head.starts_with(
                "GET / HTTP/1.1\r\nHost: internal.example\r\nX-Forwarded-Host: web.test\r\n"
            ),
            "{head}"
        );
        conn.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
    });
    let ingress = format!(
        "  - service: http://{origin}\n    originRequest:\n      httpHostHeader: internal.example\n"
    );
    let s = setup_with("host-header", &ingress, &[]);
    let mut client = client(&s.edge);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")
        .unwrap();
    let (head, _) = read_head(&mut client);
    assert_eq!(head, "HTTP/1.1 204 No Content\r\n\r\n");
    script.join().unwrap();
}

#[test]
fn a_chunked_request_body_reaches_the_origin_whole_and_chunked() {
    let (origin, script) = scripted(|listener| {
        let mut conn = accept(&listener);
        let (head, rest) = read_head(&mut conn);
        assert!(
            head.contains("\r\nTransfer-Encoding: chunked\r\n"),
            "{head}"
        );
        assert!(
            !head.to_ascii_lowercase().contains("content-length"),
            "{head}"
        );
        let mut body = rest;
        while !body.ends_with(b"0\r\n\r\n") {
            body = read_exact_after(&mut conn, body.clone(), body.len() + 1);
        }
        let mut decoder = adit::http::BodyDecoder::new(adit::http::BodyFraming::Chunked);
        let mut decoded = Vec::new();
        let mut at = 0;
        while !decoder.is_done() {
            let step = decoder.decode(&body[at..]).unwrap();
            decoded.extend_from_slice(&body[at..][step.data]);
            at += step.consumed;
        }
        assert_eq!(decoded, b"hello, chunked world");
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
            .unwrap();
    });
    let s = setup_to("chunked-request", origin);
    let mut client = client(&s.edge);
    client
        .write_all(
            b"POST /up HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1\r\nhello\r\n9\r\n, chunked\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        )
        .unwrap();
    let (head, rest) = read_head(&mut client);
    assert_eq!(head, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n");
    assert_eq!(read_exact_after(&mut client, rest, 4), b"done");
    script.join().unwrap();
}

#[test]
fn a_response_without_length_is_chunked_for_http11_and_close_delimited_for_http10() {
    let (origin, script) = scripted(|listener| {
        for _ in 0..2 {
            let mut conn = accept(&listener);
            let _ = read_head(&mut conn);
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close")
                .unwrap();
        }
    });
    let s = setup_to("until-close", origin);

    let mut client11 = client(&s.edge);
    client11
        .write_all(b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")
        .unwrap();
    let (head, rest) = read_head(&mut client11);
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let body = read_exact_after(&mut client11, rest, 21);
    assert_eq!(body, b"b\r\nuntil close\r\n0\r\n\r\n");

    let mut client10 = client(&s.edge);
    client10
        .write_all(b"GET / HTTP/1.0\r\nHost: web.test\r\n\r\n")
        .unwrap();
    let (head, rest) = read_head(&mut client10);
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(read_to_close(&mut client10, rest), b"until close");
    script.join().unwrap();
}

#[test]
fn head_204_and_304_responses_carry_no_body_and_keep_the_connection() {
    let (origin, script) = scripted(|listener| {
        let mut conn = accept(&listener);
        for reply in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"[..],
            b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 99\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nend",
        ] {
            let _ = read_head(&mut conn);
            conn.write_all(reply).unwrap();
        }
    });
    let s = setup_to("no-body", origin);
    let mut client = client(&s.edge);
    client
        .write_all(b"HEAD / HTTP/1.1\r\nHost: web.test\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_head(&mut client).0,
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    );
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_head(&mut client).0,
        "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"
    );
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_head(&mut client).0,
        "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 99\r\n\r\n"
    );
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")
        .unwrap();
    let (head, rest) = read_head(&mut client);
    assert_eq!(head, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(read_exact_after(&mut client, rest, 3), b"end");
    script.join().unwrap();
}

#[test]
fn expect_100_continue_goes_through_without_deadlock() {
    let (origin, script) = scripted(|listener| {
        let mut conn = accept(&listener);
        let (head, rest) = read_head(&mut conn);
        assert!(head.contains("\r\nExpect: 100-continue\r\n"), "{head}");
        assert!(rest.is_empty());
        conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
        let body = read_exact_after(&mut conn, Vec::new(), 5);
        assert_eq!(body, b"12345");
        conn.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
    });
    let s = setup_to("continue", origin);
    let mut client = client(&s.edge);
    client
        .write_all(
            b"PUT /x HTTP/1.1\r\nHost: web.test\r\nExpect: 100-continue\r\n\
              Content-Length: 5\r\n\r\n",
        )
        .unwrap();
    let (interim, rest) = read_head(&mut client);
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    assert!(rest.is_empty());
    client.write_all(b"12345").unwrap();
    let (head, _) = read_head(&mut client);
    assert_eq!(head, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    script.join().unwrap();
}

#[test]
fn server_sent_events_are_forwarded_one_by_one() {
    // The origin sends each event only after the client has seen the previous one, so a
    // proxy that held bytes back would deadlock here.
    let (seen_tx, seen_rx) = mpsc::channel::<()>();
    let (origin, script) = scripted(move |listener| {
        let mut conn = accept(&listener);
        let _ = read_head(&mut conn);
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
            .unwrap();
        for i in 0..5 {
            conn.write_all(format!("data: event {i}\n\n").as_bytes())
                .unwrap();
            seen_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("client saw the event");
        }
    });
    let s = setup_to("sse", origin);
    let mut client = client(&s.edge);
    client
        .write_all(b"GET /events HTTP/1.1\r\nHost: web.test\r\n\r\n")
        .unwrap();
    let (head, mut have) = read_head(&mut client);
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for i in 0..5 {
        let event = format!("data: event {i}\n\n");
        let chunk = format!("{:x}\r\n{event}\r\n", event.len());
        have = read_exact_after(&mut client, have, chunk.len());
        assert_eq!(&have[..chunk.len()], chunk.as_bytes());
        have.drain(..chunk.len());
        seen_tx.send(()).unwrap();
    }
    script.join().unwrap();
}

#[test]
fn websocket_upgrade_accepted_then_raw_bytes_both_ways() {
    let (origin, script) = scripted(|listener| {
        let mut conn = accept(&listener);
        let (head, _) = read_head(&mut conn);
        assert!(
            head.starts_with("GET /chat HTTP/1.1\r\nHost: web.test\r\n"),
            "{head}"
        );
        assert!(
            head.contains("\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
            "{head}"
        );
        assert!(
            head.ends_with("Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
            "{head}"
        );
        conn.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        )
        .unwrap();
        let ping = read_exact_after(&mut conn, Vec::new(), 4);
        assert_eq!(ping, b"ping");
        conn.write_all(b"pong").unwrap();
        // Half-close: the client stops sending, the origin still answers, then ends.
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"last words");
        conn.write_all(b"bye").unwrap();
    });
    let s = setup_to("websocket", origin);
    let mut client = client(&s.edge);
    client
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: web.test\r\nConnection: keep-alive, Upgrade\r\n\
              Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let (head, rest) = read_head(&mut client);
    assert_eq!(
        head,
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
    assert!(rest.is_empty());
    client.write_all(b"ping").unwrap();
    assert_eq!(read_exact_after(&mut client, Vec::new(), 4), b"pong");
    client.write_all(b"last words").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_to_close(&mut client, Vec::new()), b"bye");
    script.join().unwrap();
}

#[test]
fn a_refused_upgrade_is_an_ordinary_response_and_http_goes_on() {
    let (origin, script) = scripted(|listener| {
        let mut conn = accept(&listener);
        let _ = read_head(&mut conn);
        conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\nno")
            .unwrap();
        let mut conn = accept(&listener);
        let (head, _) = read_head(&mut conn);
        assert!(head.starts_with("GET /after HTTP/1.1\r\n"), "{head}");
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes")
            .unwrap();
    });
    let s = setup_to("refused-upgrade", origin);
    let mut client = client(&s.edge);
    client
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: web.test\r\nConnection: Upgrade\r\n\
              Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let (head, rest) = read_head(&mut client);
    assert_eq!(
        head,
        "HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\n"
    );
    assert_eq!(read_exact_after(&mut client, rest, 2), b"no");
    client
        .write_all(b"GET /after HTTP/1.1\r\nHost: web.test\r\n\r\n")
        .unwrap();
    let (head, rest) = read_head(&mut client);
    assert_eq!(head, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(read_exact_after(&mut client, rest, 3), b"yes");
    script.join().unwrap();
}

#[test]
fn absolute_form_and_later_minor_versions_reach_the_origin_as_origin_form_http11() {
    let (origin, script) = scripted(|listener| {
        for want in ["GET /?a=1 HTTP/1.1\r\n", "GET /b HTTP/1.1\r\n"] {
            let mut conn = accept(&listener);
            let (head, _) = read_head(&mut conn);
            assert!(head.starts_with(want), "{head}");
            // Closed after each answer, so the next request comes on a new connection.
            conn.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
        }
    });
    let s = setup_to("target-forms", origin);
    // RFC 9112 3.2.2: an absolute-form target without a path gets "/" before its query.
    // RFC 9110 2.5: HTTP/1.7 is served as HTTP/1.1.
    for request in [
        &b"GET http://web.test?a=1 HTTP/1.1\r\nHost: web.test\r\n\r\n"[..],
        b"GET /b HTTP/1.7\r\nHost: web.test\r\n\r\n",
    ] {
        let mut client = client(&s.edge);
        client.write_all(request).unwrap();
        let (head, rest) = read_head(&mut client);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(read_exact_after(&mut client, rest, 2), b"ok");
    }
    script.join().unwrap();
}

#[test]
fn a_pooled_connection_the_origin_closed_is_not_a_502() {
    let (origin, script) = scripted(|listener| {
        let mut conn = accept(&listener);
        let _ = read_head(&mut conn);
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
            .unwrap();
        // Idle keep-alive connection closed by the origin, as servers do after a timeout.
        drop(conn);
        let mut conn = accept(&listener);
        let _ = read_head(&mut conn);
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")
            .unwrap();
    });
    first_then_second("stale-pool", origin, Duration::from_millis(300));
    script.join().unwrap();
}

#[test]
fn bytes_an_origin_sends_unasked_on_an_idle_connection_reach_no_client() {
    let (origin, script) = scripted(|listener| {
        let mut conn = accept(&listener);
        let _ = read_head(&mut conn);
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
            .unwrap();
        // A response nobody asked for, on the idle keep-alive connection, which stays open.
        std::thread::sleep(Duration::from_millis(100));
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale")
            .unwrap();
        let mut fresh = accept(&listener);
        let _ = read_head(&mut fresh);
        fresh
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")
            .unwrap();
        drop(conn);
    });
    first_then_second("stray-bytes", origin, Duration::from_millis(400));
    script.join().unwrap();
}

/// Two GETs through a tunnel to `origin`, `gap` apart: the first must read "first", the
/// second must be a 200 reading "second".
fn first_then_second(name: &str, origin: SocketAddr, gap: Duration) {
    let s = setup_to(name, origin);
    let first = get(s.edge.http, "web.test", "/");
    assert_eq!(first.text(), "first");
    std::thread::sleep(gap);
    let second = get(s.edge.http, "web.test", "/");
    assert_eq!(second.status, 200);
    assert_eq!(second.text(), "second");
}

#[test]
fn gets_to_an_origin_that_closes_every_connection_after_answering_all_succeed() {
    let (origin, _script) = scripted(|listener| {
        // Answers one request per connection and closes it, although the answer says
        // keep-alive; bounded, and left blocked in `accept` when the test ends.
        for _ in 0..400 {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            let _ = read_head(&mut conn);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    let s = setup_to("closing-origin", origin);
    let http = s.edge.http;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                (0..25)
                    .map(|_| {
                        let response = get(http, "web.test", "/");
                        (response.status, response.text())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for client in clients {
        for answer in client.join().unwrap() {
            assert_eq!(answer, (200, "ok".to_owned()));
        }
    }
}

#[test]
fn requests_the_edge_must_refuse_get_an_error_page_and_never_reach_the_origin() {
    let (origin, _script) = scripted(|listener| {
        // Nothing may reach the origin.
        listener.set_nonblocking(true).unwrap();
        std::thread::sleep(Duration::from_secs(5));
        assert!(
            listener.accept().is_err(),
            "a refused request reached the origin"
        );
    });
    let s = setup_to("refusals", origin);
    for (request, status_line) in [
        &b"POST / HTTP/1.1\r\nHost: web.test\r\nContent-Length: 3\r\n\
           Transfer-Encoding: chunked\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: web.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: web.test\r\nContent-Length: -1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: web.test\r\nBad Header: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"POST / HTTP/1.0\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: web.test\r\nHost: other.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: web.test:80@evil.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: web.test:abc\r\n\r\n",
        b"GET admin HTTP/1.1\r\nHost: web.test\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: web.test\r\n\r\n",
        b"CONNECT web.test:80 HTTP/1.1\r\nHost: web.test:80\r\n\r\n",
        b"GET http://user@web.test/ HTTP/1.1\r\nHost: web.test\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: web.test\r\n\r\n",
        b"GET /private#.png HTTP/1.1\r\nHost: web.test\r\n\r\n",
        b"GET http://web.test/a#b HTTP/1.1\r\nHost: web.test\r\n\r\n",
    ]
    .map(|request| (request, "HTTP/1.1 400 Bad Request\r\n"))
    .into_iter()
    .chain([(
        &b"GET / HTTP/2.0\r\nHost: web.test\r\n\r\n"[..],
        "HTTP/1.1 505 HTTP Version Not Supported\r\n",
    )]) {
        let mut client = client(&s.edge);
        client.write_all(request).unwrap();
        let (head, rest) = read_head(&mut client);
        assert!(head.starts_with(status_line), "{head}");
        assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
        // The page, then the edge closes the connection.
        let page = read_to_close(&mut client, rest);
        assert!(
            page.ends_with(b"</html>\n"),
            "{}",
            String::from_utf8_lossy(&page)
        );
    }
}

#[test]
fn a_malformed_chunk_gets_400_and_the_connection_closes() {
    let (origin, _script) = scripted(|listener| {
        // Whether the request reaches the origin depends on timing (the edge resets the
        // stream as soon as it sees the bad chunk); it must never be answered by it.
        std::thread::sleep(Duration::from_secs(3));
        drop(listener);
    });
    let s = setup_to("bad-chunk", origin);
    let mut client = client(&s.edge);
    client
        .write_all(
            b"POST / HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n",
        )
        .unwrap();
    let (head, rest) = read_head(&mut client);
    assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
    let page = read_to_close(&mut client, rest);
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains("The request body is malformed"), "{page}");
}

#[test]
fn slow_headers_get_408_and_idle_connections_are_closed() {
    let (origin, _script) = scripted(|_listener| std::thread::sleep(Duration::from_secs(1)));
    let s = setup_with(
        "timeouts",
        &format!("  - service: http://{origin}\n"),
        &["--header-timeout", "1s", "--idle-timeout", "2s"],
    );
    let mut slow = client(&s.edge);
    slow.write_all(b"GET / HTTP/1.1\r\nHost: web").unwrap();
    let (head, _) = read_head(&mut slow);
    assert!(
        head.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{head}"
    );

    let mut idle = client(&s.edge);
    let started = std::time::Instant::now();
    assert!(read_to_close(&mut idle, Vec::new()).is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn responses_with_conflicting_framing_are_cleaned_up() {
    let (origin, script) = scripted(|listener| {
        let mut conn = accept(&listener);
        let _ = read_head(&mut conn);
        conn.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\nabc\r\n0\r\n\r\n",
        )
        .unwrap();
        let _ = read_head(&mut conn);
        conn.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n")
            .unwrap();
    });
    let s = setup_to("cl-te-response", origin);
    let mut client = client(&s.edge);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")
        .unwrap();
    let (head, rest) = read_head(&mut client);
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    assert_eq!(
        read_exact_after(&mut client, rest, 13),
        b"3\r\nabc\r\n0\r\n\r\n"
    );
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")
        .unwrap();
    assert_eq!(read_head(&mut client).0, "HTTP/1.1 204 No Content\r\n\r\n");
    script.join().unwrap();
}

#[test]
fn a_response_under_a_transfer_coding_adit_does_not_decode_is_a_502() {
    let (origin, script) = scripted(|listener| {
        for answer in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
               3\r\nabc\r\n0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        ] {
            let mut conn = accept(&listener);
            let _ = read_head(&mut conn);
            conn.write_all(answer).unwrap();
        }
    });
    let s = setup_to("gzip-coding", origin);
    // Relayed, the body would reach the client still compressed and labelled as plain.
    for _ in 0..2 {
        let response = get(s.edge.http, "web.test", "/");
        assert_eq!(response.status, 502);
        assert!(
            response.text().contains("transfer coding"),
            "{}",
            response.text()
        );
    }
    script.join().unwrap();
}

#[test]
fn an_origin_that_never_accepts_gets_502_after_the_connect_timeout() {
    // A listener whose accept queue is full drops new SYNs, so connecting hangs.
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(0).unwrap();
    let origin = listener.local_addr().unwrap().as_socket().unwrap();
    let fillers: Vec<Socket> = (0..4)
        .map(|_| {
            let filler = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            filler.set_nonblocking(true).unwrap();
            let _ = filler.connect(&origin.into());
            filler
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));

    let ingress =
        format!("  - service: http://{origin}\n    originRequest:\n      connectTimeout: 1s\n");
    let s = setup_with("connect-timeout", &ingress, &[]);
    let started = std::time::Instant::now();
    let response = get(s.edge.http, "web.test", "/");
    assert_eq!(response.status, 502);
    let text = response.text();
    let expected = format!("connecting to origin http://{origin} timed out after 1s");
    assert!(text.contains(&expected), "{text}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    drop(fillers);
}
