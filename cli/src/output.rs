//! Output: a table for people by default, JSON or YAML for scripts. Every
//! command returns a `Serialize` value whose field names are the stable
//! interface; the table is a view of the same value.

use std::fmt::Write as _;

use serde::Serialize;

/// `-o table|json|yaml`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// One JSON document.
    Json,
    /// One YAML document.
    Yaml,
}

/// A command result that can also be shown as a table.
pub trait Render: Serialize {
    /// The human view.
    fn table(&self) -> String;
}

/// Prints `value` in `format` on stdout.
pub fn print(value: &impl Render, format: Format) -> anyhow::Result<()> {
    let text = match format {
        Format::Table => value.table(),
        Format::Json => serde_json::to_string_pretty(value)? + "\n",
        Format::Yaml => serde_yaml::to_string(value)?,
    };
    print!("{text}");
    Ok(())
}

/// Columns padded to their widest cell; the last column is not padded.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headers.
    #[must_use]
    pub fn new(headers: &[&str]) -> Self {
        Self {
            rows: vec![headers.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Adds a row (missing cells are empty).
    pub fn row(&mut self, cells: Vec<String>) -> &mut Self {
        self.rows.push(cells);
        self
    }

    /// The rendered table, one line per row.
    #[must_use]
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, width) in widths.iter().enumerate() {
                let cell = row.get(c).map_or("", String::as_str);
                if c + 1 == columns {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}  ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_to_the_widest_cell() {
        let mut t = Table::new(&["NAME", "VIP"]);
        t.row(vec!["echo".into(), "10.96.0.10:80/TCP".into()]);
        t.row(vec!["a-longer-name".into(), "10.96.0.11:53/UDP".into()]);
        assert_eq!(
            t.render(),
            "NAME           VIP\necho           10.96.0.10:80/TCP\na-longer-name  10.96.0.11:53/UDP\n"
        );
    }
}
