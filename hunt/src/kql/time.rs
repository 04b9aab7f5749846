//! Instants as microseconds since the epoch (UTC), read from KQL's `datetime(...)` and written
//! for SQL, without a calendar library: the day arithmetic is the store's partitions'
//! ([`crate::partition::days_from_civil`]).

const MICROS_PER_DAY: i64 = 86_400_000_000;

fn days_from_civil(year: i64, month: i64, day: i64) -> Result<i64, &'static str> {
    let month = u32::try_from(month).map_err(|_| "the month is out of range")?;
    let day = u32::try_from(day).map_err(|_| "the day is out of range")?;
    Ok(crate::partition::days_from_civil(year, month, day))
}

/// Reads `2026-12-01`, `2026-12-01 10:00`, `2026-12-01T10:00:00Z`, `2026-12-01T10:00:00.123456Z`
/// or with an offset (`+02:00`); without a zone the instant is UTC, as KQL takes it. Quotes
/// around the text are allowed (`datetime("2026-12-01")`).
pub(super) fn parse_datetime(text: &str) -> Result<i64, &'static str> {
    let text = text.trim().trim_matches(|c| c == '"' || c == '\'');
    let number = |digits: &str| -> Result<i64, &'static str> {
        match digits.chars().all(|c| c.is_ascii_digit()) && !digits.is_empty() {
            true => digits.parse().map_err(|_| "a number is too long"),
            false => Err("expected YYYY-MM-DD[THH:MM[:SS[.ffffff]]][Z|+HH:MM]"),
        }
    };
    let (date, time) = match text.find(['T', ' ']) {
        Some(at) => (&text[..at], &text[at + 1..]),
        None => (text, ""),
    };
    let mut date_fields = date.splitn(3, '-');
    let (year, month, day) = match (date_fields.next(), date_fields.next(), date_fields.next()) {
        (Some(y), Some(m), Some(d)) if y.len() == 4 => (number(y)?, number(m)?, number(d)?),
        _ => return Err("expected YYYY-MM-DD[THH:MM[:SS[.ffffff]]][Z|+HH:MM]"),
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("no such day");
    }
    let (clock, offset_minutes) = match time.find(['Z', 'z', '+', '-']) {
        Some(at) if time[at..].eq_ignore_ascii_case("z") => (&time[..at], 0),
        Some(at) => {
            let sign = if time[at..].starts_with('-') { -1 } else { 1 };
            let (hours, minutes) = time[at + 1..].split_once(':').ok_or("an offset is written +HH:MM")?;
            (&time[..at], sign * (number(hours)? * 60 + number(minutes)?))
        }
        None => (time, 0),
    };
    let mut micros_of_day = 0;
    if !clock.is_empty() {
        let mut fields = clock.splitn(3, ':');
        let hour = number(fields.next().unwrap_or_default())?;
        let minute = number(fields.next().ok_or("a time is written HH:MM[:SS[.ffffff]]")?)?;
        let (second, fraction) = match fields.next() {
            Some(seconds) => match seconds.split_once('.') {
                Some((whole, fraction)) => (number(whole)?, fraction),
                None => (number(seconds)?, ""),
            },
            None => (0, ""),
        };
        if hour > 23 || minute > 59 || second > 59 || fraction.len() > 7 {
            return Err("no such time of day");
        }
        // Ticks (100 ns, a seventh digit) are below what either engine keeps: dropped.
        let fraction_micros = match fraction {
            "" => 0,
            digits => number(&format!("{digits:0<6}")[..6])?,
        };
        micros_of_day = ((hour * 60 + minute) * 60 + second) * 1_000_000 + fraction_micros;
    }
    Ok(days_from_civil(year, month, day)? * MICROS_PER_DAY + micros_of_day - offset_minutes * 60_000_000)
}

/// `2026-12-01 10:00:00.000000`: the instant in UTC, as both engines' timestamp literals take it.
pub(super) fn format_utc(micros: i64) -> String {
    crate::partition::format_naive_utc(micros)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_iso_forms_and_writes_utc() {
        let cases = [
            ("2026-12-01T10:00:00Z", "2026-12-01 10:00:00.000000"),
            ("2026-12-01", "2026-12-01 00:00:00.000000"),
            ("\"2026-12-01 10:30\"", "2026-12-01 10:30:00.000000"),
            ("2024-02-29T23:59:59.1234567Z", "2024-02-29 23:59:59.123456"),
            ("2026-12-01T01:00:00+02:00", "2026-11-30 23:00:00.000000"),
            ("1969-12-31T23:59:59.5-00:00", "1969-12-31 23:59:59.500000"),
        ];
        for (text, utc) in cases {
            assert_eq!(format_utc(parse_datetime(text).unwrap()), utc, "{text}");
        }
        assert_eq!(parse_datetime("1970-01-01T00:00:01Z"), Ok(1_000_000));
        for bad in ["2023-02-29", "2026-13-01", "12/01/2026", "2026-12-01T25:00", "2026-12-01Tnoon"] {
            assert!(parse_datetime(bad).is_err(), "{bad}");
        }
    }
}
