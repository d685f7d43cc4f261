//! Rendering for people (tables) and for scripts (`--output json`). Every command prints its
//! records through [`render`] (or [`render_item`] for a stream): a value implements [`Render`]
//! once, with its JSON form and its human form, and no command chooses between them itself.

use crate::args::Output;
pub use crate::table::Table;
use anyhow::Result;
use serde_json::Value;
use std::io::Write;

/// Something a command prints: as JSON for scripts, as text for people.
pub trait Render {
    /// The `--output json` form.
    fn json(&self) -> Value;
    /// The `--output table` form, written as is (tables and lines end with a newline).
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()>;
}

/// Text for a terminal: control characters in what nodes, files and agents reported (escape
/// sequences, carriage returns, C1 controls) are dropped; newlines and tabs stay. Every table
/// and line the CLI prints for people goes through it (JSON escapes them itself).
pub struct Printable<W: Write>(pub W);

impl<W: Write> Write for Printable<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut kept = Vec::with_capacity(buf.len());
        let mut i = 0;
        while i < buf.len() {
            match buf[i] {
                b'\n' | b'\t' => kept.push(buf[i]),
                0x00..=0x1f | 0x7f => {}
                // U+0080..U+009F (C1 controls, e.g. the one-byte CSI) in UTF-8.
                0xc2 if buf.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)) => i += 1,
                b => kept.push(b),
            }
            i += 1;
        }
        self.0.write_all(&kept)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A line for stderr built from reported text (errors from nodes and agents), printable.
pub fn printable(s: &str) -> String {
    clustermgr_shared::util::clean(s, usize::MAX)
}

/// Prints `v` on stdout in the chosen format (JSON pretty-printed).
pub fn render<T: Render + ?Sized>(format: Output, v: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&v.json())?)?,
        Output::Table => v.human(&mut Printable(&mut out))?,
    }
    out.flush()?;
    Ok(())
}

/// Prints one item of a stream (e.g. a followed log): JSON as one compact line per item.
pub fn render_item<T: Render + ?Sized>(format: Output, v: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Output::Json => writeln!(out, "{}", v.json())?,
        Output::Table => v.human(&mut Printable(&mut out))?,
    }
    out.flush()?;
    Ok(())
}

/// A list of records is a JSON array and a table.
impl<T: Row> Render for [T] {
    fn json(&self) -> Value {
        Value::Array(self.iter().map(Row::json).collect())
    }
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut t = table(T::HEADER);
        for r in self {
            t.add_row(r.cells());
        }
        writeln!(out, "{t}")
    }
}

/// A record kind that lists as a table row.
pub trait Row {
    const HEADER: &'static [&'static str];
    fn json(&self) -> Value;
    fn cells(&self) -> Vec<String>;
}

/// One record shown alone: JSON object, or `key  value` lines for people.
pub struct Details<'a, T>(pub &'a T);

impl<T: Row> Render for Details<'_, T> {
    fn json(&self) -> Value {
        self.0.json()
    }
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        out.write_all(details(&self.0.json()).as_bytes())
    }
}

/// A table fitted to the terminal's width (see [`crate::table`]).
pub fn table(header: &[&str]) -> Table {
    Table::new(header)
}

pub fn details(v: &Value) -> String {
    let mut out = String::new();
    if let Value::Object(map) = v {
        let width = map.keys().map(String::len).max().unwrap_or(0) + 2;
        for (k, v) in map {
            let shown = match v {
                Value::String(s) => s.clone(),
                Value::Null => "-".into(),
                other => other.to_string(),
            };
            out.push_str(&format!("{k:<width$}{shown}\n"));
        }
    }
    out
}
