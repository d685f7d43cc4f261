//! The log search pattern, compiled the one way the controller checks it and the agents run it.

use regex::bytes::{Regex, RegexBuilder};

/// Compiled-regex size limits: a pattern that would need more is refused (no blow-up; the
/// `regex` crate never backtracks).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles an operator's pattern: bounded in size, `^` and `$` at line boundaries (`\n` or
/// `\r\n`), as the agents run it over blocks of whole lines.
pub fn compile(grep: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(grep)
        .multi_line(true)
        .crlf(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
}
