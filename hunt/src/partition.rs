//! Where a row's file lives: `<Table>/date=YYYY-MM-DD/hour=HH/`, Hive-style, so that Trino,
//! Spark or DuckDB read the same directories as partitions.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::schema::Table;

pub const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// One hour of one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    /// Hours since the epoch, UTC.
    pub hour: i64,
    pub table: Table,
}

impl Partition {
    pub fn of(table: Table, unix_micros: i64) -> Partition {
        Partition { hour: unix_micros.div_euclid(MICROS_PER_HOUR), table }
    }

    pub fn start_micros(self) -> i64 {
        self.hour * MICROS_PER_HOUR
    }

    pub fn end_micros(self) -> i64 {
        (self.hour + 1) * MICROS_PER_HOUR
    }

    /// `date=YYYY-MM-DD`, `hour=HH`: the directory names under the table's.
    pub fn keys(self) -> (String, String) {
        let (year, month, day) = civil_from_days(self.hour.div_euclid(24));
        (format!("date={year:04}-{month:02}-{day:02}"), format!("hour={:02}", self.hour.rem_euclid(24)))
    }

    /// The date, `YYYY-MM-DD`, as Trino's partition column holds it.
    pub fn date(self) -> String {
        self.keys().0["date=".len()..].to_owned()
    }

    pub fn directory(self, root: &Path) -> PathBuf {
        let (date, hour) = self.keys();
        root.join(self.table.name()).join(date).join(hour)
    }

    /// The partition a directory pair names, if it is one.
    pub fn parse(table: Table, date: &str, hour: &str) -> Option<Partition> {
        let date = date.strip_prefix("date=")?;
        let hour: i64 = hour.strip_prefix("hour=")?.parse().ok()?;
        let mut parts = date.splitn(3, '-');
        let year: i64 = parts.next()?.parse().ok()?;
        let month: u32 = parts.next()?.parse().ok()?;
        let day: u32 = parts.next()?.parse().ok()?;
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(0..24).contains(&hour) {
            return None;
        }
        Some(Partition { hour: days_from_civil(year, month, day) * 24 + hour, table })
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (date, hour) = self.keys();
        write!(f, "{}/{date}/{hour}", self.table)
    }
}

/// Howard Hinnant's `civil_from_days`: the proleptic Gregorian date of a day since the epoch.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An instant as RFC 3339 in UTC with microseconds: how hunts print timestamps, on every engine.
pub fn format_micros(unix_micros: i64) -> String {
    let seconds = unix_micros.div_euclid(1_000_000);
    let micros = unix_micros.rem_euclid(1_000_000);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let second_of_day = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// The same instant without its zone (`2026-12-01 10:00:00.000000`): how Trino's
/// `timestamp(6)` literals, and both engines' timestamp literals, write it.
pub fn format_naive_utc(unix_micros: i64) -> String {
    format_micros(unix_micros).trim_end_matches('Z').replacen('T', " ", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_name_their_utc_hour_and_parse_back() {
        // 2026-12-01T23:59:59.999999Z and the next microsecond.
        let late = 1_796_169_599_999_999;
        let partition = Partition::of(Table::CloudAuditEvents, late);
        assert_eq!(partition.to_string(), "CloudAuditEvents/date=2026-12-01/hour=23");
        assert_eq!(
            Partition::of(Table::CloudAuditEvents, late + 1).to_string(),
            "CloudAuditEvents/date=2026-12-02/hour=00"
        );
        assert_eq!(Partition::parse(Table::CloudAuditEvents, "date=2026-12-01", "hour=23"), Some(partition));
        assert_eq!(Partition::parse(Table::CloudAuditEvents, "date=2026-13-01", "hour=23"), None);
        assert_eq!(Partition::parse(Table::CloudAuditEvents, "date=2026-12-01", "hour=24"), None);
        assert_eq!(format_micros(late), "2026-12-01T23:59:59.999999Z");
        assert_eq!(format_micros(-1), "1969-12-31T23:59:59.999999Z");
        for days in [-800_000, -1, 0, 59, 60, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
