//! Records named by their id or by a unique prefix of it (tables show ids short: see
//! `cli::table`).

use std::collections::BTreeSet;

/// The fewest characters of an id that name a record (fewer name nothing: a slip such as
/// `node remove d` must not pick a node).
pub const MIN_PREFIX: usize = 4;

/// Of `ids`, the one `prefix` names: `Ok(None)` when none starts with it (or it is shorter
/// than [`MIN_PREFIX`]), `Err` with every match (sorted) when several do.
pub fn unique_prefix<'a>(
    ids: impl IntoIterator<Item = &'a str>,
    prefix: &str,
) -> Result<Option<String>, Vec<String>> {
    if prefix.chars().count() < MIN_PREFIX {
        return Ok(None);
    }
    let found: BTreeSet<&str> = ids.into_iter().filter(|i| i.starts_with(prefix)).collect();
    let mut found: Vec<String> = found.into_iter().map(str::to_string).collect();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_names_one_record_or_says_which_it_could_be() {
        let ids = ["0190a1b2-aaaa", "0190a1b2-bbbb", "7f3e2d1c-cccc"];
        assert_eq!(
            unique_prefix(ids, "7f3e2d1c"),
            Ok(Some("7f3e2d1c-cccc".into()))
        );
        assert_eq!(
            unique_prefix(ids, "0190a1b2"),
            Err(vec!["0190a1b2-aaaa".into(), "0190a1b2-bbbb".into()])
        );
        assert_eq!(
            unique_prefix(ids, "0190a1b2-b"),
            Ok(Some("0190a1b2-bbbb".into()))
        );
        assert_eq!(unique_prefix(ids, "ffff"), Ok(None));
        assert_eq!(unique_prefix(ids, ""), Ok(None));
        // Too short to name a record, even one alone.
        assert_eq!(unique_prefix(ids, "7f3"), Ok(None));
        // The same id twice is one record.
        assert_eq!(
            unique_prefix(["abcdef", "abcdef"], "abcd"),
            Ok(Some("abcdef".into()))
        );
    }
}
