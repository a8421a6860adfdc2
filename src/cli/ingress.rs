//! `adit tunnel ingress validate/rule`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;

use super::IngressCommand;
use crate::connector::config::Config;

pub fn run(cmd: IngressCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        IngressCommand::Validate { config } => {
            let config = load(&config)?;
            // What `tunnel run` refuses before it connects is refused here too.
            crate::connector::check_origin_tls(&config.ingress)
                .map_err(|err| anyhow::anyhow!("{err}"))?;
            let count = config.ingress.rules.len();
            let noun = if count == 1 { "rule" } else { "rules" };
            outln!("OK: {count} ingress {noun}")?;
        }
        IngressCommand::Rule { url, config } => {
            // The URL is checked first: a typo there is cheaper to report than a config error.
            let (host, path) = split_url(&url)?;
            let config = load(&config)?;
            let (index, rule) = config.ingress.find(host, path);
            outln!("Matched rule #{}", index + 1)?;
            outln!(
                "    hostname: {}",
                rule.hostname.as_deref().unwrap_or("(any)")
            )?;
            outln!(
                "    path: {}",
                rule.path.as_ref().map_or("(any)", |path| path.as_str())
            )?;
            outln!("    service: {}", rule.service)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads a config; the error is flattened to its message, which already holds the cause
/// (`Read` carries its IO error both in the message and as the source).
fn load(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|err| anyhow::anyhow!("{err}"))
}

/// Splits `[http[s]://]host[:port][/path][?query]` into the host (port kept; matching strips
/// it) and the path without the query, `/` when the URL has none.
fn split_url(url: &str) -> anyhow::Result<(&str, &str)> {
    let rest = match url.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            rest
        }
        Some((scheme, _)) => {
            bail!("URL {url:?} has scheme {scheme:?}; use http://, https:// or no scheme")
        }
        None => url,
    };

    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() {
        bail!("URL {url:?} has no host");
    }
    if authority.contains('@') {
        bail!("URL {url:?} may not have user info");
    }
    if authority
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        bail!("URL {url:?} has spaces or control characters in its host");
    }
    if let Some(port) = port_of(authority) {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            bail!("URL {url:?} has an invalid port {port:?}");
        }
    }

    let path = tail.split(['?', '#']).next().unwrap_or("");
    Ok((authority, if path.is_empty() { "/" } else { path }))
}

/// The text after the host's `:`, if any (after `]` for an IPv6 address).
fn port_of(authority: &str) -> Option<&str> {
    let after_host = match authority.rfind(']') {
        Some(end) => &authority[end + 1..],
        None => authority,
    };
    after_host.split_once(':').map(|(_, port)| port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_refuses_what_tunnel_run_refuses() {
        let dir = std::env::temp_dir().join(format!("adit-validate-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).unwrap();
        let config = dir.join("config.yml");
        let text = "ingress:\n  - hostname: app.test\n    service: https://localhost:8443\n    \
                    originRequest:\n      caPool: missing.pem\n  - service: http_status:404\n";
        std::fs::write(&config, text).unwrap();
        let validate = || {
            run(IngressCommand::Validate {
                config: config.clone(),
            })
        };
        let refused = validate().unwrap_err().to_string();
        assert_eq!(
            refused,
            format!(
                "ingress rule 1: caPool {} cannot be read: No such file or directory \
                 (os error 2)",
                dir.join("missing.pem").display()
            )
        );
        std::fs::write(dir.join("empty.pem"), "no certificate here\n").unwrap();
        std::fs::write(&config, text.replace("missing.pem", "empty.pem")).unwrap();
        assert_eq!(
            validate().unwrap_err().to_string(),
            format!(
                "ingress rule 1: caPool {} holds no PEM certificates",
                dir.join("empty.pem").display()
            )
        );
        std::fs::write(&config, "ingress:\n  - service: http_status:404\n").unwrap();
        assert_eq!(validate().unwrap(), ExitCode::SUCCESS);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn split_url_takes_host_and_path() {
        assert_eq!(
            split_url("app.example.com").unwrap(),
            ("app.example.com", "/")
        );
        assert_eq!(
            split_url("https://app.example.com:8443/api/v1?x=1#top").unwrap(),
            ("app.example.com:8443", "/api/v1")
        );
        assert_eq!(
            split_url("HTTP://a.example/?x").unwrap(),
            ("a.example", "/")
        );
        assert_eq!(split_url("[::1]:80/x").unwrap(), ("[::1]:80", "/x"));
    }

    #[test]
    fn split_url_refuses_bad_urls() {
        let message = |url: &str| split_url(url).unwrap_err().to_string();
        assert_eq!(
            message("ftp://a.example/"),
            "URL \"ftp://a.example/\" has scheme \"ftp\"; use http://, https:// or no scheme"
        );
        assert_eq!(message("http:///x"), "URL \"http:///x\" has no host");
        assert_eq!(
            message("u@a.example"),
            "URL \"u@a.example\" may not have user info"
        );
        assert_eq!(
            message("a.example:x1"),
            "URL \"a.example:x1\" has an invalid port \"x1\""
        );
        assert_eq!(
            message("a b.example"),
            "URL \"a b.example\" has spaces or control characters in its host"
        );
    }
}
