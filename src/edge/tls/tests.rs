//! Unit tests of `tls`.

use std::io::{Read, Write};
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use rcgen::{CertificateParams, KeyPair};

use super::*;

/// A scratch directory removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let path = std::env::temp_dir().join(format!("adit-edge-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate for `names`, written as `{stem}.pem` and `{stem}.key`.
fn self_signed(dir: &Dir, stem: &str, names: &[&str]) -> (CertFiles, Vec<u8>) {
    let key = KeyPair::generate().unwrap();
    let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let cert = CertificateParams::new(names)
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let files = CertFiles {
        cert: dir.write(&format!("{stem}.pem"), &cert.pem()),
        key: dir.write(&format!("{stem}.key"), &key.serialize_pem()),
    };
    (files, cert.der().to_vec())
}

#[test]
fn dns_names_are_read_from_the_subject_alt_name() {
    let dir = Dir::new();
    let names = ["a.test", "*.B.Test", "127.0.0.1", "Mixed.Case.test"];
    let (_, der) = self_signed(&dir, "a", &names);
    assert_eq!(
        dns_names(&der),
        Some(vec![
            "a.test".to_owned(),
            "*.b.test".to_owned(),
            "mixed.case.test".to_owned()
        ])
    );

    let (_, der) = self_signed(&dir, "none", &[]);
    assert_eq!(dns_names(&der), Some(Vec::new()));
    assert_eq!(dns_names(&der[..der.len() - 1]), None);
    assert_eq!(dns_names(b"\x30\x84\xff\xff\xff\xff"), None);
}

#[test]
fn certificates_are_picked_by_sni() {
    let dir = Dir::new();
    let (a, _) = self_signed(&dir, "a", &["a.test", "www.a.test"]);
    let (b, _) = self_signed(&dir, "b", &["*.b.test", "a.test"]);
    let resolver = CertResolver::load(&[a, b]).unwrap().unwrap();

    let cases = [
        (Some("a.test"), 0),
        (Some("WWW.A.Test"), 0),
        (Some("a.test."), 0),
        (Some("x.b.test"), 1),
        (Some("X.B.TEST"), 1),
        // A wildcard stands for exactly one label.
        (Some("b.test"), 0),
        (Some("y.x.b.test"), 0),
        (Some(".b.test"), 0),
        (Some("nobody.test"), 0),
        (None, 0),
    ];
    for (name, expected) in cases {
        assert_eq!(resolver.pick(name), expected, "{name:?}");
    }
    assert_eq!(resolver.chain(1).map(<[_]>::len), Some(1));
    assert!(resolver.chain(2).is_none());
}

#[test]
fn no_files_no_resolver() {
    assert!(CertResolver::load(&[]).unwrap().is_none());
}

#[test]
fn bad_files_are_named() {
    let dir = Dir::new();
    let (good, _) = self_signed(&dir, "good", &["a.test"]);
    let (other, _) = self_signed(&dir, "other", &["a.test"]);
    let error = |files: CertFiles| CertResolver::load(&[files]).unwrap_err().to_string();

    let missing = dir.0.join("missing.pem");
    let files = CertFiles {
        cert: missing.clone(),
        key: good.key.clone(),
    };
    assert_eq!(
        error(files),
        format!(
            "cannot read {}: No such file or directory (os error 2)",
            missing.display()
        )
    );

    let empty = dir.write("empty.pem", "no PEM here\n");
    let files = CertFiles {
        cert: empty.clone(),
        key: good.key.clone(),
    };
    assert_eq!(
        error(files),
        format!("{} holds no PEM certificate", empty.display())
    );

    let files = CertFiles {
        cert: good.cert.clone(),
        key: empty.clone(),
    };
    assert_eq!(
        error(files),
        format!("{} holds no PEM private key", empty.display())
    );

    let files = CertFiles {
        cert: good.cert.clone(),
        key: other.key.clone(),
    };
    assert_eq!(
        error(files),
        format!(
            "the private key in {} does not match the certificate in {}",
            other.key.display(),
            good.cert.display()
        )
    );
}

/// A rustls client that trusts `cert`, sends `data` right after the handshake and then
/// reads until the server closes. Returns what it read.
fn client(port: u16, cert: Vec<u8>, data: &'static [u8]) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(cert)).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from("a.test").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut tls = rustls::StreamOwned::new(conn, sock);
        tls.write_all(data).unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out);
        out
    })
}

#[test]
fn a_session_taken_apart_and_rebuilt_keeps_what_it_had_buffered() {
    let dir = Dir::new();
    let (files, der) = self_signed(&dir, "a", &["a.test"]);
    let resolver = CertResolver::load(&[files]).unwrap().unwrap();
    let config = server_config(resolver).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = client(port, der, b"hello world");

    crate::runtime::block_on(async move {
        let listener = monoio::net::TcpListener::from_std(listener).unwrap();
        let (sock, _) = listener.accept().await.unwrap();
        let session = ServerConnection::new(config).unwrap();
        let mut tls = TlsStream::handshake(sock, session).await.unwrap();
        assert_eq!(
            tls.with_session(|s| s.alpn_protocol().map(<[u8]>::to_vec)),
            None,
            "the client offered no protocol"
        );

        // Five bytes only: the rest stays inside the session.
        let (n, first) = tls.read(Vec::with_capacity(5)).await;
        assert_eq!((n.unwrap(), first.as_slice()), (5, &b"hello"[..]));

        let (io, session, incoming) = tls.into_parts();
        let fd = io.into_raw_fd();
        // SAFETY: `into_raw_fd` released the descriptor, so this is its only owner.
        let std_sock = unsafe { std::net::TcpStream::from_raw_fd(fd) };
        let io = TcpStream::from_std(std_sock).unwrap();
        let mut tls = TlsStream::from_parts(io, session, incoming);

        let (n, rest) = tls.read(Vec::with_capacity(64)).await;
        assert_eq!((n.unwrap(), rest.as_slice()), (6, &b" world"[..]));
        let (result, _) = tls.write_all(b"bye".to_vec()).await;
        result.unwrap();
        monoio::io::AsyncWriteRent::shutdown(&mut tls)
            .await
            .unwrap();
    })
    .unwrap();
    assert_eq!(client.join().unwrap(), b"bye");
}
