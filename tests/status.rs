//! Tunnel status and connection history end to end: an edge and a connector as child
//! processes, observed through `adit tunnel list/info/cleanup`.

mod common;

use std::time::Duration;

use serde_json::Value;

use common::*;

/// `adit tunnel list ARGS --output json`, parsed.
fn list(edge: &Edge, args: &[&str]) -> Value {
    let mut full = vec!["tunnel", "list", "--output", "json"];
    full.extend_from_slice(args);
    let out = edge.cli(&full);
    assert!(
        out.status.success(),
        "list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The names and connection counts a listing shows.
fn rows(listed: &Value) -> Vec<(String, u64)> {
    let tunnels = listed["tunnels"].as_array().unwrap();
    let row = |t: &Value| {
        let name = t["name"].as_str().unwrap().to_owned();
        (name, t["connections"].as_u64().unwrap())
    };
    tunnels.iter().map(row).collect()
}

#[test]
fn status_follows_the_connector_and_history_remains() {
    let dir = TempDir::new("status");
    let edge = Edge::start(dir.path());
    let cred = edge.create_tunnel("web");
    edge.create_tunnel("spare");
    edge.route("web", "web.test");
    let origin = start_origin();

    let mut connector = start_connector_with(dir.path(), "web", &cred, &origin_rule(origin), 4);
    // Four connections and none of them being moved to another edge worker (a moved one
    // drains for a moment, and the tunnel reads degraded meanwhile).
    let active = eventually(Duration::from_secs(30), "four live connections", || {
        let listed = list(&edge, &["--status", "active"]);
        let settled = listed["tunnels"][0]["status"] == "active";
        (rows(&listed) == [("web".to_owned(), 4)] && settled).then_some(listed)
    });
    let web = &active["tunnels"][0];
    assert_eq!(active["total"], 1);
    assert_eq!(web["status"], "active");
    assert_eq!(web["connectors"], 1);
    assert!(web["last_active_at"].is_string());
    let inactive = list(&edge, &["--status", "inactive"]);
    assert_eq!(rows(&inactive), [("spare".to_owned(), 0)]);
    let info = edge.info("web");
    let live = info["connections"].as_array().unwrap();
    assert!(live.iter().all(|c| c["ha_connections"] == 4));

    connector.terminate();
    let exited = connector.wait_exit(Duration::from_secs(40));
    assert!(exited.is_some(), "the connector did not exit");
    let inactive = eventually(Duration::from_secs(30), "the tunnel going inactive", || {
        let listed = list(&edge, &["--status", "inactive", "--sort-by", "name"]);
        (rows(&listed) == [("spare".to_owned(), 0), ("web".to_owned(), 0)]).then_some(listed)
    });
    let web = &inactive["tunnels"][1];
    assert_eq!(web["uptime_seconds"], 0);
    assert!(web["last_inactive_at"].is_string());
    assert_eq!(list(&edge, &["--status", "active"])["total"], 0);

    let info = edge.info("web");
    assert_eq!(info["status"], "inactive");
    assert_eq!(info["connections"], Value::Array(Vec::new()));
    let history = info["history"].as_array().unwrap();
    assert!(history.len() >= 4, "history: {history:?}");
    let mut indexes: Vec<u64> = history
        .iter()
        .map(|c| c["conn_index"].as_u64().unwrap())
        .collect();
    indexes.sort();
    indexes.dedup();
    assert_eq!(indexes, [0, 1, 2, 3]);
    assert!(history.iter().all(|c| c["closed_at"].is_string()));

    let out = edge.cli(&["tunnel", "cleanup", "web"]);
    assert!(
        out.status.success(),
        "cleanup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "Removed {} connection record(s) of tunnel web\n",
            history.len()
        )
    );
    assert_eq!(edge.info("web")["history"], Value::Array(Vec::new()));
    let out = edge.cli(&["tunnel", "cleanup", "web"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Removed 0 connection record(s) of tunnel web\n"
    );
}
