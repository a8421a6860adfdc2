//! Tunnel status and the `GET /v1/tunnels` listing: query-string parsing, filters, sorting
//! and paging, as pure functions of the stored records, a summary of the live connections
//! and the time, so tests can craft every timestamp.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::time::UNIX_EPOCH;

use uuid::Uuid;

use super::api::{ListQuery, TunnelList, TunnelSummary};
use super::registry::rfc3339;
use super::store::TunnelRecord;

/// Tunnels per page when the query does not say.
pub const DEFAULT_PER_PAGE: u32 = 100;
pub const MAX_PER_PAGE: u32 = 1000;

/// A query the listing cannot answer; the admin API answers 400 with the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    /// Active, but a connector has fewer live connections than it asked for.
    Degraded,
    Inactive,
    Deleted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Degraded => "degraded",
            Status::Inactive => "inactive",
            Status::Deleted => "deleted",
        }
    }

    /// Degraded tunnels still route requests, so they count as active.
    pub fn is_active(self) -> bool {
        matches!(self, Status::Active | Status::Degraded)
    }
}

/// What the listing needs to know of one live connection.
#[derive(Debug, Clone, Copy)]
pub struct LiveConnection {
    pub tunnel_id: Uuid,
    pub connector_id: Uuid,
    pub ha_connections: u8,
    pub draining: bool,
}

/// A tunnel's live connections, summed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveSummary {
    /// Draining ones included.
    pub connections: usize,
    pub connectors: usize,
    pub status: Status,
}

impl Default for LiveSummary {
    fn default() -> Self {
        LiveSummary {
            connections: 0,
            connectors: 0,
            status: Status::Inactive,
        }
    }
}

/// Sums up live connections per tunnel. A tunnel is active with at least one connection
/// that is not draining, and degraded when, counting only those, some connector has fewer
/// than it asked for.
pub fn summarize(live: impl IntoIterator<Item = LiveConnection>) -> HashMap<Uuid, LiveSummary> {
    #[derive(Default)]
    struct Tally {
        connections: usize,
        connectors: HashSet<Uuid>,
        /// Per connector: routable connections and the most it asked for.
        routable: HashMap<Uuid, (usize, u8)>,
    }

    let mut tallies: HashMap<Uuid, Tally> = HashMap::new();
    for conn in live {
        let tally = tallies.entry(conn.tunnel_id).or_default();
        tally.connections += 1;
        tally.connectors.insert(conn.connector_id);
        if !conn.draining {
            let entry = tally.routable.entry(conn.connector_id).or_default();
            entry.0 += 1;
            entry.1 = entry.1.max(conn.ha_connections);
        }
    }

    let summary = |tally: Tally| {
        let short = |&(count, asked): &(usize, u8)| count < usize::from(asked);
        let status = if tally.routable.is_empty() {
            Status::Inactive
        } else if tally.routable.values().any(short) {
            Status::Degraded
        } else {
            Status::Active
        };
        LiveSummary {
            connections: tally.connections,
            connectors: tally.connectors.len(),
            status,
        }
    };
    tallies
        .into_iter()
        .map(|(tunnel, tally)| (tunnel, summary(tally)))
        .collect()
}

/// Milliseconds the tunnel has been active at `now`: 0 unless it is.
pub fn uptime_ms(record: &TunnelRecord, status: Status, now: i64) -> i64 {
    match (status.is_active(), record.last_active_at) {
        (true, Some(since)) => now.saturating_sub(since).max(0),
        _ => 0,
    }
}

/// Parses a `GET /v1/tunnels` query string (percent-decoded, `+` as a space). Unknown or
/// repeated parameters are refused; an empty value is the same as leaving the parameter
/// out, except for the booleans, where it means true like a bare name does.
pub fn parse_query(query: &str) -> Result<ListQuery, QueryError> {
    let mut parsed = ListQuery::default();
    let mut seen: HashSet<String> = HashSet::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(key).map_err(|e| QueryError(format!("query parameter name: {e}")))?;
        let value = decode(value).map_err(|e| QueryError(format!("{key}: {e}")))?;
        if !seen.insert(key.clone()) {
            return Err(QueryError(format!("query parameter {key} is given twice")));
        }
        let text = (!value.is_empty()).then(|| value.clone());
        match key.as_str() {
            "name" => parsed.name = text,
            "name_prefix" => parsed.name_prefix = text,
            "status" => parsed.status = text,
            "created_after" => parsed.created_after = text,
            "created_before" => parsed.created_before = text,
            "min_uptime" => parsed.min_uptime = text,
            "search" => parsed.search = text,
            "sort_by" => parsed.sort_by = text,
            "invert_sort" => parsed.invert_sort = flag(&key, &value)?,
            "show_deleted" => parsed.show_deleted = flag(&key, &value)?,
            "page" => parsed.page = text.map(|v| number(&key, &v)).transpose()?,
            "per_page" => parsed.per_page = text.map(|v| number(&key, &v)).transpose()?,
            _ => return Err(QueryError(format!("unknown query parameter {key:?}"))),
        }
    }
    Ok(parsed)
}

fn flag(key: &str, value: &str) -> Result<bool, QueryError> {
    match value {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(QueryError(format!(
            "{key}: expected true, false, 1 or 0, not {other:?}"
        ))),
    }
}

fn number(key: &str, value: &str) -> Result<u32, QueryError> {
    value
        .parse()
        .map_err(|_| QueryError(format!("{key}: expected a whole number, not {value:?}")))
}

/// Percent-decodes one query component, `+` meaning a space.
fn decode(text: &str) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = rest
                    .get(..2)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or("malformed percent escape")?;
                bytes.push(hex);
                rest = &rest[2..];
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 once percent-decoded".to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortBy {
    Name,
    Created,
    Uptime,
    Connections,
}

/// A [`ListQuery`] with every value checked and parsed.
struct Filter<'a> {
    query: &'a ListQuery,
    status: Option<Status>,
    created_after: Option<i64>,
    created_before: Option<i64>,
    min_uptime_ms: Option<i64>,
    search: Option<String>,
    sort_by: SortBy,
    page: u32,
    per_page: u32,
}

impl<'a> Filter<'a> {
    fn new(query: &'a ListQuery) -> Result<Self, QueryError> {
        let status = match query.status.as_deref() {
            None => None,
            Some("active") => Some(Status::Active),
            Some("inactive") => Some(Status::Inactive),
            Some("degraded") => Some(Status::Degraded),
            Some(other) => {
                return Err(QueryError(format!(
                    "status: expected active, inactive or degraded, not {other:?}"
                )))
            }
        };
        let sort_by = match query.sort_by.as_deref() {
            None | Some("created") => SortBy::Created,
            Some("name") => SortBy::Name,
            Some("uptime") => SortBy::Uptime,
            Some("connections") => SortBy::Connections,
            Some(other) => {
                return Err(QueryError(format!(
                    "sort_by: expected name, created, uptime or connections, not {other:?}"
                )))
            }
        };
        let min_uptime_ms = match query.min_uptime.as_deref() {
            None => None,
            Some(text) => {
                let duration = humantime::parse_duration(text).map_err(|_| {
                    QueryError(format!(
                        "min_uptime: expected a duration like 90s, 10m or 2h, not {text:?}"
                    ))
                })?;
                Some(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
            }
        };
        let page = query.page.unwrap_or(1);
        if page == 0 {
            return Err(QueryError("page: pages are numbered from 1".into()));
        }
        let per_page = query.per_page.unwrap_or(DEFAULT_PER_PAGE);
        if per_page == 0 || per_page > MAX_PER_PAGE {
            return Err(QueryError(format!(
                "per_page: expected 1 to {MAX_PER_PAGE}, not {per_page}"
            )));
        }
        Ok(Filter {
            query,
            status,
            created_after: time("created_after", query.created_after.as_deref())?,
            created_before: time("created_before", query.created_before.as_deref())?,
            min_uptime_ms,
            search: query.search.as_deref().map(str::to_lowercase),
            sort_by,
            page,
            per_page,
        })
    }

    fn matches(&self, row: &Row<'_>) -> bool {
        let record = row.record;
        let query = self.query;
        if record.deleted_at.is_some() && !query.show_deleted {
            return false;
        }
        let name_ok = query.name.as_ref().is_none_or(|name| record.name == *name)
            && (query.name_prefix.as_ref()).is_none_or(|p| record.name.starts_with(p.as_str()))
            && (self.search.as_ref())
                .is_none_or(|text| record.name.to_lowercase().contains(text.as_str()));
        let status_ok = match self.status {
            None => true,
            Some(Status::Active) => row.status.is_active(),
            Some(status) => row.status == status,
        };
        name_ok
            && status_ok
            && self.created_after.is_none_or(|t| record.created_at > t)
            && self.created_before.is_none_or(|t| record.created_at < t)
            && self
                .min_uptime_ms
                .is_none_or(|min| row.status.is_active() && row.uptime >= min)
    }

    fn order(&self, a: &Row<'_>, b: &Row<'_>) -> Ordering {
        let primary = match self.sort_by {
            SortBy::Name => Ordering::Equal,
            SortBy::Created => a.record.created_at.cmp(&b.record.created_at),
            SortBy::Uptime => a.uptime.cmp(&b.uptime),
            SortBy::Connections => a.live.connections.cmp(&b.live.connections),
        };
        let order = primary
            .then_with(|| a.record.name.cmp(&b.record.name))
            .then_with(|| a.record.id.cmp(&b.record.id));
        if self.query.invert_sort {
            order.reverse()
        } else {
            order
        }
    }
}

/// An RFC 3339 time as unix milliseconds.
fn time(key: &str, text: Option<&str>) -> Result<Option<i64>, QueryError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let parsed = humantime::parse_rfc3339(text)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .ok_or_else(|| {
            QueryError(format!(
                "{key}: expected an RFC 3339 time like 2026-01-31T12:00:00Z, not {text:?}"
            ))
        })?;
    Ok(Some(i64::try_from(parsed.as_millis()).unwrap_or(i64::MAX)))
}

/// One tunnel with what its listing is computed from.
struct Row<'a> {
    record: &'a TunnelRecord,
    live: LiveSummary,
    status: Status,
    uptime: i64,
}

/// One page of the tunnels among `records` that match `query`, at `now`. `live` holds the
/// tunnels with live connections, as [`summarize`] builds it.
pub fn list(
    records: &[TunnelRecord],
    live: &HashMap<Uuid, LiveSummary>,
    query: &ListQuery,
    now: i64,
) -> Result<TunnelList, QueryError> {
    let filter = Filter::new(query)?;
    let mut rows: Vec<Row<'_>> = records
        .iter()
        .map(|record| {
            let (live, status) = match record.deleted_at {
                Some(_) => (LiveSummary::default(), Status::Deleted),
                None => {
                    let live = live.get(&record.id).copied().unwrap_or_default();
                    (live, live.status)
                }
            };
            let uptime = uptime_ms(record, status, now);
            Row {
                record,
                live,
                status,
                uptime,
            }
        })
        .filter(|row| filter.matches(row))
        .collect();
    rows.sort_by(|a, b| filter.order(a, b));

    let total = rows.len() as u64;
    let skip = (filter.page as usize - 1).saturating_mul(filter.per_page as usize);
    let tunnels = rows
        .iter()
        .skip(skip)
        .take(filter.per_page as usize)
        .map(summary)
        .collect();
    Ok(TunnelList {
        tunnels,
        page: filter.page,
        per_page: filter.per_page,
        total,
    })
}

fn summary(row: &Row<'_>) -> TunnelSummary {
    let record = row.record;
    TunnelSummary {
        id: record.id,
        name: record.name.clone(),
        created_at: rfc3339(record.created_at),
        deleted_at: record.deleted_at.map(rfc3339),
        status: row.status.as_str().to_owned(),
        connections: row.live.connections,
        connectors: row.live.connectors,
        uptime_seconds: u64::try_from(row.uptime / 1000).unwrap_or(0),
        last_active_at: record.last_active_at.map(rfc3339),
        last_inactive_at: record.last_inactive_at.map(rfc3339),
    }
}
