//! Unit tests of `registry`.

use super::*;

/// 2023-11-14T22:13:20Z
const BASE: i64 = 1_700_000_000_000;
const SECOND: i64 = 1_000;

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("adit-registry-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn state(&self, now: i64) -> State {
        let store = Store::open(&self.0.join("adit.db")).unwrap();
        let addr = "127.0.0.1:7844".parse().unwrap();
        State::load_at(store, addr, "ca".into(), now).unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tunnel created at `now` and its secret.
fn create(state: &mut State, name: &str, now: i64) -> (Uuid, [u8; SECRET_LEN]) {
    let created = state.create_tunnel_at(name, now).unwrap();
    let secret = hex::decode(&created.secret).unwrap().try_into().unwrap();
    (created.id, secret)
}

/// Registers connection `index` of `connector` (which asked for `ha`) at `now`.
fn register(
    state: &mut State,
    tunnel: (Uuid, [u8; SECRET_LEN]),
    connector: u128,
    index: u8,
    ha: u8,
    now: i64,
) -> Uuid {
    let request = RegisterRequest {
        tunnel_id: tunnel.0,
        secret: tunnel.1,
        connector_id: Uuid::from_u128(connector),
        conn_index: index,
        ha_connections: ha,
        version: "0.1.0".into(),
        platform: "linux-x86_64".into(),
        remote_addr: "127.0.0.1:50000".parse().unwrap(),
        worker: usize::from(index),
    };
    state.register(&request, now).unwrap().connection_id
}

/// Status, uptime and the last active and inactive times of `name` at `now`.
fn status(state: &State, name: &str, now: i64) -> (String, u64, Option<String>, Option<String>) {
    let info = state.tunnel_info_at(name, now).unwrap();
    let times = (info.last_active_at, info.last_inactive_at);
    (info.status, info.uptime_seconds, times.0, times.1)
}

fn at(ms: i64) -> Option<String> {
    Some(rfc3339(ms))
}

#[test]
fn status_transitions_are_recorded() {
    let dir = TempDir::new();
    let mut state = dir.state(BASE);
    let web = create(&mut state, "web", BASE);
    let t = |seconds: i64| BASE + seconds * SECOND;
    assert_eq!(
        status(&state, "web", t(1)),
        ("inactive".into(), 0, None, None)
    );

    let a0 = register(&mut state, web, 1, 0, 2, t(10));
    assert_eq!(
        status(&state, "web", t(15)),
        ("degraded".into(), 5, at(t(10)), None)
    );
    let a1 = register(&mut state, web, 1, 1, 2, t(20));
    assert_eq!(
        status(&state, "web", t(30)),
        ("active".into(), 20, at(t(10)), None)
    );

    // A second connector with fewer connections than it asked for.
    let b0 = register(&mut state, web, 2, 0, 2, t(40));
    assert_eq!(status(&state, "web", t(40)).0, "degraded");
    // Draining, it no longer counts as a connector that routes.
    state.unregister(b0, t(50));
    assert_eq!(status(&state, "web", t(50)).0, "active");

    state.closed(a0, t(60));
    assert_eq!(
        status(&state, "web", t(60)),
        ("degraded".into(), 50, at(t(10)), None)
    );
    state.closed(a1, t(70));
    let inactive = ("inactive".into(), 0, at(t(10)), at(t(70)));
    assert_eq!(status(&state, "web", t(80)), inactive);
    // Closing a draining connection of an inactive tunnel changes no times.
    state.closed(b0, t(90));
    assert_eq!(status(&state, "web", t(90)), inactive);

    let info = state.tunnel_info_at("web", t(90)).unwrap();
    let history: Vec<(Uuid, u8, Option<String>)> = info
        .history
        .iter()
        .map(|c| (c.id, c.ha_connections, c.closed_at.clone()))
        .collect();
    assert_eq!(
        history,
        vec![(b0, 2, at(t(90))), (a1, 2, at(t(70))), (a0, 2, at(t(60)))]
    );
    assert_eq!(info.history[2].opened_at, rfc3339(t(10)));
    assert_eq!(info.history[2].origin_addr, "127.0.0.1:50000");
    assert_eq!(info.connections, vec![]);

    // Unregistering the last routable connection makes the tunnel inactive at once.
    let c0 = register(&mut state, web, 3, 0, 1, t(100));
    assert_eq!(
        status(&state, "web", t(100)),
        ("active".into(), 0, at(t(100)), at(t(70)))
    );
    state.unregister(c0, t(110));
    assert_eq!(
        status(&state, "web", t(120)),
        ("inactive".into(), 0, at(t(100)), at(t(110)))
    );
    let live = &state.tunnel_info_at("web", t(120)).unwrap().connections;
    assert_eq!(
        (live.len(), live[0].draining, live[0].ha_connections),
        (1, true, 1)
    );
}

#[test]
fn cleanup_drops_records_that_are_not_live() {
    let dir = TempDir::new();
    let mut state = dir.state(BASE);
    let web = create(&mut state, "web", BASE);
    let other = create(&mut state, "other", BASE);
    let first = register(&mut state, web, 1, 0, 2, BASE + 1);
    register(&mut state, web, 1, 1, 2, BASE + 2);
    register(&mut state, other, 2, 0, 1, BASE + 3);
    state.closed(first, BASE + 4);
    register(&mut state, web, 1, 0, 2, BASE + 5);

    let cleaned = state.cleanup("web").unwrap();
    assert_eq!(cleaned.tunnel_id, web.0);
    assert_eq!(cleaned.removed, 1);
    let info = state.tunnel_info_at("web", BASE + 6).unwrap();
    assert_eq!((info.connections.len(), info.history.len()), (2, 0));
    assert_eq!(state.cleanup("web").unwrap().removed, 0);
    assert_eq!(state.cleanup("other").unwrap().removed, 0);
    let err = state.cleanup("nope").unwrap_err();
    assert_eq!(
        (err.status(), err.to_string()),
        (404, "tunnel nope does not exist".into())
    );
}

#[test]
fn stale_records_are_closed_at_start() {
    let dir = TempDir::new();
    let (live, draining) = {
        let mut state = dir.state(BASE);
        let web = create(&mut state, "web", BASE);
        create(&mut state, "idle", BASE);
        let live = register(&mut state, web, 1, 0, 1, BASE + SECOND);
        let draining = register(&mut state, web, 2, 0, 1, BASE + SECOND);
        state.unregister(draining, BASE + 2 * SECOND);
        (live, draining)
    };

    let restart = BASE + 60 * SECOND;
    let state = dir.state(restart);
    let info = state.tunnel_info_at("web", restart + SECOND).unwrap();
    assert_eq!(info.status, "inactive");
    assert_eq!(info.uptime_seconds, 0);
    assert_eq!(info.last_active_at, at(BASE + SECOND));
    assert_eq!(info.last_inactive_at, at(restart));
    assert_eq!(info.connections, vec![]);
    let mut closed: Vec<(Uuid, Option<String>)> = info
        .history
        .iter()
        .map(|c| (c.id, c.closed_at.clone()))
        .collect();
    closed.sort();
    let mut expected = vec![(live, at(restart)), (draining, at(restart))];
    expected.sort();
    assert_eq!(closed, expected);
    // A tunnel with no open records keeps its times.
    assert_eq!(
        status(&state, "idle", restart),
        ("inactive".into(), 0, None, None)
    );
}

#[test]
fn forced_delete_of_an_active_tunnel() {
    let dir = TempDir::new();
    let mut state = dir.state(BASE);
    let web = create(&mut state, "web", BASE);
    register(&mut state, web, 1, 0, 1, BASE + SECOND);
    let err = state
        .delete_tunnel_at("web", false, BASE + 2 * SECOND)
        .unwrap_err();
    assert_eq!(err.status(), 409);
    state
        .delete_tunnel_at("web", true, BASE + 3 * SECOND)
        .unwrap();

    let query = api::ListQuery {
        show_deleted: true,
        ..api::ListQuery::default()
    };
    let listed = state.list_tunnels_at(&query, BASE + 4 * SECOND).unwrap();
    let deleted = &listed.tunnels[0];
    assert_eq!(deleted.status, "deleted");
    assert_eq!(deleted.deleted_at, at(BASE + 3 * SECOND));
    assert_eq!(deleted.last_active_at, at(BASE + SECOND));
    assert_eq!(deleted.last_inactive_at, at(BASE + 3 * SECOND));
    let listed = state
        .list_tunnels_at(&api::ListQuery::default(), BASE)
        .unwrap();
    assert_eq!(listed.total, 0);
}

#[test]
fn deleted_tunnels_answer_info() {
    let dir = TempDir::new();
    let mut state = dir.state(BASE);
    let old = create(&mut state, "web", BASE);
    state.add_route("web", "web.test").unwrap();
    let conn = register(&mut state, old, 1, 0, 1, BASE + SECOND);
    state.handle_at(
        ControlMsg::Closed {
            connection_id: conn,
        },
        BASE + 2 * SECOND,
    );
    state
        .delete_tunnel_at("web", false, BASE + 3 * SECOND)
        .unwrap();

    // By id, and by name while no live tunnel has the name.
    let info = state
        .tunnel_info_at(&old.0.to_string(), BASE + 4 * SECOND)
        .unwrap();
    assert_eq!(
        state.tunnel_info_at("web", BASE + 4 * SECOND).unwrap(),
        info
    );
    assert_eq!((info.id, info.name.as_str()), (old.0, "web"));
    assert_eq!(info.status, "deleted");
    assert_eq!(info.deleted_at, at(BASE + 3 * SECOND));
    assert_eq!(info.uptime_seconds, 0);
    assert_eq!(info.last_active_at, at(BASE + SECOND));
    assert_eq!(info.last_inactive_at, at(BASE + 2 * SECOND));
    assert_eq!(info.connections, []);
    assert_eq!(info.routes, Vec::<String>::new());
    let history: Vec<_> = info
        .history
        .iter()
        .map(|c| (c.id, c.closed_at.clone()))
        .collect();
    assert_eq!(history, [(conn, at(BASE + 2 * SECOND))]);

    // The name goes to the live tunnel again, then to the newest deleted one.
    let new = create(&mut state, "web", BASE + 5 * SECOND);
    let info = state.tunnel_info_at("web", BASE + 6 * SECOND).unwrap();
    assert_eq!(
        (info.id, info.status.as_str(), info.deleted_at),
        (new.0, "inactive", None)
    );
    state
        .delete_tunnel_at("web", false, BASE + 7 * SECOND)
        .unwrap();
    let info = state.tunnel_info_at("web", BASE + 8 * SECOND).unwrap();
    assert_eq!((info.id, info.deleted_at), (new.0, at(BASE + 7 * SECOND)));
    let info = state
        .tunnel_info_at(&old.0.to_string(), BASE + 8 * SECOND)
        .unwrap();
    assert_eq!(info.deleted_at, at(BASE + 3 * SECOND));

    // Everything else still wants a live tunnel.
    let err = state.cleanup("web").unwrap_err();
    assert_eq!(err.to_string(), "tunnel web does not exist");
    let err = state.tunnel_info_at("gone", BASE).unwrap_err();
    assert_eq!(
        (err.status(), err.to_string()),
        (404, "tunnel gone does not exist".into())
    );
}

#[test]
fn listing_through_the_store() {
    let dir = TempDir::new();
    let mut state = dir.state(BASE);
    let hour = 3_600 * SECOND;
    let old = create(&mut state, "old", BASE);
    let new = create(&mut state, "new", BASE + 24 * hour);
    create(&mut state, "idle", BASE + 48 * hour);
    register(&mut state, old, 1, 0, 1, BASE + hour);
    register(&mut state, new, 2, 0, 2, BASE + 49 * hour);
    let now = BASE + 50 * hour;

    let names = |query: &str| -> Vec<String> {
        let query = crate::control::query::parse_query(query).unwrap();
        let listed = state.list_tunnels_at(&query, now).unwrap();
        listed.tunnels.into_iter().map(|t| t.name).collect()
    };
    assert_eq!(names(""), ["old", "new", "idle"]);
    assert_eq!(names("status=active"), ["old", "new"]);
    assert_eq!(names("status=degraded"), ["new"]);
    assert_eq!(names("status=inactive"), ["idle"]);
    assert_eq!(names("min_uptime=2h"), ["old"]);
    assert_eq!(names("min_uptime=1h"), ["old", "new"]);
    assert_eq!(names("created_after=2023-11-15T00:00:00Z"), ["new", "idle"]);
    assert_eq!(names("created_before=2023-11-15T00:00:00Z"), ["old"]);
    assert_eq!(names("sort_by=uptime"), ["old", "new", "idle"]);
    assert_eq!(names("sort_by=uptime&invert_sort"), ["idle", "new", "old"]);
    assert_eq!(names("sort_by=name"), ["idle", "new", "old"]);
    assert_eq!(names("search=E&per_page=1&page=2"), ["idle"]);

    let listed = state
        .list_tunnels_at(&api::ListQuery::default(), now)
        .unwrap();
    assert_eq!(listed.tunnels[0].uptime_seconds, 49 * 3_600);
    assert_eq!(listed.tunnels[1].uptime_seconds, 3_600);

    let bad = api::ListQuery {
        min_uptime: Some("long".into()),
        ..api::ListQuery::default()
    };
    let err = state.list_tunnels_at(&bad, now).unwrap_err();
    assert_eq!(err.status(), 400);
    assert_eq!(
        err.to_string(),
        "min_uptime: expected a duration like 90s, 10m or 2h, not \"long\""
    );
}

#[test]
fn times_format_as_rfc3339() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_700_000_000_999), "2023-11-14T22:13:20Z");
    assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
}

#[test]
fn errors_map_to_statuses() {
    assert_eq!(OpError::Invalid("x".into()).status(), 400);
    assert_eq!(OpError::NotFound("x".into()).status(), 404);
    assert_eq!(OpError::Conflict("x".into()).status(), 409);
    let store = OpError::Store(StoreError::Corrupt("x".into()));
    assert_eq!(store.status(), 500);
}
