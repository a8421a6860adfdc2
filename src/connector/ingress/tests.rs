//! Unit tests of `ingress`.

use super::*;

fn rule(hostname: Option<&str>, path: Option<&str>, service: &str) -> Rule {
    Rule {
        hostname: hostname.map(|name| parse_hostname(name).unwrap().unwrap()),
        path: path.map(|path| parse_path(path).unwrap()),
        service: parse_service(service).unwrap(),
        origin: OriginSettings::default(),
    }
}

fn sample() -> Ingress {
    Ingress {
        rules: vec![
            rule(
                Some("app.example.com"),
                Some("^/api/"),
                "http://127.0.0.1:8001",
            ),
            rule(Some("app.example.com"), None, "http://127.0.0.1:8002"),
            rule(
                Some("*.example.com"),
                Some("/static/"),
                "http://127.0.0.1:8003",
            ),
            rule(Some("*.example.com"), None, "http://127.0.0.1:8004"),
            rule(None, None, "http_status:404"),
        ],
    }
}

fn index(ingress: &Ingress, host: &str, path: &str) -> usize {
    ingress.find(host, path).0
}

#[test]
fn find_matches_host_exactly_with_port_and_in_any_case() {
    let ingress = sample();
    assert_eq!(index(&ingress, "app.example.com", "/"), 1);
    assert_eq!(index(&ingress, "app.example.com:8443", "/"), 1);
    assert_eq!(index(&ingress, "APP.Example.COM", "/"), 1);
    assert_eq!(index(&ingress, "app.example.com.", "/"), 1);
    assert_eq!(index(&ingress, "app.example.com", "/api/users"), 0);
    assert_eq!(index(&ingress, "other.test", "/"), 4);
    assert_eq!(index(&ingress, "[::1]:8080", "/"), 4);
    assert_eq!(index(&ingress, "::1", "/api/"), 4);
    assert_eq!(index(&ingress, "", "/"), 4);
}

#[test]
fn find_wildcard_matches_any_depth_but_not_apex() {
    let ingress = sample();
    assert_eq!(index(&ingress, "b.example.com", "/"), 3);
    assert_eq!(index(&ingress, "a.b.c.example.com:80", "/"), 3);
    assert_eq!(index(&ingress, "X.EXAMPLE.COM", "/"), 3);
    assert_eq!(index(&ingress, "example.com", "/"), 4);
    assert_eq!(index(&ingress, ".example.com", "/"), 4);
    assert_eq!(index(&ingress, "badexample.com", "/"), 4);
}

#[test]
fn find_path_is_unanchored_and_ignores_the_query() {
    let ingress = sample();
    assert_eq!(index(&ingress, "b.example.com", "/v1/static/app.js"), 2);
    assert_eq!(index(&ingress, "app.example.com", "/v2/api/users"), 1);
    assert_eq!(index(&ingress, "app.example.com", "/home?next=/api/"), 1);
    assert_eq!(index(&ingress, "app.example.com", "/api/?x=1"), 0);
    assert_eq!(index(&ingress, "b.example.com", "/?/static/"), 3);
}

#[test]
fn find_matches_the_normalized_path() {
    let ingress = Ingress {
        rules: vec![
            rule(None, Some("^/admin"), "http_status:403"),
            rule(None, Some("^/files/a%2Fb$"), "http_status:200"),
            rule(None, None, "http://127.0.0.1:8000"),
        ],
    };
    for path in [
        "/admin",
        "//admin",
        "/./admin",
        "/x/../admin",
        "/%61dmin",
        "/%2E%2e/%61%44MIN/../admin/x?y",
        "/x//../admin",
        "///admin/",
    ] {
        assert_eq!(index(&ingress, "a.test", path), 0, "{path:?}");
    }
    assert_eq!(index(&ingress, "a.test", "/files/a%2fb"), 1);
    assert_eq!(index(&ingress, "a.test", "/files/a/b"), 2);
    assert_eq!(index(&ingress, "a.test", "/%2Fadmin"), 2);
    assert_eq!(index(&ingress, "a.test", "/x/admin"), 2);
    assert_eq!(index(&ingress, "a.test", "/?/admin"), 2);
}

#[test]
fn normalize_path_decodes_only_unreserved_escapes() {
    let cases = [
        ("/%61dmin", "/admin"),
        ("/%41%7a%30%2D%2e%5F%7E", "/Az0-._~"),
        ("/admin%2Fx", "/admin%2Fx"),
        ("/admin%2fx", "/admin%2Fx"),
        ("/%3f%3A%c3%a9%25", "/%3F%3A%C3%A9%25"),
        ("/%2e%2E/a", "/a"),
        ("/a/%2e", "/a/"),
        ("/%zz%4", "/%zz%4"),
        ("/%6%61", "/%6a"),
        ("/%%61", "/%a"),
        ("/%", "/%"),
        ("/caf\u{e9}%41", "/caf\u{e9}A"),
    ];
    for (path, normal) in cases {
        assert_eq!(normalize_path(path), normal, "{path:?}");
    }
}

#[test]
fn normalize_path_resolves_dots_and_collapses_slashes() {
    let cases = [
        ("/a/b/../c", "/a/c"),
        ("/../a", "/a"),
        ("/a/.", "/a/"),
        ("/a/..", "/"),
        ("/a/b/..", "/a/"),
        ("/..", "/"),
        ("/.", "/"),
        ("/./", "/"),
        ("//admin", "/admin"),
        ("/a///b//", "/a/b/"),
        ("/x//../admin", "/admin"),
        ("/a/./b/./c", "/a/b/c"),
        ("/a/../../../b", "/b"),
        ("/a/.../b", "/a/.../b"),
        ("/a/..b/.c", "/a/..b/.c"),
        ("a/./b", "a/b"),
        ("a//b/", "a/b/"),
        ("../a", "a"),
        ("a/..", ""),
        (".", ""),
    ];
    for (path, normal) in cases {
        assert_eq!(normalize_path(path), normal, "{path:?}");
        // Normal output stays as it is.
        assert!(
            matches!(normalize_path(normal), Cow::Borrowed(same) if same == normal),
            "{normal:?}"
        );
    }
}

#[test]
fn normalize_path_borrows_a_normal_path() {
    for path in [
        "",
        "/",
        "*",
        "/a",
        "/a/",
        "/a/b.c/d",
        "/a%2Fb",
        "/%C3%A9",
        "/%zz",
        "/a..",
        "/.well-known/x",
        "a/b",
    ] {
        assert!(
            matches!(normalize_path(path), Cow::Borrowed(same) if same == path),
            "{path:?}"
        );
    }
    assert!(matches!(normalize_path("/a/../b"), Cow::Owned(_)));
}

#[test]
fn find_returns_the_rule_itself() {
    let ingress = sample();
    let (index, rule) = ingress.find("app.example.com", "/api/x");
    assert_eq!(index, 0);
    assert_eq!(
        rule.service,
        Service::Http {
            tls: false,
            host: "127.0.0.1".to_owned(),
            port: 8001
        }
    );
}

#[test]
fn single_is_one_catch_all_rule_with_defaults() {
    let ingress = Ingress::single("https://[::1]:8443").unwrap();
    assert_eq!(ingress.rules.len(), 1);
    let rule = &ingress.rules[0];
    assert_eq!(rule.hostname, None);
    assert!(rule.path.is_none());
    assert_eq!(
        rule.service,
        Service::Http {
            tls: true,
            host: "::1".to_owned(),
            port: 8443
        }
    );
    assert_eq!(rule.origin, OriginSettings::default());
    assert_eq!(ingress.find("anything.test", "/x").0, 0);

    assert_eq!(
        Ingress::single("ftp://x").unwrap_err(),
        IngressError {
            rule: 1,
            message: "service \"ftp://x\" is not a known service (use http://, https://, \
                          unix:, unix+tls:, tcp://, ssh://, rdp://, http_status:NNN \
                          or hello_world)"
                .to_owned(),
        }
    );
}

#[test]
fn origin_settings_defaults() {
    let settings = OriginSettings::default();
    assert_eq!(settings.connect_timeout, Duration::from_secs(30));
    assert_eq!(settings.keep_alive_connections, 100);
    assert_eq!(settings.keep_alive_timeout, Duration::from_secs(90));
    assert_eq!(settings.response_timeout, Duration::from_secs(100));
    assert_eq!(settings.http_host_header, None);
    assert!(!settings.no_tls_verify);
    assert_eq!(settings.origin_server_name, None);
    assert_eq!(settings.ca_pool, None);
}

#[test]
fn services_parse() {
    let http = |tls, host: &str, port| Service::Http {
        tls,
        host: host.to_owned(),
        port,
    };
    assert_eq!(
        parse_service("http://localhost"),
        Ok(http(false, "localhost", 80))
    );
    assert_eq!(
        parse_service("https://localhost/"),
        Ok(http(true, "localhost", 443))
    );
    assert_eq!(
        parse_service("http://10.0.0.1:8080"),
        Ok(http(false, "10.0.0.1", 8080))
    );
    assert_eq!(
        parse_service("HTTP://web_1:81"),
        Ok(http(false, "web_1", 81))
    );
    assert_eq!(parse_service("http://[::1]"), Ok(http(false, "::1", 80)));
    assert_eq!(
        parse_service("https://[fe80::1]:9/"),
        Ok(http(true, "fe80::1", 9))
    );
    assert_eq!(
        parse_service("unix:/run/app.sock"),
        Ok(Service::Unix {
            tls: false,
            path: PathBuf::from("/run/app.sock")
        })
    );
    assert_eq!(
        parse_service("unix+tls:/run/app.sock"),
        Ok(Service::Unix {
            tls: true,
            path: PathBuf::from("/run/app.sock")
        })
    );
    assert_eq!(parse_service("http_status:200"), Ok(Service::Status(200)));
    assert_eq!(parse_service("http_status:599"), Ok(Service::Status(599)));
    assert_eq!(parse_service("hello_world"), Ok(Service::HelloWorld));
}

#[test]
fn tcp_services_parse_with_their_default_ports() {
    let tcp = |host: &str, port| Service::Tcp {
        host: host.to_owned(),
        port,
    };
    assert_eq!(
        parse_service("tcp://127.0.0.1:5432"),
        Ok(tcp("127.0.0.1", 5432))
    );
    assert_eq!(parse_service("TCP://db_1:6379/"), Ok(tcp("db_1", 6379)));
    assert_eq!(parse_service("ssh://localhost"), Ok(tcp("localhost", 22)));
    assert_eq!(parse_service("ssh://[::1]:2222"), Ok(tcp("::1", 2222)));
    assert_eq!(parse_service("rdp://desktop"), Ok(tcp("desktop", 3389)));
    assert_eq!(
        parse_service("rdp://desktop:3390"),
        Ok(tcp("desktop", 3390))
    );
}

#[test]
fn services_refused_with_reasons() {
    let error = |text: &str| parse_service(text).unwrap_err();
    assert_eq!(
        error("http://127.0.0.1:8000/api"),
        "service \"http://127.0.0.1:8000/api\": service URL may not have a path"
    );
    assert_eq!(
        error("http://a/?x=1"),
        "service \"http://a/?x=1\": service URL may not have a query or fragment"
    );
    assert_eq!(
        error("http://u@a"),
        "service \"http://u@a\": service URL may not have user info"
    );
    assert_eq!(
        error("tcp://localhost"),
        "service \"tcp://localhost\": a tcp:// service needs a port, as in tcp://localhost:5432"
    );
    assert_eq!(
        error("tcp://db:5432/x"),
        "service \"tcp://db:5432/x\": service URL may not have a path"
    );
    assert_eq!(
        error("ssh://localhost:0"),
        "service \"ssh://localhost:0\": \"0\" is not a port number (1 to 65535)"
    );
    assert_eq!(
        error("smb://fileserver"),
        "service \"smb://fileserver\" is not supported yet"
    );
    assert_eq!(
        error("socks-proxy"),
        "service \"socks-proxy\" is not supported yet"
    );
    assert_eq!(
        error("localhost:8000"),
        "service \"localhost:8000\" is not a known service \
             (use http://, https://, unix:, unix+tls:, tcp://, ssh://, rdp://, http_status:NNN \
             or hello_world)"
    );
    assert_eq!(
        error("http_status:99"),
        "service \"http_status:99\": the status must be a number from 200 to 599 \
         (a final answer)"
    );
    for interim in ["http_status:100", "http_status:101", "http_status:199"] {
        assert_eq!(
            error(interim),
            format!(
                "service {interim:?}: the status must be a number from 200 to 599 \
                 (a final answer)"
            )
        );
    }
    assert_eq!(
        error("http_status:+404"),
        "service \"http_status:+404\": the status must be a number from 200 to 599 \
         (a final answer)"
    );
    assert_eq!(
        error("unix:run/app.sock"),
        "service \"unix:run/app.sock\": the socket path must be absolute, \
             as in unix:/run/app.sock"
    );
    assert_eq!(error("http://"), "service \"http://\": the host is missing");
    assert_eq!(
        error("http://:80"),
        "service \"http://:80\": the host is missing"
    );
    assert_eq!(
        error("http://a:0"),
        "service \"http://a:0\": \"0\" is not a port number (1 to 65535)"
    );
    assert_eq!(
        error("http://a:65536"),
        "service \"http://a:65536\": \"65536\" is not a port number (1 to 65535)"
    );
    assert_eq!(
        error("http://::1"),
        "service \"http://::1\": an IPv6 address must be written in brackets, as in [::1]"
    );
    assert_eq!(
        error("http://[::g]"),
        "service \"http://[::g]\": \"::g\" is not an IPv6 address"
    );
    assert_eq!(
        error("http://10.0.0.256"),
        "service \"http://10.0.0.256\": \"10.0.0.256\" is not a valid IPv4 address"
    );
    assert_eq!(
        error("http://a b"),
        "service \"http://a b\": \"a b\" is not a valid host name or IP address"
    );
}

#[test]
fn service_display_round_trips() {
    for text in [
        "http://127.0.0.1:8000",
        "http://localhost",
        "https://origin.example",
        "https://origin.example:8443",
        "http://[::1]:8080",
        "https://[::1]",
        "unix:/run/app.sock",
        "unix+tls:/run/app.sock",
        "http_status:404",
        "hello_world",
        "tcp://127.0.0.1:5432",
        "tcp://[::1]:22",
    ] {
        let service = parse_service(text).unwrap();
        assert_eq!(service.to_string(), text);
        assert_eq!(parse_service(&service.to_string()), Ok(service));
    }
    assert_eq!(
        parse_service("http://a:80/").unwrap().to_string(),
        "http://a"
    );
    assert_eq!(
        parse_service("https://a:80").unwrap().to_string(),
        "https://a:80"
    );
    assert_eq!(parse_service("ssh://a").unwrap().to_string(), "tcp://a:22");
    assert_eq!(
        parse_service("rdp://[::1]").unwrap().to_string(),
        "tcp://[::1]:3389"
    );
}

#[test]
fn hostnames_are_lowercased_and_checked() {
    assert_eq!(
        parse_hostname("App.Example.com"),
        Ok(Some("app.example.com".to_owned()))
    );
    assert_eq!(
        parse_hostname("*.example.com"),
        Ok(Some("*.example.com".to_owned()))
    );
    assert_eq!(parse_hostname("*"), Ok(None));

    let error = |text: &str| parse_hostname(text).unwrap_err();
    assert_eq!(
        error(""),
        "hostname may not be empty (leave it out to match every host)"
    );
    assert_eq!(
        error("https://a.example"),
        "hostname \"https://a.example\" may not have a scheme; write only the name"
    );
    assert_eq!(
        error("a.example:443"),
        "hostname \"a.example:443\" may not have a port"
    );
    assert_eq!(
        error("a.example/api"),
        "hostname \"a.example/api\" may not have a path; use the rule's path"
    );
    assert_eq!(
        error("a.*.example"),
        "hostname \"a.*.example\": a wildcard is allowed only as a leading \"*.\""
    );
    assert_eq!(
        error("*example.com"),
        "hostname \"*example.com\": a wildcard is allowed only as a leading \"*.\""
    );
    assert_eq!(
        error("a..example"),
        "hostname \"a..example\" has an empty label"
    );
    assert_eq!(
        error("a.example."),
        "hostname \"a.example.\" has an empty label"
    );
    assert_eq!(
        error("a_b.example"),
        "hostname \"a_b.example\" may hold only letters, digits, '-' and '.' \
             (write international names in punycode, xn--...)"
    );
    assert_eq!(
        error("-a.example"),
        "hostname \"-a.example\" has a label that starts or ends with '-'"
    );
    let long = format!("{}.example", "a".repeat(64));
    assert_eq!(
        error(&long),
        format!("hostname {long:?} has a label longer than 63 characters")
    );
}

#[test]
fn paths_and_host_headers_are_checked() {
    assert_eq!(
        parse_path("").unwrap_err(),
        "path may not be empty (leave it out to match every path)"
    );
    let err = parse_path("^/api/(").unwrap_err();
    assert!(
        err.starts_with("path \"^/api/(\" is not a valid regular expression: regex parse error:")
    );
    assert!(err.ends_with("error: unclosed group"), "{err}");

    assert_eq!(check_host_header("internal.example"), Ok(()));
    assert_eq!(check_host_header("internal.example:8080"), Ok(()));
    assert_eq!(check_host_header("[::1]:8080"), Ok(()));
    assert_eq!(
        check_host_header("a:b"),
        Err(
            "\"a:b\" is not a valid host[:port]: \"b\" is not a port number (1 to 65535)"
                .to_owned()
        )
    );
}

#[test]
fn rule_order_is_checked() {
    let catch_all = rule(None, None, "hello_world");
    let host = rule(Some("a.example"), None, "hello_world");
    let path = rule(None, Some("^/x"), "hello_world");

    assert_eq!(check_rule_order(&[host.clone(), catch_all.clone()]), Ok(()));
    assert_eq!(
        check_rule_order(&[catch_all.clone(), host.clone(), catch_all.clone()]),
        Err(IngressError {
            rule: 1,
            message: "it matches every request, so the rules after it are never used".to_owned()
        })
    );
    assert_eq!(
        check_rule_order(&[host, path]).unwrap_err().to_string(),
        "ingress rule 2: the last rule must match every request (no hostname or path)"
    );
}
