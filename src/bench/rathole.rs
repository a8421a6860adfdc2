//! rathole as a peer: a server (the public side, where the load enters) and a client (next to
//! the origins), once over rathole's plain TCP transport and once over its TLS transport, so
//! the comparison with adit's tunnel (always encrypted) can be made against both.
//!
//! The TLS transport wants a PKCS#12 identity on the server and the root to trust on the
//! client. The bench makes a throwaway self-signed certificate for `localhost` with the
//! `openssl` command into the run's scratch directory; the client trusts exactly that
//! certificate and checks the name `localhost`, so the handshake is a real, verified one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The name rathole's client checks in the server's certificate.
pub const TLS_HOSTNAME: &str = "localhost";
/// The password of the PKCS#12 file; it only guards a throwaway key in a scratch directory.
const PKCS12_PASSWORD: &str = "adit-bench";

/// How rathole's server and client talk to each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls(TlsFiles),
}

/// The files of rathole's TLS transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate and key, as PKCS#12.
    pub pkcs12: PathBuf,
    /// The certificate the client trusts (the same, self-signed one).
    pub trusted_root: PathBuf,
}

/// Where one rathole pair listens and forwards.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    /// The server's control channel, which the client dials.
    pub control: SocketAddr,
    /// The server's HTTP entry, forwarded to `origin`.
    pub http: SocketAddr,
    pub origin: SocketAddr,
    /// The server's TCP entry, forwarded to `echo`.
    pub tcp: SocketAddr,
    pub echo: SocketAddr,
}

/// The server's and the client's config files, sharing `token`.
pub fn configs(addrs: &Addresses, token: &str, transport: &Transport) -> (String, String) {
    let Addresses {
        control,
        http,
        origin,
        tcp,
        echo,
    } = addrs;
    let (server_transport, client_transport) = match transport {
        Transport::Tcp => (String::new(), String::new()),
        Transport::Tls(files) => (
            format!(
                "[server.transport]\ntype = \"tls\"\n\n[server.transport.tls]\n\
                 pkcs12 = {}\npkcs12_password = \"{PKCS12_PASSWORD}\"\n\n",
                toml_path(&files.pkcs12)
            ),
            format!(
                "[client.transport]\ntype = \"tls\"\n\n[client.transport.tls]\n\
                 trusted_root = {}\nhostname = \"{TLS_HOSTNAME}\"\n\n",
                toml_path(&files.trusted_root)
            ),
        ),
    };
    let server = format!(
        "[server]\nbind_addr = \"{control}\"\ndefault_token = \"{token}\"\n\n\
         {server_transport}\
         [server.services.http]\nbind_addr = \"{http}\"\n\n\
         [server.services.tcp]\nbind_addr = \"{tcp}\"\n"
    );
    let client = format!(
        "[client]\nremote_addr = \"{control}\"\ndefault_token = \"{token}\"\n\n\
         {client_transport}\
         [client.services.http]\nlocal_addr = \"{origin}\"\n\n\
         [client.services.tcp]\nlocal_addr = \"{echo}\"\n"
    );
    (server, client)
}

/// A path as a TOML string, quoted and escaped as TOML needs.
fn toml_path(path: &Path) -> String {
    toml::Value::String(path.to_string_lossy().into_owned()).to_string()
}

/// Makes a self-signed certificate for [`TLS_HOSTNAME`] and its PKCS#12 identity in `dir`
/// with the `openssl` command; the error says what failed, for the skip note.
pub fn make_identity(dir: &Path) -> Result<TlsFiles, String> {
    let subject = format!("/CN={TLS_HOSTNAME}");
    let san = format!("subjectAltName=DNS:{TLS_HOSTNAME}");
    let password = format!("pass:{PKCS12_PASSWORD}");
    // Run in `dir` with bare file names, so no path needs to be valid UTF-8.
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &subject,
            "-addext",
            &san,
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ],
    )?;
    openssl(
        dir,
        &[
            "pkcs12",
            "-export",
            "-inkey",
            "key.pem",
            "-in",
            "cert.pem",
            "-passout",
            &password,
            "-out",
            "identity.p12",
        ],
    )?;
    Ok(TlsFiles {
        pkcs12: dir.join("identity.p12"),
        trusted_root: dir.join("cert.pem"),
    })
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run openssl (needed for rathole's TLS transport): {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or("").trim().to_owned();
    Err(format!(
        "openssl {} failed ({}): {last}",
        args.first().unwrap_or(&""),
        output.status
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> Addresses {
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        Addresses {
            control: addr(1),
            http: addr(2),
            origin: addr(3),
            tcp: addr(4),
            echo: addr(5),
        }
    }

    #[test]
    fn plain_tcp_configs() {
        let (server, client) = configs(&addrs(), "t0k", &Transport::Tcp);
        assert_eq!(
            server,
            "[server]\nbind_addr = \"127.0.0.1:1\"\ndefault_token = \"t0k\"\n\n\
             [server.services.http]\nbind_addr = \"127.0.0.1:2\"\n\n\
             [server.services.tcp]\nbind_addr = \"127.0.0.1:4\"\n"
        );
        assert_eq!(
            client,
            "[client]\nremote_addr = \"127.0.0.1:1\"\ndefault_token = \"t0k\"\n\n\
             [client.services.http]\nlocal_addr = \"127.0.0.1:3\"\n\n\
             [client.services.tcp]\nlocal_addr = \"127.0.0.1:5\"\n"
        );
    }

    #[test]
    fn tls_configs() {
        let files = TlsFiles {
            pkcs12: PathBuf::from("/tmp/b/identity.p12"),
            trusted_root: PathBuf::from("/tmp/b/cert.pem"),
        };
        let (server, client) = configs(&addrs(), "t0k", &Transport::Tls(files));
        assert_eq!(
            server,
            "[server]\nbind_addr = \"127.0.0.1:1\"\ndefault_token = \"t0k\"\n\n\
             [server.transport]\ntype = \"tls\"\n\n[server.transport.tls]\n\
             pkcs12 = \"/tmp/b/identity.p12\"\npkcs12_password = \"adit-bench\"\n\n\
             [server.services.http]\nbind_addr = \"127.0.0.1:2\"\n\n\
             [server.services.tcp]\nbind_addr = \"127.0.0.1:4\"\n"
        );
        assert_eq!(
            client,
            "[client]\nremote_addr = \"127.0.0.1:1\"\ndefault_token = \"t0k\"\n\n\
             [client.transport]\ntype = \"tls\"\n\n[client.transport.tls]\n\
             trusted_root = \"/tmp/b/cert.pem\"\nhostname = \"localhost\"\n\n\
             [client.services.http]\nlocal_addr = \"127.0.0.1:3\"\n\n\
             [client.services.tcp]\nlocal_addr = \"127.0.0.1:5\"\n"
        );
        // Both parse as TOML, so rathole reads what the test reads.
        assert!(server.parse::<toml::Table>().is_ok());
        assert!(client.parse::<toml::Table>().is_ok());
    }

    #[test]
    fn toml_paths_escape_backslashes() {
        assert_eq!(toml_path(Path::new("/a/b c")), "\"/a/b c\"");
        // A backslash makes it a literal string, which TOML reads back unchanged.
        let odd = toml_path(Path::new("/a\\b"));
        assert_eq!(odd, "'/a\\b'");
        let back: toml::Table = format!("p = {odd}").parse().unwrap();
        assert_eq!(back["p"].as_str(), Some("/a\\b"));
    }
}
