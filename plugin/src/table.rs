//! Plain-text tables in kubectl's style, and kubectl's way of writing ages.

use k8s_openapi::jiff::Timestamp;

/// A column: its header, and the most characters a cell may take before it is cut short.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub header: &'static str,
    pub max: Option<usize>,
}

impl Column {
    pub const fn new(header: &'static str) -> Column {
        Column { header, max: None }
    }

    pub const fn max(header: &'static str, max: usize) -> Column {
        Column { header, max: Some(max) }
    }
}

/// What an absent value looks like in a table, as in kubectl.
pub const NONE: &str = "<none>";

/// Left-aligned columns three spaces apart, as kubectl prints them; cells longer than their
/// column's limit end in "…". Lines carry no trailing spaces.
pub fn render(columns: &[Column], rows: &[Vec<String>]) -> String {
    let headers: Vec<&str> = columns.iter().map(|c| c.header).collect();
    let limits: Vec<Option<usize>> = columns.iter().map(|c| c.max).collect();
    render_limited(&headers, &limits, rows)
}

/// As [`render`], for columns known only at run time (a hunt's), none of them cut short.
pub fn render_headed(headers: &[&str], rows: &[Vec<String>]) -> String {
    render_limited(headers, &vec![None; headers.len()], rows)
}

fn render_limited(headers: &[&str], limits: &[Option<usize>], rows: &[Vec<String>]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| limits.iter().zip(row).map(|(max, cell)| truncate(&one_line(cell), *max)).collect())
        .collect();
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, header)| {
            cells.iter().map(|row| row[i].chars().count()).chain([header.chars().count()]).max().unwrap_or(0)
        })
        .collect();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    std::iter::once(&header)
        .chain(&cells)
        .map(|row| {
            let line: String =
                row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}   ")).collect::<String>();
            line.trim_end().to_owned() + "\n"
        })
        .collect()
}

/// Cuts a cell to `max` characters, marking the cut with "…".
pub fn truncate(cell: &str, max: Option<usize>) -> String {
    match max {
        Some(max) if cell.chars().count() > max => {
            let kept: String = cell.chars().take(max.saturating_sub(1)).collect();
            format!("{}…", kept.trim_end())
        }
        _ => cell.to_owned(),
    }
}

/// Line breaks would break the table's rows.
fn one_line(cell: &str) -> String {
    cell.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The age of something created at `then`, written as kubectl writes it (`45s`, `5m30s`,
/// `95m`, `5h10m`, `30h`, `3d4h`, `40d`, `2y30d`).
pub fn age(now: Timestamp, then: Timestamp) -> String {
    let seconds = (now.as_second() - then.as_second()).max(0);
    let (minutes, hours) = (seconds / 60, seconds / 3600);
    let days = hours / 24;
    let years = days / 365;
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        }
    } else if days < 365 * 2 {
        format!("{days}d")
    } else if years < 8 {
        match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        }
    } else {
        format!("{years}y")
    }
}

/// A time as an analyst reads it in a timeline: UTC, to the second.
pub fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn columns_are_aligned_three_spaces_apart_without_trailing_spaces() {
        let columns = [Column::new("NAME"), Column::new("PHASE"), Column::new("MESSAGE")];
        let out = render(&columns, &[row(&["isolate-web-x7k2p", "Succeeded", ""]), row(&["a", "Failed", "no pod"])]);
        assert_eq!(
            out,
            "NAME                PHASE       MESSAGE\n\
             isolate-web-x7k2p   Succeeded\n\
             a                   Failed      no pod\n"
        );
    }

    #[test]
    fn long_cells_are_cut_to_their_column_with_an_ellipsis() {
        let columns = [Column::new("NAME"), Column::max("MESSAGE", 12)];
        let out = render(&columns, &[row(&["a", "pod isolated: 3 policies excluded"]), row(&["b", "exactly 12 c"])]);
        assert_eq!(out, "NAME   MESSAGE\na      pod isolate…\nb      exactly 12 c\n");
    }

    #[test]
    fn truncation_counts_characters_not_bytes_and_keeps_cells_on_one_line() {
        assert_eq!(truncate("ééééé", Some(3)), "éé…");
        assert_eq!(truncate("short", Some(10)), "short");
        assert_eq!(truncate("no limit at all", None), "no limit at all");
        let out = render(&[Column::new("MESSAGE")], &[row(&["line one\nline two"])]);
        assert_eq!(out, "MESSAGE\nline one line two\n");
    }

    #[test]
    fn ages_read_like_kubectls() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let ago = |s: i64| age(now, Timestamp::from_second(1_800_000_000 - s).unwrap());
        assert_eq!(ago(0), "0s");
        assert_eq!(ago(119), "119s");
        assert_eq!(ago(330), "5m30s");
        assert_eq!(ago(600), "10m");
        assert_eq!(ago(95 * 60), "95m");
        assert_eq!(ago(5 * 3600 + 600), "5h10m");
        assert_eq!(ago(30 * 3600), "30h");
        assert_eq!(ago(3 * 86400 + 4 * 3600), "3d4h");
        assert_eq!(ago(40 * 86400), "40d");
        assert_eq!(ago(2 * 365 * 86400 + 30 * 86400), "2y30d");
        // Clocks drift: something "created in the future" is 0s old, not negative.
        assert_eq!(age(now, Timestamp::from_second(1_800_000_010).unwrap()), "0s");
    }

    #[test]
    fn timeline_times_are_utc_to_the_second() {
        assert_eq!(time(Timestamp::from_second(1_763_804_467).unwrap()), "2025-11-22 09:41:07Z");
    }
}
