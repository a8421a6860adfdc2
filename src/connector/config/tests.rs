//! Unit tests of `config`.

use super::*;
use crate::connector::ingress::Service;

const FULL: &str = r#"
tunnel: my-tunnel
credentials-file: creds/tunnel.json
loglevel: debug
originRequest:
  connectTimeout: 10s
  keepAliveConnections: 50
  keepAliveTimeout: 1m30s
  httpHostHeader: internal.example
  noTLSVerify: false
  originServerName: origin.example
  responseTimeout: 100
  caPool: ca.pem
  tcpKeepAlive: 30s
ingress:
  - hostname: App.Example.com
    path: ^/api/
    service: http://127.0.0.1:8000
    originRequest:
      connectTimeout: 500ms
      noTLSVerify: true
      caPool: /etc/ssl/origin.pem
  - hostname: "*.example.com"
    service: https://[::1]:8443/
    originRequest:
      keepAliveConnections: 0
      httpHostHeader: "[::1]:8443"
      responseTimeout: "5"
      http2Origin: true
  - hostname: static.example.org
    service: unix:/run/static.sock
  - service: http_status:404
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/adit/config.yml"))
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn full_config_merges_defaults_and_overrides() {
    let config = parse(FULL).unwrap();
    assert_eq!(config.tunnel.as_deref(), Some("my-tunnel"));
    assert_eq!(
        config.credentials_file,
        Some(PathBuf::from("/etc/adit/creds/tunnel.json"))
    );

    let defaults = OriginSettings {
        connect_timeout: Duration::from_secs(10),
        keep_alive_connections: 50,
        keep_alive_timeout: Duration::from_secs(90),
        http_host_header: Some("internal.example".to_owned()),
        no_tls_verify: false,
        origin_server_name: Some("origin.example".to_owned()),
        response_timeout: Duration::from_secs(100),
        ca_pool: Some(PathBuf::from("/etc/adit/ca.pem")),
    };
    let rules = &config.ingress.rules;
    assert_eq!(rules.len(), 4);

    assert_eq!(rules[0].hostname.as_deref(), Some("app.example.com"));
    assert_eq!(
        rules[0].path.as_ref().map(|path| path.as_str()),
        Some("^/api/")
    );
    assert_eq!(
        rules[0].service,
        Service::Http {
            tls: false,
            host: "127.0.0.1".to_owned(),
            port: 8000
        }
    );
    assert_eq!(
        rules[0].origin,
        OriginSettings {
            connect_timeout: Duration::from_millis(500),
            no_tls_verify: true,
            ca_pool: Some(PathBuf::from("/etc/ssl/origin.pem")),
            ..defaults.clone()
        }
    );

    assert_eq!(rules[1].hostname.as_deref(), Some("*.example.com"));
    assert!(rules[1].path.is_none());
    assert_eq!(
        rules[1].service,
        Service::Http {
            tls: true,
            host: "::1".to_owned(),
            port: 8443
        }
    );
    assert_eq!(
        rules[1].origin,
        OriginSettings {
            keep_alive_connections: 0,
            http_host_header: Some("[::1]:8443".to_owned()),
            response_timeout: Duration::from_secs(5),
            ..defaults.clone()
        }
    );

    assert_eq!(
        rules[2].service,
        Service::Unix {
            tls: false,
            path: PathBuf::from("/run/static.sock")
        }
    );
    assert_eq!(rules[2].origin, defaults);
    assert_eq!(rules[3].hostname, None);
    assert!(rules[3].path.is_none());
    assert_eq!(rules[3].service, Service::Status(404));
    assert_eq!(rules[3].origin, defaults);

    assert_eq!(config.ingress.find("APP.example.com:443", "/api/x?y").0, 0);
    assert_eq!(config.ingress.find("a.b.example.com", "/api/").0, 1);
    assert_eq!(config.ingress.find("example.com", "/").0, 3);
}

#[test]
fn minimal_config_uses_builtin_defaults() {
    let config = Config::parse("ingress:\n  - service: hello_world\n", Path::new("c.yml")).unwrap();
    assert_eq!(config.tunnel, None);
    assert_eq!(config.credentials_file, None);
    assert_eq!(config.ingress.rules.len(), 1);
    assert_eq!(config.ingress.rules[0].service, Service::HelloWorld);
    assert_eq!(config.ingress.rules[0].origin, OriginSettings::default());
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let text = "credentials-file: t.json\ningress:\n  - service: hello_world\n";
    let config = Config::parse(text, Path::new("config.yml")).unwrap();
    assert_eq!(config.credentials_file, Some(PathBuf::from("t.json")));
    let config = Config::parse(text, Path::new("/a/b/config.yml")).unwrap();
    assert_eq!(config.credentials_file, Some(PathBuf::from("/a/b/t.json")));
    let text = "credentials-file: /c/t.json\ningress:\n  - service: hello_world\n";
    let config = Config::parse(text, Path::new("/a/b/config.yml")).unwrap();
    assert_eq!(config.credentials_file, Some(PathBuf::from("/c/t.json")));
}

#[test]
fn wildcard_hostname_is_a_catch_all() {
    let config = parse("ingress:\n  - hostname: '*'\n    service: hello_world\n").unwrap();
    assert_eq!(config.ingress.rules[0].hostname, None);
}

#[test]
fn yaml_merge_keys_apply() {
    let text = "\
x-origin: &origin
  connectTimeout: 5s
ingress:
  - service: hello_world
    originRequest:
      <<: *origin
";
    assert_eq!(
        error(text),
        "config file /etc/adit/config.yml: unknown key \"x-origin\""
    );
    let text = "\
ingress:
  - hostname: a.example
    service: hello_world
    originRequest: &origin
      connectTimeout: 5s
  - service: hello_world
    originRequest:
      <<: *origin
";
    let config = parse(text).unwrap();
    assert_eq!(
        config.ingress.rules[1].origin.connect_timeout,
        Duration::from_secs(5)
    );
}

#[test]
fn missing_or_empty_ingress_is_refused() {
    let message = "config file /etc/adit/config.yml: config has no ingress rules";
    assert_eq!(error(""), message);
    assert_eq!(error("tunnel: t\n"), message);
    assert_eq!(error("ingress: []\n"), message);
    assert_eq!(error("ingress:\n"), message);
}

#[test]
fn rule_order_errors_name_the_rule() {
    assert_eq!(
        error("ingress:\n  - hostname: a.example\n    service: hello_world\n"),
        "ingress rule 1: the last rule must match every request (no hostname or path)"
    );
    let text = "ingress:\n  - {hostname: a.example, service: hello_world}\n  \
                    - {path: ^/x, service: hello_world}\n";
    assert_eq!(
        error(text),
        "ingress rule 2: the last rule must match every request (no hostname or path)"
    );
    let text = "\
ingress:
  - hostname: a.example
    service: hello_world
  - service: http_status:404
  - hostname: b.example
    service: hello_world
  - service: http_status:404
";
    assert_eq!(
        error(text),
        "ingress rule 2: it matches every request, so the rules after it are never used"
    );
}

#[test]
fn rule_value_errors_name_the_rule() {
    let one = |rule: &str| error(&format!("ingress:\n  - {rule}\n  - service: hello_world\n"));
    assert_eq!(
        one("{hostname: a.example, service: 'http://127.0.0.1:8000/app'}"),
        "ingress rule 1: service \"http://127.0.0.1:8000/app\": service URL may not have a path"
    );
    assert_eq!(
        one("{hostname: a.example, service: 'tcp://127.0.0.1'}"),
        "ingress rule 1: service \"tcp://127.0.0.1\": a tcp:// service needs a port, \
             as in tcp://localhost:5432"
    );
    assert_eq!(
        one("{hostname: a.example, service: 'http_status:600'}"),
        "ingress rule 1: service \"http_status:600\": the status must be a number from 200 \
             to 599 (a final answer)"
    );
    assert_eq!(
        one("{hostname: 'a.*.example', service: hello_world}"),
        "ingress rule 1: hostname \"a.*.example\": a wildcard is allowed only as a leading \
             \"*.\""
    );
    assert_eq!(
        one("{hostname: 'a.example:80', service: hello_world}"),
        "ingress rule 1: hostname \"a.example:80\" may not have a port"
    );
    assert_eq!(
        one("{hostname: a.example}"),
        "ingress rule 1: the rule has no service"
    );
    assert_eq!(
        one("{hostname: a.example, service: hello_world, hostnam: b}"),
        "ingress rule 1: unknown key \"hostnam\" (a rule has hostname, path, service and \
             originRequest)"
    );
    assert_eq!(
        one("hello_world"),
        "ingress rule 1: expected a mapping with a service, found a string"
    );
    assert_eq!(
        one("{hostname: [a], service: hello_world}"),
        "ingress rule 1: hostname: expected a string, found a list"
    );
    let err = one("{path: '(', service: hello_world}");
    assert!(
        err.starts_with("ingress rule 1: path \"(\" is not a valid regular expression: "),
        "{err}"
    );
    assert!(err.ends_with("error: unclosed group"), "{err}");
}

#[test]
fn origin_request_errors_name_the_key() {
    let rule = |origin: &str| {
        error(&format!(
            "ingress:\n  - hostname: a.example\n    service: hello_world\n    \
                 originRequest: {{{origin}}}\n  - service: hello_world\n"
        ))
    };
    assert_eq!(
        rule("connectTimeot: 5s"),
        "ingress rule 1: unknown originRequest key \"connectTimeot\""
    );
    assert_eq!(
        rule("connectTimeout: 5x"),
        "ingress rule 1: originRequest.connectTimeout: \"5x\" is not a duration \
             (unknown time unit \"x\", supported units: ns, us/µs, ms, sec, min, hours, days, \
             weeks, months, years (and few variations)); write e.g. 30s"
    );
    assert_eq!(
        rule("keepAliveTimeout: -1"),
        "ingress rule 1: originRequest.keepAliveTimeout: expected a duration such as \"30s\", \
             \"1m30s\" or \"500ms\", or a whole number of seconds"
    );
    assert_eq!(
        rule("responseTimeout: 0s"),
        "ingress rule 1: originRequest.responseTimeout must be more than zero"
    );
    assert_eq!(
        rule("keepAliveConnections: many"),
        "ingress rule 1: originRequest.keepAliveConnections: expected a whole number of 0 \
             or more"
    );
    assert_eq!(
        rule("noTLSVerify: 'yes'"),
        "ingress rule 1: originRequest.noTLSVerify: expected true or false, found a string"
    );
    assert_eq!(
        rule("httpHostHeader: 'a b'"),
        "ingress rule 1: originRequest.httpHostHeader: \"a b\" is not a valid host[:port]: \
             \"a b\" is not a valid host name or IP address"
    );
    assert_eq!(
        rule("originServerName: ''"),
        "ingress rule 1: originRequest.originServerName may not be empty"
    );
    assert_eq!(
        error("originRequest:\n  keepAliveTimeout: soon\ningress:\n  - service: hello_world\n"),
        "config file /etc/adit/config.yml: originRequest.keepAliveTimeout: \"soon\" is not a \
             duration (expected number at 0); write e.g. 30s"
    );
}

#[test]
fn top_level_errors_name_the_key() {
    assert_eq!(
        error("tunel: t\ningress:\n  - service: hello_world\n"),
        "config file /etc/adit/config.yml: unknown key \"tunel\""
    );
    assert_eq!(
        error("tunnel: ''\ningress:\n  - service: hello_world\n"),
        "config file /etc/adit/config.yml: tunnel may not be empty"
    );
    assert_eq!(
        error("ingress: hello_world\n"),
        "config file /etc/adit/config.yml: ingress: expected a list, found a string"
    );
    assert_eq!(
        error("- a\n"),
        "config file /etc/adit/config.yml: the config must be a mapping of keys to values, \
             found a list"
    );
    assert_eq!(
        error("tunnel: [\n"),
        "config file /etc/adit/config.yml is not valid YAML for adit: did not find expected \
             node content at line 2 column 1, while parsing a flow node"
    );
}

#[test]
fn duplicate_keys_are_refused() {
    assert_eq!(
        error("tunnel: a\ntunnel: b\ningress:\n  - service: hello_world\n"),
        "config file /etc/adit/config.yml is not valid YAML for adit: duplicate entry with key \
             \"tunnel\""
    );
}

#[test]
fn unsupported_cloudflared_keys_are_accepted() {
    let text = "\
protocol: quic
no-autoupdate: true
metrics: localhost:2000
warp-routing:
  enabled: true
originRequest:
  proxyType: socks
  noHappyEyeballs: true
ingress:
  - service: hello_world
    originRequest:
      matchSNItoHost: true
      tlsTimeout: 10s
";
    let config = parse(text).unwrap();
    assert_eq!(config.ingress.rules[0].origin, OriginSettings::default());
}

#[test]
fn load_reports_unreadable_files() {
    let err = Config::load(Path::new("/nonexistent/adit.yml")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot read config file /nonexistent/adit.yml: No such file or directory (os error 2)"
    );
}
