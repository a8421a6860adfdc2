//! Micro-benchmark of ingress rule matching: `Ingress::find` on a realistic ten-rule config
//! with exact hostnames, wildcards and path regexes, for requests that match early, late,
//! and only the catch-all.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};

use adit::connector::config::Config;

const CONFIG: &str = r#"
ingress:
  - hostname: api.example.com
    path: ^/v1/admin
    service: http_status:403
  - hostname: api.example.com
    path: ^/v[12]/(users|orders)/[0-9]+$
    service: http://127.0.0.1:8001
  - hostname: api.example.com
    service: http://127.0.0.1:8002
  - hostname: www.example.com
    service: http://127.0.0.1:8003
  - hostname: "*.cdn.example.com"
    path: \.(png|jpe?g|webp|css|js)$
    service: http://127.0.0.1:8004
  - hostname: "*.cdn.example.com"
    service: http://127.0.0.1:8005
  - hostname: ssh.example.com
    service: ssh://127.0.0.1:22
  - hostname: "*.staging.example.org"
    service: http://127.0.0.1:9000
  - hostname: status.example.org
    service: hello_world
  - service: http_status:404
"#;

fn ingress_find(c: &mut Criterion) {
    let config = Config::parse(CONFIG, Path::new("bench.yml")).unwrap();
    let ingress = config.ingress;
    assert_eq!(ingress.rules.len(), 10);

    let cases = [
        ("first_rule", "api.example.com", "/v1/admin/keys", 0),
        (
            "path_regex",
            "api.example.com:443",
            "/v2/orders/12345?expand=items",
            1,
        ),
        (
            "wildcard_path",
            "img.eu.cdn.example.com",
            "/assets/logo.webp",
            4,
        ),
        ("catch_all", "unknown.example.net", "/index.html", 9),
        (
            "normalized_path",
            "api.example.com",
            "/v1//./users/../admin",
            0,
        ),
    ];
    let mut group = c.benchmark_group("ingress/find");
    for (name, host, path, expected) in cases {
        assert_eq!(ingress.find(host, path).0, expected, "{name}");
        group.bench_function(name, |b| {
            b.iter(|| black_box(ingress.find(black_box(host), black_box(path)).0))
        });
    }
    group.finish();
}

criterion_group!(benches, ingress_find);
criterion_main!(benches);
