//! The control plane's persistent state: tunnels, routes and connection history.
//!
//! Every SQL statement of the edge lives in this file, behind [`Store`]'s narrow set of
//! methods, so a shared server database can replace SQLite when several edges must agree.
//! The schema evolves by numbered migrations recorded in `schema_version`.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

/// Migration `i` moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[r#"
    CREATE TABLE tunnels (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        secret_hash BLOB NOT NULL,
        created_at  INTEGER NOT NULL,
        deleted_at  INTEGER
    );
    CREATE UNIQUE INDEX tunnels_name_live ON tunnels(name) WHERE deleted_at IS NULL;
    CREATE TABLE routes (
        hostname   TEXT PRIMARY KEY,
        tunnel_id  TEXT NOT NULL REFERENCES tunnels(id),
        created_at INTEGER NOT NULL
    );
    CREATE INDEX routes_tunnel ON routes(tunnel_id);
    CREATE TABLE connections (
        id           TEXT PRIMARY KEY,
        tunnel_id    TEXT NOT NULL REFERENCES tunnels(id),
        connector_id TEXT NOT NULL,
        conn_index   INTEGER NOT NULL,
        edge_worker  INTEGER NOT NULL,
        remote_addr  TEXT NOT NULL,
        version      TEXT NOT NULL,
        platform     TEXT NOT NULL,
        opened_at    INTEGER NOT NULL,
        closed_at    INTEGER
    );
    CREATE INDEX connections_open ON connections(closed_at) WHERE closed_at IS NULL;
"#];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("a tunnel named {0:?} already exists")]
    NameTaken(String),
    #[error("database schema version {found} is newer than this adit understands ({known})")]
    TooNew { found: i64, known: i64 },
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelRecord {
    pub id: Uuid,
    pub name: String,
    pub secret_hash: Vec<u8>,
    /// Unix milliseconds.
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRecord {
    pub hostname: String,
    pub tunnel_id: Uuid,
    pub tunnel_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRecord {
    pub id: Uuid,
    pub tunnel_id: Uuid,
    pub connector_id: Uuid,
    pub conn_index: u8,
    pub edge_worker: usize,
    pub remote_addr: String,
    pub version: String,
    pub platform: String,
    /// Unix milliseconds.
    pub opened_at: i64,
}

/// A tunnel named or identified by what an operator typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelKey<'a> {
    Id(Uuid),
    Name(&'a str),
}

impl<'a> TunnelKey<'a> {
    /// Names are never UUIDs, so anything that parses as one is an id.
    pub fn parse(text: &'a str) -> Self {
        match Uuid::parse_str(text) {
            Ok(id) => TunnelKey::Id(id),
            Err(_) => TunnelKey::Name(text),
        }
    }
}

/// What adding a route did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAdded {
    Created,
    /// The hostname already pointed to this tunnel.
    Unchanged,
    /// The hostname points to another tunnel; nothing changed.
    Taken {
        tunnel_id: Uuid,
    },
}

pub struct Store {
    db: Connection,
}

impl Store {
    /// Opens or creates the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut db = Connection::open(path)?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
        db.execute_batch("PRAGMA foreign_keys=ON;")?;
        migrate(&mut db)?;
        Ok(Store { db })
    }

    pub fn create_tunnel(&mut self, tunnel: &TunnelRecord) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        let taken: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM tunnels WHERE name = ?1 AND deleted_at IS NULL)",
            [&tunnel.name],
            |row| row.get(0),
        )?;
        if taken {
            return Err(StoreError::NameTaken(tunnel.name.clone()));
        }
        tx.execute(
            "INSERT INTO tunnels (id, name, secret_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![
                tunnel.id.to_string(),
                tunnel.name,
                tunnel.secret_hash,
                tunnel.created_at
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// A tunnel that has not been deleted.
    pub fn tunnel(&self, key: TunnelKey<'_>) -> Result<Option<TunnelRecord>, StoreError> {
        const COLUMNS: &str = "SELECT id, name, secret_hash, created_at FROM tunnels";
        let row = match key {
            TunnelKey::Id(id) => self.db.query_row(
                &format!("{COLUMNS} WHERE id = ?1 AND deleted_at IS NULL"),
                [id.to_string()],
                raw_tunnel,
            ),
            TunnelKey::Name(name) => self.db.query_row(
                &format!("{COLUMNS} WHERE name = ?1 AND deleted_at IS NULL"),
                [name],
                raw_tunnel,
            ),
        };
        row.optional()?.map(RawTunnel::parse).transpose()
    }

    /// Every tunnel that has not been deleted, oldest first.
    pub fn tunnels(&self) -> Result<Vec<TunnelRecord>, StoreError> {
        let mut stmt = self.db.prepare(
            "SELECT id, name, secret_hash, created_at FROM tunnels \
             WHERE deleted_at IS NULL ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([], raw_tunnel)?;
        rows.map(|row| row?.parse()).collect()
    }

    /// Marks the tunnel deleted and removes its routes, in one transaction.
    pub fn delete_tunnel(&mut self, id: Uuid, now: i64) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        tx.execute("DELETE FROM routes WHERE tunnel_id = ?1", [id.to_string()])?;
        tx.execute(
            "UPDATE tunnels SET deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL",
            params![id.to_string(), now],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Routes `hostname` (validated, lowercase) to `tunnel_id` unless another tunnel has it.
    pub fn add_route(
        &mut self,
        hostname: &str,
        tunnel_id: Uuid,
        now: i64,
    ) -> Result<RouteAdded, StoreError> {
        let tx = self.db.transaction()?;
        let owner: Option<String> = tx
            .query_row(
                "SELECT tunnel_id FROM routes WHERE hostname = ?1",
                [hostname],
                |row| row.get(0),
            )
            .optional()?;
        let outcome = match owner {
            Some(owner) => {
                let owner = parse_uuid(&owner)?;
                if owner == tunnel_id {
                    RouteAdded::Unchanged
                } else {
                    RouteAdded::Taken { tunnel_id: owner }
                }
            }
            None => {
                tx.execute(
                    "INSERT INTO routes (hostname, tunnel_id, created_at) VALUES (?1, ?2, ?3)",
                    params![hostname, tunnel_id.to_string(), now],
                )?;
                RouteAdded::Created
            }
        };
        tx.commit()?;
        Ok(outcome)
    }

    /// Every route with its tunnel's name, sorted by hostname.
    pub fn routes(&self) -> Result<Vec<RouteRecord>, StoreError> {
        let mut stmt = self.db.prepare(
            "SELECT r.hostname, r.tunnel_id, t.name FROM routes r \
             JOIN tunnels t ON t.id = r.tunnel_id ORDER BY r.hostname",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?;
        rows.map(|row| {
            let (hostname, tunnel_id, tunnel_name) = row?;
            Ok(RouteRecord {
                hostname,
                tunnel_id: parse_uuid(&tunnel_id)?,
                tunnel_name,
            })
        })
        .collect()
    }

    /// Records a newly registered connection.
    pub fn open_connection(&mut self, conn: &ConnectionRecord) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT INTO connections (id, tunnel_id, connector_id, conn_index, edge_worker, \
             remote_addr, version, platform, opened_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                conn.id.to_string(),
                conn.tunnel_id.to_string(),
                conn.connector_id.to_string(),
                conn.conn_index,
                i64::try_from(conn.edge_worker).unwrap_or(i64::MAX),
                conn.remote_addr,
                conn.version,
                conn.platform,
                conn.opened_at,
            ],
        )?;
        Ok(())
    }

    /// Records the end of a connection; closing it twice changes nothing.
    pub fn close_connection(&mut self, id: Uuid, now: i64) -> Result<(), StoreError> {
        self.db.execute(
            "UPDATE connections SET closed_at = ?2 WHERE id = ?1 AND closed_at IS NULL",
            params![id.to_string(), now],
        )?;
        Ok(())
    }

    /// Closes every connection still recorded open: on start they are records of a previous
    /// run whose process ended without saying so. Returns how many there were.
    pub fn close_stale_connections(&mut self, now: i64) -> Result<usize, StoreError> {
        Ok(self.db.execute(
            "UPDATE connections SET closed_at = ?1 WHERE closed_at IS NULL",
            [now],
        )?)
    }

    /// How many connections are recorded open.
    #[cfg(test)]
    pub fn open_connection_count(&self) -> Result<u64, StoreError> {
        Ok(self.db.query_row(
            "SELECT COUNT(*) FROM connections WHERE closed_at IS NULL",
            [],
            |row| row.get(0),
        )?)
    }
}

fn migrate(db: &mut Connection) -> Result<(), StoreError> {
    db.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);")?;
    let found: Option<i64> = db
        .query_row("SELECT MAX(version) FROM schema_version", [], |row| {
            row.get(0)
        })
        .optional()?
        .flatten();
    let found = found.unwrap_or(0);
    let known = MIGRATIONS.len() as i64;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }

    for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = db.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute("DELETE FROM schema_version", [])?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [version as i64 + 1],
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// A tunnels row before its id is parsed.
struct RawTunnel {
    id: String,
    name: String,
    secret_hash: Vec<u8>,
    created_at: i64,
}

impl RawTunnel {
    fn parse(self) -> Result<TunnelRecord, StoreError> {
        Ok(TunnelRecord {
            id: parse_uuid(&self.id)?,
            name: self.name,
            secret_hash: self.secret_hash,
            created_at: self.created_at,
        })
    }
}

fn raw_tunnel(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawTunnel> {
    Ok(RawTunnel {
        id: row.get(0)?,
        name: row.get(1)?,
        secret_hash: row.get(2)?,
        created_at: row.get(3)?,
    })
}

fn parse_uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|_| StoreError::Corrupt(format!("tunnel id {text:?}")))
}

#[cfg(test)]
mod tests {
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
            opened_at: 5_000,
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
        assert_eq!(store.close_stale_connections(8_000).unwrap(), 0);
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
            "database schema version 99 is newer than this adit understands (1)"
        );
    }

    #[test]
    fn tunnel_keys() {
        let id = Uuid::from_u128(7);
        assert_eq!(TunnelKey::parse(&id.to_string()), TunnelKey::Id(id));
        assert_eq!(TunnelKey::parse("web"), TunnelKey::Name("web"));
    }
}
