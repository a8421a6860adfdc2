//! Unit tests of `store`.

use super::*;

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("adit-store-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tunnel(n: u128, name: &str) -> TunnelRecord {
    TunnelRecord {
        id: Uuid::from_u128(n),
        name: name.into(),
        secret_hash: vec![n as u8; 32],
        created_at: 1_000 + n as i64,
        deleted_at: None,
        last_active_at: None,
        last_inactive_at: None,
    }
}

fn connection(n: u128, tunnel_id: Uuid) -> ConnectionRecord {
    ConnectionRecord {
        id: Uuid::from_u128(100 + n),
        tunnel_id,
        connector_id: Uuid::from_u128(200),
        conn_index: n as u8,
        edge_worker: 1,
        remote_addr: "127.0.0.1:5000".into(),
        version: "0.1.0".into(),
        platform: "linux-x86_64".into(),
        ha_connections: 4,
        opened_at: 5_000,
        closed_at: None,
    }
}

#[test]
fn tunnels_create_find_duplicate_delete() {
    let dir = TempDir::new();
    let mut store = Store::open(&dir.0.join("adit.db")).unwrap();
    let a = tunnel(1, "a");
    let b = tunnel(2, "b");
    store.create_tunnel(&b).unwrap();
    store.create_tunnel(&a).unwrap();

    assert_eq!(store.tunnel(TunnelKey::Name("a")).unwrap(), Some(a.clone()));
    assert_eq!(store.tunnel(TunnelKey::Id(b.id)).unwrap(), Some(b.clone()));
    assert_eq!(store.tunnel(TunnelKey::Name("c")).unwrap(), None);
    assert_eq!(store.tunnels().unwrap(), vec![a.clone(), b.clone()]);

    let dup = tunnel(3, "a");
    let err = store.create_tunnel(&dup).unwrap_err();
    assert_eq!(err.to_string(), "a tunnel named \"a\" already exists");

    store.delete_tunnel(a.id, 9_000).unwrap();
    assert_eq!(store.tunnel(TunnelKey::Name("a")).unwrap(), None);
    assert_eq!(store.tunnel(TunnelKey::Id(a.id)).unwrap(), None);
    assert_eq!(store.tunnels().unwrap(), vec![b.clone()]);

    // A deleted tunnel's name is free again.
    store.create_tunnel(&dup).unwrap();
    assert_eq!(store.tunnel(TunnelKey::Name("a")).unwrap(), Some(dup));
}

#[test]
fn routes_conflict_and_go_with_their_tunnel() {
    let dir = TempDir::new();
    let mut store = Store::open(&dir.0.join("adit.db")).unwrap();
    let a = tunnel(1, "a");
    let b = tunnel(2, "b");
    store.create_tunnel(&a).unwrap();
    store.create_tunnel(&b).unwrap();

    assert_eq!(
        store.add_route("x.example.com", a.id, 1).unwrap(),
        RouteAdded::Created
    );
    assert_eq!(
        store.add_route("x.example.com", a.id, 2).unwrap(),
        RouteAdded::Unchanged
    );
    assert_eq!(
        store.add_route("x.example.com", b.id, 3).unwrap(),
        RouteAdded::Taken { tunnel_id: a.id }
    );
    assert_eq!(
        store.add_route("*.example.com", b.id, 4).unwrap(),
        RouteAdded::Created
    );
    assert_eq!(
        store.routes().unwrap(),
        vec![
            RouteRecord {
                hostname: "*.example.com".into(),
                tunnel_id: b.id,
                tunnel_name: "b".into()
            },
            RouteRecord {
                hostname: "x.example.com".into(),
                tunnel_id: a.id,
                tunnel_name: "a".into()
            },
        ]
    );

    store.delete_tunnel(a.id, 10).unwrap();
    assert_eq!(store.routes().unwrap().len(), 1);
    assert_eq!(
        store.add_route("x.example.com", b.id, 11).unwrap(),
        RouteAdded::Created
    );
}

#[test]
fn reopen_keeps_state_and_closes_stale_connections() {
    let dir = TempDir::new();
    let path = dir.0.join("adit.db");
    let a = tunnel(1, "a");
    {
        let mut store = Store::open(&path).unwrap();
        store.create_tunnel(&a).unwrap();
        store.add_route("a.example.com", a.id, 1).unwrap();
        store.open_connection(&connection(1, a.id)).unwrap();
        store.open_connection(&connection(2, a.id)).unwrap();
        store.close_connection(Uuid::from_u128(101), 6_000).unwrap();
        assert_eq!(store.open_connection_count().unwrap(), 1);
    }

    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.tunnels().unwrap(), vec![a.clone()]);
    assert_eq!(store.routes().unwrap()[0].hostname, "a.example.com");
    assert_eq!(store.open_connection_count().unwrap(), 1);
    assert_eq!(store.close_stale_connections(7_000).unwrap(), 1);
    assert_eq!(store.open_connection_count().unwrap(), 0);
    let reloaded = store.tunnel(TunnelKey::Id(a.id)).unwrap().unwrap();
    assert_eq!(reloaded.last_inactive_at, Some(7_000));
    assert_eq!(store.close_stale_connections(8_000).unwrap(), 0);
    let reloaded = store.tunnel(TunnelKey::Id(a.id)).unwrap().unwrap();
    assert_eq!(reloaded.last_inactive_at, Some(7_000));
}

#[test]
fn status_times_and_deleted_tunnels() {
    let dir = TempDir::new();
    let mut store = Store::open(&dir.0.join("adit.db")).unwrap();
    let a = tunnel(1, "a");
    let b = tunnel(2, "b");
    store.create_tunnel(&a).unwrap();
    store.create_tunnel(&b).unwrap();
    store.set_last_active(a.id, 2_000).unwrap();
    store.set_last_inactive(a.id, 3_000).unwrap();
    store.delete_tunnel(b.id, 4_000).unwrap();

    let expected_a = TunnelRecord {
        last_active_at: Some(2_000),
        last_inactive_at: Some(3_000),
        ..a.clone()
    };
    let expected_b = TunnelRecord {
        deleted_at: Some(4_000),
        ..b.clone()
    };
    assert_eq!(store.tunnels().unwrap(), vec![expected_a.clone()]);
    assert_eq!(
        store.tunnels_with_deleted().unwrap(),
        vec![expected_a, expected_b]
    );
}

#[test]
fn history_newest_first_and_cleanup() {
    let dir = TempDir::new();
    let mut store = Store::open(&dir.0.join("adit.db")).unwrap();
    let a = tunnel(1, "a");
    let b = tunnel(2, "b");
    store.create_tunnel(&a).unwrap();
    store.create_tunnel(&b).unwrap();
    for n in 1..=4 {
        store.open_connection(&connection(n, a.id)).unwrap();
    }
    store.open_connection(&connection(5, b.id)).unwrap();
    store.close_connection(Uuid::from_u128(101), 6_000).unwrap();
    store.close_connection(Uuid::from_u128(102), 7_000).unwrap();
    store.close_connection(Uuid::from_u128(105), 7_000).unwrap();

    let history = store.closed_connections(a.id, 50).unwrap();
    let closed = |n: u128, at: i64| ConnectionRecord {
        closed_at: Some(at),
        ..connection(n, a.id)
    };
    assert_eq!(history, vec![closed(2, 7_000), closed(1, 6_000)]);
    assert_eq!(
        store.closed_connections(a.id, 1).unwrap(),
        vec![closed(2, 7_000)]
    );

    // Connection 4 is live and stays; 3 is open but not live, so it goes.
    let removed = store
        .remove_connections(a.id, &[Uuid::from_u128(104)])
        .unwrap();
    assert_eq!(removed, 3);
    assert_eq!(store.closed_connections(a.id, 50).unwrap(), vec![]);
    assert_eq!(store.open_connection_count().unwrap(), 1);
    assert_eq!(
        store
            .remove_connections(a.id, &[Uuid::from_u128(104)])
            .unwrap(),
        0
    );
    assert_eq!(store.closed_connections(b.id, 50).unwrap().len(), 1);
}

#[test]
fn version_one_databases_are_migrated() {
    let dir = TempDir::new();
    let path = dir.0.join("adit.db");
    {
        let mut db = Connection::open(&path).unwrap();
        db.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);\
             INSERT INTO schema_version (version) VALUES (1);",
        )
        .unwrap();
        let tx = db.transaction().unwrap();
        tx.execute_batch(MIGRATIONS[0]).unwrap();
        tx.execute(
            "INSERT INTO tunnels (id, name, secret_hash, created_at) VALUES (?1, 'old', x'00', 10)",
            [Uuid::from_u128(1).to_string()],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO connections (id, tunnel_id, connector_id, conn_index, edge_worker, \
             remote_addr, version, platform, opened_at, closed_at) \
             VALUES (?1, ?2, ?3, 0, 0, 'r', 'v', 'p', 20, 30)",
            [
                Uuid::from_u128(2).to_string(),
                Uuid::from_u128(1).to_string(),
                Uuid::from_u128(3).to_string(),
            ],
        )
        .unwrap();
        tx.commit().unwrap();
    }

    let store = Store::open(&path).unwrap();
    let old = store.tunnel(TunnelKey::Name("old")).unwrap().unwrap();
    assert_eq!((old.last_active_at, old.last_inactive_at), (None, None));
    let history = store.closed_connections(Uuid::from_u128(1), 50).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].ha_connections, 0);
    assert_eq!(history[0].closed_at, Some(30));
    let version: i64 = store
        .db
        .query_row("SELECT version FROM schema_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 2);
}

#[test]
fn newer_schema_is_refused() {
    let dir = TempDir::new();
    let path = dir.0.join("adit.db");
    drop(Store::open(&path).unwrap());
    let db = Connection::open(&path).unwrap();
    db.execute("UPDATE schema_version SET version = 99", [])
        .unwrap();
    drop(db);
    let err = Store::open(&path).err().unwrap();
    assert_eq!(
        err.to_string(),
        "database schema version 99 is newer than this adit understands (2)"
    );
}

#[test]
fn tunnel_keys() {
    let id = Uuid::from_u128(7);
    assert_eq!(TunnelKey::parse(&id.to_string()), TunnelKey::Id(id));
    assert_eq!(TunnelKey::parse("web"), TunnelKey::Name("web"));
}
