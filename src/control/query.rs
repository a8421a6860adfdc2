//! Query strings of the admin API: percent-decoding, the `(name, value)` pairs every endpoint
//! reads its query through, boolean and number parameters, and the parsing of the
//! `GET /v1/tunnels` query into a [`ListQuery`] that [`super::list`] then checks and applies.

use super::api::ListQuery;
use super::list::MAX_PER_PAGE;

/// A query the listing cannot answer; the admin API answers 400 with the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

/// Parses a `GET /v1/tunnels` query string (percent-decoded, `+` as a space). Unknown or
/// repeated parameters are refused; an empty value is the same as leaving the parameter
/// out, except for the booleans, where it means true like a bare name does.
pub fn parse_query(query: &str) -> Result<ListQuery, QueryError> {
    let mut parsed = ListQuery::default();
    for (key, value) in query_pairs(query)? {
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
            "page" => parsed.page = text.map(|v| number(&key, &v, u32::MAX)).transpose()?,
            "per_page" => {
                parsed.per_page = text.map(|v| number(&key, &v, MAX_PER_PAGE)).transpose()?
            }
            _ => return Err(unknown_parameter(&key)),
        }
    }
    Ok(parsed)
}

/// The percent-decoded `(name, value)` pairs of a query string, a bare name having an empty
/// value; a name given twice is refused. Every admin endpoint reads its query through this.
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, QueryError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key =
            decode(key, true).map_err(|e| QueryError(format!("query parameter name: {e}")))?;
        let value = decode(value, true).map_err(|e| QueryError(format!("{key}: {e}")))?;
        if pairs.iter().any(|(seen, _)| *seen == key) {
            return Err(QueryError(format!("query parameter {key} is given twice")));
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// The error for a query parameter an endpoint does not know.
pub fn unknown_parameter(key: &str) -> QueryError {
    QueryError(format!("unknown query parameter {key:?}"))
}

/// A boolean query parameter: empty (a bare name), `true` or `1`; `false` or `0`.
pub fn flag(key: &str, value: &str) -> Result<bool, QueryError> {
    match value {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(QueryError(format!(
            "{key}: expected true, false, 1 or 0, not {other:?}"
        ))),
    }
}

/// A whole number from 1 to `max`; digits too many for a `u32` are out of range, not
/// malformed.
fn number(key: &str, value: &str, max: u32) -> Result<u32, QueryError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QueryError(format!(
            "{key}: expected a whole number, not {value:?}"
        )));
    }
    match value.parse::<u32>() {
        Ok(number) if (1..=max).contains(&number) => Ok(number),
        _ => Err(out_of_range(key, value, max)),
    }
}

pub(super) fn out_of_range(key: &str, value: &str, max: u32) -> QueryError {
    QueryError(format!("{key}: {value} is out of range (1 to {max})"))
}

/// Percent-decodes one query component or path segment; `+` means a space only in a
/// query (`plus_is_space`), as in HTML forms.
pub fn decode(text: &str, plus_is_space: bool) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'+' if plus_is_space => bytes.push(b' '),
            b'%' => {
                let (hex, tail) = rest
                    .split_first_chunk::<2>()
                    .ok_or("malformed percent escape")?;
                let hex = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or("malformed percent escape")?;
                bytes.push(hex);
                rest = tail;
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 once percent-decoded".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let parsed =
            parse_query("name=a%20b&search=c+d&sort%5Fby=name&invert_sort&page=2").unwrap();
        assert_eq!(
            parsed,
            ListQuery {
                name: Some("a b".into()),
                search: Some("c d".into()),
                sort_by: Some("name".into()),
                invert_sort: true,
                page: Some(2),
                ..ListQuery::default()
            }
        );
        assert_eq!(parse_query("").unwrap(), ListQuery::default());
        assert_eq!(
            query_pairs("force&a=%2B+b").unwrap(),
            [("force".into(), "".into()), ("a".into(), "+ b".into())]
        );
        assert_eq!(decode("app%31+x", false).unwrap(), "app1+x");
        assert_eq!(
            decode("%E0", false).unwrap_err(),
            "not UTF-8 once percent-decoded"
        );
        assert_eq!(
            decode("a%4", false).unwrap_err(),
            "malformed percent escape"
        );
        assert_eq!(parse_query("&&").unwrap(), ListQuery::default());
    }
}
