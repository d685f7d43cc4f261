//! Metric names and label sets as the Prometheus text exposition format (0.0.4) writes them:
//! the agent encodes its labels here, the controller parses what an agent sent (refusing
//! anything that is not a well-formed label set) and re-encodes it, so that nothing a node sends
//! can end a line, open a comment or forge another series in the exposition.

/// Longest metric name accepted.
pub const MAX_NAME: usize = 64;
/// Longest encoded label set accepted (`k="v",...`).
pub const MAX_LABELS: usize = 160;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpositionError {
    #[error("metric name {0:?} is not [a-zA-Z_:][a-zA-Z0-9_:]* of at most {MAX_NAME} characters")]
    Name(String),
    #[error("label set is longer than {MAX_LABELS} characters")]
    TooLong,
    #[error("label set {0:?} is not k=\"v\",... with valid names and escaped values")]
    Labels(String),
}

/// A metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`, at most [`MAX_NAME`] characters.
pub fn check_name(name: &str) -> Result<(), ExpositionError> {
    let mut chars = name.chars();
    let ok = name.len() <= MAX_NAME
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if ok {
        Ok(())
    } else {
        Err(ExpositionError::Name(name.chars().take(80).collect()))
    }
}

fn label_name_ok(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !k.starts_with("__")
}

/// A label value escaped for the exposition: `\` `"` and line feed, the only escapes the
/// format has; other control characters are dropped (they have no escape and no meaning here).
pub fn escape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// One label, encoded: `k="v"` (the value escaped).
pub fn label(k: &str, v: &str) -> String {
    format!("{k}=\"{}\"", escape_value(v))
}

/// Parses an encoded label set (`k="v",...`, values escaped) into its pairs, refusing anything
/// else: invalid or reserved (`__`) names, a repeated name, unknown escapes, raw control
/// characters, text after the closing quote.
pub fn parse_labels(s: &str) -> Result<Vec<(String, String)>, ExpositionError> {
    if s.len() > MAX_LABELS {
        return Err(ExpositionError::TooLong);
    }
    let bad = || ExpositionError::Labels(s.chars().take(80).collect());
    let mut out: Vec<(String, String)> = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"").ok_or_else(bad)?;
        if !label_name_ok(k) || out.iter().any(|(n, _)| n == k) {
            return Err(bad());
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().ok_or_else(bad)? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or_else(bad)?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    _ => return Err(bad()),
                },
                (_, c) if c.is_control() => return Err(bad()),
                (_, c) => value.push(c),
            }
        };
        out.push((k.to_string(), value));
        rest = &after[end + 1..];
        if let Some(next) = rest.strip_prefix(',') {
            if next.is_empty() {
                return Err(bad());
            }
            rest = next;
        } else if !rest.is_empty() {
            return Err(bad());
        }
    }
    Ok(out)
}

/// The canonical encoding of a label set: sorted by name, values escaped.
pub fn encode_labels(pairs: &mut [(String, String)]) -> String {
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| label(k, v))
        .collect::<Vec<_>>()
        .join(",")
}

/// An agent's label set checked and re-encoded canonically.
pub fn canonical_labels(s: &str) -> Result<String, ExpositionError> {
    Ok(encode_labels(&mut parse_labels(s)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_format() {
        for ok in ["load1", "cpu_seconds_total", "a:b", "_x"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "1x",
            "a b",
            "a-b",
            "x\n# HELP y",
            "é",
            &"a".repeat(MAX_NAME + 1),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn labels_round_trip_with_every_escape() {
        let mut pairs = vec![
            ("mount".to_string(), "/a\"b\\c\nd".to_string()),
            ("cpu".to_string(), "0".to_string()),
        ];
        let enc = encode_labels(&mut pairs);
        assert_eq!(enc, r#"cpu="0",mount="/a\"b\\c\nd""#);
        assert_eq!(parse_labels(&enc).unwrap(), pairs);
        assert_eq!(
            canonical_labels(r#"b="2",a="1""#).unwrap(),
            r#"a="1",b="2""#
        );
        assert_eq!(parse_labels("").unwrap(), vec![]);
        assert_eq!(escape_value("a\u{7}b\rc"), "abc");
    }

    #[test]
    fn hostile_label_sets_are_refused() {
        for bad in [
            "k=v",
            "k=\"v",
            "k=\"v\"x",
            "k=\"v\",",
            ",k=\"v\"",
            "k=\"a\nb\"",
            "k=\"a\\tb\"",
            "k=\"1\",k=\"2\"",
            "__name__=\"x\"",
            "1k=\"v\"",
            "bad key=\"x\"",
            "k=\"v\"}\nclustermgr_node_online{node=\"other\"} 1",
            "k=\"v\"} 1\n# EOF",
        ] {
            assert!(parse_labels(bad).is_err(), "accepted {bad:?}");
        }
        assert_eq!(
            parse_labels(&format!("k=\"{}\"", "x".repeat(MAX_LABELS))),
            Err(ExpositionError::TooLong)
        );
    }
}
