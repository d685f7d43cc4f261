//! Records named by their id or by a short form of it, as tables show ids (see `clustermgr_cli::table`):
//! a unique prefix (`01a2507b`), or a prefix and a suffix (`01a2507b…47b5`, also typed
//! `01a2507b..47b5`) for ids made in the same millisecond, which differ only at their end.

use std::collections::BTreeSet;

/// The fewest characters of an id that name a record (fewer name nothing: a slip such as
/// `node remove d` must not pick a node).
pub const MIN_PREFIX: usize = 4;

/// What separates the prefix from the suffix in a short id.
pub const ELLIPSIS: &str = "…";

/// A reference's prefix and suffix (empty when it has none).
pub fn parts(reference: &str) -> (&str, &str) {
    reference
        .split_once(ELLIPSIS)
        .or_else(|| reference.split_once(".."))
        .unwrap_or((reference, ""))
}

/// Of `ids`, the one `reference` names (a prefix, or `PREFIX…SUFFIX`): `Ok(None)` when none
/// does (or the prefix is shorter than [`MIN_PREFIX`]), `Err` with every match (sorted) when
/// several do.
pub fn unique_prefix<'a>(
    ids: impl IntoIterator<Item = &'a str>,
    reference: &str,
) -> Result<Option<String>, Vec<String>> {
    let (head, tail) = parts(reference);
    if head.chars().count() < MIN_PREFIX {
        return Ok(None);
    }
    let found: BTreeSet<&str> = ids
        .into_iter()
        .filter(|i| i.starts_with(head) && i[head.len()..].ends_with(tail))
        .collect();
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
        // A prefix and a suffix, as tables show ids made in the same millisecond.
        let same_ms = [
            "01a2507b-f54b-73fa-a75e-47b5",
            "01a2507b-f54b-73fa-a75e-47b4",
        ];
        assert_eq!(
            unique_prefix(same_ms, "01a2507b…47b4"),
            Ok(Some(same_ms[1].into()))
        );
        assert_eq!(
            unique_prefix(same_ms, "01a2507b..47b5"),
            Ok(Some(same_ms[0].into()))
        );
        assert_eq!(unique_prefix(same_ms, "01a2507b…47b6"), Ok(None));
        assert_eq!(unique_prefix(same_ms, "01a…47b5"), Ok(None));
        // Too short to name a record, even one alone.
        assert_eq!(unique_prefix(ids, "7f3"), Ok(None));
        // The same id twice is one record.
        assert_eq!(
            unique_prefix(["abcdef", "abcdef"], "abcd"),
            Ok(Some("abcdef".into()))
        );
    }
}
