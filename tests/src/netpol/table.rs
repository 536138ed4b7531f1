//! Truth tables: who reaches whom, expected and observed, printed as
//! upstream's netpol suite prints them (`.` connected, `X` not; in the
//! difference grid `X` marks a wrong cell).

use std::fmt::Write as _;

use super::pod_keys;

/// A boolean matrix with named rows (sources) and columns (destinations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruthTable {
    /// Row names, in order.
    pub rows: Vec<String>,
    /// Column names, in order.
    pub cols: Vec<String>,
    cells: Vec<Vec<bool>>,
}

impl TruthTable {
    /// A table with every cell `value`.
    #[must_use]
    pub fn new(rows: Vec<String>, cols: Vec<String>, value: bool) -> Self {
        let cells = vec![vec![value; cols.len()]; rows.len()];
        TruthTable { rows, cols, cells }
    }

    /// Sets cell `row`, `col`.
    ///
    /// # Panics
    ///
    /// If either name is not in the table: a typo in a test.
    pub fn set(&mut self, row: &str, col: &str, value: bool) {
        let (r, c) = (self.row(row), self.col(col));
        self.cells[r][c] = value;
    }

    /// Cell `row`, `col`.
    ///
    /// # Panics
    ///
    /// If either name is not in the table.
    #[must_use]
    pub fn get(&self, row: &str, col: &str) -> bool {
        self.cells[self.row(row)][self.col(col)]
    }

    fn row(&self, name: &str) -> usize {
        let found = self.rows.iter().position(|r| r == name);
        found.unwrap_or_else(|| panic!("{name:?} is not a row of {:?}", self.rows))
    }

    fn col(&self, name: &str) -> usize {
        let found = self.cols.iter().position(|c| c == name);
        found.unwrap_or_else(|| panic!("{name:?} is not a column of {:?}", self.cols))
    }

    /// The grid, one character per cell from `cell(row, col)`.
    #[must_use]
    pub fn render(&self, cell: impl Fn(usize, usize) -> char) -> String {
        let width = self.cols.iter().map(String::len).max().unwrap_or(1).max(3);
        let first = self.rows.iter().map(String::len).max().unwrap_or(1).max(3);
        let mut text = format!("{:<first$}", "-");
        for col in &self.cols {
            let _ = write!(text, " {col:<width$}");
        }
        text.push('\n');
        for (r, row) in self.rows.iter().enumerate() {
            let _ = write!(text, "{row:<first$}");
            for c in 0..self.cols.len() {
                let _ = write!(text, " {:<width$}", cell(r, c));
            }
            text.push('\n');
        }
        text
    }

    /// The grid with `.` for true and `X` for false.
    #[must_use]
    pub fn render_values(&self) -> String {
        self.render(|r, c| if self.cells[r][c] { '.' } else { 'X' })
    }

    /// The cells where `observed` differs from `self`, skipping those
    /// `ignored(row, col)` says do not count: `(row, col, expected)`.
    #[must_use]
    pub fn wrong_cells(
        &self,
        observed: &TruthTable,
        ignored: impl Fn(&str, &str) -> bool,
    ) -> Vec<(String, String, bool)> {
        let mut wrong = Vec::new();
        for (r, row) in self.rows.iter().enumerate() {
            for (c, col) in self.cols.iter().enumerate() {
                let expected = self.cells[r][c];
                if !ignored(row, col) && observed.get(row, col) != expected {
                    wrong.push((row.clone(), col.clone(), expected));
                }
            }
        }
        wrong
    }

    /// Expected (`self`), observed and the difference, as upstream prints a
    /// failed case: in the last grid `X` is a wrong cell, `.` a right one,
    /// and ` ` one that does not count.
    #[must_use]
    pub fn report(&self, observed: &TruthTable, ignored: impl Fn(&str, &str) -> bool) -> String {
        let difference = self.render(|r, c| {
            let (row, col) = (&self.rows[r], &self.cols[c]);
            if ignored(row, col) {
                ' '
            } else if observed.get(row, col) == self.cells[r][c] {
                '.'
            } else {
                'X'
            }
        });
        format!(
            "expected:\n{}\nobserved:\n{}\ncomparison (X = wrong):\n{difference}",
            self.render_values(),
            observed.render_values()
        )
    }
}

/// Selects pods of the model by namespace and/or name; `None` matches all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Peer<'a> {
    /// Namespace, or any.
    pub namespace: Option<&'a str>,
    /// Pod name, or any.
    pub pod: Option<&'a str>,
}

impl<'a> Peer<'a> {
    /// Every pod of `namespace`.
    #[must_use]
    pub fn namespace(namespace: &'a str) -> Self {
        Peer {
            namespace: Some(namespace),
            pod: None,
        }
    }

    /// Pods named `pod` in any namespace.
    #[must_use]
    pub fn named(pod: &'a str) -> Self {
        Peer {
            namespace: None,
            pod: Some(pod),
        }
    }

    /// Whether pod `key` (`ns/name`) matches.
    #[must_use]
    pub fn matches(&self, key: &str) -> bool {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        self.namespace.is_none_or(|n| n == namespace) && self.pod.is_none_or(|p| p == name)
    }
}

/// What a policy case expects over the model's pods: `expected[from][to]`.
/// A pod dialling its own address never leaves its netns (the kernel loops
/// it back), so no policy sees it: loopback cells are probed and shown but
/// never judged, as upstream does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reachability {
    /// The expected matrix, rows are sources.
    pub expected: TruthTable,
}

impl Reachability {
    /// Every pair `connected` (true: no policy; false: start from deny all).
    #[must_use]
    pub fn new(connected: bool) -> Self {
        Reachability {
            expected: TruthTable::new(pod_keys(), pod_keys(), connected),
        }
    }

    /// One pair.
    pub fn expect(&mut self, from: &str, to: &str, connected: bool) {
        self.expected.set(from, to, connected);
    }

    /// Everything into `to`.
    pub fn expect_all_ingress(&mut self, to: &str, connected: bool) {
        self.expect_peer(Peer::default(), single(to), connected);
    }

    /// Everything out of `from`.
    pub fn expect_all_egress(&mut self, from: &str, connected: bool) {
        self.expect_peer(single(from), Peer::default(), connected);
    }

    /// Every pair whose source matches `from` and destination `to`.
    pub fn expect_peer(&mut self, from: Peer<'_>, to: Peer<'_>, connected: bool) {
        for source in pod_keys() {
            if !from.matches(&source) {
                continue;
            }
            for destination in pod_keys() {
                if to.matches(&destination) {
                    self.expected.set(&source, &destination, connected);
                }
            }
        }
    }

    /// Whether a cell is not judged: a pod to itself.
    #[must_use]
    pub fn is_loopback(from: &str, to: &str) -> bool {
        from == to
    }
}

/// The peer matching exactly pod `key`.
fn single(key: &str) -> Peer<'_> {
    let (namespace, pod) = key.split_once('/').unwrap_or(("", key));
    Peer {
        namespace: Some(namespace),
        pod: Some(pod),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_shape_the_matrix_like_upstream() {
        let mut reachability = Reachability::new(true);
        reachability.expect_peer(Peer::namespace("y"), Peer::namespace("x"), false);
        reachability.expect_all_egress("z/c", false);
        reachability.expect("z/c", "x/a", true);
        reachability.expect_all_ingress("y/b", false);
        let e = &reachability.expected;
        assert!(!e.get("y/a", "x/c") && e.get("x/a", "x/c") && e.get("z/a", "x/b"));
        assert!(!e.get("z/c", "y/a") && e.get("z/c", "x/a") && !e.get("z/c", "x/b"));
        assert!(!e.get("x/a", "y/b") && !e.get("y/b", "y/b"));
        assert!(Peer::named("b").matches("z/b") && !Peer::named("b").matches("z/a"));
    }

    #[test]
    fn a_report_marks_wrong_cells_and_skips_loopback() {
        let rows = vec!["x/a".to_owned(), "x/b".to_owned()];
        let expected = TruthTable::new(rows.clone(), rows.clone(), true);
        let mut observed = expected.clone();
        observed.set("x/a", "x/b", false);
        observed.set("x/b", "x/b", false);
        let wrong = expected.wrong_cells(&observed, Reachability::is_loopback);
        assert_eq!(wrong, [("x/a".to_owned(), "x/b".to_owned(), true)]);
        let report = expected.report(&observed, Reachability::is_loopback);
        assert!(
            report.contains("observed:\n-   x/a x/b\nx/a .   X  \nx/b .   X  \n"),
            "{report}"
        );
        assert!(report.ends_with("x/a     X  \nx/b .      \n"), "{report}");
    }
}
