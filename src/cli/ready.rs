//! `adit tunnel ready --metrics ADDR`: asks a connector's metrics server whether it has a
//! registered connection, for scripts and container health checks. Exit 0 when it has;
//! otherwise exit 1 with one line on standard error saying why.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

/// How long connecting, sending and reading may each take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Most bytes of an answer read; `/ready` answers well under this.
const MAX_ANSWER: u64 = 64 * 1024;

pub fn run(metrics: &str) -> anyhow::Result<ExitCode> {
    match check(metrics) {
        Ok(connections) => {
            outln!("ready: {connections} connections registered")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            eprintln!("{why}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The registered connection count when ready, else the reason.
fn check(metrics: &str) -> Result<u64, String> {
    let authority = metrics
        .strip_prefix("http://")
        .unwrap_or(metrics)
        .trim_end_matches('/');
    let (status, body) = get_ready(authority).map_err(|err| match err.kind() {
        // A server that accepts but never answers: the OS's "would block" says nothing.
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            format!("no answer from {authority} within {}s", TIMEOUT.as_secs())
        }
        _ => format!("cannot reach {authority}: {err}"),
    })?;
    let connections = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|answer| answer["readyConnections"].as_u64());
    match (status, connections) {
        (200, Some(n)) => Ok(n),
        (503, n) => Err(format!(
            "not ready: {} connections registered",
            n.unwrap_or(0)
        )),
        (200, None) => Err(format!(
            "{authority}/ready answered 200 without a connection count"
        )),
        (other, _) => Err(format!("not ready: {authority}/ready answered {other}")),
    }
}

/// `GET /ready`: the status and the body.
fn get_ready(authority: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let addrs: Vec<SocketAddr> = authority.to_socket_addrs()?.collect();
    let mut last = std::io::Error::other("the address resolves to nothing");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(err) => last = err,
        }
    }
    let mut stream = stream.ok_or(last)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let request = format!("GET /ready HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;

    let mut answer = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut answer)?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let invalid = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_owned());
    match response.parse(&answer) {
        Ok(httparse::Status::Complete(len)) => {
            let status = response.code.unwrap_or_default();
            Ok((status, answer.get(len..).unwrap_or_default().to_vec()))
        }
        Ok(httparse::Status::Partial) => Err(invalid("the answer ended early")),
        Err(err) => Err(invalid(&format!("not an HTTP answer: {err}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// A one-shot server that answers the next connection with `answer`.
    fn answer_once(answer: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        addr.to_string()
    }

    #[test]
    fn reads_the_count_or_says_why_not() {
        let ready = answer_once(
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n\
             {\"status\":200,\"readyConnections\":2,\"connectorId\":\"x\"}",
        );
        assert_eq!(check(&format!("http://{ready}/")), Ok(2));

        let not_ready = answer_once(
            "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n\
             {\"status\":503,\"readyConnections\":0,\"connectorId\":\"x\"}",
        );
        assert_eq!(
            check(&not_ready),
            Err("not ready: 0 connections registered".to_owned())
        );

        let other = answer_once("HTTP/1.1 404 Not Found\r\n\r\n");
        assert_eq!(
            check(&other),
            Err(format!("not ready: {other}/ready answered 404"))
        );

        // Accepted (by the backlog) but never answered.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        assert_eq!(
            check(&addr.to_string()),
            Err(format!("no answer from {addr} within 3s"))
        );
        drop(silent);

        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let err = check(&addr.to_string()).unwrap_err();
        assert!(err.starts_with(&format!("cannot reach {addr}: ")), "{err}");
    }
}
