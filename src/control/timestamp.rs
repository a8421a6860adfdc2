//! RFC 3339 date-times as the listing's filters take them: any offset (`Z`, `z`, `+01:00`,
//! `-00:00`), `T` or `t` between date and time, optional fractional seconds. The answer is
//! unix milliseconds in UTC, the unit the store keeps times in.

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as unix milliseconds, or `None` when `text`
/// is not an RFC 3339 date-time. Fractions beyond milliseconds are truncated; a leap
/// second (`:60`) counts as the first second of the next minute.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let (date, rest) = (bytes.get(..10)?, bytes.get(10..)?);
    let (&separator, rest) = rest.split_first()?;
    if !matches!(separator, b'T' | b't') || date[4] != b'-' || date[7] != b'-' {
        return None;
    }
    let year = digits(&date[..4])?;
    let month = digits(&date[5..7])?;
    let day = digits(&date[8..10])?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }

    let time = rest.get(..8)?;
    if time[2] != b':' || time[5] != b':' {
        return None;
    }
    let (hour, minute, second) = (
        digits(&time[..2])?,
        digits(&time[3..5])?,
        digits(&time[6..])?,
    );
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }

    let mut rest = &rest[8..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        // Pad or cut to three digits: `.5` is 500 ms, `.123456` is 123 ms.
        for position in 0..3 {
            let digit = fraction.get(position).filter(|_| position < len);
            millis = millis * 10 + digit.map_or(0, |d| i64::from(d - b'0'));
        }
        rest = &fraction[len..];
    }

    let offset_minutes = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (hours, minutes) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 60 + minutes;
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return None,
    };

    let seconds = days_from_civil(year, month, day) * 86_400
        + (hour * 60 + minute - offset_minutes) * 60
        + second;
    Some(seconds * 1000 + millis)
}

/// ASCII digits as a number; `None` for anything else (signs included).
fn digits(bytes: &[u8]) -> Option<i64> {
    bytes.iter().try_fold(0i64, |value, &byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + i64::from(byte - b'0'))
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian calendar: count whole
/// 400-year eras from a year that starts in March, so the leap day falls at its end.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-04T19:10:00Z
    const BASE: i64 = 1_796_411_400_000;

    #[test]
    fn every_rfc3339_form() {
        assert_eq!(parse_rfc3339("2026-12-04T19:10:00Z"), Some(BASE));
        assert_eq!(parse_rfc3339("2026-12-04t19:10:00z"), Some(BASE));
        assert_eq!(parse_rfc3339("2026-12-04T20:10:00+01:00"), Some(BASE));
        assert_eq!(parse_rfc3339("2026-12-04T19:10:00-00:00"), Some(BASE));
        assert_eq!(parse_rfc3339("2026-12-04T19:10:00+00:00"), Some(BASE));
        assert_eq!(parse_rfc3339("2026-12-04T13:40:00-05:30"), Some(BASE));
        assert_eq!(parse_rfc3339("2026-12-05T04:10:00+09:00"), Some(BASE));
        assert_eq!(parse_rfc3339("2026-12-04T19:10:00.5Z"), Some(BASE + 500));
        assert_eq!(
            parse_rfc3339("2026-12-04T19:10:00.123456Z"),
            Some(BASE + 123)
        );
        assert_eq!(
            parse_rfc3339("2026-12-04T19:10:00.07+00:00"),
            Some(BASE + 70)
        );
        assert_eq!(parse_rfc3339("2026-12-04T19:09:60Z"), Some(BASE));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:59:59+01:00"), Some(-1000));
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800_000));
    }

    #[test]
    fn bad_forms_are_refused() {
        for bad in [
            "",
            "2026-12-04",
            "2026-12-04T19:10Z",
            "2026-12-04 19:10:00Z",
            "2026-12-04T19:10:00",
            "2026-12-04T19:10:00+0100",
            "2026-12-04T19:10:00+01",
            "2026-12-04T19:10:00.Z",
            "2026-12-04T19:10:00,5Z",
            "2026-12-04T19:10:00ZZ",
            "2026-12-04T19:10:00 Z",
            "2026-13-04T19:10:00Z",
            "2026-00-04T19:10:00Z",
            "2026-02-29T19:10:00Z",
            "2026-04-31T19:10:00Z",
            "2026-12-00T19:10:00Z",
            "2026-12-04T24:00:00Z",
            "2026-12-04T19:60:00Z",
            "2026-12-04T19:10:61Z",
            "2026-12-04T19:10:00+24:00",
            "2026-12-04T19:10:00+01:60",
            "+026-12-04T19:10:00Z",
            "2026-12-04T19:1-:00Z",
            "2026/12/04T19:10:00Z",
            "yesterday",
            "2026-12-04T19:10:00Ü",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }
}
