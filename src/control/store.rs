//! The control plane's persistent state: tunnels, routes and connection history.
//!
//! Every SQL statement of the edge lives in this file, behind [`Store`]'s narrow set of
//! methods, so a shared server database can replace SQLite when several edges must agree.
//! The schema evolves by numbered migrations recorded in `schema_version`.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

/// Migration `i` moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
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
"#,
    // Status history: when each tunnel last became active and inactive, and how many
    // connections each connector asked for (0 on records older than this migration).
    r#"
    ALTER TABLE tunnels ADD COLUMN last_active_at INTEGER;
    ALTER TABLE tunnels ADD COLUMN last_inactive_at INTEGER;
    ALTER TABLE connections ADD COLUMN ha_connections INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX connections_tunnel ON connections(tunnel_id, closed_at);
"#,
];

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
    /// Unix milliseconds, as are the other times.
    pub created_at: i64,
    pub deleted_at: Option<i64>,
    /// When the tunnel last became active and inactive, if ever.
    pub last_active_at: Option<i64>,
    pub last_inactive_at: Option<i64>,
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
    /// How many connections its connector asked for.
    pub ha_connections: u8,
    /// Unix milliseconds, as is `closed_at`.
    pub opened_at: i64,
    /// Set once the connection has ended; [`Store::open_connection`] ignores it.
    pub closed_at: Option<i64>,
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

    /// A tunnel, deleted or not: by id, that one; by name, the live tunnel of that name, else
    /// the one of that name deleted last.
    pub fn tunnel_or_deleted(
        &self,
        key: TunnelKey<'_>,
    ) -> Result<Option<TunnelRecord>, StoreError> {
        let row = match key {
            TunnelKey::Id(id) => self.db.query_row(
                &format!("{COLUMNS} WHERE id = ?1"),
                [id.to_string()],
                raw_tunnel,
            ),
            TunnelKey::Name(name) => self.db.query_row(
                &format!(
                    "{COLUMNS} WHERE name = ?1 \
                     ORDER BY deleted_at IS NOT NULL, deleted_at DESC, id LIMIT 1"
                ),
                [name],
                raw_tunnel,
            ),
        };
        row.optional()?.map(RawTunnel::parse).transpose()
    }

    /// Every tunnel that has not been deleted, oldest first.
    pub fn tunnels(&self) -> Result<Vec<TunnelRecord>, StoreError> {
        let mut stmt = self.db.prepare(&format!(
            "{COLUMNS} WHERE deleted_at IS NULL ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map([], raw_tunnel)?;
        rows.map(|row| row?.parse()).collect()
    }

    /// Every tunnel, deleted ones included, oldest first.
    pub fn tunnels_with_deleted(&self) -> Result<Vec<TunnelRecord>, StoreError> {
        let mut stmt = self
            .db
            .prepare(&format!("{COLUMNS} ORDER BY created_at, id"))?;
        let rows = stmt.query_map([], raw_tunnel)?;
        rows.map(|row| row?.parse()).collect()
    }

    /// Records that the tunnel became active at `now`.
    pub fn set_last_active(&mut self, id: Uuid, now: i64) -> Result<(), StoreError> {
        self.db.execute(
            "UPDATE tunnels SET last_active_at = ?2 WHERE id = ?1",
            params![id.to_string(), now],
        )?;
        Ok(())
    }

    /// Records that the tunnel became inactive at `now`.
    pub fn set_last_inactive(&mut self, id: Uuid, now: i64) -> Result<(), StoreError> {
        self.db.execute(
            "UPDATE tunnels SET last_inactive_at = ?2 WHERE id = ?1",
            params![id.to_string(), now],
        )?;
        Ok(())
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
             remote_addr, version, platform, ha_connections, opened_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                conn.id.to_string(),
                conn.tunnel_id.to_string(),
                conn.connector_id.to_string(),
                conn.conn_index,
                i64::try_from(conn.edge_worker).unwrap_or(i64::MAX),
                conn.remote_addr,
                conn.version,
                conn.platform,
                conn.ha_connections,
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
    /// run whose process ended without saying so. Their tunnels became inactive then, as
    /// far as anyone can tell. Returns how many connections there were.
    pub fn close_stale_connections(&mut self, now: i64) -> Result<usize, StoreError> {
        let tx = self.db.transaction()?;
        tx.execute(
            "UPDATE tunnels SET last_inactive_at = ?1 WHERE id IN \
             (SELECT tunnel_id FROM connections WHERE closed_at IS NULL)",
            [now],
        )?;
        let closed = tx.execute(
            "UPDATE connections SET closed_at = ?1 WHERE closed_at IS NULL",
            [now],
        )?;
        tx.commit()?;
        Ok(closed)
    }

    /// The tunnel's closed connections, most recently closed first, at most `limit`.
    pub fn closed_connections(
        &self,
        tunnel_id: Uuid,
        limit: usize,
    ) -> Result<Vec<ConnectionRecord>, StoreError> {
        let mut stmt = self.db.prepare(
            "SELECT id, tunnel_id, connector_id, conn_index, edge_worker, remote_addr, version, \
             platform, ha_connections, opened_at, closed_at FROM connections \
             WHERE tunnel_id = ?1 AND closed_at IS NOT NULL \
             ORDER BY closed_at DESC, opened_at DESC, id LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![tunnel_id.to_string(), limit], raw_connection)?;
        rows.map(|row| row?.parse()).collect()
    }

    /// Drops the tunnel's connection records except those in `keep` (the live ones), in
    /// one transaction. Returns how many were dropped.
    pub fn remove_connections(
        &mut self,
        tunnel_id: Uuid,
        keep: &[Uuid],
    ) -> Result<u64, StoreError> {
        let tx = self.db.transaction()?;
        let ids: Vec<String> = {
            let mut stmt = tx.prepare("SELECT id FROM connections WHERE tunnel_id = ?1")?;
            let rows = stmt.query_map([tunnel_id.to_string()], |row| row.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let keep: Vec<String> = keep.iter().map(Uuid::to_string).collect();
        let mut removed = 0u64;
        for id in ids.iter().filter(|id| !keep.contains(id)) {
            removed += tx.execute("DELETE FROM connections WHERE id = ?1", [id])? as u64;
        }
        tx.commit()?;
        Ok(removed)
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

/// The columns [`raw_tunnel`] reads, in its order.
const COLUMNS: &str = "SELECT id, name, secret_hash, created_at, deleted_at, last_active_at, \
                       last_inactive_at FROM tunnels";

/// A tunnels row before its id is parsed.
struct RawTunnel {
    id: String,
    record: TunnelRecord,
}

impl RawTunnel {
    fn parse(self) -> Result<TunnelRecord, StoreError> {
        Ok(TunnelRecord {
            id: parse_uuid(&self.id)?,
            ..self.record
        })
    }
}

fn raw_tunnel(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawTunnel> {
    Ok(RawTunnel {
        id: row.get(0)?,
        record: TunnelRecord {
            id: Uuid::nil(),
            name: row.get(1)?,
            secret_hash: row.get(2)?,
            created_at: row.get(3)?,
            deleted_at: row.get(4)?,
            last_active_at: row.get(5)?,
            last_inactive_at: row.get(6)?,
        },
    })
}

/// A connections row before its ids are parsed.
struct RawConnection {
    ids: [String; 3],
    record: ConnectionRecord,
}

impl RawConnection {
    fn parse(self) -> Result<ConnectionRecord, StoreError> {
        let [id, tunnel_id, connector_id] = &self.ids;
        Ok(ConnectionRecord {
            id: parse_uuid(id)?,
            tunnel_id: parse_uuid(tunnel_id)?,
            connector_id: parse_uuid(connector_id)?,
            ..self.record
        })
    }
}

fn raw_connection(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawConnection> {
    let edge_worker: i64 = row.get(4)?;
    Ok(RawConnection {
        ids: [row.get(0)?, row.get(1)?, row.get(2)?],
        record: ConnectionRecord {
            id: Uuid::nil(),
            tunnel_id: Uuid::nil(),
            connector_id: Uuid::nil(),
            conn_index: row.get(3)?,
            edge_worker: usize::try_from(edge_worker).unwrap_or(usize::MAX),
            remote_addr: row.get(5)?,
            version: row.get(6)?,
            platform: row.get(7)?,
            ha_connections: row.get(8)?,
            opened_at: row.get(9)?,
            closed_at: row.get(10)?,
        },
    })
}

fn parse_uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|_| StoreError::Corrupt(format!("id {text:?}")))
}

#[cfg(test)]
mod tests;
