//! Tables the way kubectl prints them: upper-case headers, columns aligned
//! with three spaces between them, no borders, no trailing blanks.

use std::time::SystemTime;

use moor_codec::KindInfo;
use prost_reflect::DynamicMessage;

use crate::columns;
use crate::error::Result;

/// Rows under headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Column headers.
    pub headers: Vec<String>,
    /// Cells, one row per object.
    pub rows: Vec<Vec<String>>,
}

/// Which columns of a kind a table shows.
#[derive(Clone, Copy, Debug, Default)]
pub struct Layout {
    /// Include priority-1 columns (`-o wide`).
    pub wide: bool,
    /// Start with a NAMESPACE column (`-A`).
    pub namespace: bool,
    /// Prefix names with `kind/` (`get all`).
    pub kind_prefix: bool,
}

/// Gap between columns, as kubectl's tabwriter has it.
const GAP: usize = 3;

// === impl Table ===

impl Table {
    /// The table of `objects` of kind `info`.
    pub fn of(info: &KindInfo, objects: &[DynamicMessage], layout: Layout) -> Result<Self> {
        let columns: Vec<_> = info
            .columns
            .iter()
            .filter(|c| layout.wide || c.priority == 0)
            .collect();
        let mut headers: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        if layout.namespace && info.namespaced {
            headers.insert(0, "NAMESPACE".to_string());
        }
        let now = SystemTime::now();
        let mut rows = Vec::with_capacity(objects.len());
        for object in objects {
            let json = moor_codec::encode_json(object)?;
            let mut row: Vec<String> = columns
                .iter()
                .map(|c| {
                    let value = columns::cell(&c.json_path, &json, &info.message, now);
                    if layout.kind_prefix && c.json_path == ".metadata.name" {
                        crate::output::ref_of(info, &value)
                    } else {
                        value
                    }
                })
                .collect();
            if layout.namespace && info.namespaced {
                row.insert(0, crate::objects::meta_str(object, "namespace"));
            }
            rows.push(row);
        }
        Ok(Self { headers, rows })
    }

    /// The table as text, headers first unless `headers` is false.
    pub fn render(&self, headers: bool) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        let lines = headers
            .then_some(&self.headers)
            .into_iter()
            .chain(self.rows.iter());
        for line in lines {
            out.push_str(&render_line(line, &widths));
            out.push('\n');
        }
        out
    }

    /// One row as text, padded to the widths of the full table.
    pub fn render_row(&self, row: usize) -> String {
        let widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        self.rows
            .get(row)
            .map(|r| render_line(r, &widths))
            .unwrap_or_default()
    }
}

fn render_line(cells: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        line.push_str(cell);
        if i + 1 < cells.len() {
            let width = widths.get(i).copied().unwrap_or(0);
            let pad = width.saturating_sub(cell.chars().count()) + GAP;
            line.push_str(&" ".repeat(pad));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_without_trailing_blanks() {
        let table = Table {
            headers: vec!["NAME".into(), "READY".into(), "AGE".into()],
            rows: vec![
                vec!["web".into(), "1/1".into(), "5s".into()],
                vec!["database".into(), "0/1".into(), "3m".into()],
            ],
        };
        assert_eq!(
            table.render(true),
            "NAME       READY   AGE\nweb        1/1     5s\ndatabase   0/1     3m\n"
        );
    }
}
