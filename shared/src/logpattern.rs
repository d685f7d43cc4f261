//! The log search pattern, compiled the one way the controller checks it and the agents run it.

use regex::bytes::{Regex, RegexBuilder};

/// Compiled-regex size limits: a pattern that would need more is refused (no blow-up; the
/// `regex` crate never backtracks).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("{0}")]
    Regex(#[from] regex::Error),
    #[error("\\A and \\z anchor to a whole file, not a line: use ^ and $")]
    TextAnchor,
}

/// `\A` or `\z` outside a character class is used (an escaped backslash does not count).
fn text_anchor(p: &str) -> bool {
    let mut it = p.chars();
    while let Some(c) = it.next() {
        if c == '\\' && matches!(it.next(), Some('A' | 'z')) {
            return true;
        }
    }
    false
}

/// Compiles an operator's pattern: bounded in size, `^` and `$` at line boundaries (`\n` or
/// `\r\n`), as the agents run it over blocks of whole lines (so `\A` and `\z`, which would
/// anchor to a block, are refused).
pub fn compile(grep: &str) -> Result<Regex, PatternError> {
    if text_anchor(grep) {
        return Err(PatternError::TextAnchor);
    }
    Ok(RegexBuilder::new(grep)
        .multi_line(true)
        .crlf(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_text_anchors_are_refused_line_anchors_kept() {
        assert!(matches!(compile(r"\Aerror"), Err(PatternError::TextAnchor)));
        assert!(matches!(compile(r"error\z"), Err(PatternError::TextAnchor)));
        assert!(compile(r"\\Afoo").is_ok(), "an escaped backslash then A");
        let re = compile("^b$").unwrap();
        assert!(re.is_match(b"a\r\nb\r\nc"));
        assert!(matches!(compile("("), Err(PatternError::Regex(_))));
    }
}
