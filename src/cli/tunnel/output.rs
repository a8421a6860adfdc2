//! Text output of `adit tunnel list` and `adit tunnel info`: columns aligned into tables,
//! uptimes read as their two largest units, and the info page with its live and recently
//! closed connections. The JSON output (`--output json`) is the API's answer as it came.

use std::io::Write;

use crate::control::api;

/// The `adit tunnel list` table; uptime shows only for tunnels that are active.
pub(super) fn tunnel_table(tunnels: Vec<api::TunnelSummary>) -> String {
    let rows = tunnels
        .into_iter()
        .map(|t| {
            let uptime = match t.status.as_str() {
                "active" | "degraded" => human_duration(t.uptime_seconds),
                _ => "-".to_owned(),
            };
            vec![
                t.id.to_string(),
                t.name,
                t.status,
                t.connections.to_string(),
                uptime,
                t.created_at,
            ]
        })
        .collect();
    let headers = ["ID", "NAME", "STATUS", "CONNECTIONS", "UPTIME", "CREATED"];
    table(&headers, rows)
}

/// The `adit tunnel info` page: the tunnel, its live connections, then the recently
/// closed ones if any.
pub(super) fn write_info(out: &mut dyn Write, info: api::TunnelInfo) -> anyhow::Result<()> {
    writeln!(out, "NAME:     {}", info.name)?;
    writeln!(out, "ID:       {}", info.id)?;
    writeln!(out, "CREATED:  {}", info.created_at)?;
    writeln!(out, "STATUS:   {}", info.status)?;
    if let Some(deleted_at) = &info.deleted_at {
        writeln!(out, "DELETED:  {deleted_at}")?;
    }
    let uptime = match (
        info.status.as_str(),
        &info.last_active_at,
        &info.last_inactive_at,
    ) {
        ("active" | "degraded", Some(since), _) => {
            format!(
                "{} (active since {since})",
                human_duration(info.uptime_seconds)
            )
        }
        (_, _, Some(since)) => format!("- (inactive since {since})"),
        _ => "- (never active)".to_owned(),
    };
    writeln!(out, "UPTIME:   {uptime}")?;
    let routes = match info.routes.is_empty() {
        true => "(none)".to_owned(),
        false => info.routes.join(", "),
    };
    writeln!(out, "ROUTES:   {routes}")?;
    writeln!(out)?;

    if info.connections.is_empty() {
        writeln!(out, "Tunnel {} has no live connections", info.name)?;
    } else {
        let rows = info.connections.into_iter().map(connection_row).collect();
        let headers = [
            "CONNECTOR ID",
            "INDEX",
            "OPENED AT",
            "VERSION",
            "ORIGIN ADDRESS",
            "EDGE WORKER",
        ];
        write!(out, "{}", table(&headers, rows))?;
    }
    if info.history.is_empty() {
        return Ok(());
    }

    writeln!(out)?;
    writeln!(out, "Recently closed connections:")?;
    let rows = info
        .history
        .into_iter()
        .map(|c| {
            let closed = c.closed_at.clone().unwrap_or_default();
            let mut row = connection_row(c);
            row.insert(3, closed);
            row
        })
        .collect();
    let headers = [
        "CONNECTOR ID",
        "INDEX",
        "OPENED AT",
        "CLOSED AT",
        "VERSION",
        "ORIGIN ADDRESS",
        "EDGE WORKER",
    ];
    write!(out, "{}", table(&headers, rows))?;
    Ok(())
}

/// Seconds as the two largest units: `2h 5m`, `3d 4h`, `42s`.
fn human_duration(seconds: u64) -> String {
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = seconds;
    for (size, unit) in units {
        let count = rest / size;
        rest %= size;
        if count > 0 || !parts.is_empty() {
            parts.push(format!("{count}{unit}"));
        }
        if parts.len() == 2 {
            break;
        }
    }
    match parts.as_slice() {
        [] => "0s".to_owned(),
        [first, second] if second.starts_with('0') => first.clone(),
        _ => parts.join(" "),
    }
}

/// A connection's cells under the `info` table's headers.
fn connection_row(c: api::ConnectionInfo) -> Vec<String> {
    let index = match c.draining {
        true => format!("{} (draining)", c.conn_index),
        false => c.conn_index.to_string(),
    };
    let version = format!("{} {}", c.version, c.platform);
    vec![
        c.connector_id.to_string(),
        index,
        c.opened_at,
        version,
        c.origin_addr,
        c.edge_worker.to_string(),
    ]
}

/// Columns padded to their widest cell, two spaces apart, no trailing spaces.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }

    let mut text = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(&rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(&format!("{cell:<width$}  "));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let rows = vec![
            vec!["a".to_owned(), "long value".to_owned(), "1".to_owned()],
            vec!["bbbb".to_owned(), "x".to_owned(), "22".to_owned()],
        ];
        assert_eq!(
            table(&["ID", "NAME", "N"], rows),
            "ID    NAME        N\na     long value  1\nbbbb  x           22\n"
        );
    }

    #[test]
    fn durations_read_as_two_units() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(42), "42s");
        assert_eq!(human_duration(60), "1m");
        assert_eq!(human_duration(61), "1m 1s");
        assert_eq!(human_duration(2 * 3600 + 5 * 60 + 9), "2h 5m");
        assert_eq!(human_duration(7200), "2h");
        assert_eq!(human_duration(3 * 86_400 + 4 * 3600 + 59), "3d 4h");
        assert_eq!(human_duration(86_400 + 30), "1d");
    }
}
