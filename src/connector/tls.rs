//! TLS to origins (`https://` and `unix+tls:` services): the client configuration of each
//! ingress rule, built once when the connector starts, and a rustls client session over a
//! monoio stream.
//!
//! [`TlsStream`] must work the way [`super::origin`] uses a plain socket: split into a read
//! half and a write half that run at the same time in one task (the response is read while
//! the request body is still being written), then reunited and pooled. Both halves reach the
//! same `TlsStream`, so its state is split by who may touch it:
//!
//! - the rustls session sits in a `RefCell` that both sides borrow only between awaits, never
//!   across one, so a borrow can not overlap another;
//! - only the read side reads the socket, into its own ciphertext buffer, and feeds rustls;
//! - only the write side (`write`, `flush`, `shutdown`) writes the socket, from its own
//!   buffer. Records the read side makes rustls queue (a key update answer, an alert) wait
//!   in the session and leave at the next write, which TLS 1.3 allows: a key update must be
//!   answered before the next application data, not at once.
//!
//! The handshake runs inside [`TlsStream::connect`], before the stream is ever split, so
//! there it reads and writes alone.

use std::cell::{Cell, RefCell};
use std::io::{self, BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, IoVecWrapper, IoVecWrapperMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Split};
use monoio::BufResult;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};
use rustls::{Error as TlsError, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::ingress::{Ingress, IngressError, OriginSettings, Service};
use crate::runtime::io::read_more;

/// The name a `unix+tls:` origin is sent as SNI and verified as when its rule sets no
/// `originServerName`: a socket path names no host, and local services are commonly
/// certified for `localhost`.
pub const UNIX_SERVER_NAME: &str = "localhost";

/// The only application protocol offered: the connector speaks HTTP/1.1 to origins.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// TLS sessions kept for resumption, per rule and worker.
const SESSION_CACHE: usize = 64;

/// How one rule's origin is reached over TLS.
#[derive(Clone)]
pub struct OriginTls {
    pub config: Arc<ClientConfig>,
    /// Sent as SNI (unless it is an IP address) and verified against the certificate.
    pub server_name: ServerName<'static>,
}

impl OriginTls {
    /// The same settings with a session cache of its own, for one worker: resuming a
    /// session then never takes a lock another worker holds.
    pub fn for_worker(&self) -> OriginTls {
        let mut config = ClientConfig::clone(&self.config);
        config.resumption = Resumption::in_memory_sessions(SESSION_CACHE);
        OriginTls {
            config: Arc::new(config),
            server_name: self.server_name.clone(),
        }
    }
}

/// The TLS settings of every rule of `ingress`, by rule index; `None` for rules whose
/// service does not use TLS. Fails on the first rule whose settings are not usable (an
/// unreadable or empty `caPool`, say).
pub fn origin_configs(ingress: &Ingress) -> Result<Vec<Option<OriginTls>>, IngressError> {
    ingress
        .rules
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            let tls = matches!(
                rule.service,
                Service::Http { tls: true, .. } | Service::Unix { tls: true, .. }
            );
            if !tls {
                return Ok(None);
            }
            origin_tls(&rule.service, &rule.origin)
                .map(Some)
                .map_err(|message| IngressError {
                    rule: index + 1,
                    message,
                })
        })
        .collect()
}

/// Builds the TLS settings for one service; the error is a sentence naming the setting.
pub fn origin_tls(service: &Service, settings: &OriginSettings) -> Result<OriginTls, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("cannot build the TLS configuration: {err}"))?;
    let mut config = if settings.no_tls_verify {
        let verifier = AnyCertificate {
            algorithms: provider.signature_verification_algorithms,
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth()
    } else {
        let mut roots: RootCertStore = webpki_roots::TLS_SERVER_ROOTS.iter().cloned().collect();
        if let Some(path) = &settings.ca_pool {
            add_ca_pool(&mut roots, path)?;
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|err| format!("cannot build the TLS certificate verifier: {err}"))?;
        builder.with_webpki_verifier(verifier).with_no_client_auth()
    };
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];

    let (name, setting) = match (&settings.origin_server_name, service) {
        (Some(name), _) => (name.as_str(), "originServerName"),
        (None, Service::Http { host, .. }) => (host.as_str(), "the service host"),
        (None, _) => (UNIX_SERVER_NAME, "the default server name"),
    };
    let server_name = ServerName::try_from(name.to_owned())
        .map_err(|_| format!("{setting} {name:?} is not a valid TLS server name"))?;
    Ok(OriginTls {
        config: Arc::new(config),
        server_name,
    })
}

/// Adds every certificate of the PEM file at `path` to `roots`.
fn add_ca_pool(roots: &mut RootCertStore, path: &Path) -> Result<(), String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|err| format!("caPool {shown} cannot be read: {err}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("caPool {shown} is not valid PEM: {err}"))?;
    if certs.is_empty() {
        return Err(format!("caPool {shown} holds no PEM certificates"));
    }
    for (index, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|err| {
            let number = index + 1;
            format!("caPool {shown}: certificate {number} is not a usable CA: {err}")
        })?;
    }
    Ok(())
}

/// `noTLSVerify`: any certificate is accepted, for any name, but the handshake signatures
/// are still checked, so the peer must hold the key of the certificate it presents.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A TLS client session over the monoio stream `S`. See the module documentation for how
/// its read and write sides share it.
pub struct TlsStream<S> {
    io: S,
    session: RefCell<ClientConnection>,
    /// Ciphertext read from the socket that rustls has not taken yet. Read side only; it is
    /// moved out while a socket read is in flight.
    incoming: RefCell<BytesMut>,
    /// Ciphertext on its way to the socket. Write side only; moved out while in flight.
    outgoing: Cell<Vec<u8>>,
}

impl<S: AsyncReadRent + AsyncWriteRent> TlsStream<S> {
    /// Runs the whole handshake on `io`. The error says why it failed, in rustls' words for
    /// TLS failures ("invalid peer certificate: UnknownIssuer", say).
    pub async fn connect(io: S, tls: &OriginTls) -> io::Result<TlsStream<S>> {
        let session = ClientConnection::new(tls.config.clone(), tls.server_name.clone())
            .map_err(io::Error::other)?;
        let mut stream = TlsStream {
            io,
            session: RefCell::new(session),
            incoming: RefCell::new(BytesMut::new()),
            outgoing: Cell::new(Vec::new()),
        };
        match stream.handshake().await {
            Ok(()) => Ok(stream),
            Err(err) => {
                // Tell the origin why (rustls queued an alert), if it still listens.
                let _ = stream.flush_tls().await;
                Err(err)
            }
        }
    }

    async fn handshake(&mut self) -> io::Result<()> {
        loop {
            self.flush_tls().await?;
            if !self.session.borrow().is_handshaking() {
                return Ok(());
            }
            let (result, buf) = read_more(&mut self.io, self.incoming.take()).await;
            *self.incoming.borrow_mut() = buf;
            if result? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the origin closed the connection during the handshake",
                ));
            }
            self.feed()?;
        }
    }

    /// The stream the session runs over.
    pub fn io(&self) -> &S {
        &self.io
    }

    /// Whether nothing received is waiting: no ciphertext in the buffer and no plaintext
    /// in the session. A pooled connection must be in this state to be reused.
    pub fn is_drained(&self) -> bool {
        if !self.incoming.borrow().is_empty() {
            return false;
        }
        let mut session = self.session.borrow_mut();
        let pending = session.reader().fill_buf().map(|plain| plain.len());
        matches!(pending, Err(ref err) if err.kind() == io::ErrorKind::WouldBlock)
    }

    /// Gives back the memory of the socket buffers while the connection sits idle.
    pub fn release_buffers(&self) {
        let mut incoming = self.incoming.borrow_mut();
        if incoming.is_empty() {
            *incoming = BytesMut::new();
        }
        drop(self.outgoing.take());
    }

    /// Hands rustls the buffered ciphertext and processes it. Returns how many bytes it
    /// took; it stops early when rustls holds as much plaintext as it will buffer.
    fn feed(&self) -> io::Result<usize> {
        let mut incoming = self.incoming.borrow_mut();
        let mut session = self.session.borrow_mut();
        let mut fed = 0;
        while !incoming.is_empty() {
            let mut rest: &[u8] = &incoming;
            match session.read_tls(&mut rest) {
                Ok(0) => break,
                Ok(n) => {
                    incoming.advance(n);
                    fed += n;
                }
                // The plaintext buffer is full: it must be read before more is fed.
                Err(_) if fed > 0 => break,
                Err(err) => return Err(err),
            }
            session
                .process_new_packets()
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
        }
        Ok(fed)
    }

    /// Copies received plaintext into `buf`. `Some(0)` once the session has ended (cleanly
    /// or not: the HTTP layer judges a short body by its framing), `None` when more
    /// ciphertext is needed.
    fn take_plaintext<T: IoBufMut>(&self, buf: &mut T) -> io::Result<Option<usize>> {
        let room = buf.bytes_total();
        let mut session = self.session.borrow_mut();
        let mut reader = session.reader();
        let copied = match reader.fill_buf() {
            Ok(plain) => {
                let n = plain.len().min(room);
                // SAFETY: `write_ptr` is valid for `bytes_total` writable bytes and `n` is at
                // most that; the plaintext is rustls' own buffer, so the two do not overlap.
                unsafe { std::ptr::copy_nonoverlapping(plain.as_ptr(), buf.write_ptr(), n) };
                n
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                tracing::debug!("origin closed its TLS connection without close_notify");
                0
            }
            Err(err) => return Err(err),
        };
        reader.consume(copied);
        // SAFETY: the first `copied` bytes at `write_ptr` were just written.
        unsafe { buf.set_init(copied) };
        Ok(Some(copied))
    }

    /// Writes every record rustls has queued to the socket. Write side only.
    async fn flush_tls(&mut self) -> io::Result<()> {
        loop {
            let mut out = self.outgoing.take();
            out.clear();
            {
                let mut session = self.session.borrow_mut();
                while session.wants_write() {
                    session.write_tls(&mut out)?;
                }
            }
            if out.is_empty() {
                self.outgoing.set(out);
                return Ok(());
            }
            // The read side may queue more records while this write is in flight; the
            // loop takes them too.
            let (result, out) = self.io.write_all(out).await;
            self.outgoing.set(out);
            result?;
        }
    }
}

// SAFETY: monoio's split gives both halves the same stream, as it does for its own sockets;
// what each side then touches is disjoint or guarded. The read methods use only `io`'s read
// side, `incoming` and short `session` borrows; the write methods only `io`'s write side,
// `outgoing` and short `session` borrows. `S` is `Split`, so its reads and writes may run at
// the same time, and no `RefCell` borrow or `Cell` value is held across an await, so the two
// sides (one task, one thread) never hold the same one at once.
unsafe impl<S: Split> Split for TlsStream<S> {}

impl<S: AsyncReadRent + AsyncWriteRent> AsyncReadRent for TlsStream<S> {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        loop {
            match self.take_plaintext(&mut buf) {
                Ok(Some(n)) => return (Ok(n), buf),
                Ok(None) => {}
                Err(err) => return (Err(err), buf),
            }
            if !self.incoming.borrow().is_empty() {
                match self.feed() {
                    Ok(0) => {
                        let stalled = io::Error::other("rustls took none of the buffered input");
                        return (Err(stalled), buf);
                    }
                    Ok(_) => continue,
                    Err(err) => return (Err(err), buf),
                }
            }
            let (result, incoming) = read_more(&mut self.io, self.incoming.take()).await;
            *self.incoming.borrow_mut() = incoming;
            let fed = match result {
                // End of file: an empty read tells rustls, which then reports whether a
                // close_notify came first.
                Ok(0) => self.session.borrow_mut().read_tls(&mut io::empty()),
                Ok(_) => self.feed(),
                Err(err) => Err(err),
            };
            if let Err(err) = fed {
                return (Err(err), buf);
            }
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        // One iovec at a time: a short read is a valid answer.
        let buf = match IoVecWrapperMut::new(buf) {
            Ok(buf) => buf,
            Err(buf) => return (Ok(0), buf),
        };
        let (result, buf) = self.read(buf).await;
        (result, buf.into_inner())
    }
}

impl<S: AsyncReadRent + AsyncWriteRent> AsyncWriteRent for TlsStream<S> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // Queued records go first, so that rustls has room for all it can take of `buf`.
        if let Err(err) = self.flush_tls().await {
            return (Err(err), buf);
        }
        // SAFETY: `read_ptr` is valid for `bytes_init` bytes while `buf` lives, and `buf` is
        // neither moved nor changed while the slice is in use.
        let data = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let taken = self.session.borrow_mut().writer().write(data);
        let result = match taken {
            Ok(n) => self.flush_tls().await.map(|()| n),
            Err(err) => Err(err),
        };
        (result, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let buf = match IoVecWrapper::new(buf) {
            Ok(buf) => buf,
            Err(buf) => return (Ok(0), buf),
        };
        let (result, buf) = self.write(buf).await;
        (result, buf.into_inner())
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.flush_tls().await?;
        self.io.flush().await
    }

    /// Sends close_notify, then shuts the socket's write side.
    async fn shutdown(&mut self) -> io::Result<()> {
        self.session.borrow_mut().send_close_notify();
        self.flush_tls().await?;
        self.io.shutdown().await
    }
}

#[cfg(test)]
mod tests;
