//! Unit tests of `tls`.

use std::future::Future;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use monoio::io::{AsyncReadRentExt, AsyncWriteRentExt, Splitable};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::*;
use crate::connector::pool::{dial, OriginConn};

struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// A fresh CA and a leaf for `localhost` and `origin.test`, signed by it.
fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // A name of its own, so that another test CA is not taken for this one's issuer.
    let name = format!("adit test CA {}", uuid::Uuid::new_v4());
    ca_params.distinguished_name.push(DnType::CommonName, name);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().unwrap();
    let names = vec!["localhost".to_owned(), "origin.test".to_owned()];
    let leaf = CertificateParams::new(names)
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        chain: vec![leaf.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    }
}

/// A PEM file removed when dropped.
struct PemFile(PathBuf);

impl PemFile {
    fn new(text: &str) -> PemFile {
        let name = format!("adit-tls-test-{}.pem", uuid::Uuid::new_v4());
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, text).unwrap();
        PemFile(path)
    }
}

impl Drop for PemFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What the echo server saw of its one connection.
#[derive(Debug, PartialEq)]
struct Seen {
    sni: Option<String>,
    alpn: Option<Vec<u8>>,
    echoed: usize,
    /// The client ended with close_notify rather than a bare socket close.
    clean_close: bool,
}

fn server_session(pki: &Pki) -> ServerConnection {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain.clone(), pki.key.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    ServerConnection::new(Arc::new(config)).unwrap()
}

/// Serves one TLS connection on `sock`: handshake, then echoes everything back until
/// the client closes. The error is the handshake's.
fn echo<S: Read + Write>(pki: &Pki, sock: S) -> Result<Seen, String> {
    let mut tls = StreamOwned::new(server_session(pki), sock);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|err| err.to_string())?;
    }
    let sni = tls.conn.server_name().map(str::to_owned);
    let alpn = tls.conn.alpn_protocol().map(<[u8]>::to_vec);

    let mut buf = vec![0u8; 64 * 1024];
    let mut echoed = 0;
    let clean_close = loop {
        match tls.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => {
                tls.write_all(&buf[..n]).unwrap();
                echoed += n;
            }
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => break false,
            Err(err) => panic!("echo server: {err}"),
        }
    };
    Ok(Seen {
        sni,
        alpn,
        echoed,
        clean_close,
    })
}

/// An echo server for one TCP connection on 127.0.0.1.
fn tcp_server(pki: Pki) -> (u16, JoinHandle<Result<Seen, String>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        echo(&pki, sock)
    });
    (port, server)
}

fn https(host: &str, port: u16) -> Service {
    Service::Http {
        tls: true,
        host: host.to_owned(),
        port,
    }
}

fn with_ca(ca: &PemFile) -> OriginSettings {
    OriginSettings {
        ca_pool: Some(ca.0.clone()),
        ..OriginSettings::default()
    }
}

/// Dials `service` with the TLS settings its rule would get.
async fn dial_tls(service: &Service, settings: &OriginSettings) -> Result<OriginConn, String> {
    let tls = origin_tls(service, settings).unwrap().for_worker();
    dial(service, settings, Some(&tls))
        .await
        .map_err(|err| err.to_string())
}

fn run<F: Future>(test: F) -> F::Output {
    crate::runtime::block_on(async {
        monoio::time::timeout(Duration::from_secs(30), test)
            .await
            .expect("test timed out")
    })
    .unwrap()
}

/// One echo round trip of `data` on `conn`, written and read through its split halves
/// at the same time; the halves are reunited after.
async fn round_trip(conn: OriginConn, data: Vec<u8>) -> (OriginConn, Vec<u8>) {
    let len = data.len();
    let (mut rd, mut wr) = conn.into_split();
    let write = async {
        let (result, _) = wr.write_all(data).await;
        result.unwrap();
    };
    let read = async {
        let (result, echoed) = rd.read_exact(vec![0u8; len]).await;
        result.unwrap();
        echoed
    };
    let ((), echoed) = monoio::join!(write, read);
    (rd.reunite(wr).ok().unwrap(), echoed)
}

#[test]
fn split_halves_run_concurrently_and_reunite() {
    let pki = pki();
    let ca = PemFile::new(&pki.ca_pem);
    let (port, server) = tcp_server(pki);
    let service = https("localhost", port);
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();

    run(async {
        let conn = dial_tls(&service, &with_ca(&ca)).await.unwrap();
        assert!(matches!(conn, OriginConn::Tls(_)));
        // 1 MiB is far more than the socket buffers hold: unless the response is read
        // while the request is written, both sides stall.
        let (conn, echoed) = round_trip(conn, big.clone()).await;
        assert!(echoed == big, "the echo differs");
        let (mut conn, echoed) = round_trip(conn, b"second request".to_vec()).await;
        assert_eq!(echoed, b"second request");
        assert!(conn.is_reusable());
        conn.shutdown().await.unwrap();
    });

    let seen = server.join().unwrap().unwrap();
    assert_eq!(
        seen,
        Seen {
            sni: Some("localhost".to_owned()),
            alpn: Some(b"http/1.1".to_vec()),
            echoed: 1024 * 1024 + 14,
            clean_close: true,
        }
    );
}

#[test]
fn an_unknown_ca_fails_the_handshake() {
    let (port, server) = tcp_server(pki());
    let other = PemFile::new(&pki().ca_pem);
    let service = https("localhost", port);

    let err = run(dial_tls(&service, &with_ca(&other))).err().unwrap();
    assert_eq!(
        err,
        format!(
            "TLS handshake with origin https://localhost:{port} failed: \
                 invalid peer certificate: UnknownIssuer"
        )
    );
    // The origin was told why.
    assert_eq!(
        server.join().unwrap().unwrap_err(),
        "received fatal alert: UnknownCA"
    );
}

#[test]
fn no_tls_verify_accepts_any_certificate() {
    let (port, server) = tcp_server(pki());
    // The certificate names neither this address nor a CA the connector knows.
    let service = https("127.0.0.1", port);
    let settings = OriginSettings {
        no_tls_verify: true,
        ..OriginSettings::default()
    };

    run(async {
        let conn = dial_tls(&service, &settings).await.unwrap();
        let (mut conn, echoed) = round_trip(conn, b"hello".to_vec()).await;
        assert_eq!(echoed, b"hello");
        conn.shutdown().await.unwrap();
    });
    let seen = server.join().unwrap().unwrap();
    assert_eq!(seen.sni, None, "an IP address is not sent as SNI");
    assert_eq!(seen.echoed, 5);
}

#[test]
fn origin_server_name_is_sent_and_verified() {
    let pki = pki();
    let ca = PemFile::new(&pki.ca_pem);
    let (port, server) = tcp_server(pki);
    let service = https("127.0.0.1", port);
    let settings = OriginSettings {
        origin_server_name: Some("origin.test".to_owned()),
        ..with_ca(&ca)
    };

    run(async {
        let conn = dial_tls(&service, &settings).await.unwrap();
        let (mut conn, echoed) = round_trip(conn, b"x".to_vec()).await;
        assert_eq!(echoed, b"x");
        conn.shutdown().await.unwrap();
    });
    let seen = server.join().unwrap().unwrap();
    assert_eq!(seen.sni.as_deref(), Some("origin.test"));
}

#[test]
fn unix_tls_is_verified_as_localhost() {
    let pki = pki();
    let ca = PemFile::new(&pki.ca_pem);
    let path = std::env::temp_dir().join(format!("adit-tls-{}.sock", uuid::Uuid::new_v4()));
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || echo(&pki, listener.accept().unwrap().0));
    let service = Service::Unix {
        tls: true,
        path: path.clone(),
    };

    run(async {
        let conn = dial_tls(&service, &with_ca(&ca)).await.unwrap();
        let (mut conn, echoed) = round_trip(conn, b"over a unix socket".to_vec()).await;
        assert_eq!(echoed, b"over a unix socket");
        conn.shutdown().await.unwrap();
    });
    let _ = std::fs::remove_file(&path);
    let seen = server.join().unwrap().unwrap();
    assert_eq!(seen.sni.as_deref(), Some(UNIX_SERVER_NAME));
    assert!(seen.clean_close);
}

/// Sends `bye` and closes, with or without close_notify first.
fn closing_server(pki: Pki, close_notify: bool) -> (u16, JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        let mut tls = StreamOwned::new(server_session(&pki), sock);
        tls.write_all(b"bye").unwrap();
        if close_notify {
            tls.conn.send_close_notify();
        }
        tls.flush().unwrap();
    });
    (port, server)
}

#[test]
fn end_of_stream_with_and_without_close_notify_reads_as_eof() {
    for close_notify in [true, false] {
        let pki = pki();
        let ca = PemFile::new(&pki.ca_pem);
        let (port, server) = closing_server(pki, close_notify);
        run(async {
            let mut conn = dial_tls(&https("localhost", port), &with_ca(&ca))
                .await
                .unwrap();
            let (result, bye) = conn.read_exact(vec![0u8; 3]).await;
            result.unwrap();
            assert_eq!(bye, b"bye");
            let (result, _) = conn.read(Vec::with_capacity(16)).await;
            assert_eq!(result.unwrap(), 0, "close_notify: {close_notify}");
            assert!(!conn.is_reusable());
        });
        server.join().unwrap();
    }
}

#[test]
fn configs_are_built_per_rule_and_name_a_bad_ca_pool() {
    let mut ingress = Ingress::single("https://localhost:8443").unwrap();
    let mut plain = ingress.rules[0].clone();
    plain.service = Service::HelloWorld;
    ingress.rules.insert(0, plain);
    let configs = origin_configs(&ingress).unwrap();
    assert!(configs[0].is_none());
    let tls = configs[1].as_ref().unwrap();
    assert_eq!(tls.server_name, ServerName::try_from("localhost").unwrap());
    assert_eq!(tls.config.alpn_protocols, vec![b"http/1.1".to_vec()]);

    let missing = std::env::temp_dir().join(format!("adit-{}.pem", uuid::Uuid::new_v4()));
    ingress.rules[1].origin.ca_pool = Some(missing.clone());
    assert_eq!(
        origin_configs(&ingress).err().unwrap().to_string(),
        format!(
            "ingress rule 2: caPool {} cannot be read: No such file or directory (os error 2)",
            missing.display()
        )
    );

    let empty = PemFile::new("no certificates here\n");
    ingress.rules[1].origin.ca_pool = Some(empty.0.clone());
    assert_eq!(
        origin_configs(&ingress).err().unwrap().to_string(),
        format!(
            "ingress rule 2: caPool {} holds no PEM certificates",
            empty.0.display()
        )
    );
}
