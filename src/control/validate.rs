//! Checks on what operators type: tunnel names and route hostnames.

use uuid::Uuid;

const MAX_NAME_LEN: usize = 64;
const MAX_HOSTNAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// A tunnel name: 1 to 64 characters of `[A-Za-z0-9._-]`, and never a UUID, so that a
/// command argument is unambiguously either a name or an id.
pub fn tunnel_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "a tunnel name must be 1 to {MAX_NAME_LEN} characters long"
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !name.chars().all(allowed) {
        return Err("a tunnel name may only contain letters, digits, '.', '_' and '-'".into());
    }
    if Uuid::parse_str(name).is_ok() {
        return Err("a tunnel name may not be a UUID".into());
    }
    Ok(())
}

/// A route hostname, returned lowercase: DNS labels of `[a-z0-9-]` (1 to 63 characters,
/// no leading or trailing `-`), an optional leading `*.` wildcard, no port, at most 253
/// characters. One trailing dot (a fully qualified name) is dropped.
pub fn hostname(hostname: &str) -> Result<String, String> {
    let host = hostname.trim().to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host);
    if host.is_empty() {
        return Err("a hostname may not be empty".into());
    }
    if host.len() > MAX_HOSTNAME_LEN {
        return Err(format!(
            "a hostname may be at most {MAX_HOSTNAME_LEN} characters long"
        ));
    }
    if host.contains("://") {
        return Err(format!(
            "hostname {host:?} is a URL: give the name alone (app.example.com)"
        ));
    }
    let ipv4 = host.parse::<std::net::Ipv4Addr>().is_ok();
    if ipv4 || host.starts_with('[') || host.matches(':').count() > 1 {
        return Err(format!(
            "hostname {host:?} is an IP address, not a DNS name"
        ));
    }
    if host.contains(':') {
        return Err(format!("hostname {host:?} may not include a port"));
    }

    let name = host.strip_prefix("*.").unwrap_or(host);
    for label in name.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return Err(format!(
                "hostname {host:?} has an empty or overlong label (1 to {MAX_LABEL_LEN} characters)"
            ));
        }
        let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
        if !label.bytes().all(allowed) {
            return Err(format!(
                "hostname {host:?} may only contain letters, digits, '-' and '.', \
                 with an optional leading '*.'"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "hostname {host:?} has a label that starts or ends with '-'"
            ));
        }
    }
    Ok(host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONLY_LETTERS: &str =
        "may only contain letters, digits, '-' and '.', with an optional leading '*.'";

    #[test]
    fn tunnel_names() {
        assert_eq!(tunnel_name("web-1.prod_x"), Ok(()));
        assert_eq!(tunnel_name(&"a".repeat(64)), Ok(()));
        assert_eq!(
            tunnel_name(""),
            Err("a tunnel name must be 1 to 64 characters long".into())
        );
        assert_eq!(
            tunnel_name(&"a".repeat(65)),
            Err("a tunnel name must be 1 to 64 characters long".into())
        );
        assert_eq!(
            tunnel_name("a b"),
            Err("a tunnel name may only contain letters, digits, '.', '_' and '-'".into())
        );
        assert_eq!(
            tunnel_name("tünnel"),
            Err("a tunnel name may only contain letters, digits, '.', '_' and '-'".into())
        );
        assert_eq!(
            tunnel_name("6f1c1e4a-7d3b-4c1e-9a57-0e1d2c3b4a59"),
            Err("a tunnel name may not be a UUID".into())
        );
        assert_eq!(
            tunnel_name("6f1c1e4a7d3b4c1e9a570e1d2c3b4a59"),
            Err("a tunnel name may not be a UUID".into())
        );
    }

    #[test]
    fn hostnames() {
        assert_eq!(hostname("App.Example.COM"), Ok("app.example.com".into()));
        assert_eq!(hostname("*.example.com"), Ok("*.example.com".into()));
        assert_eq!(hostname("example.com."), Ok("example.com".into()));
        assert_eq!(hostname("localhost"), Ok("localhost".into()));
        assert_eq!(hostname("a-1.b2.c"), Ok("a-1.b2.c".into()));
        assert_eq!(hostname(""), Err("a hostname may not be empty".into()));
        assert_eq!(
            hostname("example.com:8080"),
            Err("hostname \"example.com:8080\" may not include a port".into())
        );
        assert_eq!(
            hostname("http://x.localhost"),
            Err(
                "hostname \"http://x.localhost\" is a URL: give the name alone \
                 (app.example.com)"
                    .into()
            )
        );
        for ip in ["[::1]", "::1", "[::1]:80", "127.0.0.1", "10.0.0.1"] {
            assert_eq!(
                hostname(ip),
                Err(format!("hostname {ip:?} is an IP address, not a DNS name"))
            );
        }
        assert_eq!(
            hostname("a..com"),
            Err("hostname \"a..com\" has an empty or overlong label (1 to 63 characters)".into())
        );
        assert_eq!(hostname("*"), Err(format!("hostname \"*\" {ONLY_LETTERS}")));
        assert_eq!(
            hostname("a.*.com"),
            Err(format!("hostname \"a.*.com\" {ONLY_LETTERS}"))
        );
        assert_eq!(
            hostname("a_b.com"),
            Err(format!("hostname \"a_b.com\" {ONLY_LETTERS}"))
        );
        assert_eq!(
            hostname("-a.com"),
            Err("hostname \"-a.com\" has a label that starts or ends with '-'".into())
        );
        assert_eq!(
            hostname(&format!("{}.com", "a".repeat(64))),
            Err(format!(
                "hostname \"{}.com\" has an empty or overlong label (1 to 63 characters)",
                "a".repeat(64)
            ))
        );
        let long = ["a".repeat(63).as_str(); 4].join(".");
        assert_eq!(long.len(), 255);
        assert_eq!(
            hostname(&long),
            Err("a hostname may be at most 253 characters long".into())
        );
    }
}
