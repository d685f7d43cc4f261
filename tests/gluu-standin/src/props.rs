//! Java-style `.properties` files, as Gluu's setup reads and writes them.

use std::fmt::Write as _;

/// Ordered key/value pairs; later duplicates replace earlier values.
#[derive(Debug, Default, Clone)]
pub struct Props {
    entries: Vec<(String, String)>,
}

impl Props {
    pub fn parse(text: &str) -> Self {
        let mut props = Props::default();
        let mut logical = String::new();
        for raw in text.lines() {
            let line = raw.trim_start();
            if logical.is_empty()
                && (line.is_empty() || line.starts_with('#') || line.starts_with('!'))
            {
                continue;
            }
            // A line ending in an odd number of backslashes continues on the next line.
            let trailing = line.chars().rev().take_while(|c| *c == '\\').count();
            if trailing % 2 == 1 {
                logical.push_str(&line[..line.len() - 1]);
                continue;
            }
            logical.push_str(line);
            let (key, value) = split_entry(&logical);
            props.set(&key, &value);
            logical.clear();
        }
        if !logical.is_empty() {
            let (key, value) = split_entry(&logical);
            props.set(&key, &value);
        }
        props
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, key: &str, value: &str) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_string(),
            None => self.entries.push((key.to_string(), value.to_string())),
        }
    }

    pub fn set_default(&mut self, key: &str, value: &str) {
        if self.get(key).is_none() {
            self.set(key, value);
        }
    }

    /// Serialise with Java escaping (`\:`, `\=`, `\\`, `\n`), one entry a line.
    pub fn render(&self, header: &str) -> String {
        let mut out = String::new();
        for line in header.lines() {
            let _ = writeln!(out, "# {line}");
        }
        for (k, v) in &self.entries {
            let _ = writeln!(out, "{}={}", escape(k, true), escape(v, false));
        }
        out
    }
}

fn split_entry(line: &str) -> (String, String) {
    let mut key = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    key.push(unescape_char(n));
                }
            }
            '=' | ':' => break,
            c if c.is_whitespace() => {
                // Whitespace ends the key; an `=` or `:` may still follow it.
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('=' | ':')) {
                    chars.next();
                }
                break;
            }
            c => key.push(c),
        }
    }
    while chars.peek().is_some_and(|c| c.is_whitespace()) {
        chars.next();
    }
    let mut value = String::new();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                value.push(unescape_char(n));
            }
        } else {
            value.push(c);
        }
    }
    (key, value)
}

fn unescape_char(c: char) -> char {
    match c {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        'f' => '\u{c}',
        other => other,
    }
}

fn escape(s: &str, is_key: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '=' | ':' => {
                out.push('\\');
                out.push(c);
            }
            '#' | '!' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if is_key || i == 0 => out.push_str("\\ "),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_java_properties() {
        let p = Props::parse(
            "# comment\nhostname=lb.example.org\nip = 10.0.0.1\nldapPass: s3cr=t\\:x\nurl=https\\://a\nlong=a\\\n   b\n",
        );
        assert_eq!(p.get("hostname"), Some("lb.example.org"));
        assert_eq!(p.get("ip"), Some("10.0.0.1"));
        assert_eq!(p.get("ldapPass"), Some("s3cr=t:x"));
        assert_eq!(p.get("url"), Some("https://a"));
        assert_eq!(p.get("long"), Some("ab"));
    }

    #[test]
    fn render_round_trips() {
        let mut p = Props::default();
        p.set("ldapPass", "a:b=c\\d !#");
        p.set("orgName", "#Org");
        let q = Props::parse(&p.render("x"));
        assert_eq!(q.get("ldapPass"), Some("a:b=c\\d !#"));
        assert_eq!(q.get("orgName"), Some("#Org"));
    }
}
