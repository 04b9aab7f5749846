//! The SQL that differs between the engines, and the quoting both share. Everything else the
//! compiler writes is SQL both accept: `regexp_like`, `strpos`, `starts_with`, `reverse`,
//! `lower`, `TRY_CAST`, `date_trunc`, `INTERVAL '1' HOUR`, `json_extract_scalar`, window
//! functions, `FILTER (WHERE ...)`.

use super::{Dialect, time};

pub(super) fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal: both engines take backslashes literally in standard strings.
pub(super) fn quote_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Dialect {
    pub(super) fn now(self) -> &'static str {
        match self {
            Dialect::DataFusion => "now()",
            Dialect::Trino => "current_timestamp",
        }
    }

    /// An instant in UTC. DataFusion's literal reads `Z`; Trino's takes a zone name and makes
    /// a `timestamp(6) with time zone`, the columns' type there.
    pub(super) fn timestamp(self, micros: i64) -> String {
        let utc = time::format_utc(micros);
        match self {
            Dialect::DataFusion => format!("TIMESTAMP '{}Z'", utc.replacen(' ', "T", 1)),
            Dialect::Trino => format!("TIMESTAMP '{utc} UTC'"),
        }
    }

    /// A timespan as an interval literal in its largest whole unit, which both engines read.
    /// Trino's day-to-second intervals keep milliseconds: finer digits are dropped there.
    pub(super) fn interval(self, micros: i64) -> String {
        const UNITS: [(i64, &str); 3] = [(86_400_000_000, "DAY"), (3_600_000_000, "HOUR"), (60_000_000, "MINUTE")];
        if let Some((length, unit)) = UNITS.iter().find(|(length, _)| micros % length == 0 && micros != 0) {
            return format!("INTERVAL '{}' {unit}", micros / length);
        }
        let sign = if micros < 0 { "-" } else { "" };
        let (whole, fraction) = (micros.abs() / 1_000_000, micros.abs() % 1_000_000);
        let fraction = match self {
            Dialect::DataFusion => format!("{fraction:06}"),
            Dialect::Trino => format!("{:03}", fraction / 1000),
        };
        let fraction = fraction.trim_end_matches('0');
        match fraction.is_empty() {
            true => format!("INTERVAL '{sign}{whole}' SECOND"),
            false => format!("INTERVAL '{sign}{whole}.{fraction}' SECOND"),
        }
    }

    /// `timestamp` rounded down to a multiple of `micros` since the epoch (KQL's `bin`).
    pub(super) fn bin_timestamp(self, timestamp: &str, micros: i64) -> String {
        match self {
            // The two-argument form bins from the epoch and keeps the column's type.
            Dialect::DataFusion => format!("date_bin({}, {timestamp})", self.interval(micros)),
            Dialect::Trino => {
                let seconds = micros as f64 / 1e6;
                format!("from_unixtime(floor(to_unixtime({timestamp}) / {seconds:?}) * {seconds:?}, 'UTC')")
            }
        }
    }

    /// The JSON text of what `path` selects in the JSON text `document` (Trino's `json_extract`
    /// returns its `JSON` type, which `json_format` writes as text).
    pub(super) fn json_extract(self, document: &str, path: &str) -> String {
        match self {
            Dialect::DataFusion => format!("json_extract({document}, {path})"),
            Dialect::Trino => format!("json_format(json_extract({document}, {path}))"),
        }
    }

    /// A string read as an instant (KQL's `todatetime`); NULL when it is none.
    pub(super) fn parse_timestamp(self, text: &str) -> String {
        match self {
            Dialect::DataFusion => format!("TRY_CAST({text} AS TIMESTAMP)"),
            Dialect::Trino => format!("try(from_iso8601_timestamp({text}))"),
        }
    }

    /// A list of strings joined by `separator`, for the string operators on a string list.
    pub(super) fn join_strings(self, list: &str, separator: &str) -> String {
        match self {
            Dialect::DataFusion => format!("array_to_string({list}, {separator})"),
            Dialect::Trino => format!("array_join({list}, {separator})"),
        }
    }

    pub(super) fn list_contains(self, list: &str, element: &str) -> String {
        match self {
            Dialect::DataFusion => format!("array_has({list}, {element})"),
            Dialect::Trino => format!("contains({list}, {element})"),
        }
    }

    /// The list's element at a 1-based index, NULL past its end.
    pub(super) fn list_element(self, list: &str, index: &str) -> String {
        match self {
            Dialect::DataFusion => format!("array_element({list}, {index})"),
            Dialect::Trino => format!("element_at({list}, {index})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_use_the_largest_whole_unit() {
        let cases = [
            (86_400_000_000, "INTERVAL '1' DAY", "INTERVAL '1' DAY"),
            (7_200_000_000, "INTERVAL '2' HOUR", "INTERVAL '2' HOUR"),
            (5_400_000_000, "INTERVAL '90' MINUTE", "INTERVAL '90' MINUTE"),
            (-10_000_000, "INTERVAL '-10' SECOND", "INTERVAL '-10' SECOND"),
            (100_000, "INTERVAL '0.1' SECOND", "INTERVAL '0.1' SECOND"),
            (1_000_001, "INTERVAL '1.000001' SECOND", "INTERVAL '1' SECOND"),
        ];
        for (micros, datafusion, trino) in cases {
            assert_eq!(Dialect::DataFusion.interval(micros), datafusion);
            assert_eq!(Dialect::Trino.interval(micros), trino);
        }
    }

    #[test]
    fn timestamps_are_utc_literals() {
        assert_eq!(Dialect::DataFusion.timestamp(1_000_000), "TIMESTAMP '1970-01-01T00:00:01.000000Z'");
        assert_eq!(Dialect::Trino.timestamp(1_000_000), "TIMESTAMP '1970-01-01 00:00:01.000000 UTC'");
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_string("it's"), "'it''s'");
    }
}
