//! Tables for people: fitted to the terminal's width, UUIDs shown short.
//!
//! The width is `COLUMNS` when set (a positive number), else the terminal's when stdout is one;
//! otherwise (a pipe, a file) there is no limit and every row stays on one line. Cells too long
//! for their column wrap within it (at spaces where they can), so no line is wider than the width;
//! a row takes at most [`MAX_ROW_LINES`] lines, the rest of a longer cell cut with `…` (the whole
//! record is in `--output json`).
//! A column's UUIDs are shown short (see [`short_ids`]: `7f3e2d1c` for a random id,
//! `01a2507b…47b5` for a time-ordered one), so that whatever a table shows can be given back to
//! a command that takes an id.
//! Times show as `2026-12-07 11:26:50` (UTC, to the second). `--output json` and the `show`
//! commands print ids and times whole.

use comfy_table::{ColumnConstraint, ContentArrangement, Width, presets::UTF8_BORDERS_ONLY};
use std::collections::BTreeSet;
use std::fmt;

/// How many characters of a UUID a table shows at least.
pub const SHORT_ID: usize = 8;

/// The most lines a row of a fitted table takes.
pub const MAX_ROW_LINES: usize = 4;

/// The width tables are fitted to: `COLUMNS`, else the terminal's when stdout is a terminal;
/// `None` (no limit) otherwise.
pub fn terminal_width() -> Option<u16> {
    if let Some(w) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|w| *w > 0)
    {
        return Some(w);
    }
    // comfy-table asks the terminal only when stdout is one.
    comfy_table::Table::new().width()
}

/// A table under construction; printed with `{}`.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    width: Option<u16>,
}

impl Table {
    /// A table fitted to [`terminal_width`].
    pub fn new(header: &[&str]) -> Self {
        Self::with_width(header, terminal_width())
    }

    /// A table fitted to `width` columns (`None`: no limit).
    pub fn with_width(header: &[&str], width: Option<u16>) -> Self {
        Self {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            width,
        }
    }

    pub fn add_row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
        self
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rows = self.rows.clone();
        let ids = shorten_id_columns(&mut rows);
        for cell in rows.iter_mut().flatten() {
            if let Some(t) = table_time(cell) {
                *cell = t;
            } else if cell.contains('\t') {
                // A tab would take more columns on the terminal than it counts for here.
                *cell = cell.replace('\t', " ");
            }
        }
        let mut t = comfy_table::Table::new();
        t.load_preset(UTF8_BORDERS_ONLY);
        t.set_header(self.header.clone());
        // A space before the first column's content and after each column's (with the preset's
        // blank junction, two between columns).
        for (i, column) in t.column_iter_mut().enumerate() {
            column.set_padding((u16::from(i == 0), 1));
        }
        match self.width {
            Some(w) => {
                t.set_width(w)
                    .set_content_arrangement(ContentArrangement::Dynamic)
                    .set_truncation_indicator("…");
                let natural: Vec<usize> = (0..self.header.len())
                    .map(|c| {
                        std::iter::once(&self.header[c])
                            .chain(rows.iter().filter_map(|r| r.get(c)))
                            .flat_map(|cell| cell.lines())
                            .map(|l| l.chars().count())
                            .max()
                            .unwrap_or(0)
                    })
                    .collect();
                // Outer borders, a blank column between columns (the preset's junctions), a
                // space before the first column's content and after each column's.
                let n = natural.len();
                let budget = (w as usize).saturating_sub(2 + n.saturating_sub(1) + n + 1);
                for (i, (column, width)) in t
                    .column_iter_mut()
                    .zip(column_widths(&natural, &ids, budget))
                    .enumerate()
                {
                    let before = u16::from(i == 0);
                    // A fixed width counts the padding.
                    column.set_constraint(ColumnConstraint::Absolute(Width::Fixed(
                        u16::try_from(width)
                            .unwrap_or(u16::MAX)
                            .saturating_add(before + 1),
                    )));
                }
            }
            None => {
                t.set_content_arrangement(ContentArrangement::Disabled);
            }
        }
        for r in rows {
            let mut row = comfy_table::Row::from(r);
            if self.width.is_some() {
                row.max_height(MAX_ROW_LINES);
            }
            t.add_row(row);
        }
        write!(f, "{t}")
    }
}

/// The narrowest a column that has to wrap is made, while the table can afford it.
const MIN_WRAPPED: usize = 8;

/// Each column's width so that together they take at most `budget` characters: the id
/// columns (`ids`: a short id cut in two could not be pasted back) and then the narrowest
/// columns keep their natural width as long as every other one can still have
/// [`MIN_WRAPPED`] (half that after an id column), and the others are cut to one common width (what is left over goes to them
/// from the left). A column is at least 1 wide.
fn column_widths(natural: &[usize], ids: &[bool], budget: usize) -> Vec<usize> {
    if natural.iter().sum::<usize>() <= budget {
        return natural.to_vec();
    }
    let is_id = |i: usize| ids.get(i).copied().unwrap_or(false);
    let mut order: Vec<usize> = (0..natural.len()).collect();
    order.sort_by_key(|i| (!is_id(*i), natural[*i]));
    let mut whole = vec![false; natural.len()];
    let mut left = budget;
    for (k, &i) in order.iter().enumerate() {
        let rest = natural.len() - k - 1;
        // An id column may leave the others half as much.
        let min = if is_id(i) {
            MIN_WRAPPED / 2
        } else {
            MIN_WRAPPED
        };
        if natural[i] + min * rest > left {
            break;
        }
        whole[i] = true;
        left -= natural[i];
    }
    let cut = |cap: usize| -> Vec<usize> {
        natural
            .iter()
            .zip(&whole)
            .map(|(n, w)| if *w { *n } else { (*n).min(cap).max(1) })
            .collect()
    };
    let shared = |cap: usize| -> usize {
        cut(cap)
            .iter()
            .zip(&whole)
            .filter(|(_, w)| !**w)
            .map(|(c, _)| c)
            .sum()
    };
    let widest = natural.iter().copied().max().unwrap_or(1);
    let cap = (1..=widest).rev().find(|c| shared(*c) <= left).unwrap_or(1);
    let mut widths = cut(cap);
    let mut spare = left.saturating_sub(shared(cap));
    for ((w, n), whole) in widths.iter_mut().zip(natural).zip(&whole) {
        if spare == 0 {
            break;
        }
        if !whole && *n > *w {
            let more = (n - *w).min(spare);
            *w += more;
            spare -= more;
        }
    }
    widths
}

/// A time as the CLI prints it (RFC 3339, UTC: `2026-12-07T11:26:50.123Z`) as tables show it:
/// `2026-12-07 11:26:50` (to the second, still UTC; a narrow column wraps it at the space).
fn table_time(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let shape = b.len() >= 20
        && b.last() == Some(&b'Z')
        && b[..19].iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
        && (b.len() == 20
            || (b[19] == b'.'
                && b.len() > 21
                && b[20..b.len() - 1].iter().all(u8::is_ascii_digit)));
    shape.then(|| format!("{} {}", &s[..10], &s[11..19]))
}

/// Whether `s` is a UUID in its hyphenated text form.
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Replaces every UUID cell by its short form, column by column; which columns hold ids only.
fn shorten_id_columns(rows: &mut [Vec<String>]) -> Vec<bool> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    (0..columns)
        .map(|c| {
            let ids: Vec<&str> = rows
                .iter()
                .filter_map(|r| r.get(c).map(String::as_str))
                .filter(|s| is_uuid(s))
                .collect();
            if ids.is_empty() {
                return false;
            }
            // An id column: every cell an id (or nothing); a column of other things too is not
            // kept whole for the ids among them.
            let only_ids = rows
                .iter()
                .filter_map(|r| r.get(c))
                .all(|s| s.is_empty() || s == "-" || is_uuid(s));
            let short = short_ids(&ids);
            for r in rows.iter_mut() {
                if let Some(cell) = r.get_mut(c)
                    && let Some(s) = short.get(cell.as_str())
                {
                    *cell = s.clone();
                }
            }
            only_ids
        })
        .collect()
}

/// Each id's short form among `ids`. A random id (UUIDv4: nodes) shows as its shortest prefix
/// of at least [`SHORT_ID`] characters that no other id starts with (never ending in a hyphen).
/// A time-ordered id (UUIDv7: jobs, workflows, ...), whose first characters are the minute it
/// was made and whose end is random (or counted within one millisecond), shows as its first [`SHORT_ID`] characters, `…` and the
/// shortest end (4 characters at least) that no other id with the same start has: a prefix
/// would have to be long to tell apart the ids of one minute, listed or not. Commands take both
/// forms back (`crate::ids`).
pub fn short_ids(ids: &[&str]) -> std::collections::HashMap<String, String> {
    let distinct: Vec<&str> = ids
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let common = |a: &str, b: &str| a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let common_end = |a: &str, b: &str| {
        a.bytes()
            .rev()
            .zip(b.bytes().rev())
            .take_while(|(x, y)| x == y)
            .count()
    };
    distinct
        .iter()
        .enumerate()
        .map(|(i, id)| {
            if id.as_bytes().get(14) == Some(&b'7') {
                let head = &id[..SHORT_ID];
                let tail = distinct
                    .iter()
                    .filter(|o| *o != id && o.starts_with(head))
                    .map(|o| common_end(id, o) + 1)
                    .max()
                    .unwrap_or(0)
                    .max(4)
                    .min(id.len() - SHORT_ID);
                let short = format!(
                    "{head}{}{}",
                    clustermgr_shared::ids::ELLIPSIS,
                    &id[id.len() - tail..]
                );
                return (id.to_string(), short);
            }
            let before = i.checked_sub(1).map_or(0, |j| common(id, distinct[j]));
            let after = distinct.get(i + 1).map_or(0, |n| common(id, n));
            let mut len = (before.max(after) + 1).max(SHORT_ID).min(id.len());
            if id.as_bytes().get(len - 1) == Some(&b'-') {
                len += 1;
            }
            (id.to_string(), id[..len.min(id.len())].to_string())
        })
        .collect()
}

/// The width of the widest line of `s`, in characters.
pub fn widest_line(s: &str) -> usize {
    s.lines().map(|l| l.chars().count()).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0190a1b2-c3d4-7e5f-8a6b-1c2d3e4f5a6b";
    const B: &str = "0190a1b2-c3d4-7e5f-9999-1c2d3e4f5a6b";
    const C: &str = "7f3e2d1c-0000-4000-8000-000000000000";

    #[test]
    fn times_are_shown_to_the_second() {
        assert_eq!(
            table_time("2026-12-07T11:26:50.123Z").as_deref(),
            Some("2026-12-07 11:26:50")
        );
        assert_eq!(
            table_time("2026-12-07T11:26:50Z").as_deref(),
            Some("2026-12-07 11:26:50")
        );
        for not in [
            "2026-12-07",
            "2026-12-07T11:26:50.Z",
            "x026-12-07T11:26:50Z",
            "-",
            "",
        ] {
            assert_eq!(table_time(not), None, "{not}");
        }
    }

    #[test]
    fn uuids_are_recognised_in_their_text_form_only() {
        assert!(is_uuid(A));
        assert!(!is_uuid("0190a1b2c3d47e5f8a6b1c2d3e4f5a6b"));
        assert!(!is_uuid("gluu1.example.org"));
        assert!(!is_uuid(&A.replace('a', "g")));
    }

    #[test]
    fn an_id_is_shown_by_8_characters_or_as_many_as_tell_it_apart() {
        // Random ids (UUIDv4): a prefix, 8 characters or as many as tell them apart.
        let v4 = "7f3e2d1c-0000-4000-8000-000000000001";
        let s = short_ids(&[C, v4, C]);
        assert_eq!(s[C], "7f3e2d1c-0000-4000-8000-000000000000");
        assert_eq!(s[v4], "7f3e2d1c-0000-4000-8000-000000000001");
        let other = "0a3e2d1c-0000-4000-8000-000000000000";
        let s = short_ids(&[C, other]);
        assert_eq!(s[C], "7f3e2d1c");
        // Never cut at a hyphen.
        let d = "7f3e2d1c-c000-4000-8000-000000000000";
        let s = short_ids(&[C, d]);
        assert_eq!(s[d], "7f3e2d1c-c");
        // Time-ordered ids (UUIDv7): the minute's 8 characters and enough of the random end.
        let s = short_ids(&[A, C]);
        assert_eq!(s[A], "0190a1b2…5a6b");
        let b2 = "0190a1b2-c3d4-7e5f-8a6b-1c2d3e4f5a6c";
        let b3 = "0190a1b2-c3d4-7e5f-8a6b-1c2d3e4f7a6c";
        let s = short_ids(&[A, b2, b3]);
        assert_eq!(s[A], "0190a1b2…5a6b");
        assert_eq!(s[b2], "0190a1b2…5a6c");
        assert_eq!(s[b3], "0190a1b2…7a6c");
        // Whatever the form, it names its id alone among them.
        for id in [A, b2, b3] {
            assert_eq!(
                clustermgr_shared::ids::unique_prefix([A, b2, b3], &s[id]),
                Ok(Some(id.to_string()))
            );
        }
        for id in [C, d] {
            let s = short_ids(&[C, d]);
            assert_eq!(
                clustermgr_shared::ids::unique_prefix([C, d], &s[id]),
                Ok(Some(id.to_string()))
            );
        }
    }

    #[test]
    fn the_widest_columns_give_way_first() {
        // Fits: as is.
        assert_eq!(column_widths(&[3, 24, 300], &[], 400), [3, 24, 300]);
        // The audit's columns at 120: only the detail is cut.
        assert_eq!(
            column_widths(&[3, 24, 14, 21, 8, 6, 300], &[], 98),
            [3, 24, 14, 21, 8, 6, 22]
        );
        // At 80 the three widest share what the narrow ones leave.
        assert_eq!(
            column_widths(&[3, 24, 14, 21, 8, 6, 300], &[], 58),
            [3, 9, 14, 9, 8, 6, 9]
        );
        // Too narrow for all: still within the budget where it can be.
        let w = column_widths(&[30, 30, 30], &[], 12);
        assert_eq!(w, [4, 4, 4]);
        // An id column stays whole before narrower ones: the job list at 80.
        assert_eq!(
            column_widths(&[13, 62, 5, 9, 24, 8, 30], &[true], 58),
            [13, 8, 5, 8, 8, 8, 8]
        );
    }

    fn long_table(width: Option<u16>) -> String {
        let mut t = Table::with_width(
            &["SEQ", "TIME", "WHO", "ACTION", "TARGET", "RESULT", "DETAIL"],
            width,
        );
        for i in 0..5 {
            t.add_row(vec![
                i.to_string(),
                "2026-12-07T11:26:50.123Z".into(),
                "operator:admin".into(),
                "workflow.gluu_install".into(),
                A.to_string(),
                "ok".into(),
                format!(
                    // A tab, as a node may report one.
                    "nodes={C},{B}\t{} /opt/gluu-server/etc/certs/a-very-long-file-name-without-spaces-to-split.crt",
                    "every node installed in parallel after the primary; ".repeat(4)
                ),
            ]);
        }
        t.to_string()
    }

    #[test]
    fn a_table_fits_80_and_120_columns() {
        for w in [80u16, 120] {
            let out = long_table(Some(w));
            assert!(!out.contains('\t'), "{out}");
            assert!(widest_line(&out) <= w as usize, "{w}:\n{out}");
            // Borders, header and 5 rows of at most MAX_ROW_LINES lines; the long detail cut.
            let lines = out.lines().count();
            assert!(lines > 9 && lines <= 4 + 5 * MAX_ROW_LINES, "{w}:\n{out}");
            assert!(out.contains('…'), "{out}");
            // Short columns stay whole at 120 columns.
            if w == 120 {
                assert!(out.contains("operator:admin"), "{out}");
                assert!(out.contains("workflow.gluu_install"), "{out}");
            }
            // UUIDs in their own column are short.
            assert!(out.contains("0190a1b2") && !out.contains(A), "{out}");
        }
    }

    #[test]
    fn a_column_of_ids_only_is_an_id_column() {
        let mut rows = vec![
            vec![A.to_string(), A.to_string()],
            vec!["-".to_string(), "gluu1.example.org".to_string()],
        ];
        assert_eq!(shorten_id_columns(&mut rows), [true, false]);
        assert_eq!(rows[0], ["0190a1b2…5a6b", "0190a1b2…5a6b"]);
    }

    #[test]
    fn without_a_width_every_row_is_one_line() {
        let out = long_table(None);
        assert_eq!(out.lines().count(), 5 + 4, "{out}");
        assert!(widest_line(&out) > 300);
    }
}
