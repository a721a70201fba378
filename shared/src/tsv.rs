//! TAB-separated tables with a header line, as the TAU dataset's `meta.csv` and fold lists
//! are written: the header names the columns, every other non-blank line is a row. Fields
//! are trimmed; blank lines are skipped but still counted, so row numbers in error messages
//! match what an editor shows.
//!
//! Pure text in, no file access: the host reads the file and names it, the fuzzer feeds
//! arbitrary text.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;

/// A parsed TAB-separated table.
#[derive(Clone, Debug)]
pub struct Table {
    /// What the text came from (a file path), to begin error messages with.
    pub name: String,
    /// Header name -> column index. A name repeated in the header maps to its last column.
    pub columns: HashMap<String, usize>,
    /// The data rows: (1-based line number of the row in the text, trimmed fields).
    pub rows: Vec<(usize, Vec<String>)>,
}

impl Table {
    /// Parse `text`; `name` (usually the file path) begins the error messages. The only
    /// error is a text without a single non-blank line (no header).
    pub fn parse(text: &str, name: &str) -> Result<Table> {
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().with_context(|| format!("{name}: empty CSV"))?;
        let columns = header.split('\t').enumerate().map(|(i, h)| (h.trim().to_string(), i)).collect();
        let rows = lines.map(|(i, l)| (i + 1, l.split('\t').map(|f| f.trim().to_string()).collect())).collect();
        Ok(Table { name: name.to_string(), columns, rows })
    }

    /// The index of column `name`; the error names the table and lists the header.
    pub fn column(&self, name: &str) -> Result<usize> {
        match self.columns.get(name) {
            Some(&i) => Ok(i),
            None => bail!(
                "{}: missing column {name:?} (header has: {})",
                self.name,
                self.columns.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// The index of column `name`, if the header has it.
    pub fn optional_column(&self, name: &str) -> Option<usize> {
        self.columns.get(name).copied()
    }
}

/// Field `column` of `row` when the row has it and it is not empty (rows may be short).
pub fn field(row: &[String], column: usize) -> Option<&str> {
    row.get(column).map(String::as_str).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_rows_and_line_numbers() {
        let t = Table::parse("a\tb \t c\n\n x\t\ty\n  \nlast\n", "t.csv").unwrap();
        assert_eq!(t.column("a").unwrap(), 0);
        assert_eq!(t.column("c").unwrap(), 2);
        assert_eq!(t.optional_column("d"), None);
        assert_eq!(t.rows, vec![(3, vec!["x".into(), "".into(), "y".into()]), (5, vec!["last".into()])]);
        assert_eq!(field(&t.rows[0].1, 0), Some("x"));
        assert_eq!(field(&t.rows[0].1, 1), None, "an empty field is absent");
        assert_eq!(field(&t.rows[1].1, 2), None, "a short row lacks the field");
    }

    #[test]
    fn errors_name_the_table() {
        assert_eq!(Table::parse(" \n\t\n", "x.csv").unwrap_err().to_string(), "x.csv: empty CSV");
        let e = Table::parse("only\n", "x.csv").unwrap().column("other").unwrap_err().to_string();
        assert_eq!(e, "x.csv: missing column \"other\" (header has: only)");
    }
}
