//! What the client commands print: aligned plain-text tables and field lists for people,
//! JSON for scripts (`--json`). Results go to stdout, errors to stderr; a closed stdout (for
//! example `| head`) ends the output quietly instead of panicking.
//!
//! Every cell of a [`Table`] and every value of [`print_fields`] is escaped
//! (`portcullis_proto::text`): user names and groups come from the identity provider, labels
//! and reasons from the store, and none of it may drive the reader's terminal. JSON output
//! needs nothing more: serde_json escapes control characters in strings.

use std::io::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;
use portcullis_proto::text;
use serde::Serialize;
use unicode_width::UnicodeWidthStr as _;

/// Writes `text` to stdout; a reader that went away is not an error.
pub(crate) fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut text =
        serde_json::to_string_pretty(value).context("cannot encode the output as JSON")?;
    text.push('\n');
    write_stdout(&text)
}

/// Prints `value` as one line of JSON on stdout (for line-oriented readers).
pub(crate) fn print_json_line<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string(value).context("cannot encode the output as JSON")?;
    text.push('\n');
    write_stdout(&text)
}

/// One column of a table of `T`s: its header and how a cell is drawn from an item.
pub(crate) type Column<'a, T> = (&'a str, fn(&T) -> String);

/// A table with a header row and columns padded to their widest cell.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new<I, S>(headers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// A table of `items`, one row each, with a column per `(header, cell)` pair.
    pub(crate) fn of<T>(items: &[T], columns: &[Column<'_, T>]) -> Self {
        let mut table = Self::new(columns.iter().map(|(header, _)| *header));
        for item in items {
            table.row(columns.iter().map(|(_, cell)| cell(item)));
        }
        table
    }

    /// Adds a row; each cell is escaped (see the module doc).
    pub(crate) fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows
            .push(cells.into_iter().map(|c| text::escape(&c.into())).collect());
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, two spaces between columns, no trailing spaces. Columns are padded
    /// to the display width of their widest cell (a CJK character or an emoji takes two
    /// terminal columns, a combining mark none), so they line up on a terminal.
    pub(crate) fn render(&self) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.headers.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0usize; columns];
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, cell) in line.iter().enumerate() {
                widths[i] = widths[i].max(cell.width());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                let pad = widths[i].saturating_sub(cell.width());
                text.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table, or `empty` (e.g. "No targets.") when it has no rows.
    pub(crate) fn print_or(&self, empty: &str) -> anyhow::Result<()> {
        if self.is_empty() {
            write_stdout(&format!("{empty}\n"))
        } else {
            write_stdout(&self.render())
        }
    }
}

/// Prints `label: value` lines with the values aligned.
pub(crate) fn print_fields(fields: &[(&str, String)]) -> anyhow::Result<()> {
    write_stdout(&render_fields(fields))
}

pub(crate) fn render_fields(fields: &[(&str, String)]) -> String {
    let width = fields
        .iter()
        .map(|(label, _)| label.chars().count() + 1)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (label, value) in fields {
        let label = format!("{label}:");
        let value = text::escaped(value);
        out.push_str(format!("{label:<width$}  {value}").trim_end());
        out.push('\n');
    }
    out
}

/// Unix seconds as RFC 3339 (UTC, whole seconds), e.g. `2024-05-01T12:00:00Z`.
pub(crate) fn time(unix_secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_secs)).to_string()
}

/// [`time`] of an optional instant; `-` when absent.
pub(crate) fn opt_time(unix_secs: Option<u64>) -> String {
    unix_secs.map_or_else(|| "-".to_owned(), time)
}

/// A duration in seconds for people, e.g. `8h` or `1h 30m`.
pub(crate) fn duration(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// An optional text; `-` when absent or empty.
pub(crate) fn or_dash(value: Option<&str>) -> String {
    match value {
        Some(text) if !text.is_empty() => text.to_owned(),
        _ => "-".to_owned(),
    }
}

/// A connection limit, where 0 means unlimited.
pub(crate) fn limit(n: u32) -> String {
    if n == 0 {
        "unlimited".to_owned()
    } else {
        n.to_string()
    }
}

/// Byte counts for people: `512 B`, `16.0 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Parses a humantime duration (`8h`, `90m`, `1h30m`) into whole seconds, at least one.
pub(crate) fn parse_duration_secs(text: &str) -> Result<u64, String> {
    let parsed = humantime::parse_duration(text)
        .map_err(|err| format!("{err}: expected a duration such as 8h, 90m or 1h30m"))?;
    if parsed.subsec_nanos() != 0 {
        return Err("use whole seconds".into());
    }
    match parsed.as_secs() {
        0 => Err("the duration must be at least one second".into()),
        secs => Ok(secs),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_trim() {
        let mut table = Table::new(["ID", "NAME", "ZONE"]);
        table.row(["t_1", "web", "-"]);
        table.row(["t_22", "database", ""]);
        assert_eq!(
            table.render(),
            "ID    NAME      ZONE\nt_1   web       -\nt_22  database\n"
        );
    }

    #[test]
    fn a_table_of_items_has_a_column_per_pair() {
        let items = [("t_1", "web"), ("t_22", "database")];
        let table = Table::of(&items, &[("ID", |i| i.0.into()), ("NAME", |i| i.1.into())]);
        assert_eq!(table.render(), "ID    NAME\nt_1   web\nt_22  database\n");
        assert!(Table::of(&items[..0], &[("ID", |i| i.0.into())]).is_empty());
    }

    #[test]
    fn wide_characters_keep_the_columns_aligned() {
        let mut table = Table::new(["USER", "GROUPS"]);
        table.row(["山田太郎", "ops"]);
        table.row(["ana\u{301}", "dev"]);
        table.row(["🦀 crab", "rust"]);
        let rendered = table.render();
        assert_eq!(
            rendered,
            "USER      GROUPS\n山田太郎  ops\nana\u{301}       dev\n🦀 crab   rust\n"
        );
        // Every second column starts at the same terminal column.
        for line in rendered.lines() {
            let first = line.split("  ").next().unwrap_or_default();
            let gap = line[first.len()..].len() - line[first.len()..].trim_start().len();
            assert_eq!(first.width() + gap, 10, "{line:?}");
        }
    }

    #[test]
    fn cells_and_fields_from_outside_cannot_drive_the_terminal() {
        // A user name and groups as an identity provider (or an old row) may hold them.
        let mut table = Table::new(["USER", "GROUPS"]);
        table.row(["eve\u{1b}]52;c;cm0gLXJm\u{7}", "ops\n\u{202e}nimda"]);
        let rendered = table.render();
        assert_eq!(
            rendered,
            "USER                          GROUPS\n\
             eve\\u{1b}]52;c;cm0gLXJm\\u{7}  ops\\n\\u{202e}nimda\n"
        );
        let fields = render_fields(&[("user", "eve\u{1b}[2J\r".into())]);
        assert_eq!(fields, "user:  eve\\u{1b}[2J\\r\n");
        for out in [&rendered, &fields] {
            let body = out.trim_end_matches('\n').replace('\n', "");
            assert!(text::first_unsafe(&body).is_none(), "{out:?}");
        }
    }

    #[test]
    fn fields_align() {
        let text = render_fields(&[("ID", "t_1".into()), ("Address", "a:22".into())]);
        assert_eq!(text, "ID:       t_1\nAddress:  a:22\n");
    }

    #[test]
    fn times_and_sizes() {
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(opt_time(None), "-");
        assert_eq!(duration(8 * 3600), "8h");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(16 * 1024 * 1024), "16.0 MiB");
        assert_eq!(limit(0), "unlimited");
        assert_eq!(parse_duration_secs("8h"), Ok(28_800));
        assert_eq!(parse_duration_secs("1h 30m"), Ok(5_400));
        assert!(parse_duration_secs("0s").is_err());
        assert!(parse_duration_secs("soon").is_err());
    }
}
