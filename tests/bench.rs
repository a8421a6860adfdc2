//! `adit bench` end to end: a tiny HTTP and TCP scenario through the real binary (origin in
//! its process, edge, connector and access client as its children), and `bench compare`'s
//! exit codes on crafted results.

mod common;

use std::process::Command;

use common::*;

#[test]
fn tiny_run_reports_both_paths_and_the_ratio() {
    let dir = TempDir::new("bench");
    let http = dir.path().join("tiny-get.toml");
    std::fs::write(
        &http,
        "kind = \"http\"\npath = \"/\"\nconnections = 4\nrequests = 300\nrounds = 1\n",
    )
    .unwrap();
    let tcp = dir.path().join("tiny-echo.toml");
    std::fs::write(
        &tcp,
        "kind = \"tcp\"\nmode = \"round-trip\"\nsize = 32\nconnections = 2\nrequests = 100\n\
         rounds = 1\n",
    )
    .unwrap();
    let json = dir.path().join("out.json");
    let svg = dir.path().join("plots");

    let output = Command::new(BIN)
        .args(["--loglevel", "warn", "bench"])
        .arg(&http)
        .arg(&tcp)
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "adit bench failed:\n{stderr}");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("tunnel/direct: throughput"), "{table}");

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let scenarios = report["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 2);
    for (scenario, (name, requests)) in scenarios
        .iter()
        .zip([("tiny-get", 300), ("tiny-echo", 100)])
    {
        assert_eq!(scenario["name"], name);
        let paths: Vec<&str> = scenario["paths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["path"].as_str().unwrap())
            .collect();
        assert_eq!(paths, ["direct", "tunnel"]);
        for path in scenario["paths"].as_array().unwrap() {
            assert_eq!(path["requests"], requests, "{name} {}", path["path"]);
            assert_eq!(path["errors"], 0, "{name} {}", path["path"]);
            assert_eq!(path["rounds"], 1);
        }
        let tunnel = &scenario["paths"][1];
        let roles: Vec<&str> = tunnel["processes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["role"].as_str().unwrap())
            .collect();
        let expected: &[&str] = if name == "tiny-echo" {
            &["edge", "connector", "access"]
        } else {
            &["edge", "connector"]
        };
        assert_eq!(roles, expected);
        assert!(tunnel["processes"][0]["peak_rss_kib"].as_u64().unwrap() > 0);
        let ratio = scenario["ratios"]["tunnel"]["requests_per_sec"]
            .as_f64()
            .unwrap();
        assert!(ratio > 0.0, "{name}: ratio {ratio}");
        assert!(svg.join(format!("{name}.svg")).is_file());
    }

    // Neither scenario is one the summary reads, so it has the paths and empty cells only.
    let rows = report["summary"]["rows"].as_array().unwrap();
    let paths: Vec<&str> = rows.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["direct", "tunnel"]);
    assert_eq!(rows[1]["small_get_rps"], serde_json::Value::Null);
    assert_eq!(report["skipped"], serde_json::json!([]));
    assert!(table.contains("\nsummary: "), "{table}");
}

#[test]
fn a_peer_that_does_not_start_is_skipped_with_its_reason() {
    let dir = TempDir::new("bench-skip");
    // A `rathole` that exits at once, first on PATH.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("rathole");
    std::fs::write(&fake, "#!/bin/sh\necho refusing to run >&2\nexit 3\n").unwrap();
    let mut permissions = std::fs::metadata(&fake).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&fake, permissions).unwrap();
    let http = dir.path().join("tiny-get.toml");
    std::fs::write(
        &http,
        "kind = \"http\"\nconnections = 2\nrequests = 50\nrounds = 1\n",
    )
    .unwrap();
    let json = dir.path().join("out.json");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let output = Command::new(BIN)
        .args(["--loglevel", "warn", "bench", "--peer", "rathole"])
        .arg(&http)
        .arg("--json")
        .arg(&json)
        .env("PATH", path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "adit bench failed:\n{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let skipped = report["skipped"].as_array().unwrap();
    let names: Vec<&str> = skipped
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["rathole", "rathole-tls"]);
    for entry in skipped {
        let reason = entry["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("rathole-server did not start: it exited (exit status: 3)"),
            "{reason}"
        );
        assert!(reason.ends_with("refusing to run"), "{reason}");
    }
    let paths: Vec<&str> = report["scenarios"][0]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["direct", "tunnel"]);
    assert!(
        stderr.contains("skipping rathole-tls: rathole-server did not start"),
        "{stderr}"
    );
}

const BASE: &str = r#"{"adit_version":"0.1.0","cores":2,"load_generator":"x","scenarios":[
  {"name":"small-get","kind":"http","unit":"request","paths":[
    {"path":"tunnel","rounds":3,"requests":30000,"errors":0,"bytes":1,"elapsed_s":3.0,
     "requests_per_sec":10000.0,"bytes_per_sec":1.0,
     "latency_us":{"p50":100,"p90":200,"p99":500,"p999":900,"max":1000}}]}]}"#;

fn compare(new_rps: &str, new_p99: &str) -> std::process::Output {
    let dir = TempDir::new("bench-compare");
    let base = dir.path().join("base.json");
    let new = dir.path().join("new.json");
    std::fs::write(&base, BASE).unwrap();
    let changed = BASE
        .replace("10000.0", new_rps)
        .replace("\"p99\":500", &format!("\"p99\":{new_p99}"));
    std::fs::write(&new, changed).unwrap();
    Command::new(BIN)
        .args(["bench", "compare"])
        .arg(&base)
        .arg(&new)
        .args(["--max-regression", "5"])
        .output()
        .unwrap()
}

#[test]
fn compare_passes_within_the_limit() {
    let out = compare("9700.0", "520");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "small-get/tunnel: req/s 10000 -> 9700 (-3.0%), p99 500µs -> 520µs (+4.0%)\n\
         ok: 1 paths compared, none regressed by more than 5%\n"
    );
}

#[test]
fn compare_fails_on_a_regression() {
    let out = compare("9000.0", "500");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "small-get/tunnel: req/s 10000 -> 9000 (-10.0%), p99 500µs -> 500µs (+0.0%)\n\
         FAIL: 1 regressions of more than 5%:\n  \
         small-get/tunnel: req/s dropped 10.0% (10000 -> 9000)\n"
    );
}
