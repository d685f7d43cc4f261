//! File replication rules both sides apply the same way: which paths are replicated (the
//! configured directories, minus the excludes, never the directory's databases), glob matching
//! for excludes and actions, the order of versions, and the defaults (the old csync2 set-up's).

use clustermgr_proto::{FsrepAction, FsrepConfig, FsrepVersion};
use std::cmp::Ordering;

/// The directories csync2 replicated on a Gluu 4.x cluster.
pub const DEFAULT_PATHS: &[&str] = &[
    "/opt/gluu/python/libs",
    "/opt/gluu/jetty/casa/static",
    "/opt/gluu/jetty/casa/plugins",
    "/opt/gluu/jetty/oxauth/custom",
    "/opt/gluu/jetty/identity/custom",
    "/opt/gluu/jetty/identity/conf/shibboleth3/idp",
    "/opt/gluu/jetty/identity/conf/shibboleth3/sp",
    "/opt/shibboleth-idp/conf",
    "/opt/shibboleth-idp/metadata",
    "/opt/shibboleth-idp/sp",
    "/opt/shibboleth-idp/temp_metadata",
    "/etc/gluu/conf",
];

/// Editor backups, hidden files (temporary files of editors and of our own atomic writes
/// included) and the files that belong to one node.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    "*~",
    ".*",
    "/etc/gluu/conf/gluu-ldap.properties",
    "/etc/gluu/conf/ox-ldap.properties",
    "/etc/gluu/conf/salt",
    "oxTrustLogRotationConfiguration.xml",
];

/// The directories' databases: never replicated, whatever is configured.
pub const NEVER: &[&str] = &[
    "/opt/opendj/db",
    "/opt/opendj/changelogDb",
    "/opt/gluu/data",
    "/var/lib/ldap",
    "/opt/gluu-server/opt/opendj/db",
    "/opt/gluu-server/opt/gluu/data",
];

/// Backup generations kept per file.
pub const DEFAULT_BACKUPS: u32 = 3;

/// The per-file size limit unless the operator sets another (`fsrep max-file-size`): federation
/// metadata aggregates in `/opt/shibboleth-idp/metadata` are tens of MB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 256 << 20;
/// The smallest and largest per-file limit an operator can set.
pub const MIN_MAX_FILE_BYTES: u64 = 1 << 10;
pub const MAX_MAX_FILE_BYTES: u64 = 64 << 30;
/// The per-file limit before it could be set (a saved setting of exactly this is that old
/// default, never an operator's choice).
pub const OLD_MAX_FILE_BYTES: u64 = 8 << 20;
/// Resource limits unless the operator sets others (`fsrep limits`): paths the controller keeps
/// (files and remembered deletes), bytes of content it keeps, changes per node per second (bursts
/// of [`BURST_SECONDS`] of it), one run per action's service per interval, and the bytes of one
/// file's backup generations on a node.
pub const DEFAULT_MAX_FILES: u64 = 20_000;
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 4 << 30;
pub const DEFAULT_CHANGES_PER_SECOND: u32 = 100;
pub const BURST_SECONDS: u32 = 10;
pub const DEFAULT_ACTION_INTERVAL_MS: u64 = 60_000;
pub const DEFAULT_BACKUP_BYTES: u64 = 256 << 20;
/// Contents up to this size travel inside the change and apply messages; larger ones are
/// streamed in [`CHUNK_BYTES`] parts (`Upload`, `Fetch`). The controller keeps every content on
/// disk either way.
pub const INLINE_MAX_BYTES: u64 = 64 << 10;
/// The size of one part of a streamed content.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Whether a state's content is streamed rather than carried inline: a file (not a delete) with
/// a size whose message holds no content (its content is over [`INLINE_MAX_BYTES`]).
pub fn streamed(f: &clustermgr_proto::FsrepFile) -> bool {
    !f.deleted && f.content.is_empty() && f.size > 0
}

/// The services the csync2 action restarted when Shibboleth's configuration changed.
pub fn default_actions() -> Vec<FsrepAction> {
    ["idp", "identity"]
        .iter()
        .map(|s| FsrepAction {
            pattern: "/opt/gluu/jetty/identity/conf/shibboleth3/idp/**".into(),
            service: (*s).into(),
        })
        .collect()
}

/// Orders versions by (clock, node id); a missing version is the oldest.
pub fn cmp_versions(a: Option<&FsrepVersion>, b: Option<&FsrepVersion>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => a.hlc.cmp(&b.hlc).then_with(|| a.node_id.cmp(&b.node_id)),
    }
}

/// `*` matches any run of characters but `/`, `?` one character but `/`; a pattern ending in
/// `/**` matches everything below its directory.
pub fn glob(pattern: &str, text: &str) -> bool {
    if let Some(dir) = pattern.strip_suffix("/**") {
        return text
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
            && !dir.contains(['*', '?'])
            || (dir.contains(['*', '?'])
                && text.rfind('/').is_some_and(|_| {
                    // The directory part may hold wildcards: try each ancestor.
                    let mut cut = text.len();
                    while let Some(i) = text[..cut].rfind('/') {
                        if i > 0 && glob(dir, &text[..i]) {
                            return true;
                        }
                        cut = i;
                    }
                    false
                }));
    }
    glob_bytes(pattern.as_bytes(), text.as_bytes())
}

fn glob_bytes(p: &[u8], t: &[u8]) -> bool {
    match (p.first(), t.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob_bytes(&p[1..], t) || (!t.is_empty() && t[0] != b'/' && glob_bytes(p, &t[1..]))
        }
        (Some(b'?'), Some(c)) if *c != b'/' => glob_bytes(&p[1..], &t[1..]),
        (Some(a), Some(b)) if a == b => glob_bytes(&p[1..], &t[1..]),
        _ => false,
    }
}

/// Whether `path` matches an exclude: a pattern starting with `/` is matched against the whole
/// path (and excludes what is below it), any other against each component's name.
pub fn excluded<S: AsRef<str>>(path: &str, excludes: &[S]) -> bool {
    excludes.iter().any(|e| {
        let e = e.as_ref();
        if e.starts_with('/') {
            glob(e, path) || glob(&format!("{}/**", e.trim_end_matches('/')), path)
        } else {
            path.split('/')
                .filter(|c| !c.is_empty())
                .any(|c| glob(e, c))
        }
    })
}

/// `path` is `dir` or below it (lexically, both normalised).
pub fn under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// The path is a database (or holds one): never replicated.
pub fn is_never<S: AsRef<str>>(path: &str, never: &[S]) -> bool {
    never
        .iter()
        .any(|n| under(path, n.as_ref()) || under(n.as_ref(), path))
}

/// A file path this configuration replicates: below a configured directory (not the directory
/// itself), not excluded, not a database.
pub fn replicated(path: &str, cfg: &FsrepConfig) -> bool {
    cfg.paths
        .iter()
        .any(|d| under(path, d) && path != d.trim_end_matches('/'))
        && !excluded(path, &cfg.excludes)
        && !is_never(path, &cfg.never)
        && !is_never(path, NEVER)
        && !path
            .rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with(".clustermgr-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("*~", "a.xml~", true),
            ("*~", "a.xml", false),
            (".*", ".swp", true),
            (".*", "a.b", false),
            ("/etc/gluu/conf/salt", "/etc/gluu/conf/salt", true),
            ("/a/*/c", "/a/b/c", true),
            ("/a/*/c", "/a/b/x/c", false),
            ("/a/b/**", "/a/b/c/d", true),
            ("/a/b/**", "/a/b", false),
            ("/a/b/**", "/a/bc/d", false),
            ("/a/*/**", "/a/x/y/z", true),
            ("f?o", "foo", true),
        ] {
            assert_eq!(glob(p, t), want, "{p} {t}");
        }
    }

    #[test]
    fn what_is_replicated() {
        let cfg = FsrepConfig {
            enabled: true,
            paths: vec![
                "/etc/gluu/conf".into(),
                "/opt/gluu/jetty/oxauth/custom/".into(),
            ],
            excludes: DEFAULT_EXCLUDES.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        for (p, want) in [
            ("/etc/gluu/conf/gluu.properties", true),
            ("/etc/gluu/conf", false),
            ("/etc/gluu/conf/salt", false),
            ("/etc/gluu/conf/gluu-ldap.properties", false),
            ("/etc/gluu/conf/x.properties~", false),
            ("/etc/gluu/conf/.x.swp", false),
            ("/etc/gluu/conf/.hidden/x", false),
            ("/etc/gluu/confx/a", false),
            ("/opt/gluu/jetty/oxauth/custom/pages/a.xhtml", true),
            ("/etc/passwd", false),
        ] {
            assert_eq!(replicated(p, &cfg), want, "{p}");
        }
        let db = FsrepConfig {
            paths: vec!["/opt/gluu".into()],
            ..Default::default()
        };
        assert!(!replicated("/opt/gluu/data/main_db/data.mdb", &db));
        assert!(is_never("/opt", NEVER));
        assert!(is_never("/opt/opendj/db/userRoot", NEVER));
        assert!(!is_never("/opt/gluu/jetty", NEVER));
    }

    #[test]
    fn only_a_file_with_a_size_and_no_content_is_streamed() {
        let f = |deleted, size, content: &[u8]| clustermgr_proto::FsrepFile {
            deleted,
            size,
            content: content.to_vec(),
            ..Default::default()
        };
        assert!(streamed(&f(false, 70_000, b"")));
        assert!(!streamed(&f(false, 3, b"abc")));
        assert!(!streamed(&f(false, 0, b"")), "an empty file travels inline");
        assert!(!streamed(&f(true, 0, b"")));
        const { assert!(DEFAULT_MAX_FILE_BYTES >= 256_000_000) };
    }

    #[test]
    fn versions_order_by_clock_then_node() {
        let v = |hlc, n: &str| FsrepVersion {
            hlc,
            node_id: n.into(),
        };
        assert_eq!(
            cmp_versions(Some(&v(2, "a")), Some(&v(1, "z"))),
            Ordering::Greater
        );
        assert_eq!(
            cmp_versions(Some(&v(2, "a")), Some(&v(2, "b"))),
            Ordering::Less
        );
        assert_eq!(cmp_versions(None, Some(&v(0, ""))), Ordering::Less);
    }
}
