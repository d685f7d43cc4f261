//! `set-hosts`: the cluster's hostnames in a marked block of /etc/hosts (and of the Gluu
//! chroot's /etc/hosts). Everything outside the block stays byte for byte; the block is replaced
//! in place, or appended; an empty list removes it. Files are written on directory handles
//! (never through a link), keeping their mode, owner and group.

use super::{Ctx, Log, OpError};
use clustermgr_proto::{SetHosts, SetHostsOutput};
use clustermgr_shared::safefs::{self, FilePerms, SafeFsError};
use std::ffi::OsStr;
use std::path::Path;

pub const BEGIN: &str =
    "# BEGIN clustermgr: the cluster's hosts (managed; changes inside are replaced)";
pub const END: &str = "# END clustermgr";
/// The files, relative to the agent's root; the chroot's only when the chroot exists.
const FILES: [&str; 2] = ["etc/hosts", "opt/gluu-server/etc/hosts"];
const MAX_HOSTS_FILE: u64 = 1 << 20;

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
}

/// The block for these entries (empty when there are none).
pub fn block(req: &SetHosts) -> Result<String, OpError> {
    if req.entries.is_empty() {
        return Ok(String::new());
    }
    let mut out = format!("{BEGIN}\n");
    for e in &req.entries {
        let addr: std::net::IpAddr = e
            .address
            .parse()
            .map_err(|_| OpError(format!("{:?} is not an IP address", e.address)))?;
        if e.names.is_empty() {
            return Err(OpError(format!("{addr}: no host name")));
        }
        for n in &e.names {
            if !valid_name(n) {
                return Err(OpError(format!("{n:?} is not a host name")));
            }
        }
        out.push_str(&format!("{addr}\t{}\n", e.names.join(" ")));
    }
    out.push_str(END);
    out.push('\n');
    Ok(out)
}

/// `text` with its managed block replaced by `block` (appended when there was none).
pub fn apply(text: &str, block: &str) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let start = lines.iter().position(|l| l.trim_end() == BEGIN);
    let end = start.and_then(|s| {
        lines[s..]
            .iter()
            .position(|l| l.trim_end() == END)
            .map(|i| s + i)
    });
    match (start, end) {
        (Some(s), Some(e)) => {
            let mut out: String = lines[..s].concat();
            out.push_str(block);
            out.push_str(&lines[e + 1..].concat());
            out
        }
        _ => {
            if block.is_empty() {
                return text.to_string();
            }
            let mut out = text.to_string();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(block);
            out
        }
    }
}

pub async fn set(ctx: &Ctx, req: SetHosts, log: &mut Log) -> Result<SetHostsOutput, OpError> {
    let block = block(&req)?;
    let root = ctx.root().clone();
    let base = safefs::open_dir(&root).map_err(|e| OpError(format!("{}: {e}", root.display())))?;
    let am_root = nix::unistd::geteuid().is_root();
    let mut changed = Vec::new();
    for (i, path) in FILES.iter().enumerate() {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let err = |e: SafeFsError| OpError(format!("/{path}: {e}"));
        let d = match safefs::open_dir_beneath(&base, Path::new(dir), false) {
            Ok(d) => d,
            // The chroot's is optional; the host's /etc must exist.
            Err(SafeFsError::NotFound(_)) if i > 0 => continue,
            Err(e) => return Err(err(e)),
        };
        let name = OsStr::new(name);
        let (text, perms) = match safefs::stat_entry(&d, name).map_err(err)? {
            Some(_) => {
                let (content, st) = safefs::read_regular(&d, name, MAX_HOSTS_FILE).map_err(err)?;
                let text = String::from_utf8(content)
                    .map_err(|_| OpError(format!("/{path} is not UTF-8 text")))?;
                (
                    text,
                    FilePerms {
                        mode: st.st_mode & 0o7777,
                        uid: am_root.then_some(st.st_uid),
                        gid: am_root.then_some(st.st_gid),
                    },
                )
            }
            None => (
                String::new(),
                FilePerms {
                    mode: 0o644,
                    uid: None,
                    gid: None,
                },
            ),
        };
        let new = apply(&text, &block);
        if new == text {
            log.line(format!("/{path}: unchanged"));
            continue;
        }
        safefs::replace_file(&d, name, new.as_bytes(), perms).map_err(err)?;
        log.line(format!(
            "/{path}: {} cluster host line(s)",
            req.entries.len()
        ));
        changed.push(format!("/{path}"));
    }
    Ok(SetHostsOutput { changed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clustermgr_proto::HostEntry;

    fn req(entries: &[(&str, &[&str])]) -> SetHosts {
        SetHosts {
            entries: entries
                .iter()
                .map(|(a, n)| HostEntry {
                    address: a.to_string(),
                    names: n.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_block_is_replaced_in_place_and_everything_else_kept() {
        let original = "127.0.0.1\tlocalhost\n# my comment\n10.0.0.9 other # keep\n";
        let b1 = block(&req(&[
            ("10.0.0.1", &["gluu1.example.org"]),
            ("10.0.0.5", &["idp.example.org"]),
        ]))
        .unwrap();
        let once = apply(original, &b1);
        assert!(once.starts_with(original), "{once}");
        assert!(once.contains("10.0.0.1\tgluu1.example.org\n"));
        // Idempotent.
        assert_eq!(apply(&once, &b1), once);
        // A line added after the block survives a change of the block.
        let edited = format!("{once}# added later\n");
        let b2 = block(&req(&[("10.0.0.5", &["idp.example.org"])])).unwrap();
        let twice = apply(&edited, &b2);
        assert!(!twice.contains("gluu1"), "{twice}");
        assert!(
            twice.starts_with(original) && twice.ends_with("# added later\n"),
            "{twice}"
        );
        // No entries: the block goes, the rest stays.
        assert_eq!(apply(&twice, ""), format!("{original}# added later\n"));
        // No trailing newline in the original.
        assert_eq!(apply("a b", &b2), format!("a b\n{b2}"));
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(block(&req(&[("10.0.0", &["x"])])).is_err());
        assert!(block(&req(&[("10.0.0.1", &["bad name"])])).is_err());
        assert!(block(&req(&[("10.0.0.1", &[])])).is_err());
        assert!(block(&req(&[("10.0.0.1", &["a\nb"])])).is_err());
    }
}
