//! Tunnel status and the `GET /v1/tunnels` listing: filters, sorting and paging of a parsed
//! [`ListQuery`] (the query string itself is parsed in [`super::query`]), as pure functions
//! of the stored records, a summary of the live connections and the time, so tests can craft
//! every timestamp.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::api::{ListQuery, TunnelList, TunnelSummary};
use super::query::{out_of_range, QueryError};
use super::registry::rfc3339;
use super::store::TunnelRecord;
use super::timestamp::parse_rfc3339;

/// Tunnels per page when the query does not say.
pub const DEFAULT_PER_PAGE: u32 = 100;
pub const MAX_PER_PAGE: u32 = 1000;

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
            return Err(out_of_range("page", "0", u32::MAX));
        }
        let per_page = query.per_page.unwrap_or(DEFAULT_PER_PAGE);
        if per_page == 0 || per_page > MAX_PER_PAGE {
            return Err(out_of_range(
                "per_page",
                &per_page.to_string(),
                MAX_PER_PAGE,
            ));
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

    /// Names and creation times sort ascending, uptimes and connection counts descending
    /// (the busiest tunnels are the ones an operator looks for); ties go by name, then id,
    /// ascending. `invert_sort` reverses the whole order.
    fn order(&self, a: &Row<'_>, b: &Row<'_>) -> Ordering {
        let primary = match self.sort_by {
            SortBy::Name => Ordering::Equal,
            SortBy::Created => a.record.created_at.cmp(&b.record.created_at),
            SortBy::Uptime => b.uptime.cmp(&a.uptime),
            SortBy::Connections => b.live.connections.cmp(&a.live.connections),
        };
        // Names sort case-insensitively, so `Web` and `web` sit together.
        let (a_name, b_name) = (&a.record.name, &b.record.name);
        let order = primary
            .then_with(|| {
                a_name
                    .to_ascii_lowercase()
                    .cmp(&b_name.to_ascii_lowercase())
            })
            .then_with(|| a_name.cmp(b_name))
            .then_with(|| a.record.id.cmp(&b.record.id));
        if self.query.invert_sort {
            order.reverse()
        } else {
            order
        }
    }
}

/// An RFC 3339 time, with any offset, as unix milliseconds.
fn time(key: &str, text: Option<&str>) -> Result<Option<i64>, QueryError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let parsed = parse_rfc3339(text).ok_or_else(|| {
        QueryError(format!(
            "{key}: expected an RFC 3339 time like 2026-01-31T12:00:00Z, not {text:?}"
        ))
    })?;
    Ok(Some(parsed))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::query::parse_query;

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;
    /// 2023-11-14T22:13:20Z
    const BASE: i64 = 1_700_000_000_000;
    const NOW: i64 = BASE + 10 * DAY;

    fn record(n: u128, name: &str, created_at: i64) -> TunnelRecord {
        TunnelRecord {
            id: Uuid::from_u128(n),
            name: name.into(),
            secret_hash: vec![0; 32],
            created_at,
            deleted_at: None,
            last_active_at: None,
            last_inactive_at: None,
        }
    }

    /// alpha (active an hour), beta (degraded ten minutes), gamma (inactive, one draining
    /// connection), Alpine (never active) and a deleted alpha created before the others.
    fn fixture() -> (Vec<TunnelRecord>, HashMap<Uuid, LiveSummary>) {
        let alpha = TunnelRecord {
            last_active_at: Some(NOW - HOUR),
            ..record(1, "alpha", BASE + DAY)
        };
        let beta = TunnelRecord {
            last_active_at: Some(NOW - 600_000),
            last_inactive_at: Some(NOW - HOUR),
            ..record(2, "beta", BASE + 2 * DAY)
        };
        let gamma = TunnelRecord {
            last_active_at: Some(BASE),
            last_inactive_at: Some(BASE + HOUR),
            ..record(3, "gamma", BASE + 3 * DAY)
        };
        let alpine = record(4, "Alpine", BASE + 4 * DAY);
        let deleted = TunnelRecord {
            deleted_at: Some(BASE + 12 * HOUR),
            last_active_at: Some(BASE + HOUR),
            ..record(5, "alpha", BASE)
        };

        let conn = |tunnel: u128, connector: u128, ha: u8, draining: bool| LiveConnection {
            tunnel_id: Uuid::from_u128(tunnel),
            connector_id: Uuid::from_u128(100 + connector),
            ha_connections: ha,
            draining,
        };
        let live = summarize([
            conn(1, 1, 2, false),
            conn(1, 1, 2, false),
            conn(2, 2, 4, false),
            conn(2, 3, 1, false),
            conn(2, 3, 1, true),
            conn(3, 4, 1, true),
        ]);
        (vec![deleted, alpha, beta, gamma, alpine], live)
    }

    fn run(query: &str) -> Result<TunnelList, String> {
        let (records, live) = fixture();
        let query = parse_query(query).map_err(|e| e.0)?;
        list(&records, &live, &query, NOW).map_err(|e| e.0)
    }

    /// The names listed, with `!` after deleted ones.
    fn names(query: &str) -> Vec<String> {
        let listed = run(query).unwrap();
        assert_eq!(listed.total, listed.tunnels.len() as u64);
        listed
            .tunnels
            .iter()
            .map(|t| match t.deleted_at {
                Some(_) => format!("{}!", t.name),
                None => t.name.clone(),
            })
            .collect()
    }

    #[test]
    fn statuses_from_live_connections() {
        let (_, live) = fixture();
        let summary = |n: u128| live.get(&Uuid::from_u128(n)).copied();
        let expect = |connections, connectors, status| {
            Some(LiveSummary {
                connections,
                connectors,
                status,
            })
        };
        assert_eq!(summary(1), expect(2, 1, Status::Active));
        assert_eq!(summary(2), expect(3, 2, Status::Degraded));
        assert_eq!(summary(3), expect(1, 1, Status::Inactive));
        assert_eq!(summary(4), None);

        // A draining connection does not count towards what its connector asked for.
        let conn = |draining| LiveConnection {
            tunnel_id: Uuid::from_u128(1),
            connector_id: Uuid::from_u128(2),
            ha_connections: 2,
            draining,
        };
        let live = summarize([conn(false), conn(true)]);
        assert_eq!(live[&Uuid::from_u128(1)].status, Status::Degraded);
        let live = summarize([conn(false), conn(false)]);
        assert_eq!(live[&Uuid::from_u128(1)].status, Status::Active);
    }

    #[test]
    fn default_listing_fills_every_field() {
        let listed = run("").unwrap();
        assert_eq!((listed.page, listed.per_page, listed.total), (1, 100, 4));
        assert_eq!(
            listed.tunnels[0],
            TunnelSummary {
                id: Uuid::from_u128(1),
                name: "alpha".into(),
                created_at: "2023-11-15T22:13:20Z".into(),
                deleted_at: None,
                status: "active".into(),
                connections: 2,
                connectors: 1,
                uptime_seconds: 3_600,
                last_active_at: Some("2023-11-24T21:13:20Z".into()),
                last_inactive_at: None,
            }
        );
        assert_eq!(listed.tunnels[1].status, "degraded");
        assert_eq!(listed.tunnels[1].uptime_seconds, 600);
        assert_eq!(listed.tunnels[1].connections, 3);
        assert_eq!(listed.tunnels[1].connectors, 2);
        assert_eq!(
            listed.tunnels[2],
            TunnelSummary {
                id: Uuid::from_u128(3),
                name: "gamma".into(),
                created_at: "2023-11-17T22:13:20Z".into(),
                deleted_at: None,
                status: "inactive".into(),
                connections: 1,
                connectors: 1,
                uptime_seconds: 0,
                last_active_at: Some("2023-11-14T22:13:20Z".into()),
                last_inactive_at: Some("2023-11-14T23:13:20Z".into()),
            }
        );
        assert_eq!(names(""), ["alpha", "beta", "gamma", "Alpine"]);
    }

    #[test]
    fn name_filters() {
        assert_eq!(names("name=alpha"), ["alpha"]);
        assert_eq!(names("name=Alpha"), Vec::<String>::new());
        assert_eq!(names("name_prefix=al"), ["alpha"]);
        assert_eq!(names("name_prefix=Al"), ["Alpine"]);
        assert_eq!(names("search=ALP"), ["alpha", "Alpine"]);
        assert_eq!(names("search=et"), ["beta"]);
        assert_eq!(names("search=%41lp+"), Vec::<String>::new());
        assert_eq!(names("search=%41LP"), ["alpha", "Alpine"]);
        // An empty value filters nothing.
        assert_eq!(names("name=&search="), ["alpha", "beta", "gamma", "Alpine"]);
    }

    #[test]
    fn status_filters() {
        assert_eq!(names("status=active"), ["alpha", "beta"]);
        assert_eq!(names("status=degraded"), ["beta"]);
        assert_eq!(names("status=inactive"), ["gamma", "Alpine"]);
        assert_eq!(names("status=inactive&show_deleted"), ["gamma", "Alpine"]);
    }

    #[test]
    fn creation_time_filters() {
        let day2 = "2023-11-16T22:13:20Z";
        assert_eq!(names(&format!("created_after={day2}")), ["gamma", "Alpine"]);
        assert_eq!(names(&format!("created_before={day2}")), ["alpha"]);
        assert_eq!(
            names("created_after=2023-11-15T00:00:00Z&created_before=2023-11-17T00:00:00Z"),
            ["alpha", "beta"]
        );
        assert_eq!(
            names("created_before=2023-11-15T00:00:00%2B00:00&show_deleted=1"),
            ["alpha!"]
        );
        // The same instant as day2 in other spellings: offsets convert to UTC.
        for same in [
            "2023-11-16T23:13:20%2B01:00",
            "2023-11-16T22:13:20-00:00",
            "2023-11-16t22:13:20z",
            "2023-11-16T17:43:20.000-04:30",
        ] {
            assert_eq!(names(&format!("created_after={same}")), ["gamma", "Alpine"]);
            assert_eq!(names(&format!("created_before={same}")), ["alpha"]);
        }
        // Beta, created exactly at day2, is after a millisecond before it.
        assert_eq!(
            names("created_after=2023-11-16T22:13:19.999Z"),
            ["beta", "gamma", "Alpine"]
        );
    }

    #[test]
    fn uptime_filter() {
        assert_eq!(names("min_uptime=10m"), ["alpha", "beta"]);
        assert_eq!(names("min_uptime=601s"), ["alpha"]);
        assert_eq!(names("min_uptime=1h"), ["alpha"]);
        assert_eq!(names("min_uptime=2h"), Vec::<String>::new());
        assert_eq!(names("min_uptime=0s"), ["alpha", "beta"]);
    }

    #[test]
    fn sorting() {
        assert_eq!(
            names("sort_by=created"),
            ["alpha", "beta", "gamma", "Alpine"]
        );
        assert_eq!(
            names("sort_by=created&invert_sort=true"),
            ["Alpine", "gamma", "beta", "alpha"]
        );
        assert_eq!(names("sort_by=name"), ["alpha", "Alpine", "beta", "gamma"]);
        assert_eq!(
            names("sort_by=name&invert_sort"),
            ["gamma", "beta", "Alpine", "alpha"]
        );
        // Uptimes and connection counts list the most first; equal ones (0) go by name.
        assert_eq!(
            names("sort_by=uptime"),
            ["alpha", "beta", "Alpine", "gamma"]
        );
        assert_eq!(
            names("sort_by=uptime&invert_sort=1"),
            ["gamma", "Alpine", "beta", "alpha"]
        );
        assert_eq!(
            names("sort_by=connections"),
            ["beta", "alpha", "gamma", "Alpine"]
        );
        assert_eq!(
            names("sort_by=connections&invert_sort=true"),
            ["Alpine", "gamma", "alpha", "beta"]
        );
        assert_eq!(
            names("sort_by=name&invert_sort=false"),
            ["alpha", "Alpine", "beta", "gamma"]
        );
    }

    #[test]
    fn deleted_tunnels_on_request() {
        assert_eq!(
            names("show_deleted=true"),
            ["alpha!", "alpha", "beta", "gamma", "Alpine"]
        );
        assert_eq!(
            names("show_deleted=0"),
            ["alpha", "beta", "gamma", "Alpine"]
        );
        let listed = run("show_deleted&name=alpha&sort_by=name").unwrap();
        // Same name: the id decides.
        let deleted = &listed.tunnels[1];
        assert_eq!(deleted.id, Uuid::from_u128(5));
        assert_eq!(deleted.status, "deleted");
        assert_eq!(deleted.deleted_at.as_deref(), Some("2023-11-15T10:13:20Z"));
        assert_eq!(deleted.uptime_seconds, 0);
        assert_eq!(deleted.connections, 0);
        assert_eq!(
            deleted.last_active_at.as_deref(),
            Some("2023-11-14T23:13:20Z")
        );
    }

    #[test]
    fn paging() {
        let page = |query: &str| {
            let listed = run(query).unwrap();
            let names: Vec<String> = listed.tunnels.iter().map(|t| t.name.clone()).collect();
            (names, listed.page, listed.per_page, listed.total)
        };
        let strings = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(
            page("per_page=3"),
            (strings(&["alpha", "beta", "gamma"]), 1, 3, 4)
        );
        assert_eq!(page("per_page=3&page=2"), (strings(&["Alpine"]), 2, 3, 4));
        assert_eq!(page("per_page=3&page=3"), (strings(&[]), 3, 3, 4));
        assert_eq!(
            page("page=2&per_page=1&status=active"),
            (strings(&["beta"]), 2, 1, 2)
        );
        assert_eq!(page("per_page=1000").2, 1000);
    }

    #[test]
    fn bad_parameters_are_named() {
        let error = |query: &str| run(query).unwrap_err();
        assert_eq!(error("nme=a"), "unknown query parameter \"nme\"");
        assert_eq!(
            error("name=a&name=b"),
            "query parameter name is given twice"
        );
        assert_eq!(
            error("status=up"),
            "status: expected active, inactive or degraded, not \"up\""
        );
        assert_eq!(
            error("created_after=yesterday"),
            "created_after: expected an RFC 3339 time like 2026-01-31T12:00:00Z, \
             not \"yesterday\""
        );
        assert_eq!(
            error("created_before=2023-11-15"),
            "created_before: expected an RFC 3339 time like 2026-01-31T12:00:00Z, \
             not \"2023-11-15\""
        );
        assert_eq!(
            error("min_uptime=soon"),
            "min_uptime: expected a duration like 90s, 10m or 2h, not \"soon\""
        );
        assert_eq!(
            error("sort_by=size"),
            "sort_by: expected name, created, uptime or connections, not \"size\""
        );
        assert_eq!(
            error("invert_sort=yes"),
            "invert_sort: expected true, false, 1 or 0, not \"yes\""
        );
        assert_eq!(
            error("show_deleted=2"),
            "show_deleted: expected true, false, 1 or 0, not \"2\""
        );
        assert_eq!(error("page=0"), "page: 0 is out of range (1 to 4294967295)");
        assert_eq!(
            error("page=-1"),
            "page: expected a whole number, not \"-1\""
        );
        assert_eq!(
            error("page=%2B1"),
            "page: expected a whole number, not \"+1\""
        );
        assert_eq!(
            error("page=18446744073709551615"),
            "page: 18446744073709551615 is out of range (1 to 4294967295)"
        );
        assert_eq!(
            error("page=4294967296"),
            "page: 4294967296 is out of range (1 to 4294967295)"
        );
        assert_eq!(
            error("per_page=0"),
            "per_page: 0 is out of range (1 to 1000)"
        );
        assert_eq!(
            error("per_page=1001"),
            "per_page: 1001 is out of range (1 to 1000)"
        );
        assert_eq!(
            error("per_page=18446744073709551615"),
            "per_page: 18446744073709551615 is out of range (1 to 1000)"
        );
        assert_eq!(
            error("created_after=2023-11-15T00:00:00%2B0100"),
            "created_after: expected an RFC 3339 time like 2026-01-31T12:00:00Z, \
             not \"2023-11-15T00:00:00+0100\""
        );
        assert_eq!(error("name=%zz"), "name: malformed percent escape");
        assert_eq!(error("name=%e2%82"), "name: not UTF-8 once percent-decoded");
        assert_eq!(error("%"), "query parameter name: malformed percent escape");
    }
}
